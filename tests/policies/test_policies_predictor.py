"""CorrectnessPredictor: per-config logistic regressions, base-rate fallback, costs, state."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ponder.evaluate import OutcomeMatrix
from ponder.policies import Config, PolicyError
from ponder.policies.predictor import CorrectnessPredictor, calibration_error, fit_predictor

CHEAP = Config("small", "no-think", 512)
DEAR = Config("big", "think", 4096)


def _matrix(n: int = 40, seed: int = 0) -> OutcomeMatrix:
    """Half level 1 (both configs right), half level 5 (cheap wrong, dear right 2 of 3)."""
    rng = np.random.default_rng(seed)
    level = np.where(np.arange(n) % 2 == 0, 1.0, 5.0)
    hard = level == 5
    correct = np.ones((n, 2, 3))
    correct[hard, 0, :] = 0.0
    correct[hard, 1, 0] = 0.0
    cost = np.empty((n, 2, 3))
    cost[:, 0, :] = np.where(hard, 150.0, 50.0)[:, None]
    cost[:, 1, :] = np.where(hard, 3000.0, 1000.0)[:, None]
    problems = pd.DataFrame(
        {
            "dataset": "toy",
            "problem_id": [f"p{i:02d}" for i in range(n)],
            "level": level,
            "subject": rng.choice(["algebra", "geometry"], n),
            "text": [("hard " if h else "easy ") + "question" for h in hard],
        }
    )
    answer = np.where(correct == 1, 0, 1).astype(np.int32)
    return OutcomeMatrix(problems, (CHEAP, DEAR), correct, cost, cost.copy(), answer)


def test_learns_difficulty_per_config() -> None:
    m = _matrix()
    predictor = CorrectnessPredictor().fit(m)
    p = predictor.predict_proba(m.problems)
    easy, hard = m.problems["level"] == 1, m.problems["level"] == 5
    assert p.shape == (m.n_problems, 2)
    assert p[easy, 0].min() > 0.8 and p[hard, 0].max() < 0.2
    assert p[hard, 1].mean() == pytest.approx(2 / 3, abs=0.1)
    assert set(predictor.c_[~np.isnan(predictor.c_)]) <= set(predictor.c_grid)


def test_single_class_config_predicts_its_base_rate() -> None:
    m = _matrix()
    correct = m.correct.copy()
    correct[:, 1, :] = 1.0  # the dear config is always right: nothing to learn
    m = OutcomeMatrix(m.problems, m.configs, correct, m.cost, m.tokens, m.answer)
    predictor = CorrectnessPredictor().fit(m)
    assert predictor.constant_[1] == 1.0
    np.testing.assert_array_equal(predictor.predict_proba(m.problems)[:, 1], 1.0)


def test_expected_cost_per_level_with_overall_fallback() -> None:
    m = _matrix()
    predictor = CorrectnessPredictor().fit(m)
    new = pd.DataFrame({"dataset": ["toy"] * 3, "problem_id": ["a", "b", "c"]})
    new["level"] = [1.0, 5.0, np.nan]
    cost = predictor.expected_cost(new)
    np.testing.assert_allclose(cost[0], [50.0, 1000.0])
    np.testing.assert_allclose(cost[1], [150.0, 3000.0])
    np.testing.assert_allclose(cost[2], [100.0, 2000.0])  # unknown level: overall mean
    flat = CorrectnessPredictor(per_level_cost=False).fit(m)
    np.testing.assert_allclose(flat.expected_cost(new), [[100.0, 2000.0]] * 3)


def test_state_round_trip_gives_identical_predictions() -> None:
    m = _matrix()
    predictor = CorrectnessPredictor().fit(m)
    state = json.loads(json.dumps(predictor.get_state()))
    restored = CorrectnessPredictor.from_state(state)
    np.testing.assert_array_equal(
        restored.predict_proba(m.problems), predictor.predict_proba(m.problems)
    )
    np.testing.assert_array_equal(
        restored.expected_cost(m.problems), predictor.expected_cost(m.problems)
    )


def test_fit_predictor_reuses_an_identical_fit() -> None:
    m = _matrix()
    first = fit_predictor(m, [CHEAP, DEAR])
    assert fit_predictor(m, [CHEAP, DEAR]) is first
    assert fit_predictor(m, [DEAR]) is not first
    other = _matrix(seed=1)  # same outcomes, different subjects: a different fit
    assert fit_predictor(other, [CHEAP, DEAR]) is not first


def test_calibration_error() -> None:
    assert calibration_error(np.array([0.2, 0.2, 0.9]), np.array([0.0, 1.0, 1.0])) == (
        pytest.approx((2 * 0.3 + 0.1) / 3)
    )
    assert calibration_error(np.array([0.0, 1.0]), np.array([0.0, 1.0])) == 0.0
    assert np.isnan(calibration_error(np.array([np.nan]), np.array([1.0])))


def test_too_little_training_data_is_refused() -> None:
    m = _matrix()
    with pytest.raises(PolicyError, match="at least 2"):
        CorrectnessPredictor().fit(m.subset([0]))
    with pytest.raises(PolicyError, match="at least 2"):
        CorrectnessPredictor().fit(m.subset([]))
    cost = m.cost.copy()
    cost[:, 1] = np.nan
    no_cost = OutcomeMatrix(m.problems, m.configs, m.correct, cost, cost, m.answer)
    with pytest.raises(PolicyError, match="cost in tokens is unknown"):
        CorrectnessPredictor().fit(no_cost)


def test_per_config_cache_gives_exactly_the_fresh_fit() -> None:
    """Fits shared across config sets (families) equal fits made from scratch."""
    from ponder.policies import predictor as module

    m = _matrix(60, seed=3)
    rng = np.random.default_rng(1)
    noisy = m.correct.copy()
    noisy[rng.uniform(size=noisy.shape) < 0.2] = 0.0  # both classes in both configs
    m = OutcomeMatrix(m.problems, m.configs, noisy, m.cost, m.tokens, m.answer)
    module.clear_caches()
    both = CorrectnessPredictor().fit(m, [CHEAP, DEAR])
    assert len(module._LOSSES) == 2  # one inner CV per configuration
    alone = CorrectnessPredictor().fit(m, [DEAR])  # reuses DEAR's inner CV
    assert len(module._LOSSES) == 2
    module.clear_caches()
    fresh = CorrectnessPredictor().fit(m, [DEAR])
    np.testing.assert_array_equal(alone.coef_, fresh.coef_)
    np.testing.assert_array_equal(alone.intercept_, fresh.intercept_)
    np.testing.assert_array_equal(alone.c_, fresh.c_)
    module.clear_caches()
    again = CorrectnessPredictor().fit(m, [CHEAP, DEAR])
    np.testing.assert_array_equal(both.coef_, again.coef_)
    np.testing.assert_array_equal(both.predict_proba(m.problems), again.predict_proba(m.problems))


def test_inner_cv_uses_a_seeded_subsample_on_large_data() -> None:
    """C is chosen on at most max_cv_problems problems; below the cap nothing changes."""
    from ponder.policies import predictor as module
    from ponder.policies.features import ProblemFeaturizer

    m = _matrix(60, seed=3)
    rng = np.random.default_rng(2)
    noisy = m.correct.copy()
    noisy[rng.uniform(size=noisy.shape) < 0.25] = 0.0
    m = OutcomeMatrix(m.problems, m.configs, noisy, m.cost, m.tokens, m.answer)
    module.clear_caches()
    capped = CorrectnessPredictor(max_cv_problems=30).fit(m, [DEAR])
    (losses,) = module._LOSSES.values()
    # By hand: the first 30 problems of the seeded shuffle, in their usual inner folds.
    order = np.random.default_rng(0).permutation(60)
    keep = np.flatnonzero(order < 30)
    features = ProblemFeaturizer(2**12).fit(m.problems).transform(m.problems)
    hits = (noisy[:, 1] == 1).sum(axis=1)
    by_hand = CorrectnessPredictor()._cv_losses(features, hits, 3 - hits, keep, order[keep] % 3)
    np.testing.assert_allclose(losses, by_hand)
    assert capped.c_[0] == CorrectnessPredictor().c_grid[int(np.argmin(by_hand))]
    module.clear_caches()
    uncapped = CorrectnessPredictor(max_cv_problems=60).fit(m, [DEAR])
    module.clear_caches()
    default = CorrectnessPredictor().fit(m, [DEAR])
    np.testing.assert_array_equal(uncapped.coef_, default.coef_)
