"""The outcome matrix and its replay: the layer that policies fit on and evaluation scores.

Below both `ponder.policies` and `ponder.evaluate`, so the imports run one way: policies use
the matrix (and replay, for policies that simulate themselves while fitting), evaluation uses
policies.
"""

from ponder.outcomes.cost import COST_UNITS, CostModel, Price, load_prices
from ponder.outcomes.matrix import OutcomeMatrix
from ponder.outcomes.replay import ReplayError, ReplayResult, replay, replay_decision

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
