"""The probe ladder's bookkeeping on a scripted chain whose every token is known.

The scripted chain writes the words of a fixed text, one token per word, and ends after the
last one; a probe answers with the number of tokens written so far. So every rung's answer,
token counts and costs are known by hand.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from ponder.backends.base import Segment
from ponder.budgets import check_rungs, direct_answer, force_budget, run_ladder


class ScriptedChain:
    def __init__(self, length: int, answer_tokens: int = 2) -> None:
        self.length = length
        self.answer_tokens = answer_tokens
        self.words: list[str] = []
        self.forks: list[int] = []
        self._finished = False

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def tokens(self) -> int:
        return len(self.words)

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def prompt_tokens(self) -> int:
        return 5

    async def extend(self, max_tokens: int) -> Segment:
        start = len(self.words)
        natural_left = self.length - self.written_by_model()
        n = min(max_tokens, natural_left)
        self.words.extend(f"w{start + i}" for i in range(n))
        if n < max_tokens:
            self._finished = True
        return Segment(" ".join(self.words[start:]), n, self._finished, entropies=(0.5,) * n)

    def written_by_model(self) -> int:
        return sum(1 for w in self.words if w.startswith("w"))

    async def append(self, text: str) -> int:
        self.words.append(text)
        self._finished = False
        self.length += 3  # after "Wait," the model thinks three more tokens
        return 1

    async def fork(self, cue: str, max_tokens: int, stop: tuple[str, ...] = ()) -> Segment:
        self.forks.append(len(self.words))
        n = min(self.answer_tokens, max_tokens)
        return Segment(
            str(len(self.words)), n, True, logprobs=(math.log(0.5),) * n, prompt_tokens=4
        )

    async def aclose(self) -> None:
        return None


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_rungs_before_the_natural_end_are_forced_after_it_natural() -> None:
    chain = ScriptedChain(length=40, answer_tokens=2)
    result = run(run_ladder(chain, [16, 32, 64, 128], reserve=8))
    assert [r.budget for r in result.rungs] == [16, 32, 64, 128]
    assert [r.natural for r in result.rungs] == [False, False, True, True]
    assert [r.thinking_tokens for r in result.rungs] == [16, 32, 40, 40]
    # Probes see the chain at exactly the rung: the scripted answer is the token count.
    assert [r.answer_text for r in result.rungs[:2]] == [
        "Final answer: \\boxed{16}",
        "Final answer: \\boxed{32}",
    ]
    assert chain.forks == [16, 32]
    assert [r.answer_tokens for r in result.rungs] == [2, 2, 0, 0]
    # Stop cost: chain so far + every probe so far. Output tokens: one separate run's cost.
    assert [r.stop_cost_tokens for r in result.rungs] == [18, 36, 44, 44]
    assert [r.output_tokens for r in result.rungs] == [18, 34, 40, 40]
    assert [r.answer_prob for r in result.rungs] == [0.25, 0.25, None, None]
    assert result.generated_tokens == 40 + 4
    assert result.finished and result.chain_tokens == 40
    assert result.rungs[2].answer_text == chain.text


def test_entropy_tail_is_the_mean_of_the_last_window() -> None:
    result = run(run_ladder(ScriptedChain(100), [8, 16], reserve=4, entropy_window=4))
    assert [r.entropy_tail for r in result.rungs] == [0.5, 0.5]
    assert result.entropies is not None and len(result.entropies) == 16


def test_wait_extension_keeps_a_short_chain_thinking() -> None:
    chain = ScriptedChain(length=5)
    rung = run(force_budget(chain, 32, reserve=4, min_thinking=12))
    # 5 tokens, then "Wait," (1) + 3 more, twice more until >= 12: 5+4+4 = 13 tokens.
    assert chain.words.count("\nWait,") == 2
    assert rung.thinking_tokens == 13 and rung.natural


def test_force_budget_is_a_one_rung_ladder() -> None:
    rung = run(force_budget(ScriptedChain(100), 24, reserve=8))
    assert (rung.budget, rung.thinking_tokens, rung.answer_tokens, rung.natural) == (
        24,
        24,
        2,
        False,
    )
    assert rung.stop_cost_tokens == rung.output_tokens == 26


def test_direct_answer_forks_at_once() -> None:
    chain = ScriptedChain(100, answer_tokens=3)
    rung = run(direct_answer(chain, reserve=8))
    assert chain.forks == [0] and chain.tokens == 0
    assert (rung.budget, rung.thinking_tokens, rung.answer_tokens) == (0, 0, 3)
    assert rung.answer_text == "\\boxed{0}"
    assert rung.answer_prob == pytest.approx(0.125)


@pytest.mark.parametrize(
    ("rungs", "reserve", "message"),
    [
        ([], 8, "at least one rung"),
        ([64, 32], 8, "strictly increasing"),
        ([32, 32], 8, "strictly increasing"),
        ([0, 32], 8, ">= 1"),
        ([16, 32], 0, "reserve"),
    ],
)
def test_bad_ladders_are_refused(rungs: list[int], reserve: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_rungs(rungs, reserve)
