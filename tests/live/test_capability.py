"""One capability check on a real model: thinking step by step beats answering at once.

Qwen2.5-Coder-0.5B, greedy, on generated two-step problems with one-digit numbers and no
distractor: the answer after up to 384 thinking tokens (forced if the chain is still going) is
right more often than the direct answer. The threshold is loose (greedy text can change by a
token across CPUs and builds): think must win by 3 problems and solve half. A failure prints
both counts; the full sweep is in docs/builtin-sweep.md.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ponder.backends.base import Sampling
from ponder.budgets import direct_answer, force_budget, messages_for
from ponder.grading import grade
from ponder.problems.generator import Knobs, make_problem

pytestmark = pytest.mark.live

PROBLEMS = 12


def test_step_by_step_beats_direct_answering_on_two_step_problems(qwen05_path: Path) -> None:
    from ponder.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(qwen05_path, n_ctx=1024)
    problems = [
        make_problem(Knobs(steps=2, digits=1, distractors=0), seed) for seed in range(PROBLEMS)
    ]

    async def score() -> tuple[int, int]:
        think = direct = 0
        for p in problems:
            assert p.text is not None and p.gold is not None
            chain = await backend.open_chain(messages_for(p.text, "think"), Sampling())
            forced = await force_budget(chain, 384, reserve=16)
            think += grade(forced.answer_text, p.gold).match
            chain = await backend.open_chain(messages_for(p.text, "no-think"), Sampling())
            quick = await direct_answer(chain, reserve=16)
            direct += grade(quick.answer_text, p.gold).match
        return think, direct

    think, direct = asyncio.run(score())
    assert think >= direct + 3, f"think {think}/{PROBLEMS} vs direct {direct}/{PROBLEMS}"
    assert think >= PROBLEMS // 2
