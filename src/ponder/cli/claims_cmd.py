"""`ponder claims`: re-test each claim about inference-time budgets on the store's data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ponder.cli._common import (
    DatasetsOption,
    JsonOption,
    NBootOption,
    SeedOption,
    StoreOption,
    check_names,
    echo_json,
    open_store,
    out_console,
    progress,
)

if TYPE_CHECKING:
    from rich.console import Console

    from ponder.claims import Finding, ModelFacts, Settings
    from ponder.evaluate.metrics import Summary
    from ponder.evaluate.protocol import Evaluation
    from ponder.store import Store

_VERDICT_STYLE = {
    "supported": "green",
    "contradicted": "red",
    "inconclusive": "yellow",
    "insufficient": "dim",
}


def run_with_progress(
    st: Store,
    *,
    datasets: Sequence[str] | None = None,
    claims: Sequence[str] | None = None,
    settings: Settings | None = None,
    facts: dict[str, ModelFacts] | None = None,
    evaluations: Mapping[str, tuple[Evaluation, Summary]] | None = None,
) -> list[Finding]:
    """Run the suite with a progress bar (claim x dataset checks) on stderr; ``evaluations``
    are policy evaluations the caller already ran (claim 3 reuses them)."""
    from ponder.claims import all_claims, check_all, get_claim, load_claim_data

    chosen = [get_claim(c) for c in claims] if claims else all_claims()
    data = load_claim_data(
        st, datasets=datasets, settings=settings, facts=facts, evaluations=evaluations
    )
    with progress() as bar:
        task = bar.add_task("checking claims", total=len(chosen) * len(data))
        return check_all(
            chosen,
            data,
            on_check=lambda claim, one: bar.update(
                task, advance=1, description=f"{claim.id} on {one.dataset}"
            ),
        )


def print_findings(findings: Sequence[Finding], console: Console, *, show_all: bool) -> None:
    """One table per claim (refusals folded into a count unless ``show_all``)."""
    from rich import box
    from rich.table import Table

    from ponder.claims import all_claims
    from ponder.report.claims import effect_text

    by_claim: dict[str, list[Finding]] = {}
    for f in findings:
        by_claim.setdefault(f.claim, []).append(f)
    for claim in all_claims():
        own = by_claim.get(claim.id, [])
        if not own:
            continue
        shown = own if show_all else [f for f in own if f.verdict != "insufficient"]
        refused = len(own) - len(shown)
        console.print(f"\n[bold]{claim.number}. {claim.title}[/bold]", highlight=False)
        if shown:
            table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
            for name in ("dataset", "scope", "verdict", "effect", "estimate [CI]", "problems"):
                table.add_column(name, justify="right" if name == "problems" else "left")
            for f in shown:
                style = _VERDICT_STYLE[f.verdict]
                effect = f.effect.name if f.effect else f.reason
                table.add_row(
                    f.dataset,
                    f.scope,
                    f"[{style}]{f.verdict}[/{style}]",
                    effect,
                    effect_text(f),
                    str(f.n_problems or ""),
                )
            console.print(table)
        if refused:
            datasets = ", ".join(sorted({f.dataset for f in own if f.verdict == "insufficient"}))
            console.print(
                f"  [dim]not testable on {refused} slice(s) ({datasets}); --all shows why[/dim]",
                highlight=False,
            )


def claims_command(
    dataset: DatasetsOption = None,
    claim: Annotated[
        list[str] | None,
        typer.Option("--claim", "-c", help="Only these claims (ids from --list)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write the HTML claims report here.", show_default=False),
    ] = None,
    ci: Annotated[
        float, typer.Option(min=0.5, max=0.999, help="Confidence level of every interval.")
    ] = 0.95,
    n_boot: NBootOption = 1000,
    seed: SeedOption = 0,
    min_problems: Annotated[
        int,
        typer.Option(
            min=2, help="Fewest problems a comparison may rest on before a check refuses."
        ),
    ] = 20,
    model_facts: Annotated[
        Path | None,
        typer.Option(
            help='JSON facts about models: {"name": {"params": 1.5e9, "reasoning": true}} '
            "(else read from the importer, ponder's model registry and the names).",
            show_default=False,
        ),
    ] = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="Also list the slices a check could not test, and why.")
    ] = False,
    list_claims: Annotated[
        bool, typer.Option("--list", help="List the claims (id, what each needs) and exit.")
    ] = False,
    export_routing: Annotated[
        Path | None,
        typer.Option(
            "--export-routing",
            help="Instead of checking: write claim 4's think / no-think labels of --model on "
            "one dataset (-d) as chat JSONL with a <short> / <think> control token.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="The model whose labels --export-routing writes."),
    ] = None,
    markdown: Annotated[
        bool,
        typer.Option(
            "--markdown", help="Print the findings as Markdown tables (for docs and issues)."
        ),
    ] = False,
    json_out: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Re-test each claim about inference-time budgets, with verdicts, effects and intervals.

    Every claim is checked on every dataset of the store (or the ones given with -d). Each
    verdict rests on an effect size with a bootstrap interval over problems: supported (the
    interval lies above zero), contradicted (it lies below the smallest effect that matters),
    inconclusive, or insufficient (the data cannot test it; --all says why). docs/claims.md
    describes every check.

    \b
    Examples:
      ponder claims --list
      ponder claims                            # every claim, every dataset
      ponder claims -d math500 -c overthinking --all
      ponder claims -o claims.html --json > claims.json
      ponder claims --markdown > claims.md
      ponder claims --model-facts facts.json   # parameter counts, reasoning or not
      ponder claims --export-routing r.jsonl -d arith -m qwen2.5-coder-1.5b
    """
    from ponder.claims import Settings, all_claims
    from ponder.claims.data import load_facts_file

    if list_claims:
        _list(json_out)
        return
    if export_routing is not None:
        _export_routing(export_routing, dataset, model, store, json_out)
        return
    facts = load_facts_file(model_facts) if model_facts is not None else None
    settings = Settings(ci=ci, n_boot=n_boot, seed=seed, min_problems=min_problems)
    if claim:
        from ponder.claims import get_claim

        for c in claim:
            get_claim(c)  # an unknown id fails before any data is read
    with open_store(store) as st:
        check_names(st, datasets=dataset)
        findings = run_with_progress(
            st, datasets=dataset, claims=claim, settings=settings, facts=facts
        )
        label = st.path.name
    if out is not None:
        from ponder.report.claims import write_claims_report

        write_claims_report(findings, out, settings=settings, store_label=label)
    if json_out:
        echo_json(
            {
                "settings": {
                    "ci": ci,
                    "n_boot": n_boot,
                    "seed": seed,
                    "min_problems": min_problems,
                },
                "claims": [
                    {"number": c.number, "id": c.id, "title": c.title} for c in all_claims()
                ],
                "findings": [_finding_json(f) for f in findings],
                "report": str(out) if out is not None else None,
            }
        )
        return
    if markdown:
        typer.echo(findings_markdown(findings, show_all=show_all))
        return
    console = out_console()
    print_findings(findings, console, show_all=show_all)
    counts = {v: sum(f.verdict == v for f in findings) for v in _VERDICT_STYLE}
    console.print(
        "\n" + ", ".join(f"{n} {v}" for v, n in counts.items() if n) + f" ({ci:.0%} intervals)",
        highlight=False,
    )
    if out is not None:
        console.print(f"claims report written to {out.resolve()}", highlight=False)


def findings_markdown(findings: Sequence[Finding], *, show_all: bool) -> str:
    """One Markdown table per claim: dataset, scope, verdict, effect, estimate [CI], problems;
    refusals folded into one line per claim unless ``show_all``."""
    from ponder.claims import all_claims
    from ponder.report.claims import effect_text

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    out: list[str] = []
    for claim in all_claims():
        own = [f for f in findings if f.claim == claim.id]
        if not own:
            continue
        shown = own if show_all else [f for f in own if f.verdict != "insufficient"]
        out.append(f"### {claim.number}. {claim.title}\n")
        if shown:
            out.append("| dataset | scope | verdict | effect | estimate [CI] | problems |")
            out.append("|---|---|---|---|---|---:|")
            for f in shown:
                effect = f.effect.name if f.effect else f.reason
                row = (f.dataset, f.scope, f"**{f.verdict}**", effect, effect_text(f))
                out.append("| " + " | ".join(cell(v) for v in row) + f" | {f.n_problems} |")
        refused = sorted({f.dataset for f in own if f.verdict == "insufficient"})
        if refused and not show_all:
            out.append(f"\nNot testable on some slices of: {', '.join(refused)}.")
        out.append("")
    return "\n".join(out)


def _finding_json(f: Finding) -> dict[str, object]:
    e = f.effect
    return {
        "claim": f.claim,
        "dataset": f.dataset,
        "scope": f.scope,
        "verdict": f.verdict,
        "reason": f.reason,
        "effect": None
        if e is None
        else {
            "name": e.name,
            "value": e.value,
            "low": e.low,
            "high": e.high,
            "unit": e.unit,
            "min_effect": e.min_effect,
            "ci": e.ci,
        },
        "n_problems": f.n_problems,
        "protocol": f.protocol,
        "extras": f.extras,
    }


def _export_routing(
    path: Path, datasets: list[str] | None, model: str | None, store: Path | None, json_out: bool
) -> None:
    """Claim 4's per-problem labels as a fine-tuning set (ponder.claims.think_routing)."""
    from ponder.claims import load_claim_data
    from ponder.claims.think_routing import routing_dataset
    from ponder.errors import InputError

    if model is None:
        raise InputError("--export-routing needs --model (whose think / no-think labels)")
    if not datasets or len(datasets) != 1:
        raise InputError("--export-routing needs exactly one dataset (-d NAME)")
    with open_store(store) as st:
        check_names(st, datasets=datasets)
        (data,) = load_claim_data(st, datasets=datasets)
    written = routing_dataset(data, path, model=model)
    if json_out:
        echo_json({k: str(v) if isinstance(v, Path) else v for k, v in vars(written).items()})
        return
    out_console().print(
        f"wrote {written.written} problems to {written.path} ({written.no_think} <short>, "
        f"{written.think} <think>; left out: {written.unsolved} solved by neither mode, "
        f"{written.without_text} without text); think = {written.think_config}, "
        f"no-think = {written.no_think_config}",
        highlight=False,
    )


def _list(json_out: bool) -> None:
    from ponder.claims import all_claims

    claims = all_claims()
    if json_out:
        echo_json(
            [
                {
                    "number": c.number,
                    "id": c.id,
                    "title": c.title,
                    "hypothesis": c.hypothesis,
                    "needs": c.needs,
                }
                for c in claims
            ]
        )
        return
    console = out_console()
    for c in claims:
        console.print(f"[bold]{c.number}. {c.id}[/bold]: {c.title}", highlight=False)
        console.print(f"   needs: {c.needs}", highlight=False)
