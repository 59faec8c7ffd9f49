"""The accuracy-vs-budget cell table from the sufficient statistics, equal to the frame's.

``ponder.curves.cell_table`` reads every outcome row; this reads the per problem x
configuration statistics (``ponder.columnar.stats``) and the token histogram
(``ponder.columnar.histogram``) instead, so memory follows groups, not rows. Both paths end
in the same code (``bootstrap_sums``, ``assemble_cells``), and the inputs to it are equal:

- cells and their order come from ``cell_codes`` on the statistics' keys;
- the resampler's universe is the distinct (dataset, problem_id) of the statistics, which
  are those of the rows, so the same seed draws the same resampling counts;
- the bootstrap reduces rows to per (cell, problem) sums and counts first, and the
  statistics already are partial sums and counts of those, so the replicates are equal
  whenever the sums are exact (0/1 correct, any integer-valued or dyadic values);
- n_samples, n_problems, mean tokens and the truncation/answer rates are integer sums over
  integer counts, divided once as pandas' mean divides;
- median and p90 tokens are read from the exact histogram with pandas' groupby formulas.

Fractional ``correct`` (aggregated rows) is summed in another order than the frame's rows,
so accuracy and its interval may differ in the last bits when a cell or a (cell, problem)
holds several such rows. Derived caps are not computed here: they need every source row's
length, so the statistics refuse frames with derived rows and this table equals
``cell_table(frame)``, i.e. ``compute_curves(frame, derive=False).cells``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from ponder.columnar.histogram import HISTOGRAM_COLUMNS, histogram_from_parquet
from ponder.columnar.stats import KEYS, STATS, configure, connect, stats_from_parquet
from ponder.curves._frame import (
    FloatArray,
    IntArray,
    cell_codes,
    problem_codes,
    require_columns,
)
from ponder.curves.aggregate import CellBootstrap, assemble_cells, cell_budget_kind
from ponder.curves.bootstrap import BootstrapResult, ProblemResampler, bootstrap_sums
from ponder.errors import InputError

if TYPE_CHECKING:
    import duckdb

# The quantile of the cell table's p90_tokens column.
_P90 = 0.9


def cell_bootstrap_from_stats(
    stats: pd.DataFrame,
    histogram: pd.DataFrame,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    resampler: ProblemResampler | None = None,
    codes: StatsCodes | None = None,
) -> CellBootstrap:
    """``ponder.curves.cell_bootstrap`` of the rows the statistics and histogram summarise
    (``codes``: the statistics' ``StatsCodes``, when already found)."""
    stats = checked_stats(stats, [*KEYS, *STATS], "the cell table from statistics")
    require_columns(histogram, HISTOGRAM_COLUMNS, "the cell table's token quantiles")
    found = StatsCodes(stats) if codes is None else codes
    cell, hist_codes, keys = side_cells(stats, histogram, "token histogram", found)
    n_cells = len(keys)
    resampler = own_resampler(stats, resampler, n_boot, seed)
    accuracy, result, n_problems = bootstrap_accuracy(
        stats,
        found.local(resampler),
        cell,
        cell_datasets(keys),
        resampler,
        ci=ci,
        keep_replicates=True,
    )
    out_n = int_totals(cell, stats["out_n"], n_cells)
    median, p90 = token_quantiles(histogram, hist_codes, out_n)
    tokens = {
        "mean_tokens": ratio(int_totals(cell, stats["out_sum"], n_cells), out_n),
        "median_tokens": median,
        "p90_tokens": p90,
        "truncation_rate": _rate(stats, cell, n_cells, "truncated"),
        "answer_rate": _rate(stats, cell, n_cells, "answered"),
    }
    return assemble_cells(
        keys,
        budget_kind=cell_budget_kind(stats, cell, n_cells),
        derived=np.zeros(n_cells, dtype=bool),
        source_budget=np.full(n_cells, np.nan),
        n_samples=int_totals(cell, stats["rows"], n_cells),
        accuracy=accuracy,
        result=result,
        n_problems=n_problems,
        tokens=tokens,
    )


def cell_table_from_stats(
    stats: pd.DataFrame,
    histogram: pd.DataFrame,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    resampler: ProblemResampler | None = None,
) -> pd.DataFrame:
    """``ponder.curves.cell_table`` (same columns, rows, order and values) from the
    statistics and the token histogram of the same rows."""
    return cell_bootstrap_from_stats(
        stats, histogram, n_boot=n_boot, seed=seed, ci=ci, resampler=resampler
    ).table


def cell_bootstrap_from_parquet(
    root: str | Path,
    con: duckdb.DuckDBPyConnection | None = None,
    *,
    datasets: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    memory_limit: str | None = None,
    threads: int | None = None,
) -> CellBootstrap:
    """The cell bootstrap of the segments under ``root``: two DuckDB GROUP BYs on one
    connection, then :func:`cell_bootstrap_from_stats`."""
    db = connect() if con is None else con
    try:
        configure(db, memory_limit=memory_limit, threads=threads)
        stats = stats_from_parquet(root, db, datasets=datasets)
        histogram = histogram_from_parquet(root, db, datasets=datasets)
    finally:
        if con is None:
            db.close()
    if stats.empty:
        raise InputError(f"{root}: no outcome segments to compute curves from")
    return cell_bootstrap_from_stats(stats, histogram, n_boot=n_boot, seed=seed, ci=ci)


def token_quantiles(
    histogram: pd.DataFrame, cell: IntArray, out_n: IntArray
) -> tuple[FloatArray, FloatArray]:
    """Median and p90 of each cell's ``output_tokens`` from its histogram.

    The order statistics are located in the cumulative counts; the values are then combined
    as pandas' ``group_median_float64`` (mean of the two middle values) and
    ``group_quantile`` (linear: ``v[i] + (v[i+1] - v[i]) * frac`` with ``i`` the truncated
    ``q * (n - 1)``) combine them, so the result is bit-equal to the frame's groupby.
    """
    n_cells = len(out_n)
    counts = histogram["count"].to_numpy(dtype=np.int64)
    values = histogram["output_tokens"].to_numpy(dtype=np.int64)
    order = np.lexsort((values, cell))
    cell, counts, values = cell[order], counts[order], values[order].astype(np.float64)
    n = np.bincount(cell, weights=counts, minlength=n_cells).astype(np.int64)
    if not np.array_equal(n, out_n):
        bad = int(np.flatnonzero(n != out_n)[0])
        raise InputError(
            f"the token histogram counts {n[bad]} known lengths in cell {bad}, "
            f"the statistics {out_n[bad]}: they are not of the same rows"
        )
    median, p90 = np.full(n_cells, np.nan), np.full(n_cells, np.nan)
    if not len(counts):
        return median, p90
    ends = np.cumsum(counts)
    first = np.searchsorted(cell, np.arange(n_cells), side="left")
    base = np.where(first > 0, ends[np.maximum(first - 1, 0)], 0)
    has = n > 0
    base, n = base[has], n[has]

    def kth(k: IntArray) -> FloatArray:
        """The k-th smallest (0-based) length of each cell with lengths."""
        return np.asarray(values[np.searchsorted(ends, base + k, side="right")])

    odd = n % 2 == 1
    middle = np.where(odd, kth(n // 2), (kth(n // 2) + kth(np.maximum(n // 2 - 1, 0))) / 2)
    median[has] = middle
    position = _P90 * (n - 1).astype(np.float64)
    low = position.astype(np.int64)  # truncation, as the C cast does
    frac = np.fmod(position, 1.0)
    value = kth(low)
    following = kth(np.minimum(low + 1, n - 1))
    p90[has] = np.where(frac == 0.0, value, value + (following - value) * frac)
    return median, p90


class StatsCodes:
    """The statistics' cell and problem codes, found once and shared by every table built
    from the same statistics (the batched path builds all of them per batch); positions in
    a resampler's universes are cached per resampler."""

    def __init__(self, stats: pd.DataFrame) -> None:
        self.cell, self.keys = cell_codes(stats)
        self.problem, self.problem_keys = problem_codes(stats)
        self._local: dict[int, tuple[ProblemResampler, IntArray]] = {}

    def local(self, resampler: ProblemResampler) -> IntArray:
        """Each statistics row's problem position in its dataset's universe (-1: none)."""
        cached = self._local.get(id(resampler))
        if cached is None or cached[0] is not resampler:
            cached = (resampler, resampler.local_codes_of(self.problem, self.problem_keys))
            self._local[id(resampler)] = cached
        return cached[1]

    def side(self, side: pd.DataFrame, what: str) -> IntArray:
        """The codes of a side table's cells (the token histogram, the answer counts) among
        the statistics' cells; a side table's cell without statistics is an error."""
        own, side_keys = cell_codes(side)
        found = _key_index(self.keys).get_indexer(_key_index(side_keys))
        if (found < 0).any():
            missing = side_keys.iloc[int(np.flatnonzero(found < 0)[0])].to_dict()
            raise InputError(f"the {what} has a cell the statistics lack: {missing}")
        return np.asarray(found[own], dtype=np.int64)


def _key_index(keys: pd.DataFrame) -> pd.MultiIndex:
    """Cell keys as an index that matches a missing budget with a missing budget."""
    budget = keys["budget"].to_numpy(dtype=np.float64)
    return pd.MultiIndex.from_arrays(
        [
            keys["model"].astype(str).to_numpy(dtype=object),
            keys["dataset"].astype(str).to_numpy(dtype=object),
            keys["mode"].astype(str).to_numpy(dtype=object),
            np.where(np.isnan(budget), 0.0, budget),
            np.isnan(budget),
        ]
    )


def side_cells(
    stats: pd.DataFrame, side: pd.DataFrame, what: str, codes: StatsCodes | None = None
) -> tuple[IntArray, IntArray, pd.DataFrame]:
    """Cell codes of the statistics and of a side table's rows (the token histogram, the
    answer counts), and the cell keys table: those of the statistics, as ``cell_codes``
    gives them, since a side table's cell without statistics is an error."""
    codes = StatsCodes(stats) if codes is None else codes
    return codes.cell, codes.side(side, what), codes.keys


def checked_stats(stats: pd.DataFrame, columns: Sequence[str], what: str) -> pd.DataFrame:
    """The statistics, refused (one line naming the column) without the columns ``what``
    reads, and indexed 0..n-1 as the codes computed from them are."""
    require_columns(stats, columns, what)
    return stats.reset_index(drop=True)


def own_resampler(
    stats: pd.DataFrame, resampler: ProblemResampler | None, n_boot: int, seed: int
) -> ProblemResampler:
    """The given resampler, else the rows' own: their distinct (dataset, problem_id), which
    are the statistics', so the same seed draws as on the rows."""
    if resampler is not None:
        return resampler
    return ProblemResampler.from_frame(stats, n_boot=n_boot, seed=seed)


def cell_datasets(keys: pd.DataFrame) -> npt.NDArray[np.object_]:
    """Each cell's dataset as text: the bootstrap resamples problems within a dataset."""
    return np.asarray(keys["dataset"].astype(str).to_numpy(dtype=object))


def bootstrap_accuracy(
    stats: pd.DataFrame,
    local: IntArray,
    group: IntArray,
    group_dataset: npt.NDArray[np.object_],
    resampler: ProblemResampler,
    *,
    ci: float,
    keep_replicates: bool = False,
) -> tuple[FloatArray, BootstrapResult, FloatArray]:
    """Accuracy per group (``correct_sum`` over ``correct_n``), its problem bootstrap from
    the statistics' partial sums, and the problems per group (``bootstrap_sums``)."""
    n_groups = len(group_dataset)
    sums = compensated_sums(stats["correct_sum"].to_numpy(dtype=np.float64), group, n_groups)
    accuracy = ratio(sums, int_totals(group, stats["correct_n"], n_groups))
    result, n_problems = bootstrap_sums(
        local,
        group,
        stats["correct_sum"].to_numpy(dtype=np.float64),
        stats["correct_n"].to_numpy(dtype=np.float64),
        group_dataset,
        accuracy,
        resampler,
        ci=ci,
        keep_replicates=keep_replicates,
    )
    return accuracy, result, n_problems


def compensated_sums(values: FloatArray, group: IntArray, n_groups: int) -> FloatArray:
    """Each group's values summed in row order with pandas' compensated (Kahan) groupby sum,
    as the frame path's groupby mean sums rows; NaN for a group without rows.

    pandas sums groups that come sorted with ``np.add.reduceat`` instead (other last bits),
    and a batch of one cell comes sorted where the whole table does not: a first row of an
    extra, largest group keeps every call on the compensated kernel, so a group's sum
    depends on its own values only, never on the batching.
    """
    labels = np.concatenate([np.asarray([n_groups], dtype=np.int64), group])
    padded = np.concatenate([np.zeros(1), values])
    sums = pd.Series(padded).groupby(labels).sum().reindex(range(n_groups))
    return np.asarray(sums.to_numpy(dtype=np.float64), dtype=np.float64)


def int_totals(codes: IntArray, values: pd.Series[Any], n_cells: int) -> IntArray:
    """Integer sums per cell, exact (no float accumulation)."""
    out = np.zeros(n_cells, dtype=np.int64)
    np.add.at(out, codes, values.to_numpy(dtype=np.int64))
    return out


def ratio(sums: FloatArray | IntArray, counts: IntArray) -> FloatArray:
    """``sums / counts`` in float64 as pandas' groupby mean divides; NaN for no values."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.asarray(sums, dtype=np.float64) / counts.astype(np.float64)
    return np.where(counts > 0, out, np.nan)


def _rate(stats: pd.DataFrame, codes: IntArray, n_cells: int, name: str) -> FloatArray:
    """Mean of a 0/1 flag per cell from its sum and known count."""
    counts = int_totals(codes, stats[f"{name}_n"], n_cells)
    return ratio(int_totals(codes, stats[f"{name}_sum"], n_cells), counts)
