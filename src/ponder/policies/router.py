"""Think router: per request, think or not, by predicted value.

It is the difficulty-adaptive policy restricted to two configurations, a no-think one and a
think one, so the decision rule, predictor and state are exactly adaptive's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ponder.decision import Config
from ponder.policies.adaptive import DifficultyAdaptive, config_or_none
from ponder.policies.base import PolicyError
from ponder.policies.serialization import register
from ponder.types import NO_THINK, THINK, base_mode

if TYPE_CHECKING:
    from ponder.outcomes.matrix import OutcomeMatrix


@register
class ThinkRouter(DifficultyAdaptive):
    """Choose `no_think` or `think` per request: P(correct) - price_per_unit x cost.

    Defaults, learned on the training data among configs recorded for every training
    problem: `no_think` is the cheapest no-think config (mean cost), `think` the most accurate
    think config (cheaper on ties). Modes are matched exactly ("think", "no-think"); pass the
    configs explicitly for other mode names.
    """

    name = "router"

    def __init__(
        self,
        price_per_unit: float,
        think: Config | Mapping[str, Any] | None = None,
        no_think: Config | Mapping[str, Any] | None = None,
        samples: int = 1,
    ) -> None:
        super().__init__(price_per_unit, configs=None, samples=samples)
        self.think = config_or_none(think)
        self.no_think = config_or_none(no_think)

    def _candidates(self, outcomes: OutcomeMatrix) -> list[Config]:
        for given in (self.think, self.no_think):
            if given is not None:
                outcomes.config_index(given)  # a clear error for an unrecorded config
        full = outcomes.complete_configs(self.samples)
        index = [outcomes.config_index(c) for c in full]
        accuracy, cost = outcomes.stats.pooled(np.arange(len(outcomes.configs)))
        cost = np.nan_to_num(cost, nan=0.0)  # unknown costs: the replay refuses them later
        no_think = self.no_think
        if no_think is None:
            cheap = [
                (cost[i], c)
                for c, i in zip(full, index, strict=True)
                if base_mode(c.mode) == NO_THINK
            ]
            if not cheap:
                raise PolicyError(
                    f"no {NO_THINK!r} configuration recorded for every training problem: "
                    "pass no_think= explicitly"
                )
            no_think = min(cheap, key=lambda t: (t[0], t[1]))[1]
        think = self.think
        if think is None:
            pool = [
                (-accuracy[i], cost[i], c)
                for c, i in zip(full, index, strict=True)
                if base_mode(c.mode) == THINK
            ]
            if not pool:
                raise PolicyError(
                    f"no {THINK!r} configuration recorded for every training problem: "
                    "pass think= explicitly"
                )
            think = min(pool, key=lambda t: (t[0], t[1], t[2]))[2]
        if think == no_think:
            raise PolicyError(f"think and no_think are the same configuration {think.label}")
        return [no_think, think]

    def get_params(self) -> dict[str, Any]:
        return {
            "price_per_unit": self.price_per_unit,
            "think": None if self.think is None else self.think.to_dict(),
            "no_think": None if self.no_think is None else self.no_think.to_dict(),
            "samples": self.samples,
        }

    def describe(self) -> str:
        suffix = f" x{self.samples}" if self.samples > 1 else ""
        return f"{self.name}(price_per_unit={self.price_per_unit:.3g}){suffix}"
