"""ThinkRouter: adaptive restricted to a no-think and a think config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _matrices import held_out_direct

from ponder.errors import InputError
from ponder.evaluate import OutcomeMatrix, replay
from ponder.policies import Config, PolicyError, load_policy, save_policy
from ponder.policies.adaptive import DifficultyAdaptive
from ponder.policies.router import ThinkRouter

FAST = Config("m", "no-think", 1024)
FAST_DEAR = Config("m", "no-think", 4096)  # costlier no-think: not the default
THINK_BEST = Config("m", "think", 8192)
THINK_WEAK = Config("m", "think", 2048)


def _matrix(n: int = 30) -> OutcomeMatrix:
    """Easy (level 1): no-think suffices. Hard (level 4): only the big think config solves."""
    level = np.where(np.arange(n) % 3 == 0, 4.0, 1.0)
    hard = level == 4
    configs = (FAST, FAST_DEAR, THINK_WEAK, THINK_BEST)
    correct = np.ones((n, 4, 2))
    correct[hard, 0:3, :] = 0.0
    correct[hard, 3, 1] = 0.0
    cost = np.empty((n, 4, 2))
    cost[:] = np.array([200.0, 400.0, 1500.0, 5000.0])[None, :, None]
    problems = pd.DataFrame(
        {
            "dataset": "toy",
            "problem_id": [f"q{i}" for i in range(n)],
            "level": level,
            "subject": "algebra",
            "text": ["long hard proof" if h else "add numbers" for h in hard],
        }
    )
    answer = np.where(correct == 1, 0, 1).astype(np.int32)
    return OutcomeMatrix(problems, configs, correct, cost, cost.copy(), answer)


def test_default_pair_and_routing() -> None:
    m = _matrix()
    router = ThinkRouter(1e-5).fit(m)
    assert isinstance(router, DifficultyAdaptive)
    assert set(router.configs_) == {FAST, THINK_BEST}
    batch = router.decide_batch(m.problems)
    chosen = np.array([batch[i].steps[0].config.mode for i in range(len(batch))])
    hard = m.problems["level"].to_numpy() == 4
    assert (chosen[hard] == "think").all() and (chosen[~hard] == "no-think").all()
    assert {d.reason for d in batch.decisions} == {"router"}
    result = replay(m, batch)
    # Scored over both recorded samples: easy two thirds 1, hard third THINK_BEST's 1 of 2.
    assert result.accuracy == pytest.approx(2 / 3 * 1 + 1 / 3 * 0.5)
    # Expensive thinking: route everything to no-think.
    cheap = ThinkRouter(1.0).fit(m).decide_batch(m.problems)
    assert {cheap[i].steps[0].config for i in range(len(cheap))} == {FAST}


def test_explicit_pair_and_round_trip(tmp_path: Path) -> None:
    m = _matrix()
    router = ThinkRouter(
        1e-5,
        think=THINK_WEAK.to_dict(),
        no_think={"model": "m", "mode": "no-think", "budget": 4096},
    ).fit(m)
    assert set(router.configs_) == {FAST_DEAR, THINK_WEAK}
    loaded = load_policy(save_policy(router, tmp_path / "r.json"))
    assert isinstance(loaded, ThinkRouter) and loaded.think == THINK_WEAK
    a, b = router.decide_batch(m.problems), loaded.decide_batch(m.problems)
    assert a.decisions == b.decisions
    np.testing.assert_array_equal(a.index, b.index)


def test_bad_input() -> None:
    m = _matrix()
    with pytest.raises(InputError, match="was not recorded"):
        ThinkRouter(1e-5, think=Config("m", "think", 3)).fit(m)
    cot = (Config("m", "cot", 1024), Config("m", "cot", 4096), THINK_WEAK, THINK_BEST)
    no_plain = OutcomeMatrix(m.problems, cot, m.correct, m.cost, m.tokens, m.answer)
    with pytest.raises(PolicyError, match="pass no_think="):
        ThinkRouter(1e-5).fit(no_plain)
    assert ThinkRouter(1e-5, no_think=cot[0]).fit(no_plain).configs_ == (cot[0], THINK_BEST)
    with pytest.raises(PolicyError, match="same configuration"):
        ThinkRouter(1e-5, think=FAST, no_think=FAST).fit(m)
    with pytest.raises(PolicyError, match="at least 2 training problems"):
        ThinkRouter(1e-5).fit(m.subset([3]))


@pytest.fixture(scope="module")
def halves(math500_matrix: OutcomeMatrix) -> tuple[OutcomeMatrix, OutcomeMatrix]:
    m = math500_matrix  # tests/conftest.py: the recorded MATH-500 sweep, imported once
    order = np.random.default_rng(1).permutation(m.n_problems)
    return m.subset(np.sort(order[:50])), m.subset(np.sort(order[50:]))


def test_real_data_router(halves: tuple[OutcomeMatrix, OutcomeMatrix]) -> None:
    train, test = halves
    shares = []
    for price in (0.0, 3e-5, 1e-4, 1e-3):
        router = ThinkRouter(price).fit(train)
        assert router.configs_[0].mode == "no-think" and router.configs_[1].mode == "think"
        batch = router.decide_batch(test.problems)
        result = replay(test, batch)
        choice, _ = router.predict(test.problems)
        routed = [router.configs_[c] for c in choice.tolist()]
        assert [batch[i].steps[0].config for i in range(len(batch))] == routed
        accuracy, mean_cost = held_out_direct(test, routed)
        assert result.accuracy == pytest.approx(accuracy, abs=1e-12)
        assert result.mean_cost == pytest.approx(mean_cost, rel=1e-12)
        shares.append(float(np.mean(choice == 1)))  # configs_ is (no_think, think)
        assert {d.steps[0].config for d in batch.decisions} == {
            router.configs_[c] for c in np.unique(choice).tolist()
        }
    assert shares == sorted(shares, reverse=True)
    assert shares[0] == 1.0 and shares[-1] == 0.0
