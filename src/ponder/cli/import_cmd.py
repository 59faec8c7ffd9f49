"""`ponder import`: recorded sweeps into the outcome store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ponder.cli._common import (
    JsonOption,
    StoreOption,
    echo_json,
    out_console,
    progress,
    store_path,
)

if TYPE_CHECKING:
    from ponder.importers import FileImport


def import_command(
    paths: Annotated[
        list[Path], typer.Argument(help="CSV/JSONL files, or folders of recorded sweeps.")
    ],
    preset: Annotated[
        str | None,
        typer.Option(help="Source format; detected from the columns when omitted."),
    ] = None,
    map_: Annotated[
        list[str] | None,
        typer.Option("--map", help="FIELD=COLUMN for your own files (repeatable)."),
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset name for mapped files.")] = None,
    model: Annotated[str | None, typer.Option(help="Model name when no column has it.")] = None,
    run: Annotated[str | None, typer.Option(help="Run label (default: the file name).")] = None,
    budget_kind: Annotated[
        str,
        typer.Option(help="How budgets were enforced: hard_cap, forced, effort, none."),
    ] = "unspecified",
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Replace stored runs that these files bring (a corrected file, or the same "
            "file under another mapping or run label), in the same transaction.",
        ),
    ] = False,
    store: StoreOption = None,
    json_: JsonOption = False,
) -> None:
    """Import recorded outcomes into the store: all files or nothing, re-imports add nothing.

    Every file is validated (and checked against the store) before anything is written; then
    all are written in one transaction, so a failure keeps nothing. A stored run that a file
    contradicts is refused unless you pass --replace.

    \b
    Examples:
      ponder import ../shared/data                      # every known recorded sweep
      ponder import sweep.csv --preset reasoning_budget_sweep
      ponder import mine.jsonl --map problem_id=item_id --map correct=is_right \\
          --map budget=max_tokens --dataset aime24 --budget-kind hard_cap
      ponder import fixed.csv --replace                 # a corrected file replaces its runs
    """
    from ponder.importers import import_into, parse_mapping

    mapping = parse_mapping(map_ or [])
    options: dict[str, object] = {"preset": preset, "budget_kind": budget_kind}
    if mapping or dataset or model or run:
        options.update(mapping=mapping, dataset=dataset, model=model, run=run)
    target = store_path(store)
    with progress() as bar:
        task = bar.add_task("importing", total=None)

        def on_file(stage: str, item: FileImport) -> None:
            bar.update(task, description=f"{stage} {item.path.name}", advance=1)

        results, counts = import_into(
            target,
            paths,
            on_file=on_file,
            replace=replace,
            **options,
        )
    records = [
        {
            "path": str(r.path),
            "preset": r.preset,
            "rows_read": r.result.outcomes_read if r.result else 0,
            "rows_added": r.result.outcomes_added if r.result else 0,
            "rows_replaced": r.result.outcomes_replaced if r.result else 0,
            "problems_added": r.result.problems_added if r.result else 0,
            "unchanged": r.unchanged,
            "notes": r.notes,
        }
        for r in results
    ]
    if json_:
        echo_json({"files": records, "store": str(target), "totals": counts})
        return
    from rich.table import Table

    table = Table(title=f"imported into {target}")
    for column in ("file", "preset", "rows read", "added", "already stored"):
        table.add_column(column, justify="left" if column == "file" else "right")
    for r in results:
        read = r.result.outcomes_read if r.result else 0
        added = r.result.outcomes_added if r.result else 0
        table.add_row(r.path.name, r.preset, str(read), str(added), str(read - added))
    console = out_console()
    console.print(table)
    replaced = sum(r.result.outcomes_replaced for r in results if r.result)
    if replaced:
        console.print(f"replaced {replaced} stored outcomes of the runs these files bring")
    for r in results:
        for note in r.notes:
            console.print(f"note ({r.path.name}): {note}")
    console.print(
        f"store now holds {counts['outcomes']} outcomes, {counts['problems']} problems, "
        f"{counts['runs']} runs"
    )


def fields_help() -> str:
    from ponder.importers import FIELDS

    return "\n".join(f"  {k:<17} {v}" for k, v in FIELDS.items())
