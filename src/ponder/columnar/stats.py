"""The sufficient-statistics table: one row per problem x configuration x sample flag.

Most analyses (cell accuracy and its bootstrap, pass@k, difficulty, oracle and router
policies, cost) need only per-group counts and sums, so memory follows groups, not rows
(docs/design/0009-columnar-analysis.md). The table is computed two ways with the same result:
``stats_from_frame`` (a pandas groupby of today's ``Store.outcomes_frame()``) and
``stats_from_parquet`` (one DuckDB GROUP BY over the Parquet segments). Both end in the same
finishing step (dtypes, key order), so the integer-valued columns are equal exactly; the two
float sums (``correct_sum`` of aggregated rows, ``latency_sum``) may differ in the last bits
from summation order.

Keys: ``dataset, problem_id, model, mode, budget`` (float64, NaN for no budget, as in the
frame), ``budget_kind``, ``sample`` (``n_runs == 1``). Columns: ``rows``; for a column X,
``X_n`` counts its non-NULL values and ``X_sum`` sums them (0 when there are none). ``hits``
counts ``correct == 1``. Beyond the design's list, ``prompt_n``, ``reasoning_n`` and
``answer_n`` say how many rows the prompt/reasoning/answer token sums cover (otherwise a sum of
0 could mean "unknown").
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from ponder.columnar.segments import check_segment, list_segments
from ponder.errors import InputError, StoreError

if TYPE_CHECKING:
    import duckdb

KEYS: tuple[str, ...] = (
    "dataset",
    "problem_id",
    "model",
    "mode",
    "budget",
    "budget_kind",
    "sample",
)
_TEXT_KEYS = ("dataset", "problem_id", "model", "mode", "budget_kind")
# name -> (how, source column): "rows" counts rows, "count" non-NULL values, "sum" sums them
# (integer-valued), "fsum" sums floats, "hits" counts correct == 1.
STATS: dict[str, tuple[str, str]] = {
    "rows": ("rows", "correct"),
    "correct_n": ("count", "correct"),
    "correct_sum": ("fsum", "correct"),
    "hits": ("hits", "correct"),
    "out_n": ("count", "output_tokens"),
    "out_sum": ("sum", "output_tokens"),
    "prompt_n": ("count", "prompt_tokens"),
    "prompt_sum": ("sum", "prompt_tokens"),
    "reasoning_n": ("count", "reasoning_tokens"),
    "reasoning_sum": ("sum", "reasoning_tokens"),
    "answer_n": ("count", "answer_tokens"),
    "answer_sum": ("sum", "answer_tokens"),
    "truncated_n": ("count", "truncated"),
    "truncated_sum": ("sum", "truncated"),
    "answered_n": ("count", "answered"),
    "answered_sum": ("sum", "answered"),
    "latency_n": ("count", "latency_s"),
    "latency_sum": ("fsum", "latency_s"),
}
FLOAT_STATS: tuple[str, ...] = tuple(n for n, (how, _) in STATS.items() if how == "fsum")
INT_STATS: tuple[str, ...] = tuple(n for n in STATS if n not in FLOAT_STATS)
COLUMNS: tuple[str, ...] = (*KEYS, *STATS)
# How each finished column is cast (``typed_table``).
Cast = Literal["text", "number", "float", "flag", "whole"]
_DTYPES: dict[str, Cast] = {
    **{k: "text" if k in _TEXT_KEYS else "number" if k == "budget" else "flag" for k in KEYS},
    **{n: "float" if n in FLOAT_STATS else "whole" for n in STATS},
}
# What ponder's DuckDB work may hold before it spills to disk (``$PONDER_DUCKDB_MEMORY``).
MEMORY_ENV = "PONDER_DUCKDB_MEMORY"
DEFAULT_MEMORY_LIMIT = "1GB"
_SPILL: str | None = None
_MEMORY = re.compile(r"\d+(\.\d+)?\s*(B|[KMGT]i?B)", re.IGNORECASE)


def stats_from_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The statistics of an outcome frame (``Store.outcomes_frame()``) by pandas groupby."""
    check_frame(frame)
    work = pd.DataFrame({k: frame[k] for k in KEYS if k != "sample"})
    work["sample"] = frame["n_runs"].to_numpy() == 1
    for column in {c for _, c in STATS.values()}:
        work[column] = frame[column]
    work["hit"] = frame["correct"].to_numpy() == 1.0
    pandas_how = {"rows": "size", "count": "count", "sum": "sum", "fsum": "sum", "hits": "sum"}
    named = {
        name: ("hit" if how == "hits" else column, pandas_how[how])
        for name, (how, column) in STATS.items()
    }
    grouped = work.groupby(list(KEYS), dropna=False, observed=True, sort=False)
    out = grouped.agg(**named).reset_index()
    return finish_stats(out)


def check_frame(frame: pd.DataFrame) -> None:
    """Refuse rows no store holds: derived caps, and ``n_runs`` missing or below 1 (the
    importers' rule; with it, the statistics' samples, ``n_runs = 1``, are the curves'
    samples, ``n_runs <= 1``)."""
    refuse_derived(frame)
    if "n_runs" not in frame.columns:
        raise InputError("missing column", field="n_runs")
    runs = pd.to_numeric(frame["n_runs"], errors="coerce").astype("float64").to_numpy()
    below = int((~(runs >= 1)).sum())
    if below:
        raise InputError(f"{below} rows have n_runs missing or below 1", field="n_runs")


def refuse_derived(frame: pd.DataFrame) -> None:
    """Derived-cap rows (``ponder.curves.derived``) are functions of other rows' lengths, not
    recorded outcomes: counted here they would pass for recorded cells, so they are refused."""
    if "derived" in frame.columns and frame["derived"].fillna(False).astype(bool).any():
        raise InputError(
            "the frame holds derived-cap rows; the statistics are of recorded outcomes only "
            "(derive caps from the rows, e.g. compute_curves(derive=True), not from statistics)"
        )


def connect(
    *, memory_limit: str | None = None, threads: int | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with ponder's limits: ``memory_limit`` (None:
    ``$PONDER_DUCKDB_MEMORY``, else 1GB, not DuckDB's 80% of RAM) and a private folder of
    this process's temporary directory to spill into beyond it (not DuckDB's ``.tmp`` in the
    working directory), removed when the process exits."""
    try:
        import duckdb
    except ImportError as exc:
        raise InputError(
            "DuckDB is not installed (a dependency of ponder): pip install duckdb"
        ) from exc
    con = duckdb.connect()
    con.execute(f"SET temp_directory = '{_spill_folder()}'")
    if memory_limit is None:
        memory_limit = os.environ.get(MEMORY_ENV) or DEFAULT_MEMORY_LIMIT
    configure(con, memory_limit=memory_limit, threads=threads)
    return con


def _spill_folder() -> str:
    """This process's folder for DuckDB to spill into, made on first use."""
    global _SPILL
    if _SPILL is None:
        _SPILL = tempfile.mkdtemp(prefix="ponder-duckdb-")
        atexit.register(shutil.rmtree, _SPILL, ignore_errors=True)
    return _SPILL.replace("'", "''")


def configure(
    con: duckdb.DuckDBPyConnection,
    *,
    memory_limit: str | None = None,
    threads: int | None = None,
) -> None:
    """Set DuckDB's memory limit (e.g. ``"1GB"``; it spills beyond) and worker threads."""
    if memory_limit is not None:
        if not _MEMORY.fullmatch(memory_limit.strip()):
            raise InputError(f"memory limit {memory_limit!r} is not a size like '512MB' or '2GiB'")
        con.execute(f"SET memory_limit = '{memory_limit.strip()}'")
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise InputError(f"threads must be a whole number >= 1, not {threads!r}")
        con.execute(f"SET threads = {threads}")


def stats_sql(where: str = "") -> str:
    """The GROUP BY over ``read_parquet($files)``: every segment file listed, none globbed;
    ``where`` filters the rows (one batch of ``ponder.columnar.batched``)."""
    parts = []
    for name, (how, column) in STATS.items():
        expr = {
            "rows": "count(*)::BIGINT",
            "count": f"count({column})::BIGINT",
            "sum": f"coalesce(sum({column}), 0)::BIGINT",
            "fsum": f"coalesce(fsum({column}), 0)::DOUBLE",
            "hits": f"count_if({column} = 1)::BIGINT",
        }[how]
        parts.append(f'{expr} AS "{name}"')
    return group_by_sql(KEYS, ", ".join(parts), where)


def group_by_sql(keys: Sequence[str], aggregates: str, where: str = "") -> str:
    """``SELECT keys, aggregates`` grouped by the keys over ``read_parquet($files)``, the one
    reader of every side table (each segment file listed, none globbed, no hive columns); the
    key ``sample`` is ``n_runs = 1``."""
    selected = ", ".join("n_runs = 1 AS sample" if k == "sample" else k for k in keys)
    filtered = f"WHERE {where} " if where else ""
    return (
        f"SELECT {selected}, {aggregates} FROM read_parquet($files, "
        f"hive_partitioning = false, union_by_name = false) {filtered}GROUP BY ALL"
    )


def stats_from_parquet(
    root: str | Path,
    con: duckdb.DuckDBPyConnection | None = None,
    *,
    datasets: Sequence[str] | None = None,
    memory_limit: str | None = None,
    threads: int | None = None,
) -> pd.DataFrame:
    """The statistics of the segments under ``root`` by one DuckDB GROUP BY.

    Every file's footer is checked first (a damaged or foreign one is a one-line
    ``StoreError`` naming it) and DuckDB reads exactly the files checked. ``memory_limit`` and
    ``threads`` are applied to ``con`` when given (a new in-memory connection otherwise).
    """
    out = query_segments(
        root,
        stats_sql(),
        COLUMNS,
        con,
        datasets=datasets,
        memory_limit=memory_limit,
        threads=threads,
    )
    return finish_stats(out)


def query_segments(
    root: str | Path,
    sql: str,
    columns: Sequence[str],
    con: duckdb.DuckDBPyConnection | None = None,
    *,
    datasets: Sequence[str] | None = None,
    memory_limit: str | None = None,
    threads: int | None = None,
) -> pd.DataFrame:
    """``sql`` (reading ``read_parquet($files)``) over the checked segment files, as a pandas
    frame; with no segment (DuckDB cannot read an empty file list), an empty frame of
    ``columns``, so every path's finishing step gives its dtypes either way."""
    files = checked_segments(root, datasets)
    if not files:
        return pd.DataFrame({c: [] for c in columns})
    own = con is None
    db = connect(memory_limit=memory_limit, threads=threads) if con is None else con
    if not own:
        configure(db, memory_limit=memory_limit, threads=threads)
    try:
        table = run_query(db, sql, {"files": [str(p) for p in files]}, root)
    finally:
        if own:
            db.close()
    frame: pd.DataFrame = table.to_pandas()
    return frame


def checked_segments(root: str | Path, datasets: Sequence[str] | None = None) -> list[Path]:
    """The segment files under ``root`` (of ``datasets`` when given), each footer checked: a
    damaged or foreign one is a one-line ``StoreError`` naming it."""
    files = list_segments(root, datasets)
    for path in files:
        check_segment(path)
    return files


def run_query(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any], root: Any) -> Any:
    import duckdb

    try:
        relation = con.sql(sql, params=params)
        if relation is None:  # only for statements that return nothing
            raise StoreError(f"{root}: the statistics query returned nothing")
        return relation.to_arrow_table()
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreError(f"{root}: cannot aggregate the segments ({first})") from exc


def finish_stats(out: pd.DataFrame, *, sort: bool = True) -> pd.DataFrame:
    """One set of dtypes and one row order (keys ascending, no budget last) for both paths
    (``sort=False``: the dtypes only, rows as they come)."""
    return typed_table(out, _DTYPES, KEYS, sort=sort)


def typed_table(
    out: pd.DataFrame, dtypes: Mapping[str, Cast], order: Sequence[str], *, sort: bool = True
) -> pd.DataFrame:
    """The columns of ``dtypes``, each cast as it says, rows sorted by ``order`` (missing
    values last): the finishing step that makes a table's pandas and DuckDB paths equal.
    ``sort=False`` leaves the rows as they come, for consumers whose results do not depend
    on the order (sorting strings is most of this step's time)."""
    columns = {
        name: _cast(name, out[name].reset_index(drop=True), how) for name, how in dtypes.items()
    }
    result = pd.DataFrame(columns, index=pd.RangeIndex(len(out)))
    if not sort:
        return result
    return result.sort_values(list(order), na_position="last").reset_index(drop=True)


def _cast(name: str, values: pd.Series[Any], how: Cast) -> Any:
    """``text``: str; ``number``: parsed to float64 (NaN kept); ``float``: float64;
    ``flag``: bool; ``whole``: checked int64."""
    if how == "text":
        return values.astype("str")
    if how == "number":
        return pd.to_numeric(values).astype("float64")
    if how == "float":
        return values.astype("float64")
    if how == "flag":
        return values.astype(bool)
    return _whole(name, values)


def _whole(name: str, values: pd.Series[Any]) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Integer-valued sums and counts as int64; a fractional token count is bad input, not
    rounded."""
    if values.dtype == np.int64:  # DuckDB's BIGINT counts and sums: nothing to check
        return np.asarray(values.to_numpy(), dtype=np.int64)
    floats = pd.to_numeric(values).astype("float64").to_numpy()
    if not (np.isfinite(floats).all() and np.array_equal(floats, np.round(floats))):
        raise InputError("not integer-valued", field=name)
    return floats.astype(np.int64)
