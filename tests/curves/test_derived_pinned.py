"""Derived caps pinned by hand-built frames: which cells are derived from which cap, and the cut.

Every expected value is written out by hand from the rule in docs/concepts.md: a sample that
needed more than the target cap is cut (wrong, unanswered, truncated, target tokens); one that
finished within it (exactly at it included) is unchanged; the source is the smallest recorded
hard cap above the target of the same model, dataset and mode; a recorded cell is never
shadowed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from ponder.curves import (
    PLAN_COLUMNS,
    cell_table,
    default_grid,
    derivation_plan,
    derive_caps,
    with_derived_caps,
)
from ponder.errors import InputError


def rows(model: str, budget: float, tokens: list[float], **columns: Any) -> pd.DataFrame:
    """One recorded cell of samples q0, q1, ... with the given output token counts."""
    n = len(tokens)
    base: dict[str, Any] = {
        "model": model,
        "dataset": "ds",
        "mode": "think",
        "budget": budget,
        "budget_kind": "hard_cap",
        "problem_id": [f"q{i}" for i in range(n)],
        "sample_idx": 0,
        "output_tokens": tokens,
        "correct": 1.0,
        "n_runs": 1,
    }
    base.update(columns)
    return pd.DataFrame({k: (v if np.ndim(v) else [v] * n) for k, v in base.items()})


def plan_tuples(plan: pd.DataFrame) -> list[tuple[str, float, float, str]]:
    return [
        (str(r.model), float(r.budget), float(r.source_budget), str(r.status))
        for r in plan.itertuples()
    ]


def test_default_grid_edges() -> None:
    assert default_grid([]) == []
    assert default_grid([1.0, 3.0]) == [1.0, 2.0, 3.0]
    assert default_grid([5000.0, 5000.0]) == [5000.0]
    assert default_grid([1024.0, 8192.0]) == [1024.0, 2048.0, 4096.0, 8192.0]
    assert default_grid([1023.0, 1025.0]) == [1023.0, 1024.0, 1025.0]
    assert default_grid([0.5, 3.0]) == [0.5, 1.0, 2.0, 3.0]  # 2**0 counts too


def test_source_is_the_smallest_recorded_cap_above_the_target() -> None:
    frame = pd.concat(
        [
            rows("a", 1024.0, [10.0]),
            rows("a", 4096.0, [10.0]),
            rows("a", 16384.0, [10.0]),
            rows("b", 2048.0, [10.0]),
        ],
        ignore_index=True,
    )
    plan = derivation_plan(frame)
    assert list(plan.columns) == PLAN_COLUMNS
    # Grid of the dataset: 1024, 2048, 4096, 8192, 16384 (caps of both models + powers of 2).
    assert plan_tuples(plan) == [
        ("a", 2048.0, 4096.0, "derive"),
        ("a", 8192.0, 16384.0, "derive"),
        ("b", 1024.0, 2048.0, "derive"),
    ]
    assert plan["reason"].tolist()[0] == "first 2048 tokens of the cap-4096 run"
    explicit = derivation_plan(frame, budgets=[-5.0, 0.0, 3000.0, 4096.0, 16384.0, 20000.0])
    # Non-positive targets, recorded caps and targets at or above the largest cap: none.
    assert plan_tuples(explicit) == [("a", 3000.0, 4096.0, "derive")]


def test_recorded_cells_of_any_kind_are_never_shadowed_and_never_sources() -> None:
    frame = pd.concat(
        [
            rows("c", 1024.0, [10.0]),
            rows("c", 8192.0, [10.0]),
            rows("c", 4096.0, [10.0], budget_kind="soft"),  # measured, but not a hard cap
        ],
        ignore_index=True,
    )
    # 2048 comes from 8192, the smallest *hard* cap above it; 4096 is recorded (soft): kept.
    assert plan_tuples(derivation_plan(frame)) == [("c", 2048.0, 8192.0, "derive")]
    # A run without a budget is not a cap.
    no_budget = rows("c", np.nan, [10.0])
    assert derivation_plan(no_budget).empty
    assert derivation_plan(rows("c", 4096.0, [10.0], budget_kind="soft")).empty
    assert list(derivation_plan(no_budget).columns) == PLAN_COLUMNS


def test_earlier_derived_rows_are_neither_recorded_nor_sources() -> None:
    recorded = pd.concat([rows("a", 1024.0, [10.0]), rows("a", 4096.0, [10.0])])
    derived = rows("a", 2048.0, [10.0]).assign(derived=True)
    frame = pd.concat([recorded.assign(derived=False), derived], ignore_index=True)
    assert plan_tuples(derivation_plan(frame)) == [("a", 2048.0, 4096.0, "derive")]
    only_derived = derived.assign(budget=8192.0)
    assert derivation_plan(only_derived).empty


def test_skip_reasons_count_the_offending_rows() -> None:
    unknown = pd.concat(
        [rows("a", 1024.0, [10.0]), rows("a", 4096.0, [10.0, np.nan, np.nan, 5.0])],
        ignore_index=True,
    )
    plan = derivation_plan(unknown)
    assert plan_tuples(plan) == [("a", 2048.0, 4096.0, "skip")]
    assert plan["reason"].iloc[0] == "source cap 4096 has 2 rows with unknown output_tokens"
    aggregated = pd.concat(
        [rows("a", 1024.0, [10.0]), rows("a", 4096.0, [10.0, 20.0], n_runs=[1, 3])],
        ignore_index=True,
    )
    plan = derivation_plan(aggregated)
    assert plan["reason"].iloc[0] == "source cap 4096 has aggregated rows (n_runs > 1)"
    # Unknown run counts are single samples; so is a frame without the column.
    unknown_runs = aggregated.assign(n_runs=[1.0, np.nan, np.nan])
    assert plan_tuples(derivation_plan(unknown_runs)) == [("a", 2048.0, 4096.0, "derive")]
    no_column = aggregated.drop(columns="n_runs")
    assert plan_tuples(derivation_plan(no_column)) == [("a", 2048.0, 4096.0, "derive")]
    assert derive_caps(aggregated).empty


def test_the_cut_row_by_row() -> None:
    tokens = [100.0, 2047.0, 2048.0, 2049.0, 4000.0]
    source = rows(
        "a",
        4096.0,
        tokens,
        correct=[1.0, 1.0, 0.0, 1.0, 1.0],
        answered=[True, True, False, True, True],
        truncated=[False, False, False, False, True],
        extracted_answer=["7", "7", "8", "7", "7"],
        latency_s=[1.0, 2.0, 3.0, 4.0, 5.0],
        reasoning_tokens=[50.0, 2000.0, 1000.0, 2040.0, 3000.0],
        answer_tokens=[50.0, 47.0, 1048.0, 9.0, 1000.0],
    )
    frame = pd.concat([rows("a", 1024.0, [10.0]), source], ignore_index=True)
    out = derive_caps(frame)
    assert list(out.columns) == [*frame.columns, "derived", "source_budget"]
    assert out["budget"].tolist() == [2048.0] * 5
    assert out["source_budget"].tolist() == [4096.0] * 5
    assert out["derived"].tolist() == [True] * 5
    assert out["problem_id"].tolist() == ["q0", "q1", "q2", "q3", "q4"]
    # 2048 tokens exactly: it stopped on its own within the target, unchanged; 2049: cut.
    assert out["output_tokens"].tolist() == [100.0, 2047.0, 2048.0, 2048.0, 2048.0]
    assert out["correct"].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert out["answered"].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
    # Truncation is known from the tokens alone: exactly the cut rows.
    assert out["truncated"].tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert out["extracted_answer"].tolist()[:3] == ["7", "7", "8"]
    assert out["extracted_answer"].isna().tolist() == [False, False, False, True, True]
    assert out["latency_s"].tolist()[:3] == [1.0, 2.0, 3.0]
    assert np.isnan(out["latency_s"].tolist()[3:]).all()
    assert out["reasoning_tokens"].tolist() == [50.0, 2000.0, 1000.0, 2040.0, 2048.0]
    assert out["answer_tokens"].tolist() == [50.0, 47.0, 1048.0, 8.0, 0.0]


def test_answered_is_unknown_for_a_cell_whose_source_lacks_it() -> None:
    """One unknown ``answered`` in the source: the derived cell's answer rate is unknown."""
    source = rows(
        "a",
        4096.0,
        [100.0, 3000.0, 200.0],
        correct=[1.0, 1.0, 0.0],
        answered=[1.0, 1.0, np.nan],
        truncated=[np.nan, np.nan, np.nan],
        answer_tokens=[40.0, 40.0, 40.0],
    )
    other = rows("b", 4096.0, [100.0, 3000.0, 200.0], correct=[1.0, 1.0, 0.0], answered=0.0)
    frame = pd.concat(
        [rows("a", 1024.0, [10.0]), source, rows("b", 1024.0, [10.0]), other], ignore_index=True
    )
    out = derive_caps(frame)
    a = out[out["model"] == "a"].set_index("problem_id")
    assert np.isnan(a["answered"]).all()
    assert a["truncated"].tolist() == [0.0, 1.0, 0.0]  # known from the tokens
    # Without reasoning tokens the split of a cut response is unknown.
    assert a.loc["q0", "answer_tokens"] == 40.0 and np.isnan(a.loc["q1", "answer_tokens"])
    # Model b records it for every row: cut 0, counted correct 1, else as recorded (0).
    b = out[out["model"] == "b"]
    assert b["answered"].tolist() == [1.0, 0.0, 0.0]
    # Without the columns: same columns as the input, no made-up values.
    bare = derive_caps(frame.drop(columns=["answered", "truncated"]))
    assert "answered" not in bare.columns and "truncated" not in bare.columns
    assert bare["correct"].tolist() == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]


def test_with_derived_caps_and_the_derived_cell_accuracy() -> None:
    rng = np.random.default_rng(6)
    tokens = rng.integers(100, 8000, 50).astype(float)
    right = (rng.random(50) < 0.7).astype(float)
    frame = pd.concat(
        [rows("a", 1024.0, [10.0] * 50, correct=0.0), rows("a", 8192.0, tokens, correct=right)],
        ignore_index=True,
    ).assign(truncated=np.nan)  # recorded truncation unknown; derived is known from tokens
    full = with_derived_caps(frame)
    assert full["derived"].tolist() == [False] * 100 + [True] * 100  # recorded first
    assert np.isnan(full.loc[:99, "source_budget"]).all()
    assert sorted(set(full.loc[100:, "budget"])) == [2048.0, 4096.0]
    table = cell_table(full, n_boot=50).set_index("budget")
    for target in (2048.0, 4096.0):
        want = float(np.mean(right * (tokens <= target)))
        assert table.loc[target, "accuracy"] == pytest.approx(want, abs=1e-15)
        assert table.loc[target, "derived"] and table.loc[target, "source_budget"] == 8192.0
        assert table.loc[target, "truncation_rate"] == pytest.approx(np.mean(tokens > target))
    # Already-derived rows in the input are replaced, not doubled.
    again = with_derived_caps(full)
    assert len(again) == len(full)
    # Nothing to derive: the recorded rows alone, marked as recorded.
    single = with_derived_caps(rows("a", 1024.0, [10.0, 20.0]))
    assert single["derived"].tolist() == [False, False]
    assert np.isnan(single["source_budget"]).all()
    empty = derive_caps(rows("a", 1024.0, [10.0]))
    assert empty.empty and {"derived", "source_budget"} <= set(empty.columns)


def test_plan_details(make_outcomes) -> None:
    # A frame without token counts cannot be planned: the error names the purpose.
    with pytest.raises(InputError, match=r"\['output_tokens'\] needed for derived caps$"):
        derivation_plan(rows("a", 1024.0, [10.0]).drop(columns="output_tokens"))
    # Only derived rows: nothing recorded, an empty plan with its columns.
    only_derived = rows("a", 4096.0, [10.0]).assign(derived=True)
    assert list(derivation_plan(only_derived).columns) == PLAN_COLUMNS
    # Two runs aggregated in one row are an aggregate, like more.
    two_runs = pd.concat(
        [rows("a", 1024.0, [10.0]), rows("a", 4096.0, [10.0, 20.0], n_runs=[1, 2])],
        ignore_index=True,
    )
    plan = derivation_plan(two_runs)
    assert plan_tuples(plan) == [("a", 2048.0, 4096.0, "skip")]
    # One unknown token count is enough to skip.
    one_unknown = pd.concat(
        [rows("a", 1024.0, [10.0]), rows("a", 4096.0, [10.0, np.nan])], ignore_index=True
    )
    plan = derivation_plan(one_unknown)
    assert plan_tuples(plan) == [("a", 2048.0, 4096.0, "skip")]
    assert plan["reason"].iloc[0] == "source cap 4096 has 1 rows with unknown output_tokens"
    # Any positive target below a cap counts, however small.
    tiny = pd.concat([rows("a", 1.0, [1.0]), rows("a", 4.0, [3.0])], ignore_index=True)
    assert plan_tuples(derivation_plan(tiny, budgets=[0.5, 2.0])) == [
        ("a", 0.5, 1.0, "derive"),
        ("a", 2.0, 4.0, "derive"),
    ]


def test_plan_is_sorted_and_derived_rows_keep_the_input_order() -> None:
    frame = pd.concat(
        [
            rows("b", 4096.0, [3000.0, 100.0]),
            rows("a", 4096.0, [100.0, 3000.0, 50.0]),
            rows("b", 1024.0, [10.0]),
            rows("a", 1024.0, [10.0]),
        ],
        ignore_index=True,
    )
    assert plan_tuples(derivation_plan(frame)) == [
        ("a", 2048.0, 4096.0, "derive"),
        ("b", 2048.0, 4096.0, "derive"),
    ]
    out = derive_caps(frame)
    assert out["model"].tolist() == ["b", "b", "a", "a", "a"]
    assert out["output_tokens"].tolist() == [2048.0, 100.0, 100.0, 2048.0, 50.0]


def test_nothing_to_derive_keeps_the_columns_and_types() -> None:
    frame = rows("a", 1024.0, [10.0, 20.0]).set_axis([7, 9])  # a non-default index
    empty = derive_caps(frame)
    assert list(empty.columns) == [*frame.columns, "derived", "source_budget"]
    assert empty["derived"].dtype == bool and empty["source_budget"].dtype == np.float64
    alone = with_derived_caps(frame)
    assert list(alone.columns) == [*frame.columns, "derived", "source_budget"]
    assert alone.index.tolist() == [0, 1]
