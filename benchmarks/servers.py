"""Start and stop the servers a serving benchmark measures (an engine, `ponder serve`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

START_TIMEOUT_S = 120


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(proc: subprocess.Popen[bytes], url: str, log: Path, what: str) -> None:
    """Wait for `url` to answer 200; exit with the log's tail if the process dies first."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise SystemExit(f"{what} exited with {proc.returncode}: {tail}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not answer {url} within {START_TIMEOUT_S} s")
        time.sleep(0.3)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop one process the script started, by its pid: terminate, then kill."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


@dataclass(frozen=True)
class Running:
    """A started engine and the proxy in front of it."""

    engine_url: str  # .../v1
    proxy_url: str  # .../v1
    engine_pid: int
    proxy_pid: int


@contextmanager
def engine_and_proxy(
    model_path: Path,
    model: str,
    n_ctx: int,
    upstream_options: str,
    proxy_args: list[str],
    workdir: Path,
) -> Iterator[Running]:
    """llama-cpp-python's server with one model (one thread), then `ponder serve` in front of
    it as upstream `model` (with `upstream_options` after the URL, and `proxy_args`); both
    stopped by pid on leaving, their logs in files under `workdir`."""
    engine_port, proxy_port = free_port(), free_port()
    engine_url = f"http://127.0.0.1:{engine_port}/v1"
    engine_cmd = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model_path), "--model_alias", model,
        "--host", "127.0.0.1", "--port", str(engine_port),
        "--n_threads", "1", "--n_ctx", str(n_ctx),
    ]  # fmt: skip
    proxy_cmd = [
        sys.executable, "-m", "ponder", "serve",
        "--upstream", f"{model}={engine_url}{upstream_options}",
        *proxy_args, "--port", str(proxy_port), "--log-level", "warning",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "PONDER_API_KEYS"}
    started: list[subprocess.Popen[bytes]] = []
    # files, not pipes: nobody reads the logs while a benchmark runs
    with (
        (workdir / "engine.log").open("wb") as engine_log,
        (workdir / "proxy.log").open("wb") as proxy_log,
    ):
        try:
            engine = subprocess.Popen(engine_cmd, stdout=engine_log, stderr=subprocess.STDOUT)
            started.append(engine)
            wait_until_up(engine, f"{engine_url}/models", workdir / "engine.log", "the engine")
            proxy = subprocess.Popen(proxy_cmd, stdout=proxy_log, stderr=subprocess.STDOUT, env=env)
            started.append(proxy)
            root = f"http://127.0.0.1:{proxy_port}"
            wait_until_up(proxy, f"{root}/health", workdir / "proxy.log", "the proxy")
            yield Running(engine_url, f"{root}/v1", engine.pid, proxy.pid)
        finally:
            for proc in reversed(started):
                stop(proc)
