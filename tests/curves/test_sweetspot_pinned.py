"""Sweet-spot table against a recomputation from the resampling counts and a plain groupby.

The replicate accuracies are rebuilt here from the problem resampling counts W (per budget:
W @ correct-sums / W @ sample-counts), so every figure of the table (argmax shares, the
cheapest budget within noise, the drop and its paired interval) is checked against numbers
that do not come from the sweet-spot code.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ponder.curves import ProblemResampler, sweet_spot_table

BUDGETS = (512.0, 1024.0, 2048.0, 4096.0, 8192.0)


def _replicates(frame: pd.DataFrame, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy per budget (columns) in every resample (rows), and the plain accuracies."""
    resampler = ProblemResampler.from_frame(frame, n_boot=n_boot, seed=seed)
    w = resampler.counts("ds").astype(np.float64)
    universe = list(resampler.universe("ds"))
    reps = np.empty((n_boot, len(BUDGETS)))
    plain = np.empty(len(BUDGETS))
    for j, budget in enumerate(BUDGETS):
        cell = frame[frame["budget"] == budget]
        per = cell.groupby("problem_id")["correct"].agg(["sum", "size"])
        s = np.zeros(len(universe))
        n = np.zeros(len(universe))
        pos = [universe.index(p) for p in per.index]
        s[pos], n[pos] = per["sum"], per["size"]
        reps[:, j] = (w @ s) / (w @ n)
        plain[j] = cell["correct"].mean()
    return reps, plain


def _q(values: np.ndarray, q: float) -> float:
    return float(np.quantile(values, q))


@pytest.mark.parametrize("seed", [0, 3])
def test_every_figure_matches_a_recomputation(make_grid, seed: int) -> None:
    acc = {512.0: 0.3, 1024.0: 0.5, 2048.0: 0.62, 4096.0: 0.6, 8192.0: 0.45}
    frame = make_grid(
        n_problems=50,
        n_seeds=2,
        budgets=BUDGETS,
        p_correct=lambda m, b, p: np.full(len(p), acc[b]),
        seed=seed,
    )
    n_boot = 500
    row = sweet_spot_table(frame, n_boot=n_boot, seed=seed).iloc[0]
    reps, plain = _replicates(frame, n_boot, seed)

    best = int(np.argmax(plain))  # first maximum: the smallest budget on ties
    assert row["n_budgets"] == 5 and row["budgets"] == BUDGETS
    assert row["accuracies"] == pytest.approx(tuple(plain), abs=1e-15)
    assert row["sweet_spot"] == BUDGETS[best]
    assert row["sweet_spot_accuracy"] == pytest.approx(plain[best], abs=1e-15)
    winners = np.argmax(reps, axis=1)
    shares = {b: float(np.mean(winners == j)) for j, b in enumerate(BUDGETS)}
    assert row["argmax_share"] == pytest.approx(shares, abs=1e-12)
    assert row["sweet_spot_share"] == pytest.approx(shares[BUDGETS[best]], abs=1e-12)
    # Cheapest budget whose paired interval of (best - it) reaches 0.
    within = [
        j == best or _q(reps[:, best] - reps[:, j], 0.025) <= 0.0 for j in range(len(BUDGETS))
    ]
    cheapest = within.index(True)
    assert row["sweet_spot_min"] == BUDGETS[cheapest]
    assert row["sweet_spot_min_accuracy"] == pytest.approx(plain[cheapest], abs=1e-15)
    # Drop from the peak to the largest budget, paired.
    assert row["largest_budget"] == 8192.0
    assert row["largest_accuracy"] == pytest.approx(plain[-1], abs=1e-15)
    assert best < len(BUDGETS) - 1
    diff = reps[:, best] - reps[:, -1]
    assert row["drop"] == pytest.approx(plain[best] - plain[-1], abs=1e-12)
    assert row["drop_ci_low"] == pytest.approx(_q(diff, 0.025), abs=1e-12)
    assert row["drop_ci_high"] == pytest.approx(_q(diff, 0.975), abs=1e-12)
    assert row["overthinking"] == (_q(diff, 0.025) > 0.0)
    assert row["n_resamples"] == n_boot


def test_peak_at_the_largest_budget_has_no_drop(make_grid) -> None:
    frame = make_grid(
        n_problems=40,
        n_seeds=2,
        budgets=BUDGETS,
        p_correct=lambda m, b, p: np.full(len(p), 0.15 * BUDGETS.index(b) + 0.1),
    )
    row = sweet_spot_table(frame, n_boot=200).iloc[0]
    assert row["sweet_spot"] == 8192.0
    assert np.isnan(row["drop"]) and np.isnan(row["drop_ci_low"]) and np.isnan(row["drop_ci_high"])
    assert not row["overthinking"]
    assert row["sweet_spot_min"] == 8192.0  # every smaller budget is clearly worse


def test_ties_go_to_the_smaller_budget(make_outcomes) -> None:
    # Two budgets with identical outcomes: the peak is the smaller one, share split by rule.
    correct = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0]
    one = make_outcomes(budget=1024.0, correct=correct)
    two = make_outcomes(budget=2048.0, correct=correct)
    row = sweet_spot_table(pd.concat([one, two], ignore_index=True), n_boot=100).iloc[0]
    assert row["sweet_spot"] == 1024.0 and row["sweet_spot_min"] == 1024.0
    assert row["argmax_share"] == {1024.0: 1.0, 2048.0: 0.0}
    assert row["drop"] == 0.0 and row["drop_ci_low"] == 0.0 and not row["overthinking"]
