"""Evaluation protocols: cross-validation by problem, and transfer across datasets.

Every servable policy is fitted on training problems only and decides for held-out problems
from their pre-generation information; the oracle (never servable) is fitted on the problems it
is judged on, by design, and the protocol string says so. Each candidate is also replayed on
its own training problems, so that operating points (the best uniform baseline, a family's
iso-accuracy point...) can be chosen on training data only and reported held out (nested
selection, see `ponder.evaluate.metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ponder.errors import PonderError
from ponder.outcomes.matrix import OutcomeMatrix
from ponder.outcomes.replay import ReplayResult, replay
from ponder.policies.base import Policy, PolicyError


@dataclass(frozen=True)
class Candidate:
    """One policy setting to evaluate: a label, its family, and how to build it unfitted.

    `make` receives the training matrix, so parameter scales (price grids) come from training
    problems only.
    """

    label: str
    family: str
    make: Callable[[OutcomeMatrix], Policy]


@dataclass(frozen=True)
class Evaluation:
    """Held-out results of every candidate ([candidate, problem] arrays), plus each candidate's
    training-set figures per fold ([fold, candidate]) for choosing operating points."""

    protocol: str
    unit: str
    problems: pd.DataFrame
    labels: tuple[str, ...]
    families: tuple[str, ...]
    correct: np.ndarray
    cost: np.ndarray
    samples: np.ndarray
    predicted: np.ndarray  # P(correct) the policy predicted for its choice (NaN: none)
    fold: np.ndarray | None = None  # fold of each problem (transfer: all 0)
    train_correct: np.ndarray | None = None  # mean accuracy on the fold's training problems
    train_cost: np.ndarray | None = None  # mean cost on the fold's training problems
    skipped: tuple[tuple[str, str], ...] = ()  # (family or label, why it could not run)

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


class _Runs:
    """Held-out results per candidate, plus each outer fold's training figures for choosing
    operating points; a candidate that fails anywhere is dropped with its reason.

    Training figures of a servable policy come from an inner cross-validation over the outer
    fold's training problems (never its held-out ones): replaying a fitted policy on the
    problems it was fitted on would flatter it (a text model memorizes its training problems).
    The oracle's training figure is in-sample by definition.
    """

    def __init__(self, candidates: Sequence[Candidate], n: int, folds: int) -> None:
        k = len(candidates)
        self.candidates = candidates
        self.correct, self.cost = np.zeros((k, n)), np.zeros((k, n))
        self.samples, self.predicted = np.zeros((k, n)), np.full((k, n), np.nan)
        # Sums over the training problems scored so far, per outer fold and candidate.
        self.seen_correct, self.seen_cost = np.zeros((folds, k)), np.zeros((folds, k))
        self.seen_count = np.zeros((folds, k))
        self.failed: dict[int, str] = {}

    def _each(self) -> list[tuple[int, Candidate]]:
        return [(i, c) for i, c in enumerate(self.candidates) if i not in self.failed]

    def outer(self, f: int, train: OutcomeMatrix, test: OutcomeMatrix, rows: np.ndarray) -> None:
        """Fit on the outer training folds, replay on the held-out fold."""
        for i, candidate in self._each():
            try:
                policy = candidate.make(train)
                if policy.servable:
                    held_out = replay(test, policy.fit(train).decide_batch(test.problems))
                    self.predicted[i, rows] = _predict(policy, test.problems)
                else:  # the oracle: fitted on what it is judged on, in both roles
                    self._seen(f, i, replay(train, policy.fit(train).decide_batch(train.problems)))
                    held_out = replay(test, policy.fit(test).decide_batch(test.problems))
            except PonderError as exc:
                self.failed[i] = str(exc)
                continue
            self.correct[i, rows], self.cost[i, rows] = held_out.correct, held_out.cost
            self.samples[i, rows] = held_out.samples

    def inner(self, train: OutcomeMatrix, parts: Sequence[tuple[int, OutcomeMatrix]]) -> None:
        """Fit servable candidates on `train`; score each part for the outer fold it serves."""
        for i, candidate in self._each():
            try:
                policy = candidate.make(train)
                if not policy.servable:
                    continue
                policy.fit(train)
                results = [
                    (f, replay(part, policy.decide_batch(part.problems))) for f, part in parts
                ]
            except PonderError:
                # Too little data in an inner split (say): the candidate is still reported
                # held out, but the folds concerned cannot choose it as an operating point.
                for f, _ in parts:
                    self.seen_count[f, i] = np.nan
                continue
            for f, result in results:
                self._seen(f, i, result)

    def _seen(self, f: int, i: int, result: ReplayResult) -> None:
        self.seen_correct[f, i] += result.correct.sum()
        self.seen_cost[f, i] += result.cost.sum()
        self.seen_count[f, i] += len(result.correct)

    def evaluation(
        self, protocol: str, unit: str, problems: pd.DataFrame, fold: np.ndarray
    ) -> Evaluation:
        keep = [i for i in range(len(self.candidates)) if i not in self.failed]
        if not any(self.candidates[i].family == "uniform" for i in keep):
            reasons = "; ".join(dict.fromkeys(self.failed.values()))
            raise PolicyError(f"no uniform configuration could be replayed: {reasons}")
        skipped: dict[str, str] = {}
        for i, reason in self.failed.items():
            family = self.candidates[i].family
            if not any(self.candidates[j].family == family for j in keep):
                skipped.setdefault(family, reason)
            else:
                skipped.setdefault(self.candidates[i].label, reason)
        count = np.maximum(self.seen_count[:, keep], 1)  # NaN stays NaN: not selectable
        return Evaluation(
            protocol=protocol,
            unit=unit,
            problems=problems,
            labels=tuple(self.candidates[i].label for i in keep),
            families=tuple(self.candidates[i].family for i in keep),
            correct=self.correct[keep],
            cost=self.cost[keep],
            samples=self.samples[keep],
            predicted=self.predicted[keep],
            fold=fold,
            train_correct=self.seen_correct[:, keep] / count,
            train_cost=self.seen_cost[:, keep] / count,
            skipped=tuple(skipped.items()),
        )


def cross_validate(
    matrix: OutcomeMatrix,
    candidates: Sequence[Candidate],
    *,
    folds: int = 5,
    seed: int = 0,
    on_step: Callable[[str], None] | None = None,
) -> Evaluation:
    """k-fold cross-validation by problem: fit on k-1 folds, replay on the held-out fold.

    Operating points for held-out fold f are chosen from figures that never touch fold f:
    for every pair of folds (f, g), each candidate is fitted on the other k-2 folds and
    replayed on g (scoring it for outer fold f) and on f (for outer fold g): an inner
    (k-1)-fold cross-validation inside each outer training set, at one fit per pair. With 2
    folds there is no inner split and the training figures are in-sample replays.
    A candidate that cannot run (e.g. a vote on data without extracted answers) is left out
    and listed in `Evaluation.skipped` with the reason.
    """
    matrix = complete(matrix)
    fold = fold_assignment(matrix.problems, folds, seed)
    runs = _Runs(candidates, matrix.n_problems, folds)
    parts = [matrix.subset(np.flatnonzero(fold == f)) for f in range(folds)]
    for f in range(folds):
        test_rows = np.flatnonzero(fold == f)
        train = matrix.subset(np.flatnonzero(fold != f))
        runs.outer(f, train, parts[f], test_rows)
        if folds == 2:
            runs.inner(train, [(f, train)])
        if on_step is not None:
            on_step(f"fold {f + 1}/{folds}")
    if folds > 2:
        for f in range(folds):
            for g in range(f + 1, folds):
                inner_train = matrix.subset(np.flatnonzero((fold != f) & (fold != g)))
                runs.inner(inner_train, [(f, parts[g]), (g, parts[f])])
            if on_step is not None:
                on_step(f"inner folds {f + 1}/{folds}")
    selection = (
        "operating points chosen by inner cross-validation on the training folds"
        if folds > 2
        else "operating points chosen on the training fold (in-sample replay)"
    )
    return runs.evaluation(
        f"{folds}-fold cross-validation by problem (seed {seed}) over the "
        f"{len(matrix.configs)} configurations recorded for every problem; {selection}; "
        "oracle fitted on the held-out fold itself (upper bound)",
        matrix.unit,
        matrix.problems,
        fold,
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
    runs = _Runs(candidates, test.n_problems, 1)
    runs.outer(0, train, test, np.arange(test.n_problems))
    # Operating points: inner cross-validation over the training problems.
    inner_folds = min(5, train.n_problems)
    inner = fold_assignment(train.problems.assign(dataset="train"), inner_folds, 0)
    for g in range(inner_folds):
        rest = train.subset(np.flatnonzero(inner != g))
        runs.inner(rest, [(0, train.subset(np.flatnonzero(inner == g)))])
    if on_step is not None:
        on_step("transfer")
    train_sets, test_sets = _describe(train), _describe(test)
    return runs.evaluation(
        f"fit on {train_sets}, evaluated on {test_sets}, over the {len(common)} "
        "configurations recorded for every problem of both; operating points chosen by "
        f"{inner_folds}-fold cross-validation on the training problems; oracle fitted on the "
        "evaluation problems (upper bound)",
        test.unit,
        test.problems,
        np.zeros(test.n_problems, dtype=np.int64),
    )
