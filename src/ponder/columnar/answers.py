"""The answer-count side table: per cell, problem and normalized answer, how many samples
gave that answer and whether it was graded right.

maj@k needs each (cell, problem)'s vote profile, which sums cannot give, but no sample order
(docs/design/0009-columnar-analysis.md): counts per answer suffice. The raw answers are
grouped first, by pandas (``answers_from_frame``) or one DuckDB GROUP BY over the segments
(``answers_from_parquet``); then both paths run the same step: ``normalize`` (the function
``ponder curves`` uses, ``ponder.grading.normalize_answer``, unless told otherwise) is
applied once per distinct raw answer, as maj@k does on rows, and the counts of raw answers
that normalize alike are merged.

Keys: ``dataset, problem_id, model, mode, budget`` (float64, NaN for no budget), ``sample``
(``n_runs = 1``), ``answer`` (the normalized answer; missing when the sample has none or it
normalizes to nothing: no vote), ``answered`` (float64, NaN for NULL). Columns: ``rows``,
``correct_n`` (rows with a known ``correct``) and ``right`` (some row with ``correct = 1``).
Row order: keys ascending, missing values last.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ponder.columnar.stats import Cast, check_frame, group_by_sql, query_segments, typed_table
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


def answers_sql() -> str:
    """The GROUP BY over ``read_parquet($files)`` (every segment file listed, none globbed)."""
    return group_by_sql(
        _RAW_KEYS,
        "count(*)::BIGINT AS rows, count(correct)::BIGINT AS correct_n, "
        "coalesce(bool_or(correct = 1), false) AS right",
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
    """The answer counts of the segments under ``root``: DuckDB groups the raw answers,
    Python normalizes each distinct one. Files, ``con``, ``memory_limit`` and ``threads``
    as for ``stats_from_parquet``."""
    raw = query_segments(
        root,
        answers_sql(),
        (*_RAW_KEYS, "rows", "correct_n", "right"),
        con,
        datasets=datasets,
        memory_limit=memory_limit,
        threads=threads,
    )
    return normalized_answers(raw, normalize)


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
    return _finish(merged.reset_index())


def _finish(out: pd.DataFrame) -> pd.DataFrame:
    """One set of dtypes and one row order for both paths."""
    return typed_table(out, _DTYPES, ANSWER_KEYS)
