"""Adaptive consistency: draw samples one at a time and stop once enough of them agree.

Majority voting over a fixed number of samples pays for every sample even when the first two
already agree. Stopping as soon as the leading answer has `votes` votes and leads by `margin`
keeps most of the vote's accuracy at a fraction of its samples: easy requests stop early, hard
ones (where samples disagree) use the full allowance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ponder.decision import Config, Decision, DecisionBatch, Step, StopRule
from ponder.outcomes.replay import replay_decision
from ponder.policies.base import Policy, PolicyError
from ponder.policies.cascade import config_stats, require_samples, usable_configs
from ponder.policies.serialization import register

if TYPE_CHECKING:
    from ponder.outcomes.matrix import OutcomeMatrix


@register
class AdaptiveConsistency(Policy):
    """One step of up to `max_samples` samples of one configuration, with an early stop.

    Fitting picks, when not given, the configuration with the best training accuracy per unit
    of cost at majority@max_samples, and (with `votes=None`) the smallest number of votes whose
    training accuracy is within one standard error of majority@max_samples.
    """

    name = "adaptive_consistency"

    def __init__(
        self,
        config: Config | None = None,
        max_samples: int = 3,
        votes: int | None = 2,
        margin: int = 1,
    ) -> None:
        if max_samples < 1:
            raise ValueError(f"max_samples must be at least 1, got {max_samples}")
        if votes is not None and not 1 <= votes <= max_samples:
            raise ValueError(f"votes must be between 1 and max_samples={max_samples}, got {votes}")
        if margin < 1:
            raise ValueError(f"margin must be at least 1, got {margin}")
        self.config = config
        self.max_samples = max_samples
        self.votes = votes
        self.margin = margin

    def _step(self, config: Config, votes: int | None) -> Step:
        stop = None if votes is None else StopRule(votes, self.margin)
        return Step(config, samples=self.max_samples, aggregate="majority", stop=stop)

    def _fit(self, outcomes: OutcomeMatrix) -> None:

        rows = np.arange(outcomes.n_problems)

        def run(step: Step) -> tuple[float, float, float]:
            result = replay_decision(outcomes, rows, Decision((step,)))
            return result.accuracy, result.mean_cost, float(result.samples.mean())

        if self.config is not None:
            require_samples(
                outcomes,
                self.config,
                self.max_samples,
                "adaptive consistency",
                ": lower max_samples",
            )
            config = self.config
        else:
            index = usable_configs(outcomes, self.max_samples)
            if len(index) == 0:
                most = int(outcomes.n_samples.min(axis=0).max())
                raise PolicyError(
                    f"adaptive consistency: no configuration has {self.max_samples} recorded "
                    f"samples (with known costs in {outcomes.unit}) for every training problem; "
                    f"the most any has is {most}: lower max_samples"
                )
            scores = []
            for c in index:
                accuracy, cost, _ = run(self._step(outcomes.configs[c], None))
                scores.append(accuracy / cost if cost > 0 else np.inf)
            _, mean_cost = config_stats(outcomes, index)
            # Best ratio; ties go to the cheaper configuration.
            config = outcomes.configs[index[np.lexsort((mean_cost, -np.asarray(scores)))[0]]]
        fixed_accuracy, fixed_cost, _ = run(self._step(config, None))
        if self.votes is not None:
            votes = self.votes
        else:
            floor = fixed_accuracy - math.sqrt(
                fixed_accuracy * (1 - fixed_accuracy) / max(outcomes.n_problems, 1)
            )
            grid = range(min(2, self.max_samples), self.max_samples + 1)
            votes = next(v for v in grid if run(self._step(config, v))[0] >= floor - 1e-12)
        accuracy, cost, samples = run(self._step(config, votes))
        self.config_ = config
        self.votes_ = votes
        self.train_accuracy_ = accuracy
        self.train_cost_ = cost
        self.train_samples_ = samples
        self.train_fixed_accuracy_ = fixed_accuracy
        self.train_fixed_cost_ = fixed_cost

    def decide_batch(self, problems: pd.DataFrame) -> DecisionBatch:
        self.check_fitted()
        step = self._step(self.config_, self.votes_)
        return DecisionBatch.same(Decision((step,), reason="adaptive consistency"), len(problems))

    # -- parameters and state ----------------------------------------------------------------

    def get_params(self) -> dict[str, Any]:
        return {
            "config": None if self.config is None else self.config.to_dict(),
            "max_samples": self.max_samples,
            "votes": self.votes,
            "margin": self.margin,
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> AdaptiveConsistency:
        config = params.get("config")
        votes = params.get("votes", 2)
        return cls(
            None if config is None else Config.from_dict(config),
            max_samples=int(params.get("max_samples", 3)),
            votes=None if votes is None else int(votes),
            margin=int(params.get("margin", 1)),
        )

    def get_state(self) -> dict[str, Any]:
        return {
            "config": self.config_.to_dict(),
            "votes": self.votes_,
            "train_accuracy": self.train_accuracy_,
            "train_cost": self.train_cost_,
            "train_samples": self.train_samples_,
            "train_fixed_accuracy": self.train_fixed_accuracy_,
            "train_fixed_cost": self.train_fixed_cost_,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.config_ = Config.from_dict(state["config"])
        self.votes_ = int(state["votes"])
        self.train_accuracy_ = float(state["train_accuracy"])
        self.train_cost_ = float(state["train_cost"])
        self.train_samples_ = float(state["train_samples"])
        self.train_fixed_accuracy_ = float(state["train_fixed_accuracy"])
        self.train_fixed_cost_ = float(state["train_fixed_cost"])

    def describe(self) -> str:
        config = getattr(self, "config_", self.config)
        votes = getattr(self, "votes_", self.votes)
        label = "auto" if config is None else config.label
        return f"adaptive_consistency {label} <={self.max_samples} votes={votes}"
