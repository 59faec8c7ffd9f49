"""A straightforward per-problem replay: the executable specification of `replay`.

It walks each problem's steps and samples in plain Python. The vectorized replay is tested
against it on random matrices and decisions, and benchmarked against it for speed.
"""

from __future__ import annotations

import numpy as np

from ponder.decision import DecisionBatch, Step
from ponder.outcomes.matrix import UNKNOWN_ANSWER, OutcomeMatrix
from ponder.outcomes.replay import ReplayError, ReplayResult


def _leader(answers: list[int]) -> tuple[int, int, int]:
    """Leader (first seen among the most voted), its votes and the runner-up's votes."""
    votes: dict[int, int] = {}
    for a in answers:
        if a >= 0:
            votes[a] = votes.get(a, 0) + 1
    if not votes:
        return -1, 0, 0
    top = max(votes.values())
    leader = next(a for a in answers if a >= 0 and votes[a] == top)
    second = max((v for a, v in votes.items() if a != leader), default=0)
    return leader, top, second


def _expected(matrix: OutcomeMatrix, p: int, step: Step) -> tuple[float, float, float]:
    """Mean correctness, mean cost and answered share over every recorded sample."""
    c = matrix.config_index(step.config)
    corrects, costs, answers = [], [], []
    for slot in range(matrix.correct.shape[2]):
        if not np.isnan(matrix.correct[p, c, slot]):
            corrects.append(float(matrix.correct[p, c, slot]))
            costs.append(float(matrix.cost[p, c, slot]))
            answers.append(int(matrix.answer[p, c, slot]))
    if not corrects:
        raise ReplayError(f"sample 0 of {step.config.label} not recorded")
    if any(np.isnan(x) for x in costs):
        raise ReplayError(f"cost of {step.config.label} unknown")
    answered = (
        float("nan") if UNKNOWN_ANSWER in answers else sum(a >= 0 for a in answers) / len(answers)
    )
    return sum(corrects) / len(corrects), sum(costs) / len(costs), answered


def _step(
    matrix: OutcomeMatrix, p: int, step: Step, used: dict[int, int]
) -> tuple[float, float, float, int, bool]:
    c = matrix.config_index(step.config)
    start = used.get(c, 0)
    answers: list[int] = []
    corrects: list[float] = []
    cost = 0.0
    for t in range(step.samples):
        slot = start + t
        if slot >= matrix.correct.shape[2] or np.isnan(matrix.correct[p, c, slot]):
            raise ReplayError(f"sample {slot} of {step.config.label} not recorded")
        answers.append(int(matrix.answer[p, c, slot]))
        corrects.append(float(matrix.correct[p, c, slot]))
        cost += float(matrix.cost[p, c, slot])
        if step.stop is not None:
            if UNKNOWN_ANSWER in answers:
                raise ReplayError(f"stop rule needs answers of {step.config.label}")
            _, top, second = _leader(answers)
            if top >= step.stop.votes and top - second >= step.stop.margin:
                break
    used[c] = start + len(answers)
    if step.aggregate == "first" or step.samples == 1:
        leader, correct = answers[0], corrects[0]
    else:
        if len(answers) > 1 and UNKNOWN_ANSWER in answers:
            raise ReplayError(f"majority vote needs answers of {step.config.label}")
        leader, _, _ = _leader(answers)
        correct = corrects[answers.index(leader)] if leader >= 0 else corrects[0]
    answered = float("nan") if leader == UNKNOWN_ANSWER else float(leader >= 0)
    if step.escalate == "never":
        escalate = False
    elif step.escalate == "always":
        escalate = True
    elif UNKNOWN_ANSWER in answers:
        raise ReplayError(f"escalation rule needs answers of {step.config.label}")
    elif step.escalate == "no_answer":
        escalate = answered == 0
    else:
        escalate = answered == 0 or any(a != leader for a in answers)
    return correct, answered, cost, len(answers), escalate


def replay_reference(matrix: OutcomeMatrix, batch: DecisionBatch) -> ReplayResult:
    n = matrix.n_problems
    correct, cost = np.zeros(n), np.zeros(n)
    answered = np.zeros(n)
    samples, steps = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    for p in range(n):
        used: dict[int, int] = {}
        decision = batch[p]
        if len(decision.steps) == 1 and decision.steps[0].samples == 1:
            correct[p], cost[p], answered[p] = _expected(matrix, p, decision.steps[0])
            samples[p] = steps[p] = 1
            continue
        for k, step in enumerate(decision.steps):
            ok, has, spent, drawn, escalate = _step(matrix, p, step, used)
            correct[p], answered[p] = ok, has
            cost[p] += spent
            samples[p] += drawn
            steps[p] = k + 1
            if not escalate:
                break
    return ReplayResult(correct, cost, answered, samples, steps)
