"""The claims of the suite, in the order docs/claims.md numbers them."""

from __future__ import annotations

import difflib
import importlib

from ponder.claims.base import Claim
from ponder.errors import InputError

# id -> "module:Class"; modules are imported on first use so `ponder claims --help` stays fast.
_CLAIMS: dict[str, str] = {
    "tier-or-difficulty": "ponder.claims.tier_or_difficulty:TierOrDifficulty",
    "non-reasoning-plateau": "ponder.claims.non_reasoning_plateau:NonReasoningPlateau",
    "small-matches-large": "ponder.claims.small_vs_large:SmallMatchesLarge",
    "adaptive-beats-uniform": "ponder.claims.adaptive_allocation:AdaptiveBeatsUniform",
    "think-routing": "ponder.claims.think_routing:ThinkRouting",
    "overthinking": "ponder.claims.overthinking:Overthinking",
    "width-vs-depth": "ponder.claims.width_vs_depth:WidthVsDepth",
    "forking-tokens": "ponder.claims.forking_tokens:ForkingTokens",
    "search-rounds": "ponder.claims.search_rounds:SearchRounds",
    "token-functions": "ponder.claims.token_functions:TokenFunctions",
}

# The suite's numbers (docs/claims.md); the claim classes carry the same ones.
_NUMBERS: dict[str, int] = {
    "tier-or-difficulty": 0,
    "non-reasoning-plateau": 1,
    "small-matches-large": 2,
    "adaptive-beats-uniform": 3,
    "think-routing": 4,
    "overthinking": 5,
    "width-vs-depth": 6,
    "forking-tokens": 7,
    "search-rounds": 8,
    "token-functions": 9,
}


def claim_number(claim_id: str) -> int:
    """The claim's number in the suite (-1 for an id outside it), without importing it."""
    return _NUMBERS.get(claim_id, -1)


def claim_ids() -> list[str]:
    """Every claim id, in suite order."""
    return list(_CLAIMS)


def get_claim(claim_id: str) -> Claim:
    """The claim with this id; an unknown id fails with the closest known one."""
    try:
        target = _CLAIMS[claim_id]
    except KeyError:
        close = difflib.get_close_matches(claim_id, list(_CLAIMS), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InputError(f"unknown claim {claim_id!r}{hint}; known: {', '.join(_CLAIMS)}") from None
    module, name = target.split(":")
    claim = getattr(importlib.import_module(module), name)()
    assert isinstance(claim, Claim)
    return claim


def all_claims() -> list[Claim]:
    """Every claim, in suite order."""
    return [get_claim(c) for c in _CLAIMS]
