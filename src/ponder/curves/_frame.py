"""Shared plumbing: column checks and integer codes for cells and problems.

Everything downstream works on integer codes so the hot paths are numpy bincounts and
matrix products rather than groupbys over strings.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
import pandas as pd

from ponder.errors import InputError

CELL_KEYS: list[str] = ["model", "dataset", "mode", "budget"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Fail early with the missing column names instead of a KeyError deep inside pandas."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"outcome frame lacks column(s) {missing} needed for {what}")


def as_float(series: pd.Series) -> FloatArray:
    """Booleans, nullable booleans and numbers as float64 with NaN for missing."""
    numeric = pd.to_numeric(series, errors="coerce").astype("float64")
    return np.asarray(numeric.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


def derived_mask(frame: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """Rows that were derived from a larger cap (False when the column is absent)."""
    if "derived" not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    return frame["derived"].fillna(False).astype(bool).to_numpy()


def sample_mask(frame: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """Rows that are single samples (n_runs == 1 or unknown), as opposed to aggregates."""
    if "n_runs" not in frame.columns:
        return np.ones(len(frame), dtype=bool)
    n_runs = as_float(frame["n_runs"])
    return np.isnan(n_runs) | (n_runs <= 1)


def cell_codes(frame: pd.DataFrame) -> tuple[IntArray, pd.DataFrame]:
    """Code of each row's cell and the sorted cell keys (NaN budget kept as its own cell)."""
    grouped = frame.groupby(CELL_KEYS, dropna=False, sort=True, observed=True)
    codes = np.asarray(grouped.ngroup().to_numpy(dtype=np.int64), dtype=np.int64)
    keys = grouped.size().index.to_frame(index=False)
    keys["budget"] = keys["budget"].astype("float64")
    return codes, keys


def problem_codes(frame: pd.DataFrame) -> tuple[IntArray, pd.DataFrame]:
    """Code of each row's (dataset, problem_id) and the table of those pairs."""
    grouped = frame.groupby(["dataset", "problem_id"], sort=True, observed=True)
    codes = np.asarray(grouped.ngroup().to_numpy(dtype=np.int64), dtype=np.int64)
    keys = grouped.size().index.to_frame(index=False)
    return codes, keys


def unique_pairs(
    left: IntArray, right: IntArray, n_right: int
) -> tuple[IntArray, IntArray, IntArray]:
    """Distinct (left, right) pairs, sorted, with each row's pair index."""
    key = left * np.int64(max(n_right, 1)) + right
    uniq, inverse = np.unique(key, return_inverse=True)
    return (
        (uniq // max(n_right, 1)).astype(np.int64),
        (uniq % max(n_right, 1)).astype(np.int64),
        inverse.astype(np.int64).reshape(-1),
    )


def cell_derived(frame: pd.DataFrame, codes: IntArray, n_cells: int) -> npt.NDArray[np.bool_]:
    """Whether each cell consists of derived rows."""
    derived = derived_mask(frame).astype(np.float64)
    return np.asarray(np.bincount(codes, weights=derived, minlength=n_cells) > 0)
