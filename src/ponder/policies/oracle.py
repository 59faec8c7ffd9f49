"""Oracle: per problem, the most accurate configuration, cheapest among ties (never servable).

It is fitted on the very problems it is evaluated on, by design: it answers "how good could a
perfect per-request chooser be at this price?", the ceiling that other policies are measured
against (share of the uniform-to-oracle gap recovered).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ponder.decision import Config, Decision, DecisionBatch, Step
from ponder.policies.base import Policy, PolicyError
from ponder.policies.serialization import register

if TYPE_CHECKING:
    from ponder.outcomes.matrix import OutcomeMatrix


@register
class Oracle(Policy):
    """Per problem: the configuration with the highest expected accuracy, cheapest among ties.

    Expected accuracy and cost are means over every recorded sample of that problem and
    configuration, as one-sample decisions are scored, so no one-sample chooser can do better.
    Problems that no configuration ever solves get the cheapest configuration (a real chooser
    would have to pay something).
    """

    name = "oracle"
    servable = False

    def _fit(self, outcomes: OutcomeMatrix) -> None:
        stats = outcomes.stats
        if np.isnan(stats.cost).any():
            raise PolicyError(f"oracle needs costs in {outcomes.unit} for every sample")
        have = stats.recorded
        accuracy, cost = stats.mean_correct(), stats.mean_cost()
        accuracy = np.where(have > 0, accuracy, -np.inf)
        cost = np.where(have > 0, cost, np.inf)
        top = accuracy >= accuracy.max(axis=1, keepdims=True) - 1e-12
        choice = np.where(top, cost, np.inf).argmin(axis=1)
        keys = outcomes.problems["dataset"].astype(str) + "/" + outcomes.problems["problem_id"]
        self.choice_ = {k: outcomes.configs[c] for k, c in zip(keys, choice, strict=True)}

    def decide_batch(self, problems: pd.DataFrame) -> DecisionBatch:
        self.check_fitted()
        keys = problems["dataset"].astype(str) + "/" + problems["problem_id"].astype(str)
        decisions = []
        for key in keys:
            if key not in self.choice_:
                raise PolicyError(f"oracle was not fitted on problem {key}")
            decisions.append(Decision((Step(self.choice_[key]),), reason="oracle"))
        return DecisionBatch.from_list(decisions)

    def get_state(self) -> dict[str, Any]:
        return {"choice": {k: c.to_dict() for k, c in self.choice_.items()}}

    def set_state(self, state: dict[str, Any]) -> None:  # type: ignore[override]
        self.choice_ = {k: Config.from_dict(v) for k, v in state["choice"].items()}
