"""Difficulty bins and the accuracy-per-difficulty table from the sufficient statistics.

``ponder.curves.difficulty_bins`` bins problems by level, or by solve-rate terciles where a
dataset lacks levels; a solve rate is a mean of ``correct`` over a problem's rows (its
samples, where the dataset has samples), i.e. ``correct_sum / correct_n`` over its groups of
the statistics. The difficulty table then averages each (cell, bin) and bootstraps it over
problems from per (cell, problem) sums and counts. Both paths share the binning
(``bins_of``), the grouping (``BinGroups``) and the table (``difficulty_frame``); the
inputs are equal whenever the sums are exact (0/1 correct, dyadic fractions), so the
tables are too. Other fractions (aggregated rows) are summed in another order (within
groups first), as for the cell table (``ponder.columnar.curves``): accuracy and interval may
move in the last bits, and in a dataset without samples, whose solve rates are such sums,
two tied rates could then rank apart.

Levels are problems' metadata, not outcomes: segments do not hold them, so they come from
the ``problems`` table (``Store.problems_frame()``) or, for a frame, ``problem_levels``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ponder.columnar.curves import (
    StatsCodes,
    bootstrap_accuracy,
    cell_datasets,
    checked_stats,
    int_totals,
    own_resampler,
    ratio,
)
from ponder.columnar.stats import KEYS
from ponder.curves._frame import (
    PROBLEM_KEYS,
    FloatArray,
    IntArray,
    as_float,
    problem_codes,
    require_columns,
    sorted_unique,
)
from ponder.curves.bootstrap import ProblemResampler
from ponder.curves.difficulty import BinGroups, bins_of, difficulty_frame


def problem_levels(frame: pd.DataFrame) -> pd.DataFrame:
    """Each (dataset, problem_id)'s level in an outcome frame (NaN when unknown), as the
    ``problems`` table gives it: the frame repeats it on every row of the problem."""
    require_columns(frame, PROBLEM_KEYS, "problem levels")
    level = as_float(frame["level"]) if "level" in frame.columns else np.full(len(frame), np.nan)
    work = frame[PROBLEM_KEYS].assign(level=level)
    return work.groupby(PROBLEM_KEYS, sort=True, observed=True)["level"].max().reset_index()


def difficulty_bins_from_stats(
    stats: pd.DataFrame, levels: pd.DataFrame | None = None
) -> pd.DataFrame:
    """``ponder.curves.difficulty_bins`` of the rows the statistics summarise; ``levels``
    has ``dataset, problem_id, level`` (None: no levels, solve-rate terciles everywhere)."""
    stats = _checked(stats)
    problem, problem_keys = problem_codes(stats)
    return bins_of(solve_rates(stats, problem, problem_keys, levels))


def difficulty_table_from_stats(
    stats: pd.DataFrame,
    levels: pd.DataFrame | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    resampler: ProblemResampler | None = None,
) -> pd.DataFrame:
    """``ponder.curves.difficulty_table`` of the rows the statistics summarise (``levels``
    as for :func:`difficulty_bins_from_stats`)."""
    stats = _checked(stats)
    resampler = own_resampler(stats, resampler, n_boot, seed)
    problem, problem_keys = problem_codes(stats)
    bins = bins_of(solve_rates(stats, problem, problem_keys, levels))
    return difficulty_table_from_bins(stats, bins, resampler=resampler, ci=ci)


def levels_bins(problems: pd.DataFrame, levels: pd.DataFrame | None) -> pd.DataFrame:
    """The difficulty bins of every problem from its solve-rate sums (``dataset,
    problem_id, sample, correct_sum, correct_n``, e.g. one row per problem and sample flag)
    and the levels: what :func:`difficulty_bins_from_stats` gives on the statistics."""
    problems = checked_stats(
        problems, ["dataset", "problem_id", "sample", "correct_sum", "correct_n"], "bins"
    )
    problem, problem_keys = problem_codes(problems)
    return bins_of(solve_rates(problems, problem, problem_keys, levels))


def difficulty_table_from_bins(
    stats: pd.DataFrame,
    bins: pd.DataFrame,
    *,
    resampler: ProblemResampler,
    ci: float = 0.95,
    codes: StatsCodes | None = None,
) -> pd.DataFrame:
    """The difficulty table of the statistics' cells with the problems' bins given (those
    of every cell of the dataset, so a batch of cells is binned as the whole table is);
    ``codes``: the statistics' ``StatsCodes``, when already found."""
    stats = _checked(stats)
    found = StatsCodes(stats) if codes is None else codes
    keys = found.keys
    groups = BinGroups.of(found.cell, found.problem, found.problem_keys, bins)
    accuracy, result, n_problems = bootstrap_accuracy(
        stats,
        found.local(resampler),
        groups.group,
        cell_datasets(keys)[groups.cell],
        resampler,
        ci=ci,
    )
    return difficulty_frame(
        keys,
        np.zeros(len(keys), dtype=bool),
        bins,
        groups,
        n_samples=int_totals(groups.group, stats["rows"], groups.n_groups),
        n_problems=n_problems,
        accuracy=accuracy,
        result=result,
    )


def solve_rates(
    stats: pd.DataFrame,
    problem: IntArray,
    problem_keys: pd.DataFrame,
    levels: pd.DataFrame | None,
) -> pd.DataFrame:
    """``problem_solve_rates`` from the statistics: a dataset's sample groups where it has
    any (else all its groups), summed per problem; levels looked up per problem."""
    sample = stats["sample"].to_numpy(dtype=bool)
    dataset, names = pd.factorize(stats["dataset"], use_na_sentinel=False)
    has_samples = np.bincount(dataset[sample], minlength=len(names))
    rows = np.flatnonzero((sample | (has_samples[dataset] == 0)) & (problem >= 0))
    pairs, inverse = sorted_unique(problem[rows])
    sums = stats["correct_sum"].iloc[rows].reset_index(drop=True).groupby(inverse).sum()
    counts = int_totals(inverse, stats["correct_n"].iloc[rows], len(pairs))
    per_problem = problem_keys.iloc[pairs].reset_index(drop=True)
    per_problem["level"] = _levels_of(per_problem, levels)
    per_problem["solve_rate"] = ratio(sums.to_numpy(dtype=np.float64), counts)
    return per_problem


def _levels_of(per_problem: pd.DataFrame, levels: pd.DataFrame | None) -> FloatArray:
    """Each problem's level (the largest given for it; NaN when none)."""
    if levels is None:
        return np.full(len(per_problem), np.nan)
    require_columns(levels, [*PROBLEM_KEYS, "level"], "difficulty levels")
    table = pd.DataFrame(
        {
            "dataset": levels["dataset"].astype(str).to_numpy(dtype=object),
            "problem_id": levels["problem_id"].astype(str).to_numpy(dtype=object),
            "level": as_float(levels["level"]),
        }
    )
    best = table.groupby(PROBLEM_KEYS, sort=False)["level"].max()
    index = pd.MultiIndex.from_arrays(
        [
            per_problem["dataset"].astype(str).to_numpy(dtype=object),
            per_problem["problem_id"].astype(str).to_numpy(dtype=object),
        ]
    )
    return np.asarray(best.reindex(index).to_numpy(dtype=np.float64), dtype=np.float64)


def _checked(stats: pd.DataFrame) -> pd.DataFrame:
    columns = [*KEYS, "rows", "correct_n", "correct_sum"]
    return checked_stats(stats, columns, "difficulty from statistics")
