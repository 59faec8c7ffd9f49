"""`ponder run` end to end on the real engine (SmolLM2-135M, plumbing only): a tiny exit plan
on two generated problems; every recorded figure agrees with the plan's rules, and a second
run resumes with nothing to do."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from ponder.decision import Config, Decision, DecisionBatch, ExitRule, Step
from ponder.policies.base import Policy
from ponder.policies.serialization import register, save_policy

pytestmark = pytest.mark.live

MODEL = "smollm2-135m"
RUNGS = (8, 16, 32)
RESERVE = 6


@register
class LiveExitPlan(Policy):
    """One plan for every problem: a stand-in for a fitted sequential policy."""

    name = "test_live_exit_plan"

    def __init__(self, plan: Mapping[str, Any] | None = None) -> None:
        self.plan = dict(plan or {})

    def decide_batch(self, problems: pd.DataFrame) -> DecisionBatch:
        return DecisionBatch.same(Decision.from_dict(self.plan), len(problems))

    def get_params(self) -> dict[str, Any]:
        return {"plan": self.plan}

    def get_state(self) -> dict[str, Any]:
        return {"train_accuracy": 0.5, "train_cost": 30.0}


def cli(*args: str) -> Any:
    from ponder.cli import _register, app

    if not any(c.name == "run" for c in app.registered_commands):
        _register()
    return CliRunner().invoke(app, list(args))


def test_an_exit_plan_runs_live_and_resumes(smol_path: Path, tmp_path: Path) -> None:
    plan = Decision(
        (
            Step(
                Config(MODEL, "think-greedy", RUNGS[-1]),
                exit=ExitRule(RUNGS, window=2),
                escalate="unsure",
            ),
            Step(Config(MODEL, "no-think-greedy")),
        )
    )
    policy = LiveExitPlan(plan.to_dict())
    policy.fingerprint_, policy.n_problems_fitted_ = "live-test", 0
    path = save_policy(policy, tmp_path / "policy.json")
    store = tmp_path / "live.sqlite"
    args = [
        "run", str(path), "--generated", "1", "--per-level", "2", "--seed", "7",
        "--dataset", "arith-live", "--store", str(store), "--reserve", str(RESERVE),
        "--threads", "1",
    ]  # fmt: skip
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["done"], out["errors"], out["skipped"]) == (2, 0, 0), out["error_messages"]
    assert out["predicted"] == {"accuracy": 0.5, "cost": 30.0}
    assert out["measured"]["problems"] == 2

    conn = sqlite3.connect(store)
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("SELECT * FROM outcomes")]
    conn.close()
    assert len(rows) == 2
    worst = RUNGS[-1] + len(RUNGS) * RESERVE + RESERVE
    for row in rows:
        assert (row["mode"], row["budget"], row["dataset"]) == ("policy", None, "arith-live")
        assert row["prompt_tokens"] > 10
        assert 0 < row["output_tokens"] <= worst
        assert row["reasoning_tokens"] + row["answer_tokens"] == row["output_tokens"]
        steps = json.loads(row["extra_json"])["steps"]
        first = steps[0]
        rungs, probes, stopped = first["rungs"][0], first["probe_answers"][0], first["stopped"][0]
        assert rungs == list(RUNGS[: len(rungs)]) and len(probes) == len(rungs)
        if stopped == "rule":  # two probes in a row gave one answer
            assert len(rungs) >= 2 and probes[-1] is not None and probes[-1] == probes[-2]
        elif stopped == "cap":
            assert rungs == list(RUNGS)
        else:
            assert stopped == "natural" and row["reasoning_tokens"] <= rungs[-1]
        if stopped != "natural":  # a forced chain is exactly as long as its last rung
            assert row["reasoning_tokens"] == rungs[-1]
        assert first["generated_tokens"] - row["reasoning_tokens"] <= len(rungs) * RESERVE
        escalated = stopped == "cap" or first["answer"] is None
        assert first["escalated"] == escalated and len(steps) == 1 + escalated
        assert sum(s["generated_tokens"] for s in steps) == row["output_tokens"]

    again = cli(*args, "--json")
    assert again.exit_code == 0, again.output
    assert (json.loads(again.stdout)["done"], json.loads(again.stdout)["skipped"]) == (0, 2)
