"""Cell table: exact accuracies, honest intervals, determinism, pairing, Wilson fallback."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from ponder.curves import (
    ProblemResampler,
    cell_bootstrap,
    cell_table,
    paired_difference_interval,
    resample_counts,
    wilson_interval,
)


def test_accuracy_equals_plain_groupby_mean(make_grid, make_outcomes) -> None:
    frame = make_grid(models=("a", "b"), budgets=(512.0, 1024.0, 4096.0))
    # Aggregated rows with fractional correct and a run without budget.
    extra = make_outcomes(
        model=["a", "a", "b"],
        budget=[np.nan, np.nan, 512.0],
        problem_id=["p000", "p001", "p002"],
        correct=[1 / 3, 2 / 7, 0.1],
        n_runs=[3, 7, 10],
        budget_kind=["none", "none", "hard_cap"],
    )
    frame = pd.concat([frame, extra], ignore_index=True)
    table = cell_table(frame, n_boot=200)
    plain = frame.groupby(["model", "dataset", "mode", "budget"], dropna=False)["correct"].mean()
    got = table.set_index(["model", "dataset", "mode", "budget"])["accuracy"]
    assert len(got) == len(plain)
    for key, value in plain.items():
        assert got.loc[key] == value  # exactly, not approximately


def test_nan_budget_is_its_own_cell(make_outcomes) -> None:
    frame = make_outcomes(
        budget=[np.nan, np.nan, 1024.0, 1024.0],
        correct=[1.0, 1.0, 0.0, 1.0],
        problem_id=["p0", "p1", "p0", "p1"],
    )
    table = cell_table(frame, n_boot=100)
    assert len(table) == 2
    assert np.isnan(table["budget"].iloc[-1])  # sorted with the NaN budget last
    assert table["accuracy"].tolist() == [0.5, 1.0]
    assert table["n_samples"].tolist() == [2, 2]


def test_ci_contains_accuracy_and_narrows_with_more_problems(make_grid) -> None:
    small = cell_table(make_grid(n_problems=20, seed=1), n_boot=400)
    large = cell_table(make_grid(n_problems=500, seed=1), n_boot=400)
    for table in (small, large):
        assert (table["ci_low"] <= table["accuracy"]).all()
        assert (table["accuracy"] <= table["ci_high"]).all()
        assert (table["ci_method"] == "percentile").all()
    width_small = (small["ci_high"] - small["ci_low"]).mean()
    width_large = (large["ci_high"] - large["ci_low"]).mean()
    assert width_large < width_small / 2


def test_bootstrap_is_deterministic_with_a_seed(make_grid) -> None:
    frame = make_grid()
    a = cell_table(frame, n_boot=300, seed=7)
    b = cell_table(frame, n_boot=300, seed=7)
    c = cell_table(frame, n_boot=300, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["ci_low"], c["ci_low"]) or not np.allclose(a["ci_high"], c["ci_high"])


def test_resample_counts_shape_and_totals() -> None:
    w = resample_counts(37, 250, np.random.default_rng(3))
    assert w.shape == (250, 37)
    assert w.dtype == np.float32
    assert (w.sum(axis=1) == 37).all()
    w2 = resample_counts(37, 250, np.random.default_rng(3))
    assert np.array_equal(w, w2)


def test_identical_cells_have_zero_width_paired_difference(make_grid) -> None:
    one = make_grid(budgets=(1024.0,), n_problems=50)
    two = one.assign(budget=2048.0)
    frame = pd.concat([one, two], ignore_index=True)
    boot = cell_bootstrap(frame, n_boot=300)
    reps = boot.replicates
    assert np.array_equal(reps[:, 0], reps[:, 1])
    low, high = paired_difference_interval(reps[:, 0], reps[:, 1])
    assert low == 0.0 and high == 0.0
    # Cells of the same dataset share resamples even across separate calls.
    again = cell_bootstrap(frame, n_boot=300)
    assert np.array_equal(again.replicates, reps)


def test_resampler_matrix_is_shared_per_dataset(make_grid) -> None:
    frame = make_grid()
    r1 = ProblemResampler.from_frame(frame, n_boot=50, seed=1)
    other = pd.concat([frame, frame.assign(dataset="other")], ignore_index=True)
    r2 = ProblemResampler.from_frame(other, n_boot=50, seed=1)
    # Adding a dataset does not change the resamples of the first one.
    assert np.array_equal(r1.counts("ds"), r2.counts("ds"))


def test_wilson_fallback_at_zero_and_one(make_grid) -> None:
    frame = make_grid(
        budgets=(1024.0, 2048.0),
        n_problems=30,
        p_correct=lambda m, b, p: np.full(len(p), 0.0 if b == 1024.0 else 1.0),
    )
    table = cell_table(frame, n_boot=200)
    assert (table["ci_method"] == "wilson").all()
    # Wilson at phat = 0 has upper bound z^2 / (n + z^2); at phat = 1 the mirror image.
    z2 = 1.959963984540054**2
    edge = z2 / (30 + z2)  # n is problems (30), not samples (120): wider, conservative
    assert table["ci_low"].tolist() == pytest.approx([0.0, 1 - edge], abs=1e-12)
    assert table["ci_high"].tolist() == pytest.approx([edge, 1.0], abs=1e-12)
    low, high = wilson_interval(np.array([0.0, 1.0]), np.array([120.0, 120.0]))
    assert high[0] == pytest.approx(z2 / (120 + z2), abs=1e-12) and low[1] > 1 - edge


def test_token_statistics_ignore_nan(make_outcomes) -> None:
    frame = make_outcomes(
        output_tokens=[100.0, 200.0, np.nan, 400.0],
        truncated=[True, False, False, False],
        answered=[False, True, True, True],
        correct=[0.0, 1.0, 1.0, 0.0],
    )
    row = cell_table(frame, n_boot=50).iloc[0]
    assert row["mean_tokens"] == frame["output_tokens"].mean()
    assert row["median_tokens"] == 200.0
    assert row["p90_tokens"] == frame["output_tokens"].quantile(0.9)
    assert row["truncation_rate"] == 0.25
    assert row["answer_rate"] == 0.75
    assert row["n_problems"] == 4


def test_replicates_equal_a_direct_weighted_mean(make_grid) -> None:
    frame = make_grid(n_problems=15, n_seeds=3, budgets=(1024.0, 2048.0))
    frame = frame[~((frame["budget"] == 2048.0) & (frame["problem_id"] < "p005"))]
    resampler = ProblemResampler.from_frame(frame, n_boot=40, seed=11)
    boot = cell_bootstrap(frame, resampler=resampler)
    weights = resampler.counts("ds")
    universe = list(resampler.universe("ds"))
    for i, budget in enumerate(boot.table["budget"]):
        cell = frame[frame["budget"] == budget]
        pos = np.array([universe.index(p) for p in cell["problem_id"]])
        for b in range(weights.shape[0]):
            w = weights[b, pos].astype(float)
            want = (w * cell["correct"]).sum() / w.sum() if w.sum() > 0 else np.nan
            got = boot.replicates[b, i]
            assert (np.isnan(want) and np.isnan(got)) or abs(got - want) < 1e-12


def test_percentile_interval_matches_numpy() -> None:
    from ponder.curves.bootstrap import nan_quantiles, percentile_interval

    rng = np.random.default_rng(0)
    reps = rng.random((101, 6))
    reps[rng.random(reps.shape) < 0.2] = np.nan
    reps[:, 5] = np.nan
    low, high = percentile_interval(reps, 0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = np.nanquantile(reps, [0.05, 0.95], axis=0)
    np.testing.assert_allclose(low, want[0])
    np.testing.assert_allclose(high, want[1])
    (median,) = nan_quantiles(reps, [0.5])
    assert np.isnan(median[5])
