"""Run the suite: every claim on every dataset of a store, one finding list out."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pandas as pd

from ponder.claims.base import Claim, Finding, insufficient
from ponder.claims.data import ClaimData, ModelFacts, Settings, load_claim_data
from ponder.claims.registry import all_claims, claim_number, get_claim
from ponder.errors import InputError
from ponder.store import Store

# The summary table's columns, in order (``summary_table``).
SUMMARY_COLUMNS = (
    "number",
    "claim",
    "dataset",
    "scope",
    "verdict",
    "effect",
    "value",
    "low",
    "high",
    "unit",
    "n_problems",
    "reason",
)


def run_claims(
    store: Store,
    *,
    claims: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    settings: Settings | None = None,
    facts: Mapping[str, ModelFacts] | None = None,
    on_check: Callable[[Claim, ClaimData], None] | None = None,
) -> list[Finding]:
    """Findings of the chosen claims (default: all) on the chosen datasets (default: all).

    A check that cannot use a dataset reports an "insufficient" finding with the reason; an
    InputError raised inside a check becomes one too (it names what the data lack).
    """
    chosen = [get_claim(c) for c in claims] if claims else all_claims()
    data = load_claim_data(store, datasets=datasets, settings=settings, facts=facts)
    return check_all(chosen, data, on_check=on_check)


def check_all(
    claims: Sequence[Claim],
    data: Sequence[ClaimData],
    *,
    on_check: Callable[[Claim, ClaimData], None] | None = None,
) -> list[Finding]:
    """Every claim on every dataset, claims in suite order, datasets in name order."""
    findings: list[Finding] = []
    for claim in claims:
        for one in data:
            try:
                got = claim.check(one)
            except InputError as exc:
                got = [insufficient(claim.id, one.dataset, str(exc), n_problems=one.n_problems)]
            if not got:
                got = [insufficient(claim.id, one.dataset, f"needs {claim.needs}")]
            findings.extend(got)
            if on_check is not None:
                on_check(claim, one)
    return findings


def summary_table(findings: Sequence[Finding]) -> pd.DataFrame:
    """One row per finding (see ``SUMMARY_COLUMNS``); effect columns NaN when refused."""
    rows = []
    for f in findings:
        e = f.effect
        rows.append(
            {
                "number": claim_number(f.claim),
                "claim": f.claim,
                "dataset": f.dataset,
                "scope": f.scope,
                "verdict": f.verdict,
                "effect": e.name if e else "",
                "value": e.value if e else float("nan"),
                "low": e.low if e else float("nan"),
                "high": e.high if e else float("nan"),
                "unit": e.unit if e else "",
                "n_problems": f.n_problems,
                "reason": f.reason,
            }
        )
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
