"""BudgetAllocator: a batch's budget spent where predicted gains per cost are largest."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _matrices import held_out_direct

from ponder.errors import InputError
from ponder.evaluate import OutcomeMatrix, replay
from ponder.policies import Config, PolicyError, load_policy, save_policy
from ponder.policies.allocation import BudgetAllocator, greedy_allocate, upper_hulls

SMALL = Config("m", "think", 1000)
MID = Config("m", "think", 2000)
LARGE = Config("m", "think", 4000)


def _brute_force(cost: np.ndarray, p: np.ndarray, budget: float) -> float:
    best = -np.inf
    rows = np.arange(len(cost))
    for combo in itertools.product(range(cost.shape[1]), repeat=len(cost)):
        pick = np.array(combo)
        if cost[rows, pick].sum() <= budget:
            best = max(best, float(p[rows, pick].sum()))
    return best


def test_hull_drops_points_below_it() -> None:
    cost = np.array([[1.0, 2.0, 3.0, 4.0]])
    p = np.array([[0.1, 0.2, 0.8, 0.85]])  # (2, 0.2) lies below the chord from 1 to 3
    hull, start = upper_hulls(cost, p)
    assert start[0] == 0
    assert hull[0].tolist() == [0, 2, 3, -1]


def test_greedy_is_optimal_on_a_small_instance() -> None:
    # Greedy on the hulls is exact here (concave rows, costs in steps of the smallest
    # upgrade); in general it is within one upgrade's gain of optimal (next test).
    cost = np.tile([1000.0, 2000.0, 4000.0], (3, 1))
    p = np.array([[0.9, 0.95, 0.97], [0.2, 0.7, 0.9], [0.1, 0.5, 0.8]])  # concave rows
    for budget in np.arange(3000.0, 12001.0, 1000.0):
        choice = greedy_allocate(cost, p, budget)
        rows = np.arange(3)
        assert cost[rows, choice].sum() <= budget
        assert p[rows, choice].sum() == pytest.approx(_brute_force(cost, p, budget))


def test_greedy_on_random_instances_is_within_one_upgrade_of_optimal() -> None:
    rng = np.random.default_rng(0)
    for _ in range(60):
        cost = np.sort(rng.choice([1.0, 2.0, 3.0, 5.0, 8.0], size=(4, 3)), axis=1)
        p = np.sort(rng.uniform(size=(4, 3)), axis=1)
        budget = float(cost[:, 0].sum() + rng.uniform(0, cost.sum() - cost[:, 0].sum()))
        choice = greedy_allocate(cost, p, budget)
        rows = np.arange(4)
        assert cost[rows, choice].sum() <= budget
        optimum = _brute_force(cost, p, budget)
        assert p[rows, choice].sum() <= optimum + 1e-12
        assert p[rows, choice].sum() >= optimum - (p.max(axis=1) - p.min(axis=1)).max() - 1e-12


def test_budget_below_the_cheapest_assignment() -> None:
    cost = np.tile([1000.0, 2000.0], (3, 1))
    with pytest.raises(PolicyError, match="a budget that no configuration meets"):
        greedy_allocate(cost, np.full((3, 2), 0.5), 2999.0)
    assert greedy_allocate(cost, np.tile([0.1, 0.9], (3, 1)), 3000.0).tolist() == [0, 0, 0]


def _matrix(n: int = 24) -> OutcomeMatrix:
    """Three caps; harder problems (level 1..3) need larger caps to be solved."""
    level = 1.0 + np.arange(n) % 3
    configs = (SMALL, MID, LARGE)
    correct = np.zeros((n, 3, 2))
    for c, solves_up_to in enumerate((1.0, 2.0, 3.0)):
        correct[level <= solves_up_to, c, :] = 1.0
    correct[:, :, 1] = correct[:, :, 0]
    correct[0, 0, 1] = 0.0  # both classes for every config
    correct[2, 2, 1] = 0.0
    caps = np.array([1000.0, 2000.0, 4000.0])
    cost = np.minimum(caps[None, :, None], 300.0 * level[:, None, None] * 2 ** np.arange(2))
    problems = pd.DataFrame(
        {
            "dataset": "toy",
            "problem_id": [f"r{i}" for i in range(n)],
            "level": level,
            "subject": None,
            "text": None,
        }
    )
    answer = np.where(correct == 1, 0, 1).astype(np.int32)
    return OutcomeMatrix(problems, configs, correct, cost, cost.copy(), answer)


def test_allocator_spends_the_batch_budget_on_hard_requests() -> None:
    m = _matrix()
    n = m.n_problems
    policy = BudgetAllocator(budget_per_request=2000.0).fit(m)
    allocation = policy.allocate(m.problems)
    assert allocation.budget == 2000.0 * n
    assert allocation.total <= allocation.budget
    chosen = np.array([policy.configs_[c].budget for c in allocation.choice])
    level = m.problems["level"].to_numpy()
    assert np.mean(chosen[level == 1] == 1000) >= 0.8
    assert chosen[level == 3].mean() > chosen[level == 2].mean() > chosen[level == 1].mean()
    # A total budget for the batch: the same as per-request x size.
    total = BudgetAllocator(total_budget=2000.0 * n).fit(m).allocate(m.problems)
    np.testing.assert_array_equal(total.choice, allocation.choice)
    # The budget is for exactly the given batch: half the batch, half the total.
    half = policy.allocate(m.problems.iloc[: n // 2])
    assert half.budget == 1000.0 * n and half.total <= half.budget
    # Replayed output tokens can never exceed reserved caps.
    result = replay(m, policy.decide_batch(m.problems))
    assert result.cost.sum() <= allocation.total


def test_expected_cost_basis_and_round_trip(tmp_path: Path) -> None:
    m = _matrix()
    policy = BudgetAllocator(total_budget=900.0 * m.n_problems, cost_basis="expected").fit(m)
    allocation = policy.allocate(m.problems)
    assert allocation.total <= allocation.budget
    np.testing.assert_allclose(
        allocation.reserved,
        policy.predictor_.expected_cost(m.problems)[np.arange(m.n_problems), allocation.choice],
    )
    for p in (policy, BudgetAllocator(budget_per_request=1500.0).fit(m)):
        loaded = load_policy(save_policy(p, tmp_path / f"{p.cost_basis}.json"))
        a, b = p.decide_batch(m.problems), loaded.decide_batch(m.problems)
        assert a.decisions == b.decisions
        np.testing.assert_array_equal(a.index, b.index)


def test_bad_input() -> None:
    m = _matrix()
    with pytest.raises(PolicyError, match="exactly one"):
        BudgetAllocator()
    with pytest.raises(PolicyError, match="exactly one"):
        BudgetAllocator(1.0, budget_per_request=1.0)
    with pytest.raises(PolicyError, match="cost_basis"):
        BudgetAllocator(1.0, cost_basis="guess")  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match="a budget that no configuration meets"):
        BudgetAllocator(budget_per_request=999.0).fit(m).decide_batch(m.problems)
    with pytest.raises(InputError, match="was not recorded"):
        BudgetAllocator(1e6, configs=[Config("x", "think", 1)]).fit(m)
    with pytest.raises(PolicyError, match="needs a token cap"):
        BudgetAllocator(1e6, configs=[Config("m", "think", None)]).fit(
            OutcomeMatrix(
                m.problems,
                (Config("m", "think", None), MID, LARGE),
                m.correct,
                m.cost,
                m.tokens,
                m.answer,
            )
        )
    with pytest.raises(PolicyError, match="at least 2 training problems"):
        BudgetAllocator(1e6).fit(m.subset([0]))
    calls = OutcomeMatrix(m.problems, m.configs, m.correct, m.cost, m.tokens, m.answer, "calls")
    with pytest.raises(PolicyError, match="reserves output tokens"):
        BudgetAllocator(1e6).fit(calls)


@pytest.fixture(scope="module")
def halves(math500_matrix: OutcomeMatrix) -> tuple[OutcomeMatrix, OutcomeMatrix]:
    m = math500_matrix  # tests/conftest.py: the recorded MATH-500 sweep, imported once
    order = np.random.default_rng(2).permutation(m.n_problems)
    return m.subset(np.sort(order[:50])), m.subset(np.sort(order[50:]))


def test_real_data_budget_is_respected(halves: tuple[OutcomeMatrix, OutcomeMatrix]) -> None:
    train, test = halves
    accuracies = []
    for per_request in (4096.0, 6000.0, 8192.0, 16384.0):
        policy = BudgetAllocator(budget_per_request=per_request).fit(train)
        allocation = policy.allocate(test.problems)
        budget = per_request * test.n_problems
        assert allocation.total <= budget
        allocated = [policy.configs_[c] for c in allocation.choice.tolist()]
        # Reserved tokens are the allocated configurations' caps, looked up directly.
        caps = [float(c.budget or 0) for c in allocated]
        np.testing.assert_array_equal(allocation.reserved, caps)
        batch = policy.decide_batch(test.problems)
        assert [batch[i].steps[0].config for i in range(len(batch))] == allocated
        result = replay(test, batch)
        accuracy, mean_cost = held_out_direct(test, allocated)
        assert result.accuracy == pytest.approx(accuracy, abs=1e-12)
        assert result.mean_cost == pytest.approx(mean_cost, rel=1e-12)
        assert result.cost.sum() <= budget  # realized output tokens, not just reserved
        accuracies.append(result.accuracy)
    assert accuracies[-1] > accuracies[0]
    with pytest.raises(PolicyError, match="a budget that no configuration meets"):
        BudgetAllocator(budget_per_request=4000.0).fit(train).decide_batch(test.problems)
    expected = BudgetAllocator(budget_per_request=2000.0, cost_basis="expected").fit(train)
    allocation = expected.allocate(test.problems)
    assert allocation.total <= 2000.0 * test.n_problems
    spent = replay(test, expected.decide_batch(test.problems))
    direct = held_out_direct(test, [expected.configs_[c] for c in allocation.choice.tolist()])
    assert (spent.accuracy, spent.mean_cost) == pytest.approx(direct, rel=1e-12)
