"""Replay, protocols and metrics on small hand-built outcome matrices."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ponder.errors import InputError
from ponder.evaluate import CostModel, OutcomeMatrix, Price, ReplayError, replay, replay_decision
from ponder.evaluate.metrics import summarize
from ponder.evaluate.protocol import Candidate, cross_validate, fold_assignment, transfer
from ponder.policies import (
    Config,
    Decision,
    DecisionBatch,
    Oracle,
    PolicyError,
    Step,
    StopRule,
    Uniform,
    load_policy,
    save_policy,
    uniform_family,
)
from ponder.policies.predictor import calibration_error

CHEAP = Config("small", "no-think", 512)
DEAR = Config("big", "think", 4096)


def _matrix(
    correct: np.ndarray, answer: np.ndarray, cost: np.ndarray, n_datasets: int = 1
) -> OutcomeMatrix:
    n = correct.shape[0]
    problems = pd.DataFrame(
        {
            "dataset": [f"d{i % n_datasets}" for i in range(n)],
            "problem_id": [f"p{i}" for i in range(n)],
            "level": np.nan,
            "subject": None,
            "text": None,
        }
    )
    return OutcomeMatrix(
        problems=problems,
        configs=(CHEAP, DEAR),
        correct=correct.astype(float),
        cost=cost.astype(float),
        tokens=cost.astype(float),
        answer=answer.astype(np.int32),
    )


def _two_config_matrix() -> OutcomeMatrix:
    # 4 problems x 2 configs x 3 samples. Answer code 0 is right, others wrong.
    answer = np.array(
        [
            [[0, 0, 0], [0, 0, 0]],  # easy: cheap always right
            [[0, 1, 0], [0, 0, 0]],  # cheap disagrees, majority right
            [[1, 2, 2], [0, 0, 1]],  # cheap wrong and split, big right by majority
            [[-1, 1, 1], [1, 1, 1]],  # nobody right; cheap first sample has no answer
        ]
    )
    correct = (answer == 0).astype(float)
    cost = np.zeros(answer.shape)
    cost[:, 0, :] = 100
    cost[:, 1, :] = 1000
    return _matrix(correct, answer, cost)


def test_replay_single_and_majority() -> None:
    m = _two_config_matrix()
    rows = np.arange(4)
    one = replay_decision(m, rows, Decision((Step(CHEAP),)))
    assert one.correct.tolist() == [1, 1, 0, 0]
    assert one.cost.tolist() == [100] * 4
    assert one.answered.tolist() == [True, True, True, False]
    vote = replay_decision(m, rows, Decision((Step(CHEAP, samples=3),)))
    assert vote.correct.tolist() == [1, 1, 0, 0]
    assert vote.cost.tolist() == [300] * 4
    big = replay_decision(m, rows, Decision((Step(DEAR, samples=3),)))
    assert big.correct.tolist() == [1, 1, 1, 0]


def test_cascade_escalates_on_disagreement_only() -> None:
    m = _two_config_matrix()
    plan = Decision((Step(CHEAP, samples=2, escalate="disagree"), Step(DEAR)))
    result = replay_decision(m, np.arange(4), plan)
    # p0 agrees -> stays; p1 (0,1) disagrees -> big; p2 (1,2) -> big; p3 (-1,1) -> big.
    assert result.steps.tolist() == [1, 2, 2, 2]
    assert result.cost.tolist() == [200, 1200, 1200, 1200]
    assert result.correct.tolist() == [1, 1, 1, 0]


def test_samples_continue_across_steps_of_one_config() -> None:
    m = _two_config_matrix()
    plan = Decision((Step(CHEAP, escalate="always"), Step(CHEAP, samples=2)))
    result = replay_decision(m, np.arange(4), plan)
    assert result.samples.tolist() == [3, 3, 3, 3]
    # The second step votes over samples 1 and 2 only: p1 -> (1, 0) tie -> first seen (1).
    assert result.correct.tolist() == [1, 0, 0, 0]


def test_stop_rule_draws_fewer_samples() -> None:
    m = _two_config_matrix()
    plan = Decision((Step(CHEAP, samples=3, stop=StopRule(votes=2, margin=2)),))
    result = replay_decision(m, np.arange(4), plan)
    # p0: two agreeing after 2 samples (lead 2) -> stop at 2; others need all 3.
    assert result.samples.tolist() == [2, 3, 3, 3]
    assert result.cost.tolist() == [200, 300, 300, 300]


def test_unrecorded_samples_and_configs_are_errors() -> None:
    m = _two_config_matrix()
    with pytest.raises(ReplayError, match="has 3 recorded sample"):
        replay_decision(m, np.arange(4), Decision((Step(CHEAP, samples=4),)))
    with pytest.raises(InputError, match="was not recorded"):
        replay_decision(m, np.arange(4), Decision((Step(Config("x", "think", 1)),)))
    unknown_cost = _two_config_matrix()
    unknown_cost.cost[:, 1, :] = np.nan
    with pytest.raises(ReplayError, match="cost in tokens is unknown"):
        replay_decision(unknown_cost, np.arange(4), Decision((Step(DEAR),)))


def test_oracle_and_uniform_family() -> None:
    m = _two_config_matrix()
    oracle = Oracle().fit(m)
    result = replay(m, oracle.decide_batch(m.problems))
    assert result.correct.tolist() == [1, 1, 1, 0]
    assert result.cost.tolist() == [100, 100, 1000, 100]
    family = uniform_family(m, max_samples=3)
    assert len(family) == 6
    assert not Oracle.servable


def test_policy_json_round_trip_and_tamper(tmp_path: Path) -> None:
    m = _two_config_matrix()
    policy = Uniform(DEAR, samples=3).fit(m)
    path = save_policy(policy, tmp_path / "p.json")
    loaded = load_policy(path)
    assert loaded.decide({"dataset": "d0", "problem_id": "p0"}) == policy.decide(
        {"dataset": "d0", "problem_id": "p0"}
    )
    data = json.loads(path.read_text())
    assert data["fitted_on"]["fingerprint"] == m.fingerprint()
    data["params"]["samples"] = 1
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="does not match its sha256"):
        load_policy(path)
    data["version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="version 99 is not supported"):
        load_policy(path)
    with pytest.raises(InputError, match="no such file"):
        load_policy(tmp_path / "absent.json")
    with pytest.raises(PolicyError, match="not fitted"):
        Uniform(DEAR).decide_batch(m.problems)


def test_decision_batch_dedupes() -> None:
    a = Decision((Step(CHEAP),))
    b = Decision((Step(DEAR),))
    batch = DecisionBatch.from_list([a, b, a, a])
    assert len(batch.decisions) == 2
    assert batch.index.tolist() == [0, 1, 0, 0]
    assert batch[3] == a


def _random_matrix(n: int, seed: int = 0) -> OutcomeMatrix:
    rng = np.random.default_rng(seed)
    difficulty = rng.uniform(size=n)
    p_cheap = np.clip(1.1 - 1.5 * difficulty, 0, 1)
    p_dear = np.clip(1.3 - difficulty, 0, 1)
    correct = np.stack(
        [rng.uniform(size=(n, 3)) < p_cheap[:, None], rng.uniform(size=(n, 3)) < p_dear[:, None]],
        axis=1,
    ).astype(float)
    answer = np.where(correct == 1, 0, rng.integers(1, 4, size=correct.shape))
    cost = np.stack([np.full((n, 3), 300.0), np.full((n, 3), 3000.0)], axis=1)
    return _matrix(correct, answer, cost, n_datasets=2)


def test_cross_validation_holds_out_every_problem_once() -> None:
    m = _random_matrix(60)
    folds = fold_assignment(m.problems, 5, seed=1)
    assert sorted(np.bincount(folds).tolist()) == [12] * 5
    for d in ("d0", "d1"):
        assert len(set(folds[(m.problems["dataset"] == d).to_numpy()])) == 5
    candidates = [
        Candidate("uniform cheap", "uniform", lambda: Uniform(CHEAP)),
        Candidate("uniform dear", "uniform", lambda: Uniform(DEAR)),
        Candidate("oracle", "oracle", Oracle),
    ]
    ev = cross_validate(m, candidates, folds=5, seed=1)
    assert ev.correct.shape == (3, 60)
    assert ev.correct[1].tolist() == m.correct[:, 1, 0].tolist()
    assert "5-fold" in ev.protocol
    with pytest.raises(PolicyError, match="too few for 5-fold"):
        cross_validate(m.subset([0, 1, 2]), candidates, folds=5)


def test_summary_metrics_against_hand_computation() -> None:
    m = _random_matrix(80, seed=3)
    candidates = [
        Candidate("uniform cheap", "uniform", lambda: Uniform(CHEAP)),
        Candidate("uniform dear", "uniform", lambda: Uniform(DEAR)),
        Candidate("oracle", "oracle", Oracle),
    ]
    ev = transfer(m, m, candidates)
    summary = summarize(ev, n_boot=300, seed=0)
    points = summary.points.set_index("label")
    assert points.loc["uniform dear", "accuracy"] == pytest.approx(m.correct[:, 1, 0].mean())
    assert points.loc["uniform dear", "mean_cost"] == 3000
    assert summary.baseline == "uniform dear"
    oracle = summary.families.set_index("family").loc["oracle"]
    expected_cost = points.loc["oracle", "mean_cost"]
    assert oracle["saved_at_iso_accuracy"] == pytest.approx(1 - expected_cost / 3000)
    assert oracle["gap_recovered"] == pytest.approx(1.0)
    assert oracle["saved_at_iso_accuracy_ci_low"] <= oracle["saved_at_iso_accuracy"]
    assert oracle["saved_at_iso_accuracy"] <= oracle["saved_at_iso_accuracy_ci_high"]
    lo, hi = points.loc["uniform dear", ["accuracy_ci_low", "accuracy_ci_high"]]
    assert lo < points.loc["uniform dear", "accuracy"] < hi


def test_calibration_error() -> None:
    y = np.array([1, 0, 1, 0] * 25, dtype=float)
    assert calibration_error(np.full(100, 0.5), y) == pytest.approx(0.0)
    assert calibration_error(np.full(100, 0.9), y) == pytest.approx(0.4)


def test_calls_and_dollars_cost_units() -> None:
    frame = pd.DataFrame(
        {
            "model": ["a", "b"],
            "output_tokens": [1000.0, np.nan],
            "prompt_tokens": [np.nan, np.nan],
        }
    )
    assert CostModel("calls").sample_costs(frame).tolist() == [1.0, 1.0]
    calls = CostModel("calls", {"a": Price(per_call=0.5), "b": Price(per_call=5.0)})
    assert calls.sample_costs(frame).tolist() == [0.5, 5.0]
    with pytest.raises(InputError, match="no entry for model\\(s\\) a"):
        CostModel("calls", {"b": Price(per_call=5.0)}).sample_costs(frame)
    dollars = CostModel(
        "dollars", {"a": Price(output_per_mtok=2.0), "b": Price(output_per_mtok=1.0)}
    )
    out = dollars.sample_costs(frame)
    assert out[0] == pytest.approx(0.002) and np.isnan(out[1])
    with pytest.raises(InputError, match="missing: b"):
        CostModel("flops", {"a": Price(params_b=1.5)}).sample_costs(frame)


def test_uniform_hull_interpolates_mixtures() -> None:
    from ponder.evaluate.metrics import _hull, _hull_accuracy_at, _hull_cost_for

    cost = np.array([0.0, 1.0, 0.5, 0.8])
    acc = np.array([0.6, 0.9, 0.8, 0.82])  # (0.8, 0.82) lies below the 0.5 -> 1.0 segment
    hx, hy = _hull(cost, acc)
    assert hx.tolist() == [0.0, 0.5, 1.0] and hy.tolist() == [0.6, 0.8, 0.9]
    at = _hull_accuracy_at(cost[None, :], acc[None, :], np.array([0.75]))
    assert at[0] == pytest.approx(0.85)
    need = _hull_cost_for(cost[None, :], acc[None, :], np.array([0.85]))
    assert need[0] == pytest.approx(0.75)
    # A point under the chord of its neighbours is not on the hull.
    hx, _ = _hull(np.array([0.0, 0.5, 1.0]), np.array([0.6, 0.7, 0.9]))
    assert hx.tolist() == [0.0, 1.0]
    assert np.isnan(_hull_cost_for(cost[None, :], acc[None, :], np.array([0.95]))[0])


def test_resampled_calibration_matches_the_plain_ece() -> None:
    from ponder.evaluate.metrics import _resampled_calibration

    rng = np.random.default_rng(0)
    p = rng.uniform(size=50)
    y = (rng.uniform(size=50) < p).astype(float)
    plain = calibration_error(p, y)
    same = _resampled_calibration(p, y, np.full((1, 50), 1 / 50))
    assert same[0] == pytest.approx(plain)
    assert np.isnan(_resampled_calibration(np.full(5, np.nan), np.ones(5), np.ones((2, 5)))).all()
