"""The token histogram side table: per cell, how many rows have each ``output_tokens`` value.

A cell's median and p90 tokens are order statistics, which sums and counts cannot give; an
exact histogram can, in memory that follows distinct lengths per cell (a few thousand), not
rows. Quantiles are then read from it with pandas' own formulas (``ponder.columnar.curves``),
so they are bit-equal to today's groupby by construction, which DuckDB's ``quantile_cont``
is not (docs/design/0009-columnar-analysis.md).

Computed two ways with the same result: ``histogram_from_frame`` (pandas groupby) and
``histogram_from_parquet`` (one DuckDB GROUP BY over the segments). Rows with unknown
tokens are left out (the statistics' ``out_n`` counts the known ones). Keys: ``dataset,
model, mode, budget`` (float64, NaN for no budget), ``output_tokens`` (int64); ``count``
(int64). Row order: keys ascending, no budget last.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ponder.columnar.stats import Cast, check_frame, group_by_sql, query_segments, typed_table

if TYPE_CHECKING:
    import duckdb

CELL_KEYS: tuple[str, ...] = ("dataset", "model", "mode", "budget")
HISTOGRAM_COLUMNS: tuple[str, ...] = (*CELL_KEYS, "output_tokens", "count")
# The histogram's keys: a cell and a length.
_KEYS: tuple[str, ...] = HISTOGRAM_COLUMNS[:-1]
# How each column is cast (``typed_table``), in the table's order.
_DTYPES: dict[str, Cast] = {
    "dataset": "text",
    "model": "text",
    "mode": "text",
    "budget": "number",
    "output_tokens": "whole",
    "count": "whole",
}


def histogram_from_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The token histogram of an outcome frame (``Store.outcomes_frame()``)."""
    check_frame(frame)
    tokens = pd.to_numeric(frame["output_tokens"]).astype("float64")
    known = tokens.notna().to_numpy()
    work = pd.DataFrame({k: frame[k].to_numpy()[known] for k in CELL_KEYS})
    work["output_tokens"] = tokens.to_numpy()[known]
    grouped = work.groupby(list(_KEYS), dropna=False, observed=True, sort=False)
    return finish_histogram(grouped.size().rename("count").reset_index())


def histogram_sql(where: str = "") -> str:
    """The GROUP BY over ``read_parquet($files)`` (every segment file listed, none globbed);
    ``where`` filters the rows further."""
    known = "output_tokens IS NOT NULL" + (f" AND {where}" if where else "")
    return group_by_sql(_KEYS, "count(*)::BIGINT AS count", known)


def histogram_from_parquet(
    root: str | Path,
    con: duckdb.DuckDBPyConnection | None = None,
    *,
    datasets: Sequence[str] | None = None,
    memory_limit: str | None = None,
    threads: int | None = None,
) -> pd.DataFrame:
    """The token histogram of the segments under ``root`` by one DuckDB GROUP BY.

    Files are checked as for ``stats_from_parquet``; ``con``, ``memory_limit`` and
    ``threads`` mean the same there.
    """
    out = query_segments(
        root,
        histogram_sql(),
        HISTOGRAM_COLUMNS,
        con,
        datasets=datasets,
        memory_limit=memory_limit,
        threads=threads,
    )
    return finish_histogram(out)


def finish_histogram(out: pd.DataFrame, *, sort: bool = True) -> pd.DataFrame:
    """One set of dtypes and one row order for both paths (``sort=False``: dtypes only)."""
    return typed_table(out, _DTYPES, _KEYS, sort=sort)
