"""The claims section of the HTML report, and the stand-alone claims report.

One sub-section per claim: the hypothesis, a table of every finding (verdict, effect with its
interval, problems, reason), the claim's plots and its protocols. The same partial template
renders inside `ponder report` and in `ponder claims --out`.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from ponder import __version__
from ponder.claims import VERDICTS, Finding, Settings, all_claims

# Plots per claim in the report; the rest of the findings stay in the table.
MAX_PLOTS_PER_CLAIM = 6


def effect_text(finding: Finding) -> str:
    """'+3.1 points [+0.4, +5.9]', or '' for a refusal."""
    e = finding.effect
    if e is None:
        return ""

    def num(v: float) -> str:
        return f"{0.0 if abs(v) < 1e-9 else v:+.3g}"  # no "+2.66e-16" from rounding

    return f"{num(e.value)} {e.unit} [{num(e.low)}, {num(e.high)}]"


def _findings_table(findings: Sequence[Finding]) -> Markup:
    head = (
        "<thead><tr><th class='l'>dataset</th><th class='l'>scope</th><th class='l'>verdict</th>"
        "<th class='l'>effect</th><th>estimate [CI]</th><th>problems</th>"
        "<th class='l'>why</th></tr></thead>"
    )
    rows = []
    for f in findings:
        effect = f.effect.name if f.effect else ""
        rows.append(
            "<tr>"
            f"<td class='l'>{escape(f.dataset)}</td><td class='l'>{escape(f.scope)}</td>"
            f"<td class='l v-{f.verdict}'>{escape(f.verdict)}</td>"
            f"<td class='l'>{escape(effect)}</td><td>{escape(effect_text(f))}</td>"
            f"<td>{f.n_problems or ''}</td><td class='l'>{escape(f.reason)}</td>"
            "</tr>"
        )
    return Markup(f"<table>{head}<tbody>{''.join(rows)}</tbody></table>")


def claims_context(findings: Sequence[Finding], settings: Settings) -> dict[str, Any]:
    """What the ``_claims.html`` partial renders: one section per claim that has findings."""
    by_claim: dict[str, list[Finding]] = {}
    for f in findings:
        by_claim.setdefault(f.claim, []).append(f)
    sections = []
    for claim in all_claims():
        own = by_claim.get(claim.id)
        if not own:
            continue
        plots = []
        plottable = [f for f in own if f.verdict != "insufficient" and f.table is not None]
        for f in plottable[:MAX_PLOTS_PER_CLAIM]:
            png = claim.plot(f)
            if png:
                plots.append(
                    {"alt": f"{f.dataset}, {f.scope}", "png": base64.b64encode(png).decode()}
                )
        sections.append(
            {
                "number": claim.number,
                "id": claim.id,
                "title": claim.title,
                "hypothesis": claim.hypothesis,
                "needs": claim.needs,
                "counts": {v: sum(f.verdict == v for f in own) for v in VERDICTS},
                "table": _findings_table(own),
                "plots": plots,
                "n_unplotted": max(0, len(plottable) - MAX_PLOTS_PER_CLAIM),
                "protocols": list(dict.fromkeys(f.protocol for f in own if f.protocol)),
            }
        )
    return {
        "sections": sections,
        "verdicts": VERDICTS,
        "ci_label": f"{settings.ci:.0%}",
        "n_boot": settings.n_boot,
        "seed": settings.seed,
        "min_problems": settings.min_problems,
    }


def write_claims_report(
    findings: Sequence[Finding],
    out: Path,
    *,
    settings: Settings,
    store_label: str = "",
    attributions: Sequence[str] = (),
    title: str = "ponder: claims about inference-time budgets",
) -> Path:
    """Render the stand-alone claims report to ``out`` (written atomically)."""
    from ponder.report.html import _ENV

    html = _ENV.get_template("claims.html").render(
        title=title,
        version=__version__,
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        store_label=store_label,
        datasets=sorted({f.dataset for f in findings}),
        claims=claims_context(findings, settings),
        attributions=list(attributions),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out)
    return out
