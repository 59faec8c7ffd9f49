"""Intervals for claim effects: a cluster bootstrap over problems, shared by every check.

Problems are the unit of resampling (samples of one problem are not independent), the same
as for the curves (docs/curves.md). A statistic is written once as a function of per-problem
weights, so the estimate (every weight 1) and all resamples come from one vectorised call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from ponder.claims.base import Effect
from ponder.curves.bootstrap import dataset_rng, percentile_interval, resample_counts

FloatArray = npt.NDArray[np.float64]

# weights (rows x problems) -> one statistic per row
Statistic = Callable[[FloatArray], FloatArray]


def problem_weights(n_problems: int, *, n_boot: int, seed: int, key: str) -> FloatArray:
    """Resample counts (n_boot x n_problems) with the estimate's all-ones row first.

    ``key`` (e.g. the dataset and claim) seeds the generator, so one claim's resamples do not
    depend on which other claims or datasets ran.
    """
    counts = resample_counts(n_problems, n_boot, dataset_rng(seed, key)).astype(np.float64)
    return np.vstack([np.ones((1, n_problems)), counts])


def bootstrap_effect(
    statistic: Statistic,
    n_problems: int,
    *,
    name: str,
    unit: str,
    n_boot: int,
    seed: int,
    key: str,
    ci: float = 0.95,
    min_effect: float = 0.0,
) -> Effect:
    """The statistic on the data and its percentile interval over problem resamples.

    Resamples where the statistic is undefined (NaN, e.g. a group drawn empty) are dropped
    from the interval; if more than a tenth are, the interval is reported as undefined.
    """
    weights = problem_weights(n_problems, n_boot=n_boot, seed=seed, key=key)
    values = np.asarray(statistic(weights), dtype=np.float64)
    if values.shape != (n_boot + 1,):
        raise ValueError(f"{name}: statistic returned shape {values.shape}, not ({n_boot + 1},)")
    estimate = float(values[0])
    replicates = values[1:]
    if np.isnan(replicates).mean() > 0.1 or np.isnan(estimate):
        return Effect(name, estimate, float("nan"), float("nan"), unit, min_effect, ci)
    low, high = percentile_interval(replicates.reshape(-1, 1), ci)
    lo, hi = float(low[0]), float(high[0])
    # A percentile interval can miss a skewed estimate by rounding; keep it inside.
    return Effect(name, estimate, min(lo, estimate), max(hi, estimate), unit, min_effect, ci)


def weighted_mean(values: FloatArray, weights: FloatArray) -> FloatArray:
    """Per-row weighted mean of per-problem values (NaN values count as absent)."""
    present = ~np.isnan(values)
    w = weights * present
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: FloatArray = (w @ np.nan_to_num(values)) / total
    return out


def index_of(problems: Sequence[str]) -> dict[str, int]:
    """Position of each problem id in a claim's problem order."""
    return {p: i for i, p in enumerate(problems)}
