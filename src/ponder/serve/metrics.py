"""Prometheus metrics of one ``ponder serve`` process.

Every server owns a private ``CollectorRegistry``, so two apps in one process (tests, or a
server restarted in place) never see each other's counts and never collide on metric names.

Label values are taken as given: callers must bound their cardinality (known model, policy,
config and upstream names only, never text from a request), or one client could grow the
registry without limit.
"""

from __future__ import annotations

import math
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# A whole request spans a cache hit (milliseconds) to a long thinking chain (minutes).
REQUEST_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
    120.0, 300.0, 600.0,
)  # fmt: skip
# One upstream call can be a tiny probe (an answer after a forced stop), so start finer.
UPSTREAM_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
# Where the tokens of a request went: the prompt, the thinking, the answer, early-exit probes.
TOKEN_KINDS: tuple[str, ...] = ("prompt", "reasoning", "answer", "probe")


def _check_seconds(seconds: float) -> None:
    """A negative or NaN duration is a caller bug; recording it would corrupt the histogram."""
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"a duration must be a non-negative number of seconds, got {seconds!r}")


class ServeMetrics:
    """Prometheus metrics of one server, in its own CollectorRegistry (apps and tests never share).

    Callers must bound label cardinality: pass known model, policy, config and upstream names
    only, and fixed vocabularies for statuses, error kinds and rejection reasons.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._in_flight = Gauge(
            "ponder_requests_in_flight",
            "Requests accepted and not yet finished.",
            registry=self.registry,
        )
        self._requests = Counter(
            "ponder_requests",
            "Finished requests by model, HTTP status and whether the reply was streamed.",
            ["model", "status", "stream"],
            registry=self.registry,
        )
        self._request_seconds = Histogram(
            "ponder_request_seconds",
            "Wall time of a whole request, from accept to the last byte.",
            ["model"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self._decisions = Counter(
            "ponder_decisions",
            "Decisions made by a policy, by the configuration it chose.",
            ["policy", "config"],
            registry=self.registry,
        )
        self._tokens = Counter(
            "ponder_tokens",
            "Tokens spent, by model and kind (prompt, reasoning, answer, probe).",
            ["model", "kind"],
            registry=self.registry,
        )
        self._early_exits = Counter(
            "ponder_early_exits",
            "Requests whose thinking stopped at an early rung of the budget ladder.",
            ["policy"],
            registry=self.registry,
        )
        self._escalations = Counter(
            "ponder_escalations",
            "Requests a cascade passed on to its next, more expensive step.",
            ["policy"],
            registry=self.registry,
        )
        self._upstream_seconds = Histogram(
            "ponder_upstream_seconds",
            "Wall time of one call to an upstream engine.",
            ["upstream"],
            buckets=UPSTREAM_BUCKETS,
            registry=self.registry,
        )
        self._upstream_errors = Counter(
            "ponder_upstream_errors",
            "Failed upstream calls by kind (timeout, connect, status_5xx, status_4xx, protocol).",
            ["upstream", "kind"],
            registry=self.registry,
        )
        self._rejected = Counter(
            "ponder_rejected",
            "Requests refused before any work (auth, rate_limit, budget, too_large, invalid).",
            ["reason"],
            registry=self.registry,
        )

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: label values are bounded (see the class doc),
        and ``labels()`` validates and looks up on every call."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def request_started(self) -> None:
        """Count a request as in flight; pair every call with one ``request_finished``."""
        self._in_flight.inc()

    def request_finished(self, model: str, status: int, seconds: float, stream: bool) -> None:
        """Record a finished request (successful or not) and take it out of the in-flight gauge."""
        _check_seconds(seconds)
        self._in_flight.dec()
        self._child(self._requests, model, str(int(status)), "true" if stream else "false").inc()
        self._child(self._request_seconds, model).observe(seconds)

    def decision(self, policy: str, config: str) -> None:
        """Count one decision of ``policy`` for the configuration labelled ``config``."""
        self._decisions.labels(policy=policy, config=config).inc()

    def tokens(self, model: str, kind: str, n: int) -> None:
        """Add ``n`` tokens of ``kind`` (one of ``TOKEN_KINDS``) spent on ``model``."""
        if kind not in TOKEN_KINDS:
            raise ValueError(f"token kind must be one of {', '.join(TOKEN_KINDS)}, got {kind!r}")
        if n < 0:
            raise ValueError(f"a token count cannot be negative, got {n}")
        if n:
            self._child(self._tokens, model, kind).inc(n)

    def early_exit(self, policy: str) -> None:
        """Count a request that stopped thinking before the last rung."""
        self._early_exits.labels(policy=policy).inc()

    def escalation(self, policy: str) -> None:
        """Count a request that a cascade escalated to its next step."""
        self._escalations.labels(policy=policy).inc()

    def upstream_call(self, upstream: str, seconds: float) -> None:
        """Record the wall time of one upstream call (successful or not)."""
        _check_seconds(seconds)
        self._child(self._upstream_seconds, upstream).observe(seconds)

    def upstream_error(self, upstream: str, kind: str) -> None:
        """Count a failed upstream call; ``kind`` comes from a fixed vocabulary of the caller."""
        self._upstream_errors.labels(upstream=upstream, kind=kind).inc()

    def rejected(self, reason: str) -> None:
        """Count a request refused before any work (auth, rate_limit, budget, too_large, ...)."""
        self._rejected.labels(reason=reason).inc()

    def render(self) -> tuple[bytes, str]:
        """The text exposition of every metric and its content type, for a ``/metrics`` route."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
