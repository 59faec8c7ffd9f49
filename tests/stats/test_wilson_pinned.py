"""The Wilson score interval against hand math: published values, its quadratic, exact coverage.

None of the expected values below come from ``ponder``: the quadratic is solved here, the
normal quantiles are typed in, and coverage is summed over the binomial distribution exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ponder.curves import wilson_interval

Z95 = 1.959963984540054  # standard normal 0.975 quantile
Z90 = 1.6448536269514722  # 0.95 quantile


def wilson_by_quadratic(successes: int, n: int, z: float) -> tuple[float, float]:
    """Roots in p of (phat - p)^2 = z^2 p (1 - p) / n, the definition of the Wilson interval."""
    phat = successes / n
    a = 1.0 + z * z / n
    b = -(2.0 * phat + z * z / n)
    c = phat * phat
    disc = math.sqrt(b * b - 4.0 * a * c)
    return (-b - disc) / (2.0 * a), (-b + disc) / (2.0 * a)


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        # 95% Wilson intervals to 4 decimals, as printed in textbook tables.
        (0, 10, 0.0, 0.2775),
        (1, 10, 0.0179, 0.4042),
        (5, 10, 0.2366, 0.7634),
        (9, 10, 0.5958, 0.9821),
        (10, 10, 0.7225, 1.0),
        (15, 50, 0.1910, 0.4375),
    ],
)
def test_published_values(k: int, n: int, low: float, high: float) -> None:
    got_low, got_high = wilson_interval(np.array([k / n]), np.array([float(n)]))
    assert got_low[0] == pytest.approx(low, abs=6e-5)
    assert got_high[0] == pytest.approx(high, abs=6e-5)


@pytest.mark.parametrize(("ci", "z"), [(0.95, Z95), (0.90, Z90)])
def test_equals_the_roots_of_its_quadratic(ci: float, z: float) -> None:
    ks, ns = [], []
    for n in (1, 2, 3, 7, 30, 101):
        for k in range(n + 1):
            ks.append(k)
            ns.append(n)
    p = np.array(ks, dtype=float) / np.array(ns, dtype=float)
    low, high = wilson_interval(p, np.array(ns, dtype=float), ci)
    for i, (k, n) in enumerate(zip(ks, ns, strict=True)):
        want_low, want_high = wilson_by_quadratic(k, n, z)
        assert low[i] == pytest.approx(want_low, abs=1e-12)
        assert high[i] == pytest.approx(want_high, abs=1e-12)
    # The endpoints at 0 and 1 are exact, not merely close.
    assert low[p == 0.0].tolist() == [0.0] * int((p == 0.0).sum())
    assert high[p == 1.0].tolist() == [1.0] * int((p == 1.0).sum())


def test_fractional_counts_and_no_data() -> None:
    # A fraction of problems is not k/n for an integer k: the formula still applies.
    low, high = wilson_interval(np.array([0.37, 0.5]), np.array([12.5, 0.0]))
    phat, n = 0.37, 12.5
    a = 1.0 + Z95 * Z95 / n
    b = -(2.0 * phat + Z95 * Z95 / n)
    disc = math.sqrt(b * b - 4.0 * a * phat * phat)
    assert low[0] == pytest.approx((-b - disc) / (2.0 * a), abs=1e-12)
    assert high[0] == pytest.approx((-b + disc) / (2.0 * a), abs=1e-12)
    assert np.isnan(low[1]) and np.isnan(high[1])  # n == 0: undefined, not [0, 1]
    # Also at the edges, where the exact endpoints 0 and 1 would otherwise be filled in.
    low, high = wilson_interval(np.array([0.0, 1.0]), np.array([0.0, 0.0]))
    assert np.isnan(low).all() and np.isnan(high).all()


def _exact_coverage(p: float, n: int, ci: float) -> float:
    """P(p inside the interval) summed over the binomial distribution of k."""
    k = np.arange(n + 1)
    low, high = wilson_interval(k / n, np.full(n + 1, float(n)), ci)
    pmf = np.array([math.comb(n, int(i)) * p**i * (1 - p) ** (n - i) for i in k])
    inside = (low <= p) & (p <= high)
    return float(pmf[inside].sum())


@pytest.mark.parametrize("n", [20, 40, 100])
def test_coverage_is_near_nominal(n: int) -> None:
    """Averaged over p, Wilson covers at close to the nominal level (Brown, Cai, DasGupta 2001)."""
    for ci in (0.95, 0.90):
        grid = np.linspace(0.1, 0.9, 81)
        coverage = np.array([_exact_coverage(float(p), n, ci) for p in grid])
        assert abs(coverage.mean() - ci) < 0.01
        # Wilson's known dips (down to ~0.84 at n=20, p=0.12 for 90%), far above a wrong z.
        assert coverage.min() > ci - 0.07
