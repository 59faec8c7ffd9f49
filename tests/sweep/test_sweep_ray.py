"""The same sweep as Ray actor calls on a local Ray instance gives the same rows."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from _sweep_toy import OPTIONS, write_spec

from ponder.errors import InputError
from ponder.store import Store
from ponder.sweep import build_plan, load_spec, run_plan, run_sweep

if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}:
    import ray  # CI installs the distributed extra: a missing Ray must fail, not skip
else:
    ray = pytest.importorskip("ray", reason="Ray is the optional distributed extra")

COMPARED = (
    "run_id, problem_id, mode, budget, sample_idx, reasoning_tokens, answer_tokens, "
    "output_tokens, correct, extracted_answer, chain_id, rung, natural, answer_prob, "
    "entropy_tail, stop_cost_tokens"
)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _rows(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    rows = sorted(conn.execute(f"SELECT {COMPARED} FROM outcomes").fetchall(), key=repr)
    conn.close()
    return rows


@pytest.mark.slow
def test_ray_rows_equal_local_rows_and_errors_stay_errors(local_ray: None, tmp_path: Path) -> None:
    models = [
        {"name": "x", "backend": "fake", "options": dict(OPTIONS)},
        {"name": "y", "backend": "fake", "options": {**OPTIONS, "fail_always": ["Add 10, 20"]}},
    ]
    path = write_spec(tmp_path, models=models, sampling=[{"temperature": 0.7, "samples": 2}])
    with Store(tmp_path / "local.sqlite") as store:
        local = run_sweep(load_spec(path), store, backoff_s=0)
    plan = build_plan(load_spec(path))
    with Store(tmp_path / "ray.sqlite") as store:
        remote = asyncio.run(run_plan(plan, store, backoff_s=0, ray_address="local"))
        errors = store.query("SELECT error FROM work_items WHERE status = 'error'")
    assert (remote.done, remote.errors) == (local.done, local.errors) == (20, 4)
    assert all("fake failure" in e for (e,) in errors)
    assert _rows(tmp_path / "ray.sqlite") == _rows(tmp_path / "local.sqlite")


def test_ray_checks_models_before_any_work(local_ray: None, tmp_path: Path) -> None:
    models = [{"name": "m", "backend": "fake", "options": {"unreachable": True}}]
    path = write_spec(tmp_path, models=models)
    with Store(tmp_path / "s.sqlite") as store:
        with pytest.raises(InputError, match="unreachable"):
            asyncio.run(run_plan(build_plan(load_spec(path)), store, ray_address="local"))
        assert store.counts()["outcomes"] == 0
