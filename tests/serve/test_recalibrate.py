"""Exploration, feedback and recalibration end to end on the fake engine.

Served requests of `ponder/pe` are explored (every configuration of the plan run in full in
the background), the caller posts gold answers, and `recalibrate` replays the policy in
service on those rows and refits it. The fake engine is greedy and deterministic here, so the
replay on explored rows must give the very answers the server gave: replay and live agree.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serve_helpers import probe_escalate_policy, upstream_reply

from ponder.backends.base import Chain, Message, Sampling
from ponder.backends.fake import FakeBackend, FakeOptions, true_answer
from ponder.errors import InputError
from ponder.policies.serialization import save_policy
from ponder.serve.app import ServeConfig, create_app
from ponder.serve.dispatch import Served
from ponder.serve.recalibrate import recalibrate
from ponder.serve.requestlog import read_requests
from ponder.serve.upstreams import Upstream, UpstreamSpec
from ponder.store import Store

BILLED: dict[str, int] = {}
QUESTIONS = [f"Add {a} and {b}." for a, b in zip(range(3, 63, 3), range(50, 10, -2), strict=True)]


class RecordingBackend(FakeBackend):
    """The fake engine, keeping the conversation of every chain it opens."""

    def __init__(self, options: FakeOptions) -> None:
        super().__init__(options)
        self.asked: list[tuple[Message, ...]] = []

    async def open_chain(
        self, messages: tuple[Message, ...], sampling: Sampling, *, entropy: bool = False
    ) -> Chain:
        self.asked.append(messages)
        return await super().open_chain(messages, sampling, entropy=entropy)


def _served(store: Path, explore: float, backend: FakeBackend | None = None) -> TestClient:
    import httpx

    spec = UpstreamSpec("small", {"base_url": "http://up/v1", "model": "small", "max_retries": 0})
    http = httpx.AsyncClient(base_url=spec.base_url, transport=httpx.MockTransport(upstream_reply))
    engine = backend or FakeBackend(FakeOptions(model="small"))
    upstream = Upstream(spec, engine, http)
    config = ServeConfig(
        upstreams=[spec],
        policies=[Served("pe", probe_escalate_policy())],
        store=store,
        explore=explore,
        explore_seed=0,
    )
    return TestClient(create_app(config, upstreams={"small": upstream}))


def _explorations(store: Path) -> int:
    with Store(store, readonly=True) as st:
        return int(st.query("SELECT COUNT(*) FROM explorations")[0][0])


@pytest.fixture(scope="module")
def explored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A store with every request explored and its gold posted; request id -> served answer
    (and in BILLED, request id -> the reply's completion tokens)."""
    store = tmp_path_factory.mktemp("serve") / "serve.sqlite"
    served: dict[str, str] = {}
    with _served(store, explore=1.0) as client:
        for question in QUESTIONS:
            body = {"model": "ponder/pe", "messages": [{"role": "user", "content": question}]}
            response = client.post("/v1/chat/completions", json=body)
            assert response.headers["x-ponder-explored"] == "true"
            request_id = response.headers["x-request-id"]
            served[request_id] = response.json()["ponder"]["answer"]
            BILLED[request_id] = response.json()["usage"]["completion_tokens"]
            gold = str(true_answer(question))
            ok = client.post("/v1/ponder/feedback", json={"request_id": request_id, "gold": gold})
            assert ok.status_code == 200
        deadline = time.monotonic() + 60
        while _explorations(store) < len(QUESTIONS) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert _explorations(store) == len(QUESTIONS)
    return store, served


def test_a_conversation_is_explored_as_it_was_asked(tmp_path: Path) -> None:
    """A system prompt and earlier turns go with the question into every explored chain, as
    they went into the served plan; the log keeps them beside the question."""
    store = tmp_path / "serve.sqlite"
    engine = RecordingBackend(FakeOptions(model="small"))
    turns = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Add 1 and 2."},
        {"role": "assistant", "content": "3"},
        {"role": "user", "content": "Add 40 and 2."},
    ]
    with _served(store, explore=1.0, backend=engine) as client:
        response = client.post(
            "/v1/chat/completions", json={"model": "ponder/pe", "messages": turns}
        )
        assert response.status_code == 200 and response.headers["x-ponder-explored"] == "true"
        served_chains = sum(step["samples"] for step in response.json()["ponder"]["steps"])
        deadline = time.monotonic() + 60
        while _explorations(store) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
    assert _explorations(store) == 1
    # the served plan's chains, then exploration's: the direct answer and the whole ladder
    assert served_chains >= 1 and len(engine.asked) == served_chains + 2
    for asked in engine.asked:
        assert [m.role for m in asked] == ["system", "user", "assistant", "user"]
        assert asked[0].content == "Be brief." and asked[2].content == "3"
        assert asked[3].content.startswith("Add 40 and 2.")
    with Store(store, readonly=True) as st:
        payload = json.loads(st.query("SELECT payload FROM explorations")[0][0])
    assert payload["text"] == "Add 40 and 2."
    assert payload["context"] == turns[:3]


def test_replay_on_explored_rows_gives_the_answers_served(
    explored: tuple[Path, dict[str, str]],
) -> None:
    store, served = explored
    log = read_requests(store, model="ponder/pe")
    log = log[log["request_id"].isin(list(served))]
    # the logged kinds add up to what each reply billed (escalated plans included)
    kinds = log["reasoning_tokens"] + log["answer_tokens"] + log["probe_tokens"]
    assert log["escalated"].astype(bool).any()
    assert kinds.tolist() == [BILLED[i] for i in log["request_id"]]
    result = recalibrate(probe_escalate_policy(), "pe", store, folds=4, n_boot=200)
    assert result.requests == len(QUESTIONS)
    # greedy fake: the explored chains are the served ones, so replay scores what was served
    assert result.current.accuracy == pytest.approx(log["correct"].astype(float).mean())
    # ... and the served figures, read from the request log, say the same
    assert result.served.accuracy == pytest.approx(result.current.accuracy)
    assert result.replay_minus_served_ci == (0.0, 0.0)
    assert result.served.cost == pytest.approx(result.current.cost) and result.served.cost > 0
    assert result.current.accuracy_ci[0] <= result.current.accuracy <= result.current.accuracy_ci[1]
    assert result.refit_policy.steps_  # a plan fitted on the explored rows
    assert result.thin  # 20 requests: said to be thin


def test_recalibrate_command_writes_the_refit(
    explored: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    store, _ = explored
    policy = save_policy(probe_escalate_policy(), tmp_path / "pe.json")
    out = tmp_path / "pe-2.json"
    result = subprocess.run(
        [sys.executable, "-m", "ponder", "recalibrate", str(policy), "--store", str(store),
         "-o", str(out), "--json", "--folds", "4"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["requests"] == len(QUESTIONS) and report["written"] == str(out)
    assert report["served"]["accuracy"] == pytest.approx(report["current"]["accuracy"])
    assert json.loads(out.read_text())["policy"] == "probe_escalate"


def test_too_few_explored_requests_is_a_clear_error(tmp_path: Path) -> None:
    store = tmp_path / "serve.sqlite"
    with _served(store, explore=0.0) as client:
        client.post(
            "/v1/chat/completions",
            json={"model": "ponder/pe", "messages": [{"role": "user", "content": "Add 1 and 2."}]},
        )
    with pytest.raises(InputError, match="0 explored request"):
        recalibrate(probe_escalate_policy(), "pe", store)
