"""Accuracy curves split by problem difficulty.

Where a dataset's problems all carry a ``level`` known before generation (e.g. MATH levels
1-5) we split by it (``difficulty_source = "level"``). Otherwise problems are binned by their
empirical solve rate pooled over every recorded cell of the dataset into terciles "easy",
"medium", "hard" (``difficulty_source = "solve_rate"``); problems tied on solve rate share a
bin (average rank), so bins can be unequal. Solve-rate bins are descriptive: they are
computed from the very outcomes they split, so "accuracy on hard problems" is low partly by
construction and must not be read as a prediction of difficulty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from ponder.curves._frame import (
    CELL_KEYS,
    Coded,
    FloatArray,
    IntArray,
    as_float,
    cell_derived,
    derived_mask,
    require_columns,
    sorted_unique,
)
from ponder.curves.bootstrap import (
    BootstrapResult,
    ProblemResampler,
    bootstrap_rows,
    local_codes,
)

DIFFICULTY_COLUMNS: list[str] = [
    *CELL_KEYS,
    "derived",
    "difficulty_source",
    "difficulty",
    "difficulty_rank",
    "n_samples",
    "n_problems",
    "accuracy",
    "ci_low",
    "ci_high",
    "ci_method",
]

_TERCILES = ("easy", "medium", "hard")


def difficulty_bins(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, problem_id): difficulty_source, difficulty, difficulty_rank.

    ``difficulty_rank`` orders bins from easiest (levels ascending; easy, medium, hard).
    """
    require_columns(frame, ["dataset", "problem_id", "correct"], "difficulty bins")
    return coded_difficulty_bins(Coded.of(frame))


def coded_difficulty_bins(coded: Coded) -> pd.DataFrame:
    """:func:`difficulty_bins` on integer codes: no pass over the rows' strings."""
    return bins_of(problem_solve_rates(coded))


def problem_solve_rates(coded: Coded) -> pd.DataFrame:
    """One row per (dataset, problem_id) with recorded rows, sorted: its ``level`` (NaN when
    unknown) and ``solve_rate`` (mean ``correct``)."""
    frame = coded.frame
    recorded = ~derived_mask(frame)
    if "n_runs" in frame.columns:
        # Solve rates from samples where a dataset has them: aggregated leaderboard rows of
        # other sources (MathArena covers AIME I only) would skew one part of the dataset.
        is_sample = (frame["n_runs"] == 1).to_numpy(dtype=bool, na_value=False)
        codes, names = pd.factorize(frame["dataset"], use_na_sentinel=False)
        dataset = np.asarray(codes, dtype=np.int64)
        has_samples = np.bincount(dataset[recorded & is_sample], minlength=len(names))
        recorded &= is_sample | (has_samples[dataset] == 0)
    rows = np.flatnonzero(recorded & (coded.problem >= 0))
    pair = coded.problem[rows]
    pairs, inverse = sorted_unique(pair)
    level = (
        as_float(frame["level"])[rows] if "level" in frame.columns else np.full(len(rows), np.nan)
    )
    stats = pd.DataFrame({"level": level, "correct": as_float(frame["correct"])[rows]})
    grouped = stats.groupby(inverse, sort=True)
    per_problem = coded.problem_keys.iloc[pairs].reset_index(drop=True)
    per_problem["level"] = grouped["level"].max().to_numpy(dtype=np.float64)
    per_problem["solve_rate"] = grouped["correct"].mean().to_numpy(dtype=np.float64)
    return per_problem


def bins_of(per_problem: pd.DataFrame) -> pd.DataFrame:
    """:func:`difficulty_bins` from each problem's level and solve rate: levels where every
    problem of the dataset has one, solve-rate terciles otherwise."""
    has_level = per_problem.groupby("dataset")["level"].transform(lambda s: bool(s.notna().all()))
    by_level = has_level.to_numpy(dtype=bool)

    pct = per_problem.groupby("dataset")["solve_rate"].rank(method="average", pct=True)
    pct_arr = pct.to_numpy(dtype=np.float64)
    tercile = np.where(pct_arr > 2.0 / 3.0, 0, np.where(pct_arr > 1.0 / 3.0, 1, 2))
    level_arr = per_problem["level"].to_numpy(dtype=np.float64)

    out = per_problem[["dataset", "problem_id"]].copy()
    out["difficulty_source"] = np.where(by_level, "level", "solve_rate")
    level_names = [f"{v:g}" if np.isfinite(v) else "unknown" for v in level_arr.tolist()]
    tercile_names = np.asarray(_TERCILES, dtype=object)[tercile]
    out["difficulty"] = np.where(by_level, np.asarray(level_names, dtype=object), tercile_names)
    out["difficulty_rank"] = np.where(by_level, level_arr, tercile.astype(np.float64))
    return out


def difficulty_table(
    frame: pd.DataFrame,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    resampler: ProblemResampler | None = None,
) -> pd.DataFrame:
    """Accuracy per (cell, difficulty) with cluster-bootstrap CIs.

    Columns: model, dataset, mode, budget, derived, difficulty_source, difficulty,
    difficulty_rank, n_samples, n_problems, accuracy, ci_low, ci_high, ci_method. The
    bootstrap resamples all problems of the dataset (the same W as the cell table), so a bin
    is a domain estimate whose size varies across resamples, as it would in a new draw.
    """
    require_columns(frame, [*CELL_KEYS, "problem_id", "correct"], "the difficulty table")
    coded = with_problem(Coded.of(frame))
    if resampler is None:
        resampler = ProblemResampler.from_coded(coded, n_boot=n_boot, seed=seed)
    return coded_difficulty_table(coded, ci=ci, resampler=resampler)


def with_problem(coded: Coded) -> Coded:
    """The rows that have a dataset and a problem id (the others cannot be binned nor
    resampled), coded afresh only when some row is dropped."""
    missing = coded.problem < 0
    if not missing.any():
        return coded
    return Coded.of(coded.frame.loc[~missing])


def coded_difficulty_table(coded: Coded, *, ci: float, resampler: ProblemResampler) -> pd.DataFrame:
    """:func:`difficulty_table` on coded rows that all have a dataset and a problem id."""
    frame, codes, keys = coded.frame, coded.cell, coded.cell_keys
    bins = coded_difficulty_bins(coded)
    groups = BinGroups.of(codes, coded.problem, coded.problem_keys, bins)
    correct = as_float(frame["correct"])
    means = pd.Series(correct).groupby(groups.group).mean().reindex(range(groups.n_groups))
    accuracy = np.asarray(means.to_numpy(dtype=np.float64), dtype=np.float64)
    dataset = coded.cell_dataset[groups.cell]
    local = local_codes(coded, resampler)
    result, n_problems = bootstrap_rows(
        local, groups.group, correct, dataset, accuracy, resampler, ci=ci
    )
    return difficulty_frame(
        keys,
        cell_derived(frame, codes, len(keys)),
        bins,
        groups,
        n_samples=np.bincount(groups.group, minlength=groups.n_groups).astype(np.int64),
        n_problems=n_problems,
        accuracy=accuracy,
        result=result,
    )


@dataclass(frozen=True)
class BinGroups:
    """The (cell, difficulty bin) groups: each row's group, and each group's cell and bin
    (``bin_keys[b]`` = (difficulty_rank, difficulty); problems without a bin are unknown)."""

    group: IntArray
    cell: IntArray
    bin: IntArray
    bin_keys: pd.Index

    @property
    def n_groups(self) -> int:
        return len(self.cell)

    @classmethod
    def of(
        cls, cell: IntArray, problem: IntArray, problem_keys: pd.DataFrame, bins: pd.DataFrame
    ) -> BinGroups:
        """Groups of rows with these cell and (dataset, problem_id) codes (all >= 0)."""
        pair_bins = problem_keys.merge(bins, on=["dataset", "problem_id"], how="left", sort=False)
        pair_code, bin_keys = pd.factorize(
            pd.MultiIndex.from_arrays(
                [
                    pair_bins["difficulty_rank"].fillna(-1.0),
                    pair_bins["difficulty"].fillna("unknown"),
                ]
            ),
            sort=True,
        )
        bin_code = np.asarray(pair_code, dtype=np.int64)[problem]
        n_bins = max(len(bin_keys), 1)
        uniq, group = sorted_unique(cell * n_bins + bin_code)
        return cls(group, uniq // n_bins, uniq % n_bins, bin_keys)


def difficulty_frame(
    keys: pd.DataFrame,
    derived: npt.NDArray[np.bool_],
    bins: pd.DataFrame,
    groups: BinGroups,
    *,
    n_samples: IntArray,
    n_problems: FloatArray,
    accuracy: FloatArray,
    result: BootstrapResult,
) -> pd.DataFrame:
    """The difficulty table's columns, one row per group (rows and statistics share it)."""
    g_cell, g_bin, bin_keys = groups.cell, groups.bin, groups.bin_keys
    source = bins.drop_duplicates("dataset").set_index("dataset")["difficulty_source"]
    table: pd.DataFrame = keys.iloc[g_cell].reset_index(drop=True)
    table["derived"] = derived[g_cell]
    table["difficulty_source"] = table["dataset"].map(source).to_numpy(dtype=object)
    table["difficulty"] = [str(bin_keys[b][1]) for b in g_bin.tolist()]
    table["difficulty_rank"] = [float(bin_keys[b][0]) for b in g_bin.tolist()]
    table["n_samples"] = n_samples
    table["n_problems"] = n_problems.astype(np.int64)
    table["accuracy"] = accuracy
    table["ci_low"] = result.ci_low
    table["ci_high"] = result.ci_high
    table["ci_method"] = result.method.astype(str)
    return table[DIFFICULTY_COLUMNS]
