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
