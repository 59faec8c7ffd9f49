"""DifficultyAdaptive: cheap config for easy problems, expensive for hard ones, by price."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _matrices import held_out_direct

from ponder.errors import InputError
from ponder.evaluate import OutcomeMatrix, replay
from ponder.policies import Config, PolicyError, load_policy, save_policy, uniform_family
from ponder.policies.adaptive import DifficultyAdaptive, frontier_configs
from ponder.policies.serialization import registered

CHEAP = Config("small", "no-think", 512)
DEAR = Config("big", "think", 4096)
WORSE = Config("big", "think", 1024)  # dominated: less accurate than CHEAP, costlier


def _matrix(n: int = 40) -> OutcomeMatrix:
    """Level 1: CHEAP and DEAR right. Level 5: CHEAP wrong, DEAR right 2 of 3; WORSE poor."""
    level = np.where(np.arange(n) % 2 == 0, 1.0, 5.0)
    hard = level == 5
    correct = np.ones((n, 3, 3))
    correct[hard, 0, :] = 0.0
    correct[hard, 1, 2] = 0.0
    correct[:, 2, :] = 0.0
    correct[~hard, 2, 0] = 1.0
    cost = np.empty((n, 3, 3))
    cost[:, 0, :] = 100.0
    cost[:, 1, :] = 2000.0
    cost[:, 2, :] = 500.0
    problems = pd.DataFrame(
        {
            "dataset": "toy",
            "problem_id": [f"p{i:02d}" for i in range(n)],
            "level": level,
            "subject": None,
            "text": None,
        }
    )
    answer = np.where(correct == 1, 0, 1).astype(np.int32)
    return OutcomeMatrix(problems, (CHEAP, DEAR, WORSE), correct, cost, cost.copy(), answer)


def test_cheap_for_easy_expensive_for_hard() -> None:
    m = _matrix()
    policy = DifficultyAdaptive(price_per_unit=1e-4).fit(m)
    assert set(policy.configs_) == {CHEAP, DEAR}  # WORSE is dominated on training data
    batch = policy.decide_batch(m.problems)
    chosen = [batch[i].steps[0].config for i in range(len(batch))]
    easy = m.problems["level"].to_numpy() == 1
    assert all(c == CHEAP for c, e in zip(chosen, easy, strict=True) if e)
    assert all(c == DEAR for c, e in zip(chosen, easy, strict=True) if not e)
    choice, p = policy.predict(m.problems)
    assert np.all((p > 0) & (p < 1))
    assert [policy.configs_[c] for c in choice] == chosen
    result = replay(m, batch)
    # Scored over every recorded sample: easy half 1, hard half DEAR's 2 of 3.
    assert result.accuracy == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert result.mean_cost == pytest.approx(1050.0)


def test_price_sweeps_from_accurate_to_cheap() -> None:
    m = _matrix()
    hard = m.problems["level"].to_numpy() == 5
    free = DifficultyAdaptive(0.0).fit(m).decide_batch(m.problems)
    assert {free[i].steps[0].config for i in np.flatnonzero(hard).tolist()} == {DEAR}
    dear = DifficultyAdaptive(1.0).fit(m).decide_batch(m.problems)
    assert {dear[i].steps[0].config for i in range(len(dear))} == {CHEAP}
    # Equal predictions and costs: ties go to the cheaper config.
    same = OutcomeMatrix(m.problems, m.configs, np.ones_like(m.correct), m.cost, m.tokens, m.answer)
    tied = DifficultyAdaptive(0.0, configs=[DEAR, CHEAP]).fit(same).decide_batch(m.problems)
    assert {tied[i].steps[0].config for i in range(len(tied))} == {CHEAP}


def test_one_request_and_only_chosen_plans() -> None:
    m = _matrix()
    policy = DifficultyAdaptive(price_per_unit=1e-4).fit(m)
    hard = {"dataset": "toy", "problem_id": "new", "level": 5, "text": "a new question"}
    assert policy.decide(hard).steps[0].config == DEAR
    assert policy.decide({"dataset": "toy", "problem_id": "x", "level": 1}).steps[0].config == CHEAP
    easy_only = policy.decide_batch(m.problems[m.problems["level"] == 1])
    assert [d.steps[0].config for d in easy_only.decisions] == [CHEAP]
    assert len(policy.decide_batch(m.problems.iloc[:0])) == 0


def test_explicit_configs_and_samples() -> None:
    m = _matrix()
    policy = DifficultyAdaptive(1e-4, configs=[{"model": "big", "mode": "think", "budget": 4096}])
    batch = policy.fit(m).decide_batch(m.problems)
    assert len(batch.decisions) == 1 and batch.decisions[0].steps[0].config == DEAR
    three = DifficultyAdaptive(1e-5, samples=3).fit(m).decide_batch(m.problems)
    assert {d.steps[0].samples for d in three.decisions} == {3}
    assert frontier_configs(m) == [CHEAP, DEAR]


def test_save_load_round_trip(tmp_path: Path) -> None:
    m = _matrix()
    policy = DifficultyAdaptive(1e-4).fit(m)
    assert registered()["adaptive"] is DifficultyAdaptive
    loaded = load_policy(save_policy(policy, tmp_path / "a.json"))
    assert isinstance(loaded, DifficultyAdaptive)
    a, b = policy.decide_batch(m.problems), loaded.decide_batch(m.problems)
    assert a.decisions == b.decisions
    np.testing.assert_array_equal(a.index, b.index)
    np.testing.assert_array_equal(policy.predict(m.problems)[1], loaded.predict(m.problems)[1])


def test_bad_input() -> None:
    m = _matrix()
    with pytest.raises(InputError, match="was not recorded"):
        DifficultyAdaptive(1e-4, configs=[Config("nope", "think", 1)]).fit(m)
    with pytest.raises(PolicyError, match="at least 2 training problems"):
        DifficultyAdaptive(1e-4).fit(m.subset([0]))
    with pytest.raises(PolicyError, match="at least 2 training problems"):
        DifficultyAdaptive(1e-4).fit(m.subset([]))
    with pytest.raises(PolicyError, match="price_per_unit"):
        DifficultyAdaptive(-1.0)
    with pytest.raises(PolicyError, match="samples"):
        DifficultyAdaptive(1.0, samples=0)
    with pytest.raises(PolicyError, match="not fitted"):
        DifficultyAdaptive(1.0).decide_batch(m.problems)


# -- real data: MATH-500 subset of the Reasoning Budget Sweep ---------------------------------


@pytest.fixture(scope="module")
def halves(math500_matrix: OutcomeMatrix) -> tuple[OutcomeMatrix, OutcomeMatrix]:
    m = math500_matrix  # tests/conftest.py: the recorded MATH-500 sweep, imported once
    order = np.random.default_rng(0).permutation(m.n_problems)
    return m.subset(np.sort(order[: m.n_problems // 2])), m.subset(np.sort(order[50:]))


def test_real_data_held_out_curve(halves: tuple[OutcomeMatrix, OutcomeMatrix]) -> None:
    train, test = halves
    best = max(
        (replay(test, u.decide_batch(test.problems)) for u in uniform_family(train)),
        key=lambda r: r.accuracy,
    )
    points = []
    for price in (0.0, 1e-5, 5e-5, 1.5e-4):
        policy = DifficultyAdaptive(price).fit(train)
        # Decisions come from the problems frame alone, one row at a time.
        only_info = test.problems[["dataset", "problem_id", "level", "subject", "text"]]
        batch = policy.decide_batch(only_info)
        flipped = policy.decide_batch(only_info.iloc[::-1])
        assert [batch[i] for i in range(len(batch))][::-1] == [
            flipped[i] for i in range(len(flipped))
        ]
        result = replay(test, batch)
        choice, p = policy.predict(test.problems)
        chosen = [batch[i].steps[0].config for i in range(len(batch))]
        assert chosen == [policy.configs_[c] for c in choice.tolist()]
        assert all(len(batch[i].steps) == 1 for i in range(len(batch)))
        accuracy, mean_cost = held_out_direct(test, chosen)
        assert result.accuracy == pytest.approx(accuracy, abs=1e-12)
        assert result.mean_cost == pytest.approx(mean_cost, rel=1e-12)
        assert np.all((p >= 0) & (p <= 1))
        points.append((result.accuracy, result.mean_cost))
    costs = [c for _, c in points]
    assert costs == sorted(costs, reverse=True)  # a higher price never costs more here
    assert points[0][0] >= best.accuracy - 0.1
    assert points[-1][1] < 0.5 * points[0][1]
