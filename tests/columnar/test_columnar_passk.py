"""pass@k, maj@k and the difficulty bins and table from the sufficient statistics (and the
answer counts, the problems' levels) equal today's tables of the rows: same rows, order,
dtypes and values, through frame -> statistics and Parquet -> DuckDB -> statistics, on
synthetic rows, the built-in sweep, the recorded datasets and random frames.

pass@k and maj@k read integer counts only, so they are equal exactly everywhere. The
difficulty table averages ``correct``: exact where the sums are (0/1 correct, dyadic
fractions); other fractions of aggregated rows are summed in another order, so there its
accuracy and interval may differ in the last bits (compared within a relative 1e-12, as for
the cells). Solve rates of a dataset without samples are such sums too: two rates tied in
one path could differ by a bit in the other and fall into other terciles, so the random
fractional frames give every dataset a sample (the recorded MathArena quarters are exact)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from columnar_helpers import (
    ACCURACY_COLUMNS,
    FLOAT_RTOL,
    drawn_record,
    drawn_rows,
    outcome_row,
    recorded_sources,
    synthetic_frame,
    with_frame_dtypes,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from ponder.builtin import builtin_folder
from ponder.columnar import (
    answers_from_frame,
    answers_from_parquet,
    difficulty_bins_from_stats,
    difficulty_table_from_stats,
    maj_at_k_from_stats,
    pass_at_k_from_stats,
    problem_levels,
    stats_from_frame,
    stats_from_parquet,
    write_segments,
)
from ponder.curves import (
    ProblemResampler,
    compute_curves,
    difficulty_bins,
    difficulty_table,
    maj_at_k_table,
    pass_at_k_table,
)
from ponder.errors import InputError
from ponder.grading import normalize_answer
from ponder.importers import import_paths
from ponder.store import Store

Normalize = Callable[[str], str]


def assert_same(got: pd.DataFrame, want: pd.DataFrame, *, rtol: float = 0.0) -> None:
    """Equal exactly (columns, order, dtypes, values); with ``rtol``, the accuracy and its
    interval within it and everything else exact but ``ci_method``: today's degeneracy test
    (all resamples equal) can flip on a last bit between "wilson" and "percentile+wilson",
    which are then the same interval (the Wilson one), so only that flip is allowed."""
    if rtol == 0.0:
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        return
    exact = [c for c in want.columns if c not in (*ACCURACY_COLUMNS, "ci_method")]
    pd.testing.assert_frame_equal(got[exact], want[exact], check_exact=True)
    for name in ACCURACY_COLUMNS:
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=0)
    flipped = got["ci_method"] != want["ci_method"]
    assert got["ci_method"][flipped].str.contains("wilson").all()
    assert want["ci_method"][flipped].str.contains("wilson").all()


def tables_of_rows(frame: pd.DataFrame, normalize: Normalize, **options: Any) -> dict[str, Any]:
    """Today's tables, from the rows."""
    return {
        "pass": pass_at_k_table(frame, **options),
        "maj": maj_at_k_table(frame, normalize=normalize, **options),
        "bins": difficulty_bins(frame),
        "difficulty": difficulty_table(frame, **options),
    }


def tables_of_stats(
    stats: pd.DataFrame, answers: pd.DataFrame, levels: pd.DataFrame | None, **options: Any
) -> dict[str, Any]:
    """The same tables from the statistics, the answer counts and the levels."""
    return {
        "pass": pass_at_k_from_stats(stats, **options),
        "maj": maj_at_k_from_stats(stats, answers, **options),
        "bins": difficulty_bins_from_stats(stats, levels),
        "difficulty": difficulty_table_from_stats(stats, levels, **options),
    }


def assert_both_paths(
    frame: pd.DataFrame,
    root: Path,
    *,
    normalize: Normalize = normalize_answer,
    levels: pd.DataFrame | None = None,
    rtol: float = 0.0,
    **options: Any,
) -> dict[str, Any]:
    """Every table via frame -> statistics and via segments -> DuckDB equals the rows';
    ``levels`` as the Parquet path gets them (default: the frame's). Returns the rows'."""
    want = tables_of_rows(frame, normalize, **options)
    levels = problem_levels(frame) if levels is None else levels
    via_frame = tables_of_stats(
        stats_from_frame(frame),
        answers_from_frame(frame, normalize),
        problem_levels(frame),
        **options,
    )
    write_segments(root, frame)
    via_parquet = tables_of_stats(
        stats_from_parquet(root), answers_from_parquet(root, normalize=normalize), levels, **options
    )
    for name, table in want.items():
        tolerance = rtol if name == "difficulty" else 0.0
        assert_same(via_frame[name], table, rtol=tolerance)
        assert_same(via_parquet[name], table, rtol=tolerance)
    return want


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    return synthetic_frame(seed=5)


def test_answer_counts_by_hand(tmp_path: Path) -> None:
    answers = [" 42 ", "42.0", "$42$", "7", "", None, "7"]
    rows = outcome_row(
        run_id="r",
        dataset="d",
        problem_id="p",
        model="m",
        mode="think",
        budget=64.0,
        sample_idx=range(7),
        answered=[1.0, 1.0, 1.0, 1.0, 0.0, 0.0, np.nan],
        extracted_answer=answers,
        correct=[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        n_runs=1,
        budget_kind="hard_cap",
    )
    frame = with_frame_dtypes(pd.DataFrame(rows))
    calls: list[str] = []

    def counting(raw: str) -> str:
        calls.append(raw)
        return normalize_answer(raw)

    table = answers_from_frame(frame, counting)
    assert sorted(calls) == sorted({a for a in answers if a is not None})  # once per distinct
    got = table[["answer", "answered", "rows", "correct_n", "right"]]
    want = pd.DataFrame(
        {
            "answer": ["42", "7", "7", np.nan],  # " 42 ", "42.0", "$42$" are one answer
            "answered": [1.0, 1.0, np.nan, 0.0],  # "" and None do not vote
            "rows": [3, 1, 1, 2],
            "correct_n": [3, 1, 1, 2],
            "right": [True, False, False, False],  # one of the three 42s was graded right
        }
    ).astype({"answer": "str"})
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    write_segments(tmp_path, frame)
    calls.clear()
    pd.testing.assert_frame_equal(answers_from_parquet(tmp_path, normalize=counting), table)
    assert sorted(calls) == sorted({a for a in answers if a is not None})
    # maj@k of the counts is the rows': 3 votes for a right 42 against 2 for a wrong 7.
    assert_same(
        maj_at_k_from_stats(stats_from_frame(frame), table, n_boot=50),
        maj_at_k_table(frame, normalize=normalize_answer, n_boot=50),
    )


def test_answer_counts_frame_and_parquet_agree(synthetic: pd.DataFrame, tmp_path: Path) -> None:
    for i, chunk in enumerate(np.array_split(np.arange(len(synthetic)), 3)):
        write_segments(tmp_path, synthetic.iloc[chunk], segment_id=f"part{i}")
    for normalize in (str.strip, normalize_answer):
        want = answers_from_frame(synthetic, normalize)
        pd.testing.assert_frame_equal(answers_from_parquet(tmp_path, normalize=normalize), want)
        assert int(want["rows"].sum()) == len(synthetic)
    assert want["answer"].isna().any() and (~want["sample"]).any()
    empty = answers_from_parquet(tmp_path / "none")
    pd.testing.assert_frame_equal(empty, answers_from_frame(synthetic.iloc[:0]))


def test_synthetic_rows_equal_through_both_paths(synthetic: pd.DataFrame, tmp_path: Path) -> None:
    # Its aggregated rows hold fractions like 2/7: the difficulty accuracy and CI within
    # FLOAT_RTOL. Dataset gamma has no samples, so its solve rates are such sums too; they
    # rank alike here (a last-bit difference could only matter between tied rates).
    want = assert_both_paths(synthetic, tmp_path / "a", n_boot=300, seed=9, rtol=FLOAT_RTOL)
    assert set(want["bins"]["difficulty_source"]) == {"level", "solve_rate"}
    assert want["maj"]["exact"].all() and want["pass"]["k"].max() == 4
    # Few subsets: maj@k's Monte-Carlo branch, drawn from the same seeds in both paths.
    stats, answers = stats_from_frame(synthetic), answers_from_frame(synthetic, str.strip)
    sampled = maj_at_k_from_stats(stats, answers, n_boot=100, seed=2, max_subsets=3)
    assert not sampled["exact"].all()
    want_sampled = maj_at_k_table(synthetic, normalize=str.strip, n_boot=100, seed=2, max_subsets=3)
    assert_same(sampled, want_sampled)


def test_builtin_sweep_equals_todays_tables(tmp_path: Path) -> None:
    with Store(tmp_path / "store.sqlite") as store:
        import_paths(store, [builtin_folder()])
        frame = store.outcomes_frame()
        levels = store.problems_frame()
    want = assert_both_paths(frame, tmp_path / "segments", levels=levels, n_boot=400, seed=1)
    assert (want["bins"]["difficulty_source"] == "level").all()
    # What `ponder curves` shows (nothing derived here: forced budgets). It draws maj@k's
    # subsets from seed 0 whatever the bootstrap's seed: a shared resampler does the same.
    curves = compute_curves(frame, n_boot=400, seed=1, normalize=normalize_answer)
    assert_same(curves.pass_at_k, want["pass"])
    assert_same(curves.difficulty, want["difficulty"])
    stats = stats_from_frame(frame)
    resampler = ProblemResampler.from_frame(stats, n_boot=400, seed=1)
    majority = maj_at_k_from_stats(stats, answers_from_frame(frame), seed=0, resampler=resampler)
    assert_same(majority, curves.maj_at_k)


def test_recorded_datasets_equal_todays_tables(shared_data: Path, tmp_path: Path) -> None:
    with Store(tmp_path / "store.sqlite") as store:
        import_paths(store, recorded_sources(shared_data))
        frame = store.outcomes_frame()
        levels = store.problems_frame()
    want = assert_both_paths(frame, tmp_path / "segments", levels=levels, n_boot=200, seed=0)
    assert set(want["pass"]["dataset"]) == {"math500", "aime24", "aime25", "mmlu_pro_math", "gsm8k"}
    assert set(want["bins"]["difficulty_source"]) == {"level", "solve_rate"}
    # `ponder curves` adds derived caps; its recorded cells are these tables.
    curves = compute_curves(frame, n_boot=200, seed=0, normalize=normalize_answer)
    full = {"pass": curves.pass_at_k, "maj": curves.maj_at_k, "difficulty": curves.difficulty}
    for name, table in full.items():
        assert table["derived"].any()
        assert_same(table[~table["derived"]].reset_index(drop=True), want[name])


def test_mismatched_inputs_are_refused(synthetic: pd.DataFrame, tmp_path: Path) -> None:
    stats, answers = stats_from_frame(synthetic), answers_from_frame(synthetic)
    alpha = synthetic[synthetic["dataset"] == "alpha"]
    with pytest.raises(InputError, match="a cell the statistics lack"):
        maj_at_k_from_stats(stats_from_frame(alpha), answers, n_boot=10)
    with pytest.raises(InputError, match="not of the same rows"):
        maj_at_k_from_stats(stats, answers_from_frame(synthetic.iloc[5:]), n_boot=10)
    with pytest.raises(InputError, match="lacks column"):
        pass_at_k_from_stats(stats.drop(columns="hits"))
    with pytest.raises(InputError, match="lacks column"):
        difficulty_table_from_stats(stats.drop(columns="correct_sum"))
    zero = synthetic.assign(n_runs=np.where(np.arange(len(synthetic)) == 3, 0, synthetic["n_runs"]))
    for summarise in (stats_from_frame, answers_from_frame):
        with pytest.raises(InputError, match="n_runs"):
            summarise(zero)
    with pytest.raises(InputError, match="n_runs"):
        write_segments(tmp_path, zero)


@st.composite
def random_frames(draw: Any, runs: list[int], *, samples_everywhere: bool = False) -> pd.DataFrame:
    """Random outcome rows with answers: two datasets (levels known for all problems of d1,
    for some of d2), few problems, models and budgets, samples and aggregated rows with
    ``runs`` runs (2, 4: dyadic fractions, exact sums; 3, 7: not), NULL and blank answers,
    answers that normalize alike.

    ``samples_everywhere`` makes each dataset's first row a sample, so solve rates (from
    samples where a dataset has them) are exact: ranks of inexact sums could tie apart."""
    drawn = drawn_rows(
        draw,
        [1, 1, 1, *runs],
        answer=st.sampled_from([None, "", "1", " 1", "1.0", "2", "x"]),
        answered=st.sampled_from([None, 0, 1]),
    )
    if samples_everywhere:
        for dataset in {r["dataset"] for r in drawn}:
            next(r for r in drawn if r["dataset"] == dataset)["n_runs"] = 1
    records = [
        drawn_record(
            i,
            r,
            answered=np.nan if r["answered"] is None else r["answered"],
            extracted_answer=r["answer"],
            level=float(1 + r["problem"] % 3)
            if r["dataset"] == "d1" or r["problem"] < 2
            else np.nan,
        )
        for i, r in enumerate(drawn)
    ]
    return with_frame_dtypes(pd.DataFrame(records))


@settings(max_examples=50, deadline=None)
@given(frame=random_frames(runs=[2, 4]), seed=st.integers(0, 2**16))
def test_random_frames_equal_exactly(frame: pd.DataFrame, seed: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        assert_both_paths(frame, Path(folder), n_boot=40, seed=seed)


@settings(max_examples=30, deadline=None)
@given(frame=random_frames(runs=[3, 7], samples_everywhere=True), seed=st.integers(0, 2**16))
def test_random_fractions_equal_within_summation_order(frame: pd.DataFrame, seed: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        assert_both_paths(
            frame, Path(folder), normalize=str.strip, n_boot=40, seed=seed, rtol=FLOAT_RTOL
        )
