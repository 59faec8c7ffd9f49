"""Claim 0 (the best budget follows the prompt's difficulty more than the model's tier): verdicts
flip with the data, refusals name what is missing, and the recorded sweeps give well-formed
findings."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from claims_helpers import FAST, claim_data, recorded_data

from ponder.claims import VERDICTS, ClaimData, Finding
from ponder.claims.tier_or_difficulty import TierOrDifficulty, budget_grid

CLAIM = TierOrDifficulty()
RUNGS = (16.0, 32.0, 64.0, 128.0, 256.0)
N_PROBLEMS = 40  # 10 per level 1..4


def _ladders(
    needs: dict[str, dict[int, float]], n_problems: int = N_PROBLEMS
) -> list[dict[str, object]]:
    """Forced ladders, one greedy sample per rung: model m solves a level-L problem at every
    rung >= needs[m][L], and a rung spends its budget in tokens."""
    return [
        {
            "model": model,
            "mode": "think-greedy",
            "budget_kind": "forced",
            "problem_id": f"p{p:02d}",
            "level": float(1 + p % 4),
            "budget": rung,
            "correct": float(rung >= need[1 + p % 4]),
            "output_tokens": rung,
        }
        for model, need in needs.items()
        for p in range(n_problems)
        for rung in RUNGS
    ]


def _one(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, [f.scope for f in findings]
    return findings[0]


BY_LEVEL = {1: 16.0, 2: 32.0, 3: 64.0, 4: 128.0}


def test_supported_when_the_level_sets_the_budget_for_every_model() -> None:
    finding = _one(CLAIM.check(claim_data(_ladders({"small": BY_LEVEL, "large": BY_LEVEL}))))
    assert finding.verdict == "supported"
    assert finding.n_problems == N_PROBLEMS and finding.scope == "mode think-greedy"
    assert finding.extras["r2_difficulty"] == pytest.approx(1.0)
    assert finding.extras["r2_tier"] == pytest.approx(0.0)
    assert finding.effect is not None and finding.effect.value > 1.0  # adjusted tier R2 < 0
    # A table keyed by level alone already spends exactly what each problem needs.
    assert finding.extras["difficulty_only_extra_tokens"] == pytest.approx(0.0)
    assert finding.extras["tier_only_extra_tokens"] > 0.5
    assert finding.extras["heldout_tokens_tier_x_difficulty"] == pytest.approx(60.0)  # mean need


def test_contradicted_when_the_model_sets_the_budget_whatever_the_level() -> None:
    needs = {"small": dict.fromkeys(range(1, 5), 256.0), "large": dict.fromkeys(range(1, 5), 16.0)}
    finding = _one(CLAIM.check(claim_data(_ladders(needs))))
    assert finding.verdict == "contradicted"
    assert finding.extras["r2_tier"] == pytest.approx(1.0)
    assert finding.extras["r2_difficulty"] == pytest.approx(0.0)
    assert finding.effect is not None and finding.effect.high < 0
    assert finding.extras["tier_only_extra_tokens"] == pytest.approx(0.0)
    assert finding.extras["difficulty_only_extra_tokens"] > 0.5


def test_interaction_is_reported_when_models_disagree_on_what_is_hard() -> None:
    reversed_levels = {1: 128.0, 2: 64.0, 3: 32.0, 4: 16.0}
    finding = _one(CLAIM.check(claim_data(_ladders({"a": BY_LEVEL, "b": reversed_levels}))))
    # Neither axis alone explains anything; their combination explains everything.
    assert finding.extras["r2_tier"] == pytest.approx(0.0)
    assert finding.extras["r2_difficulty"] == pytest.approx(0.0)
    assert finding.extras["r2_interaction"] == pytest.approx(1.0)
    assert finding.verdict == "contradicted"  # difficulty is no better than tier


def test_hard_caps_are_derived_onto_a_common_grid() -> None:
    """Both models ran only at cap 4096; the finding uses derived caps 256..4096, where a
    level-L problem (answered in 2^(6+L) tokens) is solved from the first cap that fits it."""
    rows = [
        {
            "model": model,
            "problem_id": f"p{p:02d}",
            "level": float(1 + p % 4),
            "budget": 4096.0,
            "sample_idx": s,
            "correct": 1.0,
            "output_tokens": float(2 ** (6 + 1 + p % 4)) * scale,
        }
        for model, scale in (("a", 1.0), ("b", 1.0))
        for p in range(N_PROBLEMS)
        for s in range(3)
    ]
    finding = _one(CLAIM.check(claim_data(rows)))
    assert "256, 512, 1024, 2048, 4096" in finding.protocol
    assert finding.verdict == "supported"
    table = finding.table
    assert table is not None
    level_one = table[table["band"] == 1.0]["mean_log2_budget"]
    assert np.allclose(level_one, 8.0)  # 128 tokens -> solved from cap 256 on


def test_grid_keeps_the_models_that_reach_the_top_budget() -> None:
    frame = claim_data(
        [
            {"model": m, "problem_id": "p", "budget": b, "correct": 1.0}
            for m, caps in (("a", (1024.0, 8192.0)), ("b", (8192.0,)), ("c", (1024.0,)))
            for b in caps
        ]
    ).outcomes
    grid = budget_grid(frame, "think")
    assert not isinstance(grid, str)
    assert grid.models == ("a", "b") and grid.budgets[-1] == 8192.0
    assert grid.budgets[0] == 8192.0 / 16 and grid.left_out[0].startswith("c ")


def test_refuses_without_budgets() -> None:
    rows = [{"model": m, "problem_id": f"p{p}", "correct": 1.0} for m in "ab" for p in range(40)]
    finding = _one(CLAIM.check(claim_data(rows)))
    assert finding.verdict == "insufficient" and "no budgeted samples" in finding.reason


def test_refuses_with_too_few_problems_or_one_model() -> None:
    few = _one(CLAIM.check(claim_data(_ladders({"a": BY_LEVEL, "b": BY_LEVEL}, n_problems=12))))
    assert few.verdict == "insufficient" and "only 12 problems" in few.reason
    assert str(FAST.min_problems) in few.reason
    alone = _one(CLAIM.check(claim_data(_ladders({"a": BY_LEVEL}))))
    assert alone.verdict == "insufficient" and "only 1 model" in alone.reason


@pytest.fixture(scope="module")
def recorded(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ClaimData]:
    store = tmp_path_factory.mktemp("claim0") / "store.sqlite"
    return recorded_data(shared_data, store, ["arith", "math500"])


@pytest.mark.parametrize(("dataset", "n_problems"), [("arith", 160), ("math500", 100)])
def test_recorded_findings_are_well_formed(
    recorded: dict[str, ClaimData], dataset: str, n_problems: int
) -> None:
    findings = CLAIM.check(recorded[dataset])
    measured = [f for f in findings if f.verdict != "insufficient"]
    assert measured, [f.reason for f in findings]
    for finding in findings:
        assert finding.claim == CLAIM.id and finding.dataset == dataset
        assert finding.verdict in VERDICTS and finding.reason
    for finding in measured:
        assert finding.n_problems <= n_problems and finding.n_problems >= FAST.min_problems
        e = finding.effect
        assert e is not None and all(math.isfinite(v) for v in (e.value, e.low, e.high))
        r2 = finding.extras
        assert 0 <= r2["r2_tier"] <= r2["r2_tier_x_difficulty"] <= 1
        assert r2["r2_difficulty"] <= r2["r2_tier_x_difficulty"]
        assert finding.table is not None and set(finding.table["band"]) >= {1.0, 4.0}
    png = CLAIM.plot(measured[0])
    assert png is not None and png.startswith(b"\x89PNG")


def test_recorded_arith_levels_outweigh_the_two_model_sizes(
    recorded: dict[str, ClaimData],
) -> None:
    """Clear-cut on ponder's sweep: levels explain about 0.6 of the variance, model size 0.04."""
    greedy = [f for f in CLAIM.check(recorded["arith"]) if f.scope == "mode think-greedy"]
    assert len(greedy) == 1 and greedy[0].n_problems == 160
    assert greedy[0].verdict == "supported"
