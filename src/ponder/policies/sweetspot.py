"""Sweet-spot cap: one model, capped at the token budget where its accuracy stops improving.

Per (model, mode), the training accuracy of each recorded cap gives a budget curve. "best"
takes its peak; "noise" takes the smallest cap whose accuracy is not distinguishable from the
peak (the paired bootstrap CI over training problems of peak minus it contains 0), the same
rule as `sweet_spot_min` of `ponder.curves.sweetspot`. Every request then gets that config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from ponder.curves.bootstrap import percentile_interval, resample_counts
from ponder.decision import Config, Decision, DecisionBatch, Step
from ponder.policies.adaptive import check_training
from ponder.policies.base import Policy, PolicyError
from ponder.policies.serialization import register

if TYPE_CHECKING:
    from ponder.outcomes.matrix import OutcomeMatrix

Tolerance = Literal["best", "noise"]
TOLERANCES: tuple[str, ...] = ("best", "noise")


@register
class SweetSpotCap(Policy):
    """Always the chosen model's sweet-spot cap (one sample).

    The model (and mode) default to the group whose peak training accuracy is highest
    (cheaper mean cost on ties); `model` / `mode` restrict the choice. Only capped configs
    recorded for every training problem count. Caveat: the peak is chosen on the same
    problems that measure it (winner's curse), so "best" tends to pick a larger cap than a
    fresh sample would justify; "noise" corrects for this on the side of the cheaper cap.
    """

    name = "sweet_spot"

    def __init__(
        self,
        tolerance: Tolerance = "noise",
        model: str | None = None,
        mode: str | None = None,
        n_boot: int = 1000,
        ci: float = 0.95,
        seed: int = 0,
    ) -> None:
        if tolerance not in TOLERANCES:
            raise PolicyError(f"unknown tolerance {tolerance!r}; use one of {TOLERANCES}")
        if int(n_boot) != n_boot or n_boot < 1:
            raise PolicyError(f"n_boot must be a positive integer, got {n_boot!r}")
        if not 0 < ci < 1:
            raise PolicyError(f"ci must be in (0, 1), got {ci!r}")
        self.tolerance: Tolerance = tolerance
        self.model = model
        self.mode = mode
        self.n_boot = int(n_boot)
        self.ci = float(ci)
        self.seed = int(seed)

    def _fit(self, outcomes: OutcomeMatrix) -> None:
        check_training(outcomes, self.name)
        complete = (outcomes.n_samples > 0).all(axis=0)
        capped = np.array([c.budget is not None for c in outcomes.configs])
        keep = np.flatnonzero(complete & capped)
        if len(keep) == 0:
            raise PolicyError("no capped configuration was recorded for every training problem")
        configs = [outcomes.configs[i] for i in keep]
        groups = pd.DataFrame(
            {
                "model": [c.model for c in configs],
                "mode": [c.mode for c in configs],
                "budget": [c.budget for c in configs],
                "col": np.arange(len(configs)),
            }
        )
        if self.model is not None or self.mode is not None:
            mask = np.ones(len(groups), dtype=bool)
            if self.model is not None:
                mask &= groups["model"].to_numpy() == self.model
            if self.mode is not None:
                mask &= groups["mode"].to_numpy() == self.mode
            if not mask.any():
                known = sorted({f"{c.model} ({c.mode})" for c in configs})
                raise PolicyError(
                    f"no capped configuration of model={self.model!r} mode={self.mode!r} "
                    f"recorded for every training problem; known: {', '.join(known)}"
                )
            groups = groups[mask]
        per_problem = outcomes.mean_correct()[:, keep]  # [P, K], complete: no NaN
        accuracy = per_problem.mean(axis=0)
        _, cost = outcomes.stats.pooled(keep)
        # Paired resamples of training problems: every config is scored on the same multiset.
        weights = resample_counts(
            outcomes.n_problems, self.n_boot, np.random.default_rng(self.seed)
        )
        replicates = (weights.astype(float) @ per_problem) / outcomes.n_problems  # [B, K]
        table: list[dict[str, Any]] = []
        for (model, mode), group in groups.groupby(["model", "mode"], sort=True):
            group = group.sort_values("budget")
            cols = group["col"].to_numpy()
            acc = accuracy[cols]
            best = int(np.argmax(acc))  # smallest budget on ties
            chosen = best
            if self.tolerance == "noise":
                diffs = replicates[:, cols[[best]]] - replicates[:, cols]
                low, high = percentile_interval(diffs, self.ci)
                within = (low <= 0.0) & (high >= 0.0)
                within[best] = True
                chosen = int(np.flatnonzero(within)[0])
            table.append(
                {
                    "model": str(model),
                    "mode": str(mode),
                    "budgets": [int(b) for b in group["budget"]],
                    "accuracies": [float(a) for a in acc],
                    "best_budget": int(group["budget"].iloc[best]),
                    "best_accuracy": float(acc[best]),
                    "budget": int(group["budget"].iloc[chosen]),
                    "accuracy": float(acc[chosen]),
                    "cost": float(cost[cols[chosen]]),
                }
            )
        pick = min(table, key=lambda row: (-row["best_accuracy"], row["cost"], row["model"]))
        self.table_ = table
        self.config_ = Config(pick["model"], pick["mode"], pick["budget"])

    def decide_batch(self, problems: pd.DataFrame) -> DecisionBatch:
        self.check_fitted()
        step = Step(self.config_, samples=1, aggregate="majority")
        return DecisionBatch.same(Decision((step,), reason=self.name), len(problems))

    def get_params(self) -> dict[str, Any]:
        return {
            "tolerance": self.tolerance,
            "model": self.model,
            "mode": self.mode,
            "n_boot": self.n_boot,
            "ci": self.ci,
            "seed": self.seed,
        }

    def get_state(self) -> dict[str, Any]:
        return {"config": self.config_.to_dict(), "table": self.table_}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.config_ = Config.from_dict(dict(state["config"]))
        self.table_ = [dict(row) for row in state["table"]]

    def describe(self) -> str:
        chosen = f" -> {self.config_.label}" if hasattr(self, "config_") else ""
        return f"{self.name}({self.tolerance}){chosen}"
