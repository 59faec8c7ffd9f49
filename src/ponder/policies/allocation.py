"""Budget allocation: one config per request of a batch, most expected correct answers within a
total budget for the batch.

A multiple-choice knapsack: every request starts on its cheapest configuration, then the
upgrades with the best marginal gain in predicted P(correct) per unit of reserved cost are
taken while they fit. Upgrades run along each request's upper convex hull of (cost, P), so
marginal gains per request only decrease and the greedy order is consistent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from ponder.decision import Config, DecisionBatch
from ponder.policies.adaptive import (
    check_samples,
    check_training,
    choice_batch,
    config_list,
    frontier_configs,
)
from ponder.policies.base import Policy, PolicyError
from ponder.policies.predictor import CorrectnessPredictor, fit_predictor
from ponder.policies.serialization import register

if TYPE_CHECKING:
    from ponder.outcomes.matrix import OutcomeMatrix

CostBasis = Literal["cap", "expected"]
COST_BASES: tuple[str, ...] = ("cap", "expected")


@dataclass(frozen=True)
class Allocation:
    """Per request: chosen config (index into `configs_`), its P(correct) and reserved cost."""

    choice: np.ndarray
    p: np.ndarray
    reserved: np.ndarray
    budget: float

    @property
    def total(self) -> float:
        return float(self.reserved.sum())


def upper_hulls(cost: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the configs on the upper-left convex hull of (cost, p), cheapest first.

    Returns `hull` [R, K] (config indices, -1 past the end of a row's hull) and `start` [R]
    (the row's cheapest config, highest p among equally cheap). Each step moves to the
    config of steepest slope among those costlier and more accurate (nearest on ties), so it
    loops over configs, never over rows.
    """
    rows, k = cost.shape
    r = np.arange(rows)
    cheapest = cost.min(axis=1, keepdims=True)
    start = np.where(cost == cheapest, p, -np.inf).argmax(axis=1)
    hull = np.full((rows, k), -1, dtype=np.int64)
    hull[:, 0] = start
    current = start.copy()
    active = np.ones(rows, dtype=bool)
    for step in range(1, k):
        dc = cost - cost[r, current][:, None]
        dp = p - p[r, current][:, None]
        ok = (dc > 0) & (dp > 0) & active[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.where(ok, dp / dc, -np.inf)
        best = slope.max(axis=1)
        active &= np.isfinite(best)
        if not active.any():
            break
        # Nearest among equally steep: the smallest cost with that slope.
        nearest = np.where(ok & (slope == best[:, None]), cost, np.inf).argmin(axis=1)
        current = np.where(active, nearest, current)
        hull[active, step] = current[active]
    return hull, start


def greedy_allocate(cost: np.ndarray, p: np.ndarray, budget: float) -> np.ndarray:
    """Config index per row maximizing sum p subject to sum cost <= budget (greedy MCKP).

    Optimal for the LP relaxation up to the first upgrade that does not fit; the integer
    optimum is higher by at most one upgrade's gain. Raises PolicyError when even the
    cheapest config of every row exceeds the budget.
    """
    rows = cost.shape[0]
    hull, start = upper_hulls(cost, p)
    r = np.arange(rows)
    base = float(cost[r, start].sum())
    if base > budget:
        raise PolicyError(
            f"a budget that no configuration meets: {budget:g} for {rows} request(s), the "
            f"cheapest configuration for every request already reserves {base:g}"
        )
    # Upgrade segments (row, position on its hull), with their cost and gain.
    seg_row, seg_pos = np.nonzero(hull[:, 1:] >= 0)
    seg_pos = seg_pos + 1
    to = hull[seg_row, seg_pos]
    frm = hull[seg_row, seg_pos - 1]
    d_cost = cost[seg_row, to] - cost[seg_row, frm]
    d_gain = p[seg_row, to] - p[seg_row, frm]
    slope = d_gain / d_cost
    # Slopes along a hull decrease; enforce it against rounding so the global order keeps
    # each row's segments in hull order (lexsort: by slope, then row position).
    if len(slope):
        frame = pd.DataFrame({"row": seg_row, "slope": slope})
        slope = frame.groupby("row")["slope"].cummin().to_numpy()
    order = np.lexsort((seg_pos, -slope))
    remaining = budget - base
    alive = np.ones(len(order), dtype=bool)
    taken = np.zeros(len(order), dtype=bool)
    # Rounds: take the longest fitting prefix at once; the first segment that does not fit
    # (and any costing more than what is left) ends its row's upgrades, as in the one-by-one
    # greedy. Each round blocks at least one row, and usually the budget runs out quickly.
    while True:
        cand = order[alive[order]]
        if len(cand) == 0:
            break
        spent = np.cumsum(d_cost[cand])
        fit = int(np.searchsorted(spent, remaining, side="right"))
        if fit:
            taken[cand[:fit]] = True
            alive[cand[:fit]] = False
            remaining -= float(spent[fit - 1])
        if fit == len(cand):
            break
        rest = cand[fit:]
        fails = rest[(d_cost[rest] > remaining) | (rest == cand[fit])]
        first_fail = np.full(rows, np.iinfo(np.int64).max)
        np.minimum.at(first_fail, seg_row[fails], seg_pos[fails])
        alive &= seg_pos < first_fail[seg_row]
    choice = start.copy()
    last = np.zeros(rows, dtype=np.int64)
    np.maximum.at(last, seg_row[taken], seg_pos[taken])
    upgraded = last > 0
    choice[upgraded] = hull[r[upgraded], last[upgraded]]
    return choice


@register
class BudgetAllocator(Policy):
    """Spread a total budget over a batch of requests (`decide_batch` is that batch).

    Give `total_budget` (for the whole batch) or `budget_per_request` (total = it x batch
    size). `cost_basis="cap"` reserves each config's token cap x samples: realized output
    tokens cannot exceed the cap, so the realized total never exceeds the budget (the budget
    is in output tokens; configs without a cap are not candidates). `cost_basis="expected"`
    reserves the predicted expected cost: the budget is then met on average, not per batch,
    and realized cost can exceed it.
    """

    name = "allocation"

    def __init__(
        self,
        total_budget: float | None = None,
        cost_basis: CostBasis = "cap",
        *,
        budget_per_request: float | None = None,
        configs: Sequence[Config | Mapping[str, Any]] | None = None,
        samples: int = 1,
    ) -> None:
        if (total_budget is None) == (budget_per_request is None):
            raise PolicyError("give exactly one of total_budget and budget_per_request")
        for label, value in (("total_budget", total_budget), ("budget", budget_per_request)):
            if value is not None and not (math.isfinite(float(value)) and float(value) >= 0):
                raise PolicyError(f"{label} must be a finite number >= 0, got {value!r}")
        if cost_basis not in COST_BASES:
            raise PolicyError(f"unknown cost_basis {cost_basis!r}; use one of {COST_BASES}")
        self.total_budget = None if total_budget is None else float(total_budget)
        self.budget_per_request = None if budget_per_request is None else float(budget_per_request)
        self.cost_basis: CostBasis = cost_basis
        self.configs = config_list(configs)
        self.samples = check_samples(samples)

    # -- fitting -----------------------------------------------------------------------------

    def _candidates(self, outcomes: OutcomeMatrix) -> list[Config]:
        if self.configs is not None:
            if not self.configs:
                raise PolicyError("allocation needs at least one configuration")
            for config in self.configs:
                outcomes.config_index(config)
            configs = list(dict.fromkeys(self.configs))
            uncapped = [c.label for c in configs if c.budget is None]
            if self.cost_basis == "cap" and uncapped:
                raise PolicyError(
                    f"cost_basis='cap' needs a token cap on every config; {uncapped[0]} has none"
                )
            return configs
        configs = frontier_configs(outcomes, self.samples, caps=self.cost_basis == "cap")
        if not configs:
            raise PolicyError(
                f"no configuration{' with a token cap' if self.cost_basis == 'cap' else ''} "
                f"has {self.samples} recorded sample(s) for every training problem"
            )
        return configs

    def _fit(self, outcomes: OutcomeMatrix) -> None:
        check_training(outcomes, self.name)
        if self.cost_basis == "cap" and outcomes.unit != "tokens":
            raise PolicyError(
                f"cost_basis='cap' reserves output tokens but costs are in {outcomes.unit}; "
                "use cost_basis='expected' or token costs"
            )
        configs = self._candidates(outcomes)
        self.configs_ = tuple(configs)
        self.predictor_ = fit_predictor(outcomes, configs)

    # -- deciding ----------------------------------------------------------------------------

    def budget_for(self, n_requests: int) -> float:
        if self.total_budget is not None:
            return self.total_budget
        assert self.budget_per_request is not None
        return self.budget_per_request * n_requests

    def allocate(self, problems: pd.DataFrame) -> Allocation:
        """The allocation for exactly this batch of requests."""
        self.check_fitted()
        n = len(problems)
        budget = self.budget_for(n)
        if n == 0:
            empty = np.zeros(0)
            return Allocation(np.zeros(0, dtype=np.int64), empty, empty, budget)
        p = self.predictor_.predict_proba(problems)
        if self.cost_basis == "cap":
            caps = np.array([c.budget or 0 for c in self.configs_], dtype=float) * self.samples
            reserved = np.tile(caps, (n, 1))
            limit = budget
        else:
            reserved = self.predictor_.expected_cost(problems) * self.samples
            limit = budget * (1 - 1e-12)  # room for float rounding of summed real costs
        choice = greedy_allocate(reserved, p, limit)
        rows = np.arange(n)
        return Allocation(choice, p[rows, choice], reserved[rows, choice], budget)

    def predict(self, problems: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Chosen config index (into `configs_`) and its predicted P(correct), per request."""
        allocation = self.allocate(problems)
        return allocation.choice, allocation.p

    def decide_batch(self, problems: pd.DataFrame) -> DecisionBatch:
        choice = self.allocate(problems).choice
        return choice_batch(self.configs_, choice, self.samples, self.name)

    # -- parameters and state ----------------------------------------------------------------

    def get_params(self) -> dict[str, Any]:
        return {
            "total_budget": self.total_budget,
            "cost_basis": self.cost_basis,
            "budget_per_request": self.budget_per_request,
            "configs": None if self.configs is None else [c.to_dict() for c in self.configs],
            "samples": self.samples,
        }

    def get_state(self) -> dict[str, Any]:
        return {
            "configs": [c.to_dict() for c in self.configs_],
            "predictor": self.predictor_.get_state(),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        predictor = CorrectnessPredictor.from_state(state["predictor"])
        configs = tuple(Config.from_dict(c) for c in state["configs"])
        if predictor.configs_ != configs:
            raise ValueError("configs do not match the predictor's configs")
        self.predictor_, self.configs_ = predictor, configs

    def describe(self) -> str:
        if self.budget_per_request is not None:
            amount = f"{self.budget_per_request:g}/request"
        else:
            amount = f"{self.total_budget:g} total"
        return f"{self.name}({amount}, {self.cost_basis})"
