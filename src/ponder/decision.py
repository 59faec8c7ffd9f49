"""What a policy decides for one request: a small, serializable plan of steps.

A step runs one configuration (model, mode, budget) for some samples and aggregates them; the
step's escalation rule says when to go on to the next step (cascades), and its stop rule says
when to stop drawing samples early (adaptive consistency).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

Aggregate = Literal["first", "majority"]
Escalate = Literal["never", "no_answer", "disagree", "always"]
AGGREGATES: tuple[str, ...] = ("first", "majority")
ESCALATES: tuple[str, ...] = ("never", "no_answer", "disagree", "always")


@dataclass(frozen=True, order=True)
class Config:
    """A recorded configuration: which model, in which mode, with which token budget."""

    model: str
    mode: str
    budget: int | None = None

    @property
    def label(self) -> str:
        budget = "none" if self.budget is None else str(self.budget)
        return f"{self.model}|{self.mode}|{budget}"

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "mode": self.mode, "budget": self.budget}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        budget = data.get("budget")
        return cls(str(data["model"]), str(data["mode"]), None if budget is None else int(budget))

    @classmethod
    def from_cell(cls, model: object, mode: object, budget: object) -> Config:
        """From an outcome-frame row, where a missing budget is NaN."""
        if budget is None or (isinstance(budget, float) and math.isnan(budget)):
            return cls(str(model), str(mode), None)
        return cls(str(model), str(mode), int(budget))  # type: ignore[call-overload]


@dataclass(frozen=True)
class StopRule:
    """Stop drawing samples once the leading answer has `votes` votes and leads by `margin`.

    With samples drawn one at a time up to the step's `samples`, this is adaptive consistency:
    easy problems stop after a few agreeing samples, hard ones use the full allowance.
    """

    votes: int = 2
    margin: int = 1

    def to_dict(self) -> dict[str, int]:
        return {"votes": self.votes, "margin": self.margin}


@dataclass(frozen=True)
class Step:
    """Run `config` for `samples` samples, aggregate, then maybe escalate to the next step."""

    config: Config
    samples: int = 1
    aggregate: Aggregate = "majority"
    escalate: Escalate = "never"
    stop: StopRule | None = None

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"a step needs at least one sample, got {self.samples}")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"unknown aggregate {self.aggregate!r}")
        if self.escalate not in ESCALATES:
            raise ValueError(f"unknown escalation rule {self.escalate!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "samples": self.samples,
            "aggregate": self.aggregate,
            "escalate": self.escalate,
            "stop": None if self.stop is None else self.stop.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Step:
        stop = data.get("stop")
        return cls(
            config=Config.from_dict(data["config"]),
            samples=int(data.get("samples", 1)),
            aggregate=data.get("aggregate", "majority"),
            escalate=data.get("escalate", "never"),
            stop=None if stop is None else StopRule(int(stop["votes"]), int(stop["margin"])),
        )


@dataclass(frozen=True)
class Decision:
    """The plan for one request: steps run in order until one does not escalate."""

    steps: tuple[Step, ...]
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("a decision needs at least one step")

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": [s.to_dict() for s in self.steps],
            "reason": self.reason,
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        return cls(
            steps=tuple(Step.from_dict(s) for s in data["steps"]),
            reason=str(data.get("reason", "")),
            extra=dict(data.get("extra", {})),
        )


@dataclass(frozen=True)
class DecisionBatch:
    """Decisions for many problems: distinct plans plus, per problem, which plan it gets."""

    decisions: tuple[Decision, ...]
    index: np.ndarray

    def __getitem__(self, row: int) -> Decision:
        return self.decisions[int(self.index[row])]

    def __len__(self) -> int:
        return len(self.index)

    @classmethod
    def same(cls, decision: Decision, n: int) -> DecisionBatch:
        return cls((decision,), np.zeros(n, dtype=np.int64))

    @classmethod
    def from_list(cls, decisions: list[Decision]) -> DecisionBatch:
        """Deduplicate equal plans so replay runs once per distinct plan."""
        keys = [json.dumps(d.to_dict(), sort_keys=True) for d in decisions]
        codes, uniques = pd.factorize(pd.Series(keys, dtype=object))
        first = {int(code): i for i, code in reversed(list(enumerate(codes)))}
        distinct = tuple(decisions[first[k]] for k in range(len(uniques)))
        return cls(distinct, codes.astype(np.int64))
