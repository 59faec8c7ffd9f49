"""Fixtures for tests that run a real local model.

Weights come from ``ponder models pull`` (the models folder, ``$PONDER_MODELS_DIR``); the
engine is the optional llama-cpp-python extra. Without either, live tests are skipped on a
user's machine and FAIL in CI, so a CI run can never pass by skipping them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ponder import paths

SMOL = "smollm2-135m"
QWEN_05 = "qwen2.5-coder-0.5b"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def _missing(message: str) -> None:
    if in_ci():
        pytest.fail(f"{message}; CI must run the live tests", pytrace=False)
    pytest.skip(message)


def require_engine() -> None:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        _missing("llama-cpp-python is not installed (make local)")


def require_model(name: str) -> Path:
    path = paths.models_dir() / f"{name}.gguf"
    if not path.is_file():
        _missing(f"model {name} not found at {path} (ponder models pull {name})")
    return path


@pytest.fixture(scope="session")
def smol_path() -> Path:
    require_engine()
    return require_model(SMOL)


@pytest.fixture(scope="session")
def qwen05_path() -> Path:
    require_engine()
    return require_model(QWEN_05)
