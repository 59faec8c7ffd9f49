"""Oracle: the cheapest configuration that solves each problem (an upper bound, never servable).

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
    """Per problem: the cheapest configuration whose first recorded sample is correct.

    Problems that no configuration solves get the cheapest configuration (a real chooser would
    have to pay something). Costs are the recorded first-sample costs of that problem.
    """

    name = "oracle"
    servable = False

    def _fit(self, outcomes: OutcomeMatrix) -> None:
        first_correct = outcomes.correct[:, :, 0]
        first_cost = outcomes.cost[:, :, 0]
        if np.isnan(first_cost[~np.isnan(first_correct)]).any():
            raise PolicyError(f"oracle needs costs in {outcomes.unit} for every sample")
        solved = first_correct == 1.0
        cost_if_solved = np.where(solved, first_cost, np.inf)
        best = cost_if_solved.argmin(axis=1)
        cheapest = np.where(np.isnan(first_cost), np.inf, first_cost).argmin(axis=1)
        choice = np.where(solved.any(axis=1), best, cheapest)
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
