"""Metrics of an evaluation, each with a paired bootstrap CI over problems.

Headline figures use nested selection: in every fold, each operating point is chosen on that
fold's training problems (from the candidates' training-set replays), and the chosen point's
held-out results are reported. Choosing on held-out outcomes would flatter every family; those
hindsight figures are kept only as labelled upper bounds (`hindsight_*`, `frontier_*`).

- accuracy and mean cost of every candidate (held out);
- the baseline: per fold, the uniform configuration most accurate on the training problems
  (cheaper on ties);
- per family, each chosen per fold on training problems: its most accurate point ("best"),
  the cheapest point at least as accurate as the baseline (iso-accuracy: cost saved), the most
  accurate point no dearer than the baseline (iso-cost: accuracy gained, and the share of the
  baseline-to-oracle gap this recovers);
- cost to reach x% of the baseline's accuracy, RouteLLM style: the family's points and the
  cheapest uniform configuration mixed at random along their concave hull (a share of requests
  to each of two points reaches any point between them), the mix chosen on training problems;
  the uniform family's own hull gives the comparison;
- hindsight upper bounds: the same selections made on the held-out outcomes, redone in every
  resample, and the largest gain over the uniform hull across the family's sweep;
- calibration error of the predicted P(correct) where a policy predicts.

A figure that cannot be defined (no point reaches the baseline's accuracy in some fold, the
oracle is no better than the baseline...) is NaN with a `<name>_note` saying why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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
    """Tables of an evaluation: `points` (one row per candidate) and `families`.

    `baseline` is the uniform configuration chosen on training problems (the most frequent
    choice across folds); `baseline_figures` its held-out accuracy and cost with CIs;
    `skipped` the families (or points) that could not run, with why; `conclusion` one line in
    plain words.
    """

    protocol: str
    unit: str
    n_problems: int
    baseline: str
    points: pd.DataFrame
    families: pd.DataFrame
    baseline_figures: dict[str, float] = field(default_factory=dict)
    skipped: tuple[tuple[str, str], ...] = ()
    conclusion: str = ""


def _interval(values: np.ndarray, ci: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return float(lo), float(hi)


# -- nested selection ---------------------------------------------------------------------------


def _selectable(acc: np.ndarray, cost: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Members with training figures (an inner split too small to fit leaves NaN)."""
    kept: np.ndarray = members[np.isfinite(acc[members]) & np.isfinite(cost[members])]
    return kept


def _best(acc: np.ndarray, cost: np.ndarray, members: np.ndarray) -> int:
    """Most accurate member (cheaper on ties; -1: none selectable)."""
    members = _selectable(acc, cost, members)
    if not len(members):
        return -1
    a, c = acc[members], cost[members]
    top = a >= a.max() - 1e-12
    return int(members[np.where(top, c, np.inf).argmin()])


def _iso_accuracy(acc: np.ndarray, cost: np.ndarray, members: np.ndarray, target: float) -> int:
    """Cheapest member at least as accurate as `target` (-1: none)."""
    members = _selectable(acc, cost, members)
    ok = acc[members] >= target - 1e-12
    if not ok.any():
        return -1
    return int(members[np.where(ok, cost[members], np.inf).argmin()])


def _iso_cost(acc: np.ndarray, cost: np.ndarray, members: np.ndarray, budget: float) -> int:
    """Most accurate member no dearer than `budget` (cheaper on ties; -1: none)."""
    members = _selectable(acc, cost, members)
    ok = cost[members] <= budget * (1 + 1e-12) + 1e-12
    if not ok.any():
        return -1
    return _best(acc, cost, members[ok])


def mix_to_reach(
    acc: np.ndarray, cost: np.ndarray, members: np.ndarray, target: float
) -> dict[int, float] | None:
    """Cheapest random mix of members reaching accuracy `target`: {candidate: share}.

    The mix lies on the members' concave hull: one vertex, or two neighbouring vertices in
    the proportion that lands on the target (None when even the most accurate misses it).
    """
    members = _selectable(acc, cost, members)
    if not len(members):
        return None
    hx, hy = _hull(cost[members], acc[members])
    order = np.lexsort((-acc[members], cost[members]))
    # Map hull vertices back to candidates (vertex values are unique per hull position).
    vertices = []
    for x, y in zip(hx, hy, strict=True):
        for j in order:
            if cost[members[j]] == x and acc[members[j]] == y:
                vertices.append(int(members[j]))
                break
    if target > hy[-1] + 1e-12:
        return None
    if target <= hy[0] + 1e-12:
        return {vertices[0]: 1.0}
    j = int(np.searchsorted(hy, target - 1e-12))  # hy[j-1] < target <= hy[j]
    t = (target - hy[j - 1]) / (hy[j] - hy[j - 1])
    return {vertices[j - 1]: 1.0 - t, vertices[j]: t}


@dataclass
class _Role:
    """A per-fold choice of candidates (a mix of them), or why it is undefined."""

    weights: np.ndarray  # [fold, candidate]
    note: str = ""

    def held_out(self, ev: Evaluation) -> tuple[np.ndarray, np.ndarray]:
        """Per-problem held-out correctness and cost of the chosen point of each problem's fold."""
        assert ev.fold is not None
        w = self.weights[ev.fold]  # [problem, candidate]
        return (w * ev.correct.T).sum(axis=1), (w * ev.cost.T).sum(axis=1)

    def labels(self, ev: Evaluation) -> list[str]:
        """Per fold, the chosen candidate (the heaviest one of a mix; "" where none was)."""
        return [ev.labels[int(row.argmax())] if row.any() else "" for row in self.weights]


def _choose(
    ev: Evaluation, pick: Callable[[int], int | dict[int, float] | None], what: str
) -> _Role:
    assert ev.train_correct is not None
    n_folds, k = ev.train_correct.shape
    weights = np.zeros((n_folds, k))
    missing = 0
    for f in range(n_folds):
        chosen = pick(f)
        if chosen is None or (isinstance(chosen, int) and chosen < 0):
            missing += 1
        elif isinstance(chosen, dict):
            for c, share in chosen.items():
                weights[f, c] += share
        else:
            weights[f, chosen] = 1.0
    if missing:
        folds = f"{missing} of {n_folds} folds" if n_folds > 1 else "the training data"
        return _Role(weights, f"{what} in {folds}")
    return _Role(weights)


def _most_common(labels: list[str]) -> tuple[str, int]:
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    top = max(counts.values())
    return next(label for label in labels if counts[label] == top), top


def _undefined(record: dict[str, object], name: str, note: str) -> None:
    record[name] = record[f"{name}_ci_low"] = record[f"{name}_ci_high"] = float("nan")
    record[f"{name}_note"] = note


def _store(
    record: dict[str, object],
    name: str,
    values: np.ndarray,
    ci: float,
    note: str = "not defined on these problems",
) -> None:
    """Observed value (row 0) and its CI from the resamples; NaN observed -> undefined."""
    if not np.isfinite(values[0]):
        _undefined(record, name, note)
        return
    record[name] = float(values[0])
    record[f"{name}_ci_low"], record[f"{name}_ci_high"] = _interval(values[1:], ci)


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
    if ev.fold is None or ev.train_correct is None or ev.train_cost is None:
        # No training figures (a hand-made evaluation): choose on the held-out data itself,
        # which the notes below call hindsight.
        ev = Evaluation(
            **{
                **ev.__dict__,
                "fold": np.zeros(n, dtype=np.int64),
                "train_correct": ev.correct.mean(axis=1)[None, :],
                "train_cost": ev.cost.mean(axis=1)[None, :],
            }
        )
    assert ev.train_correct is not None and ev.train_cost is not None
    t_acc, t_cost = ev.train_correct, ev.train_cost
    weights = problem_weights(ev.problems, n_boot, seed)
    # Observed values first (row 0), then the resamples.
    w = np.vstack([np.full((1, n), 1.0 / n), weights])
    acc = w @ ev.correct.T  # (1 + B, K)
    cost = w @ ev.cost.T
    samples = w @ ev.samples.T

    def mean(values: np.ndarray) -> np.ndarray:
        out: np.ndarray = w @ values
        return out

    # Nested baseline: per fold the uniform configuration best on the training problems.
    base = _choose(ev, lambda f: _best(t_acc[f], t_cost[f], uniform), "no uniform point")
    b_correct, b_cost = base.held_out(ev)
    base_acc, base_cost = mean(b_correct), mean(b_cost)
    base_label, base_folds = _most_common(base.labels(ev))
    oracle = np.flatnonzero(families == ORACLE)
    oracle_acc = acc[:, oracle[0]] if len(oracle) else np.full(len(acc), np.nan)
    cheapest_uniform = [int(uniform[np.argmin(t_cost[f, uniform])]) for f in range(len(t_acc))]

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

    # Hindsight baseline: re-chosen on the held-out outcomes in every resample.
    u_acc, u_cost = acc[:, uniform], cost[:, uniform]
    score = np.where(u_acc >= u_acc.max(axis=1, keepdims=True) - 1e-12, -u_cost, -np.inf)
    best_u = score.argmax(axis=1)
    rows = np.arange(len(acc))
    h_base_acc, h_base_cost = u_acc[rows, best_u], u_cost[rows, best_u]
    with np.errstate(invalid="ignore"):
        oracle_gap = oracle_acc - base_acc
    gap_lo, gap_hi = _interval(oracle_gap[1:], ci)
    gap_note = ""
    if not len(oracle):
        gap_note = "no oracle in this evaluation"
    elif not (oracle_gap[0] > 0.005 and gap_lo > 0):
        gap_note = "the oracle is not clearly more accurate than the baseline"
    elif gap_lo < oracle_gap[0] / 2:
        # A ratio over a denominator this uncertain swings by hundreds of percent.
        gap_note = (
            f"the oracle's lead over the baseline is too uncertain for a ratio "
            f"({oracle_gap[0]:+.1%}, CI {gap_lo:+.1%} to {gap_hi:+.1%})"
        )

    fam_rows = []
    for family in dict.fromkeys(ev.families):
        members = np.flatnonzero(families == family)
        f_acc, f_cost = acc[:, members], cost[:, members]
        record: dict[str, object] = {"family": family, "points": len(members)}

        # Nested: the family's most accurate point on the training problems.
        def pick_best(f: int, m: np.ndarray = members) -> int:
            return _best(t_acc[f], t_cost[f], m)

        def pick_iso_accuracy(f: int, m: np.ndarray = members) -> int:
            return _iso_accuracy(t_acc[f], t_cost[f], m, t_acc[f][_base_of(base, f)])

        def pick_iso_cost(f: int, m: np.ndarray = members) -> int:
            return _iso_cost(t_acc[f], t_cost[f], m, t_cost[f][_base_of(base, f)])

        best = _choose(ev, pick_best, "no point could be chosen on the training problems")
        labels = best.labels(ev)
        record["best_label"], record["best_folds"] = _most_common(
            [label for label in labels if label] or [""]
        )
        record["best_labels"] = labels
        if best.note:  # a fold without a choice would count its problems as wrong
            record["best_accuracy"] = record["best_accuracy_cost"] = float("nan")
            record["best_accuracy_note"] = best.note
        else:
            best_correct, best_cost = best.held_out(ev)
            record["best_accuracy"] = float(best_correct.mean())
            record["best_accuracy_cost"] = float(best_cost.mean())
        # Nested iso-accuracy and iso-cost points.
        iso_a = _choose(ev, pick_iso_accuracy, "no point reached the baseline's training accuracy")
        iso_c = _choose(
            ev, pick_iso_cost, "no point was as cheap as the baseline on training problems"
        )
        if iso_a.note:
            _undefined(record, "saved_at_iso_accuracy", iso_a.note)
            _undefined(record, "accuracy_change_at_iso_accuracy", iso_a.note)
        else:
            a_correct, a_cost = iso_a.held_out(ev)
            with np.errstate(invalid="ignore", divide="ignore"):
                _store(record, "saved_at_iso_accuracy", 1.0 - mean(a_cost) / base_cost, ci)
            _store(record, "accuracy_change_at_iso_accuracy", mean(a_correct) - base_acc, ci)
            record["iso_accuracy_labels"] = iso_a.labels(ev)
        if iso_c.note:
            _undefined(record, "gain_at_iso_cost", iso_c.note)
            _undefined(record, "gap_recovered", iso_c.note)
        else:
            c_correct, _ = iso_c.held_out(ev)
            gain = mean(c_correct) - base_acc
            _store(record, "gain_at_iso_cost", gain, ci)
            record["iso_cost_labels"] = iso_c.labels(ev)
            if gap_note:
                _undefined(record, "gap_recovered", gap_note)
            else:
                with np.errstate(invalid="ignore", divide="ignore"):
                    _store(record, "gap_recovered", gain / oracle_gap, ci)
        # Cost to reach x% of the baseline: the family mixed with the cheapest uniform point.
        for x in reach:
            key = f"cost_to_{round(x * 100)}pct"
            for prefix, pool in (("", members), ("uniform_", uniform)):

                def pick(f: int, pool: np.ndarray = pool, x: float = x) -> dict[int, float] | None:
                    allowed = np.union1d(pool, [cheapest_uniform[f]])
                    target = x * t_acc[f][_base_of(base, f)]
                    return mix_to_reach(t_acc[f], t_cost[f], allowed, target)

                mix = _choose(ev, pick, f"no mix reached {x:.0%} of the baseline's accuracy")
                if mix.note:
                    _undefined(record, prefix + key, mix.note)
                    continue
                m_correct, m_cost = mix.held_out(ev)
                _store(record, prefix + key, mean(m_cost), ci)
                record[f"{prefix}{key}_accuracy"] = float(m_correct.mean())
        # Hindsight upper bounds: selections made on the held-out outcomes themselves.
        h_iso = _cheapest_reaching(f_cost, f_acc, h_base_acc)
        h_at_cost = _frontier_at(f_cost, f_acc, h_base_cost)
        with np.errstate(invalid="ignore", divide="ignore"):
            h_saved = 1.0 - h_iso / h_base_cost
            h_gap = (h_at_cost - h_base_acc) / (oracle_acc - h_base_acc)
        frontier_acc = np.stack(
            [_hull_accuracy_at(u_cost, u_acc, f_cost[:, j]) for j in range(len(members))], axis=1
        )
        frontier_cost = np.stack(
            [_hull_cost_for(u_cost, u_acc, f_acc[:, j]) for j in range(len(members))], axis=1
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            over_frontier = _max_finite(f_acc - frontier_acc)
            cheaper = _max_finite(1.0 - f_cost / frontier_cost)
        for name, values, note in (
            (
                "hindsight_saved_at_iso_accuracy",
                h_saved,
                "no point reached the baseline's held-out accuracy",
            ),
            (
                "hindsight_gain_at_iso_cost",
                h_at_cost - h_base_acc,
                "no point was as cheap as the baseline",
            ),
            ("hindsight_gap_recovered", h_gap, "the oracle is not more accurate than the baseline"),
            ("frontier_gain", over_frontier, "no point within the uniform configurations' costs"),
            (
                "frontier_saving",
                cheaper,
                "no point within the uniform configurations' accuracies",
            ),
        ):
            _store(record, name, values, ci, note)
        calibration = [t for t in table.loc[members, "calibration_error"] if not np.isnan(t)]
        record["calibration_error"] = float(np.mean(calibration)) if calibration else np.nan
        fam_rows.append(record)
    baseline_figures = {"accuracy": float(base_acc[0]), "mean_cost": float(base_cost[0])}
    baseline_figures["accuracy_ci_low"], baseline_figures["accuracy_ci_high"] = _interval(
        base_acc[1:], ci
    )
    baseline_figures["cost_ci_low"], baseline_figures["cost_ci_high"] = _interval(base_cost[1:], ci)
    baseline_figures["folds_choosing_it"] = base_folds
    baseline_figures["folds"] = len(t_acc)
    fam_table = pd.DataFrame(fam_rows)
    return Summary(
        protocol=ev.protocol,
        unit=ev.unit,
        n_problems=n,
        baseline=base_label,
        points=table,
        families=fam_table,
        baseline_figures=baseline_figures,
        skipped=ev.skipped,
        conclusion=conclusion(fam_table, base_label, baseline_figures, ev.unit, ev.skipped),
    )


def _base_of(base: _Role, f: int) -> int:
    return int(base.weights[f].argmax())


def _pct(value: float) -> str:
    return f"{value:+.1%}"


def conclusion(
    families: pd.DataFrame,
    baseline: str,
    figures: dict[str, float],
    unit: str,
    skipped: tuple[tuple[str, str], ...] = (),
) -> str:
    """One line in plain words: which policy, if any, beats the baseline held out, by how much.

    A family "beats" the baseline when the 95% CI of its accuracy gain at the baseline's cost,
    or of its cost saving at the baseline's accuracy, lies above zero (without losing
    accuracy beyond noise in the latter).
    """
    base = (
        f"the best uniform configuration ({baseline.removeprefix('uniform ')}, accuracy "
        f"{figures.get('accuracy', float('nan')):.3f})"
    )
    wins: list[tuple[float, str]] = []
    best_try: tuple[float, str] | None = None
    for _, row in families.iterrows():
        if row["family"] in (BASELINE, ORACLE):
            continue
        gain, glo, ghi = (_num(row, f"gain_at_iso_cost{s}") for s in ("", "_ci_low", "_ci_high"))
        saved, slo, shi = (
            _num(row, f"saved_at_iso_accuracy{s}") for s in ("", "_ci_low", "_ci_high")
        )
        # A saving counts only if accuracy did not drop beyond noise.
        change_hi = _num(row, "accuracy_change_at_iso_accuracy_ci_high")
        if _finite(glo) and glo > 0:
            wins.append(
                (
                    gain,
                    f"{row['family']} gains {_pct(gain)} accuracy at the same {unit} "
                    f"(95% CI {_pct(glo)} to {_pct(ghi)})",
                )
            )
        elif _finite(slo) and slo > 0 and _finite(change_hi) and change_hi >= 0:
            wins.append(
                (
                    saved / 10,
                    f"{row['family']} needs {saved:.1%} fewer {unit} for the same "
                    f"accuracy (95% CI {slo:.1%} to {shi:.1%})",
                )
            )
        elif _finite(gain) and (best_try is None or gain > best_try[0]):
            best_try = (
                gain,
                f"the closest, {row['family']}, changes accuracy by {_pct(gain)} at the same "
                f"{unit} (95% CI {_pct(glo)} to {_pct(ghi)})",
            )
    if wins:
        wins.sort(key=lambda t: -t[0])
        others = (
            f"; also {len(wins) - 1} other famil{'y' if len(wins) == 2 else 'ies'}"
            if (len(wins) > 1)
            else ""
        )
        return f"On held-out problems, {wins[0][1]} over {base}{others}."
    tail = f": {best_try[1]}" if best_try else ""
    return f"No policy beats {base} on held-out problems{tail}."


def _finite(value: float) -> bool:
    return bool(np.isfinite(value))


def _num(row: pd.Series, key: str) -> float:
    """A number from a family row (NaN when missing)."""
    value = row.get(key)
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")
