"""`ponder export`: the outcome matrix as CSV or Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ponder.cli._common import StoreOption, open_store


def export_command(
    path: Annotated[Path, typer.Argument(help="Output file: .csv or .parquet.")],
    fmt: Annotated[str | None, typer.Option("--format", help="csv or parquet.")] = None,
    with_text: Annotated[bool, typer.Option("--with-text", help="Include response texts.")] = False,
    store: StoreOption = None,
) -> None:
    """Export the outcome matrix (one row per sample) for pandas, DuckDB or a spreadsheet.

    \b
    Examples:
      ponder export outcomes.parquet
      ponder export outcomes.csv --with-text
    """
    if fmt is not None and fmt not in ("csv", "parquet"):
        raise typer.BadParameter(f"{fmt!r}: expected csv or parquet", param_hint="--format")
    from ponder.store import export_outcomes

    with open_store(store) as st:
        n = export_outcomes(st, path, fmt=fmt, include_text=with_text)  # type: ignore[arg-type]
    typer.echo(f"wrote {n} rows to {path}")
