"""pass@k and maj@k per cell, at every k up to 16 and a grid beyond, with bootstrap CIs.

The k are every one from 1 to 16, then 24, 32, 48, 64, ... and the most samples of any
problem of the data (``k_grid``): a sweep of 900 samples a problem would otherwise give
900 rows a cell, and maj@k's subsets of every k would cost more than all the rest.

pass@k is the unbiased estimator of Chen et al. (2021): with n samples of a problem of which
c are correct, ``1 - C(n-c, k) / C(n, k)``, the probability that a random k-subset holds a
correct sample. It is computed as the running product ``prod_{j<k} (n-c-j)/(n-j)`` (each
factor in [0, 1], no huge binomials) and averaged over problems. A problem with fewer than
k samples is left out at that k; ``n_problems`` says how many problems each value covers.

maj@k is the expected score of majority voting over a uniformly random k-subset of the n
samples. Answers are compared after ``normalize``; unanswered samples (None/NaN, or empty
after normalizing) do not vote and a subset without votes scores 0. When several answers tie
for the most votes the subset scores the fraction of the tied answers that are correct, the
expected score of a uniform random tie-break. An answer is correct if a sample of the same
cell and problem with that normalized answer has correct == 1 (so maj@1 equals pass@1).
The expectation is exact (all subsets enumerated) when C(n, k) <= ``max_subsets`` (default
2000); otherwise it is a Monte-Carlo mean over ``max_subsets`` random subsets drawn from a
generator seeded by (seed, n, k), so each problem's value has a standard error of at most
0.5/sqrt(2000) ~ 0.011 and the cell value, averaged over problems, much less. The
expectation depends only on the problem's vote profile (answer counts and their
correctness), so each distinct profile is computed once.

Only sample rows (n_runs == 1) with known ``correct`` enter; aggregated rows cannot be
subset. Intervals come from the same paired cluster bootstrap over problems as the cells.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations
from math import comb

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
    require_columns,
    sample_mask,
    sorted_unique,
    unique_pairs,
)
from ponder.curves.bootstrap import ProblemResampler, bootstrap_groups, local_codes

K_COLUMNS: list[str] = [
    *CELL_KEYS,
    "derived",
    "k",
    "value",
    "ci_low",
    "ci_high",
    "ci_method",
    "n_problems",
]

_CHUNK_ELEMENTS = 1 << 23


# pass@k and maj@k are reported at every k up to this, then on a grid (``k_grid``).
EVERY_K_UP_TO = 16


def k_grid(most: int) -> IntArray:
    """The k reported for data of at most ``most`` samples a problem: 1 .. 16, then 24, 32,
    48, 64, ... (each about 1.5x the last) and ``most`` itself."""
    grid = list(range(1, min(most, EVERY_K_UP_TO) + 1))
    size = EVERY_K_UP_TO
    while size < most:
        power_of_two = size & (size - 1) == 0
        size = min(most, size * 3 // 2 if power_of_two else size * 4 // 3)
        grid.append(size)
    return np.asarray(grid, dtype=np.int64)


def pass_at_k(n: npt.ArrayLike, c: npt.ArrayLike, k: npt.ArrayLike) -> FloatArray:
    """Unbiased pass@k for arrays of (n samples, c correct, k); NaN where k > n or k < 1."""
    n_arr, c_arr, k_arr = np.broadcast_arrays(
        np.asarray(n, dtype=np.float64), np.asarray(c, dtype=np.float64), np.asarray(k)
    )
    k_int = k_arr.astype(np.int64)
    ratio = np.ones(n_arr.shape, dtype=np.float64)
    top = int(k_int.max()) if k_int.size else 0
    for j in range(top):
        active = (j < k_int) & (j < n_arr)
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.clip(n_arr - c_arr - j, 0.0, None) / (n_arr - j)
        ratio = np.where(active, ratio * factor, ratio)
    return np.where((k_int >= 1) & (k_int <= n_arr), 1.0 - ratio, np.nan)


def pass_at_k_table(
    frame: pd.DataFrame,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    resampler: ProblemResampler | None = None,
) -> pd.DataFrame:
    """pass@k for every cell and k of ``k_grid`` (every k up to 16) up to the most samples of
    a problem in the cell.

    Columns: model, dataset, mode, budget, derived, k, value, ci_low, ci_high, ci_method,
    n_problems (problems with at least k samples).
    """
    return coded_pass_at_k_table(_Prepared.of(frame, n_boot, seed, resampler), ci=ci)


def coded_pass_at_k_table(prep: SamplePairs, *, ci: float) -> pd.DataFrame:
    """:func:`pass_at_k_table` on prepared pairs (shared with maj@k by compute_curves).

    Only each pair's sample count n and correct count c enter, so the pairs may come from
    rows or from the sufficient statistics (``ponder.columnar``)."""
    n = prep.pair_n.astype(np.float64)
    c = prep.pair_c
    k_max = int(n.max()) if len(n) else 0
    values = pass_at_k(n[:, None], c[:, None], k_grid(k_max)[None, :])  # [pair, grid column]
    return _k_table(prep, n, values, ci=ci)


def maj_at_k_table(
    frame: pd.DataFrame,
    *,
    normalize: Callable[[str], str] = str.strip,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    max_subsets: int = 2000,
    resampler: ProblemResampler | None = None,
) -> pd.DataFrame:
    """Expected majority-vote accuracy over k-subsets, for every cell and k.

    Columns as :func:`pass_at_k_table` plus ``exact`` (False when any problem's value at that
    k is a Monte-Carlo estimate).
    """
    require_columns(frame, ["extracted_answer"], "maj@k")
    prep = _Prepared.of(frame, n_boot, seed, resampler)
    return coded_maj_at_k_table(
        prep, normalize=normalize, ci=ci, max_subsets=max_subsets, seed=seed
    )


def coded_maj_at_k_table(
    prep: _Prepared,
    *,
    normalize: Callable[[str], str],
    ci: float,
    max_subsets: int,
    seed: int,
) -> pd.DataFrame:
    """:func:`maj_at_k_table` on prepared rows."""
    answer = _answer_codes(prep.column("extracted_answer"), normalize)
    vote_pair, votes, vote_right = _row_votes(prep.pair_of_row, answer, prep.correct)
    return maj_at_k_from_votes(
        prep, vote_pair, votes, vote_right, ci=ci, max_subsets=max_subsets, seed=seed
    )


def _row_votes(
    pair_of_row: IntArray, answer: IntArray, correct: FloatArray
) -> tuple[IntArray, IntArray, npt.NDArray[np.bool_]]:
    """Per (pair, normalized answer) with votes: the pair, its vote count and whether the
    answer is right.

    An answer is right if a sample of that cell and problem gave it and was graded right
    (never borrowed from other sources, whose grading or gold may differ), so maj@1 equals
    pass@1.
    """
    n_answers = int(answer.max()) + 1 if len(answer) and answer.max() >= 0 else 1
    voter = answer >= 0
    vote_pair, _, inverse = unique_pairs(pair_of_row[voter], answer[voter], n_answers)
    votes = np.bincount(inverse, minlength=len(vote_pair)).astype(np.int64)
    right = (correct[voter] == 1.0).astype(np.float64)
    vote_right = np.bincount(inverse, weights=right, minlength=len(vote_pair)) > 0
    return vote_pair, votes, vote_right


def maj_at_k_from_votes(
    prep: SamplePairs,
    vote_pair: IntArray,
    votes: IntArray,
    vote_right: npt.NDArray[np.bool_],
    *,
    ci: float,
    max_subsets: int,
    seed: int,
) -> pd.DataFrame:
    """maj@k of the pairs from their vote counts: one entry per (pair, answer) with votes,
    in any order (``vote_pair`` indexes ``prep``'s pairs); each pair's other samples did not
    vote. Rows (:func:`coded_maj_at_k_table`) and the answer-count side table
    (``ponder.columnar``) both end here."""
    n = prep.pair_n
    # Each pair's profile sorted by (votes, correct): which answer is which does not matter.
    order = np.lexsort((-vote_right.astype(np.int64), -votes, vote_pair))
    va_pair, votes, va_ok = vote_pair[order], votes[order], vote_right[order]
    first = np.searchsorted(va_pair, va_pair, side="left")
    rank = np.arange(len(va_pair)) - first
    m_max = int(rank.max()) + 1 if len(rank) else 1
    counts = np.zeros((prep.n_pairs, m_max), dtype=np.int64)
    oks = np.zeros((prep.n_pairs, m_max), dtype=np.int64)
    counts[va_pair, rank] = votes
    oks[va_pair, rank] = va_ok

    profiles, prof_inv = unique_rows(np.column_stack([n, counts, oks]))
    grid = k_grid(int(n.max()) if len(n) else 0)
    prof_values = np.full((len(profiles), len(grid)), np.nan)  # [profile, grid column]
    prof_exact = np.ones((len(profiles), len(grid)), dtype=bool)
    for n_samples in np.unique(profiles[:, 0]).tolist():
        sel = np.flatnonzero(profiles[:, 0] == n_samples)
        p_counts = profiles[sel, 1 : 1 + m_max]
        p_ok = profiles[sel, 1 + m_max :].astype(bool)
        used = max(1, int((p_counts > 0).sum(axis=1).max()))
        p_counts, p_ok = p_counts[:, :used], p_ok[:, :used]
        for column, k in enumerate(grid[grid <= n_samples].tolist()):
            subsets, exact = _subsets(n_samples, k, max_subsets, seed)
            prof_values[sel, column] = expected_majority(p_counts, p_ok, n_samples, subsets)
            prof_exact[sel, column] = exact
    values = prof_values[prof_inv]
    table = _k_table(prep, n.astype(np.float64), values, ci=ci)
    exact_pairs = prof_exact[prof_inv]
    table["exact"] = _group_all(prep, n, exact_pairs, table)
    return table


def unique_rows(table: IntArray) -> tuple[IntArray, IntArray]:
    """``np.unique(table, axis=0, return_inverse=True)`` by a lexsort over the columns.

    Same rows in the same (lexicographic) order with the same inverse; np.unique sorts the
    rows as structured records, which is several times slower.
    """
    if len(table) == 0:
        return table[:0], np.zeros(0, dtype=np.int64)
    order = np.lexsort(table.T[::-1])
    ordered = table[order]
    new = np.ones(len(table), dtype=bool)
    new[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    group = np.cumsum(new) - 1
    inverse = np.empty(len(table), dtype=np.int64)
    inverse[order] = group
    return ordered[new], inverse


def expected_majority(
    counts: IntArray, correct: npt.NDArray[np.bool_], n: int, subsets: IntArray
) -> FloatArray:
    """Mean majority-vote score over the given subsets, for profiles of n samples.

    ``counts[q, j]`` samples of profile q gave answer j (laid out as consecutive sample
    positions; the rest did not vote), ``correct[q, j]`` whether answer j is right,
    ``subsets`` (n_subsets x k) the sample positions of each subset. Votes are read off a
    cumulative incidence matrix, so there is no loop over subsets or profiles.
    """
    n_sub = subsets.shape[0]
    incidence = np.zeros((n_sub, n), dtype=np.int16)
    np.put_along_axis(incidence, subsets, 1, axis=1)
    cum = np.zeros((n_sub, n + 1), dtype=np.int16)
    np.cumsum(incidence, axis=1, out=cum[:, 1:])
    ends = np.cumsum(counts, axis=1)
    starts = ends - counts
    n_prof, m = counts.shape
    out = np.empty(n_prof)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, n_sub * m))
    for lo in range(0, n_prof, chunk):
        hi = min(n_prof, lo + chunk)
        votes = cum[:, ends[lo:hi]] - cum[:, starts[lo:hi]]  # (n_sub, profiles, answers)
        top = votes.max(axis=2)
        tie = votes == top[..., None]
        n_tie = tie.sum(axis=2)
        n_ok = (tie & correct[lo:hi][None, :, :]).sum(axis=2)
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(top > 0, n_ok / n_tie, 0.0)
        out[lo:hi] = score.mean(axis=0)
    return out


class SamplePairs:
    """The (cell, problem) pairs that enter pass@k / maj@k: per pair, its sample count n and
    correct count c (``correct == 1``), with the cells' keys, datasets and derived flags.

    Pairs are sorted by (cell code, problem position in the resampler's universe)."""

    def __init__(
        self,
        *,
        resampler: ProblemResampler,
        keys: pd.DataFrame,
        dataset: npt.NDArray[np.object_],
        derived: npt.NDArray[np.bool_],
        pair_cell: IntArray,
        pair_problem: IntArray,
        pair_n: IntArray,
        pair_c: FloatArray,
    ) -> None:
        self.resampler = resampler
        self.keys = keys
        self.dataset = dataset
        self.derived = derived
        self.pair_cell, self.pair_problem = pair_cell, pair_problem
        self.pair_n, self.pair_c = pair_n, pair_c
        self.n_pairs = len(pair_cell)
        self._groups: tuple[IntArray, IntArray, IntArray, IntArray] | None = None

    def groups(self) -> tuple[IntArray, IntArray, IntArray, IntArray]:
        """Long (pair, k) arrays for every pair and k of ``k_grid`` up to its sample count:
        the pair, k, k's column in the grid, and the group = (cell, k)."""
        if self._groups is None:
            n = self.pair_n
            grid = k_grid(int(n.max()) if len(n) else 0)
            per_pair = np.searchsorted(grid, n, side="right")  # grid values <= n
            pair_idx = np.repeat(np.arange(self.n_pairs), per_pair)
            starts = np.repeat(np.cumsum(per_pair) - per_pair, per_pair)
            column = np.arange(len(pair_idx)) - starts
            group_key = self.pair_cell[pair_idx] * max(len(grid), 1) + column
            _, group = sorted_unique(group_key)
            self._groups = (pair_idx, grid[column], column, group)
        return self._groups


class _Prepared(SamplePairs):
    """Rows that enter pass@k / maj@k, with their cell and (cell, problem) pair."""

    def __init__(self, coded: Coded, resampler: ProblemResampler) -> None:
        frame = coded.frame
        require_columns(frame, [*CELL_KEYS, "problem_id", "correct"], "pass@k / maj@k")
        self.source = frame
        codes, keys = coded.cell, coded.cell_keys
        correct = as_float(frame["correct"])
        local = local_codes(coded, resampler)
        keep = sample_mask(frame) & ~np.isnan(correct) & (local >= 0)
        self.rows = np.flatnonzero(keep)
        self.correct = correct[self.rows]
        n_max = max((len(resampler.universe(d)) for d in resampler.datasets), default=1)
        pair_cell, pair_problem, self.pair_of_row = unique_pairs(
            codes[self.rows], local[self.rows], n_max
        )
        n_pairs = len(pair_cell)
        right = self.correct == 1.0
        super().__init__(
            resampler=resampler,
            keys=keys,
            dataset=coded.cell_dataset,
            derived=cell_derived(frame, codes, len(keys)),
            pair_cell=pair_cell,
            pair_problem=pair_problem,
            pair_n=np.bincount(self.pair_of_row, minlength=n_pairs).astype(np.int64),
            pair_c=np.asarray(
                np.bincount(self.pair_of_row, weights=right, minlength=n_pairs), dtype=np.float64
            ),
        )

    @classmethod
    def of(
        cls, frame: pd.DataFrame, n_boot: int, seed: int, resampler: ProblemResampler | None
    ) -> _Prepared:
        require_columns(frame, [*CELL_KEYS, "problem_id", "correct"], "pass@k / maj@k")
        coded = Coded.of(frame)
        if resampler is None:
            resampler = ProblemResampler.from_coded(coded, n_boot=n_boot, seed=seed)
        return cls(coded, resampler)

    def column(self, name: str) -> pd.Series:
        """A column of the kept rows."""
        return self.source[name].iloc[self.rows].reset_index(drop=True)


def _k_table(prep: SamplePairs, n: FloatArray, values: FloatArray, *, ci: float) -> pd.DataFrame:
    """Average per-problem values into (cell, k) groups and bootstrap them over problems."""
    pair_idx, k, column, group = prep.groups()
    if len(group) == 0:
        return pd.DataFrame(columns=K_COLUMNS)
    n_groups = int(group.max()) + 1
    vals = values[pair_idx, column]
    sums = np.bincount(group, weights=vals, minlength=n_groups)
    counts = np.bincount(group, minlength=n_groups).astype(np.float64)
    estimate = sums / counts
    first = np.zeros(n_groups, dtype=np.int64)
    first[group[::-1]] = np.arange(len(group))[::-1]  # any member of each group
    g_cell = prep.pair_cell[pair_idx[first]]
    g_k = k[first]
    group_dataset = prep.dataset[g_cell]
    result = bootstrap_groups(
        prep.resampler,
        group_dataset=group_dataset,
        pair_group=group,
        pair_problem=prep.pair_problem[pair_idx],
        pair_sum=vals,
        pair_count=np.ones(len(vals)),
        estimate=estimate,
        n_problems=counts,
        ci=ci,
    )
    table = prep.keys.iloc[g_cell].reset_index(drop=True)
    table["derived"] = prep.derived[g_cell]
    table["k"] = g_k
    table["value"] = estimate
    table["ci_low"] = result.ci_low
    table["ci_high"] = result.ci_high
    table["ci_method"] = result.method.astype(str)
    table["n_problems"] = counts.astype(np.int64)
    return table[K_COLUMNS]


def _group_all(
    prep: SamplePairs, n: IntArray, flags: npt.NDArray[np.bool_], table: pd.DataFrame
) -> npt.NDArray[np.bool_]:
    """Per (cell, k) group: whether the flag holds for every pair in it (same order as table)."""
    pair_idx, _, column, group = prep.groups()
    if len(group) == 0:
        return np.zeros(0, dtype=bool)
    bad = np.bincount(group, weights=~flags[pair_idx, column], minlength=len(table))
    return np.asarray(bad == 0)


def _answer_codes(answers: pd.Series, normalize: Callable[[str], str]) -> IntArray:
    """Code of each row's normalized answer; -1 for no vote (None/NaN/empty)."""
    raw_codes, normalized = normalize_distinct(answers, normalize)
    norm_codes, _ = pd.factorize(pd.Series(normalized, dtype=object), use_na_sentinel=True)
    mapping = np.asarray(norm_codes, dtype=np.int64)
    out = np.full(len(answers), -1, dtype=np.int64)
    has = raw_codes >= 0
    out[has] = mapping[raw_codes[has]]
    return out


def normalize_distinct(
    answers: pd.Series, normalize: Callable[[str], str]
) -> tuple[IntArray, list[str | None]]:
    """Each answer's code among the distinct raw answers (-1 for None/NaN) and the normalized
    form of each distinct one (None when empty: no vote).

    ``normalize`` is called once per distinct raw answer, not per row. Arrow strings
    factorize in C; the codes (first-appearance order) and NA are the same as for the same
    values as Python objects.
    """
    raw_codes, uniques = pd.factorize(answers, use_na_sentinel=True)
    normalized = [normalize(str(u)) for u in uniques]
    return np.asarray(raw_codes, dtype=np.int64), [s if s else None for s in normalized]


def _subsets(n: int, k: int, max_subsets: int, seed: int) -> tuple[IntArray, bool]:
    """All k-subsets of range(n) if there are at most max_subsets, else a seeded random draw."""
    if comb(n, k) <= max_subsets:
        return np.asarray(list(combinations(range(n), k)), dtype=np.int64).reshape(-1, k), True
    rng = np.random.default_rng([seed, n, k])
    draws = np.argsort(rng.random((max_subsets, n)), axis=1)[:, :k]
    return draws.astype(np.int64), False
