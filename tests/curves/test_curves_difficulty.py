"""Difficulty split by known level, else by empirical solve-rate terciles."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ponder.curves import difficulty_bins, difficulty_table


def test_known_levels_are_used(make_grid) -> None:
    frame = make_grid(n_problems=30, budgets=(1024.0, 2048.0))
    level = frame["problem_id"].str[1:].astype(int) % 3 + 1
    frame["level"] = level.astype(float)
    table = difficulty_table(frame, n_boot=100)
    assert (table["difficulty_source"] == "level").all()
    assert set(table["difficulty"]) == {"1", "2", "3"}
    plain = frame.groupby(["budget", "level"])["correct"].mean()
    got = table.set_index(["budget", "difficulty_rank"])["accuracy"]
    for (budget, lvl), value in plain.items():
        assert got.loc[(budget, lvl)] == value
    assert (table["n_problems"] == 10).all()
    assert ((table["ci_low"] <= table["accuracy"]) & (table["accuracy"] <= table["ci_high"])).all()


def test_solve_rate_terciles_when_levels_are_unknown(make_grid) -> None:
    frame = make_grid(
        n_problems=60,
        n_seeds=6,
        p_correct=lambda m, b, p: np.clip(p / 60.0, 0.02, 0.98),
    )
    bins = difficulty_bins(frame)
    assert (bins["difficulty_source"] == "solve_rate").all()
    rate = frame.groupby("problem_id")["correct"].mean()
    bins = bins.set_index("problem_id")
    means = rate.groupby(bins["difficulty"]).mean()
    assert means["easy"] > means["medium"] > means["hard"]
    # Ties on solve rate stay in one bin.
    for _, tied in rate.groupby(rate):
        assert bins.loc[tied.index, "difficulty"].nunique() == 1
    table = difficulty_table(frame, n_boot=100)
    order = table.groupby("difficulty")["difficulty_rank"].first()
    assert order["easy"] < order["medium"] < order["hard"]


def test_partial_levels_fall_back_to_solve_rate(make_grid) -> None:
    frame = make_grid(n_problems=12)
    frame["level"] = np.where(frame["problem_id"] == "p000", np.nan, 2.0)
    other = make_grid(n_problems=12).assign(dataset="lv", level=3.0)
    table = difficulty_table(pd.concat([frame, other], ignore_index=True), n_boot=50)
    sources = table.groupby("dataset")["difficulty_source"].unique()
    assert list(sources["ds"]) == ["solve_rate"]
    assert list(sources["lv"]) == ["level"]
