"""Paired cluster bootstrap over problems.

Samples of one problem are correlated (same question, several seeds, several budgets), so
the honest unit of resampling is the problem, not the sample. For each dataset we draw ONE
matrix of resampling counts ``W`` (``n_boot x n_problems``) and reuse it for every cell of
that dataset: resample ``b`` then means "this multiset of problems" for all cells at once,
which makes differences between cells (two budgets, two models) paired.

A cell (or any group: a (cell, k) of pass@k, a (cell, difficulty) bin) is described by
per-problem sums ``S`` and row counts ``N``; its value in resample ``b`` is the ratio
``(W[b] @ S) / (W[b] @ N)``. Problems absent from a group have zero count, so a group on a
subset of problems is a domain estimate under the same resampling. A resample in which a
group has no rows is dropped for that group only (NaN in the replicate matrix).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from ponder.curves._frame import Coded, FloatArray, IntArray, problem_codes, unique_pairs

# Bound on the dense per-chunk (problems x groups) matrices, in elements.
_CHUNK_ELEMENTS = 1 << 22
# Bound on the dense per-chunk (problems x groups) and (resamples x groups) blocks of
# bootstrap_groups: keeps pass@k / maj@k's transient memory near 50 MB at any number of
# cells, for the same matrix products.
_GROUP_CHUNK_ELEMENTS = 1 << 20


# Float64 products are computed in whole panels of this many columns (``weighted_sums``).
_PANEL = 16
# Integers up to this are exact in float32.
_FLOAT32_EXACT = float(1 << 24)

# Fewer problems than this with any correct (or any wrong) sample: the interval is widened.
_FEW = 5


def resample_counts(
    n_problems: int, n_boot: int, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """How many times each problem is drawn in each resample, as float32 (n_boot x n_problems).

    Built with one ``bincount`` over offset indices (``b * n_problems + drawn``) instead of a
    Python loop over resamples; chunked so memory stays bounded for large datasets.
    """
    out = np.zeros((n_boot, n_problems), dtype=np.float32)
    if n_problems == 0 or n_boot == 0:
        return out
    rows_per_chunk = max(1, _CHUNK_ELEMENTS // n_problems)
    for start in range(0, n_boot, rows_per_chunk):
        stop = min(n_boot, start + rows_per_chunk)
        drawn = rng.integers(0, n_problems, size=(stop - start, n_problems), dtype=np.int64)
        offsets = np.arange(stop - start, dtype=np.int64)[:, None] * n_problems
        flat = np.bincount((drawn + offsets).ravel(), minlength=(stop - start) * n_problems)
        out[start:stop] = flat.reshape(stop - start, n_problems)
    return out


def dataset_rng(seed: int, dataset: str) -> np.random.Generator:
    """A generator per (seed, dataset), so W does not depend on which other datasets are present."""
    return np.random.default_rng([seed, zlib.crc32(dataset.encode("utf-8"))])


class ProblemResampler:
    """The per-dataset problem universes and their (cached) resampling-count matrices.

    Share one instance between tables to keep them paired with each other; two instances
    built from frames with the same problems and the same seed draw identical matrices.
    """

    def __init__(
        self, problems: Mapping[str, Iterable[object]], *, n_boot: int = 1000, seed: int = 0
    ) -> None:
        if n_boot < 1:
            raise ValueError("n_boot must be at least 1")
        self.n_boot = n_boot
        self.seed = seed
        self._universe: dict[str, pd.Index] = {
            str(d): pd.Index(sorted({str(p) for p in ids})) for d, ids in problems.items()
        }
        self._counts: dict[str, npt.NDArray[np.float32]] = {}

    @classmethod
    def from_frame(
        cls, frame: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0
    ) -> ProblemResampler:
        """Universe of each dataset = the distinct problem ids it has anywhere in the frame."""
        return cls._from_pairs(frame[["dataset", "problem_id"]].drop_duplicates(), n_boot, seed)

    @classmethod
    def from_coded(cls, coded: Coded, *, n_boot: int = 1000, seed: int = 0) -> ProblemResampler:
        """:meth:`from_frame` on the distinct pairs the codes already found.

        Rows with a missing problem id are not coded; the few distinct pairs among them are
        added as they are, so the universe is exactly the one :meth:`from_frame` builds.
        """
        pairs = coded.problem_keys
        uncoded = coded.problem < 0
        if uncoded.any():
            extra = coded.frame.loc[uncoded, ["dataset", "problem_id"]].drop_duplicates()
            pairs = pd.concat([pairs, extra], ignore_index=True)
        return cls._from_pairs(pairs, n_boot, seed)

    @classmethod
    def _from_pairs(cls, pairs: pd.DataFrame, n_boot: int, seed: int) -> ProblemResampler:
        problems: dict[str, list[object]] = {}
        for dataset, ids in pairs.groupby("dataset", sort=True)["problem_id"]:
            problems[str(dataset)] = ids.tolist()
        return cls(problems, n_boot=n_boot, seed=seed)

    @property
    def datasets(self) -> list[str]:
        return sorted(self._universe)

    def universe(self, dataset: str) -> pd.Index:
        return self._universe[dataset]

    def counts(self, dataset: str) -> npt.NDArray[np.float32]:
        """The resampling-count matrix W of a dataset (drawn once, then cached)."""
        if dataset not in self._counts:
            n_problems = len(self._universe[dataset])
            rng = dataset_rng(self.seed, dataset)
            self._counts[dataset] = resample_counts(n_problems, self.n_boot, rng)
        return self._counts[dataset]

    def local_codes(self, frame: pd.DataFrame) -> IntArray:
        """Position of each row's problem in its dataset's universe (-1 if unknown).

        Distinct (dataset, problem_id) pairs are looked up once and broadcast back, so this
        is cheap on 1e6 rows.
        """
        return self.local_codes_of(*problem_codes(frame))

    def local_codes_of(self, codes: IntArray, pairs: pd.DataFrame) -> IntArray:
        """:meth:`local_codes` from (dataset, problem_id) codes and their table of pairs."""
        pair_local = np.full(len(pairs), -1, dtype=np.int64)
        ds = pairs["dataset"].astype(str).to_numpy()
        ids = pairs["problem_id"].astype(str)
        for dataset in pd.unique(ds):
            if dataset in self._universe:
                mask = ds == dataset
                pair_local[mask] = self._universe[dataset].get_indexer(ids[mask])
        out = np.full(len(codes), -1, dtype=np.int64)
        ok = codes >= 0
        out[ok] = pair_local[codes[ok]]
        return out


@dataclass(frozen=True)
class BootstrapResult:
    """Point estimates, intervals and (optionally) the replicate matrix of a set of groups.

    ``replicates[b, g]`` is group g in resample b (NaN where the resample had no rows of g);
    groups of the same dataset share the resamples, so column differences are paired.
    ``method`` is "percentile", "wilson" (degenerate percentile interval), "percentile+wilson"
    (few problems carry the signal: the union of both) or "none".
    """

    estimate: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    method: npt.NDArray[np.object_]
    n_resamples: IntArray
    replicates: FloatArray | None


def nan_quantiles(replicates: FloatArray, qs: Iterable[float]) -> list[FloatArray]:
    """Column-wise linear-interpolated quantiles ignoring NaN (vectorized ``np.nanquantile``)."""
    ordered = np.sort(replicates, axis=0)  # NaN sorts last
    n_valid = (~np.isnan(replicates)).sum(axis=0)
    cols = np.arange(replicates.shape[1])
    results = []
    for q in qs:
        pos = q * np.maximum(n_valid - 1, 0)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, np.maximum(n_valid - 1, 0))
        frac = pos - lo
        a = ordered[lo, cols] if len(ordered) else np.full(len(cols), np.nan)
        b = ordered[hi, cols] if len(ordered) else np.full(len(cols), np.nan)
        value = np.where(frac > 0, a + (b - a) * frac, a)
        results.append(np.where(n_valid > 0, value, np.nan))
    return results


def percentile_interval(replicates: FloatArray, ci: float = 0.95) -> tuple[FloatArray, FloatArray]:
    """Equal-tailed percentile interval of each column, NaN resamples dropped."""
    alpha = (1.0 - ci) / 2.0
    low, high = nan_quantiles(replicates, (alpha, 1.0 - alpha))
    return low, high


def wilson_interval(
    p: FloatArray, n: FloatArray, ci: float = 0.95
) -> tuple[FloatArray, FloatArray]:
    """Wilson score interval for a proportion p out of n (NaN where n == 0)."""
    z = NormalDist().inv_cdf(1.0 - (1.0 - ci) / 2.0)
    p = np.asarray(p, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = 1.0 + z * z / n
        center = (p + z * z / (2.0 * n)) / denom
        half = z / denom * np.sqrt(np.clip(p * (1.0 - p), 0.0, None) / n + z * z / (4.0 * n * n))
        # Exact endpoints at p = 0 and p = 1 (the formula gives them up to rounding).
        low = np.where(p <= 0.0, 0.0, np.clip(center - half, 0.0, 1.0))
        high = np.where(p >= 1.0, 1.0, np.clip(center + half, 0.0, 1.0))
        low = np.where(n > 0, low, np.nan)
        high = np.where(n > 0, high, np.nan)
    return low, high


def paired_difference_interval(
    a: FloatArray, b: FloatArray, ci: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of ``a - b`` over the resamples where both are defined."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    low, high = percentile_interval(diff.reshape(-1, 1), ci)
    return float(low[0]), float(high[0])


def bootstrap_groups(
    resampler: ProblemResampler,
    *,
    group_dataset: npt.NDArray[np.object_],
    pair_group: IntArray,
    pair_problem: IntArray,
    pair_sum: FloatArray,
    pair_count: FloatArray,
    estimate: FloatArray,
    n_problems: FloatArray,
    ci: float = 0.95,
    keep_replicates: bool = False,
) -> BootstrapResult:
    """Cluster-bootstrap intervals for groups given by per-(group, problem) sums and counts.

    ``pair_problem`` is the position in the group's dataset universe (``local_codes``).
    The point estimate is passed in (computed by the caller exactly as it is reported), the
    bootstrap only supplies the interval. When the percentile interval is degenerate (all
    resamples equal: the estimate is exactly 0 or 1, or one problem) we fall back to the
    Wilson score interval with n = number of problems in the group, which is conservative
    for clustered samples because it counts a problem as one observation. When fewer than
    five problems have a correct (or a wrong) sample, the interval is the union of the
    percentile and Wilson intervals (``method`` "percentile+wilson").
    """
    n_groups = len(group_dataset)
    n_boot = resampler.n_boot
    ci_low = np.full(n_groups, np.nan)
    ci_high = np.full(n_groups, np.nan)
    n_resamples = np.zeros(n_groups, dtype=np.int64)
    replicates = np.full((n_boot, n_groups), np.nan) if keep_replicates else None

    datasets = np.asarray(group_dataset, dtype=object).astype(str)
    order = np.argsort(datasets, kind="stable")  # groups of a dataset become contiguous
    rank = np.empty(n_groups, dtype=np.int64)
    rank[order] = np.arange(n_groups)
    pair_rank = rank[pair_group]
    pair_order = np.argsort(pair_rank, kind="stable")
    sorted_rank = pair_rank[pair_order]
    sorted_ds = datasets[order]
    boundaries = np.flatnonzero(sorted_ds[1:] != sorted_ds[:-1]) + 1
    starts = np.concatenate([[0], boundaries]).astype(np.int64)
    stops = np.concatenate([boundaries, [n_groups]]).astype(np.int64)

    for d_start, d_stop in zip(starts.tolist(), stops.tolist(), strict=True):
        if d_stop <= d_start or str(sorted_ds[d_start]) not in resampler._universe:
            continue  # (groups without a dataset have no problems to resample: no interval)
        counts32 = resampler.counts(str(sorted_ds[d_start]))
        weights = counts32.astype(np.float64)
        n_prob = weights.shape[1]
        # Both block shapes bounded: (problems x groups) and (resamples x groups). A dataset
        # of few problems and many cells (AIME: 30 problems) otherwise held 267 MiB blocks.
        chunk = max(1, _GROUP_CHUNK_ELEMENTS // max(n_prob, weights.shape[0], 1))
        for c_start in range(d_start, d_stop, chunk):
            c_stop = min(d_stop, c_start + chunk)
            width = c_stop - c_start
            lo_p, hi_p = np.searchsorted(sorted_rank, [c_start, c_stop])
            sel = pair_order[lo_p:hi_p]
            col = sorted_rank[lo_p:hi_p] - c_start
            flat = pair_problem[sel] * width + col
            sums = np.bincount(flat, weights=pair_sum[sel], minlength=n_prob * width)
            counts = np.bincount(flat, weights=pair_count[sel], minlength=n_prob * width)
            num = weighted_sums(weights, counts32, sums.reshape(n_prob, width))
            den = weighted_sums(weights, counts32, counts.reshape(n_prob, width))
            with np.errstate(divide="ignore", invalid="ignore"):
                reps = np.where(den > 0, num / den, np.nan)
            groups = order[c_start:c_stop]
            low, high = percentile_interval(reps, ci)
            ci_low[groups] = low
            ci_high[groups] = high
            n_resamples[groups] = (~np.isnan(reps)).sum(axis=0)
            if replicates is not None:
                replicates[:, groups] = reps

    estimate = np.asarray(estimate, dtype=np.float64)
    method = np.where(np.isnan(ci_low) | np.isnan(estimate), "none", "percentile").astype(object)
    degenerate = np.isfinite(estimate) & (
        (estimate <= 0.0) | (estimate >= 1.0) | (ci_low == ci_high)
    )
    if degenerate.any():
        w_low, w_high = wilson_interval(estimate[degenerate], n_problems[degenerate], ci)
        ci_low[degenerate] = w_low
        ci_high[degenerate] = w_high
        method[degenerate] = "wilson"
    # Near 0 or 1 the percentile interval is too narrow when only a few problems carry the
    # signal (coverage fell to ~60% with one solved problem in simulation); there, widen it to
    # also cover the Wilson interval over problems.
    solved = np.bincount(pair_group, weights=(pair_sum > 0), minlength=n_groups)
    missed = np.bincount(pair_group, weights=(pair_sum < pair_count), minlength=n_groups)
    sparse = ~degenerate & np.isfinite(estimate) & (n_problems > 0)
    sparse &= (solved < _FEW) | (missed < _FEW)
    if sparse.any():
        w_low, w_high = wilson_interval(estimate[sparse], n_problems[sparse], ci)
        ci_low[sparse] = np.fmin(ci_low[sparse], w_low)
        ci_high[sparse] = np.fmax(ci_high[sparse], w_high)
        method[sparse] = "percentile+wilson"
    return BootstrapResult(
        estimate=estimate,
        ci_low=ci_low,
        ci_high=ci_high,
        method=method,
        n_resamples=n_resamples,
        replicates=replicates,
    )


def weighted_sums(
    weights: FloatArray, weights32: npt.NDArray[np.float32], block: npt.NDArray[Any]
) -> FloatArray:
    """``weights @ block`` (resamples x groups), each column's value independent of which
    other columns share the product, so a table computed in batches of groups equals the
    one computed at once.

    Integer-valued blocks (counts, 0/1 correct) are summed exactly, in float32 (a resample
    draws n_problems problems, so every partial sum is at most n_problems times the largest
    value; below 2**24 float32 holds them exactly) at twice float64's speed. Other blocks go
    through float64 BLAS padded to whole panels of ``_PANEL`` columns: BLAS sums a column in
    the same order in every full panel, but differently in a ragged last panel or a single
    column (a matrix-vector product), which would move the last bits with the batching.
    """
    n_prob, width = block.shape
    largest = float(np.abs(block).max()) if block.size else 0.0
    if largest * n_prob < _FLOAT32_EXACT and np.array_equal(block, np.round(block)):
        exact: FloatArray = (weights32 @ block.astype(np.float32)).astype(np.float64)
        return exact
    padded_width = max(_PANEL, -(-width // _PANEL) * _PANEL)
    if padded_width == width:
        return np.asarray(weights @ block, dtype=np.float64)
    padded = np.zeros((n_prob, padded_width))
    padded[:, :width] = block
    return np.asarray((weights @ padded)[:, :width], dtype=np.float64)


def local_codes(coded: Coded, resampler: ProblemResampler) -> IntArray:
    """Each row's position in its dataset's universe, computed once per coded frame."""
    cached = coded._local.get(id(resampler))
    if cached is not None and cached[0] is resampler:
        return cached[1]
    local = resampler.local_codes_of(coded.problem, coded.problem_keys)
    coded._local[id(resampler)] = (resampler, local)
    return local


def bootstrap_rows(
    local: IntArray,
    group: IntArray,
    values: FloatArray,
    group_dataset: npt.NDArray[np.object_],
    estimate: FloatArray,
    resampler: ProblemResampler,
    *,
    ci: float = 0.95,
    keep_replicates: bool = False,
) -> tuple[BootstrapResult, FloatArray]:
    """Bootstrap of group means of row values (NaN values ignored); also returns n_problems.

    ``local`` is each row's position in its dataset's universe (:func:`local_codes`). Each
    row is a sum (its value) over a count (1, or 0 when the value is NaN): see
    :func:`bootstrap_sums`.
    """
    known = ~np.isnan(values)
    return bootstrap_sums(
        local,
        group,
        np.where(known, values, 0.0),
        known.astype(np.float64),
        group_dataset,
        estimate,
        resampler,
        ci=ci,
        keep_replicates=keep_replicates,
    )


def bootstrap_sums(
    local: IntArray,
    group: IntArray,
    sums: FloatArray,
    counts: FloatArray,
    group_dataset: npt.NDArray[np.object_],
    estimate: FloatArray,
    resampler: ProblemResampler,
    *,
    ci: float = 0.95,
    keep_replicates: bool = False,
) -> tuple[BootstrapResult, FloatArray]:
    """Bootstrap of group ratios ``sum(sums) / sum(counts)``; also returns n_problems.

    A row is one outcome (its value over 1) or already a partial aggregate (a sum over a
    count, as in the sufficient-statistics table); rows with a zero count are ignored. Rows
    are reduced to per-(group, problem) sums and counts first, so the replicates depend only
    on those, not on how the rows were grouped before, and the cost after that does not
    depend on the number of samples.
    """
    n_groups = len(group_dataset)
    valid = (group >= 0) & (counts > 0) & (local >= 0)
    n_max = max((len(resampler.universe(d)) for d in resampler.datasets), default=1)
    pg, pp, inverse = unique_pairs(group[valid], local[valid], n_max)
    pair_sum = np.bincount(inverse, weights=sums[valid], minlength=len(pg)).astype(np.float64)
    pair_count = np.bincount(inverse, weights=counts[valid], minlength=len(pg))
    n_problems = np.bincount(pg, minlength=n_groups).astype(np.float64)
    result = bootstrap_groups(
        resampler,
        group_dataset=group_dataset,
        pair_group=pg,
        pair_problem=pp,
        pair_sum=pair_sum,
        pair_count=pair_count.astype(np.float64),
        estimate=estimate,
        n_problems=n_problems,
        ci=ci,
        keep_replicates=keep_replicates,
    )
    return result, n_problems
