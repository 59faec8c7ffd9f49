"""Evaluation protocols: cross-validation by problem, and transfer across datasets.

Every servable policy is fitted on training problems only and decides for held-out problems
from their pre-generation information; the oracle (never servable) is fitted on the problems it
is judged on, by design, and the protocol string says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ponder.outcomes.matrix import OutcomeMatrix
from ponder.outcomes.replay import replay
from ponder.policies.base import Policy, PolicyError


@dataclass(frozen=True)
class Candidate:
    """One policy setting to evaluate: a label, its family, and how to build it unfitted."""

    label: str
    family: str
    make: Callable[[], Policy]


@dataclass(frozen=True)
class Evaluation:
    """Per-problem held-out results of every candidate ([candidate, problem] arrays)."""

    protocol: str
    unit: str
    problems: pd.DataFrame
    labels: tuple[str, ...]
    families: tuple[str, ...]
    correct: np.ndarray
    cost: np.ndarray
    samples: np.ndarray
    predicted: np.ndarray  # P(correct) the policy predicted for its choice (NaN: none)

    def family_rows(self, family: str) -> np.ndarray:
        return np.flatnonzero(np.asarray(self.families) == family)


def _predict(policy: Policy, problems: pd.DataFrame) -> np.ndarray:
    """The policy's predicted P(correct) for what it chose, when it has a predictor."""
    predict = getattr(policy, "predict", None)
    if predict is None:
        return np.full(len(problems), np.nan)
    _, p = predict(problems)
    return np.asarray(p, dtype=float)


def complete(matrix: OutcomeMatrix) -> OutcomeMatrix:
    """Only configurations recorded for every problem: a policy may choose any of them for any
    held-out problem, and a choice without a recorded outcome cannot be judged."""
    configs = matrix.complete_configs()
    if not configs:
        raise PolicyError(
            "no configuration was recorded for every problem of this selection: select one "
            "dataset so a complete grid exists"
        )
    return matrix.select_configs(configs)


def align(train: OutcomeMatrix, test: OutcomeMatrix) -> tuple[OutcomeMatrix, OutcomeMatrix]:
    """Both matrices restricted to the configurations complete in both (for transfer)."""
    in_test = set(complete(test).configs)
    common = [c for c in complete(train).configs if c in in_test]
    if not common:
        raise PolicyError("no configuration was recorded for every problem of both datasets")
    return train.select_configs(common), test.select_configs(common)


def fold_assignment(problems: pd.DataFrame, folds: int, seed: int) -> np.ndarray:
    """Fold of each problem: shuffled, stratified by dataset so every fold sees every dataset."""
    n = len(problems)
    if folds < 2:
        raise PolicyError(f"cross-validation needs at least 2 folds, got {folds}")
    counts = problems["dataset"].value_counts()
    small = counts[counts < folds]
    if len(small):
        raise PolicyError(
            f"dataset {small.index[0]!r} has {int(small.iloc[0])} problem(s): too few for "
            f"{folds}-fold cross-validation by problem"
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    fold = np.empty(n, dtype=np.int64)
    ranks = problems.iloc[order].groupby("dataset", sort=False).cumcount().to_numpy()
    fold[order] = ranks % folds
    return fold


def _run(
    train: OutcomeMatrix, test: OutcomeMatrix, candidate: Candidate
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    policy = candidate.make()
    policy.fit(test if not policy.servable else train)
    batch = policy.decide_batch(test.problems)
    result = replay(test, batch)
    return result.correct, result.cost, result.samples, _predict(policy, test.problems)


def cross_validate(
    matrix: OutcomeMatrix,
    candidates: Sequence[Candidate],
    *,
    folds: int = 5,
    seed: int = 0,
    on_step: Callable[[str], None] | None = None,
) -> Evaluation:
    """k-fold cross-validation by problem: fit on k-1 folds, replay on the held-out fold."""
    matrix = complete(matrix)
    fold = fold_assignment(matrix.problems, folds, seed)
    k, n = len(candidates), matrix.n_problems
    correct, cost = np.zeros((k, n)), np.zeros((k, n))
    samples, predicted = np.zeros((k, n)), np.full((k, n), np.nan)
    for f in range(folds):
        test_rows = np.flatnonzero(fold == f)
        train = matrix.subset(np.flatnonzero(fold != f))
        test = matrix.subset(test_rows)
        for i, candidate in enumerate(candidates):
            c, co, s, p = _run(train, test, candidate)
            correct[i, test_rows], cost[i, test_rows] = c, co
            samples[i, test_rows], predicted[i, test_rows] = s, p
            if on_step is not None:
                on_step(f"fold {f + 1}/{folds}: {candidate.label}")
    return Evaluation(
        protocol=f"{folds}-fold cross-validation by problem (seed {seed}) over the "
        f"{len(matrix.configs)} configurations recorded for every problem; oracle fitted on "
        "the held-out fold itself (upper bound)",
        unit=matrix.unit,
        problems=matrix.problems,
        labels=tuple(c.label for c in candidates),
        families=tuple(c.family for c in candidates),
        correct=correct,
        cost=cost,
        samples=samples,
        predicted=predicted,
    )


def _describe(matrix: OutcomeMatrix) -> str:
    """Datasets of a matrix, with their levels when every problem has one."""
    names = ", ".join(sorted(matrix.problems["dataset"].unique()))
    levels = matrix.problems["level"]
    if len(levels) and levels.notna().all():
        names += " (levels " + ", ".join(str(int(v)) for v in sorted(levels.unique())) + ")"
    return names


def transfer(
    train: OutcomeMatrix,
    test: OutcomeMatrix,
    candidates: Sequence[Candidate],
    *,
    on_step: Callable[[str], None] | None = None,
) -> Evaluation:
    """Fit on one set of problems (e.g. AIME 2024) and evaluate on another (AIME 2025)."""
    if train.n_problems < 2:
        raise PolicyError(f"training data has {train.n_problems} problem(s): too few to fit")
    train, test = align(train, test)
    common = train.configs
    rows = [_run(train, test, c) for c in candidates]
    if on_step is not None:
        on_step("transfer")
    train_sets, test_sets = _describe(train), _describe(test)
    return Evaluation(
        protocol=f"fit on {train_sets}, evaluated on {test_sets}, over the {len(common)} "
        "configurations recorded for every problem of both; oracle fitted on the evaluation "
        "problems (upper bound)",
        unit=test.unit,
        problems=test.problems,
        labels=tuple(c.label for c in candidates),
        families=tuple(c.family for c in candidates),
        correct=np.stack([r[0] for r in rows]),
        cost=np.stack([r[1] for r in rows]),
        samples=np.stack([r[2] for r in rows]),
        predicted=np.stack([r[3] for r in rows]),
    )
