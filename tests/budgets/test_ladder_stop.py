"""`run_ladder(..., stop_when=...)`: an early exit stops growing the chain at the rung it says.

The chain here writes one token per word and ends after `length` tokens; a probe answers
`min(tokens, settle)`, so the answer changes until the chain has `settle` tokens and then
stays put. Every figure below follows from that by hand.
"""

from __future__ import annotations

import asyncio
import math

from ponder.backends.base import Segment
from ponder.budgets import Rung, run_ladder


class SettlingChain:
    def __init__(self, length: int, settle: int) -> None:
        self.length = length
        self.settle = settle
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
        return 7

    async def extend(self, max_tokens: int) -> Segment:
        n = min(max_tokens, self.length - len(self.words))
        self.words.extend("w" for _ in range(n))
        self._finished = len(self.words) >= self.length
        return Segment("w " * n, n, self._finished)

    async def append(self, text: str) -> int:
        self.words.append(text)
        return 1

    async def fork(self, cue: str, max_tokens: int, stop: tuple[str, ...] = ()) -> Segment:
        self.forks.append(len(self.words))
        answer = str(min(len(self.words), self.settle))
        n = min(len(answer), max_tokens)
        return Segment(answer[:n], n, True, logprobs=(math.log(0.9),) * n, prompt_tokens=3)

    async def aclose(self) -> None:
        return None


def _last_two_agree(rungs: tuple[Rung, ...]) -> bool:
    return len(rungs) >= 2 and rungs[-1].answer_text == rungs[-2].answer_text


def test_stop_when_ends_the_chain_at_the_first_rung_it_holds() -> None:
    chain = SettlingChain(length=1000, settle=20)
    seen: list[int] = []

    def stop(rungs: tuple[Rung, ...]) -> bool:
        seen.append(len(rungs))
        return _last_two_agree(rungs)

    result = asyncio.run(run_ladder(chain, [8, 16, 32, 64, 128], reserve=4, stop_when=stop))
    # Answers 8, 16, 20, 20: the rule holds at rung 64 and the chain is never grown past it.
    assert seen == [1, 2, 3, 4]
    assert [r.budget for r in result.rungs] == [8, 16, 32, 64]
    assert chain.forks == [8, 16, 32, 64] and chain.tokens == 64
    assert result.chain_tokens == 64 and not result.finished
    # Probes: "8" is 1 token, "16", "20", "20" are 2 each.
    assert result.probe_tokens == 1 + 2 + 2 + 2
    assert result.rungs[-1].stop_cost_tokens == 64 + 7 == result.generated_tokens


def test_stop_when_that_never_holds_runs_the_whole_ladder() -> None:
    plain = asyncio.run(run_ladder(SettlingChain(1000, 20), [8, 16, 32], reserve=4))
    never = asyncio.run(
        run_ladder(SettlingChain(1000, 20), [8, 16, 32], reserve=4, stop_when=lambda _: False)
    )

    def key(r: Rung) -> tuple[object, ...]:
        return (r.budget, r.thinking_tokens, r.answer_text, r.answer_tokens, r.stop_cost_tokens)

    assert [key(r) for r in never.rungs] == [key(r) for r in plain.rungs]
    assert len(never.rungs) == 3
    assert never.generated_tokens == plain.generated_tokens == 32 + 1 + 2 + 2


def test_stop_when_sees_natural_rungs_and_can_stop_on_them() -> None:
    chain = SettlingChain(length=40, settle=1000)
    naturals: list[bool] = []

    def stop(rungs: tuple[Rung, ...]) -> bool:
        naturals.append(rungs[-1].natural)
        return rungs[-1].natural

    result = asyncio.run(run_ladder(chain, [16, 32, 64, 128], reserve=4, stop_when=stop))
    # The chain ends on its own at 40 tokens, before rung 64: that rung is natural and stops it.
    assert naturals == [False, False, True]
    assert [r.budget for r in result.rungs] == [16, 32, 64]
    assert result.finished and result.chain_tokens == 40
    assert chain.forks == [16, 32]
    assert result.rungs[-1].stop_cost_tokens == 40 + 2 + 2
