"""What a policy decides for one request: a small, serializable plan of steps.

A step runs one configuration (model, mode, budget) for some samples and aggregates them; the
step's escalation rule says when to go on to the next step (cascades), and its stop rule says
when to stop drawing samples early (adaptive consistency). A step with an exit rule grows one
chain through a ladder of thinking budgets, probes an answer at each rung, and stops at the
first rung where the rule holds (early exit): the plan a runner or server executes rung by rung.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

Aggregate = Literal["first", "majority"]
Escalate = Literal["never", "no_answer", "disagree", "unsure", "always"]
StopKind = Literal["votes", "beta", "window"]
AGGREGATES: tuple[str, ...] = ("first", "majority")
ESCALATES: tuple[str, ...] = ("never", "no_answer", "disagree", "unsure", "always")
STOP_KINDS: tuple[str, ...] = ("votes", "beta", "window")


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
    """When to stop drawing samples of a step before its allowance (adaptive consistency).

    - ``votes``: the leading answer has `votes` votes and leads the runner-up by `margin`.
    - ``beta``: Adaptive-Consistency's rule (Aggarwal et al., 2023): with `a` votes for the
      leader and `b` for the runner-up, stop once P(p > 1/2) >= `confidence` for
      p ~ Beta(a + 1, b + 1), i.e. the leader is the majority answer with that probability.
    - ``window``: ESC (Li et al., 2024): samples come in windows of `window`; stop after a
      window whose samples all give the same answer.
    """

    votes: int = 2
    margin: int = 1
    kind: StopKind = "votes"
    confidence: float = 0.95
    window: int = 2

    def __post_init__(self) -> None:
        if self.kind not in STOP_KINDS:
            raise ValueError(f"unknown stop rule {self.kind!r}; use one of {', '.join(STOP_KINDS)}")
        if self.votes < 1 or self.margin < 0:
            raise ValueError(f"stop rule needs votes >= 1 and margin >= 0, got {self}")
        if not 0.5 <= self.confidence < 1:
            raise ValueError(f"stop confidence must be in [0.5, 1), got {self.confidence}")
        if self.window < 1:
            raise ValueError(f"stop window must be at least 1, got {self.window}")

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "votes":
            return {"votes": self.votes, "margin": self.margin}
        if self.kind == "beta":
            return {"kind": "beta", "confidence": self.confidence}
        return {"kind": "window", "window": self.window}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StopRule:
        return cls(
            votes=int(data.get("votes", 2)),
            margin=int(data.get("margin", 1)),
            kind=data.get("kind", "votes"),
            confidence=float(data.get("confidence", 0.95)),
            window=int(data.get("window", 2)),
        )


PROBE_FEATURES: tuple[str, ...] = (
    "prob",
    "token_prob",
    "entropy",
    "answered",
    "agree",
    "streak",
    "changes",
    "log_budget",
)


def probe_features(
    answers: Sequence[Hashable | None],
    budgets: Sequence[int],
    prob: float | None,
    token_prob: float | None,
    entropy: float | None,
) -> dict[str, float]:
    """What the probes so far show, as numbers a `Score` weighs (unknown signals are 0).

    `answers` and `budgets` are the probes up to now (None: no answer); the signals are the
    latest probe's. agree: the latest answer equals the one before; streak: how many probes in
    a row end with the latest answer; changes: how often the answer changed so far.
    """
    latest = answers[-1]
    streak = 0
    if latest is not None:
        for a in reversed(answers):
            if a != latest:
                break
            streak += 1
    changes = sum(1 for a, b in itertools.pairwise(answers) if a != b)
    return {
        "prob": _known(prob),
        "token_prob": _known(token_prob),
        "entropy": _known(entropy),
        "answered": float(latest is not None),
        "agree": float(len(answers) > 1 and latest is not None and answers[-2] == latest),
        "streak": float(streak),
        "changes": float(changes),
        "log_budget": math.log2(budgets[-1]),
    }


def _known(value: float | None) -> float:
    return 0.0 if value is None or math.isnan(value) else float(value)


@dataclass(frozen=True)
class Score:
    """A logistic score of the probes so far: p = 1 / (1 + exp(-(bias + sum w * feature))),
    compared with `threshold` (a probability). Features are `PROBE_FEATURES`."""

    weights: tuple[tuple[str, float], ...]
    bias: float
    threshold: float

    def __post_init__(self) -> None:
        unknown = [name for name, _ in self.weights if name not in PROBE_FEATURES]
        if unknown:
            raise ValueError(
                f"unknown probe feature {unknown[0]!r}; known: {', '.join(PROBE_FEATURES)}"
            )
        if not 0 <= self.threshold <= 1:
            raise ValueError(f"score threshold must be a probability, got {self.threshold}")

    def probability(self, features: Mapping[str, float]) -> float:
        logit = self.bias + sum(w * features[name] for name, w in self.weights)
        return 1.0 / (1.0 + math.exp(-max(min(logit, 700.0), -700.0)))

    def to_dict(self) -> dict[str, Any]:
        return {"weights": dict(self.weights), "bias": self.bias, "threshold": self.threshold}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Score:
        weights = tuple((str(k), float(v)) for k, v in dict(data["weights"]).items())
        return cls(weights, float(data["bias"]), float(data["threshold"]))


@dataclass(frozen=True)
class ExitRule:
    """Grow one chain through `rungs` (thinking budgets); stop at the first rung whose probe
    satisfies every condition that is set.

    - `window`: the probe answers of the last `window` rungs are one and the same answer
      (answer consistency, Dynasor-CoT's certainty).
    - `min_prob`: the probe answer's probability is at least this (confidence).
    - `min_token_prob`: the probe answer's per-token (geometric mean) probability is at least
      this (DEER's confidence, a mean over the answer's tokens).
    - `max_entropy`: the mean entropy of the last thinking tokens is at most this (a calm chain).
    - `confident`: a fitted score of the probes so far (`Score`) is at least its threshold.

    `hopeless` is the other way out: stop (giving up, and `unsure`) when its score is at most
    its threshold, e.g. when the answers keep changing and more thinking is unlikely to help.

    A chain that ends on its own stops there (its natural answer). At the last rung, the hard
    cap, it stops whatever the rule says; `unsure` escalation then sends the request on.
    """

    rungs: tuple[int, ...]
    window: int | None = None
    min_prob: float | None = None
    max_entropy: float | None = None
    min_token_prob: float | None = None
    confident: Score | None = None
    hopeless: Score | None = None

    def __post_init__(self) -> None:
        if not self.rungs:
            raise ValueError("an exit rule needs at least one rung")
        if any(r < 1 for r in self.rungs) or list(self.rungs) != sorted(set(self.rungs)):
            raise ValueError(f"exit rungs must be positive and strictly increasing: {self.rungs}")
        if not self.has_sure_conditions and self.hopeless is None:
            raise ValueError(
                "an exit rule needs a window, a min_prob, a min_token_prob, a max_entropy, "
                "a confident score or a hopeless score"
            )
        if self.window is not None and self.window < 1:
            raise ValueError(f"exit window must be at least 1, got {self.window}")
        if self.min_prob is not None and not 0 <= self.min_prob <= 1:
            raise ValueError(f"exit min_prob must be in [0, 1], got {self.min_prob}")
        if self.min_token_prob is not None and not 0 <= self.min_token_prob <= 1:
            raise ValueError(f"exit min_token_prob must be in [0, 1], got {self.min_token_prob}")
        if self.max_entropy is not None and self.max_entropy < 0:
            raise ValueError(f"exit max_entropy must be >= 0, got {self.max_entropy}")

    @property
    def cap(self) -> int:
        return self.rungs[-1]

    @property
    def has_sure_conditions(self) -> bool:
        """Whether any condition can accept an answer (the hopeless score only gives up)."""
        sure = (self.window, self.min_prob, self.max_entropy, self.min_token_prob, self.confident)
        return any(c is not None for c in sure)

    def holds(
        self,
        answers: Sequence[Hashable | None],
        prob: float | None,
        entropy: float | None,
        token_prob: float | None = None,
        budgets: Sequence[int] | None = None,
    ) -> bool:
        """Whether the rule accepts the latest probe: `answers` are the probe answers so far
        (None: no answer), `prob`, `entropy` and `token_prob` the latest probe's signals
        (None: unknown), `budgets` the rungs probed so far (needed by scores). The one-request
        form of what replay computes for many; a live runner calls it."""
        if not answers or not self.has_sure_conditions:
            return False
        if self.window is not None:
            last = answers[-self.window :]
            if len(last) < self.window or last[-1] is None or any(a != last[-1] for a in last):
                return False
        if self.min_prob is not None and not (prob is not None and prob >= self.min_prob):
            return False
        if self.min_token_prob is not None and not (
            token_prob is not None and token_prob >= self.min_token_prob
        ):
            return False
        if self.max_entropy is not None and not (
            entropy is not None and entropy <= self.max_entropy
        ):
            return False
        if self.confident is not None:
            features = self._features(answers, budgets, prob, token_prob, entropy)
            return self.confident.probability(features) >= self.confident.threshold
        return True

    def gives_up(
        self,
        answers: Sequence[Hashable | None],
        prob: float | None,
        entropy: float | None,
        token_prob: float | None = None,
        budgets: Sequence[int] | None = None,
    ) -> bool:
        """Whether the hopeless score says to stop trying at the latest probe."""
        if self.hopeless is None or not answers:
            return False
        features = self._features(answers, budgets, prob, token_prob, entropy)
        return self.hopeless.probability(features) <= self.hopeless.threshold

    def _features(
        self,
        answers: Sequence[Hashable | None],
        budgets: Sequence[int] | None,
        prob: float | None,
        token_prob: float | None,
        entropy: float | None,
    ) -> dict[str, float]:
        budgets = budgets if budgets is not None else self.rungs[: len(answers)]
        return probe_features(answers, budgets, prob, token_prob, entropy)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rungs": list(self.rungs)}
        for key in ("window", "min_prob", "max_entropy", "min_token_prob"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        for key in ("confident", "hopeless"):
            score = getattr(self, key)
            if score is not None:
                out[key] = score.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExitRule:
        def opt(key: str, kind: type) -> Any:
            value = data.get(key)
            return None if value is None else kind(value)

        return cls(
            rungs=tuple(int(r) for r in data["rungs"]),
            window=opt("window", int),
            min_prob=opt("min_prob", float),
            max_entropy=opt("max_entropy", float),
            min_token_prob=opt("min_token_prob", float),
            confident=None if data.get("confident") is None else Score.from_dict(data["confident"]),
            hopeless=None if data.get("hopeless") is None else Score.from_dict(data["hopeless"]),
        )


@dataclass(frozen=True)
class Step:
    """Run `config` for `samples` samples, aggregate, then maybe escalate to the next step.

    With `exit`, the step grows one chain of `config`'s model and mode through the exit rule's
    rungs (the last rung is `config.budget`, the hard cap) and stops early when the rule holds.
    `escalate="unsure"` goes on to the next step when the step's own confidence test fails: for
    an exit step, the chain hit the cap without the rule holding; for a one-sample step, its
    answer's probability is below `min_prob`; for either, there is no answer.
    """

    config: Config
    samples: int = 1
    aggregate: Aggregate = "majority"
    escalate: Escalate = "never"
    stop: StopRule | None = None
    exit: ExitRule | None = None
    min_prob: float | None = None

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"a step needs at least one sample, got {self.samples}")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"unknown aggregate {self.aggregate!r}")
        if self.escalate not in ESCALATES:
            raise ValueError(f"unknown escalation rule {self.escalate!r}")
        if self.exit is not None:
            if self.samples != 1 or self.stop is not None:
                raise ValueError("an exit step grows one chain: samples=1 and no stop rule")
            if self.escalate == "disagree":
                raise ValueError("an exit step grows one chain: it cannot escalate on 'disagree'")
            if self.config.budget != self.exit.cap:
                raise ValueError(
                    f"an exit step's budget is its last rung: budget {self.config.budget}, "
                    f"rungs {list(self.exit.rungs)}"
                )
        if self.min_prob is not None:
            if self.samples != 1 or self.exit is not None:
                raise ValueError("min_prob applies to one-sample steps without an exit rule")
            if not 0 <= self.min_prob <= 1:
                raise ValueError(f"min_prob must be in [0, 1], got {self.min_prob}")
        if self.escalate == "unsure" and self.exit is None and self.min_prob is None:
            raise ValueError("escalate='unsure' needs an exit rule or a min_prob")

    @property
    def sequential(self) -> bool:
        """Whether the step reads signals during generation (not only final answers)."""
        return self.exit is not None or self.min_prob is not None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "config": self.config.to_dict(),
            "samples": self.samples,
            "aggregate": self.aggregate,
            "escalate": self.escalate,
            "stop": None if self.stop is None else self.stop.to_dict(),
        }
        if self.exit is not None:
            out["exit"] = self.exit.to_dict()
        if self.min_prob is not None:
            out["min_prob"] = self.min_prob
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Step:
        stop = data.get("stop")
        exit_rule = data.get("exit")
        min_prob = data.get("min_prob")
        return cls(
            config=Config.from_dict(data["config"]),
            samples=int(data.get("samples", 1)),
            aggregate=data.get("aggregate", "majority"),
            escalate=data.get("escalate", "never"),
            stop=None if stop is None else StopRule.from_dict(stop),
            exit=None if exit_rule is None else ExitRule.from_dict(exit_rule),
            min_prob=None if min_prob is None else float(min_prob),
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
