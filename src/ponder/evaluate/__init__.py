"""Offline evaluation of policies on the outcome matrix, without peeking."""

from ponder.evaluate.cost import COST_UNITS, CostModel, Price, load_prices
from ponder.evaluate.matrix import OutcomeMatrix
from ponder.evaluate.replay import ReplayError, ReplayResult, replay, replay_decision

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
