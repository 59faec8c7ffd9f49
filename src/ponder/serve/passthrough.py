"""Passing a request for a named upstream through unchanged (streamed when asked), with
the model name rewritten back, a fallback upstream when it fails, and usage counted and logged.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from fastapi import Request
from starlette.responses import JSONResponse, Response

from ponder.serve.dispatch import new_request_id
from ponder.serve.errors import ApiError
from ponder.serve.limits import KeyPolicy
from ponder.serve.schemas import ChatCompletionRequest
from ponder.serve.state import EventStream, ServerState, or_disconnect, sse_bytes
from ponder.serve.upstreams import Upstream, sse_events

T = TypeVar("T")
DRAIN_S = 1.0


@dataclass(frozen=True)
class Sent:
    """The caller's body as it arrived: its bytes and its JSON object."""

    raw: bytes
    data: dict[str, Any]

    def for_upstream(self, model: str, stream: bool) -> bytes:
        """The body as sent, for upstream model id `model`: its bytes untouched when nothing
        changes (the usual case: no ``ponder`` field, the same model id, not streamed), else
        re-encoded with the model replaced, ``ponder`` dropped, and on a stream the usage
        asked for (ponder counts it; the relay drops it unless the caller asked)."""
        data = self.data
        if not stream and data.get("model") == model and "ponder" not in data:
            return self.raw
        out = {k: v for k, v in data.items() if k != "ponder"}
        out["model"] = model
        if stream:
            out["stream_options"] = {**(out.get("stream_options") or {}), "include_usage": True}
        return json.dumps(out).encode()


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
    sent: Sent,
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
                request, _complete_with_fallback(state, body, sent)
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
        response, served_by = await _open_with_fallback(state, body, sent)
    except ApiError as exc:
        failed(exc)
        raise

    async def relay() -> AsyncIterator[bytes]:
        status, error, ended = 200, None, False
        seen_usage: dict[str, Any] | None = None
        events = sse_events(response)
        try:
            async for data in events:
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
                    changed = chunk.get("model") != body.model
                    if chunk.get("usage"):
                        seen_usage = chunk["usage"]
                        if not wants_usage:
                            if not chunk.get("choices"):
                                continue
                            chunk = {k: v for k, v in chunk.items() if k != "usage"}
                            changed = True
                    if changed:  # else the event goes on as the upstream wrote it
                        chunk["model"] = body.model
                        data = json.dumps(chunk, separators=(",", ":"))
                yield sse_bytes(data)
            yield sse_bytes("[DONE]")
            ended = True  # the caller has it all; what follows is the upstream's tail
            await _drain(events)
        except httpx.HTTPError as exc:
            status, error = 502, f"upstream stream broke: {type(exc).__name__}: {exc}"
            state.metrics.upstream_error(body.model, "stream")
            yield sse_bytes(
                ApiError(
                    502, f"upstream {body.model!r} stream broke off", code="upstream_error"
                ).body()
            )
        except asyncio.CancelledError:
            if not ended:
                status, error = 499, "client closed the stream"
            raise
        finally:
            await response.aclose()
            seconds = time.perf_counter() - started
            state.metrics.request_finished(body.model, status, seconds, True)
            _log_upstream(state, request_id, body, key, status, seconds, seen_usage, error)

    return EventStream(
        relay(),
        headers={**_served_headers(request_id, body.model, served_by), "cache-control": "no-cache"},
    )


async def _drain(events: AsyncIterator[str]) -> None:
    """Read what follows ``[DONE]`` (normally just the body's end), so that the upstream
    connection goes back to the pool instead of being closed; an upstream that goes on
    without ending the body within ``DRAIN_S`` gets its connection closed instead."""
    try:
        async with asyncio.timeout(DRAIN_S):
            async for _ in events:
                pass
    except (TimeoutError, httpx.HTTPError):
        pass


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
    state: ServerState, body: ChatCompletionRequest, sent: Sent
) -> tuple[dict[str, Any], float, str]:
    (data, seconds), served = await _with_fallback(
        state, body.model, lambda u: u.complete(sent.for_upstream(u.spec.model, stream=False))
    )
    return data, seconds, served


async def _open_with_fallback(
    state: ServerState, body: ChatCompletionRequest, sent: Sent
) -> tuple[httpx.Response, str]:
    return await _with_fallback(
        state, body.model, lambda u: u.open_stream(sent.for_upstream(u.spec.model, stream=True))
    )
