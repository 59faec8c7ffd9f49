"""Fixtures for the dataset tests: the shared folder, an isolated data dir, loopback servers.

Everything runs against 127.0.0.1: the recorded shared folder (or a tampered copy in tmp_path)
is served as a mirror, and "upstream" URLs are rewritten to a loopback server by an httpx
transport that refuses any other host, so no test can reach the network.
"""

from __future__ import annotations

import http.server
import importlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

# `ponder.datasets.pull` the attribute is the function; the module is reached by name
pull_module = importlib.import_module("ponder.datasets.pull")

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("PONDER_SHARED_DATA") or REPO_ROOT.parent / "shared" / "data")


@pytest.fixture
def shared(shared_data: Path) -> Path:
    """The recorded folder; skipped (failed in CI) without it, by tests/conftest.py."""
    return shared_data


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never touch the real user data folder; no retry delays; no mirror from the environment."""
    data = tmp_path / "user-data"
    monkeypatch.setenv("PONDER_DATA_DIR", str(data))
    monkeypatch.setenv("PONDER_SHARED_DATA", str(SHARED))
    monkeypatch.delenv("PONDER_DATA_MIRROR", raising=False)
    monkeypatch.setattr(pull_module, "BACKOFF_SECONDS", 0.0)
    return data


@dataclass
class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 that records each request path."""

    httpd: http.server.ThreadingHTTPServer
    requests: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


Mode = str  # "serve", "truncate" or "flaky" (first request of each path gets a 503)


def _handler(directory: Path, mode: Mode, server: list[LoopbackServer]) -> type[Any]:
    failed_once: set[str] = set()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(directory), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            server[0].requests.append(self.path)
            if mode == "flaky" and self.path not in failed_once:
                failed_once.add(self.path)
                self.send_error(503, "try again")
                return
            if mode == "truncate":
                body = Path(self.translate_path(self.path)).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            super().do_GET()

    return Handler


@pytest.fixture
def serve() -> Iterator[Callable[..., LoopbackServer]]:
    """`serve(folder, mode="serve")` starts a loopback server; all are stopped afterwards."""
    started: list[LoopbackServer] = []

    def start(directory: Path, mode: Mode = "serve") -> LoopbackServer:
        holder: list[LoopbackServer] = []
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(directory, mode, holder))
        httpd.daemon_threads = True
        srv = LoopbackServer(httpd)
        holder.append(srv)
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.httpd.shutdown()
        srv.httpd.server_close()


class UpstreamToLoopback(httpx.BaseTransport):
    """Sends raw.githubusercontent.com requests to a loopback server; refuses every other host."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host != "raw.githubusercontent.com":
            raise httpx.ConnectError(f"test transport refuses {request.url.host}", request=request)
        url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self._port)
        return self._inner.handle_request(
            httpx.Request(request.method, url, headers=request.headers)
        )

    def close(self) -> None:
        self._inner.close()


@pytest.fixture
def upstream_client() -> Iterator[Callable[[LoopbackServer], httpx.Client]]:
    clients: list[httpx.Client] = []

    def make(server: LoopbackServer) -> httpx.Client:
        client = httpx.Client(transport=UpstreamToLoopback(server.port), timeout=10.0)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
