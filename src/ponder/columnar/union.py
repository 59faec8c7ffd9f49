"""The outcome frame's rows that live in segments, shaped like the rows read from SQLite.

``Store.outcomes_frame`` serves every analysis that needs rows in memory (the claims, the
report, exports, policies over several datasets). A store's rows are in SQLite and in its
committed segments (bulk imports, compactions); this reads the segments' part with the same
filters, columns, dtypes and joins as ``ponder.store.frame.read_outcomes_frame``: rows whose
run is not stored are left out, ``level`` and ``subject`` come from ``problems``, the claims'
experiment rows only on request. The segments are listed by the caller in the same read
transaction as its SQLite rows, so a row is neither missed nor read twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ponder.columnar.catalog import Segment, check_listed
from ponder.columnar.segments import first_line
from ponder.errors import StoreError
from ponder.store.frame import EXPERIMENT_RUN_PREFIX, INT_COLUMNS, to_float


def segment_frame(
    root: Path,
    segments: Sequence[Segment],
    columns: Sequence[str],
    *,
    runs: Mapping[str, Any],
    problems: Mapping[tuple[str, str], tuple[Any, Any]],
    models: Sequence[str] | None = None,
    experiments: bool = False,
) -> pd.DataFrame:
    """The rows of ``segments`` as frame ``columns`` (in that order): numbers float64 with NaN
    for NULL (``INT_COLUMNS`` int64), text as pandas strings; ``level`` and ``subject`` from
    ``problems`` ((dataset, problem_id) -> (level, subject)); only rows whose run is in
    ``runs`` (and of ``models`` when given)."""
    stored = [c for c in columns if c not in ("level", "subject")]
    tables = [_rows(root / s.path, s, stored, runs, models, experiments) for s in segments]
    table = pa.concat_tables(tables) if tables else None
    if table is None or table.num_rows == 0:
        return pd.DataFrame({c: pd.Series(dtype=_empty_dtype(c)) for c in columns})
    out: dict[str, Any] = {}
    for name in stored:
        values = table.column(name)
        if pa.types.is_string(values.type):
            out[name] = values.to_pandas()
        elif name in INT_COLUMNS:
            out[name] = np.asarray(pc.cast(values, pa.int64()), dtype=np.int64)
        else:
            floats = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
            out[name] = np.asarray(floats, dtype=np.float64)
    frame = pd.DataFrame(out)
    if "level" in columns or "subject" in columns:
        _join_problems(frame, problems)
    return frame[list(columns)]


def segment_counts(
    root: Path, segments: Sequence[Segment], keys: Sequence[str], experiments: bool = True
) -> Counter[tuple[Any, ...]]:
    """Rows per distinct value of ``keys`` in ``segments`` (NULL is a value), one file at a
    time (only the key columns are read); without ``experiments``, but the claims' rows."""
    counts: Counter[tuple[Any, ...]] = Counter()
    for segment in segments:
        path = root / segment.path
        check_listed(path, segment)
        read = list(dict.fromkeys([*keys, "run_id"])) if not experiments else list(keys)
        try:
            table = pq.read_table(path, columns=read)
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"{path}: cannot read the segment ({first_line(exc)})") from exc
        if not experiments:
            claims = pc.starts_with(table.column("run_id"), EXPERIMENT_RUN_PREFIX)
            table = table.filter(pc.invert(claims)).select(list(keys))
        grouped = table.group_by(list(keys)).aggregate([([], "count_all")])
        values = [grouped.column(k).to_pylist() for k in keys]
        sizes = grouped.column("count_all").to_pylist()
        for key, n in zip(zip(*values, strict=True), sizes, strict=True):
            counts[key] += int(n)
    return counts


def _rows(
    path: Path,
    segment: Segment,
    columns: Sequence[str],
    runs: Mapping[str, Any],
    models: Sequence[str] | None,
    experiments: bool,
) -> pa.Table:
    check_listed(path, segment)
    try:
        table = pq.read_table(path, columns=list(columns))
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"{path}: cannot read the segment ({first_line(exc)})") from exc
    run_id = table.column("run_id")
    keep = pc.is_in(run_id, pa.array(sorted(runs), pa.string()))
    if models:
        keep = pc.and_(keep, pc.is_in(table.column("model"), pa.array(list(models))))
    if not experiments:
        keep = pc.and_(keep, pc.invert(pc.starts_with(run_id, EXPERIMENT_RUN_PREFIX)))
    return table.filter(keep)


def _join_problems(
    frame: pd.DataFrame, problems: Mapping[tuple[str, str], tuple[Any, Any]]
) -> None:
    """``level`` (a number, NaN when unknown) and ``subject`` of each row's problem, looked
    up once per distinct (dataset, problem_id)."""
    keys = pd.MultiIndex.from_arrays([frame["dataset"], frame["problem_id"]])
    codes, uniques = pd.factorize(keys)
    found = [problems.get((str(d), str(p)), (None, None)) for d, p in uniques]
    level = to_float(np.array([f[0] for f in found] + [None], dtype=object))
    subject = pd.array([f[1] for f in found] + [None], dtype="str")
    frame["level"] = level[codes]
    frame["subject"] = subject[codes]


def _empty_dtype(column: str) -> Any:
    if column in INT_COLUMNS:
        return np.int64
    if column in ("run_id", "dataset", "problem_id", "model", "mode", "budget_kind"):
        return "str"
    if column in ("extracted_answer", "subject", "chain_id", "response_text"):
        return "str"
    return np.float64
