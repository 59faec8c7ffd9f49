"""A lean HTTP/1.1 transport for the pass-through's hop to a plain-HTTP upstream.

On loopback, one small chat completion through httpx's default transport (httpcore on anyio)
cost about 0.55 ms of CPU on the development machine, as much as the rest of the proxy
together; h11 (the HTTP/1.1 parser httpcore and uvicorn use, installed with both) on asyncio
streams does the same exchange for about 0.25 ms.

The transport keeps httpx's contract (its requests, responses and exceptions, so callers and
``httpx.MockTransport`` tests do not change) and httpcore's pool rules: keep-alive connections
reused per host, an idle connection that the server closed (readable while idle) dropped
before reuse, a connection whose response was not read to its end (or that the server asked
to close) closed rather than reused, at most ``max_connections`` in use at once
(``PoolTimeout`` past the pool timeout) and ``max_keepalive`` kept idle. It never re-sends a
request. Plain ``http://`` only: ``https`` upstreams keep httpx's own transport.
"""

from __future__ import annotations

import asyncio
import select
import sys
from collections.abc import AsyncIterator
from contextlib import nullcontext
from typing import Any

import h11
import httpx

_READ_SIZE = 65536
Address = tuple[str, int]


def _readable(writer: asyncio.StreamWriter) -> bool:
    """The socket has data or EOF waiting: an idle connection the server closed (or broke)."""
    sock = writer.get_extra_info("socket")
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True
    if sys.platform == "win32" or not hasattr(select, "poll"):
        return bool(select.select([fd], [], [], 0)[0])
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    return bool(poll.poll(0))


def _deadline(seconds: float | None) -> Any:
    """A timeout scope for one network operation (None: wait as long as it takes)."""
    return nullcontext() if seconds is None else asyncio.timeout(seconds)


class _Connection:
    """One keep-alive connection and its h11 state machine."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT)

    def reusable(self) -> bool:
        return not self.writer.is_closing() and not _readable(self.writer)

    def close(self) -> None:
        self.writer.close()

    async def next_event(self, timeout: float | None) -> Any:
        """The next h11 event, reading from the socket as needed."""
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            async with _deadline(timeout):
                data = await self.reader.read(_READ_SIZE)
            self.h11.receive_data(data)


class _Body(httpx.AsyncByteStream):
    """A response body read off its connection, which goes back to the pool when the body
    was read to its end (and both sides may keep it), else is closed."""

    def __init__(
        self,
        pool: KeepAliveTransport,
        address: Address,
        connection: _Connection,
        request: httpx.Request,
        timeout: float | None,
    ) -> None:
        self._pool = pool
        self._address = address
        self._connection: _Connection | None = connection
        self._request = request
        self._timeout = timeout
        self._complete = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            return
        with _errors(self._request, "read"):
            while True:
                event = await connection.next_event(self._timeout)
                if isinstance(event, h11.Data):
                    yield bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    self._complete = True
                    return
                elif isinstance(event, h11.ConnectionClosed):
                    raise httpx.RemoteProtocolError(
                        "the server closed the connection in the middle of a response",
                        request=self._request,
                    )

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool.release(self._address, connection, reuse=self._complete)


_TIMEOUTS: dict[str, type[httpx.TimeoutException]] = {
    "connect": httpx.ConnectTimeout,
    "write": httpx.WriteTimeout,
    "read": httpx.ReadTimeout,
}
_FAILURES: dict[str, type[httpx.TransportError]] = {
    "connect": httpx.ConnectError,
    "write": httpx.WriteError,
    "read": httpx.ReadError,
}


class _errors:
    """httpx's exceptions for what the socket, the clock or h11 raised during `phase`
    (connect, write, read); cancellation and httpx's own errors pass through."""

    def __init__(self, request: httpx.Request, phase: str) -> None:
        self._request = request
        self._phase = phase

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None or isinstance(exc, httpx.HTTPError):
            return
        request, phase = self._request, self._phase
        if isinstance(exc, TimeoutError):
            raise _TIMEOUTS[phase](f"{phase} timed out", request=request) from exc
        if isinstance(exc, h11.LocalProtocolError):
            raise httpx.LocalProtocolError(str(exc), request=request) from exc
        if isinstance(exc, h11.ProtocolError):
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        if isinstance(exc, OSError | asyncio.IncompleteReadError):
            message = str(exc) or type(exc).__name__
            raise _FAILURES[phase](message, request=request) from exc


class KeepAliveTransport(httpx.AsyncBaseTransport):
    """httpx transport for plain HTTP/1.1 with a keep-alive pool (see the module doc)."""

    def __init__(self, *, max_connections: int = 256, max_keepalive: int = 64) -> None:
        self._idle: dict[Address, list[_Connection]] = {}
        self._slots = asyncio.Semaphore(max_connections)
        self._max_keepalive = max_keepalive
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            raise httpx.UnsupportedProtocol(
                f"this transport serves http:// only, not {url.scheme}://", request=request
            )
        timeouts = request.extensions.get("timeout", {})
        address = (url.host, url.port or 80)
        connection = await self._acquire(request, address, timeouts)
        try:
            head = await self._exchange(request, connection, timeouts.get("read"))
        except BaseException:
            self.release(address, connection, reuse=False)
            raise
        body = _Body(self, address, connection, request, timeouts.get("read"))
        return httpx.Response(
            head.status_code,
            headers=head.headers,
            stream=body,
            extensions={"http_version": b"HTTP/" + head.http_version, "reason_phrase": head.reason},
        )

    async def _acquire(
        self, request: httpx.Request, address: Address, timeouts: dict[str, float | None]
    ) -> _Connection:
        """An idle connection to `address` that is still good, else a new one."""
        if self._closed:
            raise RuntimeError("the transport is closed")
        try:
            async with _deadline(timeouts.get("pool")):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no connection free in time", request=request) from None
        try:
            idle = self._idle.get(address)
            while idle:
                connection = idle.pop()
                if connection.reusable():
                    return connection
                connection.close()
            with _errors(request, "connect"):
                async with _deadline(timeouts.get("connect")):
                    reader, writer = await asyncio.open_connection(*address, limit=_READ_SIZE)
            return _Connection(reader, writer)
        except BaseException:
            self._slots.release()
            raise

    async def _exchange(
        self, request: httpx.Request, connection: _Connection, timeout: float | None
    ) -> h11.Response:
        """Send the request; the response's head (1xx heads skipped)."""
        body = await request.aread()  # the bytes already there for `content=` requests
        state = connection.h11
        with _errors(request, "write"):
            head = h11.Request(
                method=request.method, target=request.url.raw_path, headers=request.headers.raw
            )
            out = state.send(head) or b""
            if body:
                out += state.send(h11.Data(data=body)) or b""
            out += state.send(h11.EndOfMessage()) or b""
            connection.writer.write(out)
            async with _deadline(request.extensions.get("timeout", {}).get("write")):
                await connection.writer.drain()
        with _errors(request, "read"):
            while True:
                event = await connection.next_event(timeout)
                if isinstance(event, h11.Response):
                    return event
                if isinstance(event, h11.ConnectionClosed):
                    raise httpx.RemoteProtocolError(
                        "the server closed the connection without a response", request=request
                    )

    def release(self, address: Address, connection: _Connection, *, reuse: bool) -> None:
        """Give a connection back: to the idle pool when it can serve another request."""
        self._slots.release()
        state = connection.h11
        clean = state.our_state is h11.DONE and state.their_state is h11.DONE
        clean = clean and state.trailing_data == (b"", False)  # nothing sent past the end
        idle = self._idle.setdefault(address, [])
        if reuse and clean and not self._closed and len(idle) < self._max_keepalive:
            state.start_next_cycle()
            idle.append(connection)
        else:
            connection.close()

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
