"""The lean keep-alive transport of the pass-through (``ponder.serve.transport``), against a
scripted HTTP/1.1 server on loopback that writes exactly the bytes each test needs: framing
(length, chunks, close-delimited), keep-alive and its end, stalls and broken replies.

Also the pieces of the pass-through's hot path that the app tests reach only in part: the
caller's body forwarded as sent, the SSE line splitter, and the disconnect watch.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from ponder.serve.errors import ApiError
from ponder.serve.passthrough import Sent
from ponder.serve.state import EventStream, or_disconnect
from ponder.serve.transport import KeepAliveTransport
from ponder.serve.upstreams import lean_transport, sse_events

pytestmark = pytest.mark.network_local

Reply = Callable[[bytes], Awaitable[bytes | None]]  # request body -> raw reply (None: hang up)


def _length(body: bytes, *extra: str) -> bytes:
    head = ["HTTP/1.1 200 OK", "content-type: application/json", f"content-length: {len(body)}"]
    return ("\r\n".join([*head, *extra]) + "\r\n\r\n").encode() + body


@dataclass
class Script:
    """A loopback server answering each request with ``reply``; counts connections."""

    reply: Reply
    connections: int = 0
    bodies: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                size = 0
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.lower() == "content-length":
                        size = int(value)
                body = await reader.readexactly(size)
                self.bodies.append(body)
                out = await self.reply(body)
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
                if out.startswith(b"HTTP/1.0") or b"connection: close" in out:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


def _run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(main())


async def _echo(body: bytes) -> bytes:
    return _length(b'{"echo": ' + body + b"}")


def test_keep_alive_reuses_one_connection_and_sends_the_body() -> None:
    script = Script(_echo)

    async def main() -> None:
        async with script as url, httpx.AsyncClient(transport=KeepAliveTransport()) as client:
            for i in range(3):
                reply = await client.post(f"{url}/v1/chat/completions", json={"n": i})
                assert reply.status_code == 200
                assert reply.json() == {"echo": {"n": i}}
                assert reply.http_version == "HTTP/1.1"
        assert script.connections == 1
        assert [json.loads(b) for b in script.bodies] == [{"n": 0}, {"n": 1}, {"n": 2}]

    _run(main)


def test_a_chunked_stream_arrives_in_pieces_and_its_connection_is_reused() -> None:
    gate = asyncio.Event()

    async def chunks(body: bytes) -> bytes:
        if body == b"slow":
            await gate.wait()
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        return head + b"transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"

    script = Script(chunks)

    async def main() -> None:
        async with script as url, httpx.AsyncClient(transport=KeepAliveTransport()) as client:
            async with client.stream("POST", url, content=b"fast") as reply:
                pieces = [piece async for piece in reply.aiter_raw()]
            assert b"".join(pieces) == b"hello world"
            gate.set()
            assert (await client.post(url, content=b"slow")).text == "hello world"
        assert script.connections == 1

    _run(main)


def test_a_reply_left_unread_closes_its_connection() -> None:
    async def big(body: bytes) -> bytes:
        return _length(b"x" * 200_000)

    script = Script(big)

    async def main() -> None:
        async with script as url, httpx.AsyncClient(transport=KeepAliveTransport()) as client:
            async with client.stream("POST", url, content=b"a") as reply:
                async for _ in reply.aiter_raw():
                    break  # the rest is never read: the connection cannot serve another
            assert len((await client.post(url, content=b"b")).content) == 200_000
        assert script.connections == 2

    _run(main)


def test_connections_the_server_ends_are_not_reused() -> None:
    async def maybe_close(body: bytes) -> bytes | None:
        if body == b"close":
            return _length(b"{}", "connection: close")
        if body == b"old":  # an HTTP/1.0 reply delimited by the end of the connection
            return b"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{}"
        return _length(b"{}")

    script = Script(maybe_close)

    async def main() -> None:
        async with script as url, httpx.AsyncClient(transport=KeepAliveTransport()) as client:
            assert (await client.post(url, content=b"close")).status_code == 200
            assert (await client.post(url, content=b"old")).json() == {}
            assert (await client.post(url, content=b"keep")).status_code == 200
            assert (await client.post(url, content=b"keep")).status_code == 200
        assert script.connections == 3  # one each for the two that ended it, then one kept

    _run(main)


def test_an_idle_connection_the_server_closed_is_dropped_before_reuse() -> None:
    async def answer_then_hang_up(body: bytes) -> bytes:
        return _length(b"{}")

    closers: list[asyncio.StreamWriter] = []

    class Closing(Script):
        async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            closers.append(writer)
            await super()._serve(reader, writer)

    script = Closing(answer_then_hang_up)

    async def main() -> None:
        async with script as url, httpx.AsyncClient(transport=KeepAliveTransport()) as client:
            assert (await client.post(url, content=b"1")).status_code == 200
            closers[0].close()  # the server ends the idle keep-alive connection
            await asyncio.sleep(0.05)
            assert (await client.post(url, content=b"2")).status_code == 200
        assert script.connections == 2

    _run(main)


def test_failures_are_httpx_errors() -> None:
    async def stall(body: bytes) -> bytes | None:
        if body == b"hang up":
            return None
        await asyncio.sleep(30)
        return _length(b"{}")

    script = Script(stall)

    async def main() -> None:
        transport = KeepAliveTransport(max_connections=1)
        timeout = httpx.Timeout(5.0, read=0.2, pool=0.2)
        async with script as url, httpx.AsyncClient(transport=transport, timeout=timeout) as c:
            with pytest.raises(httpx.ReadTimeout):
                await c.post(url, content=b"stall")
            with pytest.raises(httpx.RemoteProtocolError):
                await c.post(url, content=b"hang up")
            slow = asyncio.ensure_future(c.post(url, content=b"stall"))
            await asyncio.sleep(0.05)  # it holds the only connection
            with pytest.raises(httpx.PoolTimeout):
                await c.post(url, content=b"x", timeout=httpx.Timeout(5.0, pool=0.05))
            with pytest.raises(httpx.ReadTimeout):
                await slow
        async with httpx.AsyncClient(transport=KeepAliveTransport()) as c:
            with pytest.raises(httpx.ConnectError):
                await c.post(url, content=b"x")  # the server is gone
            with pytest.raises(httpx.UnsupportedProtocol):
                await c.post("https://127.0.0.1:1", content=b"x")

    _run(main)


def test_a_cancelled_request_frees_its_slot_and_closes_its_connection() -> None:
    async def stall(body: bytes) -> bytes:
        if body == b"stall":
            await asyncio.sleep(30)
        return _length(b"{}")

    script = Script(stall)

    async def main() -> None:
        transport = KeepAliveTransport(max_connections=1)
        async with script as url, httpx.AsyncClient(transport=transport) as client:
            task = asyncio.ensure_future(client.post(url, content=b"stall"))
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            quick = await client.post(url, content=b"ok", timeout=httpx.Timeout(5.0, pool=1.0))
            assert quick.status_code == 200
        assert script.connections == 2

    _run(main)


def test_the_lean_transport_is_for_plain_http_without_a_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=4)
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(lean_transport("http://127.0.0.1:8080/v1", limits), KeepAliveTransport)
    assert lean_transport("https://api.example.com/v1", limits) is None
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example.com:3128")
    assert lean_transport("http://gpu1:8000/v1", limits) is None
    monkeypatch.setenv("NO_PROXY", "gpu1")
    assert isinstance(lean_transport("http://gpu1:8000/v1", limits), KeepAliveTransport)


# -- the rest of the hot path -------------------------------------------------------------------


def test_the_body_goes_on_as_sent_unless_something_changes() -> None:
    raw = b'{"model": "up", "messages": [], "temperature": 1}'
    sent = Sent(raw, json.loads(raw))
    assert sent.for_upstream("up", stream=False) is raw  # the bytes, untouched
    renamed = json.loads(sent.for_upstream("up-id", stream=False))
    assert renamed == {"model": "up-id", "messages": [], "temperature": 1}
    streamed = json.loads(sent.for_upstream("up", stream=True))
    assert streamed["stream_options"] == {"include_usage": True}
    with_ponder = Sent(b"{}", {"model": "up", "ponder": {"budget": 5}, "stream_options": None})
    assert json.loads(with_ponder.for_upstream("up", stream=False)) == {
        "model": "up",
        "stream_options": None,
    }
    assert json.loads(with_ponder.for_upstream("up", stream=True))["stream_options"] == {
        "include_usage": True
    }


def test_sse_lines_split_on_any_line_end_across_chunks() -> None:
    pieces = [b'data: {"a": 1}\r', b'\n\r\ndata: {"b":', b' "\xe2\x80\xa8"}\n\n', b"data: [DONE]"]

    async def body() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    async def main() -> list[str]:
        response = httpx.Response(200, content=body())
        return [event async for event in sse_events(response)]

    events = asyncio.run(main())
    assert events == ['{"a": 1}', '{"b": "\u2028"}', "[DONE]"]


class _Caller:
    """An ASGI ``receive`` whose caller hangs up when told to."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}


def test_work_is_cancelled_with_a_499_when_the_caller_leaves() -> None:
    async def main() -> None:
        from starlette.requests import Request

        caller = _Caller()
        request = Request({"type": "http", "method": "POST", "headers": []}, caller.receive)
        cancelled = asyncio.Event()

        async def slow() -> int:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return 1

        async def quick() -> int:
            return 7

        assert await or_disconnect(request, quick()) == 7
        asyncio.get_running_loop().call_later(0.05, caller.gone.set)
        with pytest.raises(ApiError) as info:
            await or_disconnect(request, slow())
        assert info.value.status == 499 and cancelled.is_set()
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
        await asyncio.sleep(0)  # and no cancellation is left pending for this task

    asyncio.run(main())


def test_an_event_stream_stops_when_the_caller_leaves() -> None:
    async def main() -> None:
        caller = _Caller()
        sent: list[MutableMapping[str, Any]] = []
        stopped = asyncio.Event()

        async def events() -> AsyncIterator[bytes]:
            try:
                yield b"data: 1\n\n"
                caller.gone.set()
                await asyncio.sleep(30)
                yield b"data: 2\n\n"
            except asyncio.CancelledError:
                stopped.set()
                raise

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "asgi": {"spec_version": "2.3"}}
        await EventStream(events())(scope, caller.receive, send)
        assert stopped.is_set()
        assert [m.get("body") for m in sent[1:]] == [b"data: 1\n\n"]
        assert (b"content-type", b"text/event-stream; charset=utf-8") in sent[0]["headers"]
        await asyncio.sleep(0)  # the caller's task was not left cancelled

        whole: list[MutableMapping[str, Any]] = []

        async def keep(message: MutableMapping[str, Any]) -> None:
            whole.append(message)

        async def two() -> AsyncIterator[bytes]:
            yield b"data: 1\n\n"
            yield b"data: 2\n\n"

        await EventStream(two())(scope, _Caller().receive, keep)
        assert [m.get("body") for m in whole[1:]] == [b"data: 1\n\n", b"data: 2\n\n", b""]

    asyncio.run(main())
