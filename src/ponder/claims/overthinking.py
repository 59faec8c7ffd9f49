"""Claim 5: accuracy peaks at a sweet-spot budget and falls past it (overthinking).

Picking the best budget and measuring the drop past it on the same problems inflates the
drop (winner's curse: the peak is where noise happened to be high). So the sweet spot is
chosen on one random half of the problems and the drop to the largest budget is measured on
the other half, both ways round, averaged over several random halvings. The bootstrap
resamples problems around that whole procedure, so the interval includes the noise of the
choice. Holding out makes the estimate slightly conservative (a half picks a noisier peak).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd

from ponder.claims.base import Claim, Finding, found, insufficient
from ponder.claims.data import ClaimData, difficulty
from ponder.claims.stats import FloatArray, bootstrap_effect, problem_weights
from ponder.curves.bootstrap import dataset_rng, percentile_interval

# Random halvings of the problems; each is used both ways round (pick on one, measure on other).
N_SPLITS = 10
# A held-out drop smaller than this (accuracy points) would not change which budget to use.
MIN_DROP_POINTS = 2.0

PROTOCOL = (
    "Per model, mode and budget kind (recorded budgets only; derived caps are excluded), on "
    "the problems recorded at every budget: per-problem accuracy (mean over samples) at each "
    f"budget. {N_SPLITS} random halvings of the problems; in each, the sweet spot (best mean "
    "accuracy, smallest budget on ties) is picked on one half and the drop (accuracy at the "
    "sweet spot minus at the largest budget, in points) is measured on the other half, then "
    "the halves swap; the effect is the mean of these held-out drops (0 when the largest "
    "budget is picked). Interval: percentile cluster bootstrap over problems of the whole "
    f"procedure. Supported if the interval is above 0; contradicted if it lies below "
    f"{MIN_DROP_POINTS:g} points."
)

HARD_CAP_NOTE = (
    "hard caps: a response that finishes under the smaller cap is unchanged at a larger one, "
    "so a drop can only come from cut-off responses graded correct or from sampling noise; "
    "this tests whether raising the cap costs accuracy, not whether longer thinking hurts"
)
FORCED_NOTE = (
    "forced budgets: each rung answers from the same chain cut at that budget, and a chain that "
    "stopped on its own answers the same at every larger rung"
)


class Overthinking(Claim):
    number: ClassVar[int] = 5
    id: ClassVar[str] = "overthinking"
    title: ClassVar[str] = "Overthinking: accuracy falls past a sweet-spot budget"
    hypothesis: ClassVar[str] = (
        "Accuracy is non-monotonic in thinking length: past a sweet-spot budget, a larger "
        "budget lowers accuracy."
    )
    needs: ClassVar[str] = (
        "a budget ladder (at least two recorded budgets of one model and mode, hard caps or "
        "forced) on at least min_problems problems"
    )

    def check(self, data: ClaimData) -> list[Finding]:
        ladders = _ladders(data)
        if not ladders:
            return [
                insufficient(
                    self.id,
                    data.dataset,
                    "no budget ladder: no single-sample rows with a hard cap or forced budget",
                    n_problems=data.n_problems,
                )
            ]
        usable = {k: v for k, v in ladders.items() if v.shape[1] >= 2}
        if not usable:
            return [
                insufficient(
                    self.id,
                    data.dataset,
                    "every model has a single recorded budget: no curve to peak and fall",
                    n_problems=data.n_problems,
                )
            ]
        bands, band_source = difficulty(data)
        findings: list[Finding] = []
        for (label, kind), matrix in usable.items():
            note = HARD_CAP_NOTE if kind == "hard_cap" else FORCED_NOTE
            findings.append(self._measure(data, label, matrix, note))
            if band_source != "single band":
                findings.extend(self._by_band(data, label, matrix, note, bands, band_source))
        return findings

    def _by_band(
        self,
        data: ClaimData,
        label: str,
        matrix: pd.DataFrame,
        note: str,
        bands: pd.Series,
        band_source: str,
    ) -> list[Finding]:
        """One finding per difficulty band with enough problems; one refusal for the rest."""
        own = bands.reindex(matrix.index)
        findings: list[Finding] = []
        thin: dict[str, int] = {}
        for band in sorted(own.dropna().unique()):
            rows = matrix[own == band]
            name = _band_name(float(band), band_source)
            if len(rows) < data.settings.min_problems:
                thin[name] = len(rows)
                continue
            findings.append(self._measure(data, f"{label}, {name}", rows, note))
        if thin:
            findings.append(
                insufficient(
                    self.id,
                    data.dataset,
                    f"fewer than {data.settings.min_problems} problems per band "
                    f"({'; '.join(f'{name}: {count}' for name, count in thin.items())}); "
                    f"bands by {band_source}",
                    scope=f"{label}, thin difficulty bands",
                    n_problems=sum(thin.values()),
                )
            )
        return findings

    def _measure(self, data: ClaimData, scope: str, matrix: pd.DataFrame, note: str) -> Finding:
        """The held-out drop past the sweet spot on one problem set (rows of ``matrix``)."""
        settings = data.settings
        n = len(matrix)
        if n < settings.min_problems:
            return insufficient(
                self.id,
                data.dataset,
                f"{n} problems recorded at every budget; at least {settings.min_problems} needed",
                scope=scope,
                n_problems=n,
            )
        budgets = matrix.columns.to_numpy(dtype=np.float64)
        acc = matrix.to_numpy(dtype=np.float64)
        key = f"{self.id}/{data.dataset}/{scope}"
        halves = _halvings(n, dataset_rng(settings.seed, f"{key}/splits"))

        def held_out(weights: FloatArray) -> FloatArray:
            drop, _ = held_out_drop(acc, weights, halves)
            return 100.0 * drop

        effect = bootstrap_effect(
            held_out,
            n,
            name="held-out drop from the sweet spot to the largest budget",
            unit="points",
            n_boot=settings.n_boot,
            seed=settings.seed,
            key=key,
            ci=settings.ci,
            min_effect=MIN_DROP_POINTS,
        )
        mean = acc.mean(axis=0)
        _, picks = held_out_drop(acc, np.ones((1, n)), halves)
        weights = problem_weights(n, n_boot=settings.n_boot, seed=settings.seed, key=key)
        curve = (weights @ acc) / weights.sum(axis=1, keepdims=True)
        low, high = percentile_interval(curve[1:], settings.ci)
        table = pd.DataFrame(
            {
                "budget": budgets,
                "accuracy": mean,
                "ci_low": low,
                "ci_high": high,
                "peak_share": picks[0],
            }
        )
        best = int(np.argmax(mean))
        extras = {
            "in_sample_drop": float(100.0 * (mean[best] - mean[-1])),
            "in_sample_sweet_spot": float(budgets[best]),
            "largest_budget": float(budgets[-1]),
            "peak_below_largest_share": float(1.0 - picks[0, -1]),
            "n_budgets": float(len(budgets)),
        }
        budget_range = f"budgets {budgets[0]:g}-{budgets[-1]:g}"
        return found(
            self.id,
            data.dataset,
            scope,
            effect,
            n_problems=n,
            protocol=PROTOCOL,
            table=table,
            extras=extras,
            note=f"{budget_range}; {note}",
        )

    def plot(self, finding: Finding) -> bytes | None:
        table = finding.table
        if table is None or table.empty:
            return None
        import matplotlib.pyplot as plt

        from ponder.report.plots import BUDGET_AXIS, figure_png

        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        x = table["budget"].to_numpy(dtype=float)
        ax.fill_between(x, table["ci_low"], table["ci_high"], alpha=0.2, color="#4c78a8")
        ax.plot(x, table["accuracy"], "o-", color="#4c78a8", label="accuracy (all problems)")
        for budget, acc, share in zip(x, table["accuracy"], table["peak_share"], strict=True):
            if share > 0:
                ax.annotate(
                    f"peak {share:.0%}",
                    (budget, acc),
                    textcoords="offset points",
                    xytext=(0, 6),
                    ha="center",
                    fontsize=7,
                )
        ax.set_xscale("log", base=2)
        ax.set_ylim(0, 1.02)
        ax.grid(True, alpha=0.3)
        ax.set_xlabel(BUDGET_AXIS, fontsize=8)
        ax.set_ylabel("accuracy (95% CI)", fontsize=8)
        effect = finding.effect
        drop = f"held-out drop {effect.value:+.1f} pts" if effect else ""
        ax.set_title(f"{finding.dataset}: {finding.scope}\n{drop} ({finding.verdict})", fontsize=9)
        ax.legend(fontsize=7, frameon=False, loc="lower right")
        return figure_png(fig)


def held_out_drop(
    acc: FloatArray, weights: FloatArray, halves: list[np.ndarray]
) -> tuple[FloatArray, FloatArray]:
    """Mean held-out drop per weight row, and how often each budget was picked as the peak.

    ``acc`` is problems x budgets (budgets ascending); ``weights`` rows x problems; each
    boolean mask in ``halves`` splits the problems and is used both ways round. Returns the
    drop (a fraction) per row and the share of picks per (row, budget).
    """
    rows = weights.shape[0]
    to_largest = acc - acc[:, [-1]]
    drops = np.zeros(rows)
    picks = np.zeros((rows, acc.shape[1]))
    every = np.arange(rows)
    for half in halves:
        for pick, measure in ((half, ~half), (~half, half)):
            chosen = _row_means(weights[:, pick], acc[pick]).argmax(axis=1)
            drops += _row_means(weights[:, measure], to_largest[measure])[every, chosen]
            picks[every, chosen] += 1.0
    uses = 2.0 * len(halves)
    return drops / uses, picks / uses


def _row_means(weights: FloatArray, values: FloatArray) -> FloatArray:
    """Weighted column means of ``values`` for each weight row (NaN for an empty row)."""
    total = weights.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: FloatArray = (weights @ values) / total
    return out


def _halvings(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``N_SPLITS`` random boolean masks, each marking half of ``n`` problems."""
    masks = []
    for _ in range(N_SPLITS):
        mask = np.zeros(n, dtype=bool)
        mask[rng.permutation(n)[: n // 2]] = True
        masks.append(mask)
    return masks


def _ladders(data: ClaimData) -> dict[tuple[str, str], pd.DataFrame]:
    """Per (model / mode, budget kind): problems x recorded budgets of per-problem accuracy.

    Only problems recorded at every budget of the ladder are kept, so each budget's accuracy
    is on the same problems.
    """
    rows = data.budgeted
    out: dict[tuple[str, str], pd.DataFrame] = {}
    for (model, mode, kind), group in rows.groupby(["model", "mode", "budget_kind"], sort=True):
        matrix = group.pivot_table(
            index="problem_id", columns="budget", values="correct", aggfunc="mean"
        )
        matrix = matrix.sort_index(axis=1).dropna()
        matrix.columns = matrix.columns.astype(float)
        if len(matrix):
            out[(f"{model} / {mode}", str(kind))] = matrix
    return out


def _band_name(band: float, source: str) -> str:
    if source == "level":
        return f"level {band:g}"
    return f"solve-rate quartile {band:g} (1 = easiest)"
