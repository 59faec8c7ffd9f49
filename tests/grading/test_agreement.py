"""Agreement of our grader with the correctness recorded in the shared data.

The bounds sit slightly below the rates measured when the grader was written (see
docs/grading.md), so a regression in extraction or equivalence fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ponder.errors import InputError
from ponder.grading import agreement
from ponder.grading.agreement import Agreement


@pytest.fixture(scope="module")
def results(shared_data: Path) -> dict[str, Agreement]:
    """Measured once per module; `shared_data` (tests/conftest.py) skips without the data."""
    return {r.subset: r for r in agreement.measure_all(shared_data)}


@pytest.mark.parametrize(
    ("subset", "min_n", "min_agreement"),
    [
        ("AIME", 1200, 0.995),  # measured 1.0000 on 1224 rows
        ("MATH-500", 5000, 0.995),  # measured 0.9988 on 5003 rows
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", 1319, 0.99),  # measured 0.9947
        ("gpt-4-1106-preview", 1319, 0.96),  # measured 0.9674
        ("solution vs answer", 500, 0.998),  # measured 1.0000
    ],
)
def test_agreement_lower_bounds(
    results: dict[str, Agreement], subset: str, min_n: int, min_agreement: float
) -> None:
    result = results[subset]
    assert result.n >= min_n
    assert result.agreement >= min_agreement, agreement.format_examples([result])


def test_every_gsm8k_prompt_joins(results: dict[str, Agreement]) -> None:
    assert results["gpt-4-1106-preview"].note == "1319/1319 prompts joined to gold"


def test_gsm8k_false_positives_are_label_errors(results: dict[str, Agreement]) -> None:
    """RouteLLM's grader rejects `#### $20.00` for gold 20; ours extracts exactly the gold."""
    for subset in ("gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"):
        false_positives = [ex for ex in results[subset].examples if not ex.recorded]
        assert false_positives
        assert all(ex.answer == ex.gold for ex in false_positives)


def test_missing_data_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        agreement.reasoning_budget_sweep(tmp_path)


def test_missing_column_is_an_input_error(tmp_path: Path) -> None:
    folder = tmp_path / agreement.SWEEP_DIR
    folder.mkdir()
    for name in agreement.SWEEP_FILES.values():
        (folder / name).write_text("model,answer,gold,correct\nm,1,1,True\n", encoding="utf-8")
    with pytest.raises(InputError, match="has_answer"):
        agreement.reasoning_budget_sweep(tmp_path)
