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
import traceback
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response

from ponder.serve.errors import ApiError
from ponder.serve.limits import KeyPolicy, KeyRing, Limiter, LimitError
from ponder.serve.metrics import ServeMetrics
from ponder.serve.passthrough import Sent, pass_through
from ponder.serve.planned import serve_policy
from ponder.serve.schemas import location
from ponder.serve.state import (
    REASONING_FIELDS,
    ServeConfig,
    ServerState,
    parse_json,
    read_body,
    validate_request,
)
from ponder.serve.upstreams import Upstream

__all__ = ["REASONING_FIELDS", "ServeConfig", "create_app"]


def create_app(config: ServeConfig, *, upstreams: Mapping[str, Upstream] | None = None) -> FastAPI:
    """The app; `upstreams` replaces opening them from the config (tests)."""
    state = ServerState(
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
        data = json.loads(await read_body(request, config.max_body_bytes) or b"{}")
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
                raw = await read_body(request, config.max_body_bytes)
                data = parse_json(raw)
                body = validate_request(data)
            except ApiError as exc:
                state.metrics.rejected("too_large" if exc.status == 413 else "invalid")
                raise
            stream = body.stream
            if body.model in state.policies:
                label = body.model
                response = await serve_policy(state, request, body, key, started)
            elif body.model in state.upstreams:
                label = body.model
                sent = Sent(raw, data)
                response = await pass_through(state, request, body, key, started, sent)
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
        except Exception as exc:  # a bug must still answer in OpenAI's shape, and be seen
            traceback.print_exc(file=sys.stderr)
            status = 500
            message = f"internal error: {type(exc).__name__}: {exc}"
            return ApiError(500, message, code="internal_error").response()
        finally:
            if not stream or status >= 400:
                state.metrics.request_finished(label, status, time.perf_counter() - started, stream)

    return app
