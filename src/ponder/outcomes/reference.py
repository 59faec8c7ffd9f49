"""A straightforward per-problem replay: the executable specification of `replay`.

It walks each problem's steps and samples in plain Python. The vectorized replay is tested
against it on random matrices and decisions, and benchmarked against it for speed.
"""

from __future__ import annotations

import math

import numpy as np

from ponder.decision import Config, DecisionBatch, Step, StopRule
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


def _stops(rule: StopRule, answers: list[int]) -> bool:
    """Whether the stop rule holds after the samples drawn so far."""
    _, top, second = _leader(answers)
    if rule.kind == "votes":
        return top >= rule.votes and top - second >= rule.margin
    if rule.kind == "beta":
        # P(p > 1/2) for p ~ Beta(top + 1, second + 1), by the binomial sum:
        # I_{1/2}(b, a) with integer a, b is the chance of at least b heads in a + b - 1 tosses.
        a, b = top + 1, second + 1
        m = a + b - 1
        tail = sum(math.comb(m, k) for k in range(b, m + 1)) / 2**m
        return top >= 1 and tail >= rule.confidence
    w = rule.window
    if len(answers) % w:
        return False
    window = answers[-w:]
    return window[0] >= 0 and all(a == window[0] for a in window)


def _value(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def _exit_chain(
    matrix: OutcomeMatrix, p: int, step: Step, slot: int
) -> tuple[float, float, float, bool]:
    """Grow chain `slot` rung by rung: correct, answered, cost, sure."""
    assert step.exit is not None
    if matrix.signals is None:
        raise ReplayError(f"probe signals are not recorded for {step.config.label}")
    signals = matrix.signals
    rule = step.exit
    configs = [
        matrix.config_index(Config(step.config.model, step.config.mode, r)) for r in rule.rungs
    ]
    chain = int(signals.chain[p, configs[0], slot])
    seen: list[int | None] = []
    probes = 0.0
    for i, c in enumerate(configs):
        if np.isnan(matrix.correct[p, c, slot]) or chain < 0:
            raise ReplayError("chain not recorded at every rung")
        if int(signals.chain[p, c, slot]) != chain:
            raise ReplayError("rungs are not from one chain")
        answer = int(matrix.answer[p, c, slot])
        seen.append(answer if answer >= 0 else None)
        if signals.token_prob is None and rule.min_token_prob is not None:
            raise ReplayError("per-token answer probabilities were not recorded")
        prob = _value(signals.prob[p, c, slot])
        entropy = _value(signals.entropy[p, c, slot])
        token_prob = None if signals.token_prob is None else _value(signals.token_prob[p, c, slot])
        budgets = rule.rungs[: i + 1]
        holds = rule.holds(seen, prob, entropy, token_prob, budgets)
        gives_up = rule.gives_up(seen, prob, entropy, token_prob, budgets)
        natural = signals.natural[p, c, slot] == 1
        if holds or gives_up or natural or i == len(configs) - 1:
            cost = float(matrix.cost[p, c, slot]) + probes
            return float(matrix.correct[p, c, slot]), float(answer >= 0), cost, holds or natural
        probes += float(signals.probe_cost[p, c, slot])
    raise AssertionError("unreachable")


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


def _exit_step(
    matrix: OutcomeMatrix, p: int, step: Step, used: dict[int, int]
) -> tuple[float, float, float, int, bool]:
    assert step.exit is not None
    configs = [
        matrix.config_index(Config(step.config.model, step.config.mode, r)) for r in step.exit.rungs
    ]
    start = max(used.get(c, 0) for c in configs)  # a chain grown by any rung is used
    if start >= matrix.correct.shape[2]:
        raise ReplayError(f"no chain of {step.config.label} is left for this plan")
    correct, answered, cost, sure = _exit_chain(matrix, p, step, start)
    for c in configs:
        used[c] = start + 1
    if step.escalate == "unsure":
        escalate = not sure or answered == 0
    elif step.escalate == "no_answer":
        escalate = answered == 0
    else:
        escalate = step.escalate == "always"
    return correct, answered, cost, 1, escalate


def _expected_exit(matrix: OutcomeMatrix, p: int, step: Step) -> tuple[float, float, float]:
    """Mean over every chain recorded at all of the step's rungs."""
    assert step.exit is not None
    configs = [
        matrix.config_index(Config(step.config.model, step.config.mode, r)) for r in step.exit.rungs
    ]
    results = [
        _exit_chain(matrix, p, step, slot)
        for slot in range(matrix.correct.shape[2])
        if not any(np.isnan(matrix.correct[p, c, slot]) for c in configs)
    ]
    if not results:
        raise ReplayError(f"no chain of {step.config.label} recorded at every rung")
    n = len(results)
    return (
        sum(r[0] for r in results) / n,
        sum(r[2] for r in results) / n,
        sum(r[1] for r in results) / n,
    )


def _step(
    matrix: OutcomeMatrix, p: int, step: Step, used: dict[int, int]
) -> tuple[float, float, float, int, bool]:
    if step.exit is not None:
        return _exit_step(matrix, p, step, used)
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
            if _stops(step.stop, answers):
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
    elif step.escalate == "unsure":
        if matrix.signals is None:
            raise ReplayError(f"answer confidences are not recorded for {step.config.label}")
        prob = float(matrix.signals.prob[p, c, start])
        escalate = answered == 0 or not prob >= (step.min_prob or 0.0)
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
        if len(decision.steps) == 1 and decision.steps[0].exit is not None:
            correct[p], cost[p], answered[p] = _expected_exit(matrix, p, decision.steps[0])
            samples[p] = steps[p] = 1
            continue
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
