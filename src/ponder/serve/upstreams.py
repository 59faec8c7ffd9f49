"""The engines behind the proxy: how they are named, reached and passed through to.

``--upstream NAME=URL[,key=value...]`` names an OpenAI-compatible server. NAME is the model
name that policies and callers use; options are those of the OpenAI-compatible backend
(``model`` when the engine knows the model by another name, ``engine``, ``api_key_env``,
``timeout_s``, ``max_retries``, ``concurrency``, ...). Each upstream gets two clients: the
backend that runs a policy's plan (chains, probes, budget forcing), and a plain HTTP client
that passes a caller's request through byte for byte, streamed when asked.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import time
import urllib.request
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from ponder.backends.base import Backend
from ponder.backends.openai_compat import KNOWN_OPTIONS, from_options
from ponder.errors import InputError
from ponder.serve.errors import ApiError
from ponder.serve.transport import KeepAliveTransport

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
_INTEGER_OPTIONS = {"max_retries", "concurrency"}
_NUMBER_OPTIONS = {"timeout_s", "backoff_s", "max_backoff_s"}


@dataclass(frozen=True)
class UpstreamSpec:
    """One upstream as given on the command line."""

    name: str
    options: Mapping[str, Any]

    @property
    def base_url(self) -> str:
        return str(self.options["base_url"]).rstrip("/")

    @property
    def model(self) -> str:
        return str(self.options.get("model", self.name))

    @property
    def timeout_s(self) -> float:
        return float(self.options.get("timeout_s", 600.0))

    @property
    def max_retries(self) -> int:
        return int(self.options.get("max_retries", 2))


def parse_upstream(text: str) -> UpstreamSpec:
    """``NAME=URL[,key=value...]`` as a spec; an InputError says what is wrong."""
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not name or not rest.strip():
        raise InputError(f"--upstream {text!r}: expected NAME=URL[,key=value...]")
    if not _NAME.match(name):
        raise InputError(f"--upstream {text!r}: {name!r} is not a usable model name")
    url, *pairs = [p.strip() for p in rest.split(",")]
    options: dict[str, Any] = {"base_url": url, "model": name, "name": name}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or key not in KNOWN_OPTIONS or key in ("base_url", "name"):
            allowed = sorted(KNOWN_OPTIONS - {"base_url", "name"})
            raise InputError(f"--upstream {name}: bad option {pair!r}; options: {allowed}")
        parsed: Any = value
        try:
            if key in _INTEGER_OPTIONS:
                parsed = int(value)
            elif key in _NUMBER_OPTIONS:
                parsed = float(value)
        except ValueError:
            raise InputError(f"--upstream {name}: {key} must be a number, got {value!r}") from None
        options[key] = parsed
    options.setdefault("max_retries", 2)
    try:
        from_options(options)  # validates every option (URL, engine, key variable) now
    except InputError as exc:
        raise InputError(f"--upstream {name}: {exc}") from None
    return UpstreamSpec(name, options)


def lean_transport(base_url: str, limits: httpx.Limits) -> httpx.AsyncBaseTransport | None:
    """The lean keep-alive transport for a plain-HTTP upstream reached without a proxy; None
    (httpx's own transport) for https, or when the environment names a proxy for it."""
    url = httpx.URL(base_url)
    if url.scheme != "http":
        return None
    proxies = urllib.request.getproxies()
    if ("http" in proxies or "all" in proxies) and not urllib.request.proxy_bypass(url.host):
        return None
    return KeepAliveTransport(
        max_connections=limits.max_connections or 256,
        max_keepalive=limits.max_keepalive_connections or 64,
    )


@dataclass
class Upstream:
    """An upstream's clients; opened by the app at start-up, closed at shutdown."""

    spec: UpstreamSpec
    backend: Backend
    http: httpx.AsyncClient
    api_key: str = "EMPTY"
    served: tuple[str, ...] = field(default=())
    # The lean transport (also the client's) when the upstream is plain HTTP: pass-through
    # requests go to it directly, past the client's cookie, auth, redirect and hook handling
    # that a pass-through does not use (about 60 us of CPU a request).
    transport: httpx.AsyncBaseTransport | None = None
    _chat: tuple[httpx.URL, list[tuple[bytes, bytes]], dict[str, Any]] | None = field(
        default=None, init=False, repr=False
    )

    @classmethod
    def open(cls, spec: UpstreamSpec) -> Upstream:
        backend = from_options(spec.options)
        api_key = spec.options.get("api_key") or "EMPTY"
        if spec.options.get("api_key_env"):
            api_key = os.environ.get(str(spec.options["api_key_env"]), "EMPTY")
        timeout = httpx.Timeout(spec.timeout_s, connect=min(10.0, spec.timeout_s))
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
        transport = lean_transport(spec.base_url, limits)
        http = httpx.AsyncClient(
            base_url=spec.base_url, timeout=timeout, limits=limits, transport=transport
        )
        return cls(spec, backend, http, api_key, transport=transport)

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.backend.aclose()

    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}", "content-type": "application/json"}

    def _chat_request(self, content: bytes) -> httpx.Request:
        """``POST /chat/completions`` with `content`: the URL and headers the client would
        merge in (its base URL, defaults, the key), merged once and reused."""
        if self._chat is None:
            template = self.http.build_request("POST", "/chat/completions", headers=self._headers())
            raw = [(k, v) for k, v in template.headers.raw if k.lower() != b"content-length"]
            self._chat = (template.url, raw, template.extensions)
        url, headers, extensions = self._chat
        length = (b"Content-Length", str(len(content)).encode())
        request = httpx.Request(
            "POST",
            url,
            headers=[*headers, length],
            stream=httpx.ByteStream(content),
            extensions=extensions,
        )
        request.read()  # what `content=` does, without re-deriving the headers
        return request

    def _failure(self, exc: Exception) -> ApiError:
        where = f"upstream {self.spec.name!r}"
        if isinstance(exc, httpx.TimeoutException):
            return ApiError(
                504, f"{where} did not answer within {self.spec.timeout_s:g} s", code="timeout"
            )
        if isinstance(exc, httpx.TransportError):
            return ApiError(502, f"{where} is unreachable: {exc}", code="upstream_unreachable")
        return ApiError(502, f"{where} failed: {type(exc).__name__}: {exc}", code="upstream_error")

    async def _send(self, body: dict[str, Any] | bytes, stream: bool) -> httpx.Response:
        """Send with retries on what is worth retrying (connection failures, 429, 5xx) before
        any byte reached the caller; the last failure is raised as an ApiError. A request
        the engine received but did not answer in time is not sent again: it may still be
        generating, and a retry would wait the whole timeout once more."""
        request = self._chat_request(body if isinstance(body, bytes) else json.dumps(body).encode())
        attempt = 0
        while True:
            error: ApiError | None = None
            try:
                response = await self._deliver(request, stream)
            except httpx.HTTPError as exc:
                error = self._failure(exc)
                if isinstance(exc, httpx.TimeoutException) and not isinstance(
                    exc, httpx.ConnectTimeout | httpx.PoolTimeout
                ):
                    raise error from None
            else:
                if response.status_code < 500 and response.status_code != 429:
                    return response
                if attempt >= self.spec.max_retries:
                    return response
                await response.aclose()
            if error is not None and attempt >= self.spec.max_retries:
                raise error
            await asyncio.sleep(min(8.0, 0.25 * 2**attempt) * random.uniform(0.5, 1.0))
            attempt += 1

    async def _deliver(self, request: httpx.Request, stream: bool) -> httpx.Response:
        """One exchange: straight to the lean transport when there is one, else through
        the client (read whole unless `stream`)."""
        if self.transport is None:
            return await self.http.send(request, stream=stream)
        response = await self.transport.handle_async_request(request)
        response.request = request
        if not stream:
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
        return response

    async def _error_from(self, response: httpx.Response) -> ApiError:
        """An upstream error response as the caller's error: the caller's own mistakes keep
        their status (400, 404, ...), the engine's failures become 502."""
        raw = await response.aread()
        message = raw.decode("utf-8", "replace")[:500]
        try:
            detail = json.loads(raw)
            inner = detail.get("error", detail) if isinstance(detail, dict) else detail
            if isinstance(inner, dict):
                message = str(inner.get("message") or inner)
            elif isinstance(inner, str):
                message = inner
        except ValueError:
            pass
        status = response.status_code
        where = f"upstream {self.spec.name!r}"
        if status == 429:
            return ApiError(429, f"{where} is rate limiting: {message}", code="upstream_busy")
        if status >= 500:
            return ApiError(
                502, f"{where} failed with HTTP {status}: {message}", code="upstream_error"
            )
        return ApiError(status, f"{where}: {message}", code="upstream_rejected")

    async def complete(self, body: dict[str, Any] | bytes) -> tuple[dict[str, Any], float]:
        """A non-streamed pass-through: the upstream's JSON and the seconds it took."""
        started = time.perf_counter()
        response = await self._send(body, stream=False)
        if response.status_code >= 400:
            raise await self._error_from(response)
        try:
            data = response.json()
        except ValueError:
            raise ApiError(
                502,
                f"upstream {self.spec.name!r} answered with invalid JSON",
                code="upstream_error",
            ) from None
        if not isinstance(data, dict):
            raise ApiError(
                502,
                f"upstream {self.spec.name!r} answered with a non-object",
                code="upstream_error",
            )
        return data, time.perf_counter() - started

    async def open_stream(self, body: dict[str, Any] | bytes) -> httpx.Response:
        """Start a streamed pass-through; the response is open (close it) and its status OK."""
        response = await self._send(body, stream=True)
        if response.status_code >= 400:
            try:
                raise await self._error_from(response)
            finally:
                await response.aclose()
        return response

    async def models(self) -> list[str]:
        """The model ids the upstream serves (``GET /models``)."""
        try:
            response = await self.http.get("/models", headers=self._headers())
            response.raise_for_status()
            data = response.json().get("data", [])
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise self._failure(exc) from None
        return [str(m.get("id")) for m in data if isinstance(m, dict)]


async def sse_events(response: httpx.Response) -> AsyncIterator[str]:
    """The ``data:`` payloads of a server-sent event stream, one per event, as they arrive.

    Lines are split on the bytes (CR, LF or CRLF, as the SSE format allows): a third of the
    CPU of httpx's text and line decoders, which would also split on the Unicode line
    separators that JSON may carry unescaped."""
    pending = b""
    async for chunk in response.aiter_bytes():
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if line.startswith(b"data:"):
                yield line[5:].strip().decode("utf-8", "replace")
    if pending.startswith(b"data:"):
        yield pending[5:].strip().decode("utf-8", "replace")
