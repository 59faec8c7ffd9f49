"""Claim 4 (think / no-think routing): verdict flips on synthetic data, refusals, the
Thinkless-style export (content, path checks, atomic write), and ponder's recorded sweep."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
from claims_helpers import claim_data, recorded_data

from ponder.claims import ClaimData
from ponder.claims.think_routing import MIN_EFFECT, ThinkRouting, routing_dataset
from ponder.errors import InputError

N_PROBLEMS = 60
CLAIM = ThinkRouting()


def _routing_data(no_think_solves: np.ndarray, think_solves: np.ndarray | None = None) -> ClaimData:
    """One model answering directly (10 tokens) or thinking (100 tokens) on every problem;
    levels alternate 1, 2 and every problem has a text."""
    if think_solves is None:
        think_solves = np.ones(N_PROBLEMS, dtype=bool)
    rows = []
    for p in range(N_PROBLEMS):
        for mode, tokens, correct in (
            ("no-think", 10.0, bool(no_think_solves[p])),
            ("think", 100.0, bool(think_solves[p])),
        ):
            rows.append(
                {
                    "model": "m",
                    "problem_id": f"p{p:03d}",
                    "mode": mode,
                    "output_tokens": tokens,
                    "correct": float(correct),
                    "level": float(1 + p % 2),
                    "extracted_answer": f"{p}" if correct else "wrong",
                }
            )
    data = claim_data(rows)
    texts = [f"Problem {p}: add {p} and {p % 2}." for p in range(N_PROBLEMS)]
    return dataclasses.replace(data, problems=data.problems.assign(text=texts))


def test_supported_when_the_router_can_tell_easy_problems_apart() -> None:
    easy = np.arange(N_PROBLEMS) % 2 == 0
    (finding,) = CLAIM.check(_routing_data(easy))
    assert finding.scope == "m (think vs no-think)"
    assert finding.verdict == "supported"
    assert finding.effect is not None
    assert finding.effect.value == pytest.approx(0.45, abs=0.02)
    assert finding.effect.low > MIN_EFFECT
    e = finding.extras
    assert e["share_no_think"] == pytest.approx(0.5)
    assert e["decision_agreement"] == pytest.approx(1.0)
    assert e["accuracy_router"] == e["accuracy_always_think"] == pytest.approx(1.0)
    assert e["tokens_router"] == pytest.approx(55.0)
    assert "no RL" in finding.protocol and "no correctness label" in finding.protocol
    png = CLAIM.plot(finding)
    assert png is not None and png.startswith(b"\x89PNG")


def test_contradicted_when_the_problem_does_not_say_which_mode_it_needs() -> None:
    lucky = np.random.default_rng(3).random(N_PROBLEMS) < 0.5
    (finding,) = CLAIM.check(_routing_data(lucky))
    assert finding.verdict == "contradicted"
    assert finding.effect is not None and finding.effect.high < MIN_EFFECT
    assert finding.extras["folds_router_chosen"] == 0
    assert finding.extras["share_no_think"] == 0.0  # always-think kept in every fold


def test_refuses_without_a_model_that_recorded_both_modes() -> None:
    data = _routing_data(np.ones(N_PROBLEMS, dtype=bool))
    only_think = data.outcomes[data.outcomes["mode"] == "think"]
    (refusal,) = CLAIM.check(claim_data(only_think))
    assert refusal.verdict == "insufficient"
    assert "both think and no-think" in refusal.reason and "m: think" in refusal.reason


def test_export_labels_each_problem_with_its_cheapest_solving_mode(tmp_path: Path) -> None:
    easy = np.arange(N_PROBLEMS) % 2 == 0
    think_solves = np.arange(N_PROBLEMS) % 3 != 0  # every third problem: think fails too
    data = _routing_data(easy, think_solves)
    target = tmp_path / "routing.jsonl"
    result = routing_dataset(data, target, model="m")
    records = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    unsolved = int((~easy & ~think_solves).sum())
    assert result.written == len(records) == N_PROBLEMS - unsolved
    assert result.unsolved == unsolved
    assert result.no_think == int(easy.sum()) and result.think == len(records) - result.no_think
    assert result.think_config == "m|think|none"
    by_id = {r["problem_id"]: r for r in records}
    short = by_id["p000"]  # easy: the direct answer solves it
    assert short["mode"] == "no-think" and short["control_token"] == "<short>"
    assert short["messages"] == [
        {"role": "user", "content": "Problem 0: add 0 and 0."},
        {"role": "assistant", "content": "<short>\n0"},
    ]
    assert short["dataset"] == "synthetic" and short["model"] == "m"
    think = by_id["p001"]  # hard, and thinking solves it
    assert think["mode"] == "think" and think["messages"][1]["content"] == "<think>\n1"
    assert think["response"] == "answer"  # no chain text recorded for this sample
    assert "p003" not in by_id  # neither mode solves it: left out, not guessed


def test_export_checks_its_path(tmp_path: Path) -> None:
    data = _routing_data(np.ones(N_PROBLEMS, dtype=bool))
    with pytest.raises(InputError, match=r"\*\.jsonl"):
        routing_dataset(data, tmp_path / "routing.json", model="m")
    with pytest.raises(InputError, match="does not exist"):
        routing_dataset(data, tmp_path / "missing" / "routing.jsonl", model="m")
    folder = tmp_path / "a.jsonl"
    folder.mkdir()
    with pytest.raises(InputError, match="directory"):
        routing_dataset(data, folder, model="m")
    with pytest.raises(InputError, match="no samples of model 'x'"):
        routing_dataset(data, tmp_path / "routing.jsonl", model="x")


def test_export_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _routing_data(np.ones(N_PROBLEMS, dtype=bool))
    target = tmp_path / "routing.jsonl"
    target.write_text("previous export\n", encoding="utf-8")

    def fail(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        routing_dataset(data, target, model="m")
    # The old file is intact and no temporary file is left behind.
    assert target.read_text(encoding="utf-8") == "previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["routing.jsonl"]


@pytest.fixture(scope="module")
def arith(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> ClaimData:
    store = tmp_path_factory.mktemp("routing") / "s.sqlite"
    return recorded_data(shared_data, store, ["arith"])["arith"]


def test_recorded_arith_findings_are_well_formed(arith: ClaimData, tmp_path: Path) -> None:
    model = "qwen2.5-coder-1.5b"
    # One model keeps the test short; the full check runs every model with both modes.
    one = dataclasses.replace(arith, outcomes=arith.outcomes[arith.outcomes["model"] == model])
    findings = CLAIM.check(one)
    greedy = next(f for f in findings if f.scope == f"{model} (think-greedy vs no-think-greedy)")
    assert greedy.verdict in ("supported", "contradicted", "inconclusive")
    assert greedy.n_problems == 160
    assert greedy.effect is not None and greedy.effect.low <= greedy.effect.value
    e = greedy.extras
    assert 0.0 < e["share_no_think"] < 1.0
    assert 0.0 <= e["decision_agreement"] <= 1.0
    assert e["accuracy_change_ci_low"] <= e["accuracy_change"] <= e["accuracy_change_ci_high"]
    # Routing the 1.5B model's easy problems to its direct answer saves about 11% of the
    # tokens of thinking to 512, at the same accuracy (docs/policies-results.md).
    assert greedy.verdict == "supported"
    assert 0.05 < greedy.effect.value < 0.2
    assert greedy.table is not None and set(greedy.table["policy"]) >= {"router (held out)"}

    result = routing_dataset(arith, tmp_path / "arith.jsonl", model=model)
    assert result.written == result.no_think + result.think > 0
    assert result.written + result.unsolved + result.without_text == 160
    first = json.loads((tmp_path / "arith.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first["messages"][1]["content"].split("\n")[0] in ("<short>", "<think>")
    assert first["dataset"] == "arith" and first["model"] == model
