"""Builders of small synthetic outcome frames for the curves tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ponder.types import OUTCOME_COLUMNS

FrameBuilder = Callable[..., pd.DataFrame]


def outcomes(**columns: Any) -> pd.DataFrame:
    """A frame with every OUTCOME_COLUMNS column; given columns override the defaults."""
    n = max(len(v) for v in columns.values() if np.ndim(v))
    defaults: dict[str, Any] = {
        "run_id": "run",
        "dataset": "ds",
        "problem_id": [f"p{i}" for i in range(n)],
        "model": "m",
        "mode": "think",
        "budget": 1024.0,
        "sample_idx": 0,
        "prompt_tokens": np.nan,
        "reasoning_tokens": np.nan,
        "answer_tokens": np.nan,
        "output_tokens": 100.0,
        "latency_s": np.nan,
        "truncated": False,
        "answered": True,
        "extracted_answer": None,
        "correct": 0.0,
        "n_runs": 1,
        "budget_kind": "hard_cap",
        "level": np.nan,
        "subject": None,
    }
    data = {name: columns.get(name, defaults[name]) for name in OUTCOME_COLUMNS}
    frame = pd.DataFrame({k: (v if np.ndim(v) else [v] * n) for k, v in data.items()})
    frame["budget"] = frame["budget"].astype("float64")
    frame["correct"] = frame["correct"].astype("float64")
    frame["extracted_answer"] = frame["extracted_answer"].astype(object)
    return frame


def grid_frame(
    *,
    n_problems: int = 40,
    n_seeds: int = 4,
    budgets: tuple[float, ...] = (1024.0, 2048.0),
    models: tuple[str, ...] = ("m",),
    p_correct: Callable[[str, float, np.ndarray], np.ndarray] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """models x budgets x problems x seeds with random 0/1 correctness."""
    rng = np.random.default_rng(seed)
    parts = []
    for model in models:
        for budget in budgets:
            prob = np.repeat(np.arange(n_problems), n_seeds)
            p = np.full(len(prob), 0.5) if p_correct is None else p_correct(model, budget, prob)
            parts.append(
                outcomes(
                    model=model,
                    budget=budget,
                    problem_id=[f"p{i:03d}" for i in prob],
                    sample_idx=np.tile(np.arange(n_seeds), n_problems),
                    correct=(rng.random(len(prob)) < p).astype(float),
                    output_tokens=rng.integers(10, int(budget), len(prob)).astype(float),
                )
            )
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="session")
def make_outcomes() -> FrameBuilder:
    return outcomes


@pytest.fixture(scope="session")
def make_grid() -> FrameBuilder:
    return grid_frame
