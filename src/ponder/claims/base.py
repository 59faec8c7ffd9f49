"""What a claim check returns, and the one rule that turns an interval into a verdict.

Every check in the suite reports the same shape (a :class:`Finding`): a verdict, the effect
size with its confidence interval, how many problems it rests on, the protocol in words, and
the table behind its plot. The verdict rule is shared so that "supported" means the same thing
for every claim (see :func:`decide` and docs/claims.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

if TYPE_CHECKING:
    import pandas as pd

    from ponder.claims.data import ClaimData

Verdict = Literal["supported", "contradicted", "inconclusive", "insufficient"]

VERDICTS: tuple[Verdict, ...] = ("supported", "contradicted", "inconclusive", "insufficient")


@dataclass(frozen=True)
class Effect:
    """An effect size with its interval, signed so that positive values favour the claim.

    ``min_effect`` is the smallest value that would matter in practice (same unit); an
    interval entirely below it contradicts the claim even when it excludes zero.
    """

    name: str
    value: float
    low: float
    high: float
    unit: str
    min_effect: float = 0.0
    ci: float = 0.95

    def __post_init__(self) -> None:
        if not (self.low <= self.value <= self.high) and not any(
            math.isnan(v) for v in (self.low, self.value, self.high)
        ):
            raise ValueError(
                f"{self.name}: estimate {self.value} outside its interval [{self.low}, {self.high}]"
            )


@dataclass(frozen=True)
class Finding:
    """One verdict of one claim on one slice of one dataset.

    ``scope`` names the slice (a model pair, a difficulty band, "all models");
    ``reason`` says in one sentence why the verdict is what it is (for "insufficient": what
    data is missing); ``table`` holds the numbers behind the plot; ``extras`` holds secondary
    figures worth printing (e.g. the share of requests routed to no-think).
    """

    claim: str
    dataset: str
    scope: str
    verdict: Verdict
    reason: str
    effect: Effect | None = None
    n_problems: int = 0
    protocol: str = ""
    table: pd.DataFrame | None = field(default=None, compare=False, repr=False)
    extras: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}; expected one of {VERDICTS}")
        if self.verdict != "insufficient" and self.effect is None:
            raise ValueError(f"{self.claim}: a {self.verdict!r} verdict needs an effect")


def decide(effect: Effect) -> tuple[Verdict, str]:
    """The verdict an interval supports, and why, the same way for every claim.

    - **contradicted** when the whole interval lies below ``min_effect``: the data rule out
      an effect large enough to matter (this includes effects in the opposite direction);
    - **supported** when the whole interval lies above zero (and it is not contradicted);
    - **inconclusive** otherwise: the interval is compatible both with no effect and with
      one that matters. More problems or samples would settle it.
    """
    level = f"{effect.ci:.0%} CI"
    interval = f"{effect.value:+.3g} {effect.unit} [{effect.low:+.3g}, {effect.high:+.3g}]"
    if any(math.isnan(v) for v in (effect.value, effect.low, effect.high)):
        return "inconclusive", f"{effect.name}: undefined on these data"
    if effect.high < effect.min_effect:
        bound = (
            "zero"
            if effect.min_effect == 0
            else f"the smallest effect that matters ({effect.min_effect:+.3g} {effect.unit})"
        )
        return "contradicted", f"{effect.name} {interval}: the {level} lies below {bound}"
    if effect.low > 0:
        return "supported", f"{effect.name} {interval}: the {level} excludes zero"
    return "inconclusive", f"{effect.name} {interval}: the {level} includes zero"


def found(
    claim: str,
    dataset: str,
    scope: str,
    effect: Effect,
    *,
    n_problems: int,
    protocol: str,
    table: pd.DataFrame | None = None,
    extras: dict[str, float] | None = None,
    note: str = "",
) -> Finding:
    """A finding whose verdict comes from :func:`decide` (``note`` is appended to the reason)."""
    verdict, reason = decide(effect)
    return Finding(
        claim=claim,
        dataset=dataset,
        scope=scope,
        verdict=verdict,
        reason=f"{reason}; {note}" if note else reason,
        effect=effect,
        n_problems=n_problems,
        protocol=protocol,
        table=table,
        extras=dict(extras or {}),
    )


def insufficient(
    claim: str,
    dataset: str,
    reason: str,
    *,
    scope: str = "all",
    n_problems: int = 0,
    protocol: str = "",
    table: pd.DataFrame | None = None,
    extras: Mapping[str, float] | None = None,
) -> Finding:
    """A refusal: the data cannot test the claim, and ``reason`` says what is missing. A
    refusal may still carry descriptive figures (``table``, ``extras``)."""
    return Finding(
        claim=claim,
        dataset=dataset,
        scope=scope,
        verdict="insufficient",
        reason=reason,
        n_problems=n_problems,
        protocol=protocol,
        table=table,
        extras=dict(extras or {}),
    )


class Claim:
    """One hypothesis and its check. Subclasses set the class attributes and ``check``.

    ``check`` receives one dataset's data and returns at least one finding (an
    "insufficient" one with the reason when the data cannot test the claim); it must not
    raise on data it cannot use. ``plot`` draws the finding's table (PNG bytes) or returns
    None when there is nothing to draw.
    """

    number: ClassVar[int]
    id: ClassVar[str]
    title: ClassVar[str]
    hypothesis: ClassVar[str]
    # The data the check needs, in one line (shown when it refuses, and in docs/claims.md).
    needs: ClassVar[str]
    # Whether the check generates with a model (local runs) rather than reading the store.
    live: ClassVar[bool] = False

    def check(self, data: ClaimData) -> list[Finding]:
        raise NotImplementedError

    def plot(self, finding: Finding) -> bytes | None:
        return None
