"""API keys, per-key token budgets and request rates for ``ponder serve``.

Keys are kept only as sha256 digests, so a key file may hold digests instead of secrets and a
leaked process dump or log line never shows a usable key. Names identify keys in logs and
metrics; messages never echo a key.

Rates: a token bucket per key refilled at ``requests_per_minute / 60`` per second that holds
at most ``burst`` requests, where ``burst = max(1, requests_per_minute / 6)``: a client may send
ten seconds' worth of its rate at once, and always at least one request.

Budgets: fixed windows of ``budget_period_s`` seconds, a key's first window starting at its
first admitted request (or, for usage restored at start-up, when the ``Limiter`` is created); the
next window starts at the first request after the current one ends. A request is admitted while
the window's budget is not yet spent, and its tokens are charged when it finishes, so the last
request of a window may overshoot the budget by its own size: the size of a reply is only known
after it is generated, and refusing on an estimate would refuse requests that would have fit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ponder.errors import InputError

ENV_SOURCE = "$PONDER_API_KEYS"
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_ENTRY_FIELDS = frozenset(
    {"name", "key", "sha256", "token_budget", "budget_period_s", "requests_per_minute"}
)


def hash_key(key: str) -> str:
    """The hex sha256 of a key, the form a key file may store instead of the key itself."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class LimitError(Exception):
    """A request refused by authentication (401) or by a rate or budget limit (429).

    ``retry_after`` is in seconds (a float; round it up for a ``Retry-After`` header) and is
    None for a 401.
    """

    def __init__(
        self, message: str, *, status: int, code: str, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after


@dataclass(frozen=True)
class KeyPolicy:
    """One API key (as its digest) and its limits."""

    name: str  # who the key belongs to (logged, never the key itself)
    sha256: str  # hex digest of the key
    token_budget: int | None = None  # prompt + generated tokens per window; None: unlimited
    budget_period_s: float = 86400.0
    requests_per_minute: float | None = None  # None: no rate limit

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a key needs a non-empty name")
        if not _SHA256_HEX.fullmatch(self.sha256):
            raise ValueError(f"key {self.name!r}: sha256 must be 64 hex digits")
        if self.token_budget is not None and self.token_budget < 0:
            raise ValueError(f"key {self.name!r}: token_budget cannot be negative")
        if not (math.isfinite(self.budget_period_s) and self.budget_period_s > 0):
            raise ValueError(f"key {self.name!r}: budget_period_s must be a positive number")
        rpm = self.requests_per_minute
        if rpm is not None and not (math.isfinite(rpm) and rpm > 0):
            raise ValueError(f"key {self.name!r}: requests_per_minute must be a positive number")

    @property
    def burst(self) -> float | None:
        """Requests the rate bucket holds when full (None: no rate limit)."""
        if self.requests_per_minute is None:
            return None
        return max(1.0, self.requests_per_minute / 6.0)


# --- loading ------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _entry_policy(entry: Any, index: int, path: Path) -> tuple[KeyPolicy, str]:
    """One validated entry of a key file and the field that held its key ('key' or 'sha256').

    Every error names the file, the entry and the field.
    """
    where = f"keys[{index}]"

    def fail(message: str, field: str | None = None) -> InputError:
        return InputError(message, path=path, field=where if field is None else f"{where}.{field}")

    if not isinstance(entry, dict):
        raise fail(f"an entry must be an object, got {type(entry).__name__}")
    unknown = sorted(set(entry) - _ENTRY_FIELDS)
    if unknown:
        raise fail(
            f"unknown field(s) {', '.join(map(repr, unknown))}; "
            f"expected {', '.join(sorted(_ENTRY_FIELDS))}"
        )
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise fail("must be a non-empty string", "name")
    if ("key" in entry) == ("sha256" in entry):
        raise fail("give exactly one of 'key' (the key itself) or 'sha256' (its hex digest)")
    if "key" in entry:
        key = entry["key"]
        # The value is a secret: report its type or shape, never the value.
        if not isinstance(key, str):
            raise fail(f"must be a string, got {type(key).__name__}", "key")
        if not key:
            raise fail("must not be empty", "key")
        if any(ch.isspace() for ch in key):
            raise fail("must not contain whitespace (it travels in an HTTP header)", "key")
        digest = hash_key(key)
    else:
        digest = entry["sha256"]
        if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
            raise fail("must be 64 hex digits (the sha256 of the key)", "sha256")
        digest = digest.lower()

    budget = entry.get("token_budget")
    if budget is not None:
        if not isinstance(budget, int) or isinstance(budget, bool):
            raise fail(f"must be an integer or null, got {budget!r}", "token_budget")
        if budget < 0:
            raise fail(f"cannot be negative, got {budget}", "token_budget")
    period = entry.get("budget_period_s", 86400.0)
    if not _is_number(period) or not math.isfinite(period) or period <= 0:
        raise fail(f"must be a positive number of seconds, got {period!r}", "budget_period_s")
    rpm = entry.get("requests_per_minute")
    if rpm is not None and (not _is_number(rpm) or not math.isfinite(rpm) or rpm <= 0):
        raise fail(f"must be a positive number or null, got {rpm!r}", "requests_per_minute")
    policy = KeyPolicy(
        name=name.strip(),
        sha256=digest,
        token_budget=budget,
        budget_period_s=float(period),
        requests_per_minute=None if rpm is None else float(rpm),
    )
    return policy, "key" if "key" in entry else "sha256"


def _file_policies(path: Path) -> list[tuple[KeyPolicy, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the key file: {exc}", path=path) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg}", path=path, line=exc.lineno) from exc
    if not isinstance(data, dict) or "keys" not in data:
        raise InputError('must be a JSON object {"keys": [...]}', path=path)
    extra = sorted(set(data) - {"keys"})
    if extra:
        raise InputError(
            f"unknown top-level field(s) {', '.join(map(repr, extra))}", path=path, field=extra[0]
        )
    entries = data["keys"]
    if not isinstance(entries, list):
        raise InputError(f"must be a list, got {type(entries).__name__}", path=path, field="keys")
    return [_entry_policy(entry, index, path) for index, entry in enumerate(entries)]


def _env_policies(env_value: str) -> list[KeyPolicy]:
    if not env_value.strip():
        return []
    policies = []
    for index, raw in enumerate(env_value.split(","), start=1):
        key = raw.strip()
        field = f"key-{index}"
        if not key:
            raise InputError(
                f"entry {index} is empty (a stray comma?)", path=ENV_SOURCE, field=field
            )
        if any(ch.isspace() for ch in key):
            raise InputError(
                f"entry {index} must not contain whitespace", path=ENV_SOURCE, field=field
            )
        policies.append(KeyPolicy(name=field, sha256=hash_key(key)))
    return policies


def load_keys(path: Path | None, env_value: str | None) -> list[KeyPolicy]:
    """Keys from a JSON key file and from ``$PONDER_API_KEYS`` (comma-separated plain keys).

    The file is ``{"keys": [{"name": ..., "key": ...} or {"name": ..., "sha256": ...}, ...]}``
    with optional ``token_budget``, ``budget_period_s`` and ``requests_per_minute`` per entry.
    Keys from the environment are named ``key-1``, ``key-2``, ... and have no limits. Names and
    keys must be unique across both sources. Raises ``InputError`` naming the source, the
    entry and the field; no message contains a key.
    """
    # (source, entry label, name field, key field, policy), in the order they are checked
    sourced: list[tuple[str, str, str, str, KeyPolicy]] = []
    if path is not None:
        for index, (policy, key_field) in enumerate(_file_policies(path)):
            label = f"keys[{index}]"
            sourced.append((str(path), label, f"{label}.name", f"{label}.{key_field}", policy))
    if env_value is not None:
        for policy in _env_policies(env_value):
            sourced.append((ENV_SOURCE, policy.name, policy.name, policy.name, policy))

    seen_names: dict[str, str] = {}
    seen_digests: dict[str, str] = {}
    for source, label, name_field, key_field, policy in sourced:
        first = f"{label} of {source}"
        if policy.name in seen_names:
            raise InputError(
                f"duplicate name {policy.name!r} (also {seen_names[policy.name]})",
                path=source,
                field=name_field,
            )
        if policy.sha256 in seen_digests:
            raise InputError(
                f"the same key is already configured as {seen_digests[policy.sha256]}",
                path=source,
                field=key_field,
            )
        seen_names[policy.name] = first
        seen_digests[policy.sha256] = first
    return [entry[-1] for entry in sourced]


# --- authentication -----------------------------------------------------------------------


def _unauthorized(message: str) -> LimitError:
    return LimitError(message, status=401, code="invalid_api_key")


class KeyRing:
    """The configured keys; authenticates ``Authorization: Bearer <key>`` header values."""

    def __init__(self, keys: Sequence[KeyPolicy]) -> None:
        names = [key.name for key in keys]
        digests = [key.sha256.lower() for key in keys]
        if len(set(names)) != len(names) or len(set(digests)) != len(digests):
            raise ValueError("key names and keys must be unique")
        self.keys: tuple[KeyPolicy, ...] = tuple(keys)
        self._digests = [bytes.fromhex(digest) for digest in digests]

    @property
    def enabled(self) -> bool:
        """True when any key is configured (otherwise the server is open)."""
        return bool(self.keys)

    def authenticate(self, authorization: str | None) -> KeyPolicy | None:
        """The key's policy; None when no keys are configured; LimitError 401 otherwise.

        The presented key is hashed and compared with every configured digest in constant
        time, without stopping at a match, so response timing reveals neither the key nor
        which entry it matched.
        """
        if not self.enabled:
            return None
        if authorization is None or not authorization.strip():
            raise _unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or any(ch.isspace() for ch in token):
            raise _unauthorized("malformed Authorization header: expected 'Bearer <key>'")
        presented = hashlib.sha256(token.encode("utf-8")).digest()
        found: KeyPolicy | None = None
        for policy, digest in zip(self.keys, self._digests, strict=True):
            if hmac.compare_digest(presented, digest):
                found = policy
        if found is None:
            raise _unauthorized("invalid API key")
        return found


# --- limits -------------------------------------------------------------------------------


@dataclass
class _Window:
    start: float
    used: int = 0


@dataclass
class _Bucket:
    level: float
    updated: float


class Limiter:
    """Per-key request rates (token bucket) and token budgets (fixed windows); see module doc."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        used: Mapping[str, int] | None = None,
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}
        self._buckets: dict[str, _Bucket] = {}
        now = clock()
        for name, tokens in (used or {}).items():
            if tokens < 0:
                raise ValueError(f"restored usage of key {name!r} cannot be negative")
            self._windows[name] = _Window(start=now, used=int(tokens))

    def _window(self, key: KeyPolicy, now: float) -> _Window | None:
        """The key's current window, dropping one that has ended (the next use opens one)."""
        window = self._windows.get(key.name)
        if window is not None and now >= window.start + key.budget_period_s:
            del self._windows[key.name]
            return None
        return window

    def admit(self, key: KeyPolicy) -> None:
        """Take one request from the key's rate bucket; LimitError 429 when empty or spent."""
        with self._lock:
            now = self._clock()
            window = self._window(key, now)
            if key.token_budget is not None:
                if window is None:
                    window = self._windows[key.name] = _Window(start=now)
                if window.used >= key.token_budget:
                    raise LimitError(
                        f"token budget of key {key.name!r} is spent "
                        f"({window.used} of {key.token_budget} tokens in this period)",
                        status=429,
                        code="token_budget_exceeded",
                        retry_after=window.start + key.budget_period_s - now,
                    )
            rpm, burst = key.requests_per_minute, key.burst
            if rpm is None or burst is None:
                return
            per_second = rpm / 60.0
            bucket = self._buckets.get(key.name)
            if bucket is None:
                bucket = self._buckets[key.name] = _Bucket(level=burst, updated=now)
            bucket.level = min(burst, bucket.level + (now - bucket.updated) * per_second)
            bucket.updated = now
            if bucket.level < 1.0:
                raise LimitError(
                    f"rate limit of key {key.name!r} exceeded ({rpm:g} requests per minute)",
                    status=429,
                    code="rate_limit_exceeded",
                    retry_after=(1.0 - bucket.level) / per_second,
                )
            bucket.level -= 1.0

    def charge(self, key: KeyPolicy, tokens: int) -> None:
        """Add the tokens (prompt + generated) a finished request spent to the current window.

        A request that outlives its window is charged to the next one.
        """
        if tokens < 0:
            raise ValueError(f"a token count cannot be negative, got {tokens}")
        with self._lock:
            now = self._clock()
            window = self._window(key, now)
            if window is None:
                window = self._windows[key.name] = _Window(start=now)
            window.used += tokens

    def remaining(self, key: KeyPolicy) -> int | None:
        """Tokens left in the key's current window (None: no budget)."""
        if key.token_budget is None:
            return None
        with self._lock:
            window = self._window(key, self._clock())
            used = 0 if window is None else window.used
            return max(0, key.token_budget - used)
