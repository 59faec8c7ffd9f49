"""What one executed work item becomes in the store: one outcome row per rung, one chain.

The mapping (see docs/sweeps.md): ``budget`` is the rung's thinking budget (NULL for
no-think); ``reasoning_tokens`` the thinking tokens the chain had at the rung;
``answer_tokens`` what the forced answer took (0 for a natural answer, which is part of the
chain); ``output_tokens`` their sum, i.e. what a separate two-phase run at that budget costs;
``stop_cost_tokens`` what stopping there costs on the ladder (the chain so far plus every
probe so far); ``truncated`` is 0 because the answer is forced, never cut; ``natural`` says
the chain ended on its own before the rung.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ponder.budgets import Rung
from ponder.grading import grade
from ponder.sweep.plan import WorkItem


@dataclass(frozen=True)
class ItemResult:
    """An executed item: its rungs and, for think items, the chain they came from."""

    rungs: tuple[Rung, ...]
    prompt_tokens: int | None
    chain_text: str | None = None
    chain_tokens: int = 0
    finished: bool = False
    entropies: tuple[float, ...] | None = None
    probe_tokens: int = 0

    @property
    def generated_tokens(self) -> int:
        return self.chain_tokens + self.probe_tokens


def entropies_blob(values: Sequence[float] | None) -> bytes | None:
    """Per-token entropies as float16 little-endian (2 bytes a token), or None."""
    if values is None:
        return None
    return np.asarray(values, dtype="<f2").tobytes()


def blob_entropies(blob: bytes | None) -> np.ndarray | None:
    """The inverse of :func:`entropies_blob` (as float32)."""
    if blob is None:
        return None
    return np.frombuffer(blob, dtype="<f2").astype(np.float32)


def outcome_rows(item: WorkItem, result: ItemResult) -> list[dict[str, Any]]:
    """One outcome row per rung, graded against the item's gold answer."""
    rows: list[dict[str, Any]] = []
    elapsed = 0.0
    no_budget = item.strategy.kind == "none"
    for index, rung in enumerate(result.rungs):
        elapsed += rung.latency_s
        graded = grade(rung.answer_text, item.problem.gold)
        extra = {
            "cue_tokens": rung.cue_tokens,
            "seed": item.seed,
            "strategy": item.strategy.kind,
            "temperature": item.sampling.temperature,
            "top_p": item.sampling.top_p,
        }
        rows.append(
            {
                "run_id": item.run_id,
                "dataset": item.problem.dataset,
                "problem_id": item.problem.problem_id,
                "model": item.model.name,
                "mode": item.mode_label,
                "budget": None if no_budget else rung.budget,
                "sample_idx": item.sample_idx,
                "prompt_tokens": result.prompt_tokens,
                "reasoning_tokens": rung.thinking_tokens,
                "answer_tokens": rung.answer_tokens,
                "output_tokens": rung.output_tokens,
                # Wall time to stop here on the ladder (chain so far plus probes so far).
                "latency_s": elapsed,
                "truncated": 0,
                "answered": int(graded.extracted is not None),
                "extracted_answer": graded.extracted,
                "correct": 1.0 if graded.match else 0.0,
                "n_runs": 1,
                "response_text": rung.answer_text,
                "extra_json": json.dumps(extra, sort_keys=True),
                "chain_id": item.chain_id,
                "rung": index,
                "natural": int(rung.natural),
                "answer_prob": rung.answer_prob,
                "entropy_tail": rung.entropy_tail,
                "stop_cost_tokens": rung.stop_cost_tokens,
            }
        )
    return rows


def chain_row(item: WorkItem, result: ItemResult) -> dict[str, Any] | None:
    """The thinking chain of a think item (None for no-think, which has no chain)."""
    if result.chain_text is None:
        return None
    return {
        "chain_id": item.chain_id,
        "run_id": item.run_id,
        "dataset": item.problem.dataset,
        "problem_id": item.problem.problem_id,
        "sample_idx": item.sample_idx,
        "text": result.chain_text,
        "tokens": result.chain_tokens,
        "finished": int(result.finished),
        "entropies": entropies_blob(result.entropies),
    }
