"""Fixtures for tests that run a real local model.

Weights come from ``ponder models pull`` (the models folder, ``$PONDER_MODELS_DIR``); the
engine is the optional llama-cpp-python extra. Without either, live tests are skipped on a
user's machine and FAIL in CI, so a CI run can never pass by skipping them.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ponder import paths

SMOL = "smollm2-135m"
QWEN_05 = "qwen2.5-coder-0.5b"
# what `python -m llama_cpp.server` imports beyond the engine (the local extra brings them)
SERVER_DEPS = ("uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def missing(message: str) -> None:
    """Skip on a user's machine, fail in CI: a CI run can never pass by skipping."""
    if in_ci():
        pytest.fail(f"{message}; CI must run the live tests", pytrace=False)
    pytest.skip(message)


def require_engine() -> None:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        missing("llama-cpp-python is not installed (make local)")


def require_model(name: str) -> Path:
    path = paths.models_dir() / f"{name}.gguf"
    if not path.is_file():
        missing(f"model {name} not found at {path} (ponder models pull {name})")
    return path


@pytest.fixture(scope="session")
def smol_path() -> Path:
    require_engine()
    return require_model(SMOL)


@pytest.fixture(scope="session")
def qwen05_path() -> Path:
    require_engine()
    return require_model(QWEN_05)


def free_port() -> int:
    """A loopback port nobody listens on (now): for a server, or for a dead upstream."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 15) -> None:
    """Stop one process we started, by its pid: terminate, then kill after `timeout_s`."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)


def require_modules(*modules: str, why: str) -> None:
    """Skip (fail in CI) unless every module can be imported."""
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    if absent:
        missing(f"{why} needs {', '.join(absent)}")


# Test modules reach the helpers through fixtures: every conftest.py outside a package is
# module `conftest`, so importing it from a test names whichever one pytest loaded last.
@pytest.fixture(scope="session")
def free_port_factory() -> Callable[[], int]:
    return free_port


@pytest.fixture(scope="session")
def process_stopper() -> Callable[[subprocess.Popen[bytes]], None]:
    return stop


@pytest.fixture(scope="session")
def module_requirer() -> Callable[..., None]:
    return require_modules


@pytest.fixture(scope="session")
def llama_server(smol_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL (``.../v1``) of a llama-cpp-python server on SmolLM2, model id ``SMOL``.

    One per session, shared by every live file that talks HTTP; one thread, so it stays
    light next to other work on the machine. Stopped by its pid afterwards.
    """
    require_modules(*SERVER_DEPS, why="llama-cpp-python's server (the local extra)")
    port = free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(smol_path), "--model_alias", SMOL,
        "--host", "127.0.0.1", "--port", str(port),
        "--n_threads", "1", "--n_ctx", "1024",
    ]  # fmt: skip
    # a file, not a pipe: the engine logs enough at load to fill a pipe and block
    log_path = tmp_path_factory.mktemp("llama_server") / "server.log"
    base_url = f"http://127.0.0.1:{port}/v1"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    err = log_path.read_text(errors="replace")[-2000:]
                    pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {err}")
                try:
                    if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail("llama_cpp.server did not answer /v1/models within 120 s")
                time.sleep(0.5)
            yield base_url
        finally:
            stop(proc)
