"""The policy interface: fitted like an estimator, deciding from what is known up front.

`fit(matrix)` learns from recorded outcomes (learned attributes end with `_`);
`decide_batch(problems)` sees only the problems' pre-generation information (dataset, id,
level, subject, text), never their outcomes, so a policy cannot peek at what it is judged on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Self

import pandas as pd

from ponder.decision import Decision, DecisionBatch
from ponder.errors import PonderError

if TYPE_CHECKING:
    from ponder.outcomes.matrix import OutcomeMatrix


class PolicyError(PonderError):
    """A policy cannot be fitted, loaded or applied as asked."""


class NotFittedError(PolicyError):
    """decide() was called before fit()."""


class Policy:
    """Base class: subclasses set `name`, implement `_fit` and `decide_batch`.

    Constructor arguments are the policy's parameters (`get_params`); what `fit` learns lives
    in attributes ending with `_` and is saved by `get_state` / restored by `set_state`, as
    plain JSON (see `ponder.policies.serialization`).
    """

    name: ClassVar[str] = "policy"
    servable: ClassVar[bool] = True

    # -- estimator API -----------------------------------------------------------------------

    def fit(self, outcomes: OutcomeMatrix) -> Self:
        self._fit(outcomes)
        self.fingerprint_ = outcomes.fingerprint()
        self.n_problems_fitted_ = outcomes.n_problems
        return self

    def _fit(self, outcomes: OutcomeMatrix) -> None:
        raise NotImplementedError

    def decide_batch(self, problems: pd.DataFrame) -> DecisionBatch:
        raise NotImplementedError

    def decide(self, problem: Mapping[str, Any]) -> Decision:
        """The decision for one problem (a mapping with dataset, problem_id, text, level...)."""
        row = {c: problem.get(c) for c in ("dataset", "problem_id", "level", "subject", "text")}
        return self.decide_batch(pd.DataFrame([row]))[0]

    def check_fitted(self) -> None:
        if not hasattr(self, "fingerprint_"):
            raise NotFittedError(f"{self.name} policy is not fitted: call fit() or load one")

    # -- parameters and state ----------------------------------------------------------------

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments, JSON-ready."""
        return {}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        """Rebuild from `get_params()` output (subclasses with non-JSON params override)."""
        return cls(**params)

    def get_state(self) -> dict[str, Any]:
        """Learned attributes, JSON-ready (subclasses extend)."""
        return {}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore learned attributes from `get_state()` output (subclasses extend)."""

    def describe(self) -> str:
        """One line for tables: the policy and its main parameter."""
        params = ", ".join(f"{k}={v}" for k, v in self.get_params().items() if v is not None)
        return f"{self.name}({params})" if params else self.name
