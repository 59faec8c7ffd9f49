"""Outcome rows as Parquet segments: ``<root>/outcomes/dataset=<name>/<segment-id>.parquet``.

A segment is immutable: one zstd file per dataset per write, with the store's outcome columns,
the signal columns of live sweeps and ``budget_kind`` (denormalised from ``runs``) under one
explicit Arrow schema (``SEGMENT_SCHEMA``). SQLite's INTEGER columns become int32 (int8 for the
0/1 flags), REAL stays float64, TEXT is string; rows are cast with Arrow's safe casts, so a value
that would not come back exactly (2**31 tokens, a budget of 1.5) is refused, never rounded.

A file is written under a hidden temporary name, synced and renamed, so a crash mid-write
leaves no listed segment. Readers check every file's footer (readable Parquet, the exact
schema, rows of the dataset its folder names) before using it: a damaged or foreign file is a
one-line ``StoreError`` naming it, and the other files stay readable. See
docs/design/0009-columnar-analysis.md; the ``segments`` table that will list committed files is
a later increment, so today the folder is the listing.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import quote, unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ponder.errors import InputError, StoreError
from ponder.store.schema import OUTCOME_STORE_COLUMNS, SIGNAL_COLUMNS

OUTCOMES_DIR = "outcomes"
PARTITION = "dataset="
SUFFIX = ".parquet"

_INT32 = pa.int32()
_FLAG = pa.int8()
_REAL = pa.float64()
_TEXT = pa.string()
# The store's declared type of every segment column (SQLite INTEGER -> int32 or int8).
_TYPES: dict[str, pa.DataType] = {
    "run_id": _TEXT,
    "dataset": _TEXT,
    "problem_id": _TEXT,
    "model": _TEXT,
    "mode": _TEXT,
    "budget": _INT32,
    "sample_idx": _INT32,
    "prompt_tokens": _INT32,
    "reasoning_tokens": _INT32,
    "answer_tokens": _INT32,
    "output_tokens": _INT32,
    "latency_s": _REAL,
    "truncated": _FLAG,
    "answered": _FLAG,
    "extracted_answer": _TEXT,
    "correct": _REAL,
    "n_runs": _INT32,
    "response_text": _TEXT,
    "extra_json": _TEXT,
    "chain_id": _TEXT,
    "rung": _INT32,
    "natural": _FLAG,
    "answer_prob": _REAL,
    "entropy_tail": _REAL,
    "stop_cost_tokens": _INT32,
    "budget_kind": _TEXT,
}
SEGMENT_COLUMNS: tuple[str, ...] = (*OUTCOME_STORE_COLUMNS, *SIGNAL_COLUMNS, "budget_kind")
# NOT NULL in the store (budget_kind in `runs`): rows must carry them.
REQUIRED_COLUMNS: tuple[str, ...] = (
    "run_id",
    "dataset",
    "problem_id",
    "model",
    "mode",
    "sample_idx",
    "correct",
    "n_runs",
    "budget_kind",
)
# Optional in the input: text and JSON are not in the default outcome frame, signals are
# opt-in there. Missing ones are written as NULL.
OPTIONAL_INPUT: frozenset[str] = frozenset(("response_text", "extra_json", *SIGNAL_COLUMNS))
SEGMENT_SCHEMA: pa.Schema = pa.schema(
    [pa.field(c, _TYPES[c], nullable=c not in REQUIRED_COLUMNS) for c in SEGMENT_COLUMNS]
)
# Columns the outcome frame keeps as int64; every other number is float64 (NaN for NULL).
_FRAME_INT = frozenset(("sample_idx", "n_runs"))
_SEGMENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")

Rows: TypeAlias = "pd.DataFrame | pa.Table"


def segment_table(rows: Rows) -> pa.Table:
    """Rows (an outcome frame or an Arrow table) as a table of ``SEGMENT_SCHEMA``.

    Columns outside the schema (the frame's ``level`` and ``subject``) are dropped; a missing
    required column, a NULL where the store has NOT NULL, a ``correct`` outside [0, 1] or a
    value the column's type cannot hold exactly is an ``InputError`` naming the field.
    """
    n_rows = len(rows) if isinstance(rows, pd.DataFrame) else rows.num_rows
    arrays = [_column(rows, field, n_rows) for field in SEGMENT_SCHEMA]
    table = pa.Table.from_arrays(arrays, schema=SEGMENT_SCHEMA)
    _check_values(table)
    return table


def _column(rows: Rows, field: pa.Field, n_rows: int) -> pa.ChunkedArray:
    names = rows.columns if isinstance(rows, pd.DataFrame) else rows.column_names
    if field.name not in names:
        if field.name in OPTIONAL_INPUT:
            return pa.chunked_array([pa.nulls(n_rows, field.type)])
        raise InputError("missing column", field=field.name)
    if isinstance(rows, pd.DataFrame):
        values: Any = pa.chunked_array([pa.array(rows[field.name], from_pandas=True)])
    else:
        values = rows.column(field.name)
    try:
        return pc.cast(values, field.type, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(f"not {field.type}: {first_line(exc)}", field=field.name) from exc


def _check_values(table: pa.Table) -> None:
    """The store's NOT NULL and CHECK constraints, vectorised."""
    for name in REQUIRED_COLUMNS:
        missing = table.column(name).null_count
        if missing:
            raise InputError(f"{missing} rows have no value (NOT NULL)", field=name)
    correct = table.column("correct")
    outside = pc.or_(pc.is_nan(correct), pc.or_(pc.less(correct, 0.0), pc.greater(correct, 1.0)))
    bad = int(pc.sum(pc.cast(outside, pa.int64())).as_py() or 0)
    if bad:
        raise InputError(f"{bad} rows are not a number in [0, 1]", field="correct")
    # The importers' rule (a sample is n_runs = 1, an aggregate more), on which the curves'
    # samples (n_runs <= 1) and the statistics' (n_runs = 1) agree.
    below = int(pc.sum(pc.cast(pc.less(table.column("n_runs"), 1), pa.int64())).as_py() or 0)
    if below:
        raise InputError(f"{below} rows have n_runs below 1", field="n_runs")


def write_segments(root: str | Path, rows: Rows, *, segment_id: str | None = None) -> list[Path]:
    """Write rows as one new segment per dataset; the paths written, by dataset name.

    Each file appears only complete (temporary name, fsync, rename); a write of several
    datasets is not atomic as a whole. ``segment_id`` (default: time then random, so names
    sort in write order) must be a plain file name and not already used in a dataset's folder.
    """
    table = segment_table(rows)
    if table.num_rows == 0:
        return []
    sid = new_segment_id() if segment_id is None else checked_segment_id(segment_id)
    datasets = sorted(str(d) for d in pc.unique(table.column("dataset")).to_pylist())
    targets = {d: dataset_dir(root, d) / f"{sid}{SUFFIX}" for d in datasets}
    for path in targets.values():
        if path.exists():
            raise StoreError(f"{path}: segment already exists; segments are never replaced")
    written = []
    for dataset, path in targets.items():
        part = table.filter(pc.equal(table.column("dataset"), dataset))
        _write_atomically(part, path)
        written.append(path)
    return written


def new_segment_id() -> str:
    """Time then random: names sort in write order and never collide."""
    now = time.time_ns()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 10**9))
    return f"{stamp}{now % 10**9:09d}Z-{uuid.uuid4().hex[:12]}"


def checked_segment_id(segment_id: str) -> str:
    """The id, if it is a plain file name (else an ``InputError``)."""
    if not _SEGMENT_ID.fullmatch(segment_id):
        raise InputError(
            f"segment id {segment_id!r} is not a plain name (letters, digits, '.', '_', '-')"
        )
    return segment_id


def dataset_dir(root: str | Path, dataset: str) -> Path:
    """The folder of a dataset's segments (the name percent-encoded, as hive partitions are)."""
    return Path(root) / OUTCOMES_DIR / f"{PARTITION}{quote(dataset, safe='')}"


def _write_atomically(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Make renames durable where the platform allows syncing a directory."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def list_segments(root: str | Path, datasets: Sequence[str] | None = None) -> list[Path]:
    """The segment files, by dataset folder then name; temporary files are never listed."""
    base = Path(root) / OUTCOMES_DIR
    if not base.is_dir():
        return []
    if datasets is not None:
        folders = [dataset_dir(root, d) for d in sorted(set(datasets))]
    else:
        folders = sorted(p for p in base.iterdir() if p.name.startswith(PARTITION))
    out: list[Path] = []
    for folder in folders:
        if folder.is_dir():
            out.extend(sorted(p for p in folder.glob(f"*{SUFFIX}") if not p.name.startswith(".")))
    return out


def dataset_of(path: Path) -> str:
    """The dataset a segment's folder names."""
    return unquote(path.parent.name.removeprefix(PARTITION))


def check_segment(path: Path) -> int:
    """Validate a segment's footer (Parquet, exact schema, its folder's dataset); its rows."""
    try:
        metadata = pq.ParquetFile(path).metadata
        schema = metadata.schema.to_arrow_schema()
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"{path}: not a readable Parquet segment ({first_line(exc)})") from exc
    problem = _schema_problem(schema)
    if problem:
        raise StoreError(f"{path}: foreign schema ({problem})")
    dataset = dataset_of(path)
    index = schema.get_field_index("dataset")
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(index).statistics
        if stats is None or not stats.has_min_max:
            if metadata.row_group(group).num_rows == 0:
                continue
            raise StoreError(f"{path}: no statistics for column 'dataset'; not a ponder segment")
        if stats.min != dataset or stats.max != dataset:
            raise StoreError(
                f"{path}: holds rows of dataset {stats.min!r}..{stats.max!r}, "
                f"but its folder is for {dataset!r}"
            )
    return int(metadata.num_rows)


def _schema_problem(schema: pa.Schema) -> str:
    """What differs from SEGMENT_SCHEMA: names, types, order (nullability aside)."""
    have = {f.name: f.type for f in schema}
    problems = [f"missing {c}" for c in SEGMENT_COLUMNS if c not in have]
    problems += [f"unexpected {c}" for c in have if c not in _TYPES]
    problems += [
        f"{c} is {t}, expected {_TYPES[c]}"
        for c, t in have.items()
        if c in _TYPES and not t.equals(_TYPES[c])
    ]
    if not problems and tuple(have) != SEGMENT_COLUMNS:
        problems.append("columns in another order")
    return "; ".join(problems)


def read_segments(root: str | Path, datasets: Sequence[str] | None = None) -> pa.Table:
    """Every segment's rows (of ``datasets`` when given) as one ``SEGMENT_SCHEMA`` table.

    Each file is validated before use; the first damaged or foreign one is a one-line
    ``StoreError`` naming it. Row order: dataset folders by name, then files by name, then
    the order the rows were written in.
    """
    tables = [_read_one(path) for path in list_segments(root, datasets)]
    if not tables:
        return SEGMENT_SCHEMA.empty_table()
    return pa.concat_tables(tables)


def _read_one(path: Path) -> pa.Table:
    rows = check_segment(path)
    try:
        table = pq.read_table(path, columns=list(SEGMENT_COLUMNS))
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"{path}: cannot read the segment ({first_line(exc)})") from exc
    if table.num_rows != rows:
        raise StoreError(f"{path}: {table.num_rows} rows read, its footer says {rows}")
    return table.cast(SEGMENT_SCHEMA)


def outcome_frame(table: pa.Table) -> pd.DataFrame:
    """Segment rows as the outcome frame's dtypes: numbers float64 with NaN for NULL (but
    ``sample_idx`` and ``n_runs``, int64), text as pandas strings. No ``level``/``subject``:
    those come from ``problems``."""
    columns: dict[str, Any] = {}
    for field in table.schema:
        values = table.column(field.name)
        if pa.types.is_string(field.type):
            columns[field.name] = values.to_pandas().astype("str")
        elif field.name in _FRAME_INT:
            columns[field.name] = np.asarray(pc.cast(values, pa.int64()), dtype=np.int64)
        else:
            floats = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
            columns[field.name] = np.asarray(floats, dtype=np.float64)
    return pd.DataFrame(columns)


def first_line(exc: BaseException) -> str:
    """An exception's message, its first line only (Arrow's run over several)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
