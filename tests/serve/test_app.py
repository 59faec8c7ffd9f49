"""The proxy's routes on the fake engine (plans) and a scripted upstream (pass-through).

Fast unit tests of the HTTP contract: status codes, OpenAI error shapes, usage and headers,
plan overrides, keys and limits, the request log. The real-engine tests with the official
openai client are in tests/live/test_serve_live.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from serve_helpers import probe_escalate_policy, upstream_reply

from ponder.backends.fake import FakeBackend, FakeOptions
from ponder.serve.app import ServeConfig, create_app
from ponder.serve.dispatch import Served
from ponder.serve.limits import KeyPolicy, hash_key
from ponder.serve.requestlog import read_requests
from ponder.serve.upstreams import Upstream, UpstreamSpec

QUESTION = "Add 12 and 30."  # the fake's answer: 42
Handler = Callable[[httpx.Request], httpx.Response]


def _client(
    handler: Handler = upstream_reply,
    *,
    keys: tuple[KeyPolicy, ...] = (),
    store: Path | None = None,
    max_retries: int = 0,
) -> TestClient:
    spec = UpstreamSpec(
        "small",
        {
            "base_url": "http://up/v1",
            "model": "small-id",
            "name": "small",
            "max_retries": max_retries,
        },
    )
    http = httpx.AsyncClient(base_url="http://up/v1", transport=httpx.MockTransport(handler))
    upstream = Upstream(spec, FakeBackend(FakeOptions(model="small")), http)
    config = ServeConfig(
        upstreams=[spec], policies=[Served("pe", probe_escalate_policy())], keys=keys, store=store,
        max_body_bytes=10_000,
    )  # fmt: skip
    return TestClient(create_app(config, upstreams={"small": upstream}))


@pytest.fixture
def client() -> Iterator[TestClient]:
    with _client() as c:
        yield c


def _ask(client: TestClient, **extra: Any) -> httpx.Response:
    body = {"model": "ponder/pe", "messages": [{"role": "user", "content": QUESTION}], **extra}
    return client.post("/v1/chat/completions", json=body)


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_models_and_health(client: TestClient) -> None:
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids == ["ponder/pe", "small"]
    assert client.get("/health").json()["status"] == "ok"


def test_policy_answer_carries_usage_headers_and_plan(client: TestClient) -> None:
    response = _ask(client)
    assert response.status_code == 200, response.text
    body = response.json()
    usage, ponder = body["usage"], body["ponder"]
    steps = ponder["steps"]
    assert usage["completion_tokens"] == sum(s["generated_tokens"] for s in steps)
    assert response.headers["x-ponder-cost"] == str(usage["completion_tokens"])
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    reasoning = usage["completion_tokens_details"]["reasoning_tokens"]
    assert 0 <= reasoning <= usage["completion_tokens"]
    labels = response.headers["x-ponder-decision"].split(" > ")
    assert labels[0] == "small|no-think-greedy|none"
    assert response.headers["x-ponder-escalated"] == ("true" if len(steps) > 1 else "false")
    assert int(response.headers["x-ponder-calls"]) >= len(steps)
    assert body["model"] == "ponder/pe"
    content = body["choices"][0]["message"]["content"]
    assert ponder["answer"] is not None and ponder["answer"] in content


def test_token_cap_drops_later_steps_then_refuses(client: TestClient) -> None:
    short = _ask(client, max_tokens=40)
    assert short.status_code == 200, short.text
    assert short.headers["x-ponder-decision"] == "small|no-think-greedy|none"
    assert int(short.headers["x-ponder-cost"]) <= 40
    error = _error(_ask(client, max_tokens=5), 400)
    assert "token cap 5" in error["message"] and error["param"] == "max_tokens"


def test_request_overrides(client: TestClient) -> None:
    forced = _ask(client, ponder={"mode": "think", "budget": 32})
    assert forced.headers["x-ponder-decision"] == "small|think|32"
    greedy = _ask(client, ponder={"mode": "think-greedy", "budget": 32})
    assert greedy.headers["x-ponder-decision"] == "small|think-greedy|32"
    direct = _ask(client, ponder={"mode": "no-think-greedy"})
    assert direct.headers["x-ponder-decision"] == "small|no-think-greedy|none"
    low = _ask(client, reasoning_effort="low")
    assert low.headers["x-ponder-decision"] == "small|no-think-greedy|none"
    error = _error(_ask(client, ponder={"mode": "sideways"}), 400)
    assert error["param"] == "ponder.mode"
    assert _error(_ask(client, ponder={"bogus": 1}), 400)["param"] == "ponder.bogus"


def test_policy_stream_sends_reasoning_then_answer_then_usage(client: TestClient) -> None:
    chunks = []
    body = {"stream": True, "stream_options": {"include_usage": True},
            "ponder": {"mode": "think", "budget": 64}}  # fmt: skip
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "ponder/pe", "messages": [{"role": "user", "content": QUESTION}], **body},
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                chunks.append(line[6:])
    assert chunks[-1] == "[DONE]"
    events = [json.loads(c) for c in chunks[:-1]]
    deltas = [
        e["choices"][0]["delta"]["reasoning_content"]
        for e in events
        if e["choices"] and "reasoning_content" in e["choices"][0]["delta"]
    ]
    assert len(deltas) > 1  # piece by piece as the chain grows, not one buffered block
    reasoning = "".join(deltas)
    content = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    usage = events[-1]["usage"]
    assert reasoning  # the chain's text arrived as reasoning deltas
    assert "42" in content or events[-1]["ponder"]["answer"] in content
    assert usage["completion_tokens"] == events[-1]["ponder"]["generated_tokens"]


def test_pass_through_renames_the_model_and_drops_ponder_fields(client: TestClient) -> None:
    response = client.post(
        "/v1/chat/completions",
        json={"model": "small", "messages": [{"role": "user", "content": "hi"}],
              "temperature": 0.2, "tools": [], "ponder": {"budget": 5}},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "small"
    assert body["echo"]["model"] == "small-id"
    assert "ponder" not in body["echo"] and body["echo"]["tools"] == []
    assert body["echo"]["temperature"] == 0.2


def test_pass_through_stream_relays_and_strips_unrequested_usage(client: TestClient) -> None:
    payload = {"model": "small", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=payload) as response:
        lines = [x[6:] for x in response.iter_lines() if x.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    events = [json.loads(x) for x in lines[:-1]]
    assert "".join(e["choices"][0]["delta"]["content"] for e in events) == "forty two"
    assert all("usage" not in e and e["model"] == "small" for e in events)


@pytest.mark.parametrize(
    ("fail", "status", "code"),
    [
        (lambda r: httpx.Response(500, text="boom"), 502, "upstream_error"),
        (
            lambda r: httpx.Response(400, json={"error": {"message": "bad"}}),
            400,
            "upstream_rejected",
        ),
        (lambda r: httpx.Response(200, text="not json"), 502, "upstream_error"),
    ],
)
def test_upstream_failures_map_to_statuses(fail: Handler, status: int, code: str) -> None:
    with _client(fail) as c:
        response = c.post(
            "/v1/chat/completions",
            json={"model": "small", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert _error(response, status)["code"] == code
        assert c.get("/health").status_code == 200  # still serving


def test_unreachable_and_slow_upstreams() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    for handler, status in ((refuse, 502), (slow, 504)):
        with _client(handler) as c:
            response = c.post(
                "/v1/chat/completions",
                json={"model": "small", "messages": [{"role": "user", "content": "hi"}]},
            )
            _error(response, status)


def test_retries_then_succeeds() -> None:
    calls = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) < 3:
            return httpx.Response(503, text="busy")
        return upstream_reply(request)

    with _client(flaky, max_retries=2) as c:
        response = c.post(
            "/v1/chat/completions",
            json={"model": "small", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert response.status_code == 200 and len(calls) == 3


def test_bad_requests(client: TestClient) -> None:
    post = client.post
    bad_json = post(
        "/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert "not valid JSON" in _error(bad_json, 400)["message"]
    wrong = post("/v1/chat/completions", json={"model": "small", "messages": "hi"})
    assert _error(wrong, 400)["param"] == "messages"
    hi = [{"role": "user", "content": "hi"}]
    cap = post("/v1/chat/completions", json={"model": "small", "max_tokens": "x", "messages": hi})
    assert _error(cap, 400)["param"] == "max_tokens"
    huge = post("/v1/chat/completions", content=b"x" * 20_000)
    _error(huge, 413)
    unknown = _ask(client, model="nope")
    assert _error(unknown, 404)["code"] == "model_not_found"
    assert _error(client.get("/v1/chat/completions"), 405)["type"] == "invalid_request_error"
    _error(client.get("/v1/nothing"), 404)
    trailing = post("/v1/chat/completions", json={"model": "ponder/pe", "messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]})  # fmt: skip
    assert "last message" in _error(trailing, 400)["message"]


def test_keys_and_rate_limits() -> None:
    key = KeyPolicy(name="team", sha256=hash_key("s3cret"), requests_per_minute=6)
    with _client(keys=(key,)) as c:
        missing = c.get("/v1/models")
        assert _error(missing, 401)["code"] == "invalid_api_key"
        wrong = c.get("/v1/models", headers={"authorization": "Bearer nope"})
        _error(wrong, 401)
        good = {"authorization": "Bearer s3cret"}
        assert c.get("/v1/models", headers=good).status_code == 200
        limited = c.get("/v1/models", headers=good)  # burst of 1 at 6 per minute
        assert _error(limited, 429)["code"] == "rate_limit_exceeded"
        assert int(limited.headers["retry-after"]) >= 1


def test_token_budget_is_charged_and_enforced() -> None:
    key = KeyPolicy(name="team", sha256=hash_key("s3cret"), token_budget=10)
    with _client(keys=(key,)) as c:
        good = {"authorization": "Bearer s3cret"}
        body = {"model": "small", "messages": [{"role": "user", "content": "hi"}]}
        assert c.post("/v1/chat/completions", json=body, headers=good).status_code == 200
        assert c.post("/v1/chat/completions", json=body, headers=good).status_code == 200
        spent = c.post("/v1/chat/completions", json=body, headers=good)  # 12 of 10 used
        assert _error(spent, 429)["code"] == "token_budget_exceeded"


def test_request_log_and_feedback(tmp_path: Path) -> None:
    store = tmp_path / "serve.sqlite"
    with _client(store=store) as c:
        answered = _ask(c)
        request_id = answered.headers["x-request-id"]
        c.post(
            "/v1/chat/completions",
            json={"model": "small", "messages": [{"role": "user", "content": "hi"}]},
        )
        _ask(c, model="nope")  # refused before anything ran: not logged
        ok = c.post("/v1/ponder/feedback", json={"request_id": request_id, "gold": "42"})
        assert ok.status_code == 200, ok.text
        missing = c.post("/v1/ponder/feedback", json={"request_id": "nope", "gold": "1"})
        _error(missing, 404)
    frame = read_requests(store)
    assert len(frame) == 2
    row = frame[frame["request_id"] == request_id].iloc[0]
    assert row["policy"] == "pe" and row["status"] == 200
    assert row["calls"] == int(answered.headers["x-ponder-calls"])
    assert bool(row["correct"]) == (row["answer"] == "42")
    passed = frame[frame["model"] == "small"].iloc[0]
    assert passed["prompt_tokens"] == 5 and passed["answer_tokens"] == 1


def test_metrics_count_requests_and_tokens(client: TestClient) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    _ask(client)
    _ask(client, model="nope")
    text = client.get("/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    ok = ("ponder_requests_total", (("model", "ponder/pe"), ("status", "200"), ("stream", "false")))
    assert samples[ok] == 1
    missing = (
        "ponder_requests_total",
        (("model", "unknown"), ("status", "404"), ("stream", "false")),
    )
    assert samples[missing] == 1
    tokens = [v for (name, labels), v in samples.items() if name == "ponder_tokens_total"]
    assert sum(tokens) > 0


def _two_upstreams(primary: Handler, primary_fake: FakeOptions) -> TestClient:
    """Upstream `small` (failing as given) with fallback `spare` (healthy)."""
    specs, opened = [], {}
    for name, handler, fake in (
        ("small", primary, primary_fake),
        ("spare", upstream_reply, FakeOptions(model="spare")),
    ):
        spec = UpstreamSpec(
            name, {"base_url": f"http://{name}/v1", "model": f"{name}-id", "max_retries": 0}
        )
        http = httpx.AsyncClient(base_url=spec.base_url, transport=httpx.MockTransport(handler))
        specs.append(spec)
        opened[name] = Upstream(spec, FakeBackend(fake), http)
    config = ServeConfig(
        upstreams=specs,
        policies=[Served("pe", probe_escalate_policy())],
        fallbacks={"small": "spare"},
    )
    return TestClient(create_app(config, upstreams=opened))


def test_a_failing_upstream_falls_back_for_pass_through_and_plans() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    broken = FakeOptions(model="small", fail_always=("Add",))
    with _two_upstreams(down, broken) as c:
        hi = [{"role": "user", "content": "hi"}]
        passed = c.post("/v1/chat/completions", json={"model": "small", "messages": hi})
        assert passed.status_code == 200, passed.text
        assert passed.json()["echo"]["model"] == "spare-id"
        assert passed.headers["x-ponder-fallback"] == "spare"
        planned = _ask(c)
        assert planned.status_code == 200, planned.text
        assert planned.headers["x-ponder-fallback"] == "spare"


def test_a_rejected_request_does_not_fall_back() -> None:
    def rejects(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "bad"}})

    with _two_upstreams(rejects, FakeOptions(model="small")) as c:
        hi = [{"role": "user", "content": "hi"}]
        response = c.post("/v1/chat/completions", json={"model": "small", "messages": hi})
        assert _error(response, 400)["code"] == "upstream_rejected"


def test_a_read_timeout_is_not_sent_again_but_a_refused_connection_is() -> None:
    calls: list[str] = []

    def slow(request: httpx.Request) -> httpx.Response:
        calls.append("slow")
        raise httpx.ReadTimeout("timed out", request=request)

    with _client(slow, max_retries=2) as c:
        hi = [{"role": "user", "content": "hi"}]
        _error(c.post("/v1/chat/completions", json={"model": "small", "messages": hi}), 504)
    assert calls == ["slow"]

    def refuse_twice(request: httpx.Request) -> httpx.Response:
        calls.append("refused")
        if calls.count("refused") < 3:
            raise httpx.ConnectError("refused", request=request)
        return upstream_reply(request)

    with _client(refuse_twice, max_retries=2) as c:
        ok = c.post("/v1/chat/completions", json={"model": "small", "messages": hi})
        assert ok.status_code == 200 and calls.count("refused") == 3


def test_a_null_stream_options_is_accepted(client: TestClient) -> None:
    hi = [{"role": "user", "content": "hi"}]
    payload = {"model": "small", "messages": hi, "stream": True, "stream_options": None}
    with client.stream("POST", "/v1/chat/completions", json=payload) as response:
        assert response.status_code == 200
        lines = [x for x in response.iter_lines() if x.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"


def test_a_bug_answers_500_in_openai_shape_and_the_server_goes_on(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = client.app.state.ponder  # type: ignore[attr-defined]
    policy = state.policies["ponder/pe"].policy

    def broken(problem: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(policy, "decide", broken)
    error = _error(_ask(client), 500)
    assert error["code"] == "internal_error" and "RuntimeError: a bug" in error["message"]
    monkeypatch.undo()
    assert _ask(client).status_code == 200


@pytest.mark.parametrize(
    ("chain", "line"),
    [
        ("Step one.\n\nSo 3 + 4 = 7.\nThe answer is \\boxed{7}.", "The answer is \\boxed{7}."),
        ("\\boxed{5}", "\\boxed{5}"),
        ("First \\boxed{1}, then\nfinally \\boxed{2}", "finally \\boxed{2}"),
        ("No box.\n\nSo it is 9", "So it is 9"),
    ],
)
def test_a_finished_chains_answer_line(chain: str, line: str) -> None:
    from ponder.serve.dispatch import answer_line

    assert answer_line(chain) == line


def test_a_restart_restores_what_each_key_spent_in_its_period(tmp_path: Path) -> None:
    from ponder.serve.records import used_tokens
    from ponder.serve.requestlog import RequestLog, RequestRecord, utc_now

    store = tmp_path / "serve.sqlite"
    old = "2020-01-01T00:00:00.000+00:00"  # outside any period
    with RequestLog(store) as log:
        for i, (key, when) in enumerate(
            [("team", utc_now()), ("team", utc_now()), ("team", old), ("other", utc_now())]
        ):
            log.submit(
                RequestRecord(
                    request_id=f"r{i}",
                    created_at=when,
                    key_name=key,
                    model="small",
                    status=200,
                    latency_s=0.1,
                    prompt_tokens=5,
                    answer_tokens=2,
                    reasoning_tokens=3,
                    probe_tokens=None,
                )
            )
    team = KeyPolicy(name="team", sha256=hash_key("a"), token_budget=100)
    other = KeyPolicy(name="other", sha256=hash_key("b"), token_budget=100)
    unlimited = KeyPolicy(name="free", sha256=hash_key("c"))
    assert used_tokens(store, [team, other, unlimited]) == {"team": 20, "other": 10}
    assert used_tokens(tmp_path / "none.sqlite", [team]) == {}
