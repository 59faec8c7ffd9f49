"""Claim 3: does difficulty-adaptive allocation beat uniform budgets at equal accuracy?

The policy families are cross-validated by problem (``ponder.evaluate``), every operating
point chosen on training folds. Two findings per dataset: families that decide before
generation from the problem alone (a priori) and families that read the generation (online),
each against the best uniform configuration. Which family to serve is itself chosen on the
training folds, so reporting the group's result is not a pick of the luckiest family after
seeing held-out outcomes; the per-family figures are in the table, for information only.

The helpers below (token matrix, per-fold choices, held-out savings) are shared with claim 4
(``ponder.claims.think_routing``).
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ponder.claims.base import Claim, Effect, Finding, Verdict, found, insufficient
from ponder.claims.data import ClaimData, Settings
from ponder.claims.stats import FloatArray, bootstrap_effect, weighted_mean
from ponder.errors import PonderError
from ponder.evaluate import OutcomeMatrix
from ponder.evaluate.catalog import ONLINE, PUBLISHED, Skipped, candidates
from ponder.evaluate.metrics import BASELINE, Summary, _best, _iso_accuracy, summarize
from ponder.evaluate.protocol import Evaluation, complete, cross_validate
from ponder.grading import normalize_answer

CLAIM_ID = "adaptive-beats-uniform"
# Saving under 5% of the tokens is not worth serving a fitted policy instead of one setting.
MIN_EFFECT = 0.05
# "Equal accuracy" (non-inferiority): the held-out accuracy change's interval must stay above
# -2 points; a user would notice a larger loss on a benchmark before a 5% token saving.
ACCURACY_MARGIN = 0.02
FOLDS = 5

# Decide before generation from the problem's text, level and subject (docs/policies.md).
A_PRIORI: tuple[str, ...] = ("adaptive", "router", "allocation", "sweet_spot")
# Read what the generation produces: final answers (cascade, adaptive consistency), probes of
# a growing chain (ponder's online families), or both (the published rules).
ONLINE_FAMILIES: tuple[str, ...] = ("cascade", "adaptive_consistency", *ONLINE, *PUBLISHED)
GROUPS: dict[str, tuple[str, ...]] = {"a priori": A_PRIORI, "online": ONLINE_FAMILIES}


# -- shared with claim 4 ----------------------------------------------------------------------


def token_matrix(data: ClaimData) -> OutcomeMatrix | str:
    """The dataset's per-sample outcomes as a matrix costed in output tokens, or why not.

    Only configurations recorded for every problem are kept (a policy may choose any of them
    for any held-out problem). Aggregated rows cannot be replayed and are left out.
    """
    samples = data.samples
    if samples.empty:
        return "only aggregated rows (n_runs > 1): no per-sample outcomes to replay"
    if samples["output_tokens"].isna().any():
        return (
            "some samples have no output token count, so tokens saved cannot be measured "
            "(`ponder evaluate --cost calls` compares calls instead)"
        )
    try:
        matrix = OutcomeMatrix.from_frame(
            samples, problems=data.problems, normalize=normalize_answer
        )
        return complete(matrix)
    except PonderError as exc:
        return str(exc)


def enough_problems(matrix: OutcomeMatrix, settings: Settings) -> str | None:
    """Why a cross-validated comparison cannot rest on this matrix, or None when it can."""
    need = max(settings.min_problems, 2 * FOLDS)
    if matrix.n_problems < need:
        return (
            f"{matrix.n_problems} problems have every configuration recorded; a {FOLDS}-fold "
            f"comparison needs at least {need}"
        )
    if len(matrix.configs) < 2:
        return (
            f"only {len(matrix.configs)} configuration recorded for every problem: "
            "nothing to allocate between"
        )
    return None


def _reusable(ev: Evaluation, matrix: OutcomeMatrix) -> bool:
    """Whether an evaluation run elsewhere is this protocol on these problems: 5 folds, token
    costs, the same problems in the same order."""
    if ev.fold is None or ev.unit != "tokens" or len(ev.problems) != matrix.n_problems:
        return False
    if int(np.max(ev.fold)) + 1 != FOLDS:
        return False
    mine = matrix.problems[["dataset", "problem_id"]].to_numpy()
    theirs = ev.problems[["dataset", "problem_id"]].to_numpy()
    return bool((mine == theirs).all())


def best_per_fold(ev: Evaluation, members: np.ndarray) -> np.ndarray:
    """Per fold, the member most accurate on the training folds (cheaper on ties; -1: none)."""
    assert ev.train_correct is not None and ev.train_cost is not None
    return np.array(
        [
            _best(ev.train_correct[f], ev.train_cost[f], members)
            for f in range(len(ev.train_correct))
        ],
        dtype=np.int64,
    )


def iso_accuracy_per_fold(ev: Evaluation, members: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per fold, the cheapest member reaching the reference's training accuracy.

    The reference itself is a candidate, so a fold where no member reaches it (or every one
    that does costs more) keeps the reference: what a user following the rule would serve.
    """
    assert ev.train_correct is not None and ev.train_cost is not None
    chosen = []
    for f, ref in enumerate(reference):
        pool = np.union1d(members, [ref]).astype(np.int64)
        acc, cost = ev.train_correct[f], ev.train_cost[f]
        chosen.append(_iso_accuracy(acc, cost, pool, float(acc[ref])))
    return np.asarray(chosen, dtype=np.int64)


def held_out(ev: Evaluation, choice: np.ndarray) -> tuple[FloatArray, FloatArray]:
    """Per problem, the held-out correctness and tokens of its fold's chosen candidate."""
    assert ev.fold is not None
    rows = choice[ev.fold]
    columns = np.arange(ev.correct.shape[1])
    correct: FloatArray = ev.correct[rows, columns].astype(np.float64)
    cost: FloatArray = ev.cost[rows, columns].astype(np.float64)
    return correct, cost


@dataclass(frozen=True)
class Comparison:
    """A policy's held-out tokens saved and accuracy change against a reference, per problem."""

    policy_correct: FloatArray
    policy_cost: FloatArray
    reference_correct: FloatArray
    reference_cost: FloatArray

    def saved(self, weights: FloatArray) -> FloatArray:
        """1 - policy tokens / reference tokens, per row of problem weights."""
        with np.errstate(invalid="ignore", divide="ignore"):
            out: FloatArray = 1.0 - (weights @ self.policy_cost) / (weights @ self.reference_cost)
        return out

    def accuracy_change(self, weights: FloatArray) -> FloatArray:
        """Policy accuracy minus reference accuracy, per row of problem weights."""
        return weighted_mean(self.policy_correct - self.reference_correct, weights)

    def effects(
        self, settings: Settings, key: str, *, reference: str, min_effect: float
    ) -> tuple[Effect, Effect]:
        """Tokens saved (the verdict's effect) and the accuracy change, same resamples."""
        n = len(self.policy_cost)
        common = {"n_boot": settings.n_boot, "seed": settings.seed, "key": key, "ci": settings.ci}
        saved = bootstrap_effect(
            self.saved,
            n,
            name=f"tokens saved vs {reference}",
            unit="share of tokens",
            min_effect=min_effect,
            **common,  # type: ignore[arg-type]
        )
        change = bootstrap_effect(
            self.accuracy_change,
            n,
            name=f"accuracy change vs {reference}",
            unit="accuracy",
            **common,  # type: ignore[arg-type]
        )
        return saved, change


def accuracy_guard(finding: Finding, change: Effect, *, margin: float) -> Finding:
    """A saving counts at equal accuracy only: demote it when held-out accuracy fell.

    "supported" needs the accuracy change's interval to reach ``-margin`` or above (within
    the margin of the reference); when the whole interval lies below ``-margin`` the saving
    came from answering worse, which contradicts "at equal accuracy" outright.
    """
    if finding.verdict != "supported" or change.low >= -margin:
        return finding
    interval = f"{change.value:+.3f} [{change.low:+.3f}, {change.high:+.3f}]"
    verdict: Verdict
    if change.high < -margin:
        verdict, why = "contradicted", "the saving costs accuracy"
    else:
        verdict, why = "inconclusive", "equal accuracy is not shown"
    return dataclasses.replace(
        finding,
        verdict=verdict,
        reason=f"{finding.reason}; but {why}: held-out {change.name} {interval} "
        f"(margin {margin:.3f})",
    )


# -- the claim --------------------------------------------------------------------------------


class AdaptiveBeatsUniform(Claim):
    """Do adaptive policies, chosen on training folds, save tokens at the uniform's accuracy?"""

    number = 3
    id = CLAIM_ID
    title = "Difficulty-adaptive allocation beats uniform budgets"
    hypothesis = (
        "A per-request policy (a priori from the problem, or online from the generation) "
        "reaches the best uniform configuration's held-out accuracy with fewer tokens."
    )
    needs = (
        "per-sample outcomes with output token counts, at least 2 configurations recorded "
        "for every problem, and enough problems for 5-fold cross-validation"
    )

    def __init__(self, families: Sequence[str] | None = None) -> None:
        # Families to evaluate (default: every a-priori and online family); tests pass fewer.
        chosen = tuple(families) if families is not None else (*A_PRIORI, *ONLINE_FAMILIES)
        unknown = [f for f in chosen if not any(f in g for g in GROUPS.values())]
        if unknown:
            raise ValueError(f"families {unknown} are neither a-priori nor online ones")
        self.families = chosen

    def check(self, data: ClaimData) -> list[Finding]:
        matrix = token_matrix(data)
        if isinstance(matrix, str):
            return [insufficient(self.id, data.dataset, matrix, n_problems=data.n_problems)]
        thin = enough_problems(matrix, data.settings)
        if thin:
            return [insufficient(self.id, data.dataset, thin, n_problems=matrix.n_problems)]
        s = data.settings
        skipped: list[tuple[str, str]] = []
        try:
            if data.evaluation is not None and _reusable(data.evaluation[0], matrix):
                ev, summary = data.evaluation  # the caller's run of the same protocol
            else:
                ruled_out: list[Skipped] = []
                cands = candidates(matrix, self.families, skipped=ruled_out)
                skipped.extend((k.family, k.reason) for k in ruled_out)
                ev = cross_validate(matrix, cands, folds=FOLDS, seed=s.seed)
                summary = summarize(ev, n_boot=s.n_boot, seed=s.seed, ci=s.ci)
        except PonderError as exc:
            return [
                insufficient(
                    self.id,
                    data.dataset,
                    f"the policy evaluation cannot run: {exc}",
                    n_problems=matrix.n_problems,
                )
            ]
        skipped.extend(ev.skipped)
        return [
            self._group(data, ev, summary, group, members, skipped)
            for group, members in GROUPS.items()
        ]

    def _group(
        self,
        data: ClaimData,
        ev: Evaluation,
        summary: Summary,
        group: str,
        families: tuple[str, ...],
        skipped: list[tuple[str, str]],
    ) -> Finding:
        scope = f"{group} families"
        n = ev.correct.shape[1]
        requested = [f for f in families if f in self.families]
        ran = [f for f in requested if len(ev.family_rows(f))]
        if not ran:
            why = "; ".join(f"{f}: {r}" for f, r in dict(skipped).items() if f in requested)
            return insufficient(
                self.id,
                data.dataset,
                f"no {group} family could run on these data"
                + (f" ({why})" if why else f" (none of {list(families)} was requested)"),
                scope=scope,
                n_problems=n,
            )
        uniform = ev.family_rows(BASELINE)
        members = np.concatenate([ev.family_rows(f) for f in ran])
        baseline = best_per_fold(ev, uniform)
        if (baseline < 0).any():
            return insufficient(
                self.id,
                data.dataset,
                "no uniform configuration could be scored on some training folds",
                scope=scope,
                n_problems=n,
            )
        choice = iso_accuracy_per_fold(ev, members, baseline)
        comparison = Comparison(*held_out(ev, choice), *held_out(ev, baseline))
        s = data.settings
        saved, change = comparison.effects(
            s,
            f"{data.dataset}/{self.id}/{group}",
            reference="the best uniform configuration",
            min_effect=MIN_EFFECT,
        )
        adaptive_folds = int((choice != baseline).sum())
        extras = {
            "saved": saved.value,
            "accuracy_change": change.value,
            "accuracy_change_ci_low": change.low,
            "accuracy_change_ci_high": change.high,
            "policy_accuracy": float(comparison.policy_correct.mean()),
            "policy_tokens": float(comparison.policy_cost.mean()),
            "baseline_accuracy": float(comparison.reference_correct.mean()),
            "baseline_tokens": float(comparison.reference_cost.mean()),
            "folds_policy_chosen": float(adaptive_folds),
            "folds": float(len(choice)),
        }
        table = family_table(summary, group, ran, saved, change)
        finding = found(
            self.id,
            data.dataset,
            scope,
            saved,
            n_problems=n,
            protocol=_protocol(ev, s, ran, [f for f in requested if f not in ran], skipped),
            table=table,
            extras=extras,
            note=_note(choice, baseline, ev, change, table),
        )
        # "At equal accuracy": a saving bought with held-out accuracy is no saving.
        return accuracy_guard(finding, change, margin=ACCURACY_MARGIN)

    def plot(self, finding: Finding) -> bytes | None:
        """Tokens saved at the baseline's accuracy per family (nested, with CI), and the
        group's choice made on training folds (the verdict's figure) at the top."""
        table = finding.table
        if table is None or table.empty:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = table.iloc[::-1].reset_index(drop=True)
        fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 1.6))
        saved = rows[["saved", "saved_ci_low", "saved_ci_high"]].to_numpy(dtype=float)
        for y, (family, (value, low, high)) in enumerate(zip(rows["family"], saved, strict=True)):
            colour = "tab:blue" if family == CHOSEN else "tab:gray"
            if np.isfinite(value):
                ax.errorbar(
                    value,
                    y,
                    xerr=[[value - low], [high - value]],
                    fmt="o",
                    color=colour,
                    capsize=3,
                )
            else:
                ax.text(
                    0.0,
                    y,
                    "  undefined: a fold never reached the baseline",
                    va="center",
                    fontsize=8,
                )
        ax.set_yticks(range(len(rows)), list(rows["family"]))
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.axvline(0.0, color="k", lw=0.8)
        ax.axvline(MIN_EFFECT, color="tab:red", lw=0.8, ls="--", label="smallest that matters")
        ax.set_xlabel("tokens saved at the best uniform configuration's accuracy (held out)")
        ax.legend(loc="lower right", fontsize=8)
        ax.set_title(
            f"{finding.dataset}, {finding.scope}: {finding.verdict}", fontsize=9, loc="left"
        )
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        return buffer.getvalue()


CHOSEN = "chosen on training folds"


def family_table(
    summary: Summary, group: str, ran: list[str], saved: Effect, change: Effect
) -> pd.DataFrame:
    """The group's choice (first row) and each family's own nested figures from the Summary."""
    rows = [
        {
            "family": CHOSEN,
            "group": group,
            "saved": saved.value,
            "saved_ci_low": saved.low,
            "saved_ci_high": saved.high,
            "accuracy_change": change.value,
            "accuracy_change_ci_low": change.low,
            "accuracy_change_ci_high": change.high,
            "gain_at_iso_cost": np.nan,
            "gain_ci_low": np.nan,
            "gain_ci_high": np.nan,
            "note": "",
        }
    ]
    families: dict[str, dict[str, object]] = {
        str(k): {str(c): v for c, v in r.items()}
        for k, r in summary.families.set_index("family").to_dict("index").items()
    }
    for family in ran:
        record = families[family]

        def get(key: str, record: dict[str, object] = record) -> float:
            value = record.get(key)
            return float(value) if isinstance(value, int | float) else float("nan")

        note = record.get("saved_at_iso_accuracy_note")
        rows.append(
            {
                "family": family,
                "group": group,
                "saved": get("saved_at_iso_accuracy"),
                "saved_ci_low": get("saved_at_iso_accuracy_ci_low"),
                "saved_ci_high": get("saved_at_iso_accuracy_ci_high"),
                "accuracy_change": get("accuracy_change_at_iso_accuracy"),
                "accuracy_change_ci_low": get("accuracy_change_at_iso_accuracy_ci_low"),
                "accuracy_change_ci_high": get("accuracy_change_at_iso_accuracy_ci_high"),
                "gain_at_iso_cost": get("gain_at_iso_cost"),
                "gain_ci_low": get("gain_at_iso_cost_ci_low"),
                "gain_ci_high": get("gain_at_iso_cost_ci_high"),
                "note": note if isinstance(note, str) else "",
            }
        )
    return pd.DataFrame(rows)


def _note(
    choice: np.ndarray,
    baseline: np.ndarray,
    ev: Evaluation,
    change: Effect,
    table: pd.DataFrame,
) -> str:
    """Which points the folds chose, the accuracy change, and the per-family figures."""
    picked = [ev.labels[c] for c, b in zip(choice, baseline, strict=True) if c != b]
    base = ev.labels[int(np.bincount(baseline).argmax())]
    chosen = f" ({', '.join(dict.fromkeys(picked))})" if picked else ""
    accuracy = f"accuracy change {change.value:+.3f} [{change.low:+.3f}, {change.high:+.3f}]"
    per_family = table[table["family"] != CHOSEN]
    defined = per_family[np.isfinite(per_family["saved"].to_numpy(dtype=float))]
    families = ", ".join(
        f"{r.family} {r.saved:+.1%} [{r.saved_ci_low:+.1%}, {r.saved_ci_high:+.1%}]"
        for r in defined.itertuples()
    )
    if not picked:
        folds = "no training fold chose a family point (the baseline was kept in every fold)"
    else:
        kept = " and kept the baseline in the others" if len(picked) < len(choice) else ""
        folds = (
            f"the training folds chose a family point in {len(picked)} of {len(choice)} folds"
            f"{chosen}{kept}"
        )
    return f"{folds}; baseline mostly {base}; {accuracy}" + (
        f"; per family (information only): {families}" if families else ""
    )


def _protocol(
    ev: Evaluation,
    settings: Settings,
    ran: list[str],
    not_run: list[str],
    skipped: list[tuple[str, str]],
) -> str:
    reasons = dict(skipped)
    missing = "; ".join(f"{f} not run ({reasons.get(f, 'no candidate ran')})" for f in not_run)
    return (
        f"{ev.protocol}. Cost: output tokens per request. Baseline per fold: the uniform "
        "configuration (majority votes of up to 3 samples included) most accurate on the "
        "training folds. Policy per fold: among every point of the families "
        f"{', '.join(ran)} and the baseline, the cheapest whose training accuracy (inner "
        "cross-validation) reaches the baseline's: the family is chosen on training folds, "
        "not on held-out results. Effect: 1 - held-out tokens of the chosen points / the "
        f"baseline's, {settings.ci:.0%} cluster bootstrap over problems ({settings.n_boot} "
        "resamples) with the fold choices fixed. Equal accuracy means non-inferiority: a "
        "saving is supported only if the held-out accuracy change's interval stays above "
        f"-{ACCURACY_MARGIN:.2f} (contradicted if it lies wholly below). A-priori families see "
        "the problem's text, level and subject before generation; online ones read answers "
        "or probes. "
        "The table's per-family rows are the evaluation's own nested figures, for "
        "information: picking the best of them after the fact would be a hindsight choice."
        + (f" {missing}." if missing else "")
    )
