"""Replay decisions on recorded outcomes without peeking.

A decision that draws one sample of one configuration is scored by its expectation: the mean
correctness and mean cost over all recorded samples of that problem and configuration, so
every recorded seed counts. Sequential decisions (votes, stop rules, cascades) draw samples in
recorded order, continuing where an earlier step of the same configuration stopped; a step sees
only its own samples, the escalation rule only the outputs of steps already run. Correctness
comes from the recorded `correct` alone; answer codes only drive votes and escalation, and a
rule that needs answers the data does not have is an error. A configuration or sample that was
not recorded is an error, never a guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import betainc

from ponder.decision import Config, Decision, DecisionBatch, ExitRule, Score, Step, StopRule
from ponder.errors import PonderError
from ponder.outcomes.matrix import NO_ANSWER, NO_CHAIN, UNKNOWN_ANSWER, OutcomeMatrix, Signals


class ReplayError(PonderError):
    """A decision needs outcomes that were not recorded."""


@dataclass(frozen=True)
class ReplayResult:
    """Per-problem results of replaying a policy's decisions."""

    correct: np.ndarray  # float in [0, 1]: 0/1, or the expected value over recorded samples
    cost: np.ndarray  # summed cost of every sample drawn (expected for one-sample decisions)
    answered: np.ndarray  # float: share of answered final answers, NaN when not recorded
    samples: np.ndarray  # samples drawn
    steps: np.ndarray  # steps run

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean())

    @property
    def mean_cost(self) -> float:
        return float(self.cost.mean())


def _prefix_votes(
    codes: np.ndarray, every: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Votes among the first t samples, for every t at once: [row, t-1] arrays of the leader
    answer (-1: none), its votes, the runner-up's votes and the leader's first slot.

    Ties go to the answer seen first (recorded order), so the replay is deterministic. Samples
    are added one at a time, updating every earlier sample's vote count, with whole-column
    operations over all rows (samples per step are few; rows are many). With `every=False`
    only the vote over all samples (the last column) is filled in.
    """
    n_rows, n = codes.shape
    by_sample = np.ascontiguousarray(codes.T)  # [sample, row]
    valid = by_sample >= 0
    count = np.zeros((n, n_rows), dtype=np.int32)  # votes for each sample's answer so far
    leader = np.empty((n, n_rows), dtype=codes.dtype)
    top = np.empty((n, n_rows), dtype=np.int32)
    second = np.empty((n, n_rows), dtype=np.int32)
    slot = np.empty((n, n_rows), dtype=np.int64)
    columns = np.arange(n_rows)
    for t in range(n):
        answer, ok = by_sample[t], valid[t]
        if t:
            agree = (by_sample[:t] == answer) & ok
            count[:t] += agree
            count[t] = np.where(ok, 1 + agree.sum(axis=0), 0)
        else:
            count[0] = ok
        if not every and t < n - 1:
            continue
        window = count[: t + 1]
        best = window.max(axis=0)
        first = np.zeros(n_rows, dtype=np.int64)
        for i in range(t, -1, -1):  # the last assignment wins: the first slot with top votes
            first = np.where(window[i] == best, i, first)
        lead = np.where(best > 0, by_sample[first, columns], -1)
        leader[t], top[t], slot[t] = lead, best, first
        second[t] = np.where(by_sample[: t + 1] != lead, window, 0).max(axis=0)
    return leader.T, top.T, second.T, slot.T


def beta_confidence(top: np.ndarray, second: np.ndarray) -> np.ndarray:
    """P(p > 1/2) for p ~ Beta(top + 1, second + 1): how sure a uniform prior over the two
    leading answers' shares is that the leader is the majority (Adaptive-Consistency)."""
    confidence: np.ndarray = betainc(second + 1.0, top + 1.0, 0.5)
    return confidence


def stop_mask(rule: StopRule, codes: np.ndarray, top: np.ndarray, second: np.ndarray) -> np.ndarray:
    """[row, t-1]: whether the stop rule holds after t samples (codes: [row, sample])."""
    if rule.kind == "votes":
        mask: np.ndarray = (top >= rule.votes) & (top - second >= rule.margin)
        return mask
    if rule.kind == "beta":
        return (top >= 1) & (beta_confidence(top, second) >= rule.confidence)
    # window: after every full window, all its samples give one and the same answer.
    n = codes.shape[1]
    w = rule.window
    mask = np.zeros(codes.shape, dtype=bool)
    for end in range(w, n + 1, w):
        window = codes[:, end - w : end]
        mask[:, end - 1] = (window[:, :1] >= 0).ravel() & (window == window[:, :1]).all(axis=1)
    return mask


def _run_step(
    matrix: OutcomeMatrix,
    rows: np.ndarray,
    step: Step,
    used: dict[int, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Run one step for `rows`; returns correct, answered, cost, samples drawn, escalate."""
    c = matrix.config_index(step.config)
    start = used.setdefault(c, np.zeros(matrix.n_problems, dtype=np.int64))[rows]
    n = step.samples
    n_slots = matrix.correct.shape[2]
    slot = start[:, None] + np.arange(n)[None, :]
    inside = slot < n_slots
    # Each problem's samples of this configuration are contiguous: gather those rows once,
    # then take the step's window (a plain slice when every problem starts at sample 0).
    if n <= n_slots and not start.any():
        window = slice(0, n)
        correct_w = matrix.correct[rows, c, window]
        cost_w = matrix.cost[rows, c, window]
        answer_w = matrix.answer[rows, c, window]
    else:
        safe = np.minimum(slot, n_slots - 1)
        correct_w = np.take_along_axis(matrix.correct[rows, c], safe, axis=1)
        cost_w = np.take_along_axis(matrix.cost[rows, c], safe, axis=1)
        answer_w = np.take_along_axis(matrix.answer[rows, c], safe, axis=1)
    recorded = inside & ~np.isnan(correct_w)
    codes = np.where(recorded, answer_w, NO_ANSWER)
    unknown = codes == UNKNOWN_ANSWER
    # How many samples are drawn: all n, or fewer when the stop rule is met.
    votes = None  # prefix votes, computed at most once
    if step.stop is None:
        drawn = np.full(len(rows), n, dtype=np.int64)
    else:
        votes = _prefix_votes(codes)
        _, top, second, _ = votes
        stop = stop_mask(step.stop, codes, top, second)  # [row, t-1]
        drawn = np.where(stop.any(axis=1), stop.argmax(axis=1) + 1, n).astype(np.int64)
        # Only samples actually drawn must say what they answered.
        drawn_mask = np.arange(n)[None, :] < drawn[:, None]
        _need_answers(unknown & drawn_mask, step, "stopping when samples agree")
    needed = np.arange(n)[None, :] < drawn[:, None]
    missing = needed & ~recorded
    if missing.any():
        bad = int(np.argmax(missing.any(axis=1)))
        problem = matrix.problems.iloc[rows[bad]]
        have = int(matrix.stats.recorded[rows[bad], c])
        if have > n_slots:
            raise ReplayError(
                f"configuration {step.config.label}: the decision draws sample "
                f"{int(start[bad] + drawn[bad])} of problem {problem['dataset']}/"
                f"{problem['problem_id']}, but this matrix keeps only the first {n_slots} "
                "of each cell (load it with more slots)"
            )
        raise ReplayError(
            f"configuration {step.config.label} has {have} recorded sample(s) for problem "
            f"{problem['dataset']}/{problem['problem_id']}, the decision needs "
            f"{int(start[bad] + drawn[bad])}"
        )
    costs = np.where(needed, cost_w, 0.0)
    if np.isnan(costs).any():
        raise ReplayError(
            f"cost in {matrix.unit} is unknown for configuration {step.config.label} "
            "(no token counts recorded): evaluate with --cost calls or a price table"
        )
    codes = np.where(needed, codes, NO_ANSWER)
    unknown &= needed
    if step.aggregate == "first" or n == 1:
        leader = codes[:, 0]
        leader_slot = np.zeros(len(rows), dtype=np.int64)
    else:
        _need_answers(unknown & (drawn > 1)[:, None], step, "a majority vote")
        # The vote over the first `drawn` samples only sees samples that were drawn, so the
        # prefix votes of the stop rule (before masking) serve here too.
        leaders, _, _, slots = votes if votes is not None else _prefix_votes(codes, every=False)
        at = (drawn - 1)[:, None]  # the vote over the samples actually drawn
        leader = np.take_along_axis(leaders, at, axis=1)[:, 0]
        leader_slot = np.take_along_axis(slots, at, axis=1)[:, 0]
    answered = np.where(leader == UNKNOWN_ANSWER, np.nan, (leader >= 0).astype(float))
    correct_samples = np.where(needed, correct_w, 0.0)
    correct = correct_samples[np.arange(len(rows)), leader_slot]
    used[c][rows] = start + drawn
    if step.escalate == "never":
        escalate = np.zeros(len(rows), dtype=bool)
    elif step.escalate == "always":
        escalate = np.ones(len(rows), dtype=bool)
    elif step.escalate == "no_answer":
        _need_answers(unknown, step, "escalating when there is no answer")
        escalate = answered == 0
    elif step.escalate == "unsure":  # one sample: its answer's probability is too low
        _need_answers(unknown, step, "escalating on answer confidence")
        prob = _signals(matrix, step, "answer confidences").prob[rows, c, start]
        escalate = (answered == 0) | ~(prob >= (step.min_prob or 0.0))
    else:  # disagree: any drawn sample without the leader's answer
        _need_answers(unknown, step, "escalating when samples disagree")
        escalate = (needed & (codes != leader[:, None])).any(axis=1) | (answered == 0)
    return correct, answered, costs.sum(axis=1), drawn, escalate


def _signals(matrix: OutcomeMatrix, step: Step, what: str) -> Signals:
    if matrix.signals is None:
        raise ReplayError(
            f"{what} are not recorded for {step.config.label}: this policy needs ladder data "
            "from a live sweep (`ponder sweep run`), not imported outcomes"
        )
    return matrix.signals


@dataclass(frozen=True)
class ExitOutcome:
    """Per-row result of growing one chain through an exit step's rungs."""

    correct: np.ndarray
    answered: np.ndarray
    cost: np.ndarray
    stop: np.ndarray  # index of the rung it stopped at
    sure: np.ndarray  # stopped because the rule held or the chain ended, not at the cap


def exit_rung_configs(matrix: OutcomeMatrix, step: Step) -> list[int]:
    """Configuration index of every rung of an exit step (same model and mode)."""
    assert step.exit is not None
    return [
        matrix.config_index(Config(step.config.model, step.config.mode, r)) for r in step.exit.rungs
    ]


def probe_feature_arrays(
    answer: np.ndarray,
    prob: np.ndarray,
    token_prob: np.ndarray | None,
    entropy: np.ndarray,
    budgets: Sequence[int],
) -> dict[str, np.ndarray]:
    """`ponder.decision.probe_features` for every [row, rung] at once (probes up to each)."""
    n, k = answer.shape
    valid = answer >= 0
    agree = np.zeros((n, k), dtype=bool)
    agree[:, 1:] = valid[:, 1:] & (answer[:, 1:] == answer[:, :-1])
    streak = np.zeros((n, k))
    changes = np.zeros((n, k))
    for i in range(k):
        before = streak[:, i - 1] if i else np.zeros(n)
        streak[:, i] = np.where(valid[:, i], np.where(agree[:, i], before + 1, 1), 0)
        if i:
            changes[:, i] = changes[:, i - 1] + (answer[:, i] != answer[:, i - 1])

    def known(values: np.ndarray | None) -> np.ndarray:
        return np.zeros((n, k)) if values is None else np.nan_to_num(values, nan=0.0)

    return {
        "prob": known(prob),
        "token_prob": known(token_prob),
        "entropy": known(entropy),
        "answered": valid.astype(float),
        "agree": agree.astype(float),
        "streak": streak,
        "changes": changes,
        "log_budget": np.broadcast_to(np.log2(np.asarray(budgets, dtype=float)), (n, k)),
    }


def score_probability(score: Score, features: dict[str, np.ndarray]) -> np.ndarray:
    """The score's probability at every [row, rung]."""
    logit = np.full(next(iter(features.values())).shape, score.bias)
    for name, weight in score.weights:
        logit = logit + weight * features[name]
    probability: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(logit, -700.0, 700.0)))
    return probability


def exit_mask(
    rule: ExitRule,
    answer: np.ndarray,
    prob: np.ndarray,
    entropy: np.ndarray,
    token_prob: np.ndarray | None = None,
    features: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """[row, rung]: whether the exit rule accepts the probe at each rung, from probes up to
    that rung (False everywhere for a rule that can only give up)."""
    if not rule.has_sure_conditions:
        return np.zeros(answer.shape, dtype=bool)
    holds = np.ones(answer.shape, dtype=bool)
    if rule.window is not None:
        w = rule.window
        same = np.zeros(answer.shape, dtype=bool)
        for i in range(w - 1, answer.shape[1]):
            window = answer[:, i - w + 1 : i + 1]
            same[:, i] = (window[:, -1] >= 0) & (window == window[:, -1:]).all(axis=1)
        holds &= same
    with np.errstate(invalid="ignore"):
        if rule.min_prob is not None:
            holds &= prob >= rule.min_prob
        if rule.max_entropy is not None:
            holds &= entropy <= rule.max_entropy
        if rule.min_token_prob is not None:
            if token_prob is None:
                raise ReplayError("per-token answer probabilities were not recorded")
            holds &= token_prob >= rule.min_token_prob
    if rule.confident is not None:
        if features is None:
            features = probe_feature_arrays(answer, prob, token_prob, entropy, rule.rungs)
        holds &= score_probability(rule.confident, features) >= rule.confident.threshold
    return holds


def give_up_mask(
    rule: ExitRule,
    answer: np.ndarray,
    prob: np.ndarray,
    entropy: np.ndarray,
    token_prob: np.ndarray | None = None,
    features: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """[row, rung]: whether the rule's hopeless score gives up at each rung."""
    if rule.hopeless is None:
        return np.zeros(answer.shape, dtype=bool)
    if features is None:
        features = probe_feature_arrays(answer, prob, token_prob, entropy, rule.rungs)
    mask: np.ndarray = score_probability(rule.hopeless, features) <= rule.hopeless.threshold
    return mask


def run_exit(matrix: OutcomeMatrix, rows: np.ndarray, step: Step, slot: np.ndarray) -> ExitOutcome:
    """Grow chain `slot` of each row through the step's rungs; stop where the rule holds.

    A decision at rung i sees only the probes at rungs up to i. Stopping at rung i costs the
    rung's own sample cost (the chain so far plus that probe) plus every earlier probe.
    """
    assert step.exit is not None
    signals = _signals(matrix, step, "probe signals")
    configs = exit_rung_configs(matrix, step)
    index = (rows[:, None], np.asarray(configs)[None, :], slot[:, None])
    correct = matrix.correct[index]
    missing = np.isnan(correct).any(axis=1)
    if missing.any():
        bad = int(np.argmax(missing))
        problem = matrix.problems.iloc[rows[bad]]
        raise ReplayError(
            f"chain {int(slot[bad])} of {step.config.model}|{step.config.mode} is not recorded "
            f"at every rung of {list(step.exit.rungs)} for problem "
            f"{problem['dataset']}/{problem['problem_id']}"
        )
    chain = signals.chain[index]
    if ((chain == NO_CHAIN) | (chain != chain[:, :1])).any():
        raise ReplayError(
            f"the rungs {list(step.exit.rungs)} of {step.config.model}|{step.config.mode} are "
            "not probes of one recorded chain: an exit rule needs ladder data "
            "(`ponder sweep run` with a ladder), not separate runs per budget"
        )
    answer = matrix.answer[index]
    if (answer == UNKNOWN_ANSWER).any():
        _need_answers(answer == UNKNOWN_ANSWER, step, "an exit rule")
    cost = matrix.cost[index]
    probe = signals.probe_cost[index]
    if np.isnan(cost).any() or np.isnan(probe).any():
        raise ReplayError(
            f"cost in {matrix.unit} is unknown for {step.config.model}|{step.config.mode} "
            "(no token counts recorded)"
        )
    token_prob = None if signals.token_prob is None else signals.token_prob[index]
    prob, entropy = signals.prob[index], signals.entropy[index]
    features = None
    if step.exit.confident is not None or step.exit.hopeless is not None:
        features = probe_feature_arrays(answer, prob, token_prob, entropy, step.exit.rungs)
    rule = exit_mask(step.exit, answer, prob, entropy, token_prob, features)
    give_up = give_up_mask(step.exit, answer, prob, entropy, token_prob, features)
    natural = signals.natural[index] == 1
    done = rule | give_up | natural
    done[:, -1] = True  # the hard cap
    stop = done.argmax(axis=1)
    at = (np.arange(len(rows)), stop)
    earlier = np.arange(len(configs))[None, :] < stop[:, None]
    spent = cost[at] + np.where(earlier, probe, 0.0).sum(axis=1)
    return ExitOutcome(
        correct=correct[at],
        answered=(answer[at] >= 0).astype(float),
        cost=spent,
        stop=stop,
        sure=(rule | natural)[at],
    )


def _run_exit_step(
    matrix: OutcomeMatrix, rows: np.ndarray, step: Step, used: dict[int, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """An exit step inside a plan: the next unused chain, in recorded order."""
    configs = exit_rung_configs(matrix, step)
    zeros = np.zeros(matrix.n_problems, dtype=np.int64)
    # A chain any earlier step grew or drew at one of these rungs is used: take a fresh one.
    start = np.max([used.get(c, zeros)[rows] for c in configs], axis=0)
    if (start >= matrix.correct.shape[2]).any():
        raise ReplayError(f"no chain of {step.config.label} is left for this plan")
    out = run_exit(matrix, rows, step, start)
    for c in configs:
        used.setdefault(c, np.zeros(matrix.n_problems, dtype=np.int64))[rows] = start + 1
    if step.escalate == "never":
        escalate = np.zeros(len(rows), dtype=bool)
    elif step.escalate == "always":
        escalate = np.ones(len(rows), dtype=bool)
    elif step.escalate == "unsure":
        escalate = ~out.sure | (out.answered == 0)
    elif step.escalate == "no_answer":
        escalate = out.answered == 0
    else:
        raise ReplayError(f"an exit step cannot escalate on {step.escalate!r}")
    return out.correct, out.answered, out.cost, np.ones(len(rows), dtype=np.int64), escalate


def _expected_exit(matrix: OutcomeMatrix, rows: np.ndarray, step: Step) -> ReplayResult:
    """A plan of one exit step, scored by its mean over every chain recorded at all rungs."""
    configs = exit_rung_configs(matrix, step)
    complete = ~np.isnan(matrix.correct[rows][:, configs]).any(axis=1)  # [row, slot]
    have = complete.sum(axis=1)
    if (have == 0).any():
        bad = int(np.argmax(have == 0))
        problem = matrix.problems.iloc[rows[bad]]
        raise ReplayError(
            f"no chain of {step.config.model}|{step.config.mode} is recorded at every rung of "
            f"{list(step.exit.rungs) if step.exit else []} for problem "
            f"{problem['dataset']}/{problem['problem_id']}"
        )
    n = len(rows)
    correct, cost, answered = np.zeros(n), np.zeros(n), np.zeros(n)
    for s in range(complete.shape[1]):
        take = np.flatnonzero(complete[:, s])
        if len(take) == 0:
            continue
        out = run_exit(matrix, rows[take], step, np.full(len(take), s))
        correct[take] += out.correct
        cost[take] += out.cost
        answered[take] += out.answered
    ones = np.ones(n, dtype=np.int64)
    return ReplayResult(correct / have, cost / have, answered / have, ones, ones.copy())


def _need_answers(unknown: np.ndarray, step: Step, what: str) -> None:
    """Fail clearly when a rule needs answers that were not recorded."""
    if unknown.any():
        raise ReplayError(
            f"{what} needs the extracted answers, and configuration {step.config.label} has "
            "none recorded (only `correct`): import an answer column to use this policy"
        )


def _expected(matrix: OutcomeMatrix, rows: np.ndarray, step: Step) -> ReplayResult:
    """One sample of one configuration, scored by its mean over every recorded sample (the
    cell sums, which cover samples beyond the slots a cut matrix keeps)."""
    c = matrix.config_index(step.config)
    stats = matrix.stats
    have = stats.recorded[rows, c]
    if (have == 0).any():
        bad = int(np.argmax(have == 0))
        problem = matrix.problems.iloc[rows[bad]]
        raise ReplayError(
            f"configuration {step.config.label} has 0 recorded sample(s) for problem "
            f"{problem['dataset']}/{problem['problem_id']}, the decision needs 1"
        )
    spent = stats.cost[rows, c]
    if np.isnan(spent).any():
        raise ReplayError(
            f"cost in {matrix.unit} is unknown for configuration {step.config.label} "
            "(no token counts recorded): evaluate with --cost calls or a price table"
        )
    answered = np.where(stats.unknown[rows, c], np.nan, stats.answered[rows, c] / have)
    n = len(rows)
    return ReplayResult(
        correct=stats.correct[rows, c] / have,
        cost=spent / have,
        answered=answered,
        samples=np.ones(n, dtype=np.int64),
        steps=np.ones(n, dtype=np.int64),
    )


def replay_decision(matrix: OutcomeMatrix, rows: np.ndarray, decision: Decision) -> ReplayResult:
    """Replay one decision for several problems at once."""
    if len(decision.steps) == 1 and decision.steps[0].samples == 1:
        if decision.steps[0].exit is not None:
            return _expected_exit(matrix, rows, decision.steps[0])
        return _expected(matrix, rows, decision.steps[0])
    n = len(rows)
    correct = np.zeros(n)
    answered = np.zeros(n)
    cost = np.zeros(n)
    samples = np.zeros(n, dtype=np.int64)
    steps = np.zeros(n, dtype=np.int64)
    used: dict[int, np.ndarray] = {}
    active = np.arange(n)
    for k, step in enumerate(decision.steps):
        if len(active) == 0:
            break
        run = _run_exit_step if step.exit is not None else _run_step
        ok, has, spent, drawn, escalate = run(matrix, rows[active], step, used)
        cost[active] += spent
        samples[active] += drawn
        steps[active] = k + 1
        correct[active] = ok
        answered[active] = has
        if k < len(decision.steps) - 1:
            active = active[escalate]
    return ReplayResult(correct, cost, answered, samples, steps)


def replay(matrix: OutcomeMatrix, batch: DecisionBatch) -> ReplayResult:
    """Replay a batch of decisions (one per problem of `matrix`), grouped by distinct plan."""
    if len(batch.index) != matrix.n_problems:
        raise ValueError("one decision per problem is needed")
    n = matrix.n_problems
    correct = np.zeros(n)
    answered = np.zeros(n)
    cost = np.zeros(n)
    samples = np.zeros(n, dtype=np.int64)
    steps = np.zeros(n, dtype=np.int64)
    for d, decision in enumerate(batch.decisions):
        rows = np.flatnonzero(batch.index == d)
        if len(rows) == 0:
            continue
        part = replay_decision(matrix, rows, decision)
        correct[rows] = part.correct
        answered[rows] = part.answered
        cost[rows] = part.cost
        samples[rows] = part.samples
        steps[rows] = part.steps
    return ReplayResult(correct, cost, answered, samples, steps)
