"""Warnings for a user's own problems imported under the name of a recorded dataset.

`--dataset aime24` on a user's own problem ids would silently merge them into the recorded
AIME 2024 (its problem count grows); this says so while the import still goes ahead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ponder.problems.sets import (
    find_problem_file,
    load_gsm8k,
    load_math500,
    load_matharena_competitions,
    load_mmlu_pro_questions,
)
from ponder.store.batch import ImportBatch
from ponder.store.sqlite import Store

# Dataset names that the presets write, with the problem set that lists their problem ids.
RECORDED_DATASETS: dict[str, tuple[str, Callable[[Path], pd.DataFrame]]] = {
    "aime24": ("problem_sets/matharena_competitions.jsonl", load_matharena_competitions),
    "aime25": ("problem_sets/matharena_competitions.jsonl", load_matharena_competitions),
    "math500": ("problem_sets/math500_test.jsonl", load_math500),
    "gsm8k": ("problem_sets/gsm8k_test.jsonl", load_gsm8k),
    "mmlu_pro_math": ("mmlu_pro_math/mmlu_pro_math_questions.jsonl", load_mmlu_pro_questions),
}


def known_problem_ids(store: Store | None, dataset: str, near: Path | None) -> set[str]:
    """Problem ids of a recorded dataset: those stored plus its problem set's, when found."""
    if dataset not in RECORDED_DATASETS:
        return set()
    known = store.problem_ids(dataset) if store is not None else set()
    relative, loader = RECORDED_DATASETS[dataset]
    found = find_problem_file(relative, near)
    if found is not None:
        try:
            problems = loader(found)
        except Exception:  # a broken problem set only loses the warning, never the import
            problems = None
        if problems is not None:
            known |= set(problems.loc[problems["dataset"] == dataset, "problem_id"].astype(str))
    return known


def dataset_notes(store: Store | None, batch: ImportBatch, path: Path) -> list[str]:
    """A note per recorded dataset name that receives problem ids it does not have."""
    notes = []
    frame = batch.outcomes[["dataset", "problem_id"]].drop_duplicates()
    for dataset, ids in frame.groupby("dataset", sort=True)["problem_id"]:
        known = known_problem_ids(store, str(dataset), path)
        if not known:
            continue
        foreign = sorted(set(ids.astype(str)) - known)
        if not foreign:
            continue
        examples = ", ".join(repr(f) for f in foreign[:3])
        notes.append(
            f"dataset {dataset!r} is a recorded dataset ({len(known)} known problems), and "
            f"{len(foreign)} problem id(s) of this file are not among them ({examples}"
            f"{', ...' if len(foreign) > 3 else ''}): they are merged into {dataset!r} and "
            "change its problem count. If these are your own problems, import them with "
            "another --dataset name"
        )
    return notes
