"""The OpenAI-compatible backend against a real server: llama-cpp-python's, on loopback.

The server is ``python -m llama_cpp.server`` with SmolLM2-135M on a free port of 127.0.0.1,
shared by the live files (``llama_server`` in conftest.py). The model is for plumbing: these
tests check token accounting, forks and the ladder, never answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from ponder.backends.base import BackendError, ChatRequest, Sampling
from ponder.backends.openai_compat import OpenAICompatBackend, from_options
from ponder.budgets import messages_for, run_ladder

pytestmark = pytest.mark.live

ALIAS = "smollm2-135m"
QUESTION = "Ann has 4 bags with 6 pears each. She eats 5 pears. How many pears are left?"


def backend(url: str, **options: Any) -> OpenAICompatBackend:
    return from_options(
        {"base_url": url, "model": ALIAS, "engine": "llama-cpp-python", "timeout_s": 120} | options
    )


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_check_accepts_the_served_model_and_names_the_wrong_ones(llama_server: str) -> None:
    async def go() -> None:
        ok = backend(llama_server)
        await ok.check()
        await ok.aclose()
        wrong = backend(llama_server, model="no-such-model")
        with pytest.raises(BackendError, match=f"does not serve model 'no-such-model'.*{ALIAS}"):
            await wrong.check()
        await wrong.aclose()
        no_v1 = backend(llama_server.removesuffix("/v1"), max_retries=0)
        with pytest.raises(BackendError, match="HTTP 404"):
            await no_v1.check()
        await no_v1.aclose()

    run(go())


def test_unreachable_url_fails_before_any_work(free_port_factory: Callable[[], int]) -> None:
    async def go() -> None:
        dead = backend(f"http://127.0.0.1:{free_port_factory()}/v1", max_retries=0)
        with pytest.raises(BackendError, match="cannot reach") as info:
            await dead.check()
        assert info.value.retryable
        await dead.aclose()

    run(go())


def test_chat_reports_real_token_counts(llama_server: str) -> None:
    messages = messages_for(QUESTION, "think")

    async def go() -> Any:
        b = backend(llama_server)
        capped = await b.chat(ChatRequest(messages, max_tokens=12))
        two = await b.chat(
            ChatRequest(messages, max_tokens=12, n=2, sampling=Sampling(0.8, 0.95, 5))
        )
        await b.aclose()
        return capped, two

    (capped,), two = run(go())
    assert capped.prompt_tokens > len(QUESTION.split())  # the template and the instruction too
    assert 0 < capped.completion_tokens <= 12
    assert capped.finish_reason == "length" or capped.completion_tokens < 12
    assert capped.text.strip() and capped.reasoning == ""  # no reasoning parser on this server
    assert len(two) == 2
    assert all(g.prompt_tokens == capped.prompt_tokens for g in two)
    assert all(0 < g.completion_tokens <= 12 for g in two)


def test_chain_fork_leaves_it_unchanged_and_counts_add_up(llama_server: str) -> None:
    messages = messages_for(QUESTION, "think")

    async def go() -> Any:
        b = backend(llama_server)
        chain = await b.open_chain(messages, Sampling(0.7, 0.95, seed=3))
        first = await chain.extend(10)
        before = (chain.text, chain.tokens, chain.finished)
        probe = await chain.fork("\n\nFinal answer: \\boxed{", 6, ("}",))
        after = (chain.text, chain.tokens, chain.finished)
        second = await chain.extend(6)
        await b.aclose()
        return chain, first, before, probe, after, second

    chain, first, before, probe, after, second = run(go())
    assert before == after
    assert 0 < first.tokens <= 10 and first.text == before[0]
    assert chain.prompt_tokens == first.prompt_tokens > 0
    assert chain.tokens == first.tokens + second.tokens
    assert chain.text == first.text + second.text
    assert 0 < probe.tokens <= 6
    assert probe.logprobs is not None and len(probe.logprobs) == probe.tokens
    assert all(lp <= 0 for lp in probe.logprobs)
    assert probe.prompt_tokens > 0  # the cue took tokens: fork prompt minus the chain's


def test_two_rung_ladder_over_http(llama_server: str) -> None:
    messages = messages_for(QUESTION, "think")

    async def go() -> Any:
        b = backend(llama_server)
        chain = await b.open_chain(messages, Sampling())
        result = await run_ladder(chain, [8, 16], reserve=6)
        await b.aclose()
        return result

    result = run(go())
    r1, r2 = result.rungs
    assert r1.thinking_tokens <= 8 and r2.thinking_tokens <= 16
    assert result.generated_tokens == result.chain_tokens + result.probe_tokens
    assert result.probe_tokens == r1.answer_tokens + r2.answer_tokens
    if not r2.natural:
        assert r2.thinking_tokens == result.chain_tokens
        assert r2.stop_cost_tokens == r2.thinking_tokens + r1.answer_tokens + r2.answer_tokens
    assert r1.stop_cost_tokens == r1.thinking_tokens + r1.answer_tokens
    for rung in (r1, r2):
        if not rung.natural:
            assert 0 < rung.answer_tokens <= 6
            assert rung.answer_prob is not None and 0 < rung.answer_prob <= 1
            assert rung.answer_text.startswith("Final answer: \\boxed{")


def test_greedy_chains_repeat(llama_server: str) -> None:
    messages = messages_for(QUESTION, "think")

    async def go() -> list[str]:
        b = backend(llama_server)
        texts = []
        for _ in range(2):
            chain = await b.open_chain(messages, Sampling())
            await chain.extend(12)
            texts.append(chain.text)
        await b.aclose()
        return texts

    first, second = run(go())
    assert first == second and first


def test_native_budget_is_refused_before_any_request(llama_server: str) -> None:
    from ponder.budgets.native import native_budget

    async def go() -> None:
        b = backend(llama_server)
        with pytest.raises(BackendError, match="no native thinking-budget parameter"):
            await native_budget(b, messages_for(QUESTION, "think"), 32, 8)
        await b.aclose()

    run(go())
