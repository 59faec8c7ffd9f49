"""Shared plumbing: column checks and integer codes for cells and problems.

Everything downstream works on integer codes so the hot paths are numpy bincounts and
matrix products rather than groupbys over strings. The string keys are factorized once per
column (Arrow strings factorize in C), combined into one integer per row and ranked; a
:class:`Coded` frame carries those codes so that every table of :func:`compute_curves`
reuses them instead of factorizing the same strings again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd

from ponder.errors import InputError

CELL_KEYS: list[str] = ["model", "dataset", "mode", "budget"]
PROBLEM_KEYS: list[str] = ["dataset", "problem_id"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

# Combined keys stay below this so that the product of the key sizes cannot overflow int64.
_MAX_KEY = 1 << 62


def require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Fail early with the missing column names instead of a KeyError deep inside pandas."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"outcome frame lacks column(s) {missing} needed for {what}")


def as_float(series: pd.Series) -> FloatArray:
    """Booleans, nullable booleans and numbers as float64 with NaN for missing."""
    if series.dtype == np.float64:
        # Already what the general path returns (it would only copy it).
        return np.asarray(series.to_numpy(), dtype=np.float64)
    numeric = pd.to_numeric(series, errors="coerce").astype("float64")
    return np.asarray(numeric.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


def derived_mask(frame: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """Rows that were derived from a larger cap (False when the column is absent)."""
    if "derived" not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    column = frame["derived"]
    if column.dtype == np.bool_:
        return np.asarray(column.to_numpy(), dtype=bool)
    return column.fillna(False).astype(bool).to_numpy()


def sample_mask(frame: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """Rows that are single samples (n_runs == 1 or unknown), as opposed to aggregates."""
    if "n_runs" not in frame.columns:
        return np.ones(len(frame), dtype=bool)
    n_runs = as_float(frame["n_runs"])
    return np.isnan(n_runs) | (n_runs <= 1)


def sorted_unique(key: IntArray) -> tuple[IntArray, IntArray]:
    """``np.unique(key, return_inverse=True)`` without sorting every row.

    Keys in a small non-negative range (codes combined from a few small codes, the usual
    case) are ranked through a presence table; others are hashed (``pd.factorize``).
    """
    key = np.asarray(key, dtype=np.int64)
    if len(key) and key.min() >= 0 and key.max() < 4 * len(key) + 4096:
        present = np.zeros(int(key.max()) + 1, dtype=bool)
        present[key] = True
        rank = np.cumsum(present, dtype=np.int64) - 1
        return np.flatnonzero(present).astype(np.int64), rank[key]
    codes, uniques = pd.factorize(key)
    uniques = np.asarray(uniques, dtype=np.int64)
    order = np.argsort(uniques, kind="stable")
    rank = np.empty(len(uniques), dtype=np.int64)
    rank[order] = np.arange(len(uniques), dtype=np.int64)
    return uniques[order], rank[np.asarray(codes, dtype=np.int64)]


def _level_codes(column: pd.Series, *, na_last: bool) -> tuple[IntArray, int]:
    """Sorted codes of one key column; NA becomes its own last code or -1."""
    codes, uniques = pd.factorize(column, sort=True, use_na_sentinel=True)
    codes = np.asarray(codes, dtype=np.int64)
    n = len(uniques)
    if na_last:
        codes = np.where(codes < 0, n, codes)
    return codes, n + 1


def _group_codes(
    frame: pd.DataFrame, keys: list[str], *, dropna: bool
) -> tuple[IntArray, IntArray] | None:
    """Per row, the rank of its key tuple (like ``groupby(sort=True).ngroup()``) and the
    first row of each group; None when the keys cannot be combined into one integer."""
    combined = np.zeros(len(frame), dtype=np.int64)
    dropped = np.zeros(len(frame), dtype=bool)
    total = 1
    for name in keys:
        try:
            codes, size = _level_codes(frame[name], na_last=not dropna)
        except TypeError:  # unorderable mixed values: leave it to pandas
            return None
        total *= size
        if total >= _MAX_KEY:
            return None
        if dropna:
            dropped |= codes < 0
        combined = combined * size + codes
    uniq, inverse = sorted_unique(combined[~dropped] if dropna else combined)
    first = np.empty(len(uniq), dtype=np.int64)
    rows = np.flatnonzero(~dropped) if dropna else np.arange(len(frame), dtype=np.int64)
    first[inverse[::-1]] = rows[::-1]
    if dropna:
        out = np.full(len(frame), -1, dtype=np.int64)
        out[rows] = inverse
        return out, first
    return inverse, first


def cell_codes(frame: pd.DataFrame) -> tuple[IntArray, pd.DataFrame]:
    """Code of each row's cell and the sorted cell keys (NaN budget kept as its own cell)."""
    found = _group_codes(frame, CELL_KEYS, dropna=False)
    if found is None:
        grouped = frame.groupby(CELL_KEYS, dropna=False, sort=True, observed=True)
        codes = np.asarray(grouped.ngroup().to_numpy(dtype=np.int64), dtype=np.int64)
    else:
        codes, first = found
        # The key table is what the groupby gives (same order, same index dtypes), built on
        # one row per cell.
        grouped = (
            frame[CELL_KEYS].iloc[first].groupby(CELL_KEYS, dropna=False, sort=True, observed=True)
        )
    keys = grouped.size().index.to_frame(index=False)
    keys["budget"] = keys["budget"].astype("float64")
    return codes, keys


def problem_codes(frame: pd.DataFrame) -> tuple[IntArray, pd.DataFrame]:
    """Code of each row's (dataset, problem_id) (-1 if either is missing) and those pairs."""
    found = _group_codes(frame, PROBLEM_KEYS, dropna=True)
    everything = frame.groupby(PROBLEM_KEYS, sort=True, observed=True)
    if found is None:
        group = everything.ngroup().to_numpy(dtype=np.float64, na_value=np.nan)
        codes = np.where(np.isnan(group), -1, group).astype(np.int64)
        grouped = everything
    else:
        codes, first = found
        # One row per pair gives the groupby's key table; with no pair at all, the dtypes
        # come from all rows.
        grouped = (
            frame[PROBLEM_KEYS].iloc[first].groupby(PROBLEM_KEYS, sort=True, observed=True)
            if len(first)
            else everything
        )
    return codes, grouped.size().index.to_frame(index=False)


def unique_pairs(
    left: IntArray, right: IntArray, n_right: int
) -> tuple[IntArray, IntArray, IntArray]:
    """Distinct (left, right) pairs, sorted, with each row's pair index."""
    key = left * np.int64(max(n_right, 1)) + right
    uniq, inverse = sorted_unique(key)
    return (
        (uniq // max(n_right, 1)).astype(np.int64),
        (uniq % max(n_right, 1)).astype(np.int64),
        inverse.astype(np.int64).reshape(-1),
    )


def cell_derived(frame: pd.DataFrame, codes: IntArray, n_cells: int) -> npt.NDArray[np.bool_]:
    """Whether each cell consists of derived rows."""
    derived = derived_mask(frame).astype(np.float64)
    return np.asarray(np.bincount(codes, weights=derived, minlength=n_cells) > 0)


@dataclass
class Coded:
    """An outcome frame with its cell and problem codes, computed once for every table."""

    frame: pd.DataFrame
    cell: IntArray
    cell_keys: pd.DataFrame
    problem: IntArray
    problem_keys: pd.DataFrame
    _local: dict[int, tuple[object, IntArray]] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, frame: pd.DataFrame) -> Coded:
        frame = frame.reset_index(drop=True)
        cell, cell_keys = cell_codes(frame)
        problem, problem_keys = problem_codes(frame)
        return cls(frame, cell, cell_keys, problem, problem_keys)

    @property
    def cell_dataset(self) -> npt.NDArray[np.object_]:
        """Dataset of each cell, as the str the resampler is keyed by."""
        return np.asarray(self.cell_keys["dataset"].astype(str).to_numpy(dtype=object))
