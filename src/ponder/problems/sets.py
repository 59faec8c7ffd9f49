"""Loaders for the public problem sets that the recorded sweeps refer to.

Each returns a frame with the store's problem columns, so importers can join text, gold answers
and difficulty levels onto outcomes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from ponder import paths
from ponder.tables import read_jsonl
from ponder.types import PROBLEM_FIELDS

_GSM8K_GOLD = re.compile(r"####\s*(.+?)\s*$")


def find_problem_file(relative: str, near: Path | None = None) -> Path | None:
    """Find `problem_sets/...`-style files next to an imported file or in the data folders."""
    candidates: list[Path] = []
    if near is not None:
        base = near if near.is_dir() else near.parent
        candidates += [base / relative, base.parent / relative]
    candidates += [paths.shared_data_dir() / relative, paths.data_dir() / "datasets" / relative]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def _frame(records: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records, columns=list(PROBLEM_FIELDS))
    return frame.astype(object).where(pd.notna(frame), None)


def load_math500(path: Path) -> pd.DataFrame:
    """MATH-500 (`unique_id`, `problem`, `answer`, `level` 1-5, `subject`)."""
    table = read_jsonl(path)
    table.require(["unique_id", "problem", "answer", "level", "subject"])
    levels = table.number("level", integer=True, minimum=1, maximum=5)
    records = [
        {
            "dataset": "math500",
            "problem_id": row["unique_id"],
            "text": row["problem"],
            "gold": row["answer"],
            "level": int(level),
            "subject": row["subject"],
            "metadata_json": "{}",
        }
        for row, level in zip(table.frame.to_dict("records"), levels, strict=True)
    ]
    return _frame(records)


def gsm8k_gold(answer: str) -> str | None:
    """The final answer of a GSM8K worked solution (`... #### 18`)."""
    match = _GSM8K_GOLD.search(answer.strip())
    return match.group(1).replace(",", "") if match else None


def load_gsm8k(path: Path) -> pd.DataFrame:
    """GSM8K test (`question`, `answer` ending in `#### N`); ids are `test-<line index>`."""
    table = read_jsonl(path)
    table.require(["question", "answer"])
    records = []
    for i, row in enumerate(table.frame.to_dict("records")):
        gold = gsm8k_gold(row["answer"])
        if gold is None:
            raise table.fail(i, "answer", "no '#### N' final answer")
        records.append(
            {
                "dataset": "gsm8k",
                "problem_id": f"test-{i}",
                "text": row["question"],
                "gold": gold,
                "level": None,
                "subject": None,
                "metadata_json": "{}",
            }
        )
    return _frame(records)


def aime_problem_id(competition: str, index: int) -> str:
    """Canonical AIME ids shared by every source: `2025-I-3`, `2024-II-15`."""
    match = re.fullmatch(r"aime_(\d{4})_(I{1,2})", competition)
    if match is None:
        raise ValueError(f"not an AIME competition: {competition}")
    return f"{match.group(1)}-{match.group(2)}-{index}"


def load_matharena_competitions(path: Path) -> pd.DataFrame:
    """MathArena competition problems; AIME ones get the canonical `aime24` / `aime25` ids."""
    table = read_jsonl(path)
    table.require(["competition", "problem_idx", "problem", "answer"])
    indices = table.number("problem_idx", integer=True, minimum=1)
    records = []
    for row, index in zip(table.frame.to_dict("records"), indices, strict=True):
        competition = row["competition"]
        if competition.startswith("aime_"):
            dataset = "aime" + competition[7:9]
            problem_id = aime_problem_id(competition, int(index))
        else:
            dataset = competition
            problem_id = str(int(index))
        records.append(
            {
                "dataset": dataset,
                "problem_id": problem_id,
                "text": row["problem"],
                "gold": row["answer"],
                "level": None,
                "subject": None,
                "metadata_json": json.dumps({"competition": competition}),
            }
        )
    return _frame(records)


def load_mmlu_pro_questions(path: Path, dataset: str = "mmlu_pro_math") -> pd.DataFrame:
    """MMLU-Pro questions (`question_id`, `question`, `options`, `answer`, `src`)."""
    table = read_jsonl(path)
    table.require(["question_id", "question", "options", "answer"])
    records = []
    for i, row in enumerate(table.frame.to_dict("records")):
        try:
            options = json.loads(row["options"])
        except json.JSONDecodeError as exc:
            raise table.fail(i, "options", "options must be a JSON list") from exc
        letters = "ABCDEFGHIJ"
        text = (
            row["question"]
            + "\n"
            + "\n".join(
                f"{letters[k]}. {option}" for k, option in enumerate(options[: len(letters)])
            )
        )
        records.append(
            {
                "dataset": dataset,
                "problem_id": row["question_id"],
                "text": text,
                "gold": row["answer"],
                "level": None,
                "subject": row.get("src") or None,
                "metadata_json": json.dumps({"n_options": len(options)}),
            }
        )
    return _frame(records)
