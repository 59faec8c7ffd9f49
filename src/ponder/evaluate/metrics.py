"""Metrics of an evaluation, each with a paired bootstrap CI over problems.

All candidates are scored on the same problem resamples, and every selection (which uniform
configuration is best, which point of a policy's curve reaches an accuracy) is redone inside
each resample, so the intervals include the uncertainty of those choices.

- accuracy and mean cost of every candidate;
- the best uniform configuration (highest accuracy; cheaper on ties), the baseline;
- per policy family: tokens (cost) saved at iso-accuracy with the best uniform, accuracy gain at
  iso-cost, the share of the uniform-to-oracle gap recovered at the best uniform's cost, and the
  cost to reach x% of the best uniform accuracy (next to the uniform hull's cost for it);
- against the whole uniform frontier, the concave hull of the uniform points (a random mix of
  two configurations reaches any point between them, as RouteLLM's random router does): the
  largest accuracy gain at equal cost and the largest cost saving at equal accuracy over the
  family's sweep. The max over a sweep is optimistic even with the selection redone in
  each resample: read it as "where the policy helps most", next to the fixed-baseline numbers;
- calibration error of the predicted P(correct) where a policy predicts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ponder.curves.bootstrap import dataset_rng, resample_counts
from ponder.evaluate.protocol import Evaluation
from ponder.policies.predictor import calibration_error

BASELINE = "uniform"
ORACLE = "oracle"


def problem_weights(problems: pd.DataFrame, n_boot: int, seed: int) -> np.ndarray:
    """Resample counts (n_boot x P), stratified by dataset, normalized to sum to 1 per row."""
    n = len(problems)
    counts = np.zeros((n_boot, n), dtype=np.float64)
    for dataset, rows in problems.groupby("dataset", sort=True).indices.items():
        counts[:, rows] = resample_counts(len(rows), n_boot, dataset_rng(seed, str(dataset)))
    normalized: np.ndarray = counts / counts.sum(axis=1, keepdims=True)
    return normalized


def _frontier_at(cost: np.ndarray, acc: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Best accuracy reachable at cost <= `at` along a family's points (step function).

    Shapes: cost/acc (B, K), at (B,). NaN where no point is that cheap.
    """
    ok = cost <= at[:, None] * (1 + 1e-12)
    best = np.where(ok, acc, -np.inf).max(axis=1)
    return np.where(np.isfinite(best), best, np.nan)


def _hull(cost: np.ndarray, acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the upper-left concave hull of (cost, accuracy) points.

    Mixing two configurations at random (a share of requests to each) reaches every point on
    the segment between them, so the uniform baseline is this hull, not just its points.
    """
    order = np.lexsort((-acc, cost))
    xs, ys = cost[order], acc[order]
    hull: list[int] = []
    for i in range(len(xs)):
        if hull and ys[i] <= ys[hull[-1]]:
            continue  # dominated: costs at least as much for no more accuracy
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # Drop b if it lies on or below the segment from a to i.
            if (ys[b] - ys[a]) * (xs[i] - xs[a]) <= (ys[i] - ys[a]) * (xs[b] - xs[a]):
                hull.pop()
            else:
                break
        hull.append(i)
    return xs[hull], ys[hull]


def _hull_accuracy_at(cost: np.ndarray, acc: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Per resample: the uniform hull's accuracy at cost `at` (NaN below its cheapest point)."""
    out = np.full(len(at), np.nan)
    for b in range(len(at)):
        hx, hy = _hull(cost[b], acc[b])
        if at[b] >= hx[0] - 1e-12:
            out[b] = np.interp(at[b], hx, hy)
    return out


def _hull_cost_for(cost: np.ndarray, acc: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per resample: the uniform hull's cost to reach accuracy `target` (NaN if out of reach)."""
    out = np.full(len(target), np.nan)
    for b in range(len(target)):
        hx, hy = _hull(cost[b], acc[b])
        if target[b] <= hy[-1] + 1e-12:
            out[b] = hx[0] if target[b] <= hy[0] else np.interp(target[b], hy, hx)
    return out


def _resampled_calibration(
    p: np.ndarray, y: np.ndarray, weights: np.ndarray, n_bins: int = 10
) -> np.ndarray:
    """Expected calibration error in every problem resample (NaN if nothing was predicted).

    Bins are fixed by each problem's prediction, so the per-bin gaps of a resample are one
    matrix product of the resample weights with a (problem x bin) one-hot of p - y.
    """
    keep = ~(np.isnan(p) | np.isnan(y))
    if not keep.any():
        return np.full(len(weights), np.nan)
    bins = np.clip((p[keep] * n_bins).astype(np.int64), 0, n_bins - 1)
    onehot = np.zeros((int(keep.sum()), n_bins))
    onehot[np.arange(len(bins)), bins] = 1.0
    w = weights[:, keep]
    gaps = w @ (onehot * (p[keep] - y[keep])[:, None])
    ece: np.ndarray = np.abs(gaps).sum(axis=1) / w.sum(axis=1)
    return ece


def _max_finite(values: np.ndarray) -> np.ndarray:
    """Row-wise max over finite entries; NaN for rows with none."""
    best = np.where(np.isfinite(values), values, -np.inf).max(axis=1)
    return np.where(np.isfinite(best), best, np.nan)


def _cheapest_reaching(cost: np.ndarray, acc: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Lowest cost among points with accuracy >= target (NaN where none reaches it)."""
    ok = acc >= target[:, None] - 1e-12
    best = np.where(ok, cost, np.inf).min(axis=1)
    return np.where(np.isfinite(best), best, np.nan)


@dataclass(frozen=True)
class Summary:
    """Tables of an evaluation: `points` (one row per candidate) and `families`."""

    protocol: str
    unit: str
    n_problems: int
    baseline: str
    points: pd.DataFrame
    families: pd.DataFrame


def _interval(values: np.ndarray, ci: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return float(lo), float(hi)


def summarize(
    ev: Evaluation,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    reach: tuple[float, ...] = (0.95, 0.99),
) -> Summary:
    """Point and family tables with paired bootstrap CIs (see the module docstring)."""
    families = np.asarray(ev.families)
    uniform = np.flatnonzero(families == BASELINE)
    if len(uniform) == 0:
        raise ValueError("an evaluation needs uniform candidates as the baseline")
    n = ev.correct.shape[1]
    weights = problem_weights(ev.problems, n_boot, seed)
    # Observed values first (row 0), then the resamples.
    w = np.vstack([np.full((1, n), 1.0 / n), weights])
    acc = w @ ev.correct.T  # (1 + B, K)
    cost = w @ ev.cost.T
    samples = w @ ev.samples.T
    # The best uniform configuration, re-chosen in every resample (ties -> cheaper).
    u_acc, u_cost = acc[:, uniform], cost[:, uniform]
    score = np.where(u_acc >= u_acc.max(axis=1, keepdims=True) - 1e-12, -u_cost, -np.inf)
    best_u = score.argmax(axis=1)
    rows = np.arange(len(acc))
    base_acc, base_cost = u_acc[rows, best_u], u_cost[rows, best_u]
    oracle = np.flatnonzero(families == ORACLE)
    oracle_acc = acc[:, oracle[0]] if len(oracle) else np.full(len(acc), np.nan)

    points = []
    for k, label in enumerate(ev.labels):
        lo, hi = _interval(acc[1:, k], ci)
        clo, chi = _interval(cost[1:, k], ci)
        points.append(
            {
                "label": label,
                "family": ev.families[k],
                "accuracy": acc[0, k],
                "accuracy_ci_low": lo,
                "accuracy_ci_high": hi,
                "mean_cost": cost[0, k],
                "cost_ci_low": clo,
                "cost_ci_high": chi,
                "mean_samples": samples[0, k],
                "calibration_error": calibration_error(ev.predicted[k], ev.correct[k]),
            }
        )
        ece = _resampled_calibration(ev.predicted[k], ev.correct[k], weights)
        points[-1]["calibration_ci_low"], points[-1]["calibration_ci_high"] = _interval(ece, ci)
    table = pd.DataFrame(points)

    fam_rows = []
    for family in dict.fromkeys(ev.families):
        members = np.flatnonzero(families == family)
        f_acc, f_cost = acc[:, members], cost[:, members]
        # Iso-accuracy: cheapest point at least as accurate as the best uniform.
        iso_cost = _cheapest_reaching(f_cost, f_acc, base_acc)
        saved = 1.0 - iso_cost / base_cost
        # Iso-cost: best accuracy at no more than the best uniform's cost.
        at_cost = _frontier_at(f_cost, f_acc, base_cost)
        gain = at_cost - base_acc
        with np.errstate(invalid="ignore", divide="ignore"):
            gap = (at_cost - base_acc) / (oracle_acc - base_acc)
        # Against the uniform frontier, at the family's most favourable point of its sweep.
        frontier_acc = np.stack(
            [_hull_accuracy_at(u_cost, u_acc, f_cost[:, j]) for j in range(len(members))], axis=1
        )
        frontier_cost = np.stack(
            [_hull_cost_for(u_cost, u_acc, f_acc[:, j]) for j in range(len(members))], axis=1
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            over_frontier = _max_finite(f_acc - frontier_acc)
            cheaper = _max_finite(1.0 - f_cost / frontier_cost)
        # The family's most accurate point (ties -> the cheaper one).
        top = f_acc[0] >= f_acc[0].max() - 1e-12
        best_k = int(np.where(top, -f_cost[0], -np.inf).argmax())
        record: dict[str, object] = {
            "family": family,
            "points": len(members),
            "best_label": ev.labels[members[best_k]],
            "best_accuracy": f_acc[0, best_k],
            "best_accuracy_cost": f_cost[0, best_k],
        }
        for name, values in (
            ("saved_at_iso_accuracy", saved),
            ("gain_at_iso_cost", gain),
            ("gap_recovered", gap),
            ("frontier_gain", over_frontier),
            ("frontier_saving", cheaper),
        ):
            record[name] = values[0]
            record[f"{name}_ci_low"], record[f"{name}_ci_high"] = _interval(values[1:], ci)
        for x in reach:
            target = x * base_acc
            fam = _cheapest_reaching(f_cost, f_acc, target)
            uni = _hull_cost_for(u_cost, u_acc, target)
            key = f"cost_to_{round(x * 100)}pct"
            record[key] = fam[0]
            record[f"{key}_ci_low"], record[f"{key}_ci_high"] = _interval(fam[1:], ci)
            record[f"uniform_{key}"] = uni[0]
        calibration = [t for t in table.loc[members, "calibration_error"] if not np.isnan(t)]
        record["calibration_error"] = float(np.mean(calibration)) if calibration else np.nan
        fam_rows.append(record)
    return Summary(
        protocol=ev.protocol,
        unit=ev.unit,
        n_problems=n,
        baseline=ev.labels[uniform[best_u[0]]],
        points=table,
        families=pd.DataFrame(fam_rows),
    )
