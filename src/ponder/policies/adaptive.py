"""Difficulty-adaptive: per request, the configuration of best predicted value for its price.

Value = predicted P(correct) - price_per_unit x expected cost. `price_per_unit` is what one
cost unit is worth in accuracy (probability of a correct answer); sweeping it from 0 upwards
draws the policy's accuracy-cost curve, from "most accurate whatever it costs" to "cheapest".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ponder.decision import Config, Decision, DecisionBatch, Step
from ponder.policies.base import Policy, PolicyError
from ponder.policies.predictor import CorrectnessPredictor, fit_predictor
from ponder.policies.serialization import register

if TYPE_CHECKING:
    from ponder.outcomes.matrix import OutcomeMatrix


def frontier_configs(
    outcomes: OutcomeMatrix, samples: int = 1, *, caps: bool = False
) -> list[Config]:
    """Complete configurations not dominated on the training data.

    A config is dropped when another has at least its training accuracy at no more cost (one
    of them strictly): on small training sets, a per-request argmax over many noisy
    predictions mostly picks configs whose prediction happened to be high, so candidates
    that could only win by such noise are left out. Cost is the mean sample cost, or the
    token cap when `caps` (what the budget allocator reserves; uncapped configs dropped).
    """
    full = outcomes.complete_configs(samples)
    if caps:
        full = [c for c in full if c.budget is not None]
    if not full:
        return []
    index = [outcomes.config_index(c) for c in full]
    accuracy = np.nanmean(outcomes.mean_correct()[:, index], axis=0)
    if caps:
        cost = np.array([float(c.budget or 0) for c in full])
    else:
        _, cost = outcomes.stats.pooled(index)
    at_least = (accuracy[None, :] >= accuracy[:, None]) & (cost[None, :] <= cost[:, None])
    strictly = (accuracy[None, :] > accuracy[:, None]) | (cost[None, :] < cost[:, None])
    dominated = (at_least & strictly).any(axis=1)
    return [c for c, d in zip(full, dominated, strict=True) if not d]


def choice_batch(
    configs: Sequence[Config], choice: np.ndarray, samples: int, reason: str
) -> DecisionBatch:
    """One single-step plan per config actually chosen, and each problem's plan index."""
    used, index = np.unique(choice, return_inverse=True)
    if len(choice) == 0:
        used = np.arange(len(configs))  # keep every plan listed for an empty batch
    decisions = tuple(
        Decision((Step(configs[c], samples=samples, aggregate="majority"),), reason=reason)
        for c in used.tolist()
    )
    return DecisionBatch(decisions, index.astype(np.int64).reshape(-1))


def check_training(outcomes: OutcomeMatrix, name: str) -> None:
    """Refuse training data a learned policy cannot learn from (no silent fallback)."""
    if outcomes.n_problems < 2:
        raise PolicyError(f"{name} needs at least 2 training problems, got {outcomes.n_problems}")


def check_price(price_per_unit: float) -> float:
    price = float(price_per_unit)
    if not math.isfinite(price) or price < 0:
        raise PolicyError(f"price_per_unit must be a finite number >= 0, got {price_per_unit!r}")
    return price


def check_samples(samples: int) -> int:
    if int(samples) != samples or samples < 1:
        raise PolicyError(f"samples must be a positive integer, got {samples!r}")
    return int(samples)


def config_list(value: Sequence[Config | Mapping[str, Any]] | None) -> list[Config] | None:
    """Configs given as Config objects or their JSON dicts (from params files or the CLI)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes, Mapping)):
        raise PolicyError("configs must be a list of configurations")
    return [c if isinstance(c, Config) else Config.from_dict(dict(c)) for c in value]


def config_or_none(value: Config | Mapping[str, Any] | None) -> Config | None:
    if value is None or isinstance(value, Config):
        return value
    return Config.from_dict(dict(value))


@register
class DifficultyAdaptive(Policy):
    """Per problem, argmax over configs of P(correct) - price_per_unit x samples x cost.

    Learns a `CorrectnessPredictor` over the candidate configs: `configs`, or by default the
    configs recorded for every training problem that no other beats on both training accuracy
    and mean cost (`frontier_configs`). Ties go to the cheaper config.
    Caveat: with samples > 1 the value uses the single-sample P(correct), a proxy for the
    majority vote's (it ranks configs the same way when p > 1/2, not otherwise).
    """

    name = "adaptive"

    def __init__(
        self,
        price_per_unit: float,
        configs: Sequence[Config | Mapping[str, Any]] | None = None,
        samples: int = 1,
    ) -> None:
        self.price_per_unit = check_price(price_per_unit)
        self.configs = config_list(configs)
        self.samples = check_samples(samples)

    # -- fitting -----------------------------------------------------------------------------

    def _candidates(self, outcomes: OutcomeMatrix) -> list[Config]:
        if self.configs is not None:
            if not self.configs:
                raise PolicyError(f"{self.name} needs at least one configuration")
            for config in self.configs:
                outcomes.config_index(config)  # a clear error for an unrecorded config
            return list(dict.fromkeys(self.configs))
        found = frontier_configs(outcomes, self.samples)
        if not found:
            raise PolicyError(
                f"no configuration has {self.samples} recorded sample(s) for every training "
                "problem: pass configs= explicitly"
            )
        return found

    def _fit(self, outcomes: OutcomeMatrix) -> None:
        check_training(outcomes, self.name)
        configs = self._candidates(outcomes)
        predictor = fit_predictor(outcomes, configs)
        # Cheapest first, so argmax breaks ties towards the cheaper configuration.
        order = np.argsort(predictor.cost_mean_, kind="stable")
        self.configs_ = tuple(configs[i] for i in order)
        self.order_ = order
        self.predictor_ = predictor

    # -- deciding ----------------------------------------------------------------------------

    def values(self, problems: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """[P, C] predicted P(correct) and expected cost, columns in `configs_` order."""
        self.check_fitted()
        p = self.predictor_.predict_proba(problems)[:, self.order_]
        cost = self.predictor_.expected_cost(problems)[:, self.order_] * self.samples
        return p, cost

    def predict(self, problems: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Chosen config index (into `configs_`) and its predicted P(correct), per problem."""
        p, cost = self.values(problems)
        value = p - self.price_per_unit * cost
        choice = value.argmax(axis=1) if len(problems) else np.zeros(0, dtype=np.int64)
        return choice.astype(np.int64), p[np.arange(len(choice)), choice]

    def decide_batch(self, problems: pd.DataFrame) -> DecisionBatch:
        choice, _ = self.predict(problems)
        return choice_batch(self.configs_, choice, self.samples, self.name)

    # -- parameters and state ----------------------------------------------------------------

    def get_params(self) -> dict[str, Any]:
        return {
            "price_per_unit": self.price_per_unit,
            "configs": None if self.configs is None else [c.to_dict() for c in self.configs],
            "samples": self.samples,
        }

    def get_state(self) -> dict[str, Any]:
        return {
            "configs": [c.to_dict() for c in self.configs_],
            "order": [int(i) for i in self.order_],
            "predictor": self.predictor_.get_state(),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        predictor = CorrectnessPredictor.from_state(state["predictor"])
        configs = tuple(Config.from_dict(c) for c in state["configs"])
        order = np.asarray(state["order"], dtype=np.int64)
        if tuple(predictor.configs_[i] for i in order) != configs:
            raise ValueError("configs do not match the predictor's configs")
        self.predictor_, self.configs_, self.order_ = predictor, configs, order

    def describe(self) -> str:
        suffix = f" x{self.samples}" if self.samples > 1 else ""
        fixed = f", {len(self.configs)} configs" if self.configs is not None else ""
        return f"{self.name}(price_per_unit={self.price_per_unit:.3g}{fixed}){suffix}"
