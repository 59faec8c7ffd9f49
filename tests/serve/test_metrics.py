"""ServeMetrics read back through the Prometheus text format, as a scraper would see it."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ponder.serve.metrics import REQUEST_BUCKETS, UPSTREAM_BUCKETS, ServeMetrics


def samples(metrics: ServeMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition, keyed by sample name and label set."""
    body, _ = metrics.render()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode("utf-8"))
        for sample in family.samples
    }


def value(metrics: ServeMetrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def test_render_is_prometheus_text() -> None:
    body, content_type = ServeMetrics().render()
    assert content_type.startswith("text/plain")
    assert b"# TYPE ponder_requests_in_flight gauge" in body


def test_requests_in_flight_count_and_latency() -> None:
    metrics = ServeMetrics()
    metrics.request_started()
    metrics.request_started()
    metrics.request_started()
    assert value(metrics, "ponder_requests_in_flight") == 3
    metrics.request_finished("qwen3-1.7b", 200, 0.3, stream=False)
    metrics.request_finished("qwen3-1.7b", 200, 12.0, stream=True)
    assert value(metrics, "ponder_requests_in_flight") == 1
    metrics.request_finished("qwen3-1.7b", 502, 0.004, stream=False)
    assert value(metrics, "ponder_requests_in_flight") == 0

    total = "ponder_requests_total"
    assert value(metrics, total, model="qwen3-1.7b", status="200", stream="false") == 1
    assert value(metrics, total, model="qwen3-1.7b", status="200", stream="true") == 1
    assert value(metrics, total, model="qwen3-1.7b", status="502", stream="false") == 1

    hist = "ponder_request_seconds"
    assert value(metrics, f"{hist}_count", model="qwen3-1.7b") == 3
    assert value(metrics, f"{hist}_sum", model="qwen3-1.7b") == pytest.approx(12.304)
    # cumulative buckets: 0.004 <= 5 ms, 0.3 <= 0.5 s, 12 s <= 20 s
    assert value(metrics, f"{hist}_bucket", model="qwen3-1.7b", le="0.005") == 1
    assert value(metrics, f"{hist}_bucket", model="qwen3-1.7b", le="0.25") == 1
    assert value(metrics, f"{hist}_bucket", model="qwen3-1.7b", le="0.5") == 2
    assert value(metrics, f"{hist}_bucket", model="qwen3-1.7b", le="10.0") == 2
    assert value(metrics, f"{hist}_bucket", model="qwen3-1.7b", le="20.0") == 3


def test_request_buckets_span_milliseconds_to_ten_minutes() -> None:
    assert REQUEST_BUCKETS[0] == 0.005 and REQUEST_BUCKETS[-1] == 600.0
    assert UPSTREAM_BUCKETS[0] < REQUEST_BUCKETS[0]
    assert list(REQUEST_BUCKETS) == sorted(set(REQUEST_BUCKETS))
    assert list(UPSTREAM_BUCKETS) == sorted(set(UPSTREAM_BUCKETS))
    metrics = ServeMetrics()
    metrics.request_started()
    metrics.request_finished("m", 200, 900.0, stream=False)  # beyond the last bucket
    hist = "ponder_request_seconds_bucket"
    assert value(metrics, hist, model="m", le="600.0") == 0
    assert value(metrics, hist, model="m", le="+Inf") == 1


def test_bad_duration_is_refused_and_changes_nothing() -> None:
    metrics = ServeMetrics()
    metrics.request_started()
    with pytest.raises(ValueError, match="non-negative"):
        metrics.request_finished("m", 200, -1.0, stream=False)
    with pytest.raises(ValueError, match="non-negative"):
        metrics.upstream_call("engine", float("nan"))
    assert value(metrics, "ponder_requests_in_flight") == 1
    assert value(metrics, "ponder_requests_total", model="m", status="200", stream="false") is None


def test_tokens_by_kind() -> None:
    metrics = ServeMetrics()
    metrics.tokens("m", "prompt", 120)
    metrics.tokens("m", "reasoning", 900)
    metrics.tokens("m", "reasoning", 100)
    metrics.tokens("m", "answer", 30)
    metrics.tokens("m", "probe", 0)  # nothing spent: no series
    assert value(metrics, "ponder_tokens_total", model="m", kind="prompt") == 120
    assert value(metrics, "ponder_tokens_total", model="m", kind="reasoning") == 1000
    assert value(metrics, "ponder_tokens_total", model="m", kind="answer") == 30
    assert value(metrics, "ponder_tokens_total", model="m", kind="probe") is None
    with pytest.raises(ValueError, match="kind"):
        metrics.tokens("m", "thinking", 5)
    with pytest.raises(ValueError, match="negative"):
        metrics.tokens("m", "answer", -1)
    assert value(metrics, "ponder_tokens_total", model="m", kind="answer") == 30


def test_policy_counters() -> None:
    metrics = ServeMetrics()
    metrics.decision("router", "qwen3-1.7b|think|1024")
    metrics.decision("router", "qwen3-1.7b|think|1024")
    metrics.decision("router", "qwen3-1.7b|no_think|none")
    metrics.early_exit("ladder")
    metrics.early_exit("ladder")
    metrics.escalation("cascade")
    decisions = "ponder_decisions_total"
    assert value(metrics, decisions, policy="router", config="qwen3-1.7b|think|1024") == 2
    assert value(metrics, decisions, policy="router", config="qwen3-1.7b|no_think|none") == 1
    assert value(metrics, "ponder_early_exits_total", policy="ladder") == 2
    assert value(metrics, "ponder_escalations_total", policy="cascade") == 1
    assert value(metrics, "ponder_escalations_total", policy="ladder") is None


def test_upstream_calls_errors_and_rejections() -> None:
    metrics = ServeMetrics()
    metrics.upstream_call("vllm-a", 0.002)
    metrics.upstream_call("vllm-a", 1.5)
    metrics.upstream_error("vllm-a", "timeout")
    metrics.upstream_error("vllm-a", "timeout")
    metrics.upstream_error("vllm-a", "status_5xx")
    metrics.rejected("auth")
    metrics.rejected("rate_limit")
    metrics.rejected("rate_limit")
    hist = "ponder_upstream_seconds"
    assert value(metrics, f"{hist}_count", upstream="vllm-a") == 2
    assert value(metrics, f"{hist}_sum", upstream="vllm-a") == pytest.approx(1.502)
    assert value(metrics, f"{hist}_bucket", upstream="vllm-a", le="0.0025") == 1
    assert value(metrics, f"{hist}_bucket", upstream="vllm-a", le="1.0") == 1
    assert value(metrics, f"{hist}_bucket", upstream="vllm-a", le="2.5") == 2
    errors = "ponder_upstream_errors_total"
    assert value(metrics, errors, upstream="vllm-a", kind="timeout") == 2
    assert value(metrics, errors, upstream="vllm-a", kind="status_5xx") == 1
    assert value(metrics, "ponder_rejected_total", reason="auth") == 1
    assert value(metrics, "ponder_rejected_total", reason="rate_limit") == 2


def test_servers_do_not_share_counts() -> None:
    first, second = ServeMetrics(), ServeMetrics()
    assert first.registry is not second.registry
    first.rejected("auth")
    first.request_started()
    assert value(first, "ponder_rejected_total", reason="auth") == 1
    assert value(second, "ponder_rejected_total", reason="auth") is None
    assert value(second, "ponder_requests_in_flight") == 0
