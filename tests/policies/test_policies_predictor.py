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
