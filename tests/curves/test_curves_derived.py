"""Derived hard caps equal a brute-force per-row cut and never shadow a recorded cell."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ponder.curves import (
    cell_table,
    default_grid,
    derivation_plan,
    derive_caps,
    with_derived_caps,
)


def _sweep(make_outcomes, rng: np.random.Generator) -> pd.DataFrame:
    """One latent generation per (model, problem, seed), observed under several caps."""
    parts = []
    for model, caps in (("a", (1024.0, 4096.0)), ("b", (2048.0,))):
        n = 60
        length = rng.integers(50, 5000, n).astype(float)
        right = rng.random(n) < 0.6
        reasoning = np.floor(length * 0.8)
        for cap in caps:
            cut = length > cap
            parts.append(
                make_outcomes(
                    model=model,
                    budget=cap,
                    problem_id=[f"p{i % 20}" for i in range(n)],
                    sample_idx=np.arange(n) // 20,
                    output_tokens=np.minimum(length, cap),
                    reasoning_tokens=np.minimum(reasoning, cap),
                    answer_tokens=np.minimum(length, cap) - np.minimum(reasoning, cap),
                    latency_s=np.minimum(length, cap) / 50.0,
                    truncated=cut,
                    answered=~cut,
                    correct=(right & ~cut).astype(float),
                    extracted_answer=np.where(cut, None, np.where(right, "42", "7")),
                )
            )
    return pd.concat(parts, ignore_index=True)


def _brute_force(source: pd.DataFrame, target: float) -> pd.DataFrame:
    rows = []
    for _, row in source.iterrows():
        row = row.copy()
        if row["output_tokens"] > target:
            row["correct"] = 0.0
            row["answered"] = False
            row["truncated"] = True
            row["output_tokens"] = target
            row["extracted_answer"] = None
            row["latency_s"] = np.nan
            row["reasoning_tokens"] = min(row["reasoning_tokens"], target)
            row["answer_tokens"] = target - row["reasoning_tokens"]
        row["budget"] = target
        rows.append(row)
    return pd.DataFrame(rows)


def test_default_grid() -> None:
    assert default_grid([1000.0, 3000.0]) == [1000.0, 1024.0, 2048.0, 3000.0]
    assert default_grid([4096.0]) == [4096.0]
    assert default_grid([]) == []


def test_derived_rows_equal_brute_force(make_outcomes) -> None:
    frame = _sweep(make_outcomes, np.random.default_rng(0))
    derived = derive_caps(frame)
    assert derived["derived"].all()
    cols = [
        "correct",
        "answered",
        "truncated",
        "output_tokens",
        "reasoning_tokens",
        "answer_tokens",
        "latency_s",
        "extracted_answer",
    ]
    for (model, budget), got in derived.groupby(["model", "budget"]):
        source_budget = got["source_budget"].iloc[0]
        source = frame[(frame["model"] == model) & (frame["budget"] == source_budget)]
        # The smallest recorded cap above the target is the source.
        caps = frame.loc[frame["model"] == model, "budget"].unique()
        assert source_budget == min(c for c in caps if c > budget)
        want = _brute_force(source, budget)
        key = ["problem_id", "sample_idx"]
        got = got.sort_values(key).reset_index(drop=True)
        want = want.sort_values(key).reset_index(drop=True)
        for col in cols:
            a, b = got[col].to_numpy(), want[col].to_numpy()
            if col == "extracted_answer":
                assert [x if isinstance(x, str) else None for x in a] == [
                    x if isinstance(x, str) else None for x in b
                ]
            else:
                np.testing.assert_array_equal(a.astype(float), b.astype(float), err_msg=col)


def test_never_derives_where_a_cell_is_recorded(make_outcomes) -> None:
    frame = _sweep(make_outcomes, np.random.default_rng(1))
    derived = derive_caps(frame)
    recorded = set(zip(frame["model"], frame["budget"], strict=True))
    produced = set(zip(derived["model"], derived["budget"], strict=True))
    assert not recorded & produced
    # a: caps 1024, 4096 -> 2048 from 4096. b: cap 2048 -> 1024. Nothing below 1024, the
    # dataset's smallest recorded cap.
    assert produced == {("a", 2048.0), ("b", 1024.0)}
    # The dataset grid includes caps of other models: b's recorded 2048 is a target for a.
    combined = with_derived_caps(frame)
    assert combined["derived"].sum() == len(derived)
    assert not combined.loc[~combined["derived"], "source_budget"].notna().any()


def test_explicit_budgets_and_non_hard_caps(make_outcomes) -> None:
    frame = _sweep(make_outcomes, np.random.default_rng(2))
    forced = frame[frame["model"] == "b"].assign(model="c", budget_kind="forced")
    frame = pd.concat([frame, forced], ignore_index=True)
    derived = derive_caps(frame, budgets=[1500.0])
    assert set(zip(derived["model"], derived["budget"], strict=True)) == {
        ("a", 1500.0),
        ("b", 1500.0),
    }


def test_unknown_tokens_are_skipped_with_a_reason(make_outcomes) -> None:
    frame = _sweep(make_outcomes, np.random.default_rng(3))
    frame.loc[(frame["model"] == "b") & (frame.index % 7 == 0), "output_tokens"] = np.nan
    plan = derivation_plan(frame)
    skipped = plan[plan["status"] == "skip"]
    assert set(skipped["model"]) == {"b"}
    assert skipped["reason"].str.contains("unknown output_tokens").all()
    derived = derive_caps(frame)
    assert "b" not in set(derived["model"])


def test_aggregated_rows_are_skipped(make_outcomes) -> None:
    frame = make_outcomes(
        budget=[4096.0, 4096.0], correct=[0.5, 0.25], n_runs=[4, 4], output_tokens=[900.0, 3000.0]
    )
    plan = derivation_plan(frame)
    assert (plan["status"] == "skip").all()
    assert plan["reason"].str.contains("aggregated").all()
    assert derive_caps(frame).empty


def test_user_data_without_answer_columns_stays_consistent(make_outcomes) -> None:
    """A user's CSV with only correct and output_tokens: truncation is known from the tokens,
    the answer rate stays unknown instead of being averaged over the cut rows only."""
    frame = make_outcomes(
        budget=2048.0,
        output_tokens=[100.0, 500.0, 900.0, 1500.0, 2048.0],
        correct=[1.0, 1.0, 0.0, 1.0, 0.0],
        truncated=np.nan,
        answered=np.nan,
    )
    frame = pd.concat(
        [frame, make_outcomes(budget=512.0, output_tokens=[100.0] * 5, truncated=np.nan)],
        ignore_index=True,
    )
    derived = derive_caps(frame).sort_values("problem_id").reset_index(drop=True)
    assert derived["budget"].tolist() == [1024.0] * 5
    # 1500 and 2048 exceed the 1024 cap: cut, unanswered, wrong; the rest stopped on their own.
    np.testing.assert_array_equal(derived["truncated"].astype(float), [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(derived["correct"].astype(float), [1, 1, 0, 0, 0])
    assert derived["answered"].isna().all()

    cells = cell_table(with_derived_caps(frame), n_boot=50)
    cell = cells[cells["budget"] == 1024.0].iloc[0]
    assert cell["derived"]
    assert cell["accuracy"] == pytest.approx(2 / 5)
    assert cell["truncation_rate"] == pytest.approx(2 / 5)
    assert np.isnan(cell["answer_rate"])


def test_partly_known_answers_leave_the_answer_rate_unknown(make_outcomes) -> None:
    frame = make_outcomes(
        budget=2048.0,
        output_tokens=[100.0, 1500.0, 1600.0, 300.0],
        correct=[1.0, 0.0, 0.0, 0.0],
        answered=[True, True, None, False],
        truncated=[False, False, False, False],
    )
    frame = pd.concat([frame, make_outcomes(budget=512.0, output_tokens=[1.0])], ignore_index=True)
    derived = derive_caps(frame)
    assert derived["answered"].isna().all()


def test_known_answers_are_kept_and_correct_rows_are_answered(make_outcomes) -> None:
    frame = make_outcomes(
        budget=2048.0,
        output_tokens=[100.0, 1500.0, 300.0, 400.0],
        correct=[1.0, 1.0, 0.0, 1.0],
        answered=[True, True, False, False],  # the last row: a grader slip, correct but unanswered
        truncated=[False, False, False, False],
    )
    frame = pd.concat([frame, make_outcomes(budget=512.0, output_tokens=[1.0])], ignore_index=True)
    derived = derive_caps(frame).sort_values("problem_id")
    np.testing.assert_array_equal(derived["answered"].astype(float), [1, 0, 0, 1])
    np.testing.assert_array_equal(derived["correct"].astype(float), [1, 0, 0, 1])
    np.testing.assert_array_equal(derived["truncated"].astype(float), [0, 1, 0, 0])


def _assert_consistent(rows: pd.DataFrame, cells: pd.DataFrame) -> None:
    """The invariants every derived row and cell must satisfy under the strict hard-cap rule."""
    correct = rows["correct"].astype(float).to_numpy()
    truncated = rows["truncated"].astype(float).to_numpy()
    answered = rows["answered"].astype(float).to_numpy()
    assert not np.isnan(truncated).any()
    assert not ((correct > 0) & (truncated == 1)).any()
    assert not ((correct > 0) & (answered == 0)).any()
    derived_cells = cells[cells["derived"]]
    assert len(derived_cells)
    eps = 1e-12
    assert (derived_cells["accuracy"] <= 1 - derived_cells["truncation_rate"] + eps).all()
    known = derived_cells["answer_rate"].notna()
    assert (
        derived_cells.loc[known, "accuracy"] <= derived_cells.loc[known, "answer_rate"] + eps
    ).all()


def test_recorded_sweep_derived_cells_are_consistent(shared_data, tmp_path) -> None:
    from ponder.importers import import_paths
    from ponder.store import Store

    with Store(tmp_path / "s.sqlite") as store:
        import_paths(store, [shared_data / "reasoning_budget_sweep"])
        frame = store.outcomes_frame()
    derived = derive_caps(frame)
    assert len(derived) > 1000
    cells = cell_table(with_derived_caps(frame), n_boot=20)
    _assert_consistent(derived, cells)
    # Recorded answers are known, so every derived cell has an answer rate.
    assert cells.loc[cells["derived"], "answer_rate"].notna().all()
    # Truncation rate of a derived cell is the share of source responses longer than its cap.
    check = cells[cells["derived"]].iloc[0]
    source = frame[
        (frame["model"] == check["model"])
        & (frame["dataset"] == check["dataset"])
        & (frame["mode"] == check["mode"])
        & (frame["budget"] == check["source_budget"])
    ]
    assert check["truncation_rate"] == pytest.approx(
        (source["output_tokens"] > check["budget"]).mean()
    )


def test_user_sweep_derived_cells_are_consistent(make_outcomes) -> None:
    rng = np.random.default_rng(7)
    length = rng.integers(200, 6000, 80).astype(float)
    right = rng.random(80) < 0.6
    parts = [
        make_outcomes(
            budget=cap,
            problem_id=[f"q{i}" for i in range(80)],
            output_tokens=np.minimum(length, cap),
            correct=(right & (length <= cap)).astype(float),
            truncated=np.nan,
            answered=np.nan,
        )
        for cap in (1024.0, 8192.0)
    ]
    frame = pd.concat(parts, ignore_index=True)
    derived = derive_caps(frame)
    cells = cell_table(with_derived_caps(frame), n_boot=20)
    _assert_consistent(derived, cells)
    for budget in (2048.0, 4096.0):
        cell = cells[cells["budget"] == budget].iloc[0]
        assert cell["truncation_rate"] == pytest.approx((length > budget).mean())
        assert cell["accuracy"] == pytest.approx((right & (length <= budget)).mean())
