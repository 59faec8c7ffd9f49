"""Export the outcome frame to CSV or Parquet, for pandas, DuckDB or a spreadsheet."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from ponder.errors import InputError
from ponder.store.sqlite import Store

ExportFormat = Literal["csv", "parquet"]


def export_outcomes(
    store: Store,
    path: str | Path,
    *,
    fmt: ExportFormat | None = None,
    include_text: bool = False,
) -> int:
    """Write the outcome frame to `path` (format from `fmt` or the suffix); returns row count.

    Writes to a temporary file first so an interrupted export never leaves a partial file.
    """
    target = Path(path)
    chosen = fmt or ("parquet" if target.suffix in (".parquet", ".pq") else None)
    if chosen is None and target.suffix == ".csv":
        chosen = "csv"
    if chosen not in ("csv", "parquet"):
        raise InputError(
            "cannot tell the export format: use a .csv or .parquet suffix or --format",
            path=target,
        )
    frame = store.outcomes_frame(include_text=include_text)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    if chosen == "csv":
        frame.to_csv(tmp, index=False)
    else:
        frame.to_parquet(tmp, index=False)
    os.replace(tmp, target)
    return len(frame)
