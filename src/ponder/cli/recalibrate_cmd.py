"""`ponder recalibrate`: refit a served policy on its explored traffic and show the change."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ponder.cli._common import JsonOption, echo_json, out_console
from ponder.errors import InputError


def recalibrate_command(
    policy_path: Annotated[Path, typer.Argument(help="The policy in service (JSON).")],
    store: Annotated[Path, typer.Option(help="The store `ponder serve --store` logged to.")],
    name: Annotated[
        str | None,
        typer.Option(help="The policy's name in the server (ponder/NAME); default: file stem."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the refitted policy here.")
    ] = None,
    folds: Annotated[int, typer.Option(min=2, help="Cross-validation folds.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the folds and the bootstrap.")] = 0,
    json_out: JsonOption = False,
) -> None:
    """Refit a served policy on its explored requests and show what changes.

    Needs `ponder serve --explore P --store S` (a share P of requests also runs every
    configuration of its plan in full) and gold answers posted to /v1/ponder/feedback. The
    policy in service is replayed on those requests; the refit (same family and parameters)
    is cross-validated on them; both with 95% bootstrap intervals. Nothing is changed unless
    you give --out and then serve the new file.

    \b
    Examples:
      ponder recalibrate pe.json --store serve.sqlite
      ponder recalibrate pe.json --store serve.sqlite --name pe -o pe-2.json --json
    """
    from ponder.policies.serialization import load_policy, save_policy
    from ponder.serve.recalibrate import Figures, recalibrate

    if not policy_path.is_file():
        raise InputError(f"no policy file at {policy_path}")
    policy = load_policy(policy_path)
    result = recalibrate(policy, name or policy_path.stem, store, folds=folds, seed=seed)
    if out is not None:
        save_policy(result.refit_policy, out)
    if json_out:
        echo_json({**result.to_dict(), "written": None if out is None else str(out)})
        return
    console = out_console()
    now, new = result.current, result.refit

    def line(label: str, f: Figures) -> str:
        lo, hi = f.accuracy_ci
        clo, chi = f.cost_ci
        return (
            f"{label:<22} accuracy {f.accuracy:.3f} [{lo:.3f}, {hi:.3f}]   "
            f"cost {f.cost:,.1f} [{clo:,.1f}, {chi:,.1f}]"
        )

    console.print(
        f"{result.requests} explored requests of ponder/{result.policy} with gold answers"
    )
    console.print(line("served (request log)", result.served), highlight=False)
    console.print(line("in service (replayed)", now), highlight=False)
    rlo, rhi = result.replay_minus_served_ci
    console.print(
        f"replay - served: accuracy {now.accuracy - result.served.accuracy:+.3f} "
        f"[{rlo:+.3f}, {rhi:+.3f}] (far from 0: the explored rows are not what was served, "
        "e.g. a sampling or non-reproducible engine)",
        highlight=False,
    )
    console.print(line("refit (held out)", new), highlight=False)
    alo, ahi = result.accuracy_change_ci
    clo, chi = result.cost_change_ci
    console.print(
        f"change: accuracy {new.accuracy - now.accuracy:+.3f} [{alo:+.3f}, {ahi:+.3f}], "
        f"cost {(new.cost - now.cost) / now.cost if now.cost else float('nan'):+.1%} "
        f"[{clo:+.1%}, {chi:+.1%}]",
        highlight=False,
    )
    console.print(f"in service: {result.current_plan}", highlight=False)
    console.print(f"refit:      {result.refit_plan}", highlight=False)
    if result.thin:
        console.print(
            f"thin: {result.requests} requests; intervals this wide cannot tell small changes "
            "apart (explore more traffic before switching)",
            highlight=False,
        )
    if out is not None:
        console.print(f"refitted policy written to {out}", highlight=False)
