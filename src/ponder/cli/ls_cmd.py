"""`ponder ls`: what the store holds, by the names `-d` and `-m` take."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ponder.cli._common import JsonOption, StoreOption, echo_json, open_store, store_query

if TYPE_CHECKING:
    from rich.console import Console

    from ponder.store import Store


def inventory(st: Store) -> dict[str, Any]:
    """Datasets (with their sources and runs), models, modes and budgets, with counts.

    Counts come from SQL GROUP BYs, so listing a store of a million outcomes stays quick.
    """
    datasets: dict[str, dict[str, Any]] = {}
    for name, outcomes, problems, models, runs in store_query(
        st,
        "SELECT dataset, COUNT(*), COUNT(DISTINCT problem_id), COUNT(DISTINCT model), "
        "COUNT(DISTINCT run_id) FROM outcomes GROUP BY dataset ORDER BY dataset",
    ):
        datasets[name] = {
            "name": name,
            "sources": {},
            "runs": runs,
            "problems": problems,
            "models": models,
            "outcomes": outcomes,
        }
    for name, source, runs in store_query(
        st,
        "SELECT o.dataset, r.source, COUNT(DISTINCT o.run_id) FROM outcomes o "
        "JOIN runs r ON r.run_id = o.run_id GROUP BY o.dataset, r.source "
        "ORDER BY o.dataset, r.source",
    ):
        datasets[name]["sources"][source] = runs
    models = [
        {"name": name, "datasets": n_datasets, "outcomes": outcomes}
        for name, n_datasets, outcomes in store_query(
            st,
            "SELECT model, COUNT(DISTINCT dataset), COUNT(*) FROM outcomes "
            "GROUP BY model ORDER BY model",
        )
    ]
    modes = [
        {"name": name, "outcomes": outcomes}
        for name, outcomes in store_query(
            st, "SELECT mode, COUNT(*) FROM outcomes GROUP BY mode ORDER BY mode"
        )
    ]
    budgets = [
        {"budget": budget, "outcomes": outcomes}
        for budget, outcomes in store_query(
            st,
            "SELECT budget, COUNT(*) FROM outcomes GROUP BY budget ORDER BY budget IS NULL, budget",
        )
    ]
    return {
        "store": str(st.path),
        "outcomes": sum(d["outcomes"] for d in datasets.values()),
        "datasets": list(datasets.values()),
        "models": models,
        "modes": modes,
        "budgets": budgets,
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
