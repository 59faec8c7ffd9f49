"""``ponder serve`` under load on loopback: a small real engine, the real proxy, 32 clients.

The engine is a minimal OpenAI-compatible app (canned text, a few milliseconds of sleep per
word to stand in for generation, usage included) served by uvicorn in a thread of this
process. ``python -m ponder serve`` runs in a subprocess in front of it with two upstreams on
that engine: ``up`` with the default timeout, and ``tight`` with a 1 s timeout and no retries.
32 official ``openai.AsyncOpenAI`` clients, half of their requests streamed, hammer the proxy
for ``$PONDER_LOAD_SECONDS`` (default 30); every reply must be whole, the proxy's /metrics and
the engine must count exactly the requests the clients made, and the proxy must still be
healthy afterwards. A few requests that ask the engine to stall past the tight timeout must
come back as quick 504s while the rest of the burst succeeds.

No model is involved; the servers are stopped (thread joined, process stopped by its pid)
when the module ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.network_local, pytest.mark.slow]

fastapi = pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
prometheus_parser = pytest.importorskip("prometheus_client.parser")

LOAD_SECONDS = float(os.environ.get("PONDER_LOAD_SECONDS", "30"))
CLIENTS = 32
WORDS = ("The", " answer", " is", " forty", "-two", ".")
TEXT = "".join(WORDS)
STEP_S = 0.002  # the engine's "generation" time per word
TIGHT_TIMEOUT_S = 1.0
STALL_S = 8.0  # far beyond the tight timeout: a 504 must not wait for it
START_TIMEOUT_S = 60

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# -- the engine --------------------------------------------------------------------------------


@dataclass
class EngineLog:
    """What the engine was asked, counted on its event loop (one thread writes)."""

    chat_requests: int = 0
    stalled: int = 0
    abandoned: int = 0  # streams whose reader went away before the end


def _sse(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    return f"data: {text}\n\n".encode()


async def _sleep_unless_gone(request: Any, seconds: float) -> None:
    """Sleep, but stop early when the caller hangs up (as an engine aborts a dropped request)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not await request.is_disconnected():
        await asyncio.sleep(0.05)


def engine_app(log: EngineLog) -> Any:
    """An OpenAI-compatible engine that writes ``TEXT`` word by word; ``stall_s`` in the body
    makes it wait that long before answering."""
    from starlette.responses import JSONResponse, StreamingResponse

    app = fastapi.FastAPI()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "up", "object": "model", "owned_by": "test"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: fastapi.Request) -> Any:
        body = await request.json()
        log.chat_requests += 1
        stall = float(body.get("stall_s") or 0)
        if stall:
            log.stalled += 1
            await _sleep_unless_gone(request, stall)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(WORDS),
            "total_tokens": prompt_tokens + len(WORDS),
        }
        head = {"id": "cmpl-engine", "created": int(time.time()), "model": body["model"]}
        if not body.get("stream"):
            await asyncio.sleep(STEP_S * len(WORDS))
            message = {"role": "assistant", "content": TEXT}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return JSONResponse(
                {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
            )

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return _sse({**head, "object": "chat.completion.chunk", "choices": [choice]})

        step_s = float(body.get("word_s") or STEP_S)

        async def events() -> AsyncIterator[bytes]:
            finished = False
            try:
                yield chunk({"role": "assistant", "content": ""})
                for word in WORDS:
                    await asyncio.sleep(step_s)
                    yield chunk({"content": word})
                finished = True
            finally:
                if not finished:
                    log.abandoned += 1
            yield chunk({}, "stop")
            if (body.get("stream_options") or {}).get("include_usage"):
                tail = {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage}
                yield _sse(tail)
            yield _sse("[DONE]")

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@dataclass(frozen=True)
class Proxy:
    root: str
    log: EngineLog

    @property
    def v1(self) -> str:
        return f"{self.root}/v1"


def _loopback_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def _free_port() -> int:
    with _loopback_socket() as sock:
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def engine() -> Iterator[tuple[str, EngineLog]]:
    """The engine's base URL (``.../v1``) and its log; uvicorn in a thread, joined at the end."""
    log = EngineLog()
    sock = _loopback_socket()
    config = uvicorn.Config(
        engine_app(log), log_level="warning", access_log=False, timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            assert thread.is_alive(), "the engine's server thread died at start"
            assert time.monotonic() < deadline, "the engine did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1", log
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        assert not thread.is_alive(), "the engine's server thread did not stop"


@pytest.fixture(scope="module")
def proxy(
    engine: tuple[str, EngineLog], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    """``python -m ponder serve`` in front of the engine, stopped by its pid at the end."""
    engine_url, log = engine
    port = _free_port()
    root = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "ponder", "serve",
        "--upstream", f"up={engine_url}",
        "--upstream", f"tight={engine_url},model=up,timeout_s={TIGHT_TIMEOUT_S},max_retries=0",
        "--no-check", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "PONDER_API_KEYS"}
    log_path = tmp_path_factory.mktemp("ponder_serve_load") / "serve.log"
    with log_path.open("wb") as out:  # a file, not a pipe: nobody reads it while tests run
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                if proc.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    pytest.fail(f"ponder serve exited with {proc.returncode}: {tail}")
                try:
                    if httpx.get(f"{root}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "ponder serve did not answer /health"
                time.sleep(0.1)
            yield Proxy(root, log)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=15)


# -- the clients -------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the clients did and saw."""

    made: int = 0
    streamed: int = 0
    done_events: int = 0
    errors: list[str] = field(default_factory=list)


class _WatchedStream(httpx.AsyncByteStream):
    """A response body that notes, when closed, whether its last event was ``[DONE]``."""

    def __init__(self, inner: httpx.AsyncByteStream, tally: Tally) -> None:
        self._inner = inner
        self._tally = tally
        self._tail = b""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._tail = (self._tail + chunk)[-32:]
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()
        if self._tail.endswith(b"data: [DONE]\n\n"):
            self._tally.done_events += 1


class _DoneWatcher(httpx.AsyncBaseTransport):
    """The client's transport, watching event streams for their closing ``[DONE]``: the
    openai client stops at it silently, and would also stop silently at a cut stream."""

    def __init__(self, tally: Tally) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._tally = tally

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            assert isinstance(response.stream, httpx.AsyncByteStream)
            response.stream = _WatchedStream(response.stream, self._tally)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def _client(url: str, tally: Tally) -> Any:
    # no client retries: each call is exactly one request the proxy must count
    http = httpx.AsyncClient(transport=_DoneWatcher(tally), timeout=30)
    return openai.AsyncOpenAI(
        base_url=url, api_key="unused", max_retries=0, timeout=30, http_client=http
    )


async def _ask(client: Any, model: str, stream: bool, usage: bool, stall_s: float = 0) -> None:
    """One request; raises AssertionError unless the reply is whole."""
    messages = [{"role": "user", "content": "What is six times seven?"}]
    extra = {"stall_s": stall_s} if stall_s else None
    if not stream:
        reply = await client.chat.completions.create(
            model=model, messages=messages, extra_body=extra
        )
        assert reply.model == model
        assert reply.choices[0].message.content == TEXT
        assert reply.choices[0].finish_reason == "stop"
        assert reply.usage is not None and reply.usage.completion_tokens == len(WORDS)
        return
    # absent when not asked for (an explicit null is another case, not this file's subject)
    options = {"stream_options": {"include_usage": True}} if usage else {}
    chunks = [
        c
        async for c in await client.chat.completions.create(
            model=model, messages=messages, stream=True, extra_body=extra, **options
        )
    ]
    assert all(c.model == model for c in chunks)
    with_choices = [c for c in chunks if c.choices]
    assert "".join(c.choices[0].delta.content or "" for c in with_choices) == TEXT
    finishes = [c.choices[0].finish_reason for c in with_choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1, finishes
    if usage:  # the last event before [DONE] carries the usage, and no choices
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == len(WORDS)
        assert all(c.usage is None for c in chunks[:-1])
    else:  # ponder asked the engine for usage to count tokens; it is not passed on
        assert all(c.usage is None for c in chunks)


def _metric_samples(root: str) -> Samples:
    response = httpx.get(f"{root}/metrics", timeout=10)
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in prometheus_parser.text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _requests(samples: Samples, model: str, **labels: str) -> float:
    """Sum of ``ponder_requests_total`` for `model` over the labels not given."""
    return sum(
        value
        for (name, sample_labels), value in samples.items()
        if name == "ponder_requests_total"
        and dict(sample_labels)["model"] == model
        and all(dict(sample_labels).get(k) == v for k, v in labels.items())
    )


def _settled(root: str, model: str, expected: int) -> Samples:
    """/metrics once every request is counted: a stream is counted when the proxy's relay
    closes, which can trail the client's last byte by a moment."""
    deadline = time.monotonic() + 5
    while True:
        samples = _metric_samples(root)
        counted = _requests(samples, model)
        in_flight = samples[("ponder_requests_in_flight", frozenset())]
        if (counted == expected and in_flight == 0) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


# -- the tests ---------------------------------------------------------------------------------


def test_32_clients_for_the_load_time_all_get_whole_replies(proxy: Proxy) -> None:
    tally = Tally()
    before = _metric_samples(proxy.root)
    engine_before = proxy.log.chat_requests

    async def client_loop(index: int, deadline: float) -> None:
        client = _client(proxy.v1, tally)
        try:
            n = 0
            while time.monotonic() < deadline:
                stream = (index + n) % 2 == 0  # half the requests streamed
                usage = (index + n) % 4 == 0  # half of those ask for the usage
                tally.made += 1
                tally.streamed += stream
                try:
                    await _ask(client, "up", stream, usage)
                except Exception as exc:  # every failure is a finding, not a crash
                    tally.errors.append(f"{type(exc).__name__}: {exc}")
                n += 1
        finally:
            await client.close()

    async def run() -> None:
        deadline = time.monotonic() + LOAD_SECONDS
        await asyncio.gather(*(client_loop(i, deadline) for i in range(CLIENTS)))

    asyncio.run(run())

    assert tally.errors == [], f"{len(tally.errors)} of {tally.made}: {tally.errors[:5]}"
    assert tally.made >= CLIENTS
    assert tally.done_events == tally.streamed  # every stream ended on its [DONE] event
    after = _settled(proxy.root, "up", int(_requests(before, "up")) + tally.made)
    grown = _requests(after, "up") - _requests(before, "up")
    ok = _requests(after, "up", status="200") - _requests(before, "up", status="200")
    streamed = _requests(after, "up", stream="true") - _requests(before, "up", stream="true")
    assert grown == tally.made
    assert ok == tally.made
    assert streamed == tally.streamed
    assert after[("ponder_requests_in_flight", frozenset())] == 0
    assert proxy.log.chat_requests - engine_before == tally.made  # no retries, none lost
    health = httpx.get(f"{proxy.root}/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_requests_stalled_past_the_upstream_timeout_are_quick_504s(proxy: Proxy) -> None:
    """4 of 64 concurrent requests ask the engine to stall for 8 s behind a 1 s timeout."""
    tally = Tally()
    before = _metric_samples(proxy.root)
    stalled_before = proxy.log.stalled
    timed_out: list[float] = []

    async def one(client: Any, stream: bool, stall: bool) -> None:
        tally.made += 1
        tally.streamed += stream
        started = time.monotonic()
        try:
            await _ask(client, "tight", stream, usage=True, stall_s=STALL_S if stall else 0)
        except openai.APIStatusError as exc:
            if not (stall and exc.status_code == 504):
                tally.errors.append(f"{exc.status_code}: {exc.message}")
            else:
                assert exc.code == "timeout", exc.body
                timed_out.append(time.monotonic() - started)
        except Exception as exc:  # every failure is a finding, not a crash
            tally.errors.append(f"{type(exc).__name__}: {exc}")
        else:
            if stall:
                tally.errors.append("a stalled request succeeded")

    async def run() -> None:
        clients = [_client(proxy.v1, tally) for _ in range(CLIENTS)]
        try:
            await asyncio.gather(
                *(
                    one(client, stream, stall=i < 4 and stream == (i % 2 == 0))
                    for i, client in enumerate(clients)
                    for stream in (False, True)
                )
            )
        finally:
            for client in clients:
                await client.close()

    asyncio.run(run())

    assert tally.errors == [], tally.errors
    assert len(timed_out) == 4
    assert max(timed_out) < TIGHT_TIMEOUT_S + 3  # the timeout, not the stall
    assert proxy.log.stalled - stalled_before == 4
    fine = tally.made - 4
    assert tally.done_events == tally.streamed - 2  # the two stalled streams never opened
    after = _settled(proxy.root, "tight", int(_requests(before, "tight")) + tally.made)

    def grew(name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("ponder_requests_total", model="tight", status="504", stream="false") == 2
    assert grew("ponder_requests_total", model="tight", status="504", stream="true") == 2
    ok = _requests(after, "tight", status="200") - _requests(before, "tight", status="200")
    assert ok == fine
    assert grew("ponder_upstream_errors_total", upstream="tight", kind="timeout") == 4
    assert after[("ponder_requests_in_flight", frozenset())] == 0
    health = httpx.get(f"{proxy.root}/health", timeout=10)
    assert health.status_code == 200


def test_a_client_that_leaves_mid_stream_leaves_no_upstream_stream_running(proxy: Proxy) -> None:
    """The caller reads the first words of a slow stream and hangs up: ponder must close its
    own stream to the engine at once (an engine then stops generating), and keep serving."""
    before = proxy.log.abandoned
    body = {"model": "up", "stream": True, "word_s": 2.0,
            "messages": [{"role": "user", "content": "What is six times seven?"}]}  # fmt: skip
    with (
        httpx.Client(timeout=30) as client,
        client.stream("POST", f"{proxy.v1}/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        next(response.iter_bytes())  # the first event arrived: the engine is mid-stream
    deadline = time.monotonic() + 5  # far less than the 12 s the stream would still take
    while proxy.log.abandoned == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy.log.abandoned == before + 1
    assert httpx.get(f"{proxy.root}/health", timeout=10).status_code == 200
