"""A toy sweep on the fake backend whose every figure can be worked out by hand.

The fake's rules (src/ponder/backends/fake.py): the answer is the sum of the integers in the
problem; with ``min_share: 1`` a chain needs exactly ``tokens_per_number x numbers`` thinking
tokens to answer right, ends on its own ``natural_extra`` tokens later, and answers no-think
right iff that need is at most ``direct_skill``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

# (problem_id, text, gold); all answers and wrong answers (gold + 1..9) have two digits,
# so every forced answer costs exactly 2 tokens.
PROBLEMS = [
    ("a", "Add 30 and 40.", "70"),  # 2 numbers: need 40, natural end at 48
    ("b", "Add 10, 20 and 5.", "35"),  # 3 numbers: need 60, natural end at 68
    ("c", "Add 1, 2, 3, 4 and 5.", "15"),  # 5 numbers: need 100, natural end at 108
]
OPTIONS: dict[str, Any] = {
    "tokens_per_number": 20,
    "min_share": 1.0,
    "natural_extra": 8,
    "direct_skill": 40,
}
LADDER = [8, 16, 32, 64, 128]
RESERVE = 8


def write_problems(folder: Path, problems: list[tuple[str, str, str]] = PROBLEMS) -> Path:
    path = folder / "probs.jsonl"
    path.write_text(
        "".join(
            json.dumps({"problem_id": pid, "text": text, "gold": gold}) + "\n"
            for pid, text, gold in problems
        )
    )
    return path


def spec_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "toy",
        "problems": [{"file": "probs.jsonl", "dataset": "toy"}],
        "models": [{"name": "fake-m", "backend": "fake", "options": dict(OPTIONS)}],
        "modes": ["think", "no-think"],
        "budgets": {"ladder": list(LADDER)},
        "reserve": RESERVE,
        "sampling": [{"temperature": 0}],
        "seed": 0,
        "concurrency": 2,
    }
    data.update(overrides)
    return data


def write_spec(folder: Path, **overrides: Any) -> Path:
    write_problems(folder)
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec_data(**overrides), sort_keys=False))
    return path
