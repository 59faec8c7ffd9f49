"""Reading the outcome frame column by column, without a list of one tuple per row.

``DataFrame.from_records(cursor.fetchall())`` held every row as a Python tuple of Python
objects (about 1 KB per row at 20 columns) next to the frame being built: 1.2 GB at a million
rows. Here rows arrive in chunks, each chunk is split into columns at once, numbers are
written straight into the float and integer blocks the frame keeps (counted first, so
nothing is concatenated or consolidated afterwards) and strings become int32 codes against
one dictionary per column (the keys repeat: a few models, datasets, modes and runs), turned
into Arrow strings by one ``take`` at the end. Only one chunk of Python objects is alive at
a time. The joins with ``runs`` and ``problems`` (small tables) are done on the distinct
keys in Python instead of one index lookup per row in SQLite.

The result is the frame the join query gave through ``from_records`` (same columns, dtypes,
values and row order): numbers are converted by the same rules (``pd.to_numeric`` with
``errors="coerce"``; a chunk holding anything but int, float or NULL takes that slow path)
and each text column gets the dtype ``from_records`` infers for the values it holds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from ponder.store.schema import OUTCOME_STORE_COLUMNS, SIGNAL_COLUMNS

# Columns of the frame read from `outcomes`, in order: the stored ones but the free text and
# extra JSON (text is added on request).
_OUTCOME_COLUMNS: tuple[str, ...] = tuple(
    c for c in OUTCOME_STORE_COLUMNS if c not in ("response_text", "extra_json")
)
FLOAT_COLUMNS: tuple[str, ...] = (
    "budget",
    "prompt_tokens",
    "reasoning_tokens",
    "answer_tokens",
    "output_tokens",
    "latency_s",
    "truncated",
    "answered",
    "correct",
    "level",
)
INT_COLUMNS: tuple[str, ...] = ("sample_idx", "n_runs")
# The numeric signal columns (NaN for imported rows); chain_id is text.
SIGNAL_FLOAT_COLUMNS: tuple[str, ...] = tuple(c for c in SIGNAL_COLUMNS if c != "chain_id")

# Rows per fetch: large enough that per-chunk overhead is negligible, small enough that
# one chunk of Python objects stays a few tens of MB.
CHUNK_ROWS = 1 << 15

_PLAIN_NUMBERS = frozenset({int, float, type(None)})
_INT = frozenset({int})


class _TextColumn:
    """A text column as int32 codes into the distinct values seen so far (NULL is -1)."""

    def __init__(self, n_rows: int) -> None:
        self.index: dict[object, int] = {}
        self.codes = np.empty(n_rows, dtype=np.int32)

    def add(self, start: int, values: tuple[Any, ...]) -> None:
        codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
        index = self.index
        remap = np.fromiter(
            (index.setdefault(u, len(index)) for u in uniques), dtype=np.int32, count=len(uniques)
        )
        out = self.codes[start : start + len(values)]
        out[:] = -1
        has = codes >= 0
        out[has] = remap[codes[has]]

    def values(self) -> npt.NDArray[np.object_]:
        """The distinct values by code, with None appended (code -1 points at it)."""
        out = np.empty(len(self.index) + 1, dtype=object)
        out[:-1] = list(self.index)
        out[-1] = None
        return out


class _NumberColumn:
    """A numeric column written into its row of a preallocated block, converted like the
    old reader did."""

    def __init__(self, out: npt.NDArray[Any]) -> None:
        self.out = out
        self.integer = out.dtype == np.int64

    def add(self, start: int, values: tuple[Any, ...]) -> None:
        out = self.out[start : start + len(values)]
        kinds = set(map(type, values))
        if self.integer:
            if kinds <= _INT:
                out[:] = values
            else:  # what from_records + astype("int64") does with odd values
                frame = pd.DataFrame.from_records([(v,) for v in values], columns=["v"])
                out[:] = frame["v"].astype("int64").to_numpy()
        elif kinds <= _PLAIN_NUMBERS:
            out[:] = np.array(values, dtype=np.float64)  # None -> NaN
        else:
            out[:] = to_float(np.asarray(values, dtype=object))


def to_float(values: npt.NDArray[np.object_]) -> npt.NDArray[np.float64]:
    """The old reader's rule for numbers: ``pd.to_numeric(errors="coerce")`` as float64."""
    numeric = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
    return np.asarray(numeric.astype("float64").to_numpy(), dtype=np.float64)


def decode(table: npt.NDArray[np.object_], codes: npt.NDArray[Any]) -> Any:
    """``table[codes]`` as the column ``from_records`` would build from those values.

    The dtype ``from_records`` infers depends only on which values occur, so it is probed on
    the distinct ones; an all-string column is then built by an Arrow ``take`` on the codes
    instead of converting a million Python strings.
    """
    sub, uniques = pd.factorize(table, use_na_sentinel=True)
    row = np.asarray(sub, dtype=np.int64)[codes]
    seen = np.bincount(row + 1, minlength=len(uniques) + 1) > 0
    present: list[object] = np.asarray(uniques, dtype=object)[seen[1:]].tolist()
    if seen[0]:
        present.append(None)
    probe = pd.DataFrame.from_records([(v,) for v in present], columns=["v"])["v"]
    if isinstance(probe.dtype, pd.StringDtype) and probe.dtype.storage == "pyarrow":
        import pyarrow as pa

        strings = pa.array(np.asarray(uniques, dtype=object), type=pa.large_string())
        missing = row < 0
        taken = strings.take(pa.array(np.where(missing, 0, row), mask=missing))
        return pd.array(taken, dtype=probe.dtype)
    values = table[codes]
    if probe.dtype == object:
        return values
    # Anything else (not produced by a TEXT column): let from_records decide on all rows.
    return pd.DataFrame.from_records([(v,) for v in values], columns=["v"])["v"].array


# Run ids of the claims suite's experiments (ponder.claims.experiments.RUN_PREFIX).
EXPERIMENT_RUN_PREFIX = "claims/"


def read_outcomes_frame(
    conn: sqlite3.Connection,
    *,
    datasets: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    include_text: bool = False,
    signals: bool = False,
    experiments: bool = False,
    chunk_rows: int = CHUNK_ROWS,
    after_rowid: int = 0,
) -> pd.DataFrame:
    """The outcome frame (see ``ponder.types.OUTCOME_COLUMNS``), optionally filtered.

    Rows come in store order (rowid); an outcome whose run is not stored is left out, as the
    inner join with ``runs`` did. ``sqlite3.DatabaseError`` propagates to the caller.
    ``signals`` adds the live-sweep columns (``SIGNAL_COLUMNS``) after ``subject``: opt-in,
    so the default frame every analysis reads keeps its columns. The rows of the claims'
    experiments (run ids ``claims/...``: forks of recorded chains, not configurations a policy
    could choose) are left out unless ``experiments``. Rows at or below ``after_rowid`` are
    left out (they are read from the store's compaction segments).
    """
    names = (
        list(_OUTCOME_COLUMNS)
        + (list(SIGNAL_COLUMNS) if signals else [])
        + (["response_text"] if include_text else [])
    )
    float_names = FLOAT_COLUMNS + (SIGNAL_FLOAT_COLUMNS if signals else ())
    body = " FROM outcomes o"
    where: list[str] = []
    params: list[str] = []
    for column, values in (("o.dataset", datasets), ("o.model", models)):
        if values:
            where.append(f"{column} IN ({', '.join('?' for _ in values)})")
            params.extend(values)
    if not experiments:
        where.append(f"o.run_id NOT LIKE '{EXPERIMENT_RUN_PREFIX}%'")
    if after_rowid:
        where.append(f"o.rowid > {int(after_rowid)}")
    if where:
        body += " WHERE " + " AND ".join(where)
    sql = f"SELECT {', '.join('o.' + n for n in names)}{body} ORDER BY o.rowid"

    final = [
        *names[: len(_OUTCOME_COLUMNS)],
        "budget_kind",
        "level",
        "subject",
        *names[len(_OUTCOME_COLUMNS) :],
    ]
    own_snapshot = not conn.in_transaction
    if own_snapshot:
        conn.execute("BEGIN")  # one read snapshot for every query below
    try:
        runs = dict(conn.execute("SELECT run_id, budget_kind FROM runs").fetchall())
        problems = {
            (d, p): (level, subject)
            for d, p, level, subject in conn.execute(
                "SELECT dataset, problem_id, level, subject FROM problems"
            )
        }
        n_rows = int(conn.execute(f"SELECT COUNT(*){body}", params).fetchone()[0])
        if n_rows == 0:
            return _empty(final, float_names)
        # Numbers go straight into the blocks the frame will hold (one row per column).
        floats = [c for c in final if c in float_names]
        float_block = np.empty((len(floats), n_rows), dtype=np.float64)
        int_block = np.empty((len(INT_COLUMNS), n_rows), dtype=np.int64)
        columns: dict[str, _TextColumn | _NumberColumn] = {}
        for name in names:
            if name in float_names:
                columns[name] = _NumberColumn(float_block[floats.index(name)])
            elif name in INT_COLUMNS:
                columns[name] = _NumberColumn(int_block[INT_COLUMNS.index(name)])
            else:
                columns[name] = _TextColumn(n_rows)
        cursor = conn.execute(sql, params)
        start = 0
        while True:
            rows = cursor.fetchmany(chunk_rows)
            if not rows:
                break
            if start + len(rows) > n_rows:
                raise sqlite3.DatabaseError("the outcomes changed while they were read")
            for name, values in zip(names, zip(*rows, strict=True), strict=True):
                columns[name].add(start, values)
            start += len(rows)
            del rows
        if start != n_rows:
            raise sqlite3.DatabaseError("the outcomes changed while they were read")
    finally:
        if own_snapshot:
            conn.execute("COMMIT")

    text = {n: c for n, c in columns.items() if isinstance(c, _TextColumn)}
    codes = {n: c.codes for n, c in text.items()}

    # Inner join with runs: keep rows whose run is stored.
    run_values = text["run_id"].values()
    run_kind = np.array([runs.get(r) for r in run_values[:-1]] + [None], dtype=object)
    run_known = np.array([r in runs for r in run_values[:-1]] + [False], dtype=bool)
    keep = run_known[codes["run_id"]]
    kept = None if keep.all() else np.flatnonzero(keep)

    def rows_of(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return array if kept is None else array[..., kept]

    # Left join with problems, on the distinct (dataset, problem_id) pairs.
    ds_codes, pid_codes = rows_of(codes["dataset"]), rows_of(codes["problem_id"])
    n_pid = len(text["problem_id"].index) + 1  # codes shifted by one: NULL is 0
    pair_key = (ds_codes.astype(np.int64) + 1) * n_pid + (pid_codes + 1)
    pair_codes, pair_uniques = pd.factorize(pair_key)
    ds_values, pid_values = text["dataset"].values(), text["problem_id"].values()
    pair_level = np.empty(len(pair_uniques), dtype=object)
    pair_subject = np.empty(len(pair_uniques), dtype=object)
    for i, key in enumerate(np.asarray(pair_uniques).tolist()):
        pair = (ds_values[key // n_pid - 1], pid_values[key % n_pid - 1])
        found = problems.get(pair, (None, None))
        pair_level[i], pair_subject[i] = found
    float_block = rows_of(float_block)
    float_block[floats.index("level")] = (
        np.array(pair_level, dtype=np.float64)
        if set(map(type, pair_level)) <= _PLAIN_NUMBERS
        else to_float(pair_level)
    )[pair_codes]
    int_block = rows_of(int_block)

    # The float columns as one block without a copy, the others inserted in their places.
    frame = pd.DataFrame(float_block.T, columns=floats, copy=False)
    for position, name in enumerate(final):
        if name in float_names:
            continue
        if name in INT_COLUMNS:
            inserted: Any = int_block[INT_COLUMNS.index(name)]
        elif name == "budget_kind":
            inserted = decode(run_kind, rows_of(codes["run_id"]))
        elif name == "subject":
            inserted = decode(pair_subject, pair_codes)
        else:
            inserted = decode(text[name].values(), rows_of(codes[name]))
        frame.insert(position, name, inserted)
    return frame


def _empty(final: list[str], float_names: tuple[str, ...] = FLOAT_COLUMNS) -> pd.DataFrame:
    """No rows: exactly what from_records gave (object columns, then the conversions)."""
    frame = pd.DataFrame.from_records([], columns=final)
    for column in float_names:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in INT_COLUMNS:
        frame[column] = frame[column].astype("int64")
    return frame
