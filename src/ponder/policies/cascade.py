"""Tier cascade: a cheap configuration first, dearer ones only when the cheap one looks unsure.

A cascade cannot know a request's difficulty up front, but it can watch its own outputs: if a few
samples of the cheap tier agree, their answer is usually right and the request stops there; if
they disagree (or give no answer) the request escalates to the next tier. The plan is the same
for every request; it adapts only through that rule, which sees earlier steps' outputs, never
grades.

On data with one recorded sample per configuration (RouteLLM GSM8K, MMLU-Pro) disagreement
cannot be observed, so every tier draws one sample and escalation reduces to "no answer".
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import pandas as pd

from ponder.decision import Config, Decision, DecisionBatch, Step
from ponder.errors import InputError
from ponder.outcomes.replay import replay_decision
from ponder.policies.base import Policy, PolicyError
from ponder.policies.serialization import register

if TYPE_CHECKING:
    from ponder.outcomes.matrix import OutcomeMatrix

CascadeEscalate = Literal["disagree", "no_answer"]
CASCADE_ESCALATES: tuple[str, ...] = ("disagree", "no_answer")
POOL_SIZE = 6  # configurations the search combines: C(6,2) + C(6,3) = 35 tier sets
MAX_TIERS = 3


def require_samples(
    outcomes: OutcomeMatrix, config: Config, needed: int, who: str, hint: str = ""
) -> int:
    """Index of `config`, after checking every problem has `needed` samples with known costs.

    Checked at fit time so a bad plan fails with the policy's name instead of deep in replay.
    """
    try:
        c = outcomes.config_index(config)
    except InputError as exc:
        raise PolicyError(f"{who}: {exc}") from None
    have = outcomes.n_samples[:, c]
    if have.min() < needed:
        bad = int(np.argmin(have))
        problem = outcomes.problems.iloc[bad]
        raise PolicyError(
            f"{who}: configuration {config.label} has {int(have[bad])} recorded sample(s) for "
            f"problem {problem['dataset']}/{problem['problem_id']}, the plan draws up to "
            f"{needed}{hint}"
        )
    if np.isnan(outcomes.cost[:, c, :needed]).any():
        raise PolicyError(
            f"{who}: cost in {outcomes.unit} is unknown for configuration {config.label} "
            "(no token counts recorded): use cost unit 'calls' or a price table"
        )
    return c


def usable_configs(outcomes: OutcomeMatrix, needed: int = 1) -> np.ndarray:
    """Configurations with `needed` samples and known costs for every problem (indices)."""
    have = outcomes.n_samples.min(axis=0) >= needed
    known = ~np.isnan(outcomes.cost[:, :, :needed]).any(axis=(0, 2))  # needed <= kept slots
    return np.flatnonzero(have & known)


def config_stats(outcomes: OutcomeMatrix, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean accuracy and mean cost per sample of the configurations in `index`."""
    return outcomes.stats.pooled(index)


def pareto_pool(accuracy: np.ndarray, cost: np.ndarray, score: np.ndarray, size: int) -> np.ndarray:
    """Positions of the `size` best configurations by Pareto layer, then by score.

    The frontier alone can be a single point (equal per-call prices), so later layers fill the
    pool: a cheap tier need not be on the frontier to be a good first try.
    """
    n = len(accuracy)
    layer = np.full(n, -1)
    # dominated[i, j]: j is at least as good as i on both axes and better on one.
    dominated = (
        (cost[None, :] <= cost[:, None])
        & (accuracy[None, :] >= accuracy[:, None])
        & ((cost[None, :] < cost[:, None]) | (accuracy[None, :] > accuracy[:, None]))
    )
    depth = 0
    while (layer < 0).any():
        left = layer < 0
        front = left & ~(dominated & left[None, :]).any(axis=1)
        layer[front] = depth
        depth += 1
    order = np.lexsort((-score, layer))
    return np.sort(order[:size])


@register
class TierCascade(Policy):
    """Run tiers cheap to dear; escalate while a tier's samples disagree or give no answer.

    Every tier but the last draws `samples` samples (majority vote); the last draws one and
    never escalates. With `tiers=None`, fitting replays every 2-3 tier cascade over a pool of
    six configurations (the first training Pareto layers), in orders whose step costs never
    decrease, with 1 to `samples` samples per non-final step, and keeps the one maximizing
    training accuracy - price_per_unit * mean cost (ties: the cheaper).
    """

    name = "cascade"

    def __init__(
        self,
        price_per_unit: float,
        tiers: Sequence[Config] | None = None,
        samples: int = 2,
        escalate: CascadeEscalate = "disagree",
    ) -> None:
        if not np.isfinite(price_per_unit) or price_per_unit < 0:
            raise ValueError(f"price_per_unit must be finite and >= 0, got {price_per_unit}")
        if samples < 1:
            raise ValueError(f"samples must be at least 1, got {samples}")
        if escalate not in CASCADE_ESCALATES:
            raise ValueError(
                f"unknown escalation rule {escalate!r}; use one of {', '.join(CASCADE_ESCALATES)}"
            )
        if tiers is not None and len(tiers) == 0:
            raise ValueError("tiers must name at least one configuration (or be None to search)")
        self.price_per_unit = float(price_per_unit)
        self.tiers = None if tiers is None else list(tiers)
        self.samples = samples
        self.escalate: CascadeEscalate = escalate

    # -- fitting -----------------------------------------------------------------------------

    def _plan(self, tiers: Sequence[Config], samples: Sequence[int]) -> tuple[Step, ...]:
        """Steps for `tiers`, with `samples[i]` samples for every tier but the last."""
        steps = [
            Step(config, samples=k, aggregate="majority", escalate=self.escalate)
            for config, k in zip(tiers[:-1], samples, strict=True)
        ]
        return (*steps, Step(tiers[-1], samples=1, aggregate="majority", escalate="never"))

    def _fit(self, outcomes: OutcomeMatrix) -> None:

        rows = np.arange(outcomes.n_problems)
        if self.tiers is not None:
            steps = self._plan(self.tiers, [self.samples] * (len(self.tiers) - 1))
            needed: dict[Config, int] = {}
            for step in steps:  # a repeated configuration continues its samples
                needed[step.config] = needed.get(step.config, 0) + step.samples
            for config, k in needed.items():
                require_samples(outcomes, config, k, "cascade", ": lower samples")
        else:
            steps = self._search(outcomes, rows)
        result = replay_decision(outcomes, rows, Decision(steps, reason="cascade"))
        self.steps_ = steps
        self.train_accuracy_ = result.accuracy
        self.train_cost_ = result.mean_cost
        # Share of training problems that reached each step (1.0 for the first).
        self.reached_ = [float((result.steps > k).mean()) for k in range(len(steps))]

    def _search(self, outcomes: OutcomeMatrix, rows: np.ndarray) -> tuple[Step, ...]:

        index = usable_configs(outcomes)
        if len(index) < 2:
            raise PolicyError(
                "cascade: at least two configurations must be recorded for every training "
                f"problem with known costs in {outcomes.unit}; found {len(index)}"
            )
        accuracy, cost = config_stats(outcomes, index)
        score = accuracy - self.price_per_unit * cost
        pool = index[pareto_pool(accuracy, cost, score, POOL_SIZE)]
        per_sample = dict(zip(index.tolist(), cost.tolist(), strict=True))
        per_acc = dict(zip(index.tolist(), accuracy.tolist(), strict=True))
        # Cheap and weak first, so equal plans are found in a fixed order (deterministic fits).
        pool_list = sorted(pool.tolist(), key=lambda c: (per_sample[c], per_acc[c], c))
        most = np.minimum(outcomes.n_samples.min(axis=0), self.samples)
        best: tuple[Step, ...] | None = None
        best_key = (-np.inf, 0.0)
        for size in range(2, MAX_TIERS + 1):
            # Orders whose step costs never decrease: cheap to dear, and with equal prices
            # (per-call costs) every order, since none of them is the obvious one.
            for chosen in itertools.permutations(pool_list, size):
                tiers = [outcomes.configs[c] for c in chosen]
                ranges = [range(1, int(most[c]) + 1) for c in chosen[:-1]]
                for samples in itertools.product(*ranges):
                    # Steps must not get cheaper: a step that costs less than the one before it
                    # would be better tried first (and this keeps the search small).
                    counts = (*samples, 1)
                    step_cost = [k * per_sample[c] for k, c in zip(counts, chosen, strict=True)]
                    if any(a > b for a, b in itertools.pairwise(step_cost)):
                        continue
                    steps = self._plan(tiers, samples)
                    result = replay_decision(outcomes, rows, Decision(steps))
                    value = result.accuracy - self.price_per_unit * result.mean_cost
                    key = (value, -result.mean_cost)
                    if key > best_key:
                        best, best_key = steps, key
        assert best is not None  # one sample per step always passes the cost order
        return best

    # -- deciding ----------------------------------------------------------------------------

    def decide_batch(self, problems: pd.DataFrame) -> DecisionBatch:
        self.check_fitted()
        return DecisionBatch.same(Decision(self.steps_, reason="cascade"), len(problems))

    # -- parameters and state ----------------------------------------------------------------

    def get_params(self) -> dict[str, Any]:
        return {
            "price_per_unit": self.price_per_unit,
            "tiers": None if self.tiers is None else [c.to_dict() for c in self.tiers],
            "samples": self.samples,
            "escalate": self.escalate,
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TierCascade:
        tiers = params.get("tiers")
        return cls(
            float(params["price_per_unit"]),
            None if tiers is None else [Config.from_dict(t) for t in tiers],
            samples=int(params.get("samples", 2)),
            escalate=cast(CascadeEscalate, params.get("escalate", "disagree")),
        )

    def get_state(self) -> dict[str, Any]:
        return {
            "steps": [s.to_dict() for s in self.steps_],
            "train_accuracy": self.train_accuracy_,
            "train_cost": self.train_cost_,
            "reached": list(self.reached_),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.steps_ = tuple(Step.from_dict(s) for s in state["steps"])
        if not self.steps_:
            raise ValueError("a cascade needs at least one step")
        self.train_accuracy_ = float(state["train_accuracy"])
        self.train_cost_ = float(state["train_cost"])
        self.reached_ = [float(r) for r in state["reached"]]

    def describe(self) -> str:
        if not hasattr(self, "steps_"):
            return f"cascade price={self.price_per_unit:.3g}"
        parts = [
            f"{s.config.label}" + (f" x{s.samples}" if s.samples > 1 else "") for s in self.steps_
        ]
        return f"cascade {' > '.join(parts)}"
