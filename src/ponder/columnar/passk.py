"""pass@k and maj@k from the sufficient statistics and the answer counts, equal to the frame's.

``ponder.curves.pass_at_k_table`` / ``maj_at_k_table`` reduce the sample rows to pairs
(cell, problem) before anything else: pass@k reads each pair's sample count n and correct
count c, maj@k its vote profile (votes per normalized answer and whether that answer was
graded right). The statistics (``ponder.columnar.stats``) hold n (``correct_n`` of the
``sample`` groups) and c (``hits``) as integer counts, and the answer table
(``ponder.columnar.answers``) the votes, so both tables are built here without rows and end
in today's code (``coded_pass_at_k_table``, ``maj_at_k_from_votes``):

- cells and their order come from ``cell_codes`` on the statistics' keys, the resampler's
  universe from their distinct (dataset, problem_id), as for the rows;
- pairs are sorted by (cell, problem position) in both paths, so the same pairs come in the
  same order with the same integer n and c, and every value, interval and ``exact`` flag is
  equal exactly;
- a pair's profile does not depend on which answer is which, only on the counts.

Samples are ``n_runs = 1`` rows with a known ``correct`` (the curves' ``n_runs <= 1``: the
statistics refuse ``n_runs`` below 1). Derived caps are not here (the statistics refuse
them), so the tables equal ``pass_at_k_table(frame)`` and ``maj_at_k_table(frame)``, i.e.
the recorded cells of ``compute_curves``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from ponder.columnar.answers import ANSWER_COLUMNS
from ponder.columnar.curves import StatsCodes, cell_datasets, checked_stats, own_resampler
from ponder.columnar.stats import KEYS
from ponder.curves._frame import IntArray, require_columns, unique_pairs
from ponder.curves.bootstrap import ProblemResampler
from ponder.curves.passk import SamplePairs, coded_pass_at_k_table, maj_at_k_from_votes
from ponder.errors import InputError


def pass_at_k_from_stats(
    stats: pd.DataFrame,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    resampler: ProblemResampler | None = None,
    codes: StatsCodes | None = None,
) -> pd.DataFrame:
    """``ponder.curves.pass_at_k_table`` of the rows the statistics summarise (``codes``:
    the statistics' ``StatsCodes``, when already found)."""
    stats = _checked(stats)
    found = StatsCodes(stats) if codes is None else codes
    pairs = sample_pairs(stats, found, own_resampler(stats, resampler, n_boot, seed))
    return coded_pass_at_k_table(pairs, ci=ci)


def maj_at_k_from_stats(
    stats: pd.DataFrame,
    answers: pd.DataFrame,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    max_subsets: int = 2000,
    resampler: ProblemResampler | None = None,
    codes: StatsCodes | None = None,
) -> pd.DataFrame:
    """``ponder.curves.maj_at_k_table`` of the rows the statistics and the answer counts
    summarise (answers normalized as the answer table was built: pass the same function to
    ``maj_at_k_table`` to compare). ``seed`` draws both the resamples and, where C(n, k)
    exceeds ``max_subsets``, the Monte-Carlo subsets, as there."""
    stats = _checked(stats)
    require_columns(answers, ANSWER_COLUMNS, "maj@k from answer counts")
    answers = answers.reset_index(drop=True)
    found = StatsCodes(stats) if codes is None else codes
    answer_cells = found.side(answers, "answer table")
    pairs = sample_pairs(stats, found, own_resampler(stats, resampler, n_boot, seed))
    vote_pair, votes, right = answer_votes(pairs, answers, answer_cells)
    return maj_at_k_from_votes(
        pairs, vote_pair, votes, right, ci=ci, max_subsets=max_subsets, seed=seed
    )


def sample_pairs(
    stats: pd.DataFrame, found: StatsCodes, resampler: ProblemResampler
) -> SamplePairs:
    """The (cell, problem) pairs with graded samples, n and c summed over their groups."""
    codes, keys = found.cell, found.keys
    local = found.local(resampler)
    correct_n = stats["correct_n"].to_numpy(dtype=np.int64)
    keep = stats["sample"].to_numpy(dtype=bool) & (correct_n > 0) & (local >= 0)
    pair_cell, pair_problem, inverse = unique_pairs(codes[keep], local[keep], _n_max(resampler))
    pair_n = np.zeros(len(pair_cell), dtype=np.int64)
    np.add.at(pair_n, inverse, correct_n[keep])
    hits = stats["hits"].to_numpy(dtype=np.int64)[keep]
    pair_c = np.zeros(len(pair_cell), dtype=np.int64)
    np.add.at(pair_c, inverse, hits)
    return SamplePairs(
        resampler=resampler,
        keys=keys,
        dataset=cell_datasets(keys),
        derived=np.zeros(len(keys), dtype=bool),
        pair_cell=pair_cell,
        pair_problem=pair_problem,
        pair_n=pair_n,
        pair_c=pair_c.astype(np.float64),
    )


def answer_votes(
    pairs: SamplePairs, answers: pd.DataFrame, cell: IntArray
) -> tuple[IntArray, IntArray, npt.NDArray[np.bool_]]:
    """Per (pair, normalized answer) with votes: the pair, its votes and whether it is right.

    Each pair's graded samples in the answer table must add up to its n in the statistics
    (both count the same rows), else the two tables are not of the same rows.
    """
    local = pairs.resampler.local_codes(answers)
    graded = answers["correct_n"].to_numpy(dtype=np.int64)
    keep = answers["sample"].to_numpy(dtype=bool) & (graded > 0) & (local >= 0)
    n_max = _n_max(pairs.resampler)
    pair_key = pairs.pair_cell * n_max + pairs.pair_problem  # ascending: pairs are sorted
    key = cell[keep] * n_max + local[keep]
    pair = np.searchsorted(pair_key, key)
    found = pair < len(pair_key)
    found[found] = pair_key[pair[found]] == key[found]
    if not found.all():
        raise InputError(
            "the answer table has graded samples of a cell and problem the statistics lack"
        )
    total = np.zeros(pairs.n_pairs, dtype=np.int64)
    np.add.at(total, pair, graded[keep])
    if not np.array_equal(total, pairs.pair_n):
        bad = int(np.flatnonzero(total != pairs.pair_n)[0])
        raise InputError(
            f"the answer table counts {total[bad]} graded samples in a cell and problem, the "
            f"statistics {pairs.pair_n[bad]}: they are not of the same rows"
        )
    answer = answers["answer"][keep].reset_index(drop=True)
    voter = answer.notna().to_numpy(dtype=bool)
    answer_code, forms = pd.factorize(answer[voter])
    vote_pair, _, inverse = unique_pairs(
        pair[voter], np.asarray(answer_code, dtype=np.int64), len(forms)
    )
    votes = np.zeros(len(vote_pair), dtype=np.int64)
    np.add.at(votes, inverse, graded[keep][voter])
    right = answers["right"].to_numpy(dtype=bool)[keep][voter].astype(np.float64)
    return vote_pair, votes, np.bincount(inverse, weights=right, minlength=len(vote_pair)) > 0


def _checked(stats: pd.DataFrame) -> pd.DataFrame:
    columns = [*KEYS, "correct_n", "hits"]
    return checked_stats(stats, columns, "pass@k / maj@k from statistics")


def _n_max(resampler: ProblemResampler) -> int:
    """The largest universe: pair keys are cell * n_max + problem position, as on rows."""
    return max((len(resampler.universe(d)) for d in resampler.datasets), default=1)
