"""Claim 1 (non-reasoning models plateau, reasoning models keep gaining): verdicts flip with the
data, refusals name what is missing, and the recorded sweeps give well-formed findings."""

from __future__ import annotations

from pathlib import Path

import pytest
from claims_helpers import FAST, claim_data, recorded_data

from ponder.claims import VERDICTS, ClaimData, Finding, ModelFacts
from ponder.claims.non_reasoning_plateau import NonReasoningPlateau

CLAIM = NonReasoningPlateau()
N_PROBLEMS = 40
CAPS = (1024.0, 2048.0, 4096.0, 8192.0)
FACTS = {"r": ModelFacts("r", reasoning=True), "n": ModelFacts("n", reasoning=False)}


def _ladder(
    model: str,
    solved: dict[float, int],
    *,
    mode: str = "think",
    kind: str = "hard_cap",
    tokens: float = 500.0,
    truncated: float = 0.0,
    n_problems: int = N_PROBLEMS,
) -> list[dict[str, object]]:
    """Three samples per problem; at budget b, sample s of problem p is correct when
    (p + 7 s) mod n_problems < solved[b], so accuracy is solved[b] / n_problems."""
    return [
        {
            "model": model,
            "mode": mode,
            "problem_id": f"p{p:02d}",
            "budget": budget,
            "budget_kind": kind,
            "sample_idx": s,
            "correct": float((p + 7 * s) % n_problems < count),
            "output_tokens": tokens,
            "truncated": truncated,
        }
        for budget, count in solved.items()
        for p in range(n_problems)
        for s in range(3)
    ]


def _rising() -> dict[float, int]:
    return dict(zip(CAPS, (8, 16, 24, 32), strict=True))


def _flat(count: int = 15) -> dict[float, int]:
    return dict.fromkeys(CAPS, count)


def _only(findings: list[Finding], scope_part: str) -> Finding:
    picked = [f for f in findings if scope_part in f.scope]
    assert len(picked) == 1, [f.scope for f in findings]
    return picked[0]


def test_gap_supported_when_reasoning_gains_and_non_reasoning_is_flat() -> None:
    data = claim_data(
        _ladder("r", _rising()) + _ladder("n", _flat(), mode="no-think"), models=FACTS
    )
    gap = _only(CLAIM.check(data), "reasoning vs non-reasoning")
    assert gap.verdict == "supported"
    # Window 4096 -> 8192 (upper half of 1024..8192): reasoning +20 points per doubling.
    assert gap.extras["lo_budget"] == 4096 and gap.extras["hi_budget"] == 8192
    assert gap.effect is not None and gap.effect.value == pytest.approx(20.0)
    assert gap.extras["non_reasoning_gain_upper"] == pytest.approx(0.0)
    assert gap.n_problems == N_PROBLEMS


def test_gap_contradicted_when_non_reasoning_gains_as_much() -> None:
    data = claim_data(
        _ladder("r", _rising()) + _ladder("n", _rising(), mode="no-think"), models=FACTS
    )
    gap = _only(CLAIM.check(data), "reasoning vs non-reasoning")
    assert gap.verdict == "contradicted"
    assert gap.effect is not None and gap.effect.value == pytest.approx(0.0)


def test_single_cap_non_reasoning_model_is_extended_exactly_when_it_never_hit_the_cap() -> None:
    rows = _ladder("r", _rising()) + _ladder("n", {1024.0: 15}, mode="no-think")
    gap = _only(CLAIM.check(claim_data(rows, models=FACTS)), "reasoning vs non-reasoning")
    assert gap.verdict == "supported"
    assert "extended from cap 1024" in gap.reason
    assert gap.extras["non_reasoning_gain_upper"] == pytest.approx(0.0)
    assert gap.extras["non_reasoning_gain_lower"] == pytest.approx(0.0)


def test_cut_off_non_reasoning_responses_are_bounds_that_widen_the_interval() -> None:
    """Every response cut at its one cap: its gain beyond it is unknown (0 to 1 per sample)."""
    cut = _ladder("n", {1024.0: 0}, mode="no-think", tokens=1024.0, truncated=1.0)
    gap = _only(
        CLAIM.check(claim_data(_ladder("r", _rising()) + cut, models=FACTS)),
        "reasoning vs non-reasoning",
    )
    # Conservative estimate: the non-reasoning model may go from 0 to 100% (+100 points).
    assert gap.extras["non_reasoning_gain_upper"] == pytest.approx(100.0)
    assert gap.extras["non_reasoning_gain_lower"] == pytest.approx(-0.0)
    assert gap.effect is not None and gap.effect.value == pytest.approx(20.0 - 100.0)
    # Neither bound can be ruled out: the interval reaches from one to the other.
    assert gap.effect.low < 0 < gap.effect.high and gap.verdict == "inconclusive"


def test_plateau_of_a_forced_ladder_without_reasoning_model() -> None:
    budgets = (16.0, 32.0, 64.0, 128.0, 256.0, 512.0)
    flat = _ladder("n", dict.fromkeys(budgets, 12), mode="think-greedy", kind="forced")
    climb = dict(zip(budgets, (4, 8, 12, 18, 26, 34), strict=True))
    rising = _ladder("n", climb, mode="think-greedy", kind="forced")
    for rows, verdict in ((flat, "supported"), (rising, "contradicted")):
        findings = CLAIM.check(claim_data(rows, models=FACTS))
        assert _only(findings, "reasoning vs non-reasoning").verdict == "insufficient"
        plateau = _only(findings, "plateau")
        assert plateau.verdict == verdict
        assert plateau.extras["lo_budget"] == 128 and plateau.extras["hi_budget"] == 512
        assert "only the plateau half" in plateau.reason
    # Rising: 128 -> 512 is two doublings for +16 problems of 40 = +20 points per doubling.
    assert plateau.extras["gain_per_doubling"] == pytest.approx(20.0)


def test_plateau_compares_the_top_rung_with_the_direct_answer() -> None:
    ladder = _ladder("n", {128.0: 10, 512.0: 20}, mode="think-greedy", kind="forced")
    direct = [
        {"model": "n", "mode": "no-think-greedy", "problem_id": f"p{p:02d}", "correct": p < 4}
        for p in range(N_PROBLEMS)
    ]
    plateau = _only(CLAIM.check(claim_data(ladder + direct, models=FACTS)), "plateau")
    assert plateau.extras["top_budget_minus_direct_answer"] == pytest.approx(50.0 - 10.0)


def test_refusals_name_what_is_missing() -> None:
    no_budgets = [
        {"model": "n", "problem_id": f"p{p}", "correct": p % 2, "budget_kind": "none"}
        for p in range(N_PROBLEMS)
    ]
    (refused,) = CLAIM.check(claim_data(no_budgets, models=FACTS))
    assert refused.verdict == "insufficient" and "no budgets" in refused.reason
    assert "not recorded" not in refused.reason  # lengths are there (default 100 tokens)

    few = _ladder("r", _rising(), n_problems=10) + _ladder("n", _flat(3), n_problems=10)
    gap = _only(CLAIM.check(claim_data(few, models=FACTS)), "reasoning vs non-reasoning")
    assert gap.verdict == "insufficient" and "10 problems" in gap.reason

    unknown = claim_data(_ladder("r", _rising()) + _ladder("x", _flat()), models=FACTS)
    findings = CLAIM.check(unknown)
    assert [f.verdict for f in findings] == ["insufficient"]
    assert "unknown kind" in findings[0].reason


@pytest.fixture(scope="module")
def recorded(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ClaimData]:
    store = tmp_path_factory.mktemp("claim1") / "store.sqlite"
    return recorded_data(shared_data, store, ["math500", "arith", "mmlu_pro_math"])


def test_recorded_findings_are_well_formed(recorded: dict[str, ClaimData]) -> None:
    for name in ("math500", "arith"):
        data = recorded[name]
        findings = CLAIM.check(data)
        assert findings
        for finding in findings:
            assert finding.claim == CLAIM.id and finding.dataset == name
            assert finding.verdict in VERDICTS and finding.reason
            if finding.verdict != "insufficient":
                assert finding.effect is not None and finding.n_problems >= FAST.min_problems
                assert finding.effect.low <= finding.effect.value <= finding.effect.high
                assert finding.table is not None and len(finding.table)
        measured = [f for f in findings if f.verdict != "insufficient"]
        png = CLAIM.plot(measured[0])
        assert png is not None and png.startswith(b"\x89PNG")
    # MATH-500 has both kinds of model on hard caps; the non-reasoning one never hit its cap.
    gap = _only(CLAIM.check(recorded["math500"]), "reasoning vs non-reasoning")
    assert gap.verdict != "insufficient"
    assert gap.extras["non_reasoning_gain_upper"] == pytest.approx(0.0)
    # ponder's sweep has only non-reasoning coder models: the gap is refused, plateaus tested.
    arith = CLAIM.check(recorded["arith"])
    assert _only(arith, "reasoning vs non-reasoning").verdict == "insufficient"
    assert len([f for f in arith if "plateau" in f.scope and f.verdict != "insufficient"]) >= 2
    # MMLU-Pro: no budgets and no lengths; refused with the reason.
    (mmlu,) = CLAIM.check(recorded["mmlu_pro_math"])
    assert mmlu.verdict == "insufficient" and "no budgets" in mmlu.reason
