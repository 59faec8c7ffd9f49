"""Replay, protocols and metrics on small hand-built outcome matrices."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ponder.curves.bootstrap import dataset_rng, resample_counts
from ponder.errors import InputError
from ponder.evaluate import CostModel, OutcomeMatrix, Price, ReplayError, replay, replay_decision
from ponder.evaluate.metrics import summarize
from ponder.evaluate.protocol import (
    Candidate,
    Evaluation,
    cross_validate,
    fold_assignment,
    transfer,
)
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
    # One sample: the expectation over the three recorded samples.
    one = replay_decision(m, rows, Decision((Step(CHEAP),)))
    assert one.correct.tolist() == pytest.approx([1, 2 / 3, 0, 0])
    assert one.cost.tolist() == [100] * 4
    assert one.answered.tolist() == pytest.approx([1, 1, 1, 2 / 3])
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
    # Per problem the highest mean correctness (cheap 1, 2/3, 0, 0; big 1, 1, 2/3, 0), the
    # cheaper configuration on ties.
    assert result.correct.tolist() == pytest.approx([1, 1, 2 / 3, 0])
    assert result.cost.tolist() == [100, 1000, 1000, 100]
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
        Candidate("uniform cheap", "uniform", lambda _: Uniform(CHEAP)),
        Candidate("uniform dear", "uniform", lambda _: Uniform(DEAR)),
        Candidate("oracle", "oracle", lambda _: Oracle()),
    ]
    ev = cross_validate(m, candidates, folds=5, seed=1)
    assert ev.correct.shape == (3, 60)
    assert ev.correct[1].tolist() == pytest.approx(m.correct[:, 1, :].mean(axis=1).tolist())
    assert "5-fold" in ev.protocol
    # Training figures: each candidate replayed on its own fold's training problems.
    assert ev.fold is not None and ev.train_correct is not None
    for f in range(5):
        train = m.correct[ev.fold != f]
        assert ev.train_correct[f, 1] == pytest.approx(train[:, 1, :].mean())
        assert ev.train_correct[f, 0] == pytest.approx(train[:, 0, :].mean())
    with pytest.raises(PolicyError, match="too few for 5-fold"):
        cross_validate(m.subset([0, 1, 2]), candidates, folds=5)


def test_summary_metrics_against_hand_computation() -> None:
    m = _random_matrix(80, seed=3)
    candidates = [
        Candidate("uniform cheap", "uniform", lambda _: Uniform(CHEAP)),
        Candidate("uniform dear", "uniform", lambda _: Uniform(DEAR)),
        Candidate("oracle", "oracle", lambda _: Oracle()),
    ]
    ev = transfer(m, m, candidates)
    summary = summarize(ev, n_boot=300, seed=0)
    points = summary.points.set_index("label")
    assert points.loc["uniform dear", "accuracy"] == pytest.approx(m.correct[:, 1, :].mean())
    assert points.loc["uniform dear", "mean_cost"] == 3000
    assert summary.baseline == "uniform dear"
    oracle = summary.families.set_index("family").loc["oracle"]
    # The oracle by hand: per problem the configuration with the higher mean over its three
    # samples, the cheap one on ties; its cost is that configuration's (300 or 3000).
    per_config = m.correct.mean(axis=2)
    dear = per_config[:, 1] > per_config[:, 0]
    oracle_correct = np.where(dear, per_config[:, 1], per_config[:, 0])
    oracle_cost = np.where(dear, 3000.0, 300.0)
    assert 0 < dear.sum() < m.n_problems  # both choices occur
    assert points.loc["oracle", "accuracy"] == pytest.approx(oracle_correct.mean(), abs=1e-12)
    assert points.loc["oracle", "mean_cost"] == pytest.approx(oracle_cost.mean(), rel=1e-12)
    assert oracle["saved_at_iso_accuracy"] == pytest.approx(1 - oracle_cost.mean() / 3000)
    # Here the dear configuration is never less accurate than the cheap one, so the oracle is
    # only as accurate as the baseline: the gap it bounds is zero and the share undefined.
    assert points.loc["oracle", "accuracy"] == pytest.approx(m.correct[:, 1, :].mean())
    assert np.isnan(oracle["gap_recovered"])
    assert "not clearly more accurate" in oracle["gap_recovered_note"]
    # The intervals from an independent paired bootstrap over the same resamples: problems
    # drawn with replacement within each dataset, one row of weights per resample, the
    # percentile interval of each statistic.
    counts = np.zeros((300, m.n_problems))
    for dataset, rows in m.problems.groupby("dataset", sort=True).indices.items():
        counts[:, rows] = resample_counts(len(rows), 300, dataset_rng(0, str(dataset)))
    assert (counts.sum(axis=1) == m.n_problems).all()
    weights = counts / m.n_problems
    saved = 1 - (weights @ oracle_cost) / (weights @ np.full(m.n_problems, 3000.0))
    expected = np.quantile(saved, [0.025, 0.975])
    got = [oracle["saved_at_iso_accuracy_ci_low"], oracle["saved_at_iso_accuracy_ci_high"]]
    assert got == pytest.approx(expected, abs=1e-12)
    assert expected[0] < oracle["saved_at_iso_accuracy"] < expected[1]
    dear_accuracy = weights @ m.correct[:, 1, :].mean(axis=1)
    lo, hi = points.loc["uniform dear", ["accuracy_ci_low", "accuracy_ci_high"]]
    assert [lo, hi] == pytest.approx(np.quantile(dear_accuracy, [0.025, 0.975]), abs=1e-12)
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


def _nested_case() -> Evaluation:
    """Two folds where training figures and held-out outcomes disagree on every choice.

    Each of 4 problem patterns is repeated 40 times; fold 0 holds patterns 0-1, fold 1
    patterns 2-3. Candidates: uniform a, uniform b, family x (lo, hi), oracle.
    """
    held_correct = np.array(
        [
            [1, 0, 1, 0],  # uniform a
            [1, 1, 1, 1],  # uniform b
            [1, 1, 0, 1],  # x lo
            [1, 1, 1, 1],  # x hi
            [1, 1, 1, 1],  # oracle
        ],
        dtype=float,
    )
    held_cost = np.array([[1.0] * 4, [2.0] * 4, [1.0] * 4, [1.5] * 4, [1.8] * 4])
    train_correct = np.array([[0.9, 0.8, 0.95, 0.9, 1.0], [0.6, 0.8, 0.7, 0.85, 1.0]])
    train_cost = np.array([[1.0, 2.0, 1.0, 1.5, 1.8], [1.0, 2.0, 1.0, 1.5, 1.8]])
    r = 40
    n = 4 * r
    return Evaluation(
        protocol="hand-made",
        unit="tokens",
        problems=pd.DataFrame({"dataset": "d", "problem_id": [f"p{i}" for i in range(n)]}),
        labels=("uniform a", "uniform b", "x lo", "x hi", "oracle"),
        families=("uniform", "uniform", "x", "x", "oracle"),
        correct=np.repeat(held_correct, r, axis=1),
        cost=np.repeat(held_cost, r, axis=1),
        samples=np.ones((5, n)),
        predicted=np.full((5, n), np.nan),
        fold=np.repeat([0, 0, 1, 1], r),
        train_correct=train_correct,
        train_cost=train_cost,
    )


def test_operating_points_are_chosen_on_training_folds() -> None:
    """Hand computation: nested choices differ from hindsight ones; the headline is nested."""
    summary = summarize(_nested_case(), n_boot=300, seed=0)
    # Baseline: fold 0 trains best on a (0.9), fold 1 on b (0.8). Held out: a gives 1, 0 on
    # fold 0, b gives 1, 1 on fold 1 -> accuracy 0.75 at cost (1 + 1 + 2 + 2) / 4 = 1.5.
    # (In hindsight b is best everywhere: accuracy 1.0 at cost 2.)
    assert summary.baseline_figures["accuracy"] == pytest.approx(0.75)
    assert summary.baseline_figures["mean_cost"] == pytest.approx(1.5)
    x = summary.families.set_index("family").loc["x"]
    # Iso-cost: fold 0 (cost <= 1) -> x lo; fold 1 (cost <= 2) -> x hi (0.85 in training).
    # Held out: 1, 1 | 1, 1 -> gain 1.0 - 0.75. Hindsight: b at 1.0 -> x hi at 1.0: gain 0.
    assert x["iso_cost_labels"] == ["x lo", "x hi"]
    assert x["gain_at_iso_cost"] == pytest.approx(0.25)
    assert x["hindsight_gain_at_iso_cost"] == pytest.approx(0.0)
    # Iso-accuracy: fold 0 (>= 0.9) -> x lo at 1; fold 1 (>= 0.8) -> x hi at 1.5: held-out
    # cost 1.25 against 1.5, saving 1/6. Hindsight: x hi at 1.5 against b at 2, saving 1/4.
    assert x["saved_at_iso_accuracy"] == pytest.approx(1 - 1.25 / 1.5)
    assert x["hindsight_saved_at_iso_accuracy"] == pytest.approx(0.25)
    # Gap recovered: oracle 1.0, baseline 0.75: 0.25 / 0.25.
    assert x["gap_recovered"] == pytest.approx(1.0)
    # Best point on training: fold 0 x lo (0.95), fold 1 x hi (0.85).
    assert x["best_labels"] == ["x lo", "x hi"]
    assert "x" in summary.conclusion and "+25.0%" in summary.conclusion


def test_cost_to_reach_mixes_with_the_cheapest_uniform() -> None:
    """RouteLLM-style: a random mix along the hull of the family and the cheap baseline."""
    summary = summarize(_nested_case(), n_boot=100, seed=0)
    families = summary.families.set_index("family")
    # Family x, 95% of the training baseline. Fold 0: target 0.855, x lo (cost 1, 0.95)
    # alone. Fold 1: target 0.76 between x lo (1, 0.7) and x hi (1.5, 0.85): share
    # t = 0.06 / 0.15 = 0.4 of x hi, held-out cost 0.6 * 1 + 0.4 * 1.5 = 1.2.
    x = families.loc["x"]
    assert x["cost_to_95pct"] == pytest.approx((1 + 1 + 1.2 + 1.2) / 4)
    assert x["cost_to_95pct_accuracy"] == pytest.approx((1 + 1 + 0.4 + 1) / 4)
    # The oracle mixed with uniform a (cost 1): fold 0 target 0.855 <= a's 0.9 -> a alone;
    # fold 1 target 0.76 between a (1, 0.6) and the oracle (1.8, 1.0): t = 0.4, cost 1.32.
    # Without mixing it would cost 1.8 everywhere.
    oracle = families.loc["oracle"]
    assert oracle["cost_to_95pct"] == pytest.approx((1 + 1 + 1.32 + 1.32) / 4)
    # The uniform hull (a, b): fold 1 target 0.76 between a (1, 0.6) and b (2, 0.8): t = 0.8,
    # cost 1.8; fold 0: a alone.
    assert oracle["uniform_cost_to_95pct"] == pytest.approx((1 + 1 + 1.8 + 1.8) / 4)


def test_price_grid_is_scaled_on_training_problems_only() -> None:
    from ponder.evaluate.catalog import PRICE_MULTIPLIERS, candidates

    m = _random_matrix(60)
    cost = m.cost.copy()
    cost[:30] *= 10  # the first half costs ten times more
    m = OutcomeMatrix(m.problems, m.configs, m.correct, cost, cost.copy(), m.answer)
    seen: list[int] = []

    def spy(train: OutcomeMatrix) -> Uniform:
        seen.append(train.n_problems)
        return Uniform(CHEAP)

    cross_validate(m, [Candidate("uniform spy", "uniform", spy)], folds=5, seed=0)
    # Built from the 4 training folds (outer fits) or 3 of them (inner fits choosing the
    # operating points), never from all 60 problems.
    assert sorted(set(seen)) == [36, 48] and seen.count(48) == 5 and seen.count(36) == 10
    adaptive = [c for c in candidates(m, ["adaptive"]) if c.family == "adaptive"]
    train = m.subset(range(30, 60))
    policy = adaptive[0].make(train)
    # 1% accuracy per typical training request: the median sample cost of the cheap half.
    assert (
        policy.price_per_unit
        == pytest.approx(  # type: ignore[attr-defined]
            PRICE_MULTIPLIERS[0] * 0.01 / float(np.median(cost[30:]))
        )
    )


def test_unknown_family_is_an_error_not_a_fall_through() -> None:
    from ponder.evaluate.catalog import candidates

    with pytest.raises(PolicyError, match="unknown policy family 'adaptiv'; known: adaptive"):
        candidates(_random_matrix(20), ["adaptiv"])


def test_families_that_cannot_run_are_listed_with_why() -> None:
    from ponder.evaluate.catalog import Skipped, candidates

    m = _random_matrix(20)
    unknown = np.full(m.answer.shape, -2, dtype=np.int32)  # no answers recorded
    m = OutcomeMatrix(m.problems, m.configs, m.correct, m.cost, m.tokens, unknown)
    skipped: list[Skipped] = []
    out = candidates(m, ["cascade", "adaptive_consistency"], skipped=skipped)
    reasons = {s.family: s.reason for s in skipped}
    assert "needs the extracted answers" in reasons["cascade"]
    assert "needs the extracted answers" in reasons["adaptive_consistency"]
    # Votes need answers too: only one-sample uniform points remain.
    assert {c.label for c in out} == {f"uniform {DEAR.label}", f"uniform {CHEAP.label}", "oracle"}
    thinking = OutcomeMatrix(
        m.problems, (CHEAP, Config("big", "no-think", 4096)), m.correct, m.cost, m.tokens, unknown
    )
    skipped.clear()
    candidates(thinking, ["router"], skipped=skipped)
    assert skipped == [Skipped("router", "needs both think and no-think configurations")]


def test_answer_codes_keep_unknown_apart_from_no_answer() -> None:
    """No answer column: unknown (-2); answered 0: no answer (-1); answered without text:
    an answer of its own; correctness always from `correct`."""
    frame = pd.DataFrame(
        {
            "dataset": "d",
            "problem_id": ["p0", "p1", "p2", "p3"],
            "model": "m",
            "mode": "think",
            "budget": 100.0,
            "sample_idx": 0,
            "correct": [1.0, 0.0, 1.0, 0.0],
            "output_tokens": [10.0, 20.0, 30.0, 40.0],
            "prompt_tokens": np.nan,
            "extracted_answer": ["7", None, None, None],
            "answered": [1.0, 0.0, 1.0, np.nan],
            "level": np.nan,
            "subject": None,
        }
    )
    m = OutcomeMatrix.from_frame(frame)
    codes = m.answer[:, 0, 0].tolist()
    assert codes[1] == -1 and codes[3] == -2
    assert codes[0] >= 0 and codes[2] >= 0 and codes[0] != codes[2]
    result = replay(m, DecisionBatch.same(Decision((Step(m.configs[0]),)), 4))
    assert result.correct.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert result.answered[:3].tolist() == [1.0, 0.0, 1.0] and np.isnan(result.answered[3])


def test_undefined_figures_print_as_undefined_with_the_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ponder.cli.policy_cmd import print_summary

    ev = _nested_case()
    assert ev.train_correct is not None
    ev.train_correct[1, 2:4] = 0.5  # fold 1: no x point reaches the baseline's 0.8
    summary = summarize(ev, n_boot=100, seed=0)
    x = summary.families.set_index("family").loc["x"]
    assert np.isnan(x["saved_at_iso_accuracy"])
    assert x["saved_at_iso_accuracy_note"] == (
        "no point reached the baseline's training accuracy in 1 of 2 folds"
    )
    print_summary(summary)
    out = capsys.readouterr().out
    assert "undefined [1]" in out
    assert (
        "[1] cost saved at the baseline's accuracy: undefined (no point reached the "
        "baseline's training accuracy in 1 of 2 folds)" in out
    )
    assert "nan" not in out.lower()


def test_gap_recovered_is_undefined_when_the_oracle_lead_is_too_uncertain() -> None:
    """A ratio over a denominator whose CI nearly reaches zero is reported as undefined."""
    ev = _nested_case()
    # The oracle now equals the nested baseline (a on fold 0, b on fold 1) except on 6 of the
    # 160 problems: a lead of 6/160 = 3.75 points (printed +3.7%) whose CI (about +/- 3
    # points) nearly reaches zero.
    baseline = np.where(ev.fold == 0, ev.correct[0], ev.correct[1])
    oracle = baseline.copy()
    oracle[np.flatnonzero(baseline == 0)[:6]] = 1.0
    ev.correct[4] = oracle
    summary = summarize(ev, n_boot=500, seed=0)
    x = summary.families.set_index("family").loc["x"]
    assert np.isnan(x["gap_recovered"])
    assert x["gap_recovered_note"].startswith(
        "the oracle's lead over the baseline is too uncertain for a ratio (+3.7%, CI "
    )
    assert x["gain_at_iso_cost"] == pytest.approx(0.25)  # the gain itself stays defined


class _Memorizer(Uniform):
    """Servable, but overfits: the config that solved each training problem, else CHEAP."""

    def _fit(self, outcomes: OutcomeMatrix) -> None:
        best = np.nanmean(outcomes.correct, axis=2).argmax(axis=1)
        ids = outcomes.problems["problem_id"].tolist()
        self.memory_ = {p: outcomes.configs[int(c)] for p, c in zip(ids, best, strict=True)}

    def decide_batch(self, problems: pd.DataFrame) -> DecisionBatch:
        return DecisionBatch.from_list(
            [Decision((Step(self.memory_.get(p, CHEAP)),)) for p in problems["problem_id"]]
        )


def test_training_figures_come_from_inner_folds_not_in_sample() -> None:
    """A policy that memorizes its training problems looks perfect in-sample; the figures
    that choose operating points are its inner cross-validated ones (CHEAP's accuracy)."""
    m = _random_matrix(60)
    memorizer = Candidate("memo", "memo", lambda _: _Memorizer(CHEAP))
    ev = cross_validate(
        m,
        [Candidate("uniform cheap", "uniform", lambda _: Uniform(CHEAP)), memorizer],
        folds=5,
        seed=1,
    )
    assert ev.fold is not None and ev.train_correct is not None
    for f in range(5):
        train = m.correct[ev.fold != f]
        in_sample = np.nanmean(train, axis=2).max(axis=1).mean()
        cheap = train[:, 0, :].mean()
        assert ev.train_correct[f, 1] == pytest.approx(cheap)
        assert in_sample > cheap + 0.1
