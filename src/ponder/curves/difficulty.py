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

import numpy as np
import pandas as pd

from ponder.curves._frame import (
    CELL_KEYS,
    as_float,
    cell_codes,
    cell_derived,
    derived_mask,
    problem_codes,
    require_columns,
)
from ponder.curves.bootstrap import ProblemResampler, bootstrap_rows

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
    recorded = frame.loc[~derived_mask(frame)]
    if "n_runs" in recorded.columns:
        # Solve rates from samples where a dataset has them: aggregated leaderboard rows of
        # other sources (MathArena covers AIME I only) would skew one part of the dataset.
        is_sample = (recorded["n_runs"] == 1).to_numpy()
        with_samples = set(recorded.loc[is_sample, "dataset"])
        recorded = recorded[is_sample | ~recorded["dataset"].isin(with_samples).to_numpy()]
    level = as_float(recorded["level"]) if "level" in recorded.columns else np.nan
    per_problem = (
        pd.DataFrame(
            {
                "dataset": recorded["dataset"].to_numpy(),
                "problem_id": recorded["problem_id"].to_numpy(),
                "level": level,
                "correct": as_float(recorded["correct"]),
            }
        )
        .groupby(["dataset", "problem_id"], sort=True)
        .agg(level=("level", "max"), solve_rate=("correct", "mean"))
        .reset_index()
    )
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
    # A row without a problem id cannot be binned (nor resampled).
    frame = frame.loc[frame["dataset"].notna() & frame["problem_id"].notna()]
    frame = frame.reset_index(drop=True)
    if resampler is None:
        resampler = ProblemResampler.from_frame(frame, n_boot=n_boot, seed=seed)
    codes, keys = cell_codes(frame)
    derived = cell_derived(frame, codes, len(keys))
    bins = difficulty_bins(frame)
    prob_code, prob_keys = problem_codes(frame)
    pair_bins = prob_keys.merge(bins, on=["dataset", "problem_id"], how="left", sort=False)
    pair_code, bin_keys = pd.factorize(
        pd.MultiIndex.from_arrays(
            [pair_bins["difficulty_rank"].fillna(-1.0), pair_bins["difficulty"].fillna("unknown")]
        ),
        sort=True,
    )
    bin_code = np.asarray(pair_code, dtype=np.int64)[prob_code]
    n_bins = max(len(bin_keys), 1)
    group_key = codes * n_bins + bin_code
    uniq, group = np.unique(group_key, return_inverse=True)
    group = np.asarray(group, dtype=np.int64).reshape(-1)
    g_cell = uniq // n_bins
    g_bin = uniq % n_bins

    correct = as_float(frame["correct"])
    means = pd.Series(correct).groupby(group).mean().reindex(range(len(uniq)))
    accuracy = np.asarray(means.to_numpy(dtype=np.float64), dtype=np.float64)
    dataset = keys["dataset"].astype(str).to_numpy(dtype=object)[g_cell]
    result, n_problems = bootstrap_rows(frame, group, correct, dataset, accuracy, resampler, ci=ci)
    source = bins.drop_duplicates("dataset").set_index("dataset")["difficulty_source"]
    table: pd.DataFrame = keys.iloc[g_cell].reset_index(drop=True)
    table["derived"] = derived[g_cell]
    table["difficulty_source"] = table["dataset"].map(source).to_numpy(dtype=object)
    table["difficulty"] = [str(bin_keys[b][1]) for b in g_bin.tolist()]
    table["difficulty_rank"] = [float(bin_keys[b][0]) for b in g_bin.tolist()]
    table["n_samples"] = np.bincount(group, minlength=len(uniq)).astype(np.int64)
    table["n_problems"] = n_problems.astype(np.int64)
    table["accuracy"] = accuracy
    table["ci_low"] = result.ci_low
    table["ci_high"] = result.ci_high
    table["ci_method"] = result.method.astype(str)
    return table[DIFFICULTY_COLUMNS]
