"""Claim 1: non-reasoning models plateau early in budget while reasoning models keep gaining.

The test looks at the upper half of the budget range (on a log scale), where "plateau" and
"keep gaining" differ: gain is measured in accuracy points per doubling of the budget, so
datasets with different ladders are on one scale. Two findings can come out of a dataset:

* the **gap**, when it has budget ladders of both kinds of model (``ModelFacts.reasoning``):
  reasoning-model gain minus non-reasoning gain, paired over problems;
* the **plateau** of each non-reasoning model with its own ladder (at least two recorded
  budgets): is its gain in the upper half of its ladder below a small margin? This is the only
  half of the claim that data without a reasoning model (ponder's sweep) can test.

A non-reasoning model recorded at one cap only still has a value at other caps: a hard cap
only stops decoding, so a response that finished on its own under cap C is the same at any
larger cap, and one that finished under a smaller cap B is the same at B (the exactness
argument of :mod:`ponder.curves.derived`). Responses cut off at the recorded cap are unknown
at a larger one; they are bounded (0 or 1), and the effect's interval spans both bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from ponder.claims.base import Claim, Effect, Finding, found, insufficient
from ponder.claims.data import ClaimData
from ponder.claims.stats import FloatArray, bootstrap_effect, weighted_mean
from ponder.curves._frame import as_float

# Reasoning models should out-gain non-reasoning ones by at least this (points per doubling).
GAP_MIN_EFFECT = 1.0
# A gain below this many points per doubling of budget counts as a plateau: doubling the cost
# for less would rarely be worth it.
PLATEAU_MARGIN = 2.0

GAP_PROTOCOL = (
    "Budget window: hi = the largest budget recorded for a reasoning model, lo = the smallest "
    "recorded reasoning budget at or above the geometric midpoint of the reasoning budgets "
    "(the upper half of the range on a log scale). Per problem, gain = (accuracy at hi minus "
    "at lo) / log2(hi/lo), in points per doubling, averaged over samples and then over the "
    "reasoning models recorded at both lo and hi, minus the same averaged over the "
    "non-reasoning models (same budget kind). A non-reasoning value missing at lo or hi comes "
    "from its nearest hard cap: a smaller budget is derived exactly (a longer response is cut "
    "off, no answer), a larger one is exact for responses that finished on their own and "
    "bounded (0 or 1) for those cut off at the cap. Interval: paired percentile "
    "bootstrap over problems, from the low end with the non-reasoning gain at its upper bound "
    "to the high end with it at its lower bound. Supported if above 0; contradicted if below "
    f"{GAP_MIN_EFFECT:g} point per doubling."
)
PLATEAU_PROTOCOL = (
    "One non-reasoning model and mode with at least two recorded budgets: hi = its largest "
    "budget, lo = its smallest budget at or above the geometric midpoint of its budgets. Gain "
    "per problem = (accuracy at hi minus at lo) / log2(hi/lo), in points per doubling. "
    f"Effect = {PLATEAU_MARGIN:g} (the plateau margin) minus the mean gain, percentile "
    "bootstrap over problems: supported (a plateau) if the whole interval of the gain lies "
    f"below {PLATEAU_MARGIN:g} points per doubling, contradicted if it lies above."
)
NO_BUDGETS = "no budgets on this dataset (no hard-cap or forced rows), so no budget curve"
NO_LENGTHS = "; response lengths are not recorded either"
LENGTH_IS_NOT_BUDGET = (
    "; response length vs correctness does not stand in for it: the model chooses its length, "
    "and longer responses go to harder problems, so length and correctness are confounded by "
    "difficulty"
)


@dataclass(frozen=True)
class Ladder:
    """The budgeted single samples of one model, mode and budget kind."""

    model: str
    mode: str
    kind: str
    reasoning: bool | None
    rows: pd.DataFrame

    @property
    def label(self) -> str:
        return f"{self.model} / {self.mode}"

    @property
    def budgets(self) -> list[float]:
        return sorted(float(b) for b in self.rows["budget"].unique())


@dataclass(frozen=True)
class Bounds:
    """Per-problem accuracy at one budget: lower and upper bound (equal where exact)."""

    low: pd.Series
    high: pd.Series
    how: str


class NonReasoningPlateau(Claim):
    number: ClassVar[int] = 1
    id: ClassVar[str] = "non-reasoning-plateau"
    title: ClassVar[str] = "Non-reasoning models plateau; reasoning models keep gaining"
    hypothesis: ClassVar[str] = (
        "Non-reasoning models do not catch up with more budget: their accuracy plateaus early "
        "while reasoning models keep gaining."
    )
    needs: ClassVar[str] = (
        "budget ladders (hard caps or forced budgets) and ModelFacts.reasoning: both kinds of "
        "model for the gap, a non-reasoning model with two or more budgets for the plateau"
    )

    def check(self, data: ClaimData) -> list[Finding]:
        ladders = _ladders(data)
        if not ladders:
            lengths = data.outcomes["output_tokens"].notna().any()
            reason = NO_BUDGETS + (LENGTH_IS_NOT_BUDGET if lengths else NO_LENGTHS)
            return [insufficient(self.id, data.dataset, reason, n_problems=data.n_problems)]
        findings: list[Finding] = []
        reasoning = [ladder for ladder in ladders if ladder.reasoning is True]
        plain = [ladder for ladder in ladders if ladder.reasoning is False]
        unknown = sorted({ladder.model for ladder in ladders if ladder.reasoning is None})
        kinds = sorted({ladder.kind for ladder in reasoning} & {ladder.kind for ladder in plain})
        for kind in kinds:
            findings.append(
                self._gap(
                    data,
                    [ladder for ladder in reasoning if ladder.kind == kind],
                    [ladder for ladder in plain if ladder.kind == kind],
                )
            )
        if not kinds:
            missing = "reasoning" if not reasoning else "non-reasoning"
            if reasoning and plain:
                missing = "reasoning and non-reasoning with the same budget kind"
            skipped = f" ({len(unknown)} model(s) of unknown kind: set them in --model-facts)"
            findings.append(
                insufficient(
                    self.id,
                    data.dataset,
                    f"no {missing} model with a budget ladder, so the gap cannot be measured"
                    + (skipped if unknown else "")
                    + ("; only the plateau half can be tested" if plain else ""),
                    scope="reasoning vs non-reasoning",
                    n_problems=data.n_problems,
                )
            )
        findings.extend(
            self._plateau(data, ladder, alone=not reasoning)
            for ladder in plain
            if len(ladder.budgets) > 1
        )
        return findings

    def _gap(self, data: ClaimData, reasoning: list[Ladder], plain: list[Ladder]) -> Finding:
        """Reasoning-model gain minus non-reasoning gain in the upper half of the budgets."""
        scope = f"reasoning vs non-reasoning ({reasoning[0].kind})"
        budgets = sorted({b for ladder in reasoning for b in ladder.budgets})
        hi = budgets[-1]
        lo = _upper_half_start(budgets)
        if lo is None:
            return insufficient(
                self.id,
                data.dataset,
                f"reasoning models have one budget ({hi:g}): no upper half to measure",
                scope=scope,
            )
        span = math.log2(hi / lo)
        gains: dict[str, pd.Series] = {}
        for ladder in reasoning:
            if lo in ladder.budgets and hi in ladder.budgets:
                at_lo, at_hi = _bounds(ladder, lo), _bounds(ladder, hi)
                if at_lo is not None and at_hi is not None:
                    gains[ladder.label] = 100.0 * (at_hi.low - at_lo.low) / span
        plain_high: dict[str, pd.Series] = {}
        plain_low: dict[str, pd.Series] = {}
        sources: dict[str, str] = {}
        for ladder in plain:
            at_lo, at_hi = _bounds(ladder, lo), _bounds(ladder, hi)
            if at_lo is None or at_hi is None:
                continue
            plain_high[ladder.label] = 100.0 * (at_hi.high - at_lo.low) / span
            # A response that finished by lo is the same at hi, so an unknown one cannot lose.
            plain_low[ladder.label] = 100.0 * (at_hi.low - at_lo.low) / span
            sources[ladder.label] = f"lo {at_lo.how}, hi {at_hi.how}"
        if not gains or not plain_high:
            side = "reasoning model recorded at both" if not gains else "non-reasoning model with"
            return insufficient(
                self.id,
                data.dataset,
                f"no {side} budgets {lo:g} and {hi:g}",
                scope=scope,
            )
        frame = pd.concat(
            [
                pd.DataFrame(gains).mean(axis=1, skipna=False).rename("reasoning"),
                pd.DataFrame(plain_high).mean(axis=1, skipna=False).rename("plain_high"),
                pd.DataFrame(plain_low).mean(axis=1, skipna=False).rename("plain_low"),
            ],
            axis=1,
        ).dropna()
        n = len(frame)
        if n < data.settings.min_problems:
            return insufficient(
                self.id,
                data.dataset,
                f"{n} problems have every model at budgets {lo:g} and {hi:g}; "
                f"at least {data.settings.min_problems} needed",
                scope=scope,
                n_problems=n,
            )
        conservative = (frame["reasoning"] - frame["plain_high"]).to_numpy(dtype=np.float64)
        optimistic = (frame["reasoning"] - frame["plain_low"]).to_numpy(dtype=np.float64)
        name = "reasoning minus non-reasoning gain per doubling, upper half of the budgets"
        effect = self._spanning_effect(data, scope, name, conservative, optimistic)
        extras = {
            "lo_budget": lo,
            "hi_budget": hi,
            "reasoning_gain": float(frame["reasoning"].mean()),
            "non_reasoning_gain_upper": float(frame["plain_high"].mean()),
            "non_reasoning_gain_lower": float(frame["plain_low"].mean()),
            "n_reasoning_models": float(len(gains)),
            "n_non_reasoning_models": float(len(plain_high)),
        }
        note = (
            f"budgets {lo:g} to {hi:g}; reasoning: {', '.join(gains)}; non-reasoning: "
            + "; ".join(f"{label} ({how})" for label, how in sources.items())
        )
        used = [ladder for ladder in reasoning if ladder.label in gains]
        table = pd.concat(
            [
                _curve_table(used, frame.index, set()),
                _curve_table([p for p in plain if p.label in plain_high], frame.index, {lo, hi}),
            ],
            ignore_index=True,
        )
        return found(
            self.id,
            data.dataset,
            scope,
            effect,
            n_problems=n,
            protocol=GAP_PROTOCOL,
            table=table,
            extras=extras,
            note=note,
        )

    def _spanning_effect(
        self,
        data: ClaimData,
        scope: str,
        name: str,
        conservative: FloatArray,
        optimistic: FloatArray,
    ) -> Effect:
        """The conservative estimate, with an interval widened to cover the optimistic bound.

        Both bootstraps use the same key, so they draw the same problem resamples.
        """
        settings = data.settings
        key = f"{self.id}/{data.dataset}/{scope}"

        def interval(values: FloatArray) -> Effect:
            return bootstrap_effect(
                lambda w: weighted_mean(values, w),
                len(values),
                name=name,
                unit="points per doubling",
                n_boot=settings.n_boot,
                seed=settings.seed,
                key=key,
                ci=settings.ci,
                min_effect=GAP_MIN_EFFECT,
            )

        low_end, high_end = interval(conservative), interval(optimistic)
        return Effect(
            name,
            low_end.value,
            low_end.low,
            max(low_end.high, high_end.high),
            low_end.unit,
            GAP_MIN_EFFECT,
            settings.ci,
        )

    def _plateau(self, data: ClaimData, ladder: Ladder, *, alone: bool) -> Finding:
        """Is a non-reasoning model's gain in the upper half of its own ladder near zero?

        ``alone``: the dataset has no reasoning model with a ladder (the note says so).
        """
        scope = f"{ladder.label} plateau ({ladder.kind})"
        budgets = ladder.budgets
        hi = budgets[-1]
        lo = _upper_half_start(budgets)
        at_lo = _bounds(ladder, lo) if lo is not None else None
        at_hi = _bounds(ladder, hi)
        if lo is None or at_lo is None or at_hi is None:
            return insufficient(self.id, data.dataset, "one budget only", scope=scope)
        span = math.log2(hi / lo)
        gain = (100.0 * (at_hi.low - at_lo.low) / span).dropna()
        n = len(gain)
        if n < data.settings.min_problems:
            return insufficient(
                self.id,
                data.dataset,
                f"{n} problems recorded at budgets {lo:g} and {hi:g}; "
                f"at least {data.settings.min_problems} needed",
                scope=scope,
                n_problems=n,
            )
        values = gain.to_numpy(dtype=np.float64)
        settings = data.settings
        effect = bootstrap_effect(
            lambda w: PLATEAU_MARGIN - weighted_mean(values, w),
            n,
            name=f"plateau margin ({PLATEAU_MARGIN:g}) minus gain per doubling, upper half",
            unit="points per doubling",
            n_boot=settings.n_boot,
            seed=settings.seed,
            key=f"{self.id}/{data.dataset}/{scope}",
            ci=settings.ci,
        )
        extras = {"lo_budget": lo, "hi_budget": hi, "gain_per_doubling": float(values.mean())}
        direct = _direct_accuracy(data, ladder, gain.index)
        if direct is not None:
            at_top = float(at_hi.low.reindex(gain.index).mean())
            extras["top_budget_minus_direct_answer"] = 100.0 * (at_top - direct)
        note = f"gain {values.mean():+.3g} points per doubling from {lo:g} to {hi:g}"
        if alone:
            note += "; no reasoning model here, so this tests only the plateau half of the claim"
        return found(
            self.id,
            data.dataset,
            scope,
            effect,
            n_problems=n,
            protocol=PLATEAU_PROTOCOL,
            table=_curve_table([ladder], gain.index, set()),
            extras=extras,
            note=note,
        )

    def plot(self, finding: Finding) -> bytes | None:
        table = finding.table
        if table is None or table.empty:
            return None
        import matplotlib.pyplot as plt

        from ponder.report.plots import BUDGET_AXIS, figure_png

        fig, ax = plt.subplots(figsize=(6.0, 3.8))
        colors = {"reasoning": "#e45756", "non-reasoning": "#4c78a8"}
        for (series, kind), group in table.groupby(["series", "model_kind"], sort=True):
            group = group.sort_values("budget")
            color = colors.get(str(kind), "#999999")
            recorded = group[group["how"] == "recorded"]
            ax.plot(
                recorded["budget"],
                recorded["accuracy_low"],
                "o-",
                color=color,
                lw=1.2,
                markersize=3,
                alpha=0.85,
                label=str(series),
            )
            bounded = group[group["how"] != "recorded"]
            mid = (bounded["accuracy_low"] + bounded["accuracy_high"]) / 2
            ax.errorbar(
                bounded["budget"],
                mid,
                yerr=[mid - bounded["accuracy_low"], bounded["accuracy_high"] - mid],
                fmt="o",
                mfc="none",
                color=color,
                markersize=4,
                capsize=2,
            )
        extras = finding.extras
        if "lo_budget" in extras:
            ax.axvspan(extras["lo_budget"], extras["hi_budget"], color="#eeeeee", zorder=0)
        ax.set_xscale("log", base=2)
        ax.set_ylim(0, 1.02)
        ax.grid(True, alpha=0.3)
        ax.set_xlabel(BUDGET_AXIS, fontsize=8)
        ax.set_ylabel("accuracy (hollow: bounds)", fontsize=8)
        ax.set_title(f"{finding.dataset}: {finding.scope} ({finding.verdict})", fontsize=9)
        ax.legend(fontsize=6, frameon=False, loc="lower right")
        return figure_png(fig)


def _ladders(data: ClaimData) -> list[Ladder]:
    """Every (model, mode, budget kind) with budgeted single samples."""
    rows = data.budgeted
    out = []
    for (model, mode, kind), group in rows.groupby(["model", "mode", "budget_kind"], sort=True):
        facts = data.models.get(str(model))
        reasoning = facts.reasoning if facts is not None else None
        out.append(Ladder(str(model), str(mode), str(kind), reasoning, group))
    return out


def _upper_half_start(budgets: list[float]) -> float | None:
    """The smallest budget below the largest and at or above the geometric midpoint.

    None with a single budget; the second largest when no budget lies in the upper half.
    """
    if len(budgets) < 2:
        return None
    middle = math.sqrt(budgets[0] * budgets[-1]) * (1 - 1e-9)
    upper = [b for b in budgets[:-1] if b >= middle]
    return min(upper) if upper else budgets[-2]


def _bounds(ladder: Ladder, target: float) -> Bounds | None:
    """Per-problem accuracy of a ladder at ``target``: recorded, or from its nearest hard cap.

    The source is the smallest recorded cap above ``target`` (derived as in
    :mod:`ponder.curves.derived`: exact, a response longer than ``target`` is cut off and has
    no answer), else the largest cap below it (extended: a response that finished on its own
    under that cap is the same at ``target``; one cut off there is unknown and counts 0 in
    ``low``, 1 in ``high``). Forced budgets are rungs of a chain, not caps: only recorded ones.
    """
    budgets = ladder.budgets
    rows = ladder.rows
    if target in budgets:
        acc = rows[rows["budget"] == target].groupby("problem_id")["correct"].mean()
        return Bounds(acc, acc, "recorded")
    if ladder.kind != "hard_cap":
        return None
    above = [b for b in budgets if b > target]
    source = min(above) if above else max(budgets)
    src = rows[rows["budget"] == source]
    tokens = as_float(src["output_tokens"])
    truncated = as_float(src["truncated"])
    stopped = np.where(np.isnan(truncated), tokens < source, truncated == 0)
    exact = stopped & (tokens <= target)
    correct = as_float(src["correct"])
    unknown_high = 0.0 if source > target else 1.0
    by_problem = src["problem_id"].to_numpy()
    low = pd.Series(np.where(exact, correct, 0.0)).groupby(by_problem).mean()
    high = pd.Series(np.where(exact, correct, unknown_high)).groupby(by_problem).mean()
    how = "derived from" if source > target else "extended from"
    return Bounds(low, high, f"{how} cap {source:g}")


def _direct_accuracy(data: ClaimData, ladder: Ladder, problems: pd.Index) -> float | None:
    """Accuracy of the same model answering directly ("no-" + mode, no budget), if recorded."""
    rows = data.samples
    direct = rows[
        (rows["model"] == ladder.model)
        & (rows["mode"] == f"no-{ladder.mode}")
        & rows["budget"].isna()
        & rows["problem_id"].isin(problems)
    ]
    if direct.empty:
        return None
    return float(direct.groupby("problem_id")["correct"].mean().mean())


def _curve_table(ladders: list[Ladder], problems: pd.Index, extra: set[float]) -> pd.DataFrame:
    """Accuracy per ladder at its recorded budgets and at ``extra`` ones, on ``problems``.

    Budgets that are not recorded have bounds (see :func:`_bounds`); equal when exact.
    """
    rows: list[dict[str, object]] = []
    for ladder in ladders:
        for budget in sorted(set(ladder.budgets) | extra):
            bounds = _bounds(ladder, budget)
            if bounds is None:
                continue
            rows.append(
                {
                    "series": ladder.label,
                    "model_kind": _kind_name(ladder.reasoning),
                    "budget": budget,
                    "accuracy_low": float(bounds.low.reindex(problems).mean()),
                    "accuracy_high": float(bounds.high.reindex(problems).mean()),
                    "how": bounds.how,
                }
            )
    return pd.DataFrame(
        rows,
        columns=["series", "model_kind", "budget", "accuracy_low", "accuracy_high", "how"],
    )


def _kind_name(reasoning: bool | None) -> str:
    if reasoning is None:
        return "unknown"
    return "reasoning" if reasoning else "non-reasoning"
