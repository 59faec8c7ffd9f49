"""The claims suite: re-test each belief about inference-time budgets on an outcome store.

Each claim is a module with one :class:`Claim` whose ``check`` turns one dataset into
:class:`Finding` objects: a verdict (supported / contradicted / inconclusive, or insufficient
data with the reason), the effect size with a problem-bootstrap interval, and the protocol.
See docs/claims.md for every claim, its protocol and the verdict rule.
"""

from ponder.claims.base import (
    VERDICTS,
    Claim,
    Effect,
    Finding,
    Verdict,
    decide,
    found,
    insufficient,
)
from ponder.claims.data import ClaimData, ModelFacts, Settings, load_claim_data, model_facts
from ponder.claims.registry import all_claims, claim_ids, get_claim
from ponder.claims.runner import check_all, run_claims, summary_table

__all__ = [
    "VERDICTS",
    "Claim",
    "ClaimData",
    "Effect",
    "Finding",
    "ModelFacts",
    "Settings",
    "Verdict",
    "all_claims",
    "check_all",
    "claim_ids",
    "decide",
    "found",
    "get_claim",
    "insufficient",
    "load_claim_data",
    "model_facts",
    "run_claims",
    "summary_table",
]
