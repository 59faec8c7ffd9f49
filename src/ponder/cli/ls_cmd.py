"""`ponder ls`: what the store holds, by the names `-d` and `-m` take."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

from ponder.cli._common import JsonOption, StoreOption, echo_json, open_store

if TYPE_CHECKING:
    from rich.console import Console

    from ponder.store import Store


def inventory(st: Store) -> dict[str, Any]:
    """Datasets (with their sources and runs), models, modes and budgets, with counts.

    Two scans of the outcomes, each in the order of an index (no temporary sort), keep
    listing a store of a million outcomes under a second; the rest is summed in Python.
    Rows in Parquet segments are counted from their key columns only.
    """
    cells = st.outcome_counts(["model", "dataset", "mode", "budget"])
    run_rows = st.outcome_counts(["run_id", "dataset"])
    source_of = dict(st.query("SELECT run_id, source FROM runs"))
    problems = dict(st.query("SELECT dataset, COUNT(*) FROM problems GROUP BY dataset"))

    outcomes: Counter[str] = Counter()
    models_of: defaultdict[str, set[str]] = defaultdict(set)
    per_model: Counter[str] = Counter()
    datasets_of_model: defaultdict[str, set[str]] = defaultdict(set)
    per_mode: Counter[str] = Counter()
    per_budget: Counter[int | None] = Counter()
    for model, dataset, mode, budget, n in cells:
        outcomes[dataset] += n
        models_of[dataset].add(model)
        per_model[model] += n
        datasets_of_model[model].add(dataset)
        per_mode[mode] += n
        per_budget[budget] += n
    runs: Counter[str] = Counter()
    sources: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for run_id, dataset, _ in run_rows:
        runs[dataset] += 1
        sources[dataset][source_of.get(run_id, "?")] += 1
    datasets = [
        {
            "name": name,
            "sources": dict(sorted(sources[name].items())),
            "runs": runs[name],
            "problems": problems.get(name, 0),
            "models": len(models_of[name]),
            "outcomes": outcomes[name],
        }
        for name in sorted(outcomes)
    ]
    return {
        "store": str(st.path),
        "outcomes": sum(outcomes.values()),
        "datasets": datasets,
        "models": [
            {"name": m, "datasets": len(datasets_of_model[m]), "outcomes": per_model[m]}
            for m in sorted(per_model)
        ],
        "modes": [{"name": m, "outcomes": per_mode[m]} for m in sorted(per_mode)],
        "budgets": [
            {"budget": b, "outcomes": per_budget[b]}
            for b in sorted(per_budget, key=lambda b: (b is None, b or 0))
        ],
    }


def _print(console: Console, inv: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table

    def table(title: str, *headers: str) -> Table:
        t = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, title_justify="left")
        for i, header in enumerate(headers):
            t.add_column(header, justify="left" if i == 0 else "right", overflow="fold")
        return t

    datasets = table("datasets (-d)", "dataset", "problems", "models", "outcomes", "sources (runs)")
    for d in inv["datasets"]:
        sources = ", ".join(f"{s} ({n})" for s, n in d["sources"].items())
        datasets.add_row(
            d["name"], str(d["problems"]), str(d["models"]), str(d["outcomes"]), sources
        )
    datasets.columns[-1].justify = "left"
    models = table("models (-m)", "model", "datasets", "outcomes")
    for m in inv["models"]:
        models.add_row(m["name"], str(m["datasets"]), str(m["outcomes"]))
    modes = table("modes", "mode", "outcomes")
    for m in inv["modes"]:
        modes.add_row(m["name"], str(m["outcomes"]))
    budgets = table("budgets (tokens)", "budget", "outcomes")
    for b in inv["budgets"]:
        budgets.add_row("none" if b["budget"] is None else str(b["budget"]), str(b["outcomes"]))
    console.print(f"{inv['store']}: {inv['outcomes']} outcomes")
    for t in (datasets, models, modes, budgets):
        console.print(t)


def ls_command(store: StoreOption = None, json_: JsonOption = False) -> None:
    """List what the store holds: datasets, models, modes and budgets, with counts.

    The dataset and model names are the ones `-d` and `-m` accept in `ponder curves`,
    `ponder report` and `ponder evaluate`. A dataset's sources are the importers (presets)
    its runs came from, with how many runs each.

    \b
    Examples:
      ponder ls
      ponder ls --store /tmp/ponder.sqlite
      ponder ls --json | jq '.datasets[].name'
    """
    from ponder.cli._common import out_console

    with open_store(store) as st:
        inv = inventory(st)
    if json_:
        echo_json(inv)
        return
    if not inv["datasets"]:
        out_console().print(f"{inv['store']}: no outcomes yet (import some with `ponder import`)")
        return
    _print(out_console(), inv)
