"""Helpers shared by the CLI verbs: JSON output and the store option."""

from __future__ import annotations

import json
import math
from typing import Any

import typer


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _clean(value.item())
    return value


def echo_json(value: Any) -> None:
    """Print `value` as JSON, with NaN as null and numpy scalars as Python numbers."""
    typer.echo(json.dumps(_clean(value), indent=2, sort_keys=False))
