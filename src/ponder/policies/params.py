"""Checking policy parameters before building a policy, from its constructor's signature.

`ponder fit -p KEY=VALUE` takes JSON values from a command line, so anything can arrive: an
unknown key, a word where a number belongs, half a JSON object. Each is reported in one line
that names the parameter and lists the valid keys with their types, instead of a traceback from
deep inside the constructor.
"""

from __future__ import annotations

import inspect
import json
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ponder.decision import Config
from ponder.policies.base import Policy, PolicyError


def _kind(hint: Any) -> str:
    """Plain-words type of a constructor annotation, for error messages and help."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return " | ".join(repr(v) for v in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        parts = [_kind(a) for a in typing.get_args(hint) if a is not type(None)]
        kinds = list(dict.fromkeys(parts))
        optional = type(None) in typing.get_args(hint)
        return " | ".join(kinds) + (" or null" if optional else "")
    if origin in (Sequence, list, tuple) or hint in (list, tuple):
        args = typing.get_args(hint)
        inner = _kind(args[0]) if args else "value"
        return f"list of {inner}s"
    if hint is Config or origin in (Mapping, dict) or hint is Mapping:
        return "config"
    if hint is float:
        return "number"
    if hint is int:
        return "integer"
    if hint is bool:
        return "true/false"
    if hint is str:
        return "text"
    return getattr(hint, "__name__", str(hint))


def _accepts(hint: Any, value: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(a, value) for a in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin in (Sequence, list, tuple):
        args = typing.get_args(hint)
        return isinstance(value, list) and all(_accepts(args[0], v) for v in value)
    if hint is Config or origin in (Mapping, dict) or hint is Mapping:
        return _is_config(value)
    if hint is float:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return number and math.isfinite(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is bool:
        return isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True  # unknown annotation: let the constructor judge


def _is_config(value: Any) -> bool:
    if isinstance(value, Config):
        return True
    if not isinstance(value, dict) or not {"model", "mode"} <= set(value):
        return False
    if set(value) - {"model", "mode", "budget"}:
        return False
    budget = value.get("budget")
    return budget is None or (isinstance(budget, int) and not isinstance(budget, bool))


def parameter_types(cls: type[Policy]) -> dict[str, tuple[Any, bool]]:
    """Constructor parameters of a policy: name -> (annotation, required)."""
    hints = typing.get_type_hints(cls.__init__)
    out: dict[str, tuple[Any, bool]] = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        out[name] = (hints.get(name, Any), param.default is inspect.Parameter.empty)
    return out


def describe_parameters(cls: type[Policy]) -> str:
    """`price_per_unit (number, required), samples (integer)`: for error messages and help."""
    return ", ".join(
        f"{name} ({_kind(hint)}{', required' if required else ''})"
        for name, (hint, required) in parameter_types(cls).items()
    )


def check_params(cls: type[Policy], params: Mapping[str, Any]) -> None:
    """Raise PolicyError (one line) for unknown keys, missing required ones or wrong types."""
    known = parameter_types(cls)
    valid = f"valid parameters for {cls.name}: {describe_parameters(cls)}"
    for key, value in params.items():
        if key not in known:
            raise PolicyError(f"unknown parameter {key!r}; {valid}")
        hint, _ = known[key]
        if not _accepts(hint, value):
            shown = repr(value) if isinstance(value, str) else json.dumps(value)
            example = (
                ' (a JSON object like {"model": "m", "mode": "think", "budget": 4096})'
                if "config" in _kind(hint)
                else ""
            )
            raise PolicyError(
                f"parameter {key}: expected {_kind(hint)}{example}, got {shown}; {valid}"
            )
    missing = [k for k, (_, required) in known.items() if required and k not in params]
    if missing:
        raise PolicyError(f"missing parameter {missing[0]!r}; {valid}")
