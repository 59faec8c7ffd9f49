"""Engines behind one interface (``ponder.backends.base``), one module per kind.

``open_backend(kind, options)`` builds one by name; each module exposes
``from_options(options) -> Backend`` and is imported only when asked for, so the optional
engines (llama-cpp-python, openai) are needed only by those who use them.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from ponder.backends.base import (
    NO_THINK,
    THINK,
    Backend,
    BackendError,
    Capabilities,
    Chain,
    ChatRequest,
    Generation,
    Message,
    Sampling,
    Segment,
)

# kind -> module that implements it
BACKEND_KINDS: dict[str, str] = {
    "llamacpp": "ponder.backends.llamacpp",
    "openai": "ponder.backends.openai_compat",
    "fake": "ponder.backends.fake",
}


def open_backend(kind: str, options: Mapping[str, Any]) -> Backend:
    """A backend of ``kind`` ("llamacpp", "openai", "fake") built from ``options``."""
    if kind not in BACKEND_KINDS:
        raise BackendError(f"unknown backend {kind!r}; expected one of {sorted(BACKEND_KINDS)}")
    module = importlib.import_module(BACKEND_KINDS[kind])
    backend: Backend = module.from_options(options)
    return backend


__all__ = [
    "BACKEND_KINDS",
    "NO_THINK",
    "THINK",
    "Backend",
    "BackendError",
    "Capabilities",
    "Chain",
    "ChatRequest",
    "Generation",
    "Message",
    "Sampling",
    "Segment",
    "open_backend",
]
