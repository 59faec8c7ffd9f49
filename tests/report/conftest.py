"""Hand-built outcome frames for the report tests: one dataset name from two sources."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ponder.types import OUTCOME_COLUMNS


def _rows(**columns: object) -> pd.DataFrame:
    n = max(len(v) for v in columns.values() if isinstance(v, list | np.ndarray))
    defaults: dict[str, object] = {c: np.nan for c in OUTCOME_COLUMNS}
    defaults.update(
        {
            "mode": "think",
            "sample_idx": 0,
            "truncated": False,
            "answered": True,
            "extracted_answer": None,
            "n_runs": 1,
            "budget_kind": "hard_cap",
            "subject": None,
        }
    )
    data = {c: columns.get(c, defaults[c]) for c in OUTCOME_COLUMNS}
    return pd.DataFrame(
        {c: (v if isinstance(v, list | np.ndarray) else [v] * n) for c, v in data.items()}
    )


@pytest.fixture(scope="session")
def two_source_frame() -> tuple[pd.DataFrame, pd.DataFrame]:
    """`aime25` twice: a capped sweep (30 problems, 2 models, 3 seeds, caps 512 and 4096)
    and an aggregated leaderboard (15 problems, 3 models, no budget)."""
    rng = np.random.default_rng(0)
    parts = []
    for model, skill in (("small", 0.3), ("large", 0.6)):
        length = rng.integers(300, 4000, 90).astype(float)
        right = rng.random(90) < skill
        for cap in (512.0, 4096.0):
            cut = length > cap
            parts.append(
                _rows(
                    run_id=f"sweep/{model}",
                    dataset="aime25",
                    problem_id=[f"2025-{i % 30}" for i in range(90)],
                    model=model,
                    budget=cap,
                    sample_idx=np.arange(90) // 30,
                    output_tokens=np.minimum(length, cap),
                    truncated=cut,
                    answered=~cut,
                    correct=(right & ~cut).astype(float),
                    extracted_answer=np.where(right & ~cut, "1", "2"),
                )
            )
    for model, share in (("alpha", 0.8), ("beta", 0.5), ("gamma", 0.2)):
        parts.append(
            _rows(
                run_id=f"board/{model}",
                dataset="aime25",
                problem_id=[f"2025-{i}" for i in range(15)],
                model=model,
                budget=np.nan,
                budget_kind="none",
                n_runs=4,
                correct=np.clip(rng.normal(share, 0.2, 15), 0, 1).round(2),
                truncated=np.nan,
                answered=np.nan,
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    frame["budget"] = frame["budget"].astype(float)
    runs = pd.DataFrame(
        [
            {
                "run_id": f"sweep/{m}",
                "model": m,
                "source": "sweep_src",
                "budget_kind": "hard_cap",
                "settings_json": "{}",
            }
            for m in ("small", "large")
        ]
        + [
            {
                "run_id": f"board/{m}",
                "model": m,
                "source": "board_src",
                "budget_kind": "none",
                "settings_json": json.dumps({"mean_output_tokens": tokens}),
            }
            for m, tokens in (("alpha", 9000.0), ("beta", 3000.0), ("gamma", 800.0))
        ]
    )
    return frame, runs
