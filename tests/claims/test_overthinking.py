"""Claim 5 (overthinking: accuracy falls past a sweet-spot budget): verdicts flip with the data,
the held-out drop does not inherit the winner's curse, refusals name what is missing, and the
recorded sweeps give well-formed findings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from claims_helpers import FAST, claim_data, recorded_data

from ponder.claims import VERDICTS, ClaimData, Finding
from ponder.claims.overthinking import Overthinking, held_out_drop

CLAIM = Overthinking()
BUDGETS = (16.0, 32.0, 64.0, 128.0, 256.0, 512.0)


def _ladder(
    solved: dict[float, int], *, n_problems: int = 40, kind: str = "forced", level: float = 1.0
) -> list[dict[str, object]]:
    """Three samples per problem; at budget b, sample s of problem p is correct when
    (p + 7 s) mod n_problems < solved[b], so accuracy is solved[b] / n_problems."""
    return [
        {
            "model": "m",
            "mode": "think",
            "problem_id": f"L{level:g}-{p:02d}",
            "level": level,
            "budget": budget,
            "budget_kind": kind,
            "sample_idx": s,
            "correct": float((p + 7 * s) % n_problems < count),
        }
        for budget, count in solved.items()
        for p in range(n_problems)
        for s in range(3)
    ]


def _overall(findings: list[Finding]) -> Finding:
    (whole,) = [f for f in findings if f.scope == "m / think"]
    return whole


PEAKED = dict(zip(BUDGETS, (8, 16, 30, 24, 16, 10), strict=True))
RISING = dict(zip(BUDGETS, (8, 16, 20, 24, 28, 32), strict=True))


def test_peaked_curve_supports_overthinking() -> None:
    finding = _overall(CLAIM.check(claim_data(_ladder(PEAKED))))
    assert finding.verdict == "supported"
    # Peak at 64 (30/40) vs 10/40 at 512: a 50-point drop, found on every held-out half.
    assert finding.effect is not None and finding.effect.value == pytest.approx(50.0, abs=5.0)
    assert finding.extras["in_sample_sweet_spot"] == 64
    assert finding.extras["peak_below_largest_share"] == pytest.approx(1.0)
    table = finding.table
    assert table is not None and list(table["budget"]) == list(BUDGETS)
    assert table.loc[table["budget"] == 64, "peak_share"].item() > 0.5
    assert "forced budgets" in finding.reason


def test_rising_curve_contradicts_overthinking() -> None:
    finding = _overall(CLAIM.check(claim_data(_ladder(RISING))))
    assert finding.verdict == "contradicted"
    assert finding.effect is not None and finding.effect.value == pytest.approx(0.0)


def test_held_out_drop_escapes_the_winners_curse() -> None:
    """A flat curve plus noise: the in-sample peak beats the largest budget by chance, the
    held-out drop does not."""
    rng = np.random.default_rng(3)
    rows = [
        {
            "model": "m",
            "mode": "think",
            "problem_id": f"p{p:02d}",
            "budget": budget,
            "budget_kind": "hard_cap",
            "sample_idx": s,
            "correct": float(rng.random() < 0.5),
        }
        for budget in BUDGETS
        for p in range(60)
        for s in range(3)
    ]
    finding = _overall(CLAIM.check(claim_data(rows)))
    assert finding.effect is not None
    assert finding.extras["in_sample_drop"] > 2.0
    assert finding.effect.value < finding.extras["in_sample_drop"] - 2.0
    assert finding.verdict != "supported"
    assert "hard caps" in finding.reason


def test_held_out_drop_picks_on_one_half_and_measures_on_the_other() -> None:
    # Problems 0-1 peak at the first budget, problems 2-3 rise to the last one.
    acc = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    half = np.array([True, True, False, False])
    drop, picks = held_out_drop(acc, np.ones((1, 4)), [half])
    # Picked on 0-1 (first budget), measured on 2-3: -1; picked on 2-3 (last), measured: 0.
    assert drop[0] == pytest.approx(-0.5)
    assert picks[0].tolist() == [0.5, 0.5]


def test_findings_per_difficulty_band_and_refusal_of_thin_bands() -> None:
    rows = (
        _ladder(PEAKED, level=1.0)
        + _ladder(RISING, level=2.0)
        + _ladder(PEAKED, n_problems=10, level=3.0)
    )
    findings = CLAIM.check(claim_data(rows))
    by_scope = {f.scope: f for f in findings}
    assert by_scope["m / think, level 1"].verdict == "supported"
    assert by_scope["m / think, level 2"].verdict == "contradicted"
    thin = by_scope["m / think, thin difficulty bands"]
    assert thin.verdict == "insufficient" and "level 3: 10" in thin.reason
    assert by_scope["m / think"].n_problems == 90


def test_refusals_name_what_is_missing() -> None:
    no_budgets = [
        {"model": "m", "problem_id": f"p{p}", "correct": p % 2, "budget_kind": "none"}
        for p in range(40)
    ]
    (refused,) = CLAIM.check(claim_data(no_budgets))
    assert refused.verdict == "insufficient" and "no budget ladder" in refused.reason

    (single,) = CLAIM.check(claim_data(_ladder({512.0: 20})))
    assert single.verdict == "insufficient" and "single recorded budget" in single.reason

    few = _overall(CLAIM.check(claim_data(_ladder(PEAKED, n_problems=12))))
    assert few.verdict == "insufficient" and "12 problems" in few.reason


@pytest.fixture(scope="module")
def recorded(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ClaimData]:
    store = tmp_path_factory.mktemp("claim5") / "store.sqlite"
    return recorded_data(shared_data, store, ["math500", "arith"])


def test_recorded_findings_are_well_formed(recorded: dict[str, ClaimData]) -> None:
    for name, data in recorded.items():
        findings = CLAIM.check(data)
        measured = [f for f in findings if f.verdict != "insufficient"]
        assert measured, name
        for finding in findings:
            assert finding.claim == CLAIM.id and finding.dataset == name
            assert finding.verdict in VERDICTS and finding.reason
        for finding in measured:
            assert finding.effect is not None and finding.n_problems >= FAST.min_problems
            assert finding.effect.low <= finding.effect.value <= finding.effect.high
            assert finding.table is not None
            assert finding.table["peak_share"].sum() == pytest.approx(1.0)
            assert finding.extras["n_budgets"] >= 2
    # ponder's sweep: levels 1-4 with 40 problems each give a finding per level and model.
    arith = [f.scope for f in CLAIM.check(recorded["arith"]) if f.verdict != "insufficient"]
    assert sum("level" in scope for scope in arith) >= 8
    # MATH-500 levels 1 and 2 have fewer than 20 of the 100 problems: refused per model.
    math500 = CLAIM.check(recorded["math500"])
    thin = [f for f in math500 if "thin difficulty bands" in f.scope]
    assert thin and all("level 1" in f.reason for f in thin)
    png = CLAIM.plot(next(f for f in math500 if f.verdict != "insufficient"))
    assert png is not None and png.startswith(b"\x89PNG")
