"""Passing a request for a named upstream through unchanged (streamed when asked), with
the model name rewritten back, a fallback upstream when it fails, and usage counted and logged.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import httpx
from fastapi import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ponder.serve.dispatch import new_request_id
from ponder.serve.errors import ApiError
from ponder.serve.limits import KeyPolicy
from ponder.serve.schemas import ChatCompletionRequest
from ponder.serve.state import ServerState, or_disconnect, sse_bytes
from ponder.serve.upstreams import Upstream, sse_events

T = TypeVar("T")


def _log_upstream(
    state: ServerState,
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


async def pass_through(
    state: ServerState,
    request: Request,
    body: ChatCompletionRequest,
    key: KeyPolicy | None,
    started: float,
) -> Response:
    request_id = new_request_id()

    def failed(exc: ApiError) -> None:
        """Count and log a request the upstream(s) could not serve."""
        state.metrics.upstream_error(body.model, exc.code or "error")
        seconds = time.perf_counter() - started
        _log_upstream(state, request_id, body, key, exc.status, seconds, None, exc.message)

    if not body.stream:
        try:
            data, seconds, served_by = await or_disconnect(
                request, _complete_with_fallback(state, body), state.config.disconnect_poll_s
            )
        except ApiError as exc:
            failed(exc)
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
        failed(exc)
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
                    yield sse_bytes(
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
                yield sse_bytes(data)
            yield sse_bytes("[DONE]")
        except httpx.HTTPError as exc:
            status, error = 502, f"upstream stream broke: {type(exc).__name__}: {exc}"
            state.metrics.upstream_error(body.model, "stream")
            yield sse_bytes(
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


async def _with_fallback(
    state: ServerState, name: str, call: Callable[[Upstream], Awaitable[T]]
) -> tuple[T, str]:
    """``call`` on the named upstream; when it fails in a way another upstream could fix
    and one is configured (``--fallback``), counted as an upstream error and tried there."""
    try:
        return await call(state.upstreams[name]), name
    except ApiError as exc:
        other = state.config.fallbacks.get(name)
        if other is None or not _falls_back(exc):
            raise
        state.metrics.upstream_error(name, exc.code or "error")
        return await call(state.upstreams[other]), other


async def _complete_with_fallback(
    state: ServerState, body: ChatCompletionRequest
) -> tuple[dict[str, Any], float, str]:
    (data, seconds), served = await _with_fallback(
        state, body.model, lambda u: u.complete(body.upstream_body(u.spec.model))
    )
    return data, seconds, served


async def _open_with_fallback(
    state: ServerState, body: ChatCompletionRequest
) -> tuple[httpx.Response, str]:
    def payload(upstream: Upstream) -> dict[str, Any]:
        out = body.upstream_body(upstream.spec.model)
        out["stream_options"] = {**(out.get("stream_options") or {}), "include_usage": True}
        return out

    return await _with_fallback(state, body.model, lambda u: u.open_stream(payload(u)))
