"""TierCascade: exact replay of its plans on hand-built matrices, its search, files, real data."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from _matrices import answer_matrix

from ponder.evaluate import OutcomeMatrix, ReplayError, replay, replay_decision
from ponder.policies import Config, Decision, NotFittedError, PolicyError, Step, Uniform
from ponder.policies.cascade import TierCascade
from ponder.policies.serialization import load_policy, save_policy

CHEAP = Config("small", "no-think", 512)
MID = Config("mid", "think", 1024)
DEAR = Config("big", "think", 4096)

# Answer code 0 is right, other codes wrong, -1 no answer. Rows are problems, columns samples.
CHEAP_ANSWERS = [
    [0, 0, 0],  # agree, right: stops at tier 1
    [0, 1, 0],  # disagree: escalates
    [1, 1, 1],  # agree, wrong: stops at tier 1 (the cascade's blind spot)
    [-1, -1, -1],  # no answer: escalates under both rules
    [2, -1, 2],  # one missing answer: "disagree" escalates, "no_answer" does not
]
MID_ANSWERS = [[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 1, 0], [0, 0, 0]]
DEAR_ANSWERS = [[0, 0, 0]] * 5
PER_SAMPLE = {CHEAP: 1.0, MID: 4.0, DEAR: 10.0}  # plus 0.1 per sample slot


def _matrix(answers: dict[Config, list[list[int]]]) -> OutcomeMatrix:
    return answer_matrix(answers, PER_SAMPLE, default_cost=2.0)


def _three() -> OutcomeMatrix:
    return _matrix({CHEAP: CHEAP_ANSWERS, MID: MID_ANSWERS, DEAR: DEAR_ANSWERS})


def _replay_all(policy: TierCascade, matrix: OutcomeMatrix) -> tuple[np.ndarray, ...]:
    result = replay(matrix, policy.decide_batch(matrix.problems))
    return result.steps, result.correct, result.cost, result.samples


# -- exact replay of the plans -----------------------------------------------------------------


def test_escalates_exactly_when_the_first_tier_disagrees() -> None:
    matrix = _three()
    policy = TierCascade(0.0, tiers=[CHEAP, DEAR], samples=2).fit(matrix)
    steps, correct, cost, samples = _replay_all(policy, matrix)
    assert steps.tolist() == [1, 2, 1, 2, 2]
    assert correct.tolist() == [1.0, 1.0, 0.0, 1.0, 1.0]
    # Two cheap samples (1.0 + 1.1), plus one dear sample (10.0) when escalated.
    assert cost == pytest.approx([2.1, 12.1, 2.1, 12.1, 12.1])
    assert samples.tolist() == [2, 3, 2, 3, 3]
    first = policy.decide_batch(matrix.problems)[0]
    assert [(s.config, s.samples, s.escalate) for s in first.steps] == [
        (CHEAP, 2, "disagree"),
        (DEAR, 1, "never"),
    ]


def test_no_answer_rule_escalates_only_without_an_answer() -> None:
    matrix = _three()
    policy = TierCascade(0.0, tiers=[CHEAP, DEAR], samples=2, escalate="no_answer").fit(matrix)
    steps, correct, cost, _ = _replay_all(policy, matrix)
    assert steps.tolist() == [1, 1, 1, 2, 1]
    # Problem 1: the 2-sample vote ties and goes to the first answer (0, right).
    assert correct.tolist() == [1.0, 1.0, 0.0, 1.0, 0.0]
    assert cost == pytest.approx([2.1, 2.1, 2.1, 12.1, 2.1])


def test_costs_add_up_across_three_tiers() -> None:
    matrix = _three()
    policy = TierCascade(0.0, tiers=[CHEAP, MID, DEAR], samples=2).fit(matrix)
    steps, correct, cost, samples = _replay_all(policy, matrix)
    # Problems 1, 3, 4 reach MID; only problem 3's MID samples disagree.
    assert steps.tolist() == [1, 2, 1, 3, 2]
    assert correct.tolist() == [1.0, 1.0, 0.0, 1.0, 1.0]
    assert cost == pytest.approx([2.1, 2.1 + 8.1, 2.1, 2.1 + 8.1 + 10.0, 2.1 + 8.1])
    assert samples.tolist() == [2, 4, 2, 5, 4]
    assert policy.reached_ == pytest.approx([1.0, 0.6, 0.2])
    assert policy.train_cost_ == pytest.approx(cost.mean())


def test_same_plan_for_every_problem() -> None:
    matrix = _three()
    policy = TierCascade(0.0, tiers=[CHEAP, DEAR]).fit(matrix)
    batch = policy.decide_batch(matrix.problems)
    assert len(batch.decisions) == 1
    assert policy.decide({"dataset": "x", "problem_id": "new"}) == batch[0]


# -- the search --------------------------------------------------------------------------------


def test_search_trades_samples_for_price() -> None:
    matrix = _matrix({CHEAP: CHEAP_ANSWERS, DEAR: DEAR_ANSWERS})
    free = TierCascade(0.0).fit(matrix)
    # Disagreement of two samples catches problems 1 and 4: 4/5 right.
    assert [(s.config, s.samples) for s in free.steps_] == [(CHEAP, 2), (DEAR, 1)]
    assert free.train_accuracy_ == pytest.approx(0.8)
    dear = TierCascade(1.0).fit(matrix)
    # At a high price one cheap sample, escalating only when it has no answer, is worth more.
    assert [(s.config, s.samples) for s in dear.steps_] == [(CHEAP, 1), (DEAR, 1)]
    assert dear.train_cost_ < free.train_cost_


@pytest.mark.parametrize("price", [0.0, 0.01, 0.1, 1.0])
def test_search_beats_every_cheap_to_dear_cascade(price: float) -> None:
    matrix = _three()
    fitted = TierCascade(price).fit(matrix)
    value = fitted.train_accuracy_ - price * fitted.train_cost_
    rows = np.arange(matrix.n_problems)
    for size in (2, 3):
        for tiers in itertools.combinations([CHEAP, MID, DEAR], size):
            for ks in itertools.product((1, 2), repeat=size - 1):
                steps = [Step(c, k, escalate="disagree") for c, k in zip(tiers, ks, strict=False)]
                costs = [k * PER_SAMPLE[c] for c, k in zip(tiers, (*ks, 1), strict=True)]
                if costs != sorted(costs):
                    continue
                plan = Decision((*steps, Step(tiers[-1])))
                result = replay_decision(matrix, rows, plan)
                assert value >= result.accuracy - price * result.mean_cost - 1e-12
    costs = [s.samples * PER_SAMPLE[s.config] for s in fitted.steps_]
    assert costs == sorted(costs)  # never escalates to something cheaper


def test_single_sample_data_escalates_only_without_an_answer() -> None:
    # One recorded sample per config (RouteLLM, MMLU-Pro): disagreement cannot be observed.
    single = [[row[0]] for row in CHEAP_ANSWERS]
    matrix = _matrix({CHEAP: single, DEAR: [[0]] * 5})
    policy = TierCascade(0.0, samples=2).fit(matrix)
    assert [s.samples for s in policy.steps_] == [1, 1]
    steps, *_ = _replay_all(policy, matrix)
    assert steps.tolist() == [1, 1, 1, 2, 1]  # only problem 3 lacks an answer


def test_equal_prices_put_the_stronger_tier_first() -> None:
    # With equal per-call costs every order is cheap-to-dear; the search tries both.
    weak = [[0], [1], [1], [-1], [0]]
    strong = [[0], [0], [0], [1], [0]]
    matrix = _matrix({CHEAP: weak, DEAR: strong})
    flat = OutcomeMatrix(
        problems=matrix.problems,
        configs=matrix.configs,
        correct=matrix.correct,
        cost=np.ones_like(matrix.cost),
        tokens=matrix.tokens,
        answer=matrix.answer,
        unit="calls",
    )
    policy = TierCascade(0.0).fit(flat)
    assert policy.steps_[0].config == DEAR
    assert policy.train_accuracy_ == pytest.approx(0.8)


# -- bad input ---------------------------------------------------------------------------------


def test_unrecorded_tier_is_a_clear_error() -> None:
    with pytest.raises(PolicyError, match=r"cascade: configuration nope\|think\|none was not"):
        TierCascade(0.0, tiers=[Config("nope", "think"), DEAR]).fit(_three())


def test_too_few_samples_is_a_clear_error() -> None:
    with pytest.raises(PolicyError, match=r"has 3 recorded sample\(s\) .* draws up to 4"):
        TierCascade(0.0, tiers=[CHEAP, DEAR], samples=4).fit(_three())


def test_replay_on_data_missing_a_sample_fails() -> None:
    matrix = _three()
    policy = TierCascade(0.0, tiers=[CHEAP, DEAR], samples=2).fit(matrix)
    correct = matrix.correct.copy()
    correct[0, 0, 1] = np.nan  # problem 0 lost its second cheap sample
    holey = OutcomeMatrix(
        matrix.problems, matrix.configs, correct, matrix.cost, matrix.tokens, matrix.answer
    )
    with pytest.raises(ReplayError, match="has 2 recorded sample"):
        replay(holey, policy.decide_batch(holey.problems))


def test_unknown_costs_are_a_clear_error() -> None:
    matrix = _three()
    blind = OutcomeMatrix(
        matrix.problems,
        matrix.configs,
        matrix.correct,
        np.full_like(matrix.cost, np.nan),
        matrix.tokens,
        matrix.answer,
    )
    with pytest.raises(PolicyError, match="cost in tokens is unknown"):
        TierCascade(0.0, tiers=[CHEAP, DEAR]).fit(blind)
    with pytest.raises(PolicyError, match="at least two configurations"):
        TierCascade(0.0).fit(blind)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"price_per_unit": -1.0}, "price_per_unit"),
        ({"price_per_unit": float("nan")}, "price_per_unit"),
        ({"price_per_unit": 0.0, "samples": 0}, "samples"),
        ({"price_per_unit": 0.0, "escalate": "always"}, "escalation rule"),
        ({"price_per_unit": 0.0, "tiers": []}, "at least one"),
    ],
)
def test_bad_parameters(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TierCascade(**kwargs)  # type: ignore[arg-type]


def test_decide_before_fit() -> None:
    with pytest.raises(NotFittedError):
        TierCascade(0.0).decide_batch(_three().problems)


# -- policy files ------------------------------------------------------------------------------


@pytest.mark.parametrize("tiers", [None, [CHEAP, MID, DEAR]])
def test_save_and_load_give_identical_decisions(tmp_path: Path, tiers: list[Config] | None) -> None:
    matrix = _three()
    policy = TierCascade(0.05, tiers=tiers, samples=2, escalate="no_answer").fit(matrix)
    loaded = load_policy(save_policy(policy, tmp_path / "cascade.json"))
    assert isinstance(loaded, TierCascade)
    assert loaded.get_params() == policy.get_params()
    assert loaded.get_state() == policy.get_state()
    assert loaded.decide_batch(matrix.problems).decisions == (
        policy.decide_batch(matrix.problems).decisions
    )
    assert loaded.describe() == policy.describe()


# -- real data: MATH-500 -----------------------------------------------------------------------


@pytest.fixture
def math500(math500_matrix: OutcomeMatrix) -> OutcomeMatrix:
    return math500_matrix


def _halves(matrix: OutcomeMatrix) -> tuple[OutcomeMatrix, OutcomeMatrix]:
    order = np.random.default_rng(0).permutation(matrix.n_problems)
    half = matrix.n_problems // 2
    return matrix.subset(np.sort(order[:half])), matrix.subset(np.sort(order[half:]))


def _leader(answers: list[int]) -> tuple[int, int]:
    """Majority answer of a list of codes (ties: seen first) and its first slot; (-1, 0) if
    no sample answered."""
    valid = [a for a in answers if a >= 0]
    if not valid:
        return -1, 0
    leader = max(dict.fromkeys(valid), key=valid.count)  # max keeps the first of equal counts
    return leader, answers.index(leader)


def _brute_cascade(m: OutcomeMatrix, i: int, steps: tuple[Step, ...]) -> tuple[float, float]:
    """Problem i under a cascade, one sample at a time in recorded order, in plain Python."""
    used: dict[int, int] = {}
    cost = 0.0
    correct = 0.0
    for k, step in enumerate(steps):
        c = list(m.configs).index(step.config)
        slots = range(used.get(c, 0), used.get(c, 0) + step.samples)
        used[c] = slots.stop
        answers = [int(m.answer[i, c, s]) for s in slots]
        cost += sum(float(m.cost[i, c, s]) for s in slots)
        leader, slot = _leader(answers)
        correct = float(m.correct[i, c, slots[slot]])
        if k == len(steps) - 1 or step.escalate == "never":
            break
        if step.escalate == "no_answer":
            go_on = leader < 0
        else:  # disagree
            go_on = leader < 0 or any(a != leader for a in answers)
        if not go_on:
            break
    return correct, cost


@pytest.mark.parametrize("price", [0.0, 1e-5, 1e-4])
def test_math500_held_out_half(math500: OutcomeMatrix, price: float) -> None:
    train, test = _halves(math500)
    policy = TierCascade(price).fit(train)
    result = replay(test, policy.decide_batch(test.problems))
    brute = np.array([_brute_cascade(test, i, policy.steps_) for i in range(test.n_problems)])
    assert result.correct.tolist() == brute[:, 0].tolist()
    assert result.cost == pytest.approx(brute[:, 1], rel=1e-12)
    assert 0.5 < result.accuracy <= 1.0
    assert 2 <= len(policy.steps_) <= 3
    if price >= 1e-4:  # a price that makes cost matter: far cheaper than its last tier
        last = Uniform(policy.steps_[-1].config).fit(train)
        always = replay(test, last.decide_batch(test.problems))
        assert result.mean_cost < 0.5 * always.mean_cost


def test_math500_escalation_and_costs_match_the_recorded_samples(math500: OutcomeMatrix) -> None:
    cheap = Config("qwen25math-1.5b", "no-think", 4096)
    dear = Config("deepscaler-1.5b", "think", 16384)
    train, test = _halves(math500)
    policy = TierCascade(0.0, tiers=[cheap, dear], samples=2).fit(train)
    result = replay(test, policy.decide_batch(test.problems))
    c, d = test.config_index(cheap), test.config_index(dear)
    first_two = test.answer[:, c, :2]
    unsure = (first_two[:, 0] != first_two[:, 1]) | (first_two < 0).any(axis=1)
    assert (result.steps == 2).tolist() == unsure.tolist()
    expected = test.cost[:, c, :2].sum(axis=1) + np.where(unsure, test.cost[:, d, 0], 0.0)
    assert result.cost == pytest.approx(expected)
    assert 0 < unsure.mean() < 0.5
