"""The claims section, inside `ponder report` and as the stand-alone claims report: one
sub-section per claim with its findings, verdicts styled, refusals listed with the reason."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ponder.claims import Effect, Settings, found, insufficient
from ponder.curves import compute_curves
from ponder.report import build_report
from ponder.report.claims import claims_context, effect_text, write_claims_report

FINDINGS = [
    found(
        "overthinking",
        "aime24",
        "r1-1.5b / think",
        Effect("held-out drop", -1.5, -4.0, 1.5, "points", min_effect=2.0),
        n_problems=30,
        protocol="split halves",
    ),
    found(
        "width-vs-depth",
        "math500",
        "all models",
        Effect("maj@k minus one chain", -46.1, -50.8, -41.6, "points"),
        n_problems=100,
        protocol="matched tokens",
    ),
    insufficient("width-vs-depth", "gsm8k", "no token budgets recorded"),
]


def test_claims_context_counts_verdicts_per_claim() -> None:
    context = claims_context(FINDINGS, Settings(n_boot=200))
    sections = {s["id"]: s for s in context["sections"]}
    assert list(sections) == ["overthinking", "width-vs-depth"]  # suite order
    assert sections["overthinking"]["counts"]["contradicted"] == 1  # [-4, 1.5] lies below 2 points
    assert sections["width-vs-depth"]["counts"] == {
        "supported": 0,
        "contradicted": 1,
        "inconclusive": 0,
        "insufficient": 1,
    }
    assert context["n_boot"] == 200
    assert effect_text(FINDINGS[1]) == "-46.1 points [-50.8, -41.6]"
    assert effect_text(FINDINGS[2]) == ""


def test_standalone_claims_report(tmp_path: Path) -> None:
    out = write_claims_report(FINDINGS, tmp_path / "c.html", settings=Settings(), store_label="s")
    html = out.read_text(encoding="utf-8")
    assert '<h2 id="claims">' in html
    assert html.count('<h3 id="claim-') == 2
    assert "no token budgets recorded" in html  # a refusal says why
    verdicts = re.findall(r"<td class='l v-(\w+)'>", html)
    assert sorted(verdicts) == ["contradicted", "contradicted", "insufficient"]
    assert not list(tmp_path.glob("*.tmp"))


def test_main_report_gets_the_section_and_a_link(
    two_source_frame: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    frame, runs = two_source_frame
    curves = compute_curves(frame, n_boot=50, seed=0)
    out = tmp_path / "r.html"
    context = claims_context(FINDINGS, Settings())
    build_report(frame, curves, runs, out, n_boot=50, claims=context)
    html = out.read_text(encoding="utf-8")
    assert '<a href="#claims">claims</a>' in html
    assert html.index('<h2 id="claims">') < html.index('<h2 id="cells">')
    without = tmp_path / "plain.html"
    build_report(frame, curves, runs, without, n_boot=50)
    assert 'id="claims"' not in without.read_text(encoding="utf-8")
