"""The candidates an evaluation sweeps: every uniform configuration, the oracle, and each
policy family over its main parameter, so each family draws an accuracy-cost curve.

Families live in a registry (name -> builder); an unknown name is an error, never a silent
fall-through. Price grids are multiples of a scale computed on each fold's training problems
(a price per cost unit worth 1% of accuracy per typical training request), so nothing about
the held-out problems, not even their costs, shapes the candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ponder.decision import Config
from ponder.evaluate.protocol import Candidate
from ponder.outcomes.matrix import OutcomeMatrix
from ponder.policies.base import Policy, PolicyError
from ponder.policies.oracle import Oracle
from ponder.policies.uniform import Uniform

PRICE_MULTIPLIERS: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
# No candidate draws more samples of one configuration than this (the published adaptive-
# sampling rules allow 40), so an evaluation keeps only the first SEQUENTIAL_SLOTS samples of
# each cell in memory (`OutcomeMatrix.head`); one-sample scores still use every sample.
SEQUENTIAL_SLOTS = 64

FullConfigs = list[tuple[Config, int]]
Builder = Callable[[OutcomeMatrix, FullConfigs], list[Candidate]]


class CannotRun(PolicyError):
    """A family has nothing to work with on this data (the message says why)."""


@dataclass(frozen=True)
class Skipped:
    """A family left out of an evaluation, and why."""

    family: str
    reason: str


def full_configs(matrix: OutcomeMatrix) -> FullConfigs:
    """Configurations recorded for every problem, with the sample count all of them have."""
    counts = matrix.n_samples
    return [
        (config, int(counts[:, c].min()))
        for c, config in enumerate(matrix.configs)
        if counts[:, c].min() > 0
    ]


def has_answers(matrix: OutcomeMatrix) -> bool:
    """Whether every recorded sample says what it answered (votes and escalation need it)."""
    return not bool(matrix.stats.unknown.any())


def typical_cost(matrix: OutcomeMatrix) -> float:
    """Median recorded cost of one sample: the scale of the price grids (training data only;
    on a matrix cut by `head`, of the samples it keeps)."""
    values = matrix.cost[~np.isnan(matrix.cost)]
    if len(values) == 0:
        raise PolicyError(f"no recorded costs in {matrix.unit}")
    median = float(np.median(values))
    return median if median > 0 else float(values.max() or 1.0)


def price_scale(train: OutcomeMatrix) -> float:
    """Price per cost unit worth 1% of accuracy per typical request of the training data."""
    return 0.01 / typical_cost(train)


def _priced(family: str, make: Callable[[float], Policy]) -> list[Candidate]:
    """One candidate per price multiplier; the price is scaled on the fold's training data."""

    def build(m: float) -> Callable[[OutcomeMatrix], Policy]:
        return lambda train: make(m * price_scale(train))

    return [Candidate(f"{family} price x{m:g}", family, build(m)) for m in PRICE_MULTIPLIERS]


def _uniform(config: Config, samples: int) -> Candidate:
    suffix = f" x{samples}" if samples > 1 else ""
    return Candidate(
        f"uniform {config.label}{suffix}",
        "uniform",
        lambda _train: Uniform(config, samples=samples),
    )


# Builders import their policy modules lazily: they pull scikit-learn, which `ponder --help`
# should not pay for.


def _adaptive(matrix: OutcomeMatrix, configs: FullConfigs) -> list[Candidate]:
    from ponder.policies.adaptive import DifficultyAdaptive

    return _priced("adaptive", DifficultyAdaptive)


def _router(matrix: OutcomeMatrix, configs: FullConfigs) -> list[Candidate]:
    from ponder.policies.router import ThinkRouter
    from ponder.types import base_mode

    modes = {base_mode(c.mode) for c, _ in configs}
    if not {"think", "no-think"} <= modes:
        raise CannotRun("needs both think and no-think configurations")
    return _priced("router", ThinkRouter)


def _allocation(matrix: OutcomeMatrix, configs: FullConfigs) -> list[Candidate]:
    from ponder.policies.allocation import BudgetAllocator

    caps = sorted({c.budget for c, _ in configs if c.budget is not None})
    if not caps:
        raise CannotRun("needs configurations with a token budget")
    grid = np.unique(np.geomspace(caps[0], caps[-1], num=6).round())

    def build(b: float) -> Callable[[OutcomeMatrix], Policy]:
        return lambda _train: BudgetAllocator(budget_per_request=b)

    return [Candidate(f"allocation {b:.0f}/request", "allocation", build(float(b))) for b in grid]


def _cascade(matrix: OutcomeMatrix, configs: FullConfigs) -> list[Candidate]:
    from ponder.policies.cascade import TierCascade

    if not has_answers(matrix):
        raise CannotRun("escalates when samples disagree: needs the extracted answers")
    return _priced("cascade", TierCascade)


def _consistency(matrix: OutcomeMatrix, configs: FullConfigs) -> list[Candidate]:
    from ponder.policies.consistency import AdaptiveConsistency

    if not has_answers(matrix):
        raise CannotRun("stops when samples agree: needs the extracted answers")
    most = min(max(have for _, have in configs), SEQUENTIAL_SLOTS)
    if most < 2:
        raise CannotRun("needs at least two recorded samples per configuration")

    def build(v: int) -> Callable[[OutcomeMatrix], Policy]:
        return lambda _train: AdaptiveConsistency(max_samples=most, votes=v)

    return [
        Candidate(f"adaptive_consistency votes={v}", "adaptive_consistency", build(v))
        for v in vote_grid(most)
    ]


def vote_grid(most: int) -> list[int]:
    """Vote sizes to try: the k of pass@k / maj@k from 2 (every one up to 16, then 24, 32,
    48, 64, ...), so deep data does not multiply the candidates by its samples."""
    from ponder.curves.passk import k_grid

    return [int(k) for k in k_grid(most) if k >= 2]


def _sweet_spot(matrix: OutcomeMatrix, configs: FullConfigs) -> list[Candidate]:
    from ponder.policies.sweetspot import SweetSpotCap

    if not any(c.budget is not None for c, _ in configs):
        raise CannotRun("needs configurations with a token budget")

    def build(t: str) -> Callable[[OutcomeMatrix], Policy]:
        return lambda _train: SweetSpotCap(tolerance=t)  # type: ignore[arg-type]

    return [Candidate(f"sweet_spot {t}", "sweet_spot", build(t)) for t in ("best", "noise")]


def _has_ladder(matrix: OutcomeMatrix) -> None:
    if matrix.signals is None or not matrix.signals.has_chains:
        raise CannotRun(
            "reads probes during generation: needs ladder data from a live sweep "
            "(`ponder sweep run`), which imported outcomes do not have"
        )


def _online(name: str) -> Builder:
    """A family that reads the generation, swept over prices; on ladder data only."""

    def build(matrix: OutcomeMatrix, configs: FullConfigs) -> list[Candidate]:
        from ponder.policies.serialization import registered

        _has_ladder(matrix)
        return _priced(name, registered()[name])

    return build


def _published(name: str) -> Builder:
    """A published rule at its paper's defaults: one candidate, no parameter sweep (its fit
    only picks what the rule leaves open, e.g. which model's chain). Data it cannot run on
    (no ladder, one sample) is reported by the evaluation with the rule's own reason."""

    def build(matrix: OutcomeMatrix, configs: FullConfigs) -> list[Candidate]:
        from ponder.policies.serialization import registered

        cls = registered()[name]
        return [Candidate(name, name, lambda _train: cls())]

    return build


# Families that read signals during generation (probe answers, confidences): ponder's own.
ONLINE: tuple[str, ...] = (
    "early_exit",
    "probe_escalate",
    "level_exit",
    "learned_exit",
    "learned_escalate",
)
# The published rules, each at its paper's defaults (docs/baselines.md).
PUBLISHED: tuple[str, ...] = (
    "dynasor_cot",
    "deer",
    "adaptive_consistency_beta",
    "esc",
    "autothink",
    "routellm_threshold",
)

REGISTRY: dict[str, Builder] = {
    "adaptive": _adaptive,
    "router": _router,
    "allocation": _allocation,
    "cascade": _cascade,
    "adaptive_consistency": _consistency,
    "sweet_spot": _sweet_spot,
    **{name: _online(name) for name in ONLINE},
    **{name: _published(name) for name in PUBLISHED},
}
FAMILIES: tuple[str, ...] = tuple(REGISTRY)
# `ponder demo` leaves out the two slowest a-priori families (text models refitted per price);
# on recorded MATH-500 and on ponder's sweep neither beats uniform. `ponder evaluate` runs all.
DEMO_FAMILIES: tuple[str, ...] = tuple(f for f in FAMILIES if f not in ("adaptive", "allocation"))


def check_families(families: Sequence[str]) -> None:
    """Unknown family names are an error listing the known ones."""
    unknown = [f for f in families if f not in REGISTRY]
    if unknown:
        raise PolicyError(f"unknown policy family {unknown[0]!r}; known: {', '.join(FAMILIES)}")


def candidates(
    matrix: OutcomeMatrix,
    families: Sequence[str] = FAMILIES,
    *,
    max_uniform_samples: int = 3,
    skipped: list[Skipped] | None = None,
) -> list[Candidate]:
    """Uniform family + oracle + the requested policy families with their sweeps.

    Families that cannot run on this data are left out and, when `skipped` is given, listed
    there with the reason.
    """
    check_families(families)
    configs = full_configs(matrix)
    if not configs:
        raise PolicyError(
            "no configuration was recorded for every problem of this selection: "
            "select one dataset (--dataset) so a uniform baseline exists"
        )
    votes = max_uniform_samples if has_answers(matrix) else 1  # a vote needs answers
    out = [_uniform(config, k) for config, have in configs for k in range(1, min(votes, have) + 1)]
    out.append(Candidate("oracle", "oracle", lambda _train: Oracle()))
    for family in families:
        try:
            out.extend(REGISTRY[family](matrix, configs))
        except CannotRun as exc:
            if skipped is not None:
                skipped.append(Skipped(family, str(exc)))
    return out
