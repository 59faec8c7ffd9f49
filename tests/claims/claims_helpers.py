"""Synthetic outcome frames for the claims' verdict-flip tests, and the recorded store.

``claim_data`` fills every outcome column a check may read with a sensible default, so a test
writes only the columns its claim is about.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ponder.claims import ClaimData, ModelFacts, Settings, load_claim_data
from ponder.store import Store

# Small bootstrap: the tests check verdicts on clear-cut data, not interval precision.
FAST = Settings(ci=0.95, n_boot=200, seed=0, min_problems=20)

_DEFAULTS: dict[str, object] = {
    "run_id": "run",
    "dataset": "synthetic",
    "mode": "think",
    "budget": np.nan,
    "sample_idx": 0,
    "prompt_tokens": 50.0,
    "reasoning_tokens": np.nan,
    "answer_tokens": np.nan,
    "output_tokens": 100.0,
    "latency_s": np.nan,
    "truncated": 0.0,
    "answered": 1.0,
    "extracted_answer": "",
    "n_runs": 1,
    "budget_kind": "hard_cap",
    "level": np.nan,
    "subject": None,
    "chain_id": None,
    "rung": np.nan,
    "natural": np.nan,
    "answer_prob": np.nan,
    "entropy_tail": np.nan,
    "stop_cost_tokens": np.nan,
}


def outcome_frame(rows: pd.DataFrame | list[dict[str, object]]) -> pd.DataFrame:
    """``rows`` (needs model, problem_id, correct) with every other outcome column defaulted."""
    frame = pd.DataFrame(rows).copy()
    for column in ("model", "problem_id", "correct"):
        if column not in frame.columns:
            raise ValueError(f"synthetic outcomes need a {column!r} column")
    for column, default in _DEFAULTS.items():
        if column not in frame.columns:
            frame[column] = default
    frame["correct"] = frame["correct"].astype(float)
    frame["extracted_answer"] = frame["extracted_answer"].astype(str)
    return frame.reset_index(drop=True)


def claim_data(
    rows: pd.DataFrame | list[dict[str, object]],
    *,
    models: Mapping[str, ModelFacts] | None = None,
    settings: Settings = FAST,
    chains: pd.DataFrame | None = None,
) -> ClaimData:
    """A ClaimData of synthetic outcomes; models without given facts get empty ones."""
    frame = outcome_frame(rows)
    dataset = str(frame["dataset"].iloc[0])
    problems = (
        frame.groupby("problem_id", sort=True)["level"]
        .first()
        .reset_index()
        .assign(dataset=dataset, text="", gold="", subject=None, metadata_json="{}")
    )
    facts = {m: (models or {}).get(m, ModelFacts(m)) for m in sorted(frame["model"].unique())}
    return ClaimData(dataset, frame, problems, facts, settings=settings, chains=chains)


def recorded_data(shared_data: Path, store_path: Path, datasets: list[str]) -> dict[str, ClaimData]:
    """The recorded datasets (and ponder's built-in sweep) imported into a store, as ClaimData."""
    from ponder.builtin import builtin_folder
    from ponder.importers import import_paths

    with Store(store_path) as store:
        import_paths(store, [shared_data, builtin_folder()])
        return {d.dataset: d for d in load_claim_data(store, datasets=datasets, settings=FAST)}
