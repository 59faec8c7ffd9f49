"""Save and load fitted policies as versioned JSON (never pickle).

The file records the format version, the policy's name, parameters, learned state, the
fingerprint of the data it was fitted on, and a sha256 of its own content so an edited file is
refused instead of silently deciding differently.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from pathlib import Path
from typing import Any

from ponder.errors import InputError
from ponder.policies.base import Policy

FORMAT = "ponder.policy"
FORMAT_VERSION = 1

_REGISTRY: dict[str, type[Policy]] = {}


def register(cls: type[Policy]) -> type[Policy]:
    """Make a policy class loadable by its `name` (used as a class decorator)."""
    _REGISTRY[cls.name] = cls
    return cls


def registered() -> dict[str, type[Policy]]:
    _load_builtin()
    return dict(_REGISTRY)


# Imported on demand so that `ponder --help` never pays for scikit-learn.
_BUILTIN_MODULES = (
    "uniform",
    "oracle",
    "adaptive",
    "router",
    "allocation",
    "sweetspot",
    "cascade",
    "consistency",
    "published",
    "early_exit",
    "learned_exit",
)


def _load_builtin() -> None:
    """Import every built-in policy module, which registers its classes."""
    for module in _BUILTIN_MODULES:
        importlib.import_module(f"ponder.policies.{module}")


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def policy_to_dict(policy: Policy) -> dict[str, Any]:
    policy.check_fitted()
    body = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "policy": policy.name,
        "params": policy.get_params(),
        "state": policy.get_state(),
        "fitted_on": {
            "fingerprint": policy.fingerprint_,
            "n_problems": policy.n_problems_fitted_,
        },
    }
    return {**body, "sha256": _digest(body)}


def save_policy(policy: Policy, path: str | Path) -> Path:
    """Write the policy as JSON, atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(policy_to_dict(policy), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, target)
    return target


def policy_from_dict(data: dict[str, Any], *, source: str = "policy") -> Policy:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"not a ponder policy file (format {data.get('format')!r})", path=source)
    version = data.get("version")
    if version != FORMAT_VERSION:
        raise InputError(
            f"policy format version {version!r} is not supported (this ponder reads "
            f"{FORMAT_VERSION})",
            path=source,
            field="version",
        )
    body = {k: v for k, v in data.items() if k != "sha256"}
    if data.get("sha256") != _digest(body):
        raise InputError(
            "content does not match its sha256: the file was edited or corrupted; refit it "
            "with `ponder fit`",
            path=source,
            field="sha256",
        )
    classes = registered()
    name = data.get("policy")
    if name not in classes:
        raise InputError(
            f"unknown policy {name!r}; known: {', '.join(sorted(classes))}",
            path=source,
            field="policy",
        )
    cls = classes[name]
    try:
        policy = cls.from_params(data["params"])
        policy.set_state(data["state"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"invalid parameters or state: {exc}", path=source) from exc
    policy.fingerprint_ = data["fitted_on"]["fingerprint"]
    policy.n_problems_fitted_ = data["fitted_on"]["n_problems"]
    return policy


def load_policy(path: str | Path) -> Policy:
    source = Path(path)
    try:
        data = json.loads(source.read_text())
    except FileNotFoundError as exc:
        raise InputError("no such file", path=source) from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg}", path=source, line=exc.lineno) from exc
    return policy_from_dict(data, source=str(source))
