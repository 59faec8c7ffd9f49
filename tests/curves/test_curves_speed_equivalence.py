"""The fast curve code against straightforward references, on small random frames.

The codes, unique pairs, budget kinds and difficulty bins are compared with plain pandas
groupbys and ``np.unique``; cell intervals with a brute-force bootstrap over rows;
pass@k and maj@k with a loop over every subset; ``compute_curves`` (one factorization
shared by every table) with the tables computed one by one. Where the computation is
deterministic the comparison is exact.
"""

from __future__ import annotations

import zlib
from collections import Counter
from itertools import combinations
from math import comb
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ponder.curves._frame as frame_module
from ponder.curves import (
    ProblemResampler,
    cell_bootstrap,
    compute_curves,
    derivation_plan,
    difficulty_bins,
    difficulty_table,
    maj_at_k_table,
    pass_at_k_table,
    with_derived_caps,
)
from ponder.curves._frame import (
    CELL_KEYS,
    cell_codes,
    problem_codes,
    sorted_unique,
    unique_pairs,
)
from ponder.curves.aggregate import _budget_kind
from ponder.curves.passk import unique_rows
from ponder.types import OUTCOME_COLUMNS

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def frames(draw: Any, *, missing_keys: bool = True, as_object: bool | None = None) -> pd.DataFrame:
    """A small outcome frame: a few models, datasets, budgets (NaN too), problems, samples."""
    n = draw(st.integers(1, 60))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)

    def pick(values: list[Any], p_missing: float = 0.0) -> list[Any]:
        out = [values[i] for i in rng.integers(0, len(values), n)]
        if missing_keys and p_missing:
            out = [None if rng.random() < p_missing else v for v in out]
        return out

    frame = pd.DataFrame(
        {
            "run_id": "run",
            "dataset": pick(["d1", "d2", "aime"], 0.03),
            "problem_id": pick([f"p{i}" for i in range(6)], 0.05),
            "model": pick(["m-b", "m-a", "Z"], 0.03),
            "mode": pick(["think", "no-think"], 0.03),
            "budget": pick([512.0, 1024.0, 4096.0, np.nan]),
            "sample_idx": rng.integers(0, 4, n),
            "prompt_tokens": np.nan,
            "reasoning_tokens": np.nan,
            "answer_tokens": np.nan,
            "output_tokens": np.where(
                rng.random(n) < 0.1, np.nan, rng.integers(10, 5000, n).astype(float)
            ),
            "latency_s": np.nan,
            "truncated": pick([0.0, 1.0, np.nan]),
            "answered": pick([0.0, 1.0, np.nan]),
            "extracted_answer": pick(["1", "2", " 2 ", "", "3", None]),
            "correct": pick([0.0, 1.0, 1.0, np.nan]),
            "n_runs": 1,
            "budget_kind": pick(["hard_cap", "hard_cap", "none", None], 0.0),
            "level": pick([1.0, 2.0, 3.0, np.nan]),
            "subject": None,
        }
    )[list(OUTCOME_COLUMNS)]
    if draw(st.booleans()):  # some aggregated rows with fractional correctness
        agg = rng.random(n) < 0.15
        frame.loc[agg, "n_runs"] = 3
        frame.loc[agg, "correct"] = 1.0 / 3.0
    if as_object if as_object is not None else draw(st.booleans()):
        for name in ["dataset", "problem_id", "model", "mode", "budget_kind"]:
            frame[name] = frame[name].astype(object)
    return frame


def _ngroup(frame: pd.DataFrame, keys: list[str], dropna: bool) -> np.ndarray:
    codes = frame.groupby(keys, dropna=dropna, sort=True).ngroup().to_numpy(dtype=float)
    return np.where(np.isnan(codes), -1, codes).astype(np.int64)


@SETTINGS
@given(frames())
def test_cell_and_problem_codes_equal_groupby_ngroup(frame: pd.DataFrame) -> None:
    codes, keys = cell_codes(frame)
    np.testing.assert_array_equal(codes, _ngroup(frame, CELL_KEYS, dropna=False))
    grouped = frame.groupby(CELL_KEYS, dropna=False, sort=True)
    expected = grouped.size().index.to_frame(index=False)
    expected["budget"] = expected["budget"].astype("float64")
    pd.testing.assert_frame_equal(keys, expected)

    codes, pairs = problem_codes(frame)
    np.testing.assert_array_equal(codes, _ngroup(frame, ["dataset", "problem_id"], dropna=True))
    expected = frame.groupby(["dataset", "problem_id"], sort=True).size()
    pd.testing.assert_frame_equal(pairs, expected.index.to_frame(index=False))


@SETTINGS
@given(
    st.one_of(
        st.lists(st.integers(-(2**40), 2**40), max_size=200),
        st.lists(st.integers(0, 300), max_size=200),  # the presence-table path
    )
)
def test_sorted_unique_equals_np_unique(values: list[int]) -> None:
    key = np.asarray(values, dtype=np.int64)
    uniq, inverse = sorted_unique(key)
    ref_uniq, ref_inverse = np.unique(key, return_inverse=True)
    np.testing.assert_array_equal(uniq, ref_uniq)
    np.testing.assert_array_equal(inverse, ref_inverse.reshape(-1))
    left, right = np.abs(key) % 7, np.abs(key) % 5
    pl, pr, inv = unique_pairs(left, right, 5)
    ref = sorted(set(zip(left.tolist(), right.tolist(), strict=True)))
    assert list(zip(pl.tolist(), pr.tolist(), strict=True)) == ref
    assert [ref[i] for i in inv.tolist()] == list(zip(left.tolist(), right.tolist(), strict=True))


@SETTINGS
@given(st.lists(st.lists(st.integers(0, 3), min_size=4, max_size=4), max_size=80))
def test_unique_rows_equals_np_unique_axis0(rows: list[list[int]]) -> None:
    table = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
    got, inverse = unique_rows(table)
    if len(table) == 0:
        assert len(got) == 0 and len(inverse) == 0
        return
    ref, ref_inverse = np.unique(table, axis=0, return_inverse=True)
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(inverse, ref_inverse.reshape(-1))


def reference_budget_kind(frame: pd.DataFrame, codes: np.ndarray, n_cells: int) -> list[str]:
    """Distinct (cell, kind) rows by drop_duplicates, then first / size per cell."""
    kinds = pd.DataFrame({"_cell": codes, "kind": frame["budget_kind"].astype(str).to_numpy()})
    uniq = kinds.drop_duplicates()
    counts = uniq.groupby("_cell")["kind"].agg(["first", "size"]).reindex(range(n_cells))
    labels = np.where(counts["size"].to_numpy() > 1, "mixed", counts["first"].to_numpy())
    return [str(x) for x in labels]


@SETTINGS
@given(frames())
def test_budget_kind_equals_drop_duplicates_reference(frame: pd.DataFrame) -> None:
    codes, keys = cell_codes(frame)
    got = _budget_kind(frame, codes, len(keys))
    assert got == reference_budget_kind(frame, codes, len(keys))


def reference_difficulty_bins(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-problem level and solve rate by a groupby over the string keys, then terciles."""
    recorded = frame.loc[~frame.get("derived", pd.Series(False, index=frame.index)).astype(bool)]
    is_sample = (recorded["n_runs"] == 1).to_numpy()
    with_samples = set(recorded.loc[is_sample, "dataset"])
    recorded = recorded[is_sample | ~recorded["dataset"].isin(with_samples).to_numpy()]
    per_problem = (
        recorded.assign(level=recorded["level"].astype(float))
        .groupby(["dataset", "problem_id"], sort=True)
        .agg(level=("level", "max"), solve_rate=("correct", "mean"))
        .reset_index()
    )
    by_level = (
        per_problem.groupby("dataset")["level"]
        .transform(lambda s: bool(s.notna().all()))
        .to_numpy(dtype=bool)
    )
    pct = per_problem.groupby("dataset")["solve_rate"].rank(method="average", pct=True)
    pct_arr = pct.to_numpy(dtype=np.float64)
    tercile = np.where(pct_arr > 2.0 / 3.0, 0, np.where(pct_arr > 1.0 / 3.0, 1, 2))
    level = per_problem["level"].to_numpy(dtype=np.float64)
    out = per_problem[["dataset", "problem_id"]].copy()
    out["difficulty_source"] = np.where(by_level, "level", "solve_rate")
    names = np.asarray(
        [f"{v:g}" if np.isfinite(v) else "unknown" for v in level.tolist()], dtype=object
    )
    out["difficulty"] = np.where(
        by_level, names, np.asarray(["easy", "medium", "hard"], dtype=object)[tercile]
    )
    out["difficulty_rank"] = np.where(by_level, level, tercile.astype(np.float64))
    return out


@SETTINGS
@given(frames(as_object=False))
def test_difficulty_bins_equal_groupby_reference(frame: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(difficulty_bins(frame), reference_difficulty_bins(frame))


def _reference_counts(n_problems: int, n_boot: int, seed: int, dataset: str) -> np.ndarray:
    """W drawn exactly as documented: one generator per (seed, dataset), n draws per resample."""
    rng = np.random.default_rng([seed, zlib.crc32(dataset.encode("utf-8"))])
    drawn = rng.integers(0, n_problems, size=(n_boot, n_problems), dtype=np.int64)
    return np.stack([np.bincount(row, minlength=n_problems) for row in drawn])


def _linear_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, len(ordered) - 1)
    frac = pos - lo
    a, b = ordered[lo], ordered[hi]
    return a + (b - a) * frac if frac > 0 else a


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames(missing_keys=False, as_object=False), st.integers(0, 5))
def test_cell_intervals_equal_a_brute_force_bootstrap(frame: pd.DataFrame, seed: int) -> None:
    frame = frame[frame["n_runs"] == 1].reset_index(drop=True)
    n_boot = 40
    result = cell_bootstrap(frame, n_boot=n_boot, seed=seed)
    table = result.table
    known = frame[frame["correct"].notna()]
    plain = frame.groupby(CELL_KEYS, dropna=False, sort=True)["correct"].mean()
    np.testing.assert_array_equal(table["accuracy"].to_numpy(), plain.to_numpy())
    n_problems = known.groupby(CELL_KEYS, dropna=False, sort=True)["problem_id"].nunique()
    n_problems = n_problems.reindex(plain.index, fill_value=0)
    np.testing.assert_array_equal(table["n_problems"].to_numpy(), n_problems.to_numpy())

    universes = {d: sorted(set(g["problem_id"])) for d, g in frame.groupby("dataset", sort=True)}
    weights = {d: _reference_counts(len(u), n_boot, seed, d) for d, u in universes.items()}
    for i, row in table.iterrows():
        cell = known[
            (known["model"] == row["model"])
            & (known["dataset"] == row["dataset"])
            & (known["mode"] == row["mode"])
            & (
                (known["budget"] == row["budget"])
                | (known["budget"].isna() & np.isnan(row["budget"]))
            )
        ]
        universe = universes[row["dataset"]]
        w = weights[row["dataset"]]
        reps = []
        for b in range(n_boot):
            num = den = 0.0
            for _, r in cell.iterrows():  # brute force: every row weighs W[b, its problem]
                weight = float(w[b, universe.index(r["problem_id"])])
                num += weight * r["correct"]
                den += weight
            reps.append(num / den if den > 0 else np.nan)
        got = result.replicates[:, i]
        np.testing.assert_array_equal(got, np.asarray(reps))
        if row["ci_method"] == "percentile":
            finite = [x for x in reps if not np.isnan(x)]
            assert row["ci_low"] == _linear_quantile(finite, 0.025)
            assert row["ci_high"] == _linear_quantile(finite, 0.975)


def _cells(frame: pd.DataFrame) -> dict[tuple[Any, ...], pd.DataFrame]:
    samples = frame[(frame["n_runs"] == 1) & frame["correct"].notna()]
    return {_key(*key): cell for key, cell in samples.groupby(CELL_KEYS, dropna=False, sort=True)}


def _key(*key: Any) -> tuple[Any, ...]:
    """A cell key usable in a dict: a NaN budget becomes "none" (NaN != NaN)."""
    return tuple("none" if isinstance(v, float) and np.isnan(v) else v for v in key)


@SETTINGS
@given(frames(missing_keys=False, as_object=False))
def test_pass_at_k_equals_the_binomial_formula(frame: pd.DataFrame) -> None:
    table = pass_at_k_table(frame, n_boot=20)
    expected = {}
    for key, cell in _cells(frame).items():
        per_problem = cell.groupby("problem_id")["correct"].agg(["size", "sum"])
        for k in range(1, int(per_problem["size"].max()) + 1):
            vals = [
                1.0 - comb(int(n) - int(c), k) / comb(int(n), k)
                for n, c in per_problem.itertuples(index=False)
                if n >= k
            ]
            expected[(*key, k)] = (np.mean(vals), len(vals))
    assert len(table) == len(expected)
    for row in table.itertuples(index=False):
        value, count = expected[_key(row.model, row.dataset, row.mode, row.budget, row.k)]
        assert row.value == pytest.approx(value, rel=1e-12, abs=1e-15)
        assert row.n_problems == count


def _majority(answers: list[str | None], right: set[str]) -> float:
    votes = Counter(a for a in answers if a)
    if not votes:
        return 0.0
    top = max(votes.values())
    tied = [a for a, v in votes.items() if v == top]
    return sum(a in right for a in tied) / len(tied)


@SETTINGS
@given(frames(missing_keys=False, as_object=False))
def test_maj_at_k_equals_a_loop_over_every_subset(frame: pd.DataFrame) -> None:
    table = maj_at_k_table(frame, n_boot=20)
    expected = {}
    for key, cell in _cells(frame).items():
        per_k: dict[int, list[float]] = {}
        for _, samples in cell.groupby("problem_id"):
            answers = [
                None if a is None or pd.isna(a) else a.strip() for a in samples["extracted_answer"]
            ]
            answers = [a if a else None for a in answers]
            right = {a for a, c in zip(answers, samples["correct"], strict=True) if a and c == 1}
            n = len(answers)
            for k in range(1, n + 1):
                scores = [
                    _majority([answers[i] for i in subset], right)
                    for subset in combinations(range(n), k)
                ]
                per_k.setdefault(k, []).append(float(np.mean(scores)))
        for k, vals in per_k.items():
            expected[(*key, k)] = np.mean(vals)
    assert len(table) == len(expected)
    for row in table.itertuples(index=False):
        assert row.value == pytest.approx(
            expected[_key(row.model, row.dataset, row.mode, row.budget, row.k)], abs=1e-12
        )


@SETTINGS
@given(frames(), st.booleans())
def test_compute_curves_equals_the_tables_computed_one_by_one(
    frame: pd.DataFrame, derive: bool
) -> None:
    """One shared factorization gives exactly what each table gives on its own."""
    curves = compute_curves(frame, n_boot=30, seed=3, derive=derive)
    full = with_derived_caps(frame) if derive else frame
    if derive:
        pd.testing.assert_frame_equal(curves.derivations, derivation_plan(frame), check_exact=True)
    resampler = ProblemResampler.from_frame(full, n_boot=30, seed=3)
    pd.testing.assert_frame_equal(
        curves.cells, cell_bootstrap(full, resampler=resampler).table, check_exact=True
    )
    pd.testing.assert_frame_equal(
        curves.pass_at_k, pass_at_k_table(full, resampler=resampler), check_exact=True
    )
    pd.testing.assert_frame_equal(
        curves.maj_at_k, maj_at_k_table(full, resampler=resampler), check_exact=True
    )
    kept = full[full["dataset"].notna() & full["problem_id"].notna()]
    pd.testing.assert_frame_equal(
        curves.difficulty, difficulty_table(kept, resampler=resampler), check_exact=True
    )


def test_compute_curves_factorizes_the_string_keys_once(
    make_grid: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cell and problem keys are coded once and shared by every table (they were coded
    again by each of the four tables)."""
    calls: Counter[str] = Counter()
    for name in ("cell_codes", "problem_codes"):
        original = getattr(frame_module, name)

        def counted(frame: pd.DataFrame, *args: Any, _f: Any = original, _n: str = name) -> Any:
            calls[_n] += 1
            return _f(frame, *args)

        monkeypatch.setattr(frame_module, name, counted)
    frame = make_grid(models=("a", "b"), budgets=(1024.0, 4096.0))
    frame["extracted_answer"] = np.where(frame["correct"] == 1, "42", "7")
    compute_curves(frame, n_boot=20)
    assert calls == Counter({"cell_codes": 1, "problem_codes": 1})


def test_compute_curves_never_loops_over_a_string_column_row_by_row(
    make_grid: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Python iteration over a whole Arrow string column (difficulty bins did one)."""
    from pandas.arrays import ArrowStringArray

    frame = make_grid(n_problems=60, n_seeds=4, models=("a", "b"), budgets=(1024.0, 4096.0))
    frame["extracted_answer"] = np.where(frame["correct"] == 1, "42", "7")
    frame["level"] = np.nan
    assert isinstance(frame["dataset"].array, ArrowStringArray)
    lengths: list[int] = []
    original = ArrowStringArray.__iter__

    def counted(self: ArrowStringArray) -> Any:
        lengths.append(len(self))
        return original(self)

    monkeypatch.setattr(ArrowStringArray, "__iter__", counted)
    compute_curves(frame, n_boot=20)
    assert max(lengths, default=0) < len(frame) // 4


def test_a_row_without_dataset_gets_no_interval_instead_of_a_key_error(make_grid: Any) -> None:
    """A cell whose rows lack a dataset cannot be resampled; it used to raise KeyError 'nan'."""
    frame = make_grid(n_problems=10, n_seeds=2, budgets=(1024.0,))
    frame.loc[:3, "dataset"] = None
    curves = compute_curves(frame, n_boot=20, derive=False)
    cells = curves.cells
    lost = cells[cells["dataset"].isna()].iloc[0]
    assert lost["n_samples"] == 4 and lost["ci_method"] == "none"
    assert lost["accuracy"] == frame.loc[:3, "correct"].mean()
    assert np.isnan(lost["ci_low"]) and np.isnan(lost["ci_high"])
    kept = cells[cells["dataset"].notna()].iloc[0]
    assert kept["n_samples"] == len(frame) - 4 and kept["ci_method"] != "none"
