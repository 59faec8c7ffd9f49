"""The in-process engine on a real model: token accounting, forks, seeds, the ladder.

SmolLM2-135M is for plumbing: these tests check mechanics that hold for any model, not
answers.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from ponder.backends.base import Sampling
from ponder.budgets import direct_answer, force_budget, messages_for, run_ladder

pytestmark = pytest.mark.live

QUESTION = "Ann has 4 bags with 6 pears each. She eats 5 pears. How many pears are left?"


@pytest.fixture(scope="module")
def backend(smol_path: Path):
    from ponder.backends.llamacpp import LlamaCppBackend

    return LlamaCppBackend(smol_path, n_threads=1, n_ctx=1024)


def run(coro):
    return asyncio.run(coro)


def test_fork_leaves_the_chain_unchanged_and_extend_continues_it(backend) -> None:
    async def go():
        chain = await backend.open_chain(messages_for(QUESTION, "think"), Sampling(0.7, 0.95, 3))
        first = await chain.extend(12)
        before = (chain.text, chain.tokens)
        probe = await chain.fork("\nSo the answer is", 6)
        after_fork = (chain.text, chain.tokens)
        second = await chain.extend(12)
        return first, before, probe, after_fork, second, chain

    first, before, probe, after_fork, second, chain = run(go())
    assert before == after_fork
    assert probe.tokens >= 1 and probe.prompt_tokens >= 1
    assert probe.logprobs is not None and len(probe.logprobs) == probe.tokens
    assert all(lp <= 0 for lp in probe.logprobs)
    assert chain.tokens == first.tokens + second.tokens
    assert chain.text.startswith(first.text)


def test_same_seed_same_chain_whatever_the_probes(backend) -> None:
    """The chain's sampling does not depend on where it was probed."""

    async def go():
        plain = await backend.open_chain(messages_for(QUESTION, "think"), Sampling(0.8, 0.95, 11))
        await plain.extend(40)
        probed = await backend.open_chain(messages_for(QUESTION, "think"), Sampling(0.8, 0.95, 11))
        for _ in range(4):
            await probed.extend(10)
            await probed.fork(" Answer:", 4)
        return plain.text, probed.text

    plain, probed = run(go())
    assert plain == probed


def test_ladder_rung_equals_a_separate_two_phase_run(backend) -> None:
    rungs = [8, 16, 32]

    async def go():
        messages = messages_for(QUESTION, "think")
        ladder = await run_ladder(
            await backend.open_chain(messages, Sampling(0.7, 0.95, 5), entropy=True),
            rungs,
            reserve=8,
        )
        single = await force_budget(
            await backend.open_chain(messages, Sampling(0.7, 0.95, 5)), 16, reserve=8
        )
        return ladder, single

    ladder, single = run(go())
    assert [r.budget for r in ladder.rungs] == rungs
    middle = ladder.rungs[1]
    assert single.answer_text == middle.answer_text
    assert single.thinking_tokens == middle.thinking_tokens
    # Costs: each rung's stop cost is the chain so far plus every probe taken so far.
    probes = 0
    for rung in ladder.rungs:
        probes += rung.answer_tokens
        assert rung.stop_cost_tokens == rung.thinking_tokens + probes
        assert rung.answer_tokens <= 8
        if not rung.natural:
            assert rung.thinking_tokens == rung.budget
            assert rung.answer_prob is not None and 0 < rung.answer_prob <= 1
    # The whole ladder generated the chain once plus the probes: max(B) + k x reserve at most.
    assert ladder.generated_tokens <= max(rungs) + len(rungs) * 8
    assert ladder.entropies is not None and len(ladder.entropies) == ladder.chain_tokens
    assert all(e >= 0 and math.isfinite(e) for e in ladder.entropies)


def test_direct_answer_costs_only_the_answer(backend) -> None:
    async def go():
        chain = await backend.open_chain(messages_for(QUESTION, "no-think"), Sampling())
        return await direct_answer(chain, reserve=6)

    rung = run(go())
    assert rung.budget == 0 and rung.thinking_tokens == 0
    assert 1 <= rung.answer_tokens <= 6
    assert rung.stop_cost_tokens == rung.answer_tokens
    assert rung.answer_text.startswith("\\boxed{")
