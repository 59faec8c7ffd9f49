"""The proxy: an OpenAI-compatible API in front of engines, applying fitted policies.

``POST /v1/chat/completions`` with ``model="ponder/<policy>"`` runs the policy's plan for the
request (``ponder.serve.dispatch``); any other model that names an upstream is passed
through unchanged, streamed when asked. ``GET /v1/models``, ``GET /health`` and
``GET /metrics`` (Prometheus) are the rest; ``POST /v1/ponder/feedback`` attaches a gold
answer or a verdict to a logged request, for ``ponder recalibrate``.

Streaming of a ``ponder/`` model sends the text of every chain the plan grows as reasoning
deltas as soon as ponder has it (one delta per piece the engine returned: a stretch up to
the next probe rung), then the final answer, then the usage when asked for. The caller sees
the compute being spent as it is spent, never a buffered reply dressed up as a stream;
direct (no-think) answers and probes are not streamed, only their result.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.responses import JSONResponse, Response, StreamingResponse

from ponder.backends.base import BackendError, Message, TextSink
from ponder.decision import Decision
from ponder.serve.dispatch import (
    Outcome,
    Served,
    check_models,
    completion,
    conversation,
    decide,
    headers,
    new_request_id,
    plan_for,
    ponder_summary,
    run_plan,
    served_settings,
    usage,
)
from ponder.serve.errors import ApiError
from ponder.serve.limits import KeyPolicy, KeyRing, Limiter, LimitError
from ponder.serve.metrics import ServeMetrics
from ponder.serve.schemas import ChatCompletionRequest, location
from ponder.serve.upstreams import Upstream, UpstreamSpec, sse_events
from ponder.sweep.execute import RunSettings

REASONING_FIELDS = ("reasoning_content", "reasoning")


@dataclass
class ServeConfig:
    """Everything ``ponder serve`` was told; the app is built from it."""

    upstreams: Sequence[UpstreamSpec]
    policies: Sequence[Served] = ()
    keys: Sequence[KeyPolicy] = ()
    max_body_bytes: int = 1_000_000
    reserve: int = 16
    reasoning_field: str = "reasoning_content"
    store: Path | None = None
    log_prompts: bool = False
    disconnect_poll_s: float = 0.25
    used_tokens: Mapping[str, int] = field(default_factory=dict)
    # upstream NAME -> another upstream that serves in its place when NAME fails
    fallbacks: Mapping[str, str] = field(default_factory=dict)
    # share of single-turn ponder/ requests whose plan also runs in full (for recalibrate)
    explore: float = 0.0
    explore_seed: int | None = None

    def __post_init__(self) -> None:
        if self.reasoning_field not in REASONING_FIELDS:
            raise ValueError(f"reasoning_field must be one of {REASONING_FIELDS}")
        names = [u.name for u in self.upstreams]
        if len(set(names)) != len(names):
            raise ValueError(f"upstream names must be unique: {names}")
        if not 0 <= self.explore <= 1:
            raise ValueError(f"explore must be a share in [0, 1], got {self.explore}")
        if self.explore > 0 and self.store is None:
            raise ValueError("exploring needs a store to log to (--store)")
        for name, other in self.fallbacks.items():
            if name not in names or other not in names or name == other:
                raise ValueError(f"fallback {name}={other}: both must be other upstreams")


@dataclass
class _State:
    config: ServeConfig
    upstreams: dict[str, Upstream]
    policies: dict[str, Served]
    keys: KeyRing
    limiter: Limiter
    metrics: ServeMetrics
    log: Any = None  # RequestLog when a store is configured
    background: set[asyncio.Task[None]] = field(default_factory=set)
    rng: random.Random = field(default_factory=random.Random)


def _sse(data: Mapping[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 past `limit` bytes (before reading it all when the
    length is declared)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body of {declared} bytes is over the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(raw: bytes) -> ChatCompletionRequest:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = location(tuple(first["loc"]))
        raise ApiError(400, f"{where}: {first['msg']}", param=where) from None


async def _until_disconnected(request: Request, poll_s: float) -> None:
    while not await request.is_disconnected():
        await asyncio.sleep(poll_s)


async def _or_disconnect(request: Request, work: Awaitable[Any], poll_s: float) -> Any:
    """Await `work`, cancelling it (and its upstream calls) if the caller goes away."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_until_disconnected(request, poll_s))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if not task.done():
        task.cancel()
        raise ApiError(499, "the client closed the request", code="client_closed")
    return task.result()


def create_app(config: ServeConfig, *, upstreams: Mapping[str, Upstream] | None = None) -> FastAPI:
    """The app; `upstreams` replaces opening them from the config (tests)."""
    state = _State(
        config=config,
        upstreams={},
        policies={p.model_id: p for p in config.policies},
        keys=KeyRing(config.keys),
        limiter=Limiter(used=config.used_tokens),
        metrics=ServeMetrics(),
        rng=random.Random(config.explore_seed),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = dict(upstreams) if upstreams is not None else {
            spec.name: Upstream.open(spec) for spec in config.upstreams
        }  # fmt: skip
        state.upstreams.update(opened)
        if config.store is not None:
            from ponder.serve.requestlog import RequestLog

            state.log = RequestLog(config.store)
        try:
            yield
        finally:
            for task in list(state.background):
                task.cancel()
            if state.background:
                await asyncio.gather(*state.background, return_exceptions=True)
            if upstreams is None:
                for upstream in opened.values():
                    await upstream.aclose()
            if state.log is not None:
                state.log.close()

    app = FastAPI(title="ponder", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.ponder = state

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = location(tuple(first.get("loc", ())))
        return ApiError(400, f"{where}: {first.get('msg')}", param=where).response()

    @app.exception_handler(404)
    async def _not_found(request: Request, exc: Exception) -> Response:
        return ApiError(404, f"no route {request.method} {request.url.path}").response()

    @app.exception_handler(405)
    async def _not_allowed(request: Request, exc: Exception) -> Response:
        return ApiError(405, f"{request.method} is not allowed on {request.url.path}").response()

    def authenticate(request: Request) -> KeyPolicy | None:
        try:
            key = state.keys.authenticate(request.headers.get("authorization"))
            if key is not None:
                state.limiter.admit(key)
            return key
        except LimitError as exc:
            state.metrics.rejected("auth" if exc.status == 401 else exc.code.split("_")[0])
            raise ApiError(
                exc.status, str(exc), code=exc.code, retry_after=exc.retry_after
            ) from None

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "upstreams": sorted(state.upstreams),
            "policies": sorted(state.policies),
        }

    @app.get("/metrics")
    async def metrics() -> Response:
        body, content_type = state.metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        authenticate(request)
        created = int(time.time())
        ids = [*sorted(state.policies), *sorted(state.upstreams)]
        return {
            "object": "list",
            "data": [
                {"id": i, "object": "model", "created": created, "owned_by": "ponder"} for i in ids
            ],
        }

    @app.post("/v1/ponder/feedback")
    async def feedback(request: Request) -> dict[str, Any]:
        authenticate(request)
        if state.log is None:
            raise ApiError(400, "feedback needs a request log: start the server with --store")
        data = json.loads(await _read_body(request, config.max_body_bytes) or b"{}")
        request_id = data.get("request_id") if isinstance(data, dict) else None
        if not isinstance(request_id, str):
            raise ApiError(400, "request_id (a string) is required", param="request_id")
        gold, correct = data.get("gold"), data.get("correct")
        if gold is not None and not isinstance(gold, str | int | float):
            raise ApiError(400, "gold must be a string or a number", param="gold")
        if correct is not None and not isinstance(correct, bool):
            raise ApiError(400, "correct must be true or false", param="correct")
        if gold is None and correct is None:
            raise ApiError(400, "give gold or correct", param="gold")
        found = await asyncio.to_thread(
            state.log.feedback,
            request_id,
            gold=None if gold is None else str(gold),
            correct=correct,
        )
        if not found:
            raise ApiError(404, f"no logged request {request_id!r}", param="request_id")
        return {"request_id": request_id, "recorded": True}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        started = time.perf_counter()
        state.metrics.request_started()
        label, status, stream = "unknown", 500, False
        try:
            key = authenticate(request)
            try:
                body = _parse(await _read_body(request, config.max_body_bytes))
            except ApiError as exc:
                state.metrics.rejected("too_large" if exc.status == 413 else "invalid")
                raise
            stream = body.stream
            if body.model in state.policies:
                label = body.model
                response = await _serve_policy(state, request, body, key, started)
            elif body.model in state.upstreams:
                label = body.model
                response = await _pass_through(state, request, body, key, started)
            else:
                known = ", ".join([*sorted(state.policies), *sorted(state.upstreams)])
                raise ApiError(
                    404,
                    f"the model {body.model!r} does not exist here; models: {known}",
                    code="model_not_found",
                    param="model",
                )
            status = response.status_code
            return response
        except ApiError as exc:
            status = exc.status
            return exc.response()
        finally:
            if not stream or status >= 400:
                state.metrics.request_finished(label, status, time.perf_counter() - started, stream)

    return app


# -- a policy ---------------------------------------------------------------------------------


def _account(state: _State, served: Served, outcome: Outcome, key: KeyPolicy | None) -> None:
    metrics = state.metrics
    for step in outcome.result.steps:
        metrics.decision(served.name, step.config.label)
    if outcome.escalated:
        metrics.escalation(served.name)
    if outcome.early_exit:
        metrics.early_exit(served.name)
    samples = outcome.result.samples
    metrics.tokens(served.model_id, "prompt", outcome.result.prompt_tokens)
    metrics.tokens(served.model_id, "reasoning", sum(s.chain_tokens for s in samples))
    metrics.tokens(served.model_id, "probe", sum(s.probe_tokens for s in samples))
    if key is not None:
        state.limiter.charge(key, outcome.result.prompt_tokens + outcome.completion_tokens)


def _log_policy(
    state: _State,
    request_id: str,
    body: ChatCompletionRequest,
    served: Served,
    outcome: Outcome | None,
    key: KeyPolicy | None,
    status: int,
    seconds: float,
    error: str | None = None,
) -> None:
    if state.log is None:
        return
    from ponder.serve.records import record_for

    state.log.submit(
        record_for(
            request_id=request_id,
            body=body,
            key_name=key.name if key else None,
            policy=served.name,
            outcome=outcome,
            status=status,
            seconds=seconds,
            error=error,
            log_prompt=state.config.log_prompts,
        )
    )


async def _serve_policy(
    state: _State,
    request: Request,
    body: ChatCompletionRequest,
    key: KeyPolicy | None,
    started: float,
) -> Response:
    served = state.policies[body.model]
    if body.n != 1:
        raise ApiError(400, "ponder/ models answer with one choice (n=1)", param="n")
    request_id = new_request_id()
    turns = conversation(body)
    settings = served_settings(body.seed, state.config.reserve)
    decision = plan_for(served, body, request_id, settings)
    check_models(decision, state.upstreams, settings)
    created = int(time.time())
    field_name = state.config.reasoning_field
    if body.stream:
        return _stream_policy(
            state, request, body, served, key, request_id, turns, decision, settings, started
        )
    try:
        outcome, fell_back = await _or_disconnect(
            request,
            _run_with_fallback(state, request_id, turns, decision, settings),
            state.config.disconnect_poll_s,
        )
    except BackendError as exc:
        error = ApiError(502, f"upstream failed: {exc}", code="upstream_error")
        _log_policy(
            state, request_id, body, served, None, key, 502, time.perf_counter() - started, str(exc)
        )
        raise error from None
    _account(state, served, outcome, key)
    _log_policy(state, request_id, body, served, outcome, key, 200, time.perf_counter() - started)
    payload = completion(outcome, request_id, body.model, created, field_name)
    extra = {"x-ponder-fallback": ", ".join(fell_back)} if fell_back else {}
    if _maybe_explore(state, served, body, request_id, decision, settings):
        extra["x-ponder-explored"] = "true"
    return JSONResponse(payload, headers={**headers(outcome), "x-request-id": request_id, **extra})


def _maybe_explore(
    state: _State,
    served: Served,
    body: ChatCompletionRequest,
    request_id: str,
    decision: Decision,
    settings: RunSettings,
) -> bool:
    """With probability `explore`, run every configuration of the plan in full in the
    background and log the rows (single-turn requests only); True when it started."""
    from ponder.serve.explore import explorable_text, explore, explore_items

    if state.log is None or state.config.explore <= 0:
        return False
    if state.rng.random() >= state.config.explore:
        return False
    text = explorable_text(body)
    if text is None or decision != decide(served, body, request_id):
        return False  # multi-turn, or a plan the caller changed: not the policy's own
    items = explore_items(served.name, request_id, text, decision, settings)
    backends = {name: u.backend for name, u in state.upstreams.items()}

    async def run() -> None:
        try:
            payload, tokens = await explore(backends, items)
            await asyncio.to_thread(
                state.log.save_exploration, request_id, served.name, tokens, payload
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # exploration must never hurt serving: count it, say it
            state.metrics.upstream_error(served.model_id, "explore")
            print(f"ponder serve: exploration of {request_id} failed: {exc}", file=sys.stderr)

    task = asyncio.get_running_loop().create_task(run())
    state.background.add(task)
    task.add_done_callback(state.background.discard)
    return True


def _engine_failed(exc: BackendError) -> bool:
    """The engine failed (unreachable, timed out, 5xx): worth another upstream."""
    return exc.retryable or exc.status is None or exc.status >= 500


async def _run_with_fallback(
    state: _State,
    request_id: str,
    turns: tuple[Message, ...],
    decision: Decision,
    settings: RunSettings,
    sink: TextSink | None = None,
) -> tuple[Outcome, list[str]]:
    """Run the plan; when an upstream fails before anything was streamed, run it once more
    with each of its models that has a fallback served by that fallback instead."""
    backends = {name: u.backend for name, u in state.upstreams.items()}
    sent = False

    async def watched(text: str) -> None:
        nonlocal sent
        sent = True
        assert sink is not None
        await sink(text)

    try:
        return await run_plan(
            backends, request_id, turns, decision, settings, watched if sink else None
        ), []
    except BackendError as exc:
        used = {step.config.model for step in decision.steps}
        swap = {m: state.config.fallbacks[m] for m in sorted(used) if m in state.config.fallbacks}
        if not swap or sent or not _engine_failed(exc):
            raise
        for model in swap:
            state.metrics.upstream_error(model, "fallback")
        backends.update({m: state.upstreams[other].backend for m, other in swap.items()})
        outcome = await run_plan(backends, request_id, turns, decision, settings, sink)
        return outcome, sorted(set(swap.values()))


def _chunk(
    request_id: str, model: str, created: int, delta: dict[str, Any], finish: str | None = None
) -> dict[str, Any]:
    return {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


def _stream_policy(
    state: _State,
    request: Request,
    body: ChatCompletionRequest,
    served: Served,
    key: KeyPolicy | None,
    request_id: str,
    turns: tuple[Message, ...],
    decision: Decision,
    settings: RunSettings,
    started: float,
) -> StreamingResponse:
    created = int(time.time())
    field_name = state.config.reasoning_field
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def sink(text: str) -> None:
        await queue.put(_sse(_chunk(request_id, body.model, created, {field_name: text})))

    async def produce() -> Outcome:
        try:
            outcome, _ = await _run_with_fallback(
                state, request_id, turns, decision, settings, sink
            )
            return outcome
        finally:
            await queue.put(None)

    async def events() -> AsyncIterator[bytes]:
        status = 200
        outcome: Outcome | None = None
        error: str | None = None
        task = asyncio.ensure_future(produce())
        try:
            yield _sse(
                _chunk(request_id, body.model, created, {"role": "assistant", "content": ""})
            )
            while (item := await queue.get()) is not None:
                yield item
            try:
                outcome = task.result()
            except BackendError as exc:
                status, error = 502, str(exc)
                yield _sse(ApiError(502, f"upstream failed: {exc}", code="upstream_error").body())
                return
            _, content = outcome.answer_parts()  # the reasoning was streamed as it grew
            yield _sse(_chunk(request_id, body.model, created, {"content": content}))
            yield _sse(_chunk(request_id, body.model, created, {}, "stop"))
            if body.stream_options is not None and body.stream_options.include_usage:
                final = _chunk(request_id, body.model, created, {})
                final["choices"] = []
                final["usage"] = usage(outcome)
                final["ponder"] = ponder_summary(outcome)
                yield _sse(final)
            yield _sse("[DONE]")
            _account(state, served, outcome, key)
            _maybe_explore(state, served, body, request_id, decision, settings)
        except asyncio.CancelledError:
            status, error = 499, "client closed the stream"
            raise
        finally:
            if not task.done():
                task.cancel()
            seconds = time.perf_counter() - started
            state.metrics.request_finished(body.model, status, seconds, True)
            _log_policy(state, request_id, body, served, outcome, key, status, seconds, error)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={
            "x-request-id": request_id,
            "x-ponder-decision": " > ".join(s.config.label for s in decision.steps),
            "cache-control": "no-cache",
        },
    )


# -- pass-through -----------------------------------------------------------------------------


def _log_upstream(
    state: _State,
    request_id: str,
    body: ChatCompletionRequest,
    key: KeyPolicy | None,
    status: int,
    seconds: float,
    usage_: Mapping[str, Any] | None,
    error: str | None = None,
) -> None:
    usage_ = usage_ or {}
    prompt = int(usage_.get("prompt_tokens") or 0)
    completion_ = int(usage_.get("completion_tokens") or 0)
    details = usage_.get("completion_tokens_details") or {}
    reasoning = int(details.get("reasoning_tokens") or 0) if isinstance(details, dict) else 0
    state.metrics.tokens(body.model, "prompt", prompt)
    state.metrics.tokens(body.model, "reasoning", reasoning)
    state.metrics.tokens(body.model, "answer", max(0, completion_ - reasoning))
    if key is not None:
        state.limiter.charge(key, prompt + completion_)
    if state.log is None:
        return
    from ponder.serve.records import upstream_record

    state.log.submit(
        upstream_record(
            request_id=request_id,
            body=body,
            key_name=key.name if key else None,
            status=status,
            seconds=seconds,
            usage=usage_,
            error=error,
            log_prompt=state.config.log_prompts,
        )
    )


async def _pass_through(
    state: _State,
    request: Request,
    body: ChatCompletionRequest,
    key: KeyPolicy | None,
    started: float,
) -> Response:
    request_id = new_request_id()
    if not body.stream:
        try:
            data, seconds, served_by = await _or_disconnect(
                request, _complete_with_fallback(state, body), state.config.disconnect_poll_s
            )
        except ApiError as exc:
            state.metrics.upstream_error(body.model, exc.code or "error")
            _log_upstream(
                state,
                request_id,
                body,
                key,
                exc.status,
                time.perf_counter() - started,
                None,
                exc.message,
            )
            raise
        state.metrics.upstream_call(served_by, seconds)
        data["model"] = body.model
        _log_upstream(
            state, request_id, body, key, 200, time.perf_counter() - started, data.get("usage")
        )
        return JSONResponse(data, headers=_served_headers(request_id, body.model, served_by))
    wants_usage = body.stream_options is not None and body.stream_options.include_usage
    try:
        response, served_by = await _open_with_fallback(state, body)
    except ApiError as exc:
        state.metrics.upstream_error(body.model, exc.code or "error")
        _log_upstream(
            state,
            request_id,
            body,
            key,
            exc.status,
            time.perf_counter() - started,
            None,
            exc.message,
        )
        raise

    async def relay() -> AsyncIterator[bytes]:
        status, error = 200, None
        seen_usage: dict[str, Any] | None = None
        try:
            async for data in sse_events(response):
                if data == "[DONE]":
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    status, error = 502, "upstream sent a malformed event"
                    yield _sse(
                        ApiError(
                            502,
                            f"upstream {body.model!r} sent a malformed event",
                            code="upstream_error",
                        ).body()
                    )
                    return
                if isinstance(chunk, dict):
                    if chunk.get("usage"):
                        seen_usage = chunk["usage"]
                        if not wants_usage:
                            if not chunk.get("choices"):
                                continue
                            chunk = {k: v for k, v in chunk.items() if k != "usage"}
                    chunk["model"] = body.model
                    data = json.dumps(chunk, separators=(",", ":"))
                yield _sse(data)
            yield _sse("[DONE]")
        except httpx.HTTPError as exc:
            status, error = 502, f"upstream stream broke: {type(exc).__name__}: {exc}"
            state.metrics.upstream_error(body.model, "stream")
            yield _sse(
                ApiError(
                    502, f"upstream {body.model!r} stream broke off", code="upstream_error"
                ).body()
            )
        except asyncio.CancelledError:
            status, error = 499, "client closed the stream"
            raise
        finally:
            await response.aclose()
            seconds = time.perf_counter() - started
            state.metrics.request_finished(body.model, status, seconds, True)
            _log_upstream(state, request_id, body, key, status, seconds, seen_usage, error)

    return StreamingResponse(
        relay(),
        media_type="text/event-stream",
        headers={**_served_headers(request_id, body.model, served_by), "cache-control": "no-cache"},
    )


def _served_headers(request_id: str, asked: str, served_by: str) -> dict[str, str]:
    out = {"x-request-id": request_id}
    if served_by != asked:
        out["x-ponder-fallback"] = served_by
    return out


def _falls_back(exc: ApiError) -> bool:
    """The upstream failed (unreachable, 5xx, timeout, busy): worth another upstream. A
    request the upstream rejected (4xx) would be rejected there too."""
    return exc.status in (429, 502, 504)


async def _complete_with_fallback(
    state: _State, body: ChatCompletionRequest
) -> tuple[dict[str, Any], float, str]:
    name = body.model
    try:
        upstream = state.upstreams[name]
        data, seconds = await upstream.complete(body.upstream_body(upstream.spec.model))
        return data, seconds, name
    except ApiError as exc:
        other = state.config.fallbacks.get(name)
        if other is None or not _falls_back(exc):
            raise
        state.metrics.upstream_error(name, exc.code or "error")
        upstream = state.upstreams[other]
        data, seconds = await upstream.complete(body.upstream_body(upstream.spec.model))
        return data, seconds, other


async def _open_with_fallback(
    state: _State, body: ChatCompletionRequest
) -> tuple[httpx.Response, str]:
    def payload(upstream: Upstream) -> dict[str, Any]:
        out = body.upstream_body(upstream.spec.model)
        out["stream_options"] = {**out.get("stream_options", {}), "include_usage": True}
        return out

    name = body.model
    try:
        return await state.upstreams[name].open_stream(payload(state.upstreams[name])), name
    except ApiError as exc:
        other = state.config.fallbacks.get(name)
        if other is None or not _falls_back(exc):
            raise
        state.metrics.upstream_error(name, exc.code or "error")
        return await state.upstreams[other].open_stream(payload(state.upstreams[other])), other
