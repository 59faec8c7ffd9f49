"""Synthetic outcome frames for the columnar tests: the frame's columns and dtypes, with the
awkward cases the statistics must get right (NULL tokens, NULL budgets, aggregated rows with
fractional correct, a configuration whose tokens are all unknown, dataset names that need
encoding as folder names)."""

from __future__ import annotations

import numpy as np
import pandas as pd

NUMBER_COLUMNS = (
    "budget",
    "prompt_tokens",
    "reasoning_tokens",
    "answer_tokens",
    "output_tokens",
    "latency_s",
    "truncated",
    "answered",
    "correct",
    "level",
)


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
                    {
                        "run_id": f"{dataset}/agg{run}/m{m}",
                        "dataset": dataset,
                        "problem_id": f"q{p}",
                        "model": f"agg-{m}",
                        "mode": "default",
                        "budget": np.nan,
                        "sample_idx": 0,
                        "prompt_tokens": np.nan,
                        "reasoning_tokens": np.nan,
                        "answer_tokens": np.nan,
                        "output_tokens": float(rng.integers(100, 900)) if p % 3 == 0 else np.nan,
                        "latency_s": np.nan,
                        "truncated": np.nan,
                        "answered": np.nan,
                        "extracted_answer": None,
                        "correct": int(rng.integers(0, n_runs + 1)) / n_runs,
                        "n_runs": n_runs,
                        "budget_kind": "unspecified",
                        "level": np.nan,
                        "subject": "algebra" if p % 2 else None,
                    }
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
    for column in NUMBER_COLUMNS:
        frame[column] = frame[column].astype("float64")
    for column in ("sample_idx", "n_runs"):
        frame[column] = frame[column].astype("int64")
    for column in ("run_id", "dataset", "problem_id", "model", "mode", "budget_kind"):
        frame[column] = frame[column].astype("str")
    for column in ("extracted_answer", "subject"):
        frame[column] = frame[column].astype("str")
    return frame


def by_dataset(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows in the order segments give them back: by dataset, write order within one."""
    return frame.sort_values("dataset", kind="stable").reset_index(drop=True)
