"""Offline evaluation of policies on the outcome matrix, without peeking.

The matrix, cost model and replay live in `ponder.outcomes` (below policies); they are
re-exported here because evaluating is where users meet them.
"""

from ponder.outcomes import (
    COST_UNITS,
    CostModel,
    OutcomeMatrix,
    Price,
    ReplayError,
    ReplayResult,
    load_prices,
    replay,
    replay_decision,
)

__all__ = [
    "COST_UNITS",
    "CostModel",
    "OutcomeMatrix",
    "Price",
    "ReplayError",
    "ReplayResult",
    "load_prices",
    "replay",
    "replay_decision",
]
