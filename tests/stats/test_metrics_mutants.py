"""Evaluation metrics pinned where a mutation run (docs/testing.md) found them loose.

Every expected value is computed here without the code under test: the uniform frontier as
the two-point linear programme it is (mixing two configurations), calibration error and
intervals resample by resample in plain Python, the conclusion's sentences typed out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ponder.evaluate.metrics import (
    _most_common,
    conclusion,
    mix_to_reach,
    problem_weights,
    summarize,
)
from ponder.evaluate.protocol import Evaluation

LABELS = ("uniform a", "uniform b", "x lo", "x hi", "oracle")


def _case(seed: int = 0, n: int = 30, folds: bool = True) -> Evaluation:
    """Two uniform points, a two-point family x that predicts P(correct), an oracle."""
    rng = np.random.default_rng(seed)
    p = np.array([0.5, 0.75, 0.65, 0.85])
    correct = (rng.random((4, n)) < p[:, None]).astype(float)
    cost = np.array([1.0, 2.0, 1.2, 1.6])[:, None] * rng.uniform(0.5, 1.5, (4, n))
    oracle = correct.max(axis=0, keepdims=True)
    predicted = np.full((5, n), np.nan)
    predicted[2] = rng.uniform(0, 1, n)
    predicted[3] = rng.uniform(0, 1, n)
    extra: dict[str, np.ndarray] = {}
    if folds:
        extra = {
            "fold": np.repeat([0, 1], n // 2),
            "train_correct": np.array([[0.5, 0.8, 0.7, 0.9, 1.0], [0.5, 0.8, 0.6, 0.7, 1.0]]),
            "train_cost": np.array([[1.0, 2.0, 1.2, 1.6, 1.5], [1.0, 2.0, 1.2, 1.6, 1.5]]),
        }
    return Evaluation(
        protocol="hand-made",
        unit="tokens",
        problems=pd.DataFrame({"dataset": "d", "problem_id": [f"p{i}" for i in range(n)]}),
        labels=LABELS,
        families=("uniform", "uniform", "x", "x", "oracle"),
        correct=np.vstack([correct, oracle]),
        cost=np.vstack([cost, np.full((1, n), 1.5)]),
        samples=np.vstack([np.ones((4, n)), np.arange(n)[None, :] % 4 + 1.0]),
        predicted=predicted,
        skipped=(("z", "needs two models"),),
        **extra,  # type: ignore[arg-type]
    )


def _q(values: list[float]) -> tuple[float, float]:
    kept = [v for v in values if np.isfinite(v)]
    return float(np.quantile(kept, 0.025)), float(np.quantile(kept, 0.975))


def _ece(p: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """Weighted 10-bin expected calibration error, one problem at a time."""
    gaps = [0.0] * 10
    total = 0.0
    for pi, yi, wi in zip(p, y, w, strict=True):
        if np.isnan(pi) or np.isnan(yi):
            continue
        gaps[min(int(pi * 10), 9)] += wi * (pi - yi)
        total += wi
    return sum(abs(g) for g in gaps) / total if total else float("nan")


def _lp_accuracy_at(cost: list[float], acc: list[float], at: float) -> float:
    """Most accuracy a random mix of at most two points reaches at mean cost <= at."""
    best = -np.inf
    for i in range(len(cost)):
        if cost[i] <= at:
            best = max(best, acc[i])
        for j in range(len(cost)):
            if cost[i] < at < cost[j]:
                t = (at - cost[i]) / (cost[j] - cost[i])
                best = max(best, acc[i] + t * (acc[j] - acc[i]))
    return best if np.isfinite(best) else float("nan")


def _lp_cost_for(cost: list[float], acc: list[float], target: float) -> float:
    """Least mean cost of a random mix of at most two points with accuracy >= target."""
    best = np.inf
    for i in range(len(cost)):
        if acc[i] >= target:
            best = min(best, cost[i])
        for j in range(len(cost)):
            if acc[i] < target < acc[j]:
                t = (target - acc[i]) / (acc[j] - acc[i])
                best = min(best, cost[i] + t * (cost[j] - cost[i]))
    return best if np.isfinite(best) else float("nan")


@pytest.mark.parametrize("seed", [0, 5])
def test_every_field_of_the_summary(seed: int) -> None:
    ev = _case(seed)
    n_boot = 200
    s = summarize(ev, n_boot=n_boot, seed=seed)
    w = problem_weights(ev.problems, n_boot, seed)
    n = ev.correct.shape[1]
    full = np.vstack([np.full((1, n), 1 / n), w])
    assert (s.protocol, s.unit, s.n_problems, s.skipped) == (
        "hand-made",
        "tokens",
        n,
        (("z", "needs two models"),),
    )
    # Baseline: uniform b is best on training problems in both folds.
    assert s.baseline == "uniform b"
    figs = s.baseline_figures
    assert (figs["folds_choosing_it"], figs["folds"]) == (2, 2)
    assert figs["mean_cost"] == pytest.approx(ev.cost[1].mean(), abs=1e-12)
    lo, hi = _q([float(row @ ev.cost[1]) for row in w])
    assert (figs["cost_ci_low"], figs["cost_ci_high"]) == pytest.approx((lo, hi), abs=1e-12)

    points = s.points.set_index("label")
    assert list(points["family"]) == ["uniform", "uniform", "x", "x", "oracle"]
    assert list(points["mean_samples"]) == pytest.approx(
        [1, 1, 1, 1, np.mean(np.arange(n) % 4 + 1)]
    )
    for k in (2, 3):
        lo, hi = _q([_ece(ev.predicted[k], ev.correct[k], row) for row in w])
        assert points.iloc[k]["calibration_ci_low"] == pytest.approx(lo, abs=1e-12)
        assert points.iloc[k]["calibration_ci_high"] == pytest.approx(hi, abs=1e-12)
    assert np.isnan(points.iloc[0]["calibration_ci_low"])

    fam = s.families.set_index("family")
    assert list(fam["points"]) == [2, 2, 1]
    x = fam.loc["x"]
    # Best on training: x hi in both folds (.9 > .7, .7 > .6).
    assert (x["best_label"], x["best_folds"]) == ("x hi", 2)
    eces = [_ece(ev.predicted[k], ev.correct[k], full[0]) for k in (2, 3)]
    assert x["calibration_error"] == pytest.approx(np.mean(eces), abs=1e-12)
    assert np.isnan(fam.loc["uniform", "calibration_error"])
    # Fold 1: no x point reaches the baseline's .8 -> undefined, both iso-accuracy figures.
    note = "no point reached the baseline's training accuracy in 1 of 2 folds"
    for name in ("saved_at_iso_accuracy", "accuracy_change_at_iso_accuracy"):
        assert np.isnan(x[name]) and np.isnan(x[f"{name}_ci_high"])
        assert x[f"{name}_note"] == note

    # Hindsight frontier figures: the uniform frontier is the mix of a and b.
    acc, cost = full @ ev.correct.T, full @ ev.cost.T
    gains, savings = [], []
    for b in range(len(full)):
        ua, uc = [acc[b, 0], acc[b, 1]], [cost[b, 0], cost[b, 1]]
        g = [acc[b, k] - _lp_accuracy_at(uc, ua, cost[b, k]) for k in (2, 3)]
        sv = [1 - cost[b, k] / _lp_cost_for(uc, ua, acc[b, k]) for k in (2, 3)]
        g, sv = [v for v in g if np.isfinite(v)], [v for v in sv if np.isfinite(v)]
        gains.append(max(g) if g else np.nan)
        savings.append(max(sv) if sv else np.nan)
    for name, values in (("frontier_gain", gains), ("frontier_saving", savings)):
        if np.isfinite(values[0]):
            assert x[name] == pytest.approx(values[0], abs=1e-9)
        lo, hi = _q(values[1:])
        assert (x[f"{name}_ci_low"], x[f"{name}_ci_high"]) == pytest.approx((lo, hi), abs=1e-9)


def test_without_training_figures_choices_are_made_on_the_held_out_means() -> None:
    ev = _case(1, folds=False)
    s = summarize(ev, n_boot=50)
    means = ev.correct.mean(axis=1)
    base = int(np.argmax(means[:2]))
    assert s.baseline == LABELS[base]
    assert s.baseline_figures["folds"] == 1
    assert s.baseline_figures["accuracy"] == pytest.approx(means[base], abs=1e-12)
    x = s.families.set_index("family").loc["x"]
    assert x["best_label"] == LABELS[2 + int(np.argmax(means[2:4]))]


def test_an_evaluation_without_uniform_points_is_refused() -> None:
    ev = _case(0)
    ev = Evaluation(**{**ev.__dict__, "families": ("u", "u", "x", "x", "oracle")})
    with pytest.raises(
        ValueError, match=r"^an evaluation needs uniform candidates as the baseline$"
    ):
        summarize(ev, n_boot=10)


def test_mix_to_reach_is_the_cheapest_two_point_mix() -> None:
    acc = np.array([0.5, 0.7, 0.8, 0.6, 0.9])
    cost = np.array([1.0, 2.0, 4.0, 3.0, 8.0])
    members = np.arange(5)
    for target in (0.4, 0.5, 0.55, 0.7, 0.75, 0.85, 0.9):
        mix = mix_to_reach(acc, cost, members, target)
        assert mix is not None
        got_cost = sum(cost[c] * s for c, s in mix.items())
        got_acc = sum(acc[c] * s for c, s in mix.items())
        assert sum(mix.values()) == pytest.approx(1.0)
        assert got_cost == pytest.approx(_lp_cost_for(list(cost), list(acc), target), abs=1e-12)
        assert got_acc >= target - 1e-12
    assert mix_to_reach(acc, cost, members, 0.5) == {0: 1.0}
    assert mix_to_reach(acc, cost, members, 0.4) == {0: 1.0}
    # On a hull vertex: all of it (its lower neighbour gets a zero share).
    assert mix_to_reach(acc, cost, members, 0.7) == {0: pytest.approx(0.0), 1: pytest.approx(1.0)}
    # Between the vertices (2, .7) and (4, .8); (3, .6) lies below the hull.
    assert mix_to_reach(acc, cost, members, 0.75) == {1: pytest.approx(0.5), 2: pytest.approx(0.5)}
    assert mix_to_reach(acc, cost, members, 0.91) is None
    assert mix_to_reach(acc, cost, np.array([], dtype=np.int64), 0.5) is None
    # Equal cost: the more accurate of the two is the hull's vertex.
    assert mix_to_reach(np.array([0.3, 0.6]), np.array([1.0, 1.0]), np.arange(2), 0.5) == {1: 1.0}


def test_most_common_counts_and_keeps_the_first_of_a_tie() -> None:
    assert _most_common(["b", "a", "a", "b", "a"]) == ("a", 3)
    assert _most_common(["b", "a"]) == ("b", 1)
    assert _most_common(["c"]) == ("c", 1)


def _families(rows: list[dict[str, float | str]]) -> pd.DataFrame:
    return pd.DataFrame(rows)


FIG = {"accuracy": 0.6125}


def test_conclusion_sentences() -> None:
    gain = {
        "gain_at_iso_cost": 0.1,
        "gain_at_iso_cost_ci_low": 0.02,
        "gain_at_iso_cost_ci_high": 0.2,
    }
    save = {
        "saved_at_iso_accuracy": 0.3,
        "saved_at_iso_accuracy_ci_low": 0.1,
        "saved_at_iso_accuracy_ci_high": 0.5,
        "accuracy_change_at_iso_accuracy_ci_high": 0.0,
    }
    base = "the best uniform configuration (1024, accuracy 0.613)"
    one = conclusion(_families([{"family": "a", **gain}]), "uniform 1024", FIG, "tokens")
    assert one == (
        f"On held-out problems, a gains +10.0% accuracy at the same tokens "
        f"(95% CI +2.0% to +20.0%) over {base}."
    )
    saving = conclusion(_families([{"family": "s", **save}]), "uniform 1024", FIG, "tokens")
    assert saving == (
        f"On held-out problems, s needs 30.0% fewer tokens for the same accuracy "
        f"(95% CI 10.0% to 50.0%) over {base}."
    )
    # Ranked: a gain of 10 points beats a saving of 30% (a saving counts a tenth).
    two = conclusion(
        _families([{"family": "s", **save}, {"family": "a", **gain}]), "uniform 1024", FIG, "t"
    )
    assert two.startswith("On held-out problems, a gains") and two.endswith(
        "; also 1 other family."
    )
    big = {**save, "saved_at_iso_accuracy": 2.0}
    three = conclusion(
        _families([{"family": "a", **gain}, {"family": "s", **big}, {"family": "c", **gain}]),
        "uniform 1024",
        FIG,
        "t",
    )
    assert three.startswith("On held-out problems, s needs 200.0% fewer")
    assert three.endswith("; also 2 other families.")
    # Not wins: a CI touching zero, a saving that loses accuracy beyond noise.
    edge = {**gain, "gain_at_iso_cost_ci_low": 0.0}
    lossy = {**save, "accuracy_change_at_iso_accuracy_ci_high": -0.01}
    zero = {**save, "saved_at_iso_accuracy_ci_low": 0.0}
    none = conclusion(
        _families(
            [
                {"family": "e", **edge},
                {"family": "f", **{**edge, "gain_at_iso_cost": 0.05}},
                {"family": "g", **{**edge, "gain_at_iso_cost": 0.1}},
                {"family": "l", **lossy},
                {"family": "z", **zero},
                {"family": "oracle", **gain},
            ]
        ),
        "uniform 1024",
        FIG,
        "tokens",
    )
    assert none == (
        f"No policy beats {base} on held-out problems: the closest, e, changes accuracy by "
        f"+10.0% at the same tokens (95% CI +0.0% to +20.0%)."
    )
    bare = conclusion(_families([{"family": "z", **zero}]), "uniform 1024", {}, "tokens")
    assert bare == (
        "No policy beats the best uniform configuration (1024, accuracy nan) on held-out problems."
    )


def test_defaults_are_1000_resamples_and_seed_0() -> None:
    ev = _case(2)
    s = summarize(ev)
    w = problem_weights(ev.problems, 1000, 0)
    lo, hi = _q([float(row @ ev.correct[1]) for row in w])
    assert s.baseline_figures["accuracy_ci_low"] == pytest.approx(lo, abs=1e-12)
    assert s.baseline_figures["accuracy_ci_high"] == pytest.approx(hi, abs=1e-12)
    # The one-line conclusion speaks in the evaluation's unit.
    assert " tokens" in s.conclusion


def test_without_an_oracle_the_ratios_are_undefined_with_a_reason() -> None:
    ev = _case(0)
    keep = [0, 1, 2, 3]
    ev = Evaluation(
        **{
            **ev.__dict__,
            "labels": LABELS[:4],
            "families": ev.families[:4],
            "correct": ev.correct[keep],
            "cost": ev.cost[keep],
            "samples": ev.samples[keep],
            "predicted": ev.predicted[keep],
            "train_correct": ev.train_correct[:, keep],  # type: ignore[index]
            "train_cost": ev.train_cost[:, keep],  # type: ignore[index]
        }
    )
    x = summarize(ev, n_boot=50).families.set_index("family").loc["x"]
    assert np.isnan(x["gap_recovered"])
    assert x["gap_recovered_note"] == "no oracle in this evaluation"
    assert np.isnan(x["hindsight_gap_recovered"])
    assert x["hindsight_gap_recovered_note"] == "the oracle is not more accurate than the baseline"


def _oracle_note(ev: Evaluation, w: np.ndarray, base: np.ndarray) -> str:
    """The documented rule for the gap ratio, from plain per-resample means."""
    observed = ev.correct[4].mean() - base.mean()
    lo, hi = _q([float(row @ ev.correct[4] - row @ base) for row in w])
    if not (observed > 0.005 and lo > 0):
        return "the oracle is not clearly more accurate than the baseline"
    if lo < observed / 2:
        return (
            f"the oracle's lead over the baseline is too uncertain for a ratio "
            f"({observed:+.1%}, CI {lo:+.1%} to {hi:+.1%})"
        )
    return ""


@pytest.mark.parametrize("extra", [0, 4, 5, 6, 9, 12])
def test_gap_recovered_needs_a_clear_oracle_lead(extra: int) -> None:
    """Oracle = the baseline plus `extra` more solved problems: from no lead to a clear one.

    With 1-3 extra problems the lower quantile of the lead is exactly 0 (no extra problem
    drawn in over 2.5% of resamples) and `gap_lo > 0` is decided by rounding: left out.
    """
    ev = _case(4, n=40)
    base = np.where(ev.fold == 0, ev.correct[1], ev.correct[1])  # b in both folds
    oracle = base.copy()
    unsolved = np.flatnonzero(base == 0)[:extra]
    oracle[unsolved] = 1.0
    ev.correct[4] = oracle
    w = problem_weights(ev.problems, 300, 0)
    x = summarize(ev, n_boot=300).families.set_index("family").loc["x"]
    note = _oracle_note(ev, w, base)
    lo = _q([float(row @ ev.correct[4] - row @ base) for row in w])[0]
    assert extra == 0 or abs(lo) > 1e-9
    if note:
        assert np.isnan(x["gap_recovered"]) and x["gap_recovered_note"] == note
    else:
        assert np.isfinite(x["gap_recovered"])
        assert not isinstance(x.get("gap_recovered_note"), str)


def test_notes_name_the_folds_that_lack_a_point() -> None:
    ev = _case(0)
    assert ev.train_cost is not None and ev.train_correct is not None
    # Fold 1: every x point dearer than the baseline (2): no iso-cost point there.
    ev.train_cost[1, [2, 3]] = [2.5, 3.0]
    x = summarize(ev, n_boot=50).families.set_index("family").loc["x"]
    note = "no point was as cheap as the baseline on training problems in 1 of 2 folds"
    for name in ("gain_at_iso_cost", "gap_recovered"):
        assert np.isnan(x[name]) and np.isnan(x[f"{name}_ci_low"])
        assert x[f"{name}_note"] == note
    # Fold 1: the baseline's 95% (0.76) is out of reach of x mixed with uniform a.
    assert np.isnan(x["cost_to_95pct"])
    assert (
        x["cost_to_95pct_note"] == "no mix reached 95% of the baseline's accuracy in 1 of 2 folds"
    )
    assert np.isfinite(x["uniform_cost_to_95pct"])


def test_notes_count_every_fold_and_say_training_data_for_one() -> None:
    ev = _case(0, n=30)
    three = Evaluation(
        **{
            **ev.__dict__,
            "fold": np.repeat([0, 1, 2], 10),
            "train_correct": np.array(
                [[0.5, 0.8, 0.7, 0.9, 1.0], [0.5, 0.8, 0.6, 0.7, 1.0], [0.5, 0.8, 0.6, 0.7, 1.0]]
            ),
            "train_cost": np.tile([1.0, 2.0, 1.2, 1.6, 1.5], (3, 1)),
        }
    )
    x = summarize(three, n_boot=20).families.set_index("family").loc["x"]
    assert x["saved_at_iso_accuracy_note"] == (
        "no point reached the baseline's training accuracy in 2 of 3 folds"
    )
    one = Evaluation(
        **{
            **ev.__dict__,
            "fold": np.zeros(30, dtype=np.int64),
            "train_correct": np.array([[0.5, 0.8, 0.6, 0.7, 1.0]]),
            "train_cost": np.array([[1.0, 2.0, 1.2, 1.6, 1.5]]),
        }
    )
    x = summarize(one, n_boot=20).families.set_index("family").loc["x"]
    assert x["saved_at_iso_accuracy_note"] == (
        "no point reached the baseline's training accuracy in the training data"
    )


@pytest.mark.parametrize("drop", ["fold", "train_correct", "train_cost"])
def test_missing_training_figures_fall_back_to_held_out_choices(drop: str) -> None:
    ev = _case(1)
    s = summarize(Evaluation(**{**ev.__dict__, drop: None}), n_boot=20)
    means = ev.correct.mean(axis=1)
    assert s.baseline == LABELS[int(np.argmax(means[:2]))]
    assert s.baseline_figures["folds"] == 1


def test_selection_helpers_on_hand_picked_points() -> None:
    from ponder.evaluate.metrics import _best, _frontier_at, _hull_accuracy_at, _iso_cost

    acc = np.array([0.5, 0.9, 0.8, 0.95])
    cost = np.array([2000.0, 3000.0, 2000.0, 2000.5])
    # Exactly the baseline's cost counts as no dearer, even in thousands of tokens.
    assert _iso_cost(acc, cost, np.array([1, 2, 3]), 2000.0) == 2
    assert _iso_cost(acc, cost, np.array([1, 3]), 2000.0) == -1
    # Untrainable points (NaN figures) are never chosen; none left: -1.
    assert _best(np.array([np.nan, 0.5]), np.array([1.0, 1.0]), np.array([0, 1])) == 1
    assert _best(np.array([np.nan, 0.5]), np.array([1.0, 1.0]), np.array([0])) == -1
    # The frontier at exactly a point's cost includes that point.
    got = _frontier_at(np.array([[1.0, 2000.0]]), np.array([[0.5, 0.7]]), np.array([2000.0]))
    assert got[0] == 0.7
    hull = _hull_accuracy_at(
        np.array([[1000.0, 2000.0]]), np.array([[0.5, 0.7]]), np.array([1000.0])
    )
    assert hull[0] == 0.5


@pytest.mark.parametrize("seed", range(6))
def test_uniform_hull_is_the_best_two_point_mix(seed: int) -> None:
    from ponder.evaluate.metrics import _hull_accuracy_at, _hull_cost_for

    rng = np.random.default_rng(seed)
    k = 7
    cost, acc = rng.uniform(1, 10, k), rng.uniform(0, 1, k)
    at = rng.uniform(0, 11, 25)
    got = _hull_accuracy_at(np.tile(cost, (25, 1)), np.tile(acc, (25, 1)), at)
    want = [_lp_accuracy_at(list(cost), list(acc), a) for a in at]
    np.testing.assert_allclose(got, want, atol=1e-12)
    targets = rng.uniform(0, 1.05, 25)
    got = _hull_cost_for(np.tile(cost, (25, 1)), np.tile(acc, (25, 1)), targets)
    want = [_lp_cost_for(list(cost), list(acc), t) for t in targets]
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_resampled_calibration_drops_unknown_rows_and_bins_p_equal_1() -> None:
    from ponder.evaluate.metrics import _resampled_calibration

    p = np.array([1.0, 0.05, np.nan, 0.55, 0.99, np.nan, 0.3])
    y = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    w = problem_weights(pd.DataFrame({"dataset": ["d"] * 7}), 40, 1)
    got = _resampled_calibration(p, y, w)
    want = [_ece(p, y, row) for row in w]
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_a_saving_counts_a_tenth_of_a_gain_in_the_ranking() -> None:
    gain = {
        "gain_at_iso_cost": 0.1,
        "gain_at_iso_cost_ci_low": 0.02,
        "gain_at_iso_cost_ci_high": 0.2,
    }
    save = {
        "saved_at_iso_accuracy": 1.05,
        "saved_at_iso_accuracy_ci_low": 0.5,
        "saved_at_iso_accuracy_ci_high": 1.5,
        "accuracy_change_at_iso_accuracy_ci_high": 0.0,
    }
    text = conclusion(_families([{"family": "a", **gain}, {"family": "s", **save}]), "u", FIG, "t")
    assert text.startswith("On held-out problems, s needs 105.0% fewer t")


@pytest.mark.parametrize(
    ("x_correct", "x_cost", "undefined"),
    [
        # Worse than every uniform point and cheaper than all of them.
        (
            0.0,
            0.1,
            {
                "hindsight_saved_at_iso_accuracy": "no point reached the baseline's "
                "held-out accuracy",
                "frontier_gain": "no point within the uniform configurations' costs",
            },
        ),
        # Better than every uniform point and dearer than all of them.
        (
            1.0,
            100.0,
            {
                "hindsight_gain_at_iso_cost": "no point was as cheap as the baseline",
                "frontier_saving": "no point within the uniform configurations' accuracies",
            },
        ),
    ],
)
def test_hindsight_figures_out_of_reach_are_undefined_with_a_reason(
    x_correct: float, x_cost: float, undefined: dict[str, str]
) -> None:
    ev = _case(0)
    ev.correct[2:4] = x_correct
    ev.cost[2:4] = x_cost
    x = summarize(ev, n_boot=30).families.set_index("family").loc["x"]
    for name, note in undefined.items():
        assert np.isnan(x[name]) and np.isnan(x[f"{name}_ci_low"])
        assert x[f"{name}_note"] == note


def test_a_saving_over_a_free_baseline_is_undefined() -> None:
    """Cost 0 everywhere: 1 - 0/0 is no saving at all, so it is undefined, not 0 or 100%."""
    ev = _case(0)
    ev.cost[:] = 0.0
    assert ev.train_correct is not None
    ev.train_correct[1, 3] = 0.85  # x hi reaches the baseline's 0.8 in fold 1 too
    x = summarize(ev, n_boot=30).families.set_index("family").loc["x"]
    assert np.isnan(x["saved_at_iso_accuracy"])
    assert x["saved_at_iso_accuracy_note"] == "not defined on these problems"


def test_an_oracle_that_also_loses_problems_is_not_clearly_better() -> None:
    ev = _case(4, n=40)
    base = ev.correct[1].copy()
    oracle = base.copy()
    oracle[np.flatnonzero(base == 0)[:3]] = 1.0
    oracle[np.flatnonzero(base == 1)[:2]] = 0.0
    ev.correct[4] = oracle
    w = problem_weights(ev.problems, 300, 0)
    lo = _q([float(row @ oracle - row @ base) for row in w])[0]
    assert oracle.mean() - base.mean() == pytest.approx(0.025) and lo < -0.01
    x = summarize(ev, n_boot=300).families.set_index("family").loc["x"]
    assert x["gap_recovered_note"] == "the oracle is not clearly more accurate than the baseline"


def test_ties_on_the_hull_and_costs_below_one() -> None:
    from ponder.evaluate.metrics import _hull_cost_for, _iso_cost

    # Equal accuracy at a higher cost is dominated: reaching 0.8 costs 2, not 3.
    cost, acc = np.array([[1.0, 2.0, 3.0]]), np.array([[0.5, 0.8, 0.8]])
    assert _hull_cost_for(cost, acc, np.array([0.8]))[0] == 2.0
    assert _hull_cost_for(cost, acc, np.array([0.65]))[0] == pytest.approx(1.5)
    # Costs in dollars: exactly the baseline's cost is still no dearer.
    acc1 = np.array([0.5, 0.9])
    assert _iso_cost(acc1, np.array([0.002, 0.002]), np.array([1]), 0.002) == 1


def test_cost_to_reach_mixes_in_the_cheapest_uniform_point_wherever_it_is_listed() -> None:
    ev = _case(0)
    order = [1, 0, 2, 3, 4]  # the dearer uniform point first
    assert ev.train_correct is not None and ev.train_cost is not None
    swapped = Evaluation(
        **{
            **ev.__dict__,
            "labels": tuple(LABELS[i] for i in order),
            "correct": ev.correct[order],
            "cost": ev.cost[order],
            "samples": ev.samples[order],
            "predicted": ev.predicted[order],
            "train_correct": ev.train_correct[:, order],
            "train_cost": ev.train_cost[:, order],
        }
    )
    # Half the baseline's training accuracy (0.4) is below every x point's: uniform a alone
    # (training accuracy 0.5, cost 1) reaches it more cheaply than any x point.
    x = summarize(swapped, n_boot=20, reach=(0.5,)).families.set_index("family").loc["x"]
    assert x["cost_to_50pct"] == pytest.approx(ev.cost[0].mean(), abs=1e-12)
    assert x["cost_to_50pct_accuracy"] == pytest.approx(ev.correct[0].mean(), abs=1e-12)


def test_a_figure_undefined_in_the_first_resample_is_still_reported() -> None:
    """Seed 7 of the pinned case: the observed hindsight saving is defined, the first resample's
    is not (no point reaches that resample's baseline). The figure is the observed value; only
    the interval leaves the undefined resample out."""
    from test_metrics_pinned import _case as pinned_case
    from test_metrics_pinned import _hindsight

    ev = pinned_case(7)
    n = ev.correct.shape[1]
    w = problem_weights(ev.problems, 5, 7)
    full = np.vstack([np.full((1, n), 1 / n), w])
    acc, cost = full @ ev.correct.T, full @ ev.cost.T
    observed, first = _hindsight(acc[0], cost[0]), _hindsight(acc[1], cost[1])
    assert np.isfinite(observed[0]) and np.isnan(first[0])
    x = summarize(ev, n_boot=5, seed=7).families.set_index("family").loc["x"]
    assert x["hindsight_saved_at_iso_accuracy"] == pytest.approx(observed[0], abs=1e-12)


def test_a_family_without_a_trainable_point_in_a_fold_is_undefined_not_the_first_candidate() -> (
    None
):
    """Fold 1 cannot fit family x (NaN training figures): its best point must be undefined
    with the reason, and no fold may be attributed to another family's candidate."""
    ev = _case(0)
    assert ev.train_cost is not None and ev.train_correct is not None
    ev.train_correct[1, [2, 3]] = np.nan
    ev.train_cost[1, [2, 3]] = np.nan
    x = summarize(ev, n_boot=50).families.set_index("family").loc["x"]
    assert np.isnan(x["best_accuracy"]) and np.isnan(x["best_accuracy_cost"])
    assert (
        x["best_accuracy_note"]
        == "no point could be chosen on the training problems in 1 of 2 folds"
    )
    assert not any(label.startswith("uniform") for label in x["best_labels"])
    assert x["best_labels"][0] == "x hi" and x["best_label"] == "x hi"


def test_an_undefined_best_point_prints_as_undefined_in_the_cli_and_the_report(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ponder.cli.policy_cmd import print_summary
    from ponder.report.html import _families_table

    ev = _case(0)
    assert ev.train_cost is not None and ev.train_correct is not None
    ev.train_correct[1, [2, 3]] = np.nan
    ev.train_cost[1, [2, 3]] = np.nan
    summary = summarize(ev, n_boot=50)
    print_summary(summary)
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("x "))
    assert "undefined [1]" in row and "0." not in row
    assert "most accurate point: undefined (no point could be chosen" in out
    main, _ = _families_table(summary)
    assert "undefined (no point could be chosen on the training problems in 1 of 2 folds)" in main
    assert ">nan<" not in main.lower()
