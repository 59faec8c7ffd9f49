"""The OpenAI-compatible backend against an in-process fake server (httpx MockTransport).

Every test asserts on the JSON the engine would receive or on values written by hand into
the fake responses, never on values the backend computed for itself.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from ponder.backends.base import NO_THINK, THINK, BackendError, ChatRequest, Message, Sampling
from ponder.backends.engines import ENGINES, PROFILES
from ponder.backends.openai_compat import (
    OpenAICompatBackend,
    from_options,
    render_chatml,
    split_reasoning,
)
from ponder.budgets.ladder import run_ladder
from ponder.budgets.native import native_budget, split_tokens
from ponder.errors import InputError

URL = "http://engine.test/v1"
MSGS = (Message("user", "What is 2+3?"),)
Handler = Callable[[httpx2.Request], Any]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def chat_response(
    content: str | None = "5",
    *,
    finish: str = "stop",
    prompt: int = 11,
    completion: int = 7,
    reasoning_tokens: int | None = None,
    message_extra: dict[str, Any] | None = None,
    logprobs: list[float] | None = None,
) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if reasoning_tokens is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": content, **(message_extra or {})},
        "finish_reason": finish,
        "logprobs": None,
    }
    if logprobs is not None:
        choice["logprobs"] = {
            "content": [
                {"token": f"t{i}", "logprob": lp, "bytes": None, "top_logprobs": []}
                for i, lp in enumerate(logprobs)
            ]
        }
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [choice],
        "usage": usage,
    }


def completion_response(
    text: str, *, finish: str = "length", prompt: int = 20, completion: int = 4, logprobs=None
) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
    if logprobs is not None:
        choice["logprobs"] = {
            "tokens": [f"t{i}" for i in range(len(logprobs))],
            "token_logprobs": logprobs,
            "text_offset": list(range(len(logprobs))),
            "top_logprobs": None,
        }
    return {
        "id": "x",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [choice],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": 0},
    }


class FakeServer:
    """Records every request body; answers with the queued responses (or a function)."""

    def __init__(self, responses: list[Any] | Handler | None = None) -> None:
        self.requests: list[httpx2.Request] = []
        self.bodies: list[dict[str, Any]] = []
        self._queue = responses if isinstance(responses, list) else None
        self._fn = responses if callable(responses) else None

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        body = json.loads(request.content) if request.content else {}
        self.bodies.append(body)
        if self._fn is not None:
            result = self._fn(request)
            if asyncio.iscoroutine(result):
                result = await result
        else:
            assert self._queue, f"unexpected request {request.url}"
            result = self._queue.pop(0)
        if isinstance(result, Exception):
            raise result
        if isinstance(result, httpx2.Response):
            return result
        return httpx2.Response(200, json=result)


class SleepLog:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def make(server: FakeServer, sleep: SleepLog | None = None, **options: Any) -> OpenAICompatBackend:
    opts = {"base_url": URL, "model": "m", "engine": "generic", **options}
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(server))
    return from_options(opts, http_client=client, sleep=sleep or SleepLog(), rng=random.Random(0))


def one_chat(backend: OpenAICompatBackend, request: ChatRequest) -> Any:
    async def go() -> Any:
        try:
            return await backend.chat(request)
        finally:
            await backend.aclose()

    return run(go())


def sent(server: FakeServer, i: int = 0) -> dict[str, Any]:
    return server.bodies[i]


# -- parameter mapping --------------------------------------------------------------------

BASE = {"model": "m", "messages": [{"role": "user", "content": "What is 2+3?"}], "top_p": 0.9}

EXPECTED_THINK_BUDGET_40 = {
    "vllm": {"thinking_token_budget": 40, "max_tokens": 56},
    "sglang": {
        "custom_params": {"thinking_budget": 40},
        "separate_reasoning": True,
        "max_tokens": 56,
    },
    "llamacpp": {"thinking_budget_tokens": 40, "max_tokens": 56},
}
EXPECTED_NO_THINK = {
    "vllm": {"chat_template_kwargs": {"enable_thinking": False}, "max_tokens": 56},
    "sglang": {
        "chat_template_kwargs": {"enable_thinking": False},
        "separate_reasoning": True,
        "max_tokens": 56,
    },
    "llamacpp": {"chat_template_kwargs": {"enable_thinking": False}, "max_tokens": 56},
    "llama-cpp-python": {"max_tokens": 56},
    "ollama": {"reasoning_effort": "none", "max_tokens": 56},
    "openai": {"reasoning_effort": "none", "max_completion_tokens": 56},
    "generic": {"max_tokens": 56},
}


@pytest.mark.parametrize("engine", sorted(EXPECTED_THINK_BUDGET_40))
def test_native_budget_goes_in_the_engines_own_field(engine: str) -> None:
    server = FakeServer([chat_response()])
    request = ChatRequest(
        MSGS, max_tokens=56, thinking_budget=40, sampling=Sampling(0.6, 0.9, seed=7)
    )
    one_chat(make(server, engine=engine), request)
    expected = {**BASE, "temperature": 0.6, "seed": 7, **EXPECTED_THINK_BUDGET_40[engine]}
    assert sent(server) == expected
    assert server.requests[0].url.path == "/v1/chat/completions"


@pytest.mark.parametrize("engine", sorted(EXPECTED_NO_THINK))
def test_no_think_uses_the_engines_switch(engine: str) -> None:
    server = FakeServer([chat_response()])
    request = ChatRequest(MSGS, max_tokens=56, mode=NO_THINK, sampling=Sampling(0.0, 0.9))
    one_chat(make(server, engine=engine), request)
    assert sent(server) == {**BASE, "temperature": 0.0, **EXPECTED_NO_THINK[engine]}


@pytest.mark.parametrize("engine", ["llama-cpp-python", "ollama", "openai", "generic"])
def test_a_budget_is_refused_where_the_engine_has_no_budget_field(engine: str) -> None:
    server = FakeServer([])
    request = ChatRequest(MSGS, max_tokens=56, thinking_budget=40)
    with pytest.raises(BackendError, match="no native thinking-budget parameter"):
        one_chat(make(server, engine=engine), request)
    assert server.bodies == []


def test_reasoning_effort_option_is_sent_in_think_mode_only() -> None:
    server = FakeServer([chat_response(), chat_response()])
    backend = make(server, engine="openai", reasoning_effort="low")
    request = ChatRequest(MSGS, max_tokens=9, mode=THINK)

    async def go() -> None:
        await backend.chat(request)
        await backend.chat(ChatRequest(MSGS, max_tokens=9, mode=NO_THINK))
        await backend.aclose()

    run(go())
    assert sent(server, 0)["reasoning_effort"] == "low"
    assert sent(server, 1)["reasoning_effort"] == "none"


def test_capabilities_per_engine() -> None:
    got = {e: make(FakeServer(), engine=e).capabilities() for e in ENGINES}
    assert got["vllm"].thinking_budget_param == "thinking_token_budget"
    assert got["sglang"].thinking_budget_param == "custom_params.thinking_budget"
    assert got["llamacpp"].thinking_budget_param == "thinking_budget_tokens"
    for engine in ("llama-cpp-python", "ollama", "openai", "generic"):
        assert got[engine].thinking_budget_param is None
    assert got["vllm"].thinking_switch == "chat_template_kwargs.enable_thinking"
    assert got["ollama"].thinking_switch == "reasoning_effort=none"
    assert [e for e in ENGINES if got[e].prefix_continuation] == [
        "vllm",
        "sglang",
        "llamacpp",
        "llama-cpp-python",
    ]
    assert not got["llama-cpp-python"].multiple_samples
    assert all(not c.entropy for c in got.values())
    assert set(PROFILES) == set(ENGINES)


def test_n_samples_are_separate_requests_with_consecutive_seeds() -> None:
    server = FakeServer([chat_response("a", completion=3), chat_response("b", completion=5)])
    request = ChatRequest(MSGS, max_tokens=9, n=2, sampling=Sampling(0.8, 1.0, seed=100))
    gens = one_chat(make(server), request)
    assert sorted(b["seed"] for b in server.bodies) == [100, 101]
    assert all("n" not in b for b in server.bodies)
    assert sorted((g.text, g.completion_tokens) for g in gens) == [("a", 3), ("b", 5)]


# -- responses ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "extra", "reasoning", "text"),
    [
        ("The answer is 5.", {"reasoning_content": "2+3 is 5"}, "2+3 is 5", "The answer is 5."),
        ("5", {"reasoning": "add them"}, "add them", "5"),
        ("<think>\nadd 2 and 3\n</think>\n\nIt is 5.", None, "add 2 and 3", "It is 5."),
        ("add 2 and 3</think>It is 5.", None, "add 2 and 3", "It is 5."),
        ("It is 5.", None, "", "It is 5."),
        (None, {"reasoning_content": "long thought"}, "long thought", ""),
    ],
)
def test_reasoning_split_variants(content, extra, reasoning, text) -> None:
    server = FakeServer([chat_response(content, message_extra=extra)])
    (gen,) = one_chat(make(server, engine="vllm"), ChatRequest(MSGS, max_tokens=9))
    assert (gen.reasoning, gen.text) == (reasoning, text)


def test_split_reasoning_keeps_text_without_tags() -> None:
    assert split_reasoning("no tags here") == ("", "no tags here")
    assert split_reasoning("<think>a</think>b") == ("a", "b")


def test_usage_and_finish_reason_are_read() -> None:
    server = FakeServer(
        [chat_response("x", finish="length", prompt=31, completion=64, reasoning_tokens=50)]
    )
    (gen,) = one_chat(make(server), ChatRequest(MSGS, max_tokens=64))
    assert (gen.prompt_tokens, gen.completion_tokens, gen.reasoning_tokens) == (31, 64, 50)
    assert gen.finish_reason == "length"
    assert gen.token_logprobs is None


def test_logprobs_are_requested_and_read() -> None:
    server = FakeServer([chat_response("5", completion=2, logprobs=[-0.5, -0.25])])
    (gen,) = one_chat(make(server), ChatRequest(MSGS, max_tokens=4, logprobs=True))
    assert sent(server)["logprobs"] is True
    assert gen.token_logprobs == (-0.5, -0.25)


def test_a_response_without_usage_is_an_error() -> None:
    body = chat_response()
    del body["usage"]
    with pytest.raises(BackendError, match="usage"):
        one_chat(make(FakeServer([body])), ChatRequest(MSGS, max_tokens=4))


# -- retries, timeouts, errors ------------------------------------------------------------


def error(status: int, headers: dict[str, str] | None = None) -> httpx2.Response:
    return httpx2.Response(status, json={"error": {"message": f"boom {status}"}}, headers=headers)


def test_retries_429_and_500_then_succeeds() -> None:
    server = FakeServer([error(429), error(500), chat_response("ok")])
    sleep = SleepLog()
    backend = make(server, sleep, max_retries=3, backoff_s=1.0, max_backoff_s=10.0)
    (gen,) = one_chat(backend, ChatRequest(MSGS, max_tokens=4))
    assert gen.text == "ok"
    assert len(server.bodies) == 3
    assert len(sleep.delays) == 2
    # full jitter: attempt k waits in [0, backoff * 2**k]
    assert 0 <= sleep.delays[0] <= 1.0
    assert 0 <= sleep.delays[1] <= 2.0


def test_retry_after_header_sets_the_minimum_wait() -> None:
    server = FakeServer([error(429, {"retry-after": "7"}), chat_response("ok")])
    sleep = SleepLog()
    one_chat(make(server, sleep, backoff_s=0.01), ChatRequest(MSGS, max_tokens=4))
    assert sleep.delays == [7.0]


def test_gives_up_after_max_retries_with_a_retryable_error() -> None:
    server = FakeServer([error(503)] * 3)
    sleep = SleepLog()
    with pytest.raises(BackendError, match=r"HTTP 503.*gave up after 3 attempts") as info:
        one_chat(make(server, sleep, max_retries=2), ChatRequest(MSGS, max_tokens=4))
    assert info.value.retryable and info.value.status == 503
    assert len(server.bodies) == 3 and len(sleep.delays) == 2


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_client_errors_are_not_retried(status: int) -> None:
    server = FakeServer([error(status)])
    sleep = SleepLog()
    with pytest.raises(BackendError) as info:
        one_chat(make(server, sleep, max_retries=5), ChatRequest(MSGS, max_tokens=4))
    assert not info.value.retryable
    assert info.value.status == status
    assert URL in str(info.value) and "'m'" in str(info.value)
    assert len(server.bodies) == 1 and sleep.delays == []


def test_timeouts_are_retried_then_reported() -> None:
    def handler(request: httpx2.Request) -> Any:
        return httpx2.ReadTimeout("slow", request=request)

    server = FakeServer(handler)
    sleep = SleepLog()
    backend = make(server, sleep, max_retries=1, timeout_s=2.5)
    with pytest.raises(BackendError, match=r"no answer within 2\.5 s") as info:
        one_chat(backend, ChatRequest(MSGS, max_tokens=4))
    assert info.value.retryable
    assert len(server.requests) == 2 and len(sleep.delays) == 1


def test_the_per_request_timeout_reaches_the_http_layer() -> None:
    seen: list[Any] = []

    def handler(request: httpx2.Request) -> Any:
        seen.append(request.extensions.get("timeout"))
        return chat_response()

    one_chat(make(FakeServer(handler), timeout_s=3.0), ChatRequest(MSGS, max_tokens=4))
    assert seen and all(v == 3.0 for v in seen[0].values())


def test_connection_errors_are_retried() -> None:
    outcomes: list[Any] = [httpx2.ConnectError("refused"), chat_response("ok")]

    def handler(request: httpx2.Request) -> Any:
        return outcomes.pop(0)

    sleep = SleepLog()
    (gen,) = one_chat(make(FakeServer(handler), sleep), ChatRequest(MSGS, max_tokens=4))
    assert gen.text == "ok" and len(sleep.delays) == 1


def test_concurrency_limit_is_honoured() -> None:
    state = {"now": 0, "max": 0}
    gate = asyncio.Event()

    async def handler(request: httpx2.Request) -> Any:
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        if state["now"] >= 2:
            gate.set()
        await gate.wait()
        for _ in range(5):  # give any request the semaphore let through a chance to enter
            await asyncio.sleep(0)
        state["now"] -= 1
        return chat_response()

    backend = make(FakeServer(handler), concurrency=2)
    gens = one_chat(backend, ChatRequest(MSGS, max_tokens=4, n=6))
    assert len(gens) == 6
    assert state["max"] == 2


# -- check ------------------------------------------------------------------------------------


def models(*ids: str) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": i, "object": "model", "owned_by": "x"} for i in ids]}


def test_check_passes_when_the_model_is_served() -> None:
    server = FakeServer([models("a", "m")])
    run(make(server).check())
    assert server.requests[0].method == "GET" and server.requests[0].url.path == "/v1/models"


def test_check_names_the_served_models_when_ours_is_missing() -> None:
    with pytest.raises(BackendError, match=r"does not serve model 'm'; it serves: a, b"):
        run(make(FakeServer([models("a", "b")])).check())


def test_check_on_a_wrong_url_says_so() -> None:
    with pytest.raises(BackendError, match=r"HTTP 404.*wrong base_url"):
        run(make(FakeServer([error(404)])).check())


# -- chains -----------------------------------------------------------------------------------


def test_completions_chain_sends_chatml_plus_text_and_forks_without_changing_it() -> None:
    prompt = "<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n"
    assert render_chatml(MSGS) == prompt
    server = FakeServer(
        [
            completion_response("First, 2", prompt=20, completion=4),
            completion_response(
                "2+3=5", finish="stop", prompt=29, completion=3, logprobs=[-0.1, -0.2, -0.3]
            ),
            completion_response(" plus 3.", finish="stop", prompt=24, completion=3),
        ]
    )
    backend = make(server, engine="llama-cpp-python")

    async def go() -> Any:
        chain = await backend.open_chain(MSGS, Sampling(0.7, 0.95, seed=10))
        first = await chain.extend(4)
        probe = await chain.fork("\nAnswer: \\boxed{", 6, ("}",))
        after_fork = (chain.text, chain.tokens, chain.finished)
        second = await chain.extend(8)
        await backend.aclose()
        return chain, first, probe, after_fork, second

    chain, first, probe, after_fork, second = run(go())
    b0, b1, b2 = server.bodies
    assert all(r.url.path == "/v1/completions" for r in server.requests)
    assert b0 == {
        "model": "m",
        "prompt": prompt,
        "max_tokens": 4,
        "temperature": 0.7,
        "top_p": 0.95,
        "seed": 10,
        "stop": ["<|im_end|>", "<|endoftext|>"],
    }
    assert b1 == {
        "model": "m",
        "prompt": prompt + "First, 2" + "\nAnswer: \\boxed{",
        "max_tokens": 6,
        "temperature": 0.0,
        "top_p": 1.0,
        "stop": ["}", "<|im_end|>", "<|endoftext|>"],
        "logprobs": 1,
    }
    assert b2["prompt"] == prompt + "First, 2" and b2["seed"] == 11 and b2["max_tokens"] == 8
    assert (first.tokens, first.finished) == (4, False)
    assert after_fork == ("First, 2", 4, False)
    assert probe.text == "2+3=5" and probe.tokens == 3
    assert probe.logprobs == (-0.1, -0.2, -0.3)
    assert probe.prompt_tokens == 29 - (20 + 4)  # the cue's tokens: fork prompt minus context
    assert (chain.text, chain.tokens, chain.finished) == ("First, 2 plus 3.", 7, True)
    assert chain.prompt_tokens == 20
    assert second.finished


def test_chat_chain_continues_the_final_message() -> None:
    server = FakeServer(
        [
            chat_response("Two plus", finish="length", prompt=15, completion=2),
            chat_response("5", prompt=22, completion=1, logprobs=[-0.7]),
        ]
    )
    backend = make(server, engine="vllm")

    async def go() -> Any:
        chain = await backend.open_chain(MSGS, Sampling())
        await chain.extend(2)
        probe = await chain.fork(" so: ", 3, ("}",))
        await backend.aclose()
        return probe

    probe = run(go())
    assert server.bodies[1] == {
        "model": "m",
        "messages": [
            {"role": "user", "content": "What is 2+3?"},
            {"role": "assistant", "content": "Two plus so: "},
        ],
        "max_tokens": 3,
        "temperature": 0.0,
        "top_p": 1.0,
        "stop": ["}"],
        "logprobs": True,
        "continue_final_message": True,
        "add_generation_prompt": False,
    }
    assert probe.logprobs == (-0.7,) and probe.prompt_tokens == 22 - 17


def test_append_counts_tokens_from_prompt_sizes() -> None:
    server = FakeServer(
        [
            completion_response("abc", prompt=20, completion=5),
            completion_response("", prompt=28, completion=1),  # measures chain + "Wait,"
        ]
    )
    backend = make(server, engine="llamacpp")

    async def go() -> Any:
        chain = await backend.open_chain(MSGS, Sampling())
        await chain.extend(5)
        added = await chain.append("\nWait,")
        await backend.aclose()
        return chain, added

    chain, added = run(go())
    assert added == 28 - (20 + 5)
    assert chain.text == "abc\nWait," and chain.tokens == 5 + 3
    assert server.bodies[1]["max_tokens"] == 1


def test_ladder_over_an_http_chain_adds_up() -> None:
    server = FakeServer(
        [
            completion_response("a" * 4, prompt=20, completion=8),  # chain to rung 8
            completion_response("7", finish="stop", prompt=37, completion=2, logprobs=[-0.5, 0.0]),
            completion_response("b", prompt=28, completion=8),  # chain to rung 16
            completion_response("9", finish="stop", prompt=45, completion=1, logprobs=[-0.25]),
        ]
    )
    backend = make(server, engine="llamacpp")

    async def go() -> Any:
        chain = await backend.open_chain(MSGS, Sampling())
        result = await run_ladder(chain, [8, 16], reserve=4)
        await backend.aclose()
        return result

    result = run(go())
    r1, r2 = result.rungs
    assert (r1.thinking_tokens, r1.answer_tokens, r1.stop_cost_tokens) == (8, 2, 10)
    assert (r2.thinking_tokens, r2.answer_tokens, r2.stop_cost_tokens) == (16, 1, 16 + 2 + 1)
    assert r1.cue_tokens == 37 - 28 and r2.cue_tokens == 45 - 36
    assert r1.answer_prob == pytest.approx(0.6065306597)  # exp(-0.5)
    assert result.generated_tokens == 16 + 3


def test_engines_without_prefix_continuation_refuse_a_chain() -> None:
    with pytest.raises(BackendError, match="cannot continue a prefix"):
        run(make(FakeServer(), engine="ollama").open_chain(MSGS, Sampling()))


# -- native budget --------------------------------------------------------------------------


def test_native_budget_maps_one_call_to_a_rung() -> None:
    server = FakeServer(
        [
            chat_response(
                "\\boxed{5}",
                prompt=12,
                completion=70,
                reasoning_tokens=64,
                message_extra={"reasoning_content": "..."},
            )
        ]
    )
    backend = make(server, engine="vllm")

    async def go() -> Any:
        rung = await native_budget(backend, MSGS, 64, 16)
        await backend.aclose()
        return rung

    rung = run(go())
    assert sent(server)["thinking_token_budget"] == 64
    assert sent(server)["max_tokens"] == 80
    assert (rung.budget, rung.thinking_tokens, rung.answer_tokens) == (64, 64, 6)
    assert rung.stop_cost_tokens == 70 and rung.answer_text == "\\boxed{5}"
    assert not rung.natural  # the engine ended the thinking at the budget


def test_native_budget_natural_when_thinking_ends_early() -> None:
    server = FakeServer([chat_response("5", completion=12, reasoning_tokens=10)])

    async def go() -> Any:
        return await native_budget(make(server, engine="sglang"), MSGS, 64, 16)

    rung = run(go())
    assert rung.natural and rung.thinking_tokens == 10 and rung.answer_tokens == 2


def test_native_budget_refused_without_a_native_parameter() -> None:
    server = FakeServer([])
    with pytest.raises(BackendError, match="force_budget"):
        run(native_budget(make(server, engine="generic"), MSGS, 64, 16))
    assert server.bodies == []


def test_split_tokens_estimates_from_characters_only_when_uncounted() -> None:
    assert split_tokens(10, 7, "anything", "x") == 7
    assert split_tokens(10, None, "", "answer") == 0
    assert split_tokens(10, None, "a" * 30, "b" * 10) == 8  # 10 * 30/40 = 7.5 -> 8


# -- options ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        ({"model": "m"}, "base_url", "is required"),
        ({"base_url": URL}, "model", "is required"),
        ({"base_url": "engine.test/v1", "model": "m"}, "base_url", "http"),
        ({"base_url": URL, "model": "m", "engine": "tgi"}, "engine", "unknown engine"),
        ({"base_url": URL, "model": "m", "concurrency": 0}, "concurrency", ">= 1"),
        ({"base_url": URL, "model": "m", "max_retries": 1.5}, "max_retries", "integer"),
        ({"base_url": URL, "model": "m", "timeout_s": "10"}, "timeout_s", "number"),
        ({"base_url": URL, "model": "m", "modle": "x"}, "modle", "unknown option"),
        ({"base_url": URL, "model": "m", "prefix": "raw"}, "prefix", "chat, completions"),
        (
            {"base_url": URL, "model": "m", "api_key_env": "PONDER_TEST_UNSET_KEY_XYZ"},
            "api_key_env",
            "PONDER_TEST_UNSET_KEY_XYZ is not set",
        ),
    ],
)
def test_bad_options_are_one_line_errors(options, field, message) -> None:
    with pytest.raises(InputError) as info:
        from_options(options)
    assert info.value.field == field
    assert message in str(info.value) and "\n" not in str(info.value)


def test_api_key_from_the_environment_and_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PONDER_TEST_KEY", "sk-test-123")
    server = FakeServer([chat_response()])
    backend = make(server, api_key_env="PONDER_TEST_KEY", name="my-model")
    assert backend.model == "my-model"
    one_chat(backend, ChatRequest(MSGS, max_tokens=3))
    assert server.requests[0].headers["authorization"] == "Bearer sk-test-123"
    assert sent(server)["model"] == "m"


def test_prefix_option_overrides_the_engine_default() -> None:
    server = FakeServer([completion_response("go", prompt=9, completion=2)])
    backend = make(server, engine="generic", prefix="completions")
    assert backend.capabilities().prefix_continuation

    async def go() -> Any:
        chain = await backend.open_chain(MSGS, Sampling())
        await chain.extend(2)
        await backend.aclose()
        return chain

    chain = run(go())
    assert server.requests[0].url.path == "/v1/completions"
    assert (chain.text, chain.tokens) == ("go", 2)
    assert not make(FakeServer(), engine="vllm", prefix="none").capabilities().prefix_continuation


def test_a_failed_sample_fails_the_request_after_the_others_finish() -> None:
    server = FakeServer([chat_response("a"), error(400), chat_response("c")])
    with pytest.raises(BackendError, match="HTTP 400"):
        one_chat(make(server), ChatRequest(MSGS, max_tokens=4, n=3))
    assert len(server.bodies) == 3


def test_a_response_without_choices_is_an_error() -> None:
    body = completion_response("x")
    body["choices"] = []
    server = FakeServer([body])
    backend = make(server, engine="llamacpp")

    async def go() -> None:
        chain = await backend.open_chain(MSGS, Sampling())
        await chain.extend(3)

    with pytest.raises(BackendError, match="no choices"):
        run(go())


def test_the_servers_error_message_is_kept_on_one_line() -> None:
    bad = httpx2.Response(400, json={"error": {"message": "max_tokens too large:\n 4096 > 2048"}})
    with pytest.raises(BackendError) as info:
        one_chat(make(FakeServer([bad])), ChatRequest(MSGS, max_tokens=4))
    assert "max_tokens too large: 4096 > 2048" in str(info.value)
    assert "\n" not in str(info.value)


# -- streamed extension (a server streaming a chain's text to its caller) ----------------------


def sse(events: list[dict[str, Any]]) -> httpx2.Response:
    text = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return httpx2.Response(200, text=text, headers={"content-type": "text/event-stream"})


def completion_chunk(text: str, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "x",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
    }


def test_a_streamed_extension_hands_out_text_as_it_arrives_and_counts_from_usage() -> None:
    usage_chunk = {
        **completion_chunk(""),
        "choices": [],
        "usage": {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23},
    }
    server = FakeServer(
        [
            sse(
                [
                    completion_chunk("First"),
                    completion_chunk(", 2"),
                    completion_chunk(" and", "length"),
                    usage_chunk,
                ]
            )
        ]
    )
    backend = make(server, engine="llama-cpp-python")
    pieces: list[str] = []

    async def sink(text: str) -> None:
        pieces.append(text)

    async def go() -> Any:
        chain = await backend.open_chain(MSGS, Sampling(0.7, 0.95, seed=3))
        segment = await chain.extend(3, on_text=sink)
        await backend.aclose()
        return chain, segment

    chain, segment = run(go())
    assert pieces == ["First", ", 2", " and"]
    assert sent(server)["stream"] is True
    assert sent(server)["stream_options"] == {"include_usage": True}
    assert (segment.text, segment.tokens, segment.finished) == ("First, 2 and", 3, False)
    assert (chain.text, chain.tokens, chain.prompt_tokens) == ("First, 2 and", 3, 20)


def test_a_stream_without_usage_is_counted_from_prompt_sizes() -> None:
    server = FakeServer(
        [
            sse([completion_chunk("Two"), completion_chunk(" words", "stop")]),
            completion_response("", prompt=20, completion=1),  # the prompt alone: 20 tokens
            completion_response("", prompt=22, completion=1),  # prompt + "Two words": 22
        ]
    )
    backend = make(server, engine="llama-cpp-python")
    pieces: list[str] = []

    async def sink(text: str) -> None:
        pieces.append(text)

    async def go() -> Any:
        chain = await backend.open_chain(MSGS, Sampling())
        segment = await chain.extend(8, on_text=sink)
        await backend.aclose()
        return chain, segment

    chain, segment = run(go())
    assert pieces == ["Two", " words"]
    assert (segment.tokens, segment.finished) == (2, True)
    assert (chain.tokens, chain.prompt_tokens, chain.finished) == (2, 20, True)
    assert [b.get("max_tokens") for b in server.bodies] == [8, 1, 1]


def test_a_stream_that_fails_before_any_text_is_retried() -> None:
    server = FakeServer(
        [
            httpx2.Response(503, text="busy"),
            sse(
                [
                    completion_chunk("ok", "stop"),
                    {
                        **completion_chunk(""),
                        "choices": [],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
                    },
                ]
            ),
        ]
    )
    sleep = SleepLog()
    backend = make(server, sleep, engine="llama-cpp-python")

    async def sink(text: str) -> None:
        return None

    async def go() -> Any:
        chain = await backend.open_chain(MSGS, Sampling())
        segment = await chain.extend(4, on_text=sink)
        await backend.aclose()
        return segment

    segment = run(go())
    assert segment.text == "ok" and segment.tokens == 1 and len(sleep.delays) == 1
