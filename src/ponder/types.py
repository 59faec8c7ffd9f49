"""Shared immutable value types and the column contract of the outcome frame.

The outcome frame is the pandas view of the store that every analysis reads: one row per
sample (or per aggregated cell of samples, when a source only published aggregates).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

# Conventional modes. A mode is a free string; these are the ones presets write.
THINK = "think"
NO_THINK = "no-think"
GREEDY_SUFFIX = "-greedy"  # a sweep's greedy chains are a mode of their own: "think-greedy"


def base_mode(mode: str) -> str:
    """The prompting mode of a recorded mode label ("think-greedy" -> "think")."""
    return mode.removesuffix(GREEDY_SUFFIX)


BudgetKind = Literal["hard_cap", "forced", "effort", "none", "unspecified"]

# Columns of the outcome frame, in order, with their meaning.
OUTCOME_COLUMNS: dict[str, str] = {
    "run_id": "the run (one model under one setting, from one source)",
    "dataset": "benchmark name, e.g. aime24, math500, gsm8k",
    "problem_id": "id of the problem within its dataset",
    "model": "model name",
    "mode": "think / no-think / cot / default",
    "budget": "token budget (float, NaN when the run had no budget)",
    "sample_idx": "index of the sample (seed) for this problem and configuration",
    "prompt_tokens": "input tokens (NaN when unknown)",
    "reasoning_tokens": "thinking tokens (NaN when the split is unknown)",
    "answer_tokens": "answer tokens (NaN when the split is unknown)",
    "output_tokens": "all generated tokens (NaN when unknown)",
    "latency_s": "wall-clock seconds (NaN when unknown)",
    "truncated": "the generation hit its cap (1.0 / 0.0, NaN when unknown)",
    "answered": "an answer could be extracted (1.0 / 0.0, NaN when unknown)",
    "extracted_answer": "the extracted answer (None when none)",
    "correct": "1.0 / 0.0 for a sample; a fraction for an aggregated row",
    "n_runs": "1 for a sample; the number of runs an aggregated row averages",
    "budget_kind": "hard_cap (max_new_tokens), forced, effort, none or unspecified",
    "level": "difficulty level known before generation (NaN when unknown)",
    "subject": "subject when known (None otherwise)",
}

# Fields of a problem record, as problem-set loaders produce them and the store keeps them.
PROBLEM_FIELDS: tuple[str, ...] = (
    "dataset",
    "problem_id",
    "text",
    "gold",
    "level",
    "subject",
    "metadata_json",
)


@dataclass(frozen=True, slots=True)
class Problem:
    """A problem as known before generation."""

    dataset: str
    problem_id: str
    text: str | None = None
    gold: str | None = None
    level: int | None = None
    subject: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def metadata_json(self) -> str:
        return json.dumps(self.metadata, sort_keys=True)


@dataclass(frozen=True, slots=True)
class Run:
    """One model under one setting from one source; its outcomes share these settings."""

    run_id: str
    model: str
    backend: str = "recorded"
    source: str = ""
    budget_kind: BudgetKind = "none"
    settings: dict[str, Any] = field(default_factory=dict)

    def settings_json(self) -> str:
        return json.dumps(self.settings, sort_keys=True)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One sample (or one aggregated row) of the outcome matrix."""

    run_id: str
    dataset: str
    problem_id: str
    model: str
    mode: str
    budget: int | None
    sample_idx: int
    correct: float
    answered: bool | None = True
    truncated: bool | None = False
    extracted_answer: str | None = None
    prompt_tokens: int | None = None
    reasoning_tokens: int | None = None
    answer_tokens: int | None = None
    output_tokens: int | None = None
    latency_s: float | None = None
    n_runs: int = 1
    response_text: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str, str, str, int, int]:
        """The idempotency key: (run, problem, model, mode, budget, sample_idx)."""
        budget = -1 if self.budget is None else self.budget
        return (
            self.run_id,
            self.dataset,
            self.problem_id,
            self.model,
            self.mode,
            budget,
            self.sample_idx,
        )
