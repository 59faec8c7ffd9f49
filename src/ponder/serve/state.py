"""What the proxy's routes share: its configuration, its runtime state, and the small
request helpers (reading and parsing a body, SSE framing, cancelling on disconnect) that both
the policy routes and the pass-through use.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from pydantic import ValidationError

from ponder.serve.dispatch import Served
from ponder.serve.errors import ApiError
from ponder.serve.limits import KeyPolicy, KeyRing, Limiter
from ponder.serve.metrics import ServeMetrics
from ponder.serve.schemas import ChatCompletionRequest, location
from ponder.serve.upstreams import Upstream, UpstreamSpec

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
class ServerState:
    """What one running app holds: opened upstreams, served policies, keys and their usage,
    metrics, the request log, and the background explorations still running."""

    config: ServeConfig
    upstreams: dict[str, Upstream]
    policies: dict[str, Served]
    keys: KeyRing
    limiter: Limiter
    metrics: ServeMetrics
    log: Any = None  # RequestLog when a store is configured
    background: set[asyncio.Task[None]] = field(default_factory=set)
    rng: random.Random = field(default_factory=random.Random)


def sse_bytes(data: Mapping[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


async def read_body(request: Request, limit: int) -> bytes:
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


def parse_request(raw: bytes) -> ChatCompletionRequest:
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


async def or_disconnect(request: Request, work: Awaitable[Any], poll_s: float) -> Any:
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
