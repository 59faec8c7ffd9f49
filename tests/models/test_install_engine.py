"""scripts/install-engine.sh with a stand-in Python: pip and the engine are faked (no build, no
install into the real environment), the script's own logic runs for real: the cache key, build
once, reuse, install from the cache, and the loud failure when the engine crashes."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "install-engine.sh"
FLAGS = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
WHEEL = "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl"

FAKE_PYTHON = r"""#!/usr/bin/env bash
# pip and `python -m ponder` are recorded, not run; the smoke test does what FAKE_SMOKE says.
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
    echo "pip ${*:3}" >>"$FAKE_LOG"
    if [ "$3" = "wheel" ]; then
        echo "CMAKE_ARGS=$CMAKE_ARGS" >>"$FAKE_LOG"
        args=("$@")
        for ((i = 0; i < ${#args[@]}; i++)); do
            [ "${args[$i]}" = "-w" ] && out="${args[$((i + 1))]}"
        done
        printf 'not really a wheel' >"$out/__WHEEL__"
    fi
    exit 0
fi
if [ "$1" = "-m" ] && [ "$2" = "ponder" ]; then
    echo "ponder ${*:3}" >>"$FAKE_LOG"
    exit 0
fi
if [ "$1" = "-" ]; then
    code=$(cat)
    if grep -q "llama_cpp.Llama" <<<"$code"; then
        case "$FAKE_SMOKE" in
            ok) echo "llama-cpp-python 0.3.36: generated 4 tokens"; exit 0 ;;
            ill) kill -ILL $$ ;;
            *) echo "Traceback: boom" >&2; exit 3 ;;
        esac
    fi
    printf '%s' "$code" | "__REAL__" - "${@:2}"
    exit $?
fi
exec "__REAL__" "$@"
"""


def _key_text() -> str:
    """The cache key's inputs, gathered here independently of the script."""
    target = (
        f"{sys.implementation.name}{sys.version_info[0]}{sys.version_info[1]}-"
        f"{sysconfig.get_platform()}"
    )
    try:
        out = subprocess.run(["c++", "--version"], capture_output=True, text=True, check=False)
        compiler = out.stdout.splitlines()[0] if out.returncode == 0 else "no-c++"
    except FileNotFoundError:
        compiler = "no-c++"
    return "\n".join(
        [
            "llama-cpp-python==0.3.36",
            f"CMAKE_ARGS={FLAGS}",
            f"python={target}",
            f"libc={'-'.join(platform.libc_ver())}",
            f"compiler={compiler}",
        ]
    )


class Env:
    def __init__(self, tmp_path: Path) -> None:
        self.python = tmp_path / "bin" / "python"
        self.python.parent.mkdir()
        self.python.write_text(
            FAKE_PYTHON.replace("__REAL__", sys.executable).replace("__WHEEL__", WHEEL)
        )
        self.python.chmod(0o755)
        self.log = tmp_path / "calls.log"
        self.cache_root = tmp_path / "wheels"
        self.models = tmp_path / "models"
        self.cache = self.cache_root / (
            "llama-cpp-python-0.3.36-" + hashlib.sha256(_key_text().encode()).hexdigest()[:16]
        )

    def run(self, smoke: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env.update(
            FAKE_LOG=str(self.log),
            FAKE_SMOKE=smoke,
            PONDER_WHEEL_CACHE=str(self.cache_root),
            PONDER_MODELS_DIR=str(self.models),
        )
        return subprocess.run(
            ["bash", str(SCRIPT), *args, str(self.python)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def test_builds_once_with_portable_flags_then_reuses(env: Env) -> None:
    first = env.run("ok")
    assert first.returncode == 0, first.stderr
    calls = env.calls()
    builds = [c for c in calls if c.startswith("pip wheel")]
    assert len(builds) == 1
    assert "--no-cache-dir" in builds[0].split()
    assert "--no-binary llama-cpp-python" in builds[0]
    assert builds[0].endswith("llama-cpp-python==0.3.36")
    assert f"CMAKE_ARGS={FLAGS}" in calls
    wheel = env.cache / WHEEL
    assert wheel.is_file()
    assert (env.cache / "KEY").read_text() == _key_text() + "\n"
    assert [p.name for p in env.cache_root.iterdir()] == [env.cache.name]  # no build leftovers
    assert env.cache.stat().st_mode & 0o777 == 0o755
    installs = [c for c in calls if c.startswith("pip install")]
    assert any(c.endswith(f"--force-reinstall --no-deps {wheel}") for c in installs)
    assert any(c.endswith(f"{wheel}[server]") for c in installs)
    assert "ponder models pull smollm2-135m --no-progress" in calls
    assert "engine: smoke test passed (llama-cpp-python 0.3.36: generated 4 tokens)" in first.stdout

    env.log.unlink()
    second = env.run("ok")
    assert second.returncode == 0, second.stderr
    assert "engine: reusing the cached wheel" in second.stdout
    assert not [c for c in env.calls() if c.startswith("pip wheel")]


def test_sigill_fails_loudly_naming_flags_and_wheel(env: Env) -> None:
    result = env.run("ill")
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: the llama.cpp engine crashed with SIGILL")
    assert f"Cached wheel: {env.cache / WHEEL}" in error
    assert f"CMAKE_ARGS={FLAGS}" in error
    assert f"Delete {env.cache} and run `make local` again" in error


def test_other_crash_fails_with_its_output(env: Env) -> None:
    result = env.run("boom")
    assert result.returncode == 1
    assert "Traceback: boom" in result.stderr
    assert "smoke test failed (exit 3, output above)" in result.stderr


def test_check_only_runs_the_smoke_test(env: Env) -> None:
    result = env.run("ok", "--check")
    assert result.returncode == 0, result.stderr
    assert [c for c in env.calls() if c.startswith("pip")] == []
    assert not env.cache_root.exists()
    assert "engine: smoke test passed" in result.stdout
