"""`ponder fit` and `ponder evaluate`: per-request policies, fitted and judged offline."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
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
            help="uniform, oracle, adaptive, router, allocation, sweet_spot, cascade, "
            "adaptive_consistency; on ladder data early_exit, probe_escalate, level_exit, "
            "learned_exit, learned_escalate; the published rules dynasor_cot, deer, "
            "adaptive_consistency_beta, esc, autothink, routellm_threshold "
            "(parameters: docs/policies.md, docs/policies_sequential.md, docs/baselines.md)."
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
    from ponder.policies.params import check_params
    from ponder.policies.serialization import registered, save_policy

    classes = registered()
    if policy not in classes:
        raise InputError(f"unknown policy {policy!r}; known: {', '.join(sorted(classes))}")
    if not dataset:
        raise InputError("choose the data to fit on with --dataset (e.g. -d math500)")
    # Parameters are checked before any data is read: a typo fails fast, in one line.
    params = _parse_params(param or [])
    check_params(classes[policy], params)
    try:
        unfitted = classes[policy].from_params(params)
    except (TypeError, ValueError, KeyError) as exc:
        raise InputError(f"bad parameters for {policy}: {exc}") from exc
    with open_store(store) as st, err_console.status(f"fitting {policy}"):
        matrix = load_matrix(
            st,
            datasets=dataset,
            models=model,
            exclude_models=exclude_model or (),
            cost=cost,
            prices=prices,
        )
        fitted = unfitted.fit(matrix)
        # Decide before saving: a policy that cannot decide (e.g. a budget no configuration
        # meets) must not leave a file behind.
        batch = fitted.decide_batch(matrix.problems)
        path = save_policy(fitted, out)
    import numpy as np

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
            help="Families to evaluate (default: all): adaptive, router, allocation, cascade, "
            "adaptive_consistency, sweet_spot; reading the generation (ladder data): "
            "early_exit, probe_escalate, level_exit, learned_exit, learned_escalate; published "
            "rules: dynasor_cot, deer, adaptive_consistency_beta, esc, autothink, "
            "routellm_threshold. Uniform and oracle always run.",
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
    wide: Annotated[
        bool,
        typer.Option(
            "--wide",
            help="Every column (hindsight upper bounds, frontier, calibration), however wide.",
        ),
    ] = False,
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
    from ponder.evaluate.catalog import (
        FAMILIES,
        SEQUENTIAL_SLOTS,
        Skipped,
        candidates,
        check_families,
    )
    from ponder.evaluate.metrics import summarize
    from ponder.evaluate.protocol import align, complete, cross_validate, transfer

    if not dataset:
        raise InputError("choose the data to evaluate on with --dataset (e.g. -d math500)")
    check_families(policy or [])
    with open_store(store) as st, err_console.status("loading outcomes"):
        common = {
            "models": model,
            "exclude_models": exclude_model or (),
            "exclude_contaminated": exclude_contaminated,
            "cost": cost,
            "prices": prices,
            "max_slots": SEQUENTIAL_SLOTS,
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
    skipped: list[Skipped] = []
    # Which families can run depends on the data's structure (modes, budgets, answers), the
    # same in every fold; their parameter scales come from each fold's training problems.
    cands = candidates(train if train is not None else test, policy or FAMILIES, skipped=skipped)
    with progress() as bar:
        total = 1 if train is not None else (2 * folds if folds > 2 else folds)
        task = bar.add_task("evaluating", total=total)

        def step(what: str) -> None:
            bar.update(task, advance=1, description=what)

        if train is not None:
            evaluation = transfer(train, test, cands)
            bar.update(task, completed=total)
        else:
            evaluation = cross_validate(test, cands, folds=folds, seed=seed, on_step=step)
    summary = summarize(evaluation, n_boot=n_boot, seed=seed)
    summary = dataclasses.replace(
        summary, skipped=tuple((s.family, s.reason) for s in skipped) + summary.skipped
    )
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
                "baseline_figures": summary.baseline_figures,
                "conclusion": summary.conclusion,
                "not_run": [{"family": f, "reason": r} for f, r in summary.skipped],
                "families": summary.families.to_dict("records"),
                "points": summary.points.to_dict("records"),
            }
        )
        return
    print_summary(summary, show_points=points, wide=wide)
    if plot is not None:
        typer.echo(f"plot written to {plot.resolve()}")


def _finite(value: Any) -> bool:
    """A real, finite number (NaN, None and infinities are not)."""
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _cost_formatter(values: list[float]) -> Callable[[float], str]:
    """One format for a whole column: integers with separators, or 3 significant digits."""
    finite = [abs(v) for v in values if _finite(v)]
    if finite and max(finite) >= 100:
        return lambda v: f"{v:,.0f}"
    return lambda v: f"{v:.3g}"


def _pct_ci(value: float, low: float, high: float, digits: int = 1) -> str:
    """`+3.1% [+0.5, +5.8]`: a share and its CI, the same decimals throughout."""
    return f"{value * 100:+.{digits}f}% [{low * 100:+.{digits}f}, {high * 100:+.{digits}f}]"


SHORT_NAMES = {  # the 80-column table; --wide and --json keep the full names
    "adaptive_consistency": "adapt_consist",
    "adaptive_consistency_beta": "ac_beta",
    "routellm_threshold": "routellm",
    "probe_escalate": "probe_esc",
    "learned_escalate": "learned_esc",
}


class _Notes:
    """Footnotes for undefined cells, so the table stays narrow and every reason is printed."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def undefined(self, what: str, reason: str) -> str:
        """`undefined [k]`, k numbering the reason (one note per distinct reason)."""
        line = f"{what}: undefined ({reason})"
        if line not in self.lines:
            self.lines.append(line)
        return f"undefined [{self.lines.index(line) + 1}]"

    def cell(self, row: Any, key: str, what: str, digits: int = 1) -> str:
        value = row.get(key)
        if not _finite(value):
            return self.undefined(what, row.get(f"{key}_note") or "not defined on these problems")
        return _pct_ci(value, row[f"{key}_ci_low"], row[f"{key}_ci_high"], digits)


def _compact_table(title: str) -> Table:
    """The evaluate tables' style: a head rule, no edges or padding, so they fit 80 columns."""
    from rich import box

    return Table(
        title=title, box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True
    )


def print_summary(summary: Any, *, show_points: bool = False, wide: bool = False) -> None:
    """Family table (80 columns unless --wide), notes, what could not run, the conclusion."""
    console = out_console()
    console.print(f"protocol: {summary.protocol}")
    base = summary.baseline_figures
    fmt_cost = _cost_formatter(
        [base.get("mean_cost", math.nan), *summary.points["mean_cost"].tolist()]
    )
    folds = f" ({base.get('folds_choosing_it')}/{base.get('folds')} folds)" if base else ""
    console.print(
        f"{summary.n_problems} problems; cost in {summary.unit}. Baseline, chosen on training "
        f"problems: {summary.baseline}{folds}, held-out accuracy "
        f"{base.get('accuracy', math.nan):.3f} [{base.get('accuracy_ci_low', math.nan):.3f}, "
        f"{base.get('accuracy_ci_high', math.nan):.3f}] at "
        f"{fmt_cost(base.get('mean_cost', math.nan))} {summary.unit}"
    )
    first = summary.families.iloc[0].to_dict() if len(summary.families) else {}
    uniform_reach: Any = first.get("uniform_cost_to_95pct")
    if _finite(uniform_reach):
        console.print(
            f"Mixing uniform configurations at random reaches 95% of the baseline's accuracy "
            f"at {fmt_cost(float(uniform_reach))} {summary.unit}.",
            highlight=False,
        )
    notes = _Notes()
    table = _compact_table("policy families vs the baseline, held out (95% CI)")
    columns = ["family", "acc", "cost", "gain @cost", "saved @acc", "cost→95%"]
    if wide:
        columns[1:1] = ["best point"]
        columns += [
            "gap recovered",
            "hindsight gain @cost",
            "hindsight saved @acc",
            "best gain vs hull",
            "best saving vs hull",
            "calib. err",
        ]
    for column in columns:
        table.add_column(column, justify="left" if column in ("family", "best point") else "right")
    for _, record in summary.families.iterrows():
        row = record.to_dict()
        cells = [
            str(row["family"]) if wide else SHORT_NAMES.get(row["family"], row["family"]),
            *(
                (f"{row['best_accuracy']:.3f}", fmt_cost(row["best_accuracy_cost"]))
                if _finite(row["best_accuracy"])
                else (notes.cell(row, "best_accuracy", "most accurate point"), "")
            ),
            notes.cell(row, "gain_at_iso_cost", "accuracy gain at the baseline's cost"),
            notes.cell(row, "saved_at_iso_accuracy", "cost saved at the baseline's accuracy", 0),
            _reach(row, "cost_to_95pct", fmt_cost, notes),
        ]
        if wide:
            label = str(row["best_label"]).removeprefix(f"{row['family']} ")
            if row.get("best_folds") != base.get("folds") and base.get("folds", 1) > 1:
                label += f" ({row.get('best_folds')}/{base.get('folds')} folds)"
            cells[1:1] = [label]
            calibration = row.get("calibration_error")
            cells += [
                notes.cell(row, "gap_recovered", "share of the baseline-to-oracle gap"),
                notes.cell(row, "hindsight_gain_at_iso_cost", "hindsight gain"),
                notes.cell(row, "hindsight_saved_at_iso_accuracy", "hindsight saving"),
                notes.cell(row, "frontier_gain", "best gain over the uniform hull"),
                notes.cell(row, "frontier_saving", "best saving over the uniform hull"),
                "n/a" if not _finite(calibration) else f"{calibration:.3f}",
            ]
        table.add_row(*cells)
    console.print(table)
    console.print(
        "acc, cost: the family's most accurate point on training problems, held out. "
        "gain @cost / saved @acc: its points as costly / as accurate as the baseline on "
        f"training problems, held out. cost→95%: {summary.unit} to reach 95% of the "
        "baseline's accuracy mixing the family with the cheapest uniform configuration "
        "(compare with the uniform mix above)."
        + ("" if wide else " --wide adds hindsight upper bounds and calibration."),
        highlight=False,
    )
    for k, line in enumerate(notes.lines, start=1):
        console.print(f"[{k}] {line}", highlight=False)
    for family, reason in summary.skipped:
        console.print(f"not run: {family} ({reason})", highlight=False)
    if show_points:
        _print_points(console, summary, fmt_cost, wide)
    console.print(f"Conclusion: {summary.conclusion}", highlight=False)


def _reach(row: dict[str, Any], key: str, fmt: Callable[[float], str], notes: _Notes) -> str:
    value: Any = row.get(key)
    if not _finite(value):
        return notes.undefined("cost to reach 95%", row.get(f"{key}_note") or "not reached")
    return fmt(float(value))


def _print_points(
    console: Console, summary: Any, fmt_cost: Callable[[float], str], wide: bool
) -> None:
    """Every candidate held out; calibration only with --wide (80 columns otherwise)."""

    detail = _compact_table("every evaluated point, held out")
    columns = ["label", "acc", "95% CI", "cost"] + (["samples", "calib. err"] if wide else [])
    for column in columns:
        detail.add_column(column, justify="left" if column == "label" else "right")
    for _, row in summary.points.iterrows():
        calibration = (
            "n/a"
            if not _finite(row["calibration_error"])
            else f"{row['calibration_error']:.3f} [{row['calibration_ci_low']:.3f}, "
            f"{row['calibration_ci_high']:.3f}]"
        )
        cells = [
            str(row["label"]),
            f"{row['accuracy']:.3f}",
            f"[{row['accuracy_ci_low']:.3f}, {row['accuracy_ci_high']:.3f}]",
            fmt_cost(row["mean_cost"]),
        ]
        detail.add_row(*cells, *([f"{row['mean_samples']:.2f}", calibration] if wide else []))
    console.print(detail)
