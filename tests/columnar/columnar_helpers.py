"""Shared helpers of the columnar tests: synthetic outcome frames with the frame's columns
and dtypes and the awkward cases the statistics must get right (NULL tokens, NULL budgets,
aggregated rows with fractional correct, a configuration whose tokens are all unknown,
dataset names that need encoding as folder names); random rows for the property tests; the
recorded datasets the equality tests import; the tolerances they share."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import strategies as st

from ponder.store.frame import FLOAT_COLUMNS, INT_COLUMNS
from ponder.types import OUTCOME_COLUMNS

# The frame's text columns: all but its numbers (float64) and counters (int64).
TEXT_COLUMNS = tuple(c for c in OUTCOME_COLUMNS if c not in (*FLOAT_COLUMNS, *INT_COLUMNS))
# The values of a row's unknowns: NaN numbers, no answer, no subject.
_UNKNOWN: dict[str, Any] = {
    **dict.fromkeys(FLOAT_COLUMNS, np.nan),
    "extracted_answer": None,
    "subject": None,
}
# Float sums added in another order than the rows (non-dyadic fractional correct, latency)
# are compared within this relative gap (accuracy and its interval, float statistics).
FLOAT_RTOL = 1e-12
# The columns that carry a sum of fractional correct values.
ACCURACY_COLUMNS = ["accuracy", "ci_low", "ci_high"]
# The recorded datasets the equality tests import (under ``shared_data``).
RECORDED_SOURCES = (
    "reasoning_budget_sweep/reasoning_budget_sweep_math500.csv",
    "reasoning_budget_sweep/reasoning_budget_sweep_aime.csv",
    "matharena_aime2025_I/per_problem_accuracy.csv",  # aggregated rows
    "mmlu_pro_math/mmlu_pro_math_per_model.csv",
    "routellm_gsm8k/gsm8k_responses.csv",
)


def recorded_sources(shared_data: Path) -> list[Path]:
    """The recorded datasets' files in the shared data folder."""
    return [shared_data / name for name in RECORDED_SOURCES]


def outcome_row(**values: Any) -> dict[str, Any]:
    """An outcome row in the frame's column order (list values: several rows): the values
    given, unknown for the numbers, answer and subject not given. The identifying columns
    (run, dataset, problem, model, mode, sample index, runs, budget kind) are required."""
    unexpected = set(values) - set(OUTCOME_COLUMNS)
    assert not unexpected, f"not outcome columns: {sorted(unexpected)}"
    return {c: values[c] if c in values else _UNKNOWN[c] for c in OUTCOME_COLUMNS}


def _with_nulls(rng: np.random.Generator, values: np.ndarray, share: float) -> np.ndarray:
    out = values.astype(np.float64)
    out[rng.random(len(out)) < share] = np.nan
    return out


def sample_rows(rng: np.random.Generator, dataset: str, n_problems: int) -> pd.DataFrame:
    """Samples (n_runs = 1) of 3 models x (2 capped budgets + no budget) x 4 seeds."""
    configs = [("think", 256.0, "hard_cap"), ("think", 1024.0, "hard_cap")]
    configs.append(("no-think", np.nan, "none"))
    parts = []
    for m in range(3):
        for mode, budget, kind in configs:
            problem, seed = np.meshgrid(np.arange(n_problems), np.arange(4), indexing="ij")
            n = problem.size
            length = rng.integers(20, 2000, n)
            cap = budget if budget == budget else 4096.0
            output = np.minimum(length, cap)
            truncated = (length > cap).astype(np.float64)
            right = (rng.random(n) < 0.6) & (truncated == 0)
            answer_code = np.where(truncated == 1, -1, np.where(right, 0, rng.integers(1, 4, n)))
            unknown_tokens = m == 2 and mode == "no-think"  # a config with no token counts
            output_f = np.full(n, np.nan) if unknown_tokens else _with_nulls(rng, output, 0.1)
            answer = np.minimum(output, 40)
            parts.append(
                pd.DataFrame(
                    {
                        "run_id": f"{dataset}/m{m}/{mode}",
                        "dataset": dataset,
                        "problem_id": [f"p{p:03d}" for p in problem.ravel()],
                        "model": f"org/model {m}",
                        "mode": mode,
                        "budget": budget,
                        "sample_idx": seed.ravel().astype(np.int64),
                        "prompt_tokens": _with_nulls(rng, rng.integers(50, 90, n), 0.2),
                        "reasoning_tokens": _with_nulls(rng, output - answer, 0.3),
                        "answer_tokens": _with_nulls(rng, answer, 0.3),
                        "output_tokens": output_f,
                        "latency_s": _with_nulls(rng, output / 57.0 + rng.random(n), 0.25),
                        "truncated": _with_nulls(rng, truncated, 0.05),
                        "answered": _with_nulls(rng, (answer_code >= 0).astype(float), 0.05),
                        "extracted_answer": [
                            None if c < 0 else f"ans{c}" for c in answer_code.tolist()
                        ],
                        "correct": right.astype(np.float64),
                        "n_runs": np.int64(1),
                        "budget_kind": kind,
                        "level": np.float64(m + 1),
                        "subject": None,
                    }
                )
            )
    return pd.concat(parts, ignore_index=True)


def aggregated_rows(rng: np.random.Generator, dataset: str, n_problems: int) -> pd.DataFrame:
    """Aggregated rows (n_runs > 1): fractional correct, no budget, no tokens; two runs per
    (problem, model), so a group sums two fractions."""
    rows = []
    for run in range(2):
        for m in range(2):
            for p in range(n_problems):
                n_runs = int(rng.integers(2, 8))
                rows.append(
                    outcome_row(
                        run_id=f"{dataset}/agg{run}/m{m}",
                        dataset=dataset,
                        problem_id=f"q{p}",
                        model=f"agg-{m}",
                        mode="default",
                        sample_idx=0,
                        output_tokens=float(rng.integers(100, 900)) if p % 3 == 0 else np.nan,
                        correct=int(rng.integers(0, n_runs + 1)) / n_runs,
                        n_runs=n_runs,
                        budget_kind="unspecified",
                        subject="algebra" if p % 2 else None,
                    )
                )
    return pd.DataFrame(rows)


def synthetic_frame(seed: int = 0) -> pd.DataFrame:
    """About 2,000 rows over three datasets, with the outcome frame's dtypes."""
    rng = np.random.default_rng(seed)
    frame = pd.concat(
        [
            sample_rows(rng, "alpha", 20),
            sample_rows(rng, "beta/two words", 12),
            aggregated_rows(rng, "gamma", 15),
        ],
        ignore_index=True,
    )
    order = rng.permutation(len(frame))  # rows of datasets interleaved, as a store holds them
    return with_frame_dtypes(frame.iloc[order].reset_index(drop=True))


def with_frame_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """The outcome frame's dtypes: numbers float64 (NaN for NULL), counters int64, text str."""
    frame = frame.copy()
    for column in FLOAT_COLUMNS:
        frame[column] = frame[column].astype("float64")
    for column in INT_COLUMNS:
        frame[column] = frame[column].astype("int64")
    for column in TEXT_COLUMNS:
        frame[column] = frame[column].astype("str")
    return frame


def drawn_rows(
    draw: Any, n_runs: Sequence[int], **columns: st.SearchStrategy[Any]
) -> list[dict[str, Any]]:
    """1 to 40 random rows: two datasets, few problems, models and budgets (None: no budget),
    runs per row from ``n_runs`` (1: a sample), ``hits`` of 0 to 7, then ``columns``."""
    n = draw(st.integers(1, 40))
    row = st.fixed_dictionaries(
        {
            "dataset": st.sampled_from(["d1", "d2"]),
            "problem": st.integers(0, 4),
            "model": st.sampled_from(["m0", "m1"]),
            "budget": st.sampled_from([None, 64, 128]),
            "n_runs": st.sampled_from(list(n_runs)),
            "hits": st.integers(0, 7),
            **columns,
        }
    )
    return list(draw(st.lists(row, min_size=n, max_size=n)))


def drawn_record(i: int, r: dict[str, Any], **values: Any) -> dict[str, Any]:
    """The outcome row of the ``i``-th drawn row ``r``: its configuration, ``hits`` of its
    runs right (at most all), ``values`` for the other columns."""
    return outcome_row(
        run_id=f"{r['dataset']}/{r['model']}/{r['budget']}/{r['n_runs']}",
        dataset=r["dataset"],
        problem_id=f"p{r['problem']}",
        model=r["model"],
        mode="think",
        budget=np.nan if r["budget"] is None else r["budget"],
        sample_idx=i,
        correct=min(r["hits"], r["n_runs"]) / r["n_runs"],
        n_runs=r["n_runs"],
        budget_kind="none" if r["budget"] is None else "hard_cap",
        **values,
    )


def by_dataset(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows in the order segments give them back: by dataset, write order within one."""
    return frame.sort_values("dataset", kind="stable").reset_index(drop=True)
