"""`ponder fit` and `ponder evaluate`: per-request policies, fitted and judged offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from ponder.cli._common import (
    DatasetsOption,
    JsonOption,
    ModelsOption,
    NBootOption,
    SeedOption,
    StoreOption,
    echo_json,
    err_console,
    open_store,
    out_console,
    progress,
)
from ponder.errors import InputError

ExcludeOption = Annotated[
    list[str] | None, typer.Option("--exclude-model", help="Leave these models out.")
]
CostOption = Annotated[
    str, typer.Option("--cost", help="Cost unit: tokens, dollars, flops or calls.")
]
PricesOption = Annotated[
    Path | None,
    typer.Option(
        help='Price table JSON: {"model": {"output_per_mtok": 0.6, "per_call": 1, '
        '"params_b": 1.5}}.'
    ),
]


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--param {pair!r}: expected KEY=VALUE")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def fit_command(
    policy: Annotated[
        str,
        typer.Argument(
            help="uniform, oracle, adaptive, router, allocation, sweet_spot, cascade or "
            "adaptive_consistency (parameters: docs/policies.md)."
        ),
    ],
    dataset: DatasetsOption = None,
    model: ModelsOption = None,
    exclude_model: ExcludeOption = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Policy parameter KEY=VALUE (JSON values)."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Policy JSON to write.")] = Path(
        "policy.json"
    ),
    cost: CostOption = "tokens",
    prices: PricesOption = None,
    store: StoreOption = None,
    json_: JsonOption = False,
) -> None:
    """Fit a policy on recorded outcomes and save it as versioned JSON.

    \b
    Examples:
      ponder fit adaptive -d math500 -p price_per_unit=2e-5 -o adaptive.json
      ponder fit cascade -d math500 -p price_per_unit=1e-5
      ponder fit uniform -d aime24 -p 'config={"model": "r1-1.5b", "mode": "think", "budget": 8192}'
      ponder fit adaptive -d gsm8k --cost calls -p price_per_unit=0.1
    """
    from ponder.analysis import load_matrix
    from ponder.policies.serialization import registered, save_policy

    classes = registered()
    if policy not in classes:
        raise InputError(f"unknown policy {policy!r}; known: {', '.join(sorted(classes))}")
    if not dataset:
        raise InputError("choose the data to fit on with --dataset (e.g. -d math500)")
    with open_store(store) as st, err_console.status(f"fitting {policy}"):
        matrix = load_matrix(
            st,
            datasets=dataset,
            models=model,
            exclude_models=exclude_model or (),
            cost=cost,
            prices=prices,
        )
        try:
            fitted = classes[policy].from_params(_parse_params(param or []))
        except TypeError as exc:
            raise InputError(f"bad parameters for {policy}: {exc}") from exc
        fitted.fit(matrix)
        # Decide before saving: a policy that cannot decide (e.g. a budget no configuration
        # meets) must not leave a file behind.
        batch = fitted.decide_batch(matrix.problems)
        path = save_policy(fitted, out)
    shares = np.bincount(batch.index, minlength=len(batch.decisions)) / len(batch.index)
    plans: list[dict[str, Any]] = [
        {"share": float(s), "decision": d.to_dict()}
        for s, d in sorted(zip(shares, batch.decisions, strict=True), key=lambda t: -t[0])
    ]
    if json_:
        echo_json({"policy": fitted.describe(), "path": str(path), "decisions": plans})
        return
    console = out_console()
    console.print(f"fitted {fitted.describe()} on {matrix.n_problems} problems -> {path}")
    for plan in plans[:10]:
        steps = " then ".join(
            f"{s['config']['model']}|{s['config']['mode']}|{s['config']['budget']} "
            f"x{s['samples']}"
            + (f" (escalate if {s['escalate']})" if s["escalate"] != "never" else "")
            for s in plan["decision"]["steps"]
        )
        console.print(f"  {plan['share']:6.1%}  {steps}")


def evaluate_command(
    dataset: DatasetsOption = None,
    model: ModelsOption = None,
    exclude_model: ExcludeOption = None,
    policy: Annotated[
        list[str] | None,
        typer.Option(
            "--policy",
            "-P",
            help="Families to evaluate: adaptive, router, allocation, cascade, "
            "adaptive_consistency, sweet_spot (default: all). Uniform and oracle always run.",
        ),
    ] = None,
    folds: Annotated[int, typer.Option(min=2, help="Cross-validation folds by problem.")] = 5,
    train_dataset: Annotated[
        list[str] | None,
        typer.Option(help="Fit on these datasets and evaluate on --dataset (transfer)."),
    ] = None,
    level: Annotated[
        list[int] | None, typer.Option(help="Evaluate only on problems of these levels.")
    ] = None,
    train_level: Annotated[
        list[int] | None,
        typer.Option(help="Fit on problems of these levels, evaluate on --level (transfer)."),
    ] = None,
    exclude_contaminated: Annotated[
        bool, typer.Option(help="Drop problems flagged as contaminated (RouteLLM's protocol).")
    ] = False,
    cost: CostOption = "tokens",
    prices: PricesOption = None,
    n_boot: NBootOption = 1000,
    seed: SeedOption = 0,
    points: Annotated[bool, typer.Option(help="Also list every evaluated point.")] = False,
    plot: Annotated[Path | None, typer.Option(help="Write the accuracy-cost plot (PNG).")] = None,
    store: StoreOption = None,
    json_: JsonOption = False,
) -> None:
    """Evaluate policies offline against uniform budgets and the oracle, with CIs.

    Servable policies are fitted on training problems only (k-fold CV by problem, or another
    dataset with --train-dataset) and replayed on held-out problems from recorded samples.

    \b
    Examples:
      ponder evaluate -d math500                        # every family, 5-fold CV
      ponder evaluate -d math500 -P adaptive -P cascade --points
      ponder evaluate -d aime25 --train-dataset aime24  # transfer across datasets
      ponder evaluate -d math500 --train-level 1 --train-level 2 --train-level 3 \\
          --level 4 --level 5                            # easy levels -> hard levels
      ponder evaluate -d gsm8k --cost calls --prices examples/prices/routellm_gsm8k.json
    """
    from ponder.analysis import load_matrix
    from ponder.evaluate.catalog import FAMILIES, candidates
    from ponder.evaluate.metrics import summarize
    from ponder.evaluate.protocol import align, complete, cross_validate, transfer

    if not dataset:
        raise InputError("choose the data to evaluate on with --dataset (e.g. -d math500)")
    with open_store(store) as st, err_console.status("loading outcomes"):
        common = {
            "models": model,
            "exclude_models": exclude_model or (),
            "exclude_contaminated": exclude_contaminated,
            "cost": cost,
            "prices": prices,
        }
        test = load_matrix(st, datasets=dataset, levels=level, **common)  # type: ignore[arg-type]
        train = None
        if train_dataset or train_level:
            train = load_matrix(
                st,
                datasets=train_dataset or dataset,
                levels=train_level,
                **common,  # type: ignore[arg-type]
            )
    if train is not None:
        train, test = align(train, test)
    else:
        test = complete(test)
    cands = candidates(test, policy or FAMILIES)
    with progress() as bar:
        total = len(cands) * (1 if train is not None else folds)
        task = bar.add_task("evaluating", total=total)

        def step(what: str) -> None:
            bar.update(task, advance=1, description=what)

        if train is not None:
            evaluation = transfer(train, test, cands)
            bar.update(task, completed=total)
        else:
            evaluation = cross_validate(test, cands, folds=folds, seed=seed, on_step=step)
    summary = summarize(evaluation, n_boot=n_boot, seed=seed)
    if plot is not None:
        from ponder.report.plots import policy_curves

        plot.write_bytes(policy_curves(summary, title=", ".join(dataset)))
    if json_:
        echo_json(
            {
                "protocol": summary.protocol,
                "unit": summary.unit,
                "n_problems": summary.n_problems,
                "baseline": summary.baseline,
                "families": summary.families.to_dict("records"),
                "points": summary.points.to_dict("records"),
            }
        )
        return
    _print_summary(summary, points)
    if plot is not None:
        typer.echo(f"plot written to {plot.resolve()}")


def _fmt(value: float, pct: bool = False) -> str:
    if value is None or np.isnan(value):
        return "–"
    return f"{value:+.1%}" if pct else f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3f}"


def _ci(row: Any, key: str, pct: bool = True) -> str:
    return (
        f"{_fmt(row[key], pct)} [{_fmt(row[key + '_ci_low'], pct)}, "
        f"{_fmt(row[key + '_ci_high'], pct)}]"
    )


def _print_summary(summary: Any, show_points: bool) -> None:
    console = out_console()
    console.print(f"protocol: {summary.protocol}")
    console.print(
        f"{summary.n_problems} problems; cost in {summary.unit}; baseline = best uniform: "
        f"{summary.baseline}"
    )
    table = Table(title="policy families vs the best uniform configuration (95% CI)")
    for column in (
        "family",
        "best point",
        "accuracy",
        "cost",
        "saved at iso-acc",
        "gain at iso-cost",
        "gap recovered",
        "vs frontier: gain",
        "vs frontier: saving",
        "cost to 95%",
        "calib. err",
    ):
        table.add_column(column, justify="left" if column in ("family", "best point") else "right")
    points = summary.points.set_index("label")
    for _, row in summary.families.iterrows():
        best = points.loc[row["best_label"]]
        table.add_row(
            str(row["family"]),
            str(row["best_label"]).removeprefix(f"{row['family']} "),
            f"{best['accuracy']:.3f}",
            _fmt(best["mean_cost"]),
            _ci(row, "saved_at_iso_accuracy"),
            _ci(row, "gain_at_iso_cost"),
            _ci(row, "gap_recovered"),
            _ci(row, "frontier_gain"),
            _ci(row, "frontier_saving"),
            f"{_fmt(row['cost_to_95pct'])} (uniform {_fmt(row['uniform_cost_to_95pct'])})",
            _fmt(row["calibration_error"]),
        )
    console.print(table)
    if show_points:
        detail = Table(title="every evaluated point")
        for column in ("label", "accuracy", "95% CI", "mean cost", "samples", "calib. err"):
            detail.add_column(column, justify="left" if column == "label" else "right")
        for _, row in summary.points.iterrows():
            calibration = (
                "–"
                if np.isnan(row["calibration_error"])
                else f"{row['calibration_error']:.3f} [{row['calibration_ci_low']:.3f}, "
                f"{row['calibration_ci_high']:.3f}]"
            )
            detail.add_row(
                str(row["label"]),
                f"{row['accuracy']:.3f}",
                f"[{row['accuracy_ci_low']:.3f}, {row['accuracy_ci_high']:.3f}]",
                _fmt(row["mean_cost"]),
                f"{row['mean_samples']:.2f}",
                calibration,
            )
        console.print(detail)
