"""``ponder serve`` end to end: the real CLI in a subprocess, a real engine behind it, and the
official ``openai`` client in front, as a user would run it.

The engine is llama-cpp-python's server on SmolLM2-135M (``llama_server`` in conftest.py),
the upstream ``smollm2-135m``. Policy ``pe`` is hand-made: a greedy no-think answer, kept
when its probability is at least 0.5, else a greedy thinking chain grown through rungs 16,
32, 64 that stops when two probes in a row agree. The model is for plumbing: the tests
check what the proxy promises (OpenAI shapes, token accounting, headers, errors, metrics),
never whether an answer is right. Budgets are tiny so the file runs in about a minute.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.live

SMOL = "smollm2-135m"
POLICY = "ponder/pe"
QUESTION = "Tom has 3 boxes with 4 apples each. How many apples does he have?"
KEY = "k1"
START_TIMEOUT_S = 90
# chains that a probe or an exit rule cut short end with a forced "\boxed{...}" answer
FORCED_STOPS = ("rule", "cap", "gave_up")


# /metrics samples by (name, labels)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass(frozen=True)
class PonderServer:
    """A running ``ponder serve``: its root URL (``/health``, ``/metrics``) and its log."""

    root: str
    log: Path

    @property
    def v1(self) -> str:
        return f"{self.root}/v1"


@pytest.fixture(scope="module")
def serve_deps(module_requirer: Callable[..., None]) -> None:
    module_requirer(
        "fastapi", "uvicorn", "openai", "prometheus_client", why="ponder serve (the serve extra)"
    )


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Policy ``pe`` on SmolLM2, built by hand (no sweep): probe cheap, escalate when unsure."""
    from ponder.decision import Config, ExitRule, Step
    from ponder.policies.early_exit import ProbeEscalate
    from ponder.policies.serialization import save_policy

    probe = Step(Config(SMOL, "no-think-greedy", None), escalate="unsure", min_prob=0.5)
    think = Step(Config(SMOL, "think-greedy", 64), exit=ExitRule((16, 32, 64), window=2))
    policy = ProbeEscalate(1e-3)
    policy.set_state(
        {
            "steps": [probe.to_dict(), think.to_dict()],
            "units": [],
            "train_accuracy": 0.5,
            "train_cost": 40.0,
            "reached": [1.0, 0.5],
        }
    )
    policy.fingerprint_ = "handmade"
    policy.n_problems_fitted_ = 0
    return save_policy(policy, tmp_path_factory.mktemp("policy") / "pe.json")


def _serve_env(keys: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PONDER_API_KEYS"}
    if keys is not None:
        env["PONDER_API_KEYS"] = keys
    return env


def _ponder_serve(args: list[str], port: int) -> list[str]:
    return [sys.executable, "-m", "ponder", "serve", *args, "--port", str(port)]


def _start(
    args: list[str],
    *,
    keys: str | None,
    log_dir: Path,
    free_port: Callable[[], int],
    stop: Callable[[subprocess.Popen[bytes]], None],
) -> Iterator[PonderServer]:
    """Start ``ponder serve``, wait for ``/health``, yield it, stop it by its pid."""
    port = free_port()
    log_path = log_dir / "serve.log"
    root = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        # a file, not a pipe: nobody reads the server's log while the tests run
        proc = subprocess.Popen(
            _ponder_serve([*args, "--log-level", "warning"], port),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_serve_env(keys),
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                if proc.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    pytest.fail(f"ponder serve exited with {proc.returncode}: {tail}")
                try:
                    if httpx.get(f"{root}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"ponder serve did not answer /health within {START_TIMEOUT_S} s")
                time.sleep(0.3)
            yield PonderServer(root, log_path)
        finally:
            stop(proc)


@pytest.fixture(scope="module")
def server(
    serve_deps: None,
    llama_server: str,
    policy_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
    free_port_factory: Callable[[], int],
    process_stopper: Callable[[subprocess.Popen[bytes]], None],
) -> Iterator[PonderServer]:
    """The main server: no keys, loopback, upstreams checked at start."""
    args = ["--upstream", f"{SMOL}={llama_server},engine=llamacpp", "--policy", f"pe={policy_file}"]
    yield from _start(
        args,
        keys=None,
        log_dir=tmp_path_factory.mktemp("ponder_serve"),
        free_port=free_port_factory,
        stop=process_stopper,
    )


@pytest.fixture(scope="module")
def keyed_server(
    serve_deps: None,
    llama_server: str,
    tmp_path_factory: pytest.TempPathFactory,
    free_port_factory: Callable[[], int],
    process_stopper: Callable[[subprocess.Popen[bytes]], None],
) -> Iterator[PonderServer]:
    """A second server: key ``k1`` from the environment, plus upstream ``dead`` on a closed
    port (so it starts with ``--no-check``, and never retries)."""
    dead = f"http://127.0.0.1:{free_port_factory()}/v1"
    args = [
        "--upstream", f"{SMOL}={llama_server},engine=llamacpp",
        "--upstream", f"dead={dead},engine=llamacpp,max_retries=0",
        "--no-check",
    ]  # fmt: skip
    yield from _start(
        args,
        keys=KEY,
        log_dir=tmp_path_factory.mktemp("ponder_serve_keyed"),
        free_port=free_port_factory,
        stop=process_stopper,
    )


def _client(url: str, key: str = "unused") -> Any:
    import openai

    # no client retries: a retried failure would hide what the server answered first
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=120)


def _ask(question: str = QUESTION) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


def _metric_samples(root: str) -> Samples:
    """Every sample of ``/metrics`` by (name, labels), parsed as Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    response = httpx.get(f"{root}/metrics", timeout=10)
    assert response.status_code == 200
    out: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def _sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _check_ponder_usage(usage: Any, summary: dict[str, Any]) -> None:
    """OpenAI usage of a ``ponder/`` reply agrees with what ponder says it did."""
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    reasoning = usage.completion_tokens_details.reasoning_tokens
    assert 0 <= reasoning <= usage.completion_tokens
    assert usage.completion_tokens == summary["generated_tokens"]
    assert usage.completion_tokens == sum(s["generated_tokens"] for s in summary["steps"])


def _forced(summary: dict[str, Any]) -> bool:
    """Whether the final answer was forced out of a chain (probe), not written on its own."""
    stopped = summary["steps"][-1]["stopped"]
    return bool(stopped) and stopped[-1] in FORCED_STOPS


# -- 1-4: the happy paths --------------------------------------------------------------------


def test_policy_reply_has_usage_headers_and_ponder_summary(server: PonderServer) -> None:
    client = _client(server.v1)
    raw = client.chat.completions.with_raw_response.create(model=POLICY, messages=_ask())
    completion = raw.parse()
    summary = completion.model_extra["ponder"]
    message = completion.choices[0].message

    assert completion.model == POLICY
    assert message.content and message.content.strip()
    assert completion.usage is not None
    _check_ponder_usage(completion.usage, summary)
    assert completion.usage.completion_tokens == int(raw.headers["x-ponder-cost"])
    assert int(raw.headers["x-ponder-calls"]) == summary["calls"] >= len(summary["steps"])
    decision = raw.headers["x-ponder-decision"].split(" > ")
    assert decision and all(label.startswith(f"{SMOL}|") for label in decision)
    assert decision == [s["config"] for s in summary["steps"]]
    assert raw.headers["x-ponder-escalated"] == ("true" if len(decision) > 1 else "false")
    assert raw.headers["x-request-id"] == completion.id
    assert summary["steps"] and summary["steps"][0]["config"].startswith(f"{SMOL}|no-think")
    if _forced(summary):  # a chain cut short: its thinking is the reasoning, apart
        assert message.model_extra.get("reasoning_content")


def test_four_concurrent_policy_requests_all_succeed(server: PonderServer) -> None:
    import openai

    questions = [f"What is {a} plus {b}?" for a, b in ((2, 3), (4, 5), (10, 7), (8, 8))]

    async def go() -> list[Any]:
        client = openai.AsyncOpenAI(
            base_url=server.v1, api_key="unused", max_retries=0, timeout=120
        )
        try:
            return await asyncio.gather(
                *(client.chat.completions.create(model=POLICY, messages=_ask(q)) for q in questions)
            )
        finally:
            await client.close()

    completions = asyncio.run(go())
    assert len({c.id for c in completions}) == len(questions)
    for completion in completions:
        assert completion.model == POLICY
        assert completion.choices[0].message.content
        _check_ponder_usage(completion.usage, completion.model_extra["ponder"])


def test_policy_stream_sends_deltas_then_the_answer_then_usage(server: PonderServer) -> None:
    client = _client(server.v1)
    chunks = list(
        client.chat.completions.create(
            model=POLICY,
            messages=_ask(),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks and all(c.model == POLICY for c in chunks)
    assert len({c.id for c in chunks}) == 1
    *body, final = chunks
    assert final.choices == [] and final.usage is not None
    summary = final.model_extra["ponder"]
    _check_ponder_usage(final.usage, summary)
    assert all(c.usage is None for c in body)
    content = "".join(c.choices[0].delta.content or "" for c in body if c.choices)
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
        for c in body
        if c.choices
    )
    assert [c.choices[0].finish_reason for c in body][-1] == "stop"
    answer = summary["answer"]
    assert content.strip()
    if any("|think" in s["config"] for s in summary["steps"]):
        assert reasoning  # the thinking chain was streamed as it grew
    if _forced(summary):
        boxed = re.search(r"\\boxed\{([^{}]*)\}\s*$", content)
        assert boxed is not None, content
        assert answer and answer in boxed.group(1)
    elif answer:
        assert answer in content


def test_pass_through_stream_arrives_in_pieces(server: PonderServer) -> None:
    client = _client(server.v1)
    chunks = list(
        client.chat.completions.create(model=SMOL, messages=_ask(), stream=True, max_tokens=16)
    )
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 1
    assert all(c.model == SMOL for c in chunks)
    # ponder asks the engine for usage to count tokens; a caller who did not ask sees none
    assert all(c.usage is None for c in chunks)


def test_pass_through_reply_keeps_usage_and_model(server: PonderServer) -> None:
    client = _client(server.v1)
    raw = client.chat.completions.with_raw_response.create(
        model=SMOL, messages=_ask(), max_tokens=12
    )
    completion = raw.parse()
    assert completion.model == SMOL
    assert completion.choices[0].message.content
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert 0 < completion.usage.completion_tokens <= 12
    assert raw.headers["x-request-id"]
    assert "x-ponder-cost" not in raw.headers  # a pass-through is not a plan


# -- 5: faults -------------------------------------------------------------------------------


def _assert_openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert error["type"] == "invalid_request_error"
    return dict(error)


def test_unknown_model_is_not_found(server: PonderServer) -> None:
    import openai

    with pytest.raises(openai.NotFoundError) as info:
        _client(server.v1).chat.completions.create(model="no-such-model", messages=_ask())
    assert info.value.status_code == 404
    assert info.value.code == "model_not_found"
    assert "no-such-model" in info.value.message


def test_malformed_json_is_a_400_in_openai_shape(server: PonderServer) -> None:
    response = httpx.post(
        f"{server.v1}/chat/completions",
        content=b'{"model": "ponder/pe", "messages": [',
        headers={"content-type": "application/json"},
        timeout=30,
    )
    error = _assert_openai_error(response, 400)
    assert "JSON" in error["message"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("messages", "what is 2 + 2?"), ("max_tokens", "x")],
)
def test_wrong_types_are_a_400_naming_the_field(
    server: PonderServer, field: str, value: str
) -> None:
    body: dict[str, Any] = {"model": POLICY, "messages": _ask()} | {field: value}
    response = httpx.post(f"{server.v1}/chat/completions", json=body, timeout=30)
    error = _assert_openai_error(response, 400)
    assert error["param"] == field
    assert field in error["message"]


def test_huge_body_is_a_413(server: PonderServer) -> None:
    body = json.dumps({"model": POLICY, "messages": _ask("x" * 2_000_000)}).encode()
    response = httpx.post(
        f"{server.v1}/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    _assert_openai_error(response, 413)


def test_keys_are_checked(keyed_server: PonderServer) -> None:
    import openai

    with pytest.raises(openai.AuthenticationError) as info:
        _client(keyed_server.v1, key="wrong").chat.completions.create(
            model=SMOL, messages=_ask(), max_tokens=4
        )
    assert info.value.status_code == 401
    assert KEY not in info.value.message
    completion = _client(keyed_server.v1, key=KEY).chat.completions.create(
        model=SMOL, messages=_ask(), max_tokens=4
    )
    assert completion.choices[0].message.content is not None
    assert completion.usage is not None and completion.usage.completion_tokens > 0


def test_dead_upstream_is_a_quick_502_and_the_others_still_serve(
    keyed_server: PonderServer,
) -> None:
    import openai

    client = _client(keyed_server.v1, key=KEY)
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="dead", messages=_ask(), max_tokens=4)
    assert info.value.status_code == 502
    assert "dead" in info.value.message
    assert time.monotonic() - started < 10  # a refused connection, not a timeout
    completion = client.chat.completions.create(model=SMOL, messages=_ask(), max_tokens=4)
    assert completion.model == SMOL and completion.usage is not None


@pytest.mark.parametrize("model", [SMOL, POLICY])
def test_client_gone_mid_stream_is_a_499_and_the_server_goes_on(
    server: PonderServer, model: str
) -> None:
    requests = "ponder_requests_total"
    closed = {"model": model, "status": "499", "stream": "true"}
    before = _sample(_metric_samples(server.root), requests, **closed)
    body = {
        "model": model,
        "messages": _ask("Write a long story about a cat and a dog."),
        "stream": True,
        "max_tokens": 200,
    }
    with (
        httpx.Client(timeout=60) as http,
        http.stream("POST", f"{server.v1}/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        first = next(response.iter_bytes())
        assert first.startswith(b"data:")
    # leaving the block closed the connection with the stream unfinished
    deadline = time.monotonic() + 30
    while _sample(_metric_samples(server.root), requests, **closed) == before:
        assert time.monotonic() < deadline, "no status-499 request counted after the close"
        time.sleep(0.2)
    assert _sample(_metric_samples(server.root), requests, **closed) == before + 1
    completion = _client(server.v1).chat.completions.create(
        model=SMOL, messages=_ask(), max_tokens=4
    )
    assert completion.usage is not None and completion.usage.completion_tokens > 0


def test_public_host_without_keys_is_refused(
    serve_deps: None, free_port_factory: Callable[[], int]
) -> None:
    # no upstream is contacted (--no-check): the refusal must come from the missing keys
    args = ["--upstream", f"{SMOL}=http://127.0.0.1:9/v1", "--host", "0.0.0.0", "--no-check"]
    result = subprocess.run(
        _ponder_serve(args, free_port_factory()),
        env=_serve_env(None),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "loopback" in result.stdout + result.stderr


# -- 6: metrics ------------------------------------------------------------------------------


def test_metrics_count_requests_tokens_and_decisions(server: PonderServer) -> None:
    client = _client(server.v1)
    before = _metric_samples(server.root)
    # low effort: the plan's first step alone, so the decision it counts is known
    plan = client.chat.completions.create(model=POLICY, messages=_ask(), reasoning_effort="low")
    passed = client.chat.completions.create(model=SMOL, messages=_ask(), max_tokens=8)
    after = _metric_samples(server.root)

    def grew(name: str, **labels: str) -> float:
        return _sample(after, name, **labels) - _sample(before, name, **labels)

    assert plan.usage is not None and passed.usage is not None
    (step,) = plan.model_extra["ponder"]["steps"]
    assert grew("ponder_requests_total", model=POLICY, status="200", stream="false") == 1
    assert grew("ponder_requests_total", model=SMOL, status="200", stream="false") == 1
    assert grew("ponder_decisions_total", policy="pe", config=step["config"]) == 1
    assert grew("ponder_tokens_total", model=POLICY, kind="prompt") == plan.usage.prompt_tokens
    assert grew("ponder_tokens_total", model=SMOL, kind="prompt") == passed.usage.prompt_tokens
    assert grew("ponder_tokens_total", model=SMOL, kind="answer") == (
        passed.usage.completion_tokens
    )
    kinds = ("reasoning", "answer", "probe")
    billed = sum(grew("ponder_tokens_total", model=POLICY, kind=k) for k in kinds)
    assert billed == plan.usage.completion_tokens
    for name in ("ponder_requests_total", "ponder_tokens_total", "ponder_decisions_total"):
        assert sum(v for (n, _), v in after.items() if n == name) > 0


# -- exploration and recalibration on a real engine ------------------------------------------

EXPLORED = [
    (f"What is {a} plus {b}?", a + b) for a, b in zip(range(2, 24, 2), range(3, 14), strict=True)
]


@pytest.fixture(scope="module")
def exploring_server(
    serve_deps: None,
    llama_server: str,
    policy_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
    free_port_factory: Callable[[], int],
    process_stopper: Callable[[subprocess.Popen[bytes]], None],
) -> Iterator[tuple[PonderServer, Path]]:
    """A server that logs to a store and explores every ``ponder/`` request."""
    folder = tmp_path_factory.mktemp("ponder_serve_explore")
    store = folder / "serve.sqlite"
    args = [
        "--upstream", f"{SMOL}={llama_server},engine=llamacpp", "--policy", f"pe={policy_file}",
        "--store", str(store), "--explore", "1",
    ]  # fmt: skip
    for running in _start(
        args, keys=None, log_dir=folder, free_port=free_port_factory, stop=process_stopper
    ):
        yield running, store


def _explored_count(store: Path) -> int:
    import sqlite3

    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as con:
        try:
            return int(con.execute("SELECT COUNT(*) FROM explorations").fetchone()[0])
        except sqlite3.OperationalError:  # the server has not created the table yet
            return 0


def test_explored_traffic_recalibrates_the_policy(
    exploring_server: tuple[PonderServer, Path], policy_file: Path, tmp_path: Path
) -> None:
    """Real traffic through the real engine: every request explored, gold posted, then
    `ponder recalibrate` replays the policy in service on the explored rows and refits it.
    llama.cpp decodes greedily, so the replay should score about what the server answered."""
    server, store = exploring_server
    client = _client(server.v1)
    billed = 0
    for question, gold in EXPLORED:
        raw = client.chat.completions.with_raw_response.create(
            model=POLICY, messages=_ask(question)
        )
        assert raw.headers["x-ponder-explored"] == "true"
        completion = raw.parse()
        assert completion.usage is not None
        billed += completion.usage.completion_tokens
        feedback = httpx.post(
            f"{server.v1}/ponder/feedback",
            json={"request_id": completion.id, "gold": str(gold)},
            timeout=30,
        )
        assert feedback.status_code == 200, feedback.text
    deadline = time.monotonic() + 600
    while _explored_count(store) < len(EXPLORED):
        assert time.monotonic() < deadline, "explorations did not finish within 10 minutes"
        time.sleep(1)
    out = tmp_path / "pe-2.json"
    result = subprocess.run(
        [sys.executable, "-m", "ponder", "recalibrate", str(policy_file), "--store", str(store),
         "--name", "pe", "-o", str(out), "--json", "--folds", "3"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["requests"] == len(EXPLORED) and report["thin"]
    served, replayed = report["served"], report["current"]
    # what the server billed, read back from its request log
    assert served["cost"] == pytest.approx(billed / len(EXPLORED))
    for figures in (served, replayed, report["refit"]):
        low, high = figures["accuracy_ci"]
        assert 0 <= low <= figures["accuracy"] <= high <= 1
    print(f"served {served}, replayed {replayed}, refit {report['refit']}")
    assert json.loads(out.read_text())["policy"] == "probe_escalate"
