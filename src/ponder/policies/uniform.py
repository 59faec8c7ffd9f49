"""Uniform: one configuration for every request, the baseline family.

Sweep it over every recorded configuration (and sample count) to draw the baseline
accuracy-cost curve that every other policy must beat.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from ponder.decision import Config, Decision, DecisionBatch, Step
from ponder.policies.base import Policy
from ponder.policies.serialization import register

if TYPE_CHECKING:
    from ponder.outcomes.matrix import OutcomeMatrix


@register
class Uniform(Policy):
    """Always `config` with `samples` samples (majority vote when more than one)."""

    name = "uniform"

    def __init__(self, config: Config, samples: int = 1) -> None:
        self.config = config
        self.samples = samples

    def _fit(self, outcomes: OutcomeMatrix) -> None:
        outcomes.config_index(self.config)  # fails clearly if it was never recorded

    def decide_batch(self, problems: pd.DataFrame) -> DecisionBatch:
        self.check_fitted()
        step = Step(self.config, samples=self.samples, aggregate="majority")
        return DecisionBatch.same(Decision((step,), reason="uniform"), len(problems))

    def get_params(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "samples": self.samples}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Uniform:
        return cls(Config.from_dict(params["config"]), int(params.get("samples", 1)))

    def describe(self) -> str:
        suffix = f" x{self.samples}" if self.samples > 1 else ""
        return f"uniform {self.config.label}{suffix}"


def uniform_family(outcomes: OutcomeMatrix, *, max_samples: int = 1) -> list[Uniform]:
    """Every recorded configuration (and sample count up to what every problem has)."""
    counts = outcomes.n_samples
    family = []
    for c, config in enumerate(outcomes.configs):
        have = counts[:, c]
        if (have == 0).any():
            continue  # not recorded for every problem: not a valid uniform baseline here
        for k in range(1, min(max_samples, int(have.min())) + 1):
            family.append(Uniform(config, samples=k).fit(outcomes))
    return family
