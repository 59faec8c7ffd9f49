"""`ponder compact`: copy the store's outcome rows into Parquet segments."""

from __future__ import annotations

from typing import Any

from ponder.cli._common import JsonOption, StoreOption, echo_json, err_console, store_path


def compact_command(store: StoreOption = None, json_: JsonOption = False) -> None:
    """Copy the outcome rows not yet in a segment into Parquet segments, one per dataset.

    Analyses of a large store (`ponder curves`, `evaluate`, `report`, `claims`) then compute
    with DuckDB from the segments, a batch at a time, instead of loading every row into
    memory (docs/scale.md). The rows stay in SQLite, which remains the commit point; running
    it again copies only the rows added since (after `--replace` deleted some, it rebuilds).
    Sweeps and imports may write meanwhile; a second compaction at the same time is refused.
    Files left by a crashed compaction are removed first.

    \b
    Examples:
      ponder compact
      ponder compact --store big.sqlite --json
    """
    from ponder.cli._common import out_console
    from ponder.columnar.compaction import compact

    path = store_path(store)
    with err_console.status(f"compacting {path}"):
        result = compact(path)
    report: dict[str, Any] = {
        "store": str(path),
        "rows": result.rows,
        "rowid_first": result.rowid_first,
        "rowid_last": result.rowid_last,
        "segments": [
            {"path": s.path, "dataset": s.dataset, "rows": s.rows, "bytes": s.bytes}
            for s in result.segments
        ],
        "removed_leftovers": [str(p) for p in result.removed],
        "rebuilt": [str(p) for p in result.replaced],
    }
    if json_:
        echo_json(report)
        return
    console = out_console()
    if result.rows == 0:
        console.print(f"{path}: every outcome row is already in a segment")
    else:
        datasets = ", ".join(f"{s.dataset} ({s.rows:,})" for s in result.segments)
        console.print(
            f"{path}: copied {result.rows:,} rows into {len(result.segments)} segment(s): "
            f"{datasets}"
        )
    if result.replaced:
        console.print(f"rebuilt after deletes: {len(result.replaced)} old segment(s) replaced")
    if result.removed:
        console.print(f"removed {len(result.removed)} file(s) left by a crashed write")
