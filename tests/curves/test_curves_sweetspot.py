"""Sweet spot and overthinking on planted curves."""

from __future__ import annotations

import numpy as np

from ponder.curves import sweet_spot_table, with_derived_caps

BUDGETS = (512.0, 1024.0, 2048.0, 4096.0, 8192.0)


def test_planted_peak_then_decline_is_detected(make_grid) -> None:
    peak = {512.0: 0.2, 1024.0: 0.45, 2048.0: 0.8, 4096.0: 0.6, 8192.0: 0.4}
    frame = make_grid(
        n_problems=200,
        n_seeds=4,
        budgets=BUDGETS,
        p_correct=lambda m, b, p: np.full(len(p), peak[b]),
    )
    row = sweet_spot_table(frame, n_boot=400).iloc[0]
    assert row["sweet_spot"] == 2048.0
    assert row["sweet_spot_share"] > 0.9
    assert abs(sum(row["argmax_share"].values()) - 1.0) < 1e-9
    assert row["sweet_spot_min"] == 2048.0
    assert row["overthinking"]
    assert row["drop_ci_low"] > 0 and row["drop"] > 0.3
    assert row["largest_budget"] == 8192.0


def test_flat_curve_is_not_flagged(make_grid) -> None:
    frame = make_grid(n_problems=60, n_seeds=3, budgets=BUDGETS)
    row = sweet_spot_table(frame, n_boot=400).iloc[0]
    assert not row["overthinking"]
    # This seed peaks at 2048 (0.539) and ends at 0.522: the drop is defined, its CI covers 0.
    plain = frame.groupby("budget")["correct"].mean()
    assert row["sweet_spot"] == plain.idxmax() == 2048.0
    assert row["drop"] == plain[2048.0] - plain[8192.0]
    assert row["drop_ci_low"] <= 0.0 <= row["drop_ci_high"]
    assert row["sweet_spot_min"] == 512.0  # everything is within noise of the best
    assert row["sweet_spot_share"] < 0.9


def test_groups_need_two_budgets_and_skip_derived_by_default(make_grid) -> None:
    frame = make_grid(n_problems=20, budgets=(4096.0,), models=("solo",))
    frame = frame.assign(output_tokens=np.linspace(100, 4000, len(frame)))
    assert sweet_spot_table(frame, n_boot=50).empty
    full = with_derived_caps(frame, budgets=[1024.0, 2048.0])
    assert full["derived"].any()
    assert sweet_spot_table(full, n_boot=50).empty
    with_derived = sweet_spot_table(full, n_boot=50, include_derived=True)
    assert len(with_derived) == 1
    assert with_derived.iloc[0]["n_budgets"] == 3
    assert with_derived.iloc[0]["budgets"] == (1024.0, 2048.0, 4096.0)
