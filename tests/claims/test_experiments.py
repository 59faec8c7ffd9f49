"""The runner of live claims' experiments: checks before writing, one transaction per item,
resume, errors without rows, retries."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from claims_helpers import claim_data

from ponder.backends import BackendError
from ponder.backends.fake import FakeBackend, FakeOptions
from ponder.claims import ClaimData
from ponder.claims.experiments import (
    ExperimentSummary,
    experiment_run_id,
    is_experiment_run,
    open_model_backend,
    run_experiment,
)
from ponder.errors import InputError
from ponder.store import Store


@dataclass(frozen=True)
class ToyItem:
    key: str
    problem_id: str


@dataclass
class ToyExperiment:
    """One row per problem (correct = 1); `fail` keys fail for good, `flaky` keys fail
    (retryably) that many times first; `ran` records the items run."""

    fail: frozenset[str] = frozenset()
    flaky: dict[str, int] = field(default_factory=dict)
    needs_prefix: bool = False
    version: int = 1
    ran: list[str] = field(default_factory=list)
    claim_id: str = "toy-claim"

    @property
    def settings(self) -> Mapping[str, Any]:
        return {"version": self.version}

    def items(self, data: ClaimData, model: str) -> Sequence[ToyItem]:
        if model != "fake":
            raise InputError(f"no data for model {model!r}")
        ids = sorted(data.problems["problem_id"])
        return [ToyItem(f"item-{p}", p) for p in ids]

    def check_backend(self, backend: Any) -> None:
        if self.needs_prefix:
            raise InputError("backend cannot continue a prefix")

    async def run_item(self, backend: Any, item: ToyItem) -> list[dict[str, Any]]:
        self.ran.append(item.key)
        if item.key in self.fail:
            raise BackendError("engine crashed", retryable=False)
        if self.flaky.get(item.key, 0) > 0:
            self.flaky[item.key] -= 1
            raise BackendError("503", retryable=True)
        return [
            {
                "dataset": "synthetic",
                "problem_id": item.problem_id,
                "mode": "toy",
                "budget": None,
                "sample_idx": 0,
                "correct": 1.0,
                "n_runs": 1,
            }
        ]


@pytest.fixture
def data() -> ClaimData:
    return claim_data([{"model": "m", "problem_id": f"p{i}", "correct": 1} for i in range(6)])


def _run(
    experiment: ToyExperiment,
    store: Store,
    data: ClaimData,
    limit: int,
    backend: Any = None,
) -> ExperimentSummary:
    engine = backend or FakeBackend()
    return asyncio.run(run_experiment(experiment, engine, store, data, limit=limit, backoff_s=0))


def _rows(store: Store) -> list[tuple[Any, ...]]:
    return store.query("SELECT run_id, problem_id, model FROM outcomes ORDER BY problem_id")


def test_runs_limit_items_under_a_claims_run_id(store: Store, data: ClaimData) -> None:
    summary = _run(ToyExperiment(), store, data, limit=3)
    assert (summary.done, summary.skipped, summary.errors, summary.rows) == (3, 0, 0, 3)
    assert summary.complete
    run_id = experiment_run_id("toy-claim", "fake", {"version": 1})
    assert summary.run_id == run_id and run_id.startswith("claims/toy-claim/fake/")
    assert is_experiment_run(run_id, "toy-claim") and not is_experiment_run(run_id, "toy")
    assert _rows(store) == [(run_id, p, "fake") for p in ("p0", "p1", "p2")]
    (kind,) = store.query("SELECT budget_kind FROM runs WHERE run_id = ?", [run_id])[0]
    assert kind == "none"


def test_resume_runs_only_what_is_not_done(store: Store, data: ClaimData) -> None:
    _run(ToyExperiment(), store, data, limit=3)
    again = ToyExperiment()
    summary = _run(again, store, data, limit=5)
    assert (summary.done, summary.skipped) == (2, 3)
    assert again.ran == ["item-p3", "item-p4"]
    assert len(_rows(store)) == 5
    idle = ToyExperiment()
    assert _run(idle, store, data, limit=5).done == 0 and idle.ran == []


def test_other_settings_are_another_run(store: Store, data: ClaimData) -> None:
    first = _run(ToyExperiment(version=1), store, data, limit=2)
    second = _run(ToyExperiment(version=2), store, data, limit=2)
    assert first.run_id != second.run_id and second.done == 2
    assert len(_rows(store)) == 4


def test_failed_item_gets_no_rows_and_is_replaced(store: Store, data: ClaimData) -> None:
    summary = _run(ToyExperiment(fail=frozenset({"item-p1"})), store, data, limit=3)
    assert (summary.done, summary.errors) == (3, 1)
    assert summary.error_messages == ["p1: engine crashed"]
    assert [r[1] for r in _rows(store)] == ["p0", "p2", "p3"]
    states = store.sweep_items(summary.run_id)
    assert states["item-p1"].status == "error" and states["item-p1"].error == "engine crashed"
    retry = ToyExperiment()
    # the failed item is retried on the next run; it now succeeds
    assert _run(retry, store, data, limit=4).done == 1 and retry.ran == ["item-p1"]


def test_retryable_errors_are_retried(store: Store, data: ClaimData) -> None:
    flaky = ToyExperiment(flaky={"item-p0": 2})
    summary = _run(flaky, store, data, limit=1)
    assert (summary.done, summary.errors) == (1, 0)
    assert flaky.ran == ["item-p0"] * 3
    assert store.sweep_items(summary.run_id)["item-p0"].attempts == 3


def test_nothing_is_written_when_a_check_fails(store: Store, data: ClaimData) -> None:
    counts = store.counts()
    with pytest.raises(InputError, match="no data for model 'other'"):
        _run(ToyExperiment(), store, data, 3, FakeBackend(FakeOptions(model="other")))
    with pytest.raises(InputError, match="cannot continue a prefix"):
        _run(ToyExperiment(needs_prefix=True), store, data, 3)
    with pytest.raises(InputError, match="not usable"):
        _run(ToyExperiment(), store, data, 3, FakeBackend(FakeOptions(unreachable=True)))
    with pytest.raises(InputError, match="limit must be >= 1"):
        _run(ToyExperiment(), store, data, 0)
    assert store.counts() == counts
    assert store.query("SELECT COUNT(*) FROM sweeps") == [(0,)]


def test_a_model_that_is_not_pulled_fails_before_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PONDER_MODELS_DIR", str(tmp_path))
    with pytest.raises(InputError, match="ponder models pull no-such-model"):
        open_model_backend("no-such-model")
    backend = open_model_backend("fake-m", backend="fake", options={"model": "fake-m"})
    assert backend.model == "fake-m"
