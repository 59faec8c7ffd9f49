"""Sequential replay on ladder data: the vectorised replay equals the step-by-step reference,
decisions never see later rungs, costs add up as documented, and bad data fails clearly."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ponder.decision import (
    PROBE_FEATURES,
    Config,
    Decision,
    DecisionBatch,
    ExitRule,
    Score,
    Step,
    StopRule,
    probe_features,
)
from ponder.errors import InputError
from ponder.evaluate import CostModel, OutcomeMatrix, Price, ReplayError, replay
from ponder.outcomes.matrix import NO_ANSWER, NO_CHAIN, Signals
from ponder.outcomes.reference import replay_reference
from ponder.outcomes.replay import exit_mask, give_up_mask, probe_feature_arrays, run_exit

# (model, mode) pairs a random ladder's chain families are drawn from: mode names are free.
FAMILY_POOL = (("m0", "think"), ("m1", "think"), ("m0", "slow"))
FAST = "no-think"


def _problems(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "dataset": "d",
            "problem_id": [str(i) for i in range(n)],
            "level": np.nan,
            "subject": None,
            "text": None,
        }
    )


# -- random ladders and plans ----------------------------------------------------------------


def _random_score(rng: np.random.Generator) -> Score:
    """A logistic score over a random subset of the probe features."""
    names = [str(n) for n in rng.choice(PROBE_FEATURES, int(rng.integers(1, 5)), replace=False)]
    weights = tuple((n, float(rng.normal(0, 2))) for n in names)
    return Score(weights, float(rng.normal(0, 1)), float(rng.random()))


class Ladder:
    """A random ladder matrix and what it holds: families (model, mode, rungs) and chain counts."""

    def __init__(self, rng: np.random.Generator) -> None:
        n = int(rng.integers(1, 31))
        picks = rng.choice(len(FAMILY_POOL), int(rng.integers(1, 4)), replace=False)
        self.families: list[tuple[str, str, tuple[int, ...]]] = []
        chains: list[int] = []
        for pick in sorted(picks):
            model, mode = FAMILY_POOL[pick]
            budgets = rng.choice(np.arange(1, 40), int(rng.integers(2, 7)), replace=False)
            self.families.append((model, mode, tuple(int(b) * 16 for b in sorted(budgets))))
            chains.append(int(rng.integers(1, 5)))
        self.models = sorted({model for model, _, _ in self.families})
        fast_samples = {model: int(rng.integers(1, 5)) for model in self.models}
        configs = [Config(m, o, r) for m, o, rungs in self.families for r in rungs]
        configs += [Config(model, FAST, None) for model in self.models]
        shape = (n, len(configs), max(*chains, *fast_samples.values()))
        correct, cost = np.full(shape, np.nan), np.full(shape, np.nan)
        answer = np.full(shape, NO_ANSWER, dtype=np.int32)
        prob, entropy = np.full(shape, np.nan), np.full(shape, np.nan)
        token_prob = np.full(shape, np.nan)
        natural, probe = np.full(shape, np.nan), np.full(shape, np.nan)
        chain = np.full(shape, NO_CHAIN, dtype=np.int64)

        def maybe_nan(value: float) -> float:
            return float("nan") if rng.random() < 0.15 else value

        code = 0
        for (model, mode, rungs), n_chains in zip(self.families, chains, strict=True):
            index = [configs.index(Config(model, mode, r)) for r in rungs]
            for p in range(n):
                for s in range(n_chains):
                    end = int(rng.integers(0, len(rungs) + 2))  # first natural rung
                    prefix = 0.0
                    for i, c in enumerate(index):
                        chain[p, c, s] = code
                        if i > end:  # the chain had ended: the natural answer persists
                            was = (p, index[i - 1], s)
                            for array in (answer, correct, cost, prob, entropy, token_prob):
                                array[p, c, s] = array[was]
                            natural[p, c, s], probe[p, c, s] = 1.0, 0.0
                            continue
                        prefix += float(rng.integers(10, 40))
                        answer[p, c, s] = int(rng.integers(-1, 3))
                        correct[p, c, s] = float(answer[p, c, s] == 0)
                        probe[p, c, s] = 0.0 if i == end else float(rng.integers(1, 10))
                        natural[p, c, s] = float(i == end)
                        cost[p, c, s] = prefix + probe[p, c, s]
                        prob[p, c, s] = maybe_nan(float(rng.random()))
                        entropy[p, c, s] = maybe_nan(float(rng.random() * 3))
                        token_prob[p, c, s] = maybe_nan(float(rng.random()))
                    code += 1
        for model, count in fast_samples.items():
            c = configs.index(Config(model, FAST, None))
            answer[:, c, :count] = rng.integers(-1, 3, size=(n, count))
            correct[:, c, :count] = answer[:, c, :count] == 0
            cost[:, c, :count] = rng.integers(1, 6, size=(n, count))
            prob[:, c, :count] = np.where(
                rng.random((n, count)) < 0.15, np.nan, rng.random((n, count))
            )
        # Older ladders have no per-token probabilities at all.
        per_token = token_prob if rng.random() < 0.7 else None
        signals = Signals(prob, entropy, natural, probe, chain, per_token)
        self.matrix = OutcomeMatrix(
            _problems(n), tuple(configs), correct, cost, cost.copy(), answer, signals=signals
        )

    def exit_step(self, rng: np.random.Generator, escalate: str) -> Step:
        model, mode, rungs = self.families[int(rng.integers(len(self.families)))]
        size = int(rng.integers(1, len(rungs) + 1))
        subset = tuple(sorted(int(r) for r in rng.choice(rungs, size, replace=False)))
        conditions: dict[str, object] = {}
        while not conditions:
            if rng.random() < 0.5:
                conditions["window"] = int(rng.integers(1, 4))
            if rng.random() < 0.5:
                conditions["min_prob"] = float(rng.random())
            if rng.random() < 0.4:
                conditions["max_entropy"] = float(rng.random() * 3)
            if rng.random() < 0.3:
                conditions["min_token_prob"] = float(rng.random())
            if rng.random() < 0.3:
                conditions["confident"] = _random_score(rng)
            if rng.random() < 0.3:
                conditions["hopeless"] = _random_score(rng)
        rule = ExitRule(subset, **conditions)  # type: ignore[arg-type]
        return Step(Config(model, mode, subset[-1]), exit=rule, escalate=escalate)

    def plan(self, rng: np.random.Generator) -> Decision:
        """A single exit step, or 2-4 steps mixing probes, exits and votes."""
        if rng.random() < 0.3:
            escalate = str(rng.choice(["never", "no_answer", "unsure", "always"]))
            return Decision((self.exit_step(rng, escalate),))
        steps = []
        for _ in range(int(rng.integers(2, 5))):
            kind = int(rng.integers(3))
            if kind == 0:  # a quick no-think answer, accepted only when confident
                escalate = str(rng.choice(["unsure", "never", "no_answer", "always", "disagree"]))
                model = str(rng.choice(self.models))
                steps.append(
                    Step(Config(model, FAST, None), min_prob=float(rng.random()), escalate=escalate)
                )
            elif kind == 1:
                escalate = str(rng.choice(["never", "no_answer", "unsure", "always"]))
                steps.append(self.exit_step(rng, escalate))
            else:
                model, mode, rungs = self.families[int(rng.integers(len(self.families)))]
                config = (
                    Config(model, mode, int(rng.choice(rungs)))
                    if rng.random() < 0.6
                    else Config(model, FAST, None)
                )
                stop = None
                if rng.random() < 0.7:
                    stop = StopRule(
                        votes=int(rng.integers(1, 4)),
                        margin=int(rng.integers(0, 3)),
                        kind=str(rng.choice(["votes", "beta", "window"])),
                        confidence=float(rng.uniform(0.5, 0.99)),
                        window=int(rng.integers(1, 4)),
                    )
                steps.append(
                    Step(
                        config,
                        samples=int(rng.integers(1, 4)),
                        aggregate=str(rng.choice(["first", "majority"])),
                        escalate=str(rng.choice(["never", "no_answer", "disagree", "always"])),
                        stop=stop,
                    )
                )
        return Decision(tuple(steps))


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_vectorised_replay_equals_reference_on_random_ladders(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ladder = Ladder(rng)
    plans = tuple(ladder.plan(rng) for _ in range(int(rng.integers(1, 4))))
    batch = DecisionBatch(plans, rng.integers(0, len(plans), ladder.matrix.n_problems))
    try:
        fast = replay(ladder.matrix, batch)
    except ReplayError:
        # Both refuse (a plan needs chains or samples that were not recorded).
        with pytest.raises(ReplayError):
            replay_reference(ladder.matrix, batch)
        return
    slow = replay_reference(ladder.matrix, batch)
    for name in ("correct", "cost", "answered"):
        np.testing.assert_allclose(getattr(fast, name), getattr(slow, name), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(fast.samples, slow.samples)
    np.testing.assert_array_equal(fast.steps, slow.steps)


# -- no peeking ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_exit_decision_ignores_everything_after_its_stop_rung(seed: int) -> None:
    """Scrambling every recorded value at rungs after the stop rung changes nothing."""
    rng = np.random.default_rng(seed)
    ladder = Ladder(rng)
    matrix, signals = ladder.matrix, ladder.matrix.signals
    assert signals is not None
    step = ladder.exit_step(rng, "never")
    assert step.exit is not None
    while step.exit.min_token_prob is not None and signals.token_prob is None:
        step = ladder.exit_step(rng, "never")
        assert step.exit is not None
    rows = np.arange(matrix.n_problems)
    slot = np.zeros(len(rows), dtype=np.int64)
    before = run_exit(matrix, rows, step, slot)
    configs = np.array(
        [matrix.configs.index(replace(step.config, budget=r)) for r in step.exit.rungs]
    )
    after = np.arange(len(configs))[None, :] > before.stop[:, None]  # [row, rung]
    p, i = np.nonzero(after)
    where = (p, configs[i], np.zeros(len(p), dtype=np.int64))
    answer = matrix.answer.copy()
    correct, cost = matrix.correct.copy(), matrix.cost.copy()
    prob, entropy = signals.prob.copy(), signals.entropy.copy()
    token_prob = None if signals.token_prob is None else signals.token_prob.copy()
    if token_prob is not None:
        token_prob[where] = rng.random(len(p))
    natural, probe = signals.natural.copy(), signals.probe_cost.copy()
    answer[where] = rng.integers(-1, 3, size=len(p))
    correct[where] = 1.0 - correct[where]
    cost[where] = rng.integers(1, 1000, size=len(p))
    prob[where], entropy[where] = rng.random(len(p)), rng.random(len(p))
    natural[where], probe[where] = rng.integers(0, 2, size=len(p)), rng.integers(0, 50, size=len(p))
    scrambled = replace(
        matrix,
        answer=answer,
        correct=correct,
        cost=cost,
        signals=replace(
            signals,
            prob=prob,
            entropy=entropy,
            natural=natural,
            probe_cost=probe,
            token_prob=token_prob,
        ),
    )
    later = run_exit(scrambled, rows, step, slot)
    np.testing.assert_array_equal(later.stop, before.stop)
    np.testing.assert_array_equal(later.correct, before.correct)
    np.testing.assert_array_equal(later.cost, before.cost)
    np.testing.assert_array_equal(later.answered, before.answered)
    np.testing.assert_array_equal(later.sure, before.sure)
    # The whole plan (exit, then the fallback) agrees too.
    plan = Decision((replace(step, escalate="unsure"), Step(Config(ladder.models[0], FAST, None))))
    batch = DecisionBatch.same(plan, matrix.n_problems)
    a, b = replay(matrix, batch), replay(scrambled, batch)
    np.testing.assert_array_equal(a.correct, b.correct)
    np.testing.assert_array_equal(a.cost, b.cost)


# -- hand-computed costs ---------------------------------------------------------------------

RUNGS = (16, 32, 64, 128)
THINK = Config("big", "think", 128)
QUICK = Config("small", FAST, None)


def _hand_matrix(natural_from: int | None = None) -> OutcomeMatrix:
    """One problem, one chain of `big` through RUNGS, one `small` no-think sample.

    Probe answers 1, 0, 0, 0 (0 is right); rung costs 20, 38, 70, 135 (chain prefix plus that
    probe); probes 4, 6, 6, 7; probabilities 0.2, 0.6, 0.7, 0.9, per token 0.9, 0.5, 0.6,
    0.97; entropies 2.0, 1.5, 1.0, 0.5. With `natural_from`, the chain ended on its own before
    that rung: from there on it answers 0 at cost 60, no probe.
    """
    configs = (*(Config("big", "think", r) for r in RUNGS), QUICK)
    shape = (1, len(configs), 1)
    answer = np.array([1, 0, 0, 0, 2], dtype=np.int32).reshape(shape)
    cost = np.array([20.0, 38.0, 70.0, 135.0, 3.0]).reshape(shape)
    probe = np.array([4.0, 6.0, 6.0, 7.0, np.nan]).reshape(shape)
    prob = np.array([0.2, 0.6, 0.7, 0.9, 0.3]).reshape(shape)
    entropy = np.array([2.0, 1.5, 1.0, 0.5, np.nan]).reshape(shape)
    token_prob = np.array([0.9, 0.5, 0.6, 0.97, np.nan]).reshape(shape)
    natural = np.array([0.0, 0.0, 0.0, 0.0, np.nan]).reshape(shape)
    chain = np.array([7, 7, 7, 7, NO_CHAIN]).reshape(shape)
    if natural_from is not None:
        later = slice(natural_from, len(RUNGS))
        answer[0, later, 0], cost[0, later, 0] = 0, 60.0
        probe[0, later, 0], natural[0, later, 0] = 0.0, 1.0
    correct = (answer == 0).astype(float)
    signals = Signals(prob, entropy, natural, probe, chain, token_prob)
    return OutcomeMatrix(_problems(1), configs, correct, cost, cost.copy(), answer, signals=signals)


def _run(matrix: OutcomeMatrix, *steps: Step) -> tuple[float, float, int, int]:
    result = replay(matrix, DecisionBatch.same(Decision(steps), 1))
    reference = replay_reference(matrix, DecisionBatch.same(Decision(steps), 1))
    assert result.cost[0] == pytest.approx(reference.cost[0])
    assert result.correct[0] == reference.correct[0]
    return (
        float(result.correct[0]),
        float(result.cost[0]),
        int(result.samples[0]),
        int(result.steps[0]),
    )


def test_stopping_at_a_rung_costs_that_rung_plus_earlier_probes_only() -> None:
    matrix = _hand_matrix()
    # Two equal answers in a row first at rung 64 (index 2): 70 + probes at 16 and 32.
    window = Step(THINK, exit=ExitRule(RUNGS, window=2))
    assert _run(matrix, window)[:2] == (1.0, 70.0 + 4.0 + 6.0)
    # Probing only at 16, 64 and 128: agreement first at 128, and the 32 probe never ran.
    sparse = Step(THINK, exit=ExitRule((16, 64, 128), window=2))
    assert _run(matrix, sparse)[:2] == (1.0, 135.0 + 4.0 + 6.0)
    # Confident at rung 32 already (0.6 >= 0.6: the bound counts): 38 + the probe at 16.
    confident = Step(THINK, exit=ExitRule(RUNGS, min_prob=0.6))
    assert _run(matrix, confident)[:2] == (1.0, 38.0 + 4.0)
    # Calm and confident: entropy <= 1.0 first at 64, probability >= 0.65 too.
    both = Step(THINK, exit=ExitRule(RUNGS, min_prob=0.65, max_entropy=1.0))
    assert _run(matrix, both)[:2] == (1.0, 70.0 + 4.0 + 6.0)
    # Per-token confidence 0.9 at the very first rung: stop there, wrong, nothing earlier.
    per_token = Step(THINK, exit=ExitRule(RUNGS, min_token_prob=0.9))
    assert _run(matrix, per_token)[:2] == (0.0, 20.0)
    # Both confidences at once: first at 128 (0.9 and 0.97), after three probes.
    confident_both = Step(THINK, exit=ExitRule(RUNGS, min_prob=0.5, min_token_prob=0.9))
    assert _run(matrix, confident_both)[:2] == (1.0, 135.0 + 4.0 + 6.0 + 6.0)
    # The first rung alone: nothing earlier to pay for, a wrong answer.
    first = Step(Config("big", "think", 16), exit=ExitRule((16,), min_prob=0.1))
    assert _run(matrix, first)[:2] == (0.0, 20.0)


def test_a_chain_that_ended_on_its_own_stops_at_its_natural_answer() -> None:
    matrix = _hand_matrix(natural_from=2)
    never = Step(THINK, exit=ExitRule(RUNGS, min_prob=0.99))
    # Ended before rung 64: stop there, chain cost 60 plus the probes at 16 and 32.
    assert _run(matrix, never)[:2] == (1.0, 60.0 + 4.0 + 6.0)
    # Reaching its natural end counts as sure: no escalation.
    assert _run(matrix, replace(never, escalate="unsure"), Step(QUICK)) == (1.0, 70.0, 1, 1)


def test_an_escalation_pays_for_everything_it_ran_before() -> None:
    matrix = _hand_matrix()
    never = Step(THINK, exit=ExitRule(RUNGS, min_prob=0.99), escalate="unsure")
    # The rule never holds: the chain runs to the cap (135 + probes 4, 6, 6) and the request
    # goes on to the quick answer (3), which is wrong.
    assert _run(matrix, never, Step(QUICK)) == (0.0, 135.0 + 16.0 + 3.0, 2, 2)
    # A quick answer with probability 0.3 < 0.5 escalates to the chain, which stops at 64.
    probe_first = Step(QUICK, min_prob=0.5, escalate="unsure")
    window = Step(THINK, exit=ExitRule(RUNGS, window=2))
    assert _run(matrix, probe_first, window) == (1.0, 3.0 + 80.0, 2, 2)
    # Confident enough at 0.25 (and at 0.3, the bound): the quick (wrong) answer stands, the
    # chain never runs.
    assert _run(matrix, replace(probe_first, min_prob=0.25), window) == (0.0, 3.0, 1, 1)
    assert _run(matrix, replace(probe_first, min_prob=0.3), window) == (0.0, 3.0, 1, 1)
    # The exit held at 64, so 'unsure' does not escalate; 'always' does and pays for both.
    sure = Step(THINK, exit=ExitRule(RUNGS, window=2), escalate="unsure")
    assert _run(matrix, sure, Step(QUICK)) == (1.0, 80.0, 1, 1)
    assert _run(matrix, replace(sure, escalate="always"), Step(QUICK)) == (0.0, 83.0, 2, 2)


# -- errors ----------------------------------------------------------------------------------


def test_exit_step_without_signals_needs_ladder_data() -> None:
    matrix = replace(_hand_matrix(), signals=None)
    step = Step(THINK, exit=ExitRule(RUNGS, window=2))
    for plan in (Decision((step,)), Decision((replace(step, escalate="always"), Step(QUICK)))):
        with pytest.raises(ReplayError, match="ladder data"):
            replay(matrix, DecisionBatch.same(plan, 1))
    confident = Decision((Step(QUICK, min_prob=0.5, escalate="unsure"), Step(THINK)))
    with pytest.raises(ReplayError, match="ladder data"):
        replay(matrix, DecisionBatch.same(confident, 1))


def test_per_token_rule_needs_per_token_probabilities() -> None:
    matrix = _hand_matrix()
    assert matrix.signals is not None
    older = replace(matrix, signals=replace(matrix.signals, token_prob=None))
    step = Step(THINK, exit=ExitRule(RUNGS, min_token_prob=0.5))
    for plan in (Decision((step,)), Decision((replace(step, escalate="always"), Step(QUICK)))):
        with pytest.raises(ReplayError, match="per-token"):
            replay(older, DecisionBatch.same(plan, 1))
        with pytest.raises(ReplayError, match="per-token"):
            replay_reference(older, DecisionBatch.same(plan, 1))
    # The other conditions do not need them.
    window = Step(THINK, exit=ExitRule(RUNGS, window=2))
    assert replay(older, DecisionBatch.same(Decision((window,)), 1)).cost[0] == 80.0


@pytest.mark.parametrize("chain", [[7, 7, 8, 7], [NO_CHAIN] * 4, [7, NO_CHAIN, 7, 7]])
def test_rungs_from_different_chains_are_refused(chain: list[int]) -> None:
    """Separate runs per budget (no chain, or different chains) are not a ladder."""
    matrix = _hand_matrix()
    assert matrix.signals is not None
    codes = matrix.signals.chain.copy()
    codes[0, :4, 0] = chain
    matrix = replace(matrix, signals=replace(matrix.signals, chain=codes))
    step = Step(THINK, exit=ExitRule(RUNGS, window=2))
    for plan in (Decision((step,)), Decision((step, Step(QUICK)))):
        with pytest.raises(ReplayError, match="not probes of one recorded chain"):
            replay(matrix, DecisionBatch.same(plan, 1))


def test_a_missing_rung_names_the_problem() -> None:
    rng = np.random.default_rng(4)
    ladder = Ladder(rng)
    while ladder.matrix.n_problems < 3:
        ladder = Ladder(rng)
    model, mode, rungs = ladder.families[0]
    step = Step(Config(model, mode, rungs[-1]), exit=ExitRule(rungs, min_prob=0.5))
    matrix = ladder.matrix
    correct = matrix.correct.copy()
    correct[2, matrix.config_index(Config(model, mode, rungs[0])), :] = np.nan
    broken = replace(matrix, correct=correct)
    for plan in (Decision((step,)), Decision((replace(step, escalate="always"), step))):
        with pytest.raises(ReplayError, match="for problem d/2"):
            replay(broken, DecisionBatch.same(plan, matrix.n_problems))
    # A rung budget that was never recorded at all is an input error naming the configuration.
    unknown = Step(Config(model, mode, 100_000), exit=ExitRule((rungs[0], 100_000), window=1))
    with pytest.raises(InputError, match="100000"):
        replay(matrix, DecisionBatch.same(Decision((unknown,)), matrix.n_problems))


def test_exit_step_cannot_escalate_on_disagreement() -> None:
    with pytest.raises(ValueError, match="disagree"):
        Step(THINK, exit=ExitRule(RUNGS, window=2), escalate="disagree")


REFERENCE_GAPS = {
    # An exit step after the only chain is used: the reference indexes past the samples.
    "chains run out": (
        _hand_matrix,
        Decision(
            (
                Step(THINK, exit=ExitRule(RUNGS, min_prob=0.99), escalate="always"),
                Step(THINK, exit=ExitRule(RUNGS, min_prob=0.99)),
            )
        ),
    ),
    # Without signals the reference fails an assert instead of saying what is missing.
    "no signals": (
        lambda: replace(_hand_matrix(), signals=None),
        Decision((Step(QUICK, min_prob=0.5, escalate="unsure"), Step(THINK))),
    ),
}


@pytest.mark.parametrize("case", sorted(REFERENCE_GAPS))
def test_replay_refuses_plans_the_data_cannot_answer(case: str) -> None:
    make, plan = REFERENCE_GAPS[case]
    with pytest.raises(ReplayError):
        replay(make(), DecisionBatch.same(plan, 1))


@pytest.mark.parametrize("case", sorted(REFERENCE_GAPS))
def test_reference_refuses_them_too(case: str) -> None:
    make, plan = REFERENCE_GAPS[case]
    with pytest.raises(ReplayError):
        replay_reference(make(), DecisionBatch.same(plan, 1))


# -- the matrix carries the signals ----------------------------------------------------------


def _signal_frame() -> pd.DataFrame:
    """Two problems; one chain each of model m through rungs 16 and 32, one no-think sample.

    Problem b's chain ended on its own before rung 32 (its answer tokens there are nonzero on
    purpose: a natural rung took no probe whatever the column says).
    """
    rows = [
        # problem, budget, chain, natural, prob, entropy, answer_tokens, output_tokens, answer
        ("a", 16.0, "ca", 0, 0.4, 1.2, 5, 21, "3"),
        ("a", 32.0, "ca", 0, 0.8, 0.6, 6, 38, "4"),
        ("b", 16.0, "cb", 0, 0.9, 0.3, 4, 20, "7"),
        ("b", 32.0, "cb", 1, 0.95, 0.2, 2, 25, "7"),
        ("a", np.nan, None, np.nan, 0.5, np.nan, 3, 3, "4"),
        ("b", np.nan, None, np.nan, 0.3, np.nan, 0, 2, "1"),
    ]
    frame = pd.DataFrame(
        rows,
        columns=[
            "problem_id",
            "budget",
            "chain_id",
            "natural",
            "answer_prob",
            "entropy_tail",
            "answer_tokens",
            "output_tokens",
            "extracted_answer",
        ],
    )
    truth = {"a": "4", "b": "7"}
    return frame.assign(
        dataset="d",
        model="m",
        mode=np.where(frame["budget"].isna(), FAST, "think"),
        sample_idx=0,
        prompt_tokens=50.0,
        answered=1.0,
        correct=(frame["problem_id"].map(truth) == frame["extracted_answer"]).astype(float),
        n_runs=1,
        level=np.nan,
        subject=None,
        rung=frame["budget"],
    )


def test_from_frame_builds_signals_from_the_signal_columns() -> None:
    matrix = OutcomeMatrix.from_frame(_signal_frame())
    assert matrix.configs == (
        Config("m", FAST, None),
        Config("m", "think", 16),
        Config("m", "think", 32),
    )
    signals = matrix.signals
    assert signals is not None and signals.has_chains
    assert signals.prob.shape == matrix.correct.shape == (2, 3, 1)
    np.testing.assert_array_equal(signals.prob[:, :, 0], [[0.5, 0.4, 0.8], [0.3, 0.9, 0.95]])
    np.testing.assert_array_equal(signals.entropy[:, 1:, 0], [[1.2, 0.6], [0.3, 0.2]])
    np.testing.assert_array_equal(signals.natural[:, 1:, 0], [[0, 0], [0, 1]])
    # Per token: the geometric mean over the answer's tokens, unknown without answer tokens.
    tokens = np.array([[3, 5, 6], [0, 4, 2]], dtype=float)
    prob = np.array([[0.5, 0.4, 0.8], [0.3, 0.9, 0.95]])
    assert signals.token_prob is not None
    with np.errstate(divide="ignore"):
        want = np.where(tokens > 0, prob ** (1 / tokens), np.nan)
    np.testing.assert_allclose(signals.token_prob[:, :, 0], want)
    assert np.isnan(signals.token_prob[1, 0, 0])
    assert signals.token_prob[0, 1, 0] == pytest.approx(0.4**0.2)
    # Probe cost is the answer tokens, and nothing at a natural rung.
    np.testing.assert_array_equal(signals.probe_cost[:, 1:, 0], [[5, 6], [4, 0]])
    chain = signals.chain[:, :, 0]
    assert (chain[:, 0] == NO_CHAIN).all()
    assert chain[0, 1] == chain[0, 2] != chain[1, 1] == chain[1, 2] != NO_CHAIN
    # And the exit replay runs on it: problem a's answers differ, so it stops at the cap 32
    # (38 + probe 5); problem b ended on its own before 32 (25 + probe 4). Both are right.
    step = Step(Config("m", "think", 32), exit=ExitRule((16, 32), window=2))
    result = replay(matrix, DecisionBatch.same(Decision((step,)), 2))
    np.testing.assert_array_equal(result.cost, [43.0, 29.0])
    np.testing.assert_array_equal(result.correct, [1.0, 1.0])


def test_probe_cost_follows_the_cost_unit_without_the_prompt() -> None:
    prices = {"m": Price(params_b=0.5)}
    matrix = OutcomeMatrix.from_frame(_signal_frame(), cost_model=CostModel("flops", prices))
    assert matrix.signals is not None
    np.testing.assert_allclose(
        matrix.signals.probe_cost[:, 1:, 0], np.array([[5, 6], [4, 0]]) * 1e9
    )


def test_no_chain_ids_means_no_signals() -> None:
    frame = _signal_frame()
    assert OutcomeMatrix.from_frame(frame.drop(columns=["chain_id"])).signals is None
    assert OutcomeMatrix.from_frame(frame.assign(chain_id=None)).signals is None


def test_subset_and_select_configs_keep_signals_aligned() -> None:
    matrix = OutcomeMatrix.from_frame(_signal_frame())
    full = matrix.signals
    assert full is not None
    part = matrix.subset([1]).select_configs([Config("m", "think", 32), Config("m", "think", 16)])
    assert part.signals is not None
    for name in ("prob", "entropy", "natural", "probe_cost", "chain", "token_prob"):
        want = getattr(full, name)[[1]][:, [2, 1]]
        np.testing.assert_array_equal(getattr(part.signals, name), want)
    np.testing.assert_array_equal(part.answer, matrix.answer[[1]][:, [2, 1]])
    assert part.signals.prob[0, 0, 0] == 0.95


def test_vectorised_probe_features_equal_the_one_request_form() -> None:
    """What replay computes for every row and rung is what a live runner computes per probe."""
    rng = np.random.default_rng(5)
    n, k = 200, 6
    answer = rng.integers(-1, 3, (n, k))
    prob = np.where(rng.random((n, k)) < 0.2, np.nan, rng.random((n, k)))
    token = np.where(rng.random((n, k)) < 0.2, np.nan, rng.random((n, k)))
    entropy = np.where(rng.random((n, k)) < 0.2, np.nan, 3 * rng.random((n, k)))
    budgets = (16, 32, 64, 128, 256, 512)
    arrays = probe_feature_arrays(answer, prob, token, entropy, budgets)
    for row in range(n):
        answers: list[int | None] = []
        for i in range(k):
            answers.append(int(answer[row, i]) if answer[row, i] >= 0 else None)

            def value(x: float) -> float | None:
                return None if np.isnan(x) else float(x)

            one = probe_features(
                answers,
                budgets[: i + 1],
                value(prob[row, i]),
                value(token[row, i]),
                value(entropy[row, i]),
            )
            assert {name: float(arrays[name][row, i]) for name in PROBE_FEATURES} == one


def test_a_hopeless_score_gives_up_and_escalates() -> None:
    """A rule that only gives up stops at the first rung whose score is low, as unsure."""
    changes_hurt = Score((("changes", -4.0),), bias=2.0, threshold=0.5)  # p <= .5 at 1 change
    rule = ExitRule((16, 32, 64), hopeless=changes_hurt)
    assert not rule.holds([1], 0.9, 0.1)
    assert not rule.gives_up([1], 0.9, 0.1) and rule.gives_up([1, 2], 0.9, 0.1)
    answer = np.array([[1, 2, 2], [1, 1, 1]])
    mask = give_up_mask(rule, answer, np.ones((2, 3)), np.zeros((2, 3)))
    assert mask.tolist() == [[False, True, True], [False, False, False]]
    assert not exit_mask(rule, answer, np.ones((2, 3)), np.zeros((2, 3))).any()
