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
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ponder.columnar.stats import check_frame, query_segments
from ponder.errors import InputError

if TYPE_CHECKING:
    import duckdb

CELL_KEYS: tuple[str, ...] = ("dataset", "model", "mode", "budget")
HISTOGRAM_COLUMNS: tuple[str, ...] = (*CELL_KEYS, "output_tokens", "count")
_TEXT_KEYS = ("dataset", "model", "mode")


def histogram_from_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The token histogram of an outcome frame (``Store.outcomes_frame()``)."""
    check_frame(frame)
    tokens = pd.to_numeric(frame["output_tokens"]).astype("float64")
    known = tokens.notna().to_numpy()
    work = pd.DataFrame({k: frame[k].to_numpy()[known] for k in CELL_KEYS})
    work["output_tokens"] = tokens.to_numpy()[known]
    grouped = work.groupby(list(HISTOGRAM_COLUMNS[:-1]), dropna=False, observed=True, sort=False)
    return _finish(grouped.size().rename("count").reset_index())


def histogram_sql() -> str:
    """The GROUP BY over ``read_parquet($files)`` (every segment file listed, none globbed)."""
    keys = ", ".join(HISTOGRAM_COLUMNS[:-1])
    return (
        f"SELECT {keys}, count(*)::BIGINT AS count FROM read_parquet($files, "
        "hive_partitioning = false, union_by_name = false) "
        "WHERE output_tokens IS NOT NULL GROUP BY ALL"
    )


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
    table = query_segments(
        root, histogram_sql(), con, datasets=datasets, memory_limit=memory_limit, threads=threads
    )
    if table is None:
        return _finish(pd.DataFrame({c: [] for c in HISTOGRAM_COLUMNS}))
    return _finish(table.to_pandas())


def _finish(out: pd.DataFrame) -> pd.DataFrame:
    """One set of dtypes and one row order for both paths."""
    columns: dict[str, Any] = {}
    for key in _TEXT_KEYS:
        columns[key] = out[key].reset_index(drop=True).astype("str")
    columns["budget"] = pd.to_numeric(out["budget"].reset_index(drop=True)).astype("float64")
    for name in ("output_tokens", "count"):
        columns[name] = _whole(name, out[name].reset_index(drop=True))
    result = pd.DataFrame(columns, index=pd.RangeIndex(len(out)))[list(HISTOGRAM_COLUMNS)]
    order = list(HISTOGRAM_COLUMNS[:-1])
    return result.sort_values(order, na_position="last").reset_index(drop=True)


def _whole(name: str, values: pd.Series[Any]) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Token lengths and counts as int64; a fractional token count is bad input."""
    floats = pd.to_numeric(values).astype("float64").to_numpy()
    if not (np.isfinite(floats).all() and np.array_equal(floats, np.round(floats))):
        raise InputError("not integer-valued", field=name)
    return floats.astype(np.int64)
