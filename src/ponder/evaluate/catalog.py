"""The candidates an evaluation sweeps: every uniform configuration, the oracle, and each
policy family over its main parameter, so each family draws an accuracy-cost curve.

Grids are spaced from the recorded costs (a price per cost unit of 1% of accuracy per typical
request, and multiples of it); the spacing never looks at correctness, so it is not tuning.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np

from ponder.decision import Config
from ponder.evaluate.protocol import Candidate
from ponder.outcomes.matrix import OutcomeMatrix
from ponder.policies.base import PolicyError
from ponder.policies.oracle import Oracle
from ponder.policies.uniform import Uniform

FAMILIES: tuple[str, ...] = (
    "adaptive",
    "router",
    "allocation",
    "cascade",
    "adaptive_consistency",
    "sweet_spot",
)
PRICE_MULTIPLIERS: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


def full_configs(matrix: OutcomeMatrix) -> list[tuple[Config, int]]:
    """Configurations recorded for every problem, with the sample count all of them have."""
    counts = matrix.n_samples
    return [
        (config, int(counts[:, c].min()))
        for c, config in enumerate(matrix.configs)
        if counts[:, c].min() > 0
    ]


def typical_cost(matrix: OutcomeMatrix) -> float:
    """Median recorded cost of one sample: the scale of the price grids."""
    values = matrix.cost[~np.isnan(matrix.cost)]
    if len(values) == 0:
        raise PolicyError(f"no recorded costs in {matrix.unit}")
    median = float(np.median(values))
    return median if median > 0 else float(values.max() or 1.0)


def _uniform(config: Config, samples: int) -> Candidate:
    suffix = f" x{samples}" if samples > 1 else ""
    return Candidate(
        f"uniform {config.label}{suffix}", "uniform", partial(Uniform, config, samples=samples)
    )


def candidates(
    matrix: OutcomeMatrix,
    families: Sequence[str] = FAMILIES,
    *,
    max_uniform_samples: int = 3,
) -> list[Candidate]:
    """Uniform family + oracle + the requested policy families with their sweeps."""
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise PolicyError(f"unknown policy family {unknown[0]!r}; known: {', '.join(FAMILIES)}")
    configs = full_configs(matrix)
    if not configs:
        raise PolicyError(
            "no configuration was recorded for every problem of this selection: "
            "select one dataset (--dataset) so a uniform baseline exists"
        )
    out = [
        _uniform(config, k)
        for config, have in configs
        for k in range(1, min(max_uniform_samples, have) + 1)
    ]
    out.append(Candidate("oracle", "oracle", Oracle))
    scale = 0.01 / typical_cost(matrix)
    prices = [m * scale for m in PRICE_MULTIPLIERS]
    for family in families:
        out.extend(_family(family, matrix, prices, configs))
    return out


def _family(
    family: str,
    matrix: OutcomeMatrix,
    prices: list[float],
    configs: list[tuple[Config, int]],
) -> list[Candidate]:
    # Imported here: these modules pull scikit-learn, which `ponder --help` should not pay for.
    if family == "adaptive":
        from ponder.policies.adaptive import DifficultyAdaptive

        return [
            Candidate(f"adaptive price={p:.3g}", family, partial(DifficultyAdaptive, p))
            for p in prices
        ]
    if family == "router":
        from ponder.policies.router import ThinkRouter

        modes = {c.mode for c, _ in configs}
        if not {"think", "no-think"} <= modes:
            return []  # nothing to route between
        return [Candidate(f"router price={p:.3g}", family, partial(ThinkRouter, p)) for p in prices]
    if family == "allocation":
        from ponder.policies.allocation import BudgetAllocator

        caps = sorted({c.budget for c, _ in configs if c.budget is not None})
        if not caps:
            return []
        grid = np.unique(np.geomspace(caps[0], caps[-1], num=6).round())
        return [
            Candidate(
                f"allocation {b:.0f}/request",
                family,
                partial(BudgetAllocator, budget_per_request=float(b)),
            )
            for b in grid
        ]
    if family == "cascade":
        from ponder.policies.cascade import TierCascade

        return [
            Candidate(f"cascade price={p:.3g}", family, partial(TierCascade, p)) for p in prices
        ]
    if family == "adaptive_consistency":
        from ponder.policies.consistency import AdaptiveConsistency

        most = max(have for _, have in configs)
        if most < 2:
            return []  # one sample per configuration: nothing to stop early
        return [
            Candidate(
                f"adaptive_consistency votes={v}",
                family,
                partial(AdaptiveConsistency, max_samples=most, votes=v),
            )
            for v in range(2, most + 1)
        ]
    from ponder.policies.sweetspot import SweetSpotCap

    if not any(c.budget is not None for c, _ in configs):
        return []  # no budgets: no sweet spot to cap at
    return [
        Candidate(f"sweet_spot {t}", family, partial(SweetSpotCap, tolerance=t))
        for t in ("best", "noise")
    ]
