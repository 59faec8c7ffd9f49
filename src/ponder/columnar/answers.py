"""The answer-count side table: per cell, problem and normalized answer, how many samples
gave that answer and whether it was graded right.

maj@k needs each (cell, problem)'s vote profile, which sums cannot give, but no sample order
(docs/design/0009-columnar-analysis.md): counts per answer suffice. ``normalize`` (the
function ``ponder curves`` uses, ``ponder.grading.normalize_answer``, unless told otherwise)
is applied once per distinct raw answer (``normalize_distinct``, as maj@k does on rows), and
the counts of raw answers that normalize alike are merged: by pandas after grouping the raw
answers (``answers_from_frame``), or inside DuckDB, which groups the segments' rows by the
normalized answer through a join with the table of distinct raw answers and their forms
(``answers_from_parquet``: no per-raw-answer table comes back to Python).

Keys: ``dataset, problem_id, model, mode, budget`` (float64, NaN for no budget), ``sample``
(``n_runs = 1``), ``answer`` (the normalized answer; missing when the sample has none or it
normalizes to nothing: no vote), ``answered`` (float64, NaN for NULL). Columns: ``rows``,
``correct_n`` (rows with a known ``correct``) and ``right`` (some row with ``correct = 1``).
Row order: keys ascending, missing values last.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ponder.columnar.stats import (
    Cast,
    check_frame,
    checked_segments,
    configure,
    connect,
    group_by_sql,
    run_query,
    typed_table,
)
from ponder.curves._frame import require_columns
from ponder.curves.passk import normalize_distinct
from ponder.grading import normalize_answer

if TYPE_CHECKING:
    import duckdb

ANSWER_KEYS: tuple[str, ...] = (
    "dataset",
    "problem_id",
    "model",
    "mode",
    "budget",
    "sample",
    "answer",
    "answered",
)
ANSWER_COLUMNS: tuple[str, ...] = (*ANSWER_KEYS, "rows", "correct_n", "right")
# The raw table's keys: the recorded answer in place of the normalized one.
_RAW_KEYS = tuple("extracted_answer" if k == "answer" else k for k in ANSWER_KEYS)
# How each column is cast (``typed_table``), in the table's order.
_DTYPES: dict[str, Cast] = {
    "dataset": "text",
    "problem_id": "text",
    "model": "text",
    "mode": "text",
    "budget": "number",
    "sample": "flag",
    "answer": "text",
    "answered": "number",
    "rows": "whole",
    "correct_n": "whole",
    "right": "flag",
}


def answers_from_frame(
    frame: pd.DataFrame, normalize: Callable[[str], str] = normalize_answer
) -> pd.DataFrame:
    """The answer counts of an outcome frame (``Store.outcomes_frame()``) by pandas groupby."""
    check_frame(frame)
    require_columns(frame, ["extracted_answer", "answered"], "the answer counts")
    work = pd.DataFrame({k: frame[k] for k in _RAW_KEYS if k != "sample"})
    work["sample"] = frame["n_runs"].to_numpy() == 1
    work["correct"] = frame["correct"]
    work["hit"] = frame["correct"].to_numpy() == 1.0
    grouped = work.groupby(list(_RAW_KEYS), dropna=False, observed=True, sort=False)
    raw = grouped.agg(
        rows=("correct", "size"), correct_n=("correct", "count"), right=("hit", "any")
    ).reset_index()
    return normalized_answers(raw, normalize)


def answers_sql(where: str = "") -> str:
    """The raw GROUP BY over ``read_parquet($files)`` (every segment file listed, none
    globbed): counts per recorded answer, normalized afterwards by ``normalized_answers``."""
    return group_by_sql(
        _RAW_KEYS,
        "count(*)::BIGINT AS rows, count(correct)::BIGINT AS correct_n, "
        "coalesce(bool_or(correct = 1), false) AS right",
        where,
    )


def answers_from_parquet(
    root: str | Path,
    con: duckdb.DuckDBPyConnection | None = None,
    *,
    datasets: Sequence[str] | None = None,
    normalize: Callable[[str], str] = normalize_answer,
    memory_limit: str | None = None,
    threads: int | None = None,
) -> pd.DataFrame:
    """The answer counts of the segments under ``root``: Python normalizes each distinct raw
    answer once, DuckDB groups the rows by the normalized one (a join with that mapping), so
    no per-raw-answer table comes back. Files, ``con``, ``memory_limit`` and ``threads`` as
    for ``stats_from_parquet``."""
    files = [str(p) for p in checked_segments(root, datasets)]
    if not files:
        return finish_answers(pd.DataFrame({c: [] for c in ANSWER_COLUMNS}))
    db = connect(memory_limit=memory_limit, threads=threads) if con is None else con
    if con is not None:
        configure(db, memory_limit=memory_limit, threads=threads)
    try:
        raw = run_query(db, DISTINCT_ANSWERS_SQL, {"files": files}, root)
        forms = answer_forms(raw.column(0).to_pylist(), normalize)
        out = grouped_answers(db, forms, {"files": files}, root)
    finally:
        if con is None:
            db.close()
    return out


# The distinct recorded answers of ``read_parquet($files)``.
DISTINCT_ANSWERS_SQL = (
    "SELECT DISTINCT extracted_answer FROM read_parquet($files, hive_partitioning = false, "
    "union_by_name = false) WHERE extracted_answer IS NOT NULL"
)


def answer_forms(raw: Sequence[str | None], normalize: Callable[[str], str]) -> pa.Table:
    """Each distinct raw answer with its normalized form (NULL when it normalizes to
    nothing: no vote), by ``normalize_distinct`` as the frame path normalizes them."""
    values = pd.Series([r for r in raw if r is not None], dtype=object)
    codes, forms = normalize_distinct(values, normalize)
    normalized = [forms[c] if c >= 0 else None for c in codes.tolist()]
    return pa.table(
        {"raw": pa.array(values.tolist(), pa.string()), "answer": pa.array(normalized, pa.string())}
    )


def grouped_answers(
    con: duckdb.DuckDBPyConnection,
    forms: pa.Table,
    params: dict[str, Any],
    root: Any,
    where: str = "",
    *,
    sort: bool = True,
) -> pd.DataFrame:
    """The answer table of ``read_parquet($files)`` (rows filtered by ``where``), grouped by
    the normalized answer inside DuckDB: the counts ``normalized_answers`` would merge
    (``sort=False``: rows as DuckDB gives them)."""
    name = f"ponder_answer_forms_{uuid.uuid4().hex}"
    con.register(name, forms)
    try:
        table = run_query(con, mapped_answers_sql(name, where), params, root)
    finally:
        con.unregister(name)
    return finish_answers(table.to_pandas(), sort=sort)


def mapped_answers_sql(forms: str, where: str = "") -> str:
    """The answer table's GROUP BY with each recorded answer replaced by its normalized form
    (a LEFT JOIN with the view ``forms``: no answer stays NULL)."""
    keys = ", ".join(
        {"sample": "n_runs = 1 AS sample", "answer": "f.answer AS answer"}.get(k, f"r.{k}")
        for k in ANSWER_KEYS
    )
    filtered = f"WHERE {where} " if where else ""
    return (
        f"SELECT {keys}, count(*)::BIGINT AS rows, count(r.correct)::BIGINT AS correct_n, "
        "coalesce(bool_or(r.correct = 1), false) AS right "
        "FROM read_parquet($files, hive_partitioning = false, union_by_name = false) AS r "
        f"LEFT JOIN {forms} AS f ON r.extracted_answer = f.raw {filtered}GROUP BY ALL"
    )


def normalized_answers(raw: pd.DataFrame, normalize: Callable[[str], str]) -> pd.DataFrame:
    """Counts per raw answer merged into counts per normalized answer (both paths' last step)."""
    codes, forms = normalize_distinct(raw["extracted_answer"], normalize)
    answer = np.asarray([*forms, None], dtype=object)[codes]  # code -1: the appended None
    work = raw.drop(columns="extracted_answer").assign(answer=answer)
    work["right"] = work["right"].astype(bool)
    grouped = work.groupby(list(ANSWER_KEYS), dropna=False, observed=True, sort=False)
    merged = grouped.agg(
        rows=("rows", "sum"), correct_n=("correct_n", "sum"), right=("right", "any")
    )
    return finish_answers(merged.reset_index())


def finish_answers(out: pd.DataFrame, *, sort: bool = True) -> pd.DataFrame:
    """One set of dtypes and one row order for both paths (``sort=False``: dtypes only)."""
    return typed_table(out, _DTYPES, ANSWER_KEYS, sort=sort)
