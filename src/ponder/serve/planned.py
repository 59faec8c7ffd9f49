"""Serving a ``ponder/<policy>`` request: decide the plan, run it on the engines (with
fallback upstreams), stream or return the answer, then account, log and maybe explore it.
"""

from __future__ import annotations

import asyncio
import sys
import time
import traceback
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from starlette.responses import JSONResponse, Response

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
from ponder.serve.limits import KeyPolicy
from ponder.serve.schemas import ChatCompletionRequest
from ponder.serve.state import EventStream, ServerState, or_disconnect, sse_bytes
from ponder.sweep.execute import RunSettings


def _account(state: ServerState, served: Served, outcome: Outcome, key: KeyPolicy | None) -> None:
    metrics = state.metrics
    for step in outcome.result.steps:
        metrics.decision(served.name, step.config.label)
    if outcome.escalated:
        metrics.escalation(served.name)
    if outcome.early_exit:
        metrics.early_exit(served.name)
    metrics.tokens(served.model_id, "prompt", outcome.result.prompt_tokens)
    metrics.tokens(served.model_id, "reasoning", outcome.reasoning_tokens)
    metrics.tokens(served.model_id, "answer", outcome.answer_tokens)
    metrics.tokens(served.model_id, "probe", outcome.probe_tokens)
    if key is not None:
        state.limiter.charge(key, outcome.result.prompt_tokens + outcome.completion_tokens)


def _log_policy(
    state: ServerState,
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


async def serve_policy(
    state: ServerState,
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
    own = decide(served, body, request_id)  # the policy's plan, before any override
    decision = plan_for(own, body, settings)
    check_models(decision, state.upstreams)
    created = int(time.time())
    field_name = state.config.reasoning_field
    if body.stream:
        return _stream_policy(
            state, request, body, served, key, request_id, turns, own, decision, settings, started
        )
    try:
        outcome, fell_back = await or_disconnect(
            request, _run_with_fallback(state, request_id, turns, decision, settings)
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
    if _maybe_explore(state, served, turns, request_id, own, decision, settings):
        extra["x-ponder-explored"] = "true"
    return JSONResponse(payload, headers={**headers(outcome), "x-request-id": request_id, **extra})


def _maybe_explore(
    state: ServerState,
    served: Served,
    turns: tuple[Message, ...],
    request_id: str,
    own: Decision,
    decision: Decision,
    settings: RunSettings,
) -> bool:
    """With probability `explore`, run every configuration of the plan in full on the same
    conversation in the background and log the rows; True when it started."""
    from ponder.serve.explore import explorable, explore, explore_items

    if state.log is None or state.config.explore <= 0:
        return False
    if state.rng.random() >= state.config.explore:
        return False
    asked = explorable(turns)
    if asked is None or decision != own:
        return False  # an empty question, or a plan the caller changed: not the policy's own
    context, text = asked
    items = explore_items(served.name, request_id, text, decision, settings, context)
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
    state: ServerState,
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
    state: ServerState,
    request: Request,
    body: ChatCompletionRequest,
    served: Served,
    key: KeyPolicy | None,
    request_id: str,
    turns: tuple[Message, ...],
    own: Decision,
    decision: Decision,
    settings: RunSettings,
    started: float,
) -> EventStream:
    created = int(time.time())
    field_name = state.config.reasoning_field
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def sink(text: str) -> None:
        await queue.put(sse_bytes(_chunk(request_id, body.model, created, {field_name: text})))

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
            yield sse_bytes(
                _chunk(request_id, body.model, created, {"role": "assistant", "content": ""})
            )
            while (item := await queue.get()) is not None:
                yield item
            try:
                outcome = task.result()
            except BackendError as exc:
                status, error = 502, str(exc)
                yield sse_bytes(
                    ApiError(502, f"upstream failed: {exc}", code="upstream_error").body()
                )
                return
            except Exception as exc:  # a bug ends the stream with an error event, not a cut
                traceback.print_exc(file=sys.stderr)
                status, error = 500, f"{type(exc).__name__}: {exc}"
                message = f"internal error: {error}"
                yield sse_bytes(ApiError(500, message, code="internal_error").body())
                return
            _, content = outcome.answer_parts()  # the reasoning was streamed as it grew
            yield sse_bytes(_chunk(request_id, body.model, created, {"content": content}))
            yield sse_bytes(_chunk(request_id, body.model, created, {}, "stop"))
            if body.stream_options is not None and body.stream_options.include_usage:
                final = _chunk(request_id, body.model, created, {})
                final["choices"] = []
                final["usage"] = usage(outcome)
                final["ponder"] = ponder_summary(outcome)
                yield sse_bytes(final)
            yield sse_bytes("[DONE]")
            _account(state, served, outcome, key)
            _maybe_explore(state, served, turns, request_id, own, decision, settings)
        except asyncio.CancelledError:
            status, error = 499, "client closed the stream"
            raise
        finally:
            if not task.done():
                task.cancel()
            seconds = time.perf_counter() - started
            state.metrics.request_finished(body.model, status, seconds, True)
            _log_policy(state, request_id, body, served, outcome, key, status, seconds, error)

    return EventStream(
        events(),
        headers={
            "x-request-id": request_id,
            "x-ponder-decision": " > ".join(s.config.label for s in decision.steps),
            "cache-control": "no-cache",
        },
    )
