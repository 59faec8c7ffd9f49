"""Claim 2: can a small model given more compute match a larger one of its family?

Compute-matched, per difficulty band: the large model runs at its best configuration, and the
small model gets its best configuration among those that spend no more compute (FLOPs =
2 x parameters x generated tokens, or plain generated tokens). Both choices are made on half
the problems and scored on the other half, so picking the best of several configurations does
not flatter either model. "Match" is an equivalence claim with a stated margin.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ponder.claims.base import Claim, Finding, found, insufficient
from ponder.claims.data import _PARAMS, ClaimData, difficulty
from ponder.claims.stats import FloatArray, bootstrap_effect, weighted_mean
from ponder.claims.tier_or_difficulty import spent_tokens
from ponder.curves import with_derived_caps
from ponder.curves.bootstrap import dataset_rng

CLAIM_ID = "small-matches-large"
# The small model "matches" when its accuracy is at most 5 points below the large model's:
# a gap a user would accept for the cheaper model, and about one problem in twenty.
MARGIN = 5.0
# Held-out choice of configurations: repeated 2-fold splits of the band's problems.
REPEATS = 5
FLOPS = "flops"
TOKENS = "tokens"
UNITS = (FLOPS, TOKENS)


@dataclass(frozen=True)
class Pair:
    """Two models of one family, ``small`` having fewer parameters than ``large``."""

    family: str
    small: str
    large: str
    small_params: float
    large_params: float

    @property
    def name(self) -> str:
        return f"{self.small} vs {self.large}"


@dataclass(frozen=True)
class Configs:
    """Per-problem accuracy and generated tokens of each configuration of one model."""

    model: str
    params: float
    labels: tuple[str, ...]
    accuracy: FloatArray  # configurations x problems, in points (0-100)
    tokens: FloatArray  # configurations x problems

    def cost(self, unit: str) -> FloatArray:
        """Per-problem cost of each configuration: tokens, or FLOPs = 2 x params x tokens."""
        scale = 2.0 * self.params if unit == FLOPS else 1.0
        out: FloatArray = self.tokens * scale
        return out


@dataclass(frozen=True)
class Matched:
    """Held-out result of one (pair, band, unit): per-problem differences and what was chosen."""

    difference: FloatArray  # per problem: small - large accuracy, points
    small_accuracy: float
    large_accuracy: float
    cost_ratio: float  # realised small cost / large cost on the held-out halves
    allowance_used: float  # small's costliest configuration / the large's chosen cost
    unfit_folds: int  # folds where no small configuration fit (its cheapest was used)
    small_choices: dict[str, int]
    large_choices: dict[str, int]


def family_of(name: str) -> str | None:
    """The family of a model: its name without the size token, or None without exactly one.

    "qwen3-0.6b" and "qwen3-1.7b" -> "qwen3"; "Llama-2-7b-hf" -> "llama-2-hf".
    """
    if len(_PARAMS.findall(name)) != 1:
        return None
    stripped = _PARAMS.sub("", name).lower()
    return re.sub(r"[-_\s]+", "-", stripped).strip("-") or None


def model_pairs(data: ClaimData) -> list[Pair]:
    """Every (smaller, larger) pair of one family whose parameter counts are both known."""
    families: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for model, facts in data.models.items():
        family = family_of(model)
        if family is not None and facts.params is not None:
            families[family].append((facts.params, model))
    pairs = []
    for family, members in sorted(families.items()):
        members.sort()
        for i, (small_params, small) in enumerate(members):
            for large_params, large in members[i + 1 :]:
                if large_params > small_params:
                    pairs.append(Pair(family, small, large, small_params, large_params))
    return pairs


class SmallMatchesLarge(Claim):
    """A compute-matched comparison of the two models of a family, split by difficulty."""

    number = 2
    id = CLAIM_ID
    title = "Small model plus compute vs large model"
    hypothesis = (
        f"Given no more compute (FLOPs, or tokens) than the larger model of its family spends, "
        f"the smaller model comes within {MARGIN:g} accuracy points of it, on hard problems too."
    )
    needs = (
        "two models of one family (same name but for the size) with known parameter counts, "
        "budgeted samples with token counts, and enough problems per difficulty band"
    )

    def check(self, data: ClaimData) -> list[Finding]:
        pairs = model_pairs(data)
        if not pairs:
            return [
                insufficient(
                    self.id,
                    data.dataset,
                    "no two models of one family with known parameter counts (a family is "
                    "the model name without its size token, e.g. qwen3-0.6b / qwen3-1.7b)",
                    n_problems=data.n_problems,
                )
            ]
        findings: list[Finding] = []
        refused: dict[str, list[str]] = defaultdict(list)
        for pair in pairs:
            got = self._check_pair(data, pair)
            if isinstance(got, str):
                refused[got].append(pair.name)
            else:
                findings.extend(got)
        if findings:
            findings.extend(
                insufficient(self.id, data.dataset, reason, scope=name)
                for reason, names in refused.items()
                for name in names
            )
            return findings
        summary = "; ".join(f"{', '.join(names)}: {reason}" for reason, names in refused.items())
        return [insufficient(self.id, data.dataset, summary, n_problems=data.n_problems)]

    def _check_pair(self, data: ClaimData, pair: Pair) -> list[Finding] | str:
        rows = data.samples[data.samples["model"].isin([pair.small, pair.large])]
        if not rows.loc[rows["model"] == pair.small, "budget"].notna().any():
            return "no budgeted samples of the small model: its compute cannot be varied"
        problems = sorted(
            set(rows.loc[rows["model"] == pair.small, "problem_id"])
            & set(rows.loc[rows["model"] == pair.large, "problem_id"])
        )
        small = model_configs(rows, pair.small, pair.small_params, problems)
        if isinstance(small, str):
            return small
        large = model_configs(rows, pair.large, pair.large_params, problems)
        if isinstance(large, str):
            return large
        bands, source = pair_bands(data, pair, problems)
        findings: list[Finding] = []
        for band_name, in_band in split_bands(bands):
            scope = f"{pair.name} / {band_name}"
            columns = np.flatnonzero(in_band)
            if len(columns) < data.settings.min_problems:
                findings.extend(
                    insufficient(
                        self.id,
                        data.dataset,
                        f"{len(columns)} problems in the band (need {data.settings.min_problems})",
                        scope=f"{scope} / {unit}",
                        n_problems=len(columns),
                    )
                    for unit in UNITS
                )
                continue
            if large.accuracy[:, columns].mean(axis=1).max() == 0:
                findings.extend(
                    insufficient(
                        self.id,
                        data.dataset,
                        f"{pair.large} solves none of the band's problems at any recorded "
                        "configuration: there is nothing to match",
                        scope=f"{scope} / {unit}",
                        n_problems=len(columns),
                    )
                    for unit in UNITS
                )
                continue
            for unit in UNITS:
                findings.append(
                    self._compare(data, pair, small, large, columns, unit, scope, source)
                )
        return findings

    def _compare(
        self,
        data: ClaimData,
        pair: Pair,
        small: Configs,
        large: Configs,
        columns: np.ndarray,
        unit: str,
        scope: str,
        source: str,
    ) -> Finding:
        s = data.settings
        key = f"{data.dataset}/{self.id}/{scope}/{unit}"
        matched = match_held_out(small, large, columns, unit, dataset_rng(s.seed, key))
        difference = matched.difference
        effect = bootstrap_effect(
            lambda w: weighted_mean(difference, w) + MARGIN,
            len(columns),
            name=f"small - large accuracy + {MARGIN:g}-point margin ({unit} matched)",
            unit="accuracy points",
            n_boot=s.n_boot,
            seed=s.seed,
            key=key,
            ci=s.ci,
            min_effect=0.0,
        )
        return found(
            self.id,
            data.dataset,
            f"{scope} / {unit}",
            effect,
            n_problems=len(columns),
            protocol=_protocol(pair, unit, source),
            table=config_table(small, large, columns, unit, matched),
            extras={
                "small_accuracy": matched.small_accuracy,
                "large_accuracy": matched.large_accuracy,
                "accuracy_gap": matched.small_accuracy - matched.large_accuracy,
                "margin": MARGIN,
                "cost_ratio": matched.cost_ratio,
                "allowance_used": matched.allowance_used,
                "unfit_folds": float(matched.unfit_folds),
                "params_ratio": pair.large_params / pair.small_params,
            },
            note=_note(matched),
        )

    def plot(self, finding: Finding) -> bytes | None:
        """Accuracy against compute for both models' configurations, chosen ones filled."""
        table = finding.table
        if table is None or table.empty:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for i, (model, rows) in enumerate(table.groupby("model", sort=False)):
            rows = rows.sort_values("cost")
            color = f"C{i}"
            ax.plot(rows["cost"], rows["accuracy"], "-", color=color, alpha=0.5)
            chosen = rows["chosen_share"] > 0
            ax.scatter(
                rows.loc[~chosen, "cost"],
                rows.loc[~chosen, "accuracy"],
                color=color,
                facecolors="none",
                label=f"{model} ({rows['role'].iloc[0]})",
            )
            ax.scatter(rows.loc[chosen, "cost"], rows.loc[chosen, "accuracy"], color=color)
        ax.set_xscale("log")
        unit = str(table["unit"].iloc[0])
        ax.set_xlabel(
            "mean FLOPs per problem" if unit == FLOPS else "mean generated tokens per problem"
        )
        ax.set_ylabel("accuracy (points)")
        ax.legend(fontsize=8)
        ax.set_title(f"{finding.dataset}: {finding.scope} ({finding.verdict})", fontsize=9)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        return buffer.getvalue()


def model_configs(
    rows: pd.DataFrame, model: str, params: float, problems: list[str]
) -> Configs | str:
    """Each (mode, budget) of a model measured on every problem with known tokens.

    Smaller hard caps are derived from the larger ones (exact but for answers graded from
    truncated text, so a lower bound), giving the small model cheaper options too.
    """
    own = rows[rows["model"] == model]
    own = with_derived_caps(own) if (own["budget_kind"].astype(str) == "hard_cap").any() else own
    own = own[own["problem_id"].isin(problems)].sort_values(["mode", "budget"])
    labels = [
        str(mode) if pd.isna(budget) else f"{mode} @ {budget:g}"
        for mode, budget in zip(own["mode"], own["budget"], strict=True)
    ]
    cells = (
        own.assign(_config=labels, _tokens=spent_tokens(own))
        .groupby(["_config", "problem_id"], sort=False)
        .agg(accuracy=("correct", "mean"), tokens=("_tokens", "mean"))
    )
    accuracy = 100.0 * cells["accuracy"].unstack().reindex(columns=problems)
    tokens = cells["tokens"].unstack().reindex(columns=problems)
    complete = accuracy.notna().all(axis=1) & tokens.notna().all(axis=1)
    if not complete.any():
        return "no configuration of the pair has samples with token counts on every shared problem"
    order = list(dict.fromkeys(labels))
    kept = [c for c in order if complete.get(c, False)]
    return Configs(
        model,
        params,
        tuple(kept),
        accuracy.loc[kept].to_numpy(dtype=np.float64),
        tokens.loc[kept].to_numpy(dtype=np.float64),
    )


def pair_bands(data: ClaimData, pair: Pair, problems: list[str]) -> tuple[pd.Series, str]:
    """Difficulty band per shared problem: the level, else measured on the other models.

    Empirical bands from the pair's own outcomes would put the problems the pair failed on
    into "hard" by construction; the other models' solve rates do not (when there are any).
    """
    bands, source = difficulty(data)
    if source != "level":
        others = data.outcomes[~data.outcomes["model"].isin([pair.small, pair.large])]
        if (others["n_runs"] == 1).any():
            bands, source = difficulty(replace(data, outcomes=others))
            source = f"{source} of the other models"
        else:
            source = f"{source} of both models (no other model: partly circular)"
    return bands.reindex(problems), source


def split_bands(bands: pd.Series) -> list[tuple[str, np.ndarray]]:
    """All problems, then hard = bands above the median band value and easy = the others.

    With a single band there is no split: only "all problems".
    """
    array = bands.to_numpy(dtype=np.float64)
    out = [("all problems", np.ones(len(array), dtype=bool))]
    values = np.sort(bands.dropna().unique())
    if len(values) < 2:
        return out
    cut = float(np.median(values))
    hard_values = values[values > cut]
    easy_values = values[values <= cut]
    return [
        *out,
        (f"hard (bands {_span(hard_values)})", np.isin(array, hard_values)),
        (f"easy (bands {_span(easy_values)})", np.isin(array, easy_values)),
    ]


def _span(values: np.ndarray) -> str:
    return f"{values.min():g}" if len(values) == 1 else f"{values.min():g}-{values.max():g}"


def _best(accuracy: FloatArray, cost: FloatArray, allowed: np.ndarray) -> int:
    """The most accurate allowed configuration, the cheaper one on ties."""
    order = np.lexsort((cost, -accuracy))
    return int(next(i for i in order if allowed[i]))


def match_held_out(
    small: Configs, large: Configs, columns: np.ndarray, unit: str, rng: np.random.Generator
) -> Matched:
    """Choose on one half of the band's problems, score on the other, both ways, repeated.

    The large model takes its most accurate configuration on the training half; the small
    model its most accurate one whose mean training cost does not exceed the large one's
    (its cheapest if none fits, which the allowance figure then shows above 1).
    """
    small_cost, large_cost = small.cost(unit)[:, columns], large.cost(unit)[:, columns]
    small_acc, large_acc = small.accuracy[:, columns], large.accuracy[:, columns]
    n = len(columns)
    difference = np.zeros(n)
    sums = np.zeros(4)  # small acc, large acc, small cost, large cost (held-out totals)
    allowance = []
    unfit = 0
    small_choices: dict[str, int] = defaultdict(int)
    large_choices: dict[str, int] = defaultdict(int)
    for _ in range(REPEATS):
        fold = rng.permutation(n) % 2
        for held in (0, 1):
            train, test = fold != held, fold == held
            large_mean_cost = large_cost[:, train].mean(axis=1)
            pick_large = _best(
                large_acc[:, train].mean(axis=1), large_mean_cost, np.ones(len(large.labels), bool)
            )
            small_mean_cost = small_cost[:, train].mean(axis=1)
            fits = small_mean_cost <= large_mean_cost[pick_large] * (1 + 1e-9)
            if not fits.any():
                unfit += 1
                fits = small_mean_cost == small_mean_cost.min()
            pick_small = _best(small_acc[:, train].mean(axis=1), small_mean_cost, fits)
            difference[test] += small_acc[pick_small, test] - large_acc[pick_large, test]
            sums += [
                small_acc[pick_small, test].sum(),
                large_acc[pick_large, test].sum(),
                small_cost[pick_small, test].sum(),
                large_cost[pick_large, test].sum(),
            ]
            allowance.append(small_mean_cost.max() / large_mean_cost[pick_large])
            small_choices[small.labels[pick_small]] += 1
            large_choices[large.labels[pick_large]] += 1
    total = REPEATS * n
    return Matched(
        difference=difference / REPEATS,
        small_accuracy=float(sums[0] / total),
        large_accuracy=float(sums[1] / total),
        cost_ratio=float(sums[2] / sums[3]) if sums[3] > 0 else float("nan"),
        allowance_used=float(np.median(allowance)),
        unfit_folds=unfit,
        small_choices=dict(small_choices),
        large_choices=dict(large_choices),
    )


def config_table(
    small: Configs, large: Configs, columns: np.ndarray, unit: str, matched: Matched
) -> pd.DataFrame:
    """One row per configuration of both models on the band: cost, accuracy, how often chosen."""
    rows = []
    folds = 2 * REPEATS
    for role, configs, choices in (
        ("small", small, matched.small_choices),
        ("large", large, matched.large_choices),
    ):
        cost = configs.cost(unit)[:, columns].mean(axis=1)
        accuracy = configs.accuracy[:, columns].mean(axis=1)
        tokens = configs.tokens[:, columns].mean(axis=1)
        for i, label in enumerate(configs.labels):
            rows.append(
                {
                    "model": configs.model,
                    "role": role,
                    "config": label,
                    "unit": unit,
                    "cost": float(cost[i]),
                    "mean_tokens": float(tokens[i]),
                    "accuracy": float(accuracy[i]),
                    "chosen_share": choices.get(label, 0) / folds,
                }
            )
    return pd.DataFrame(rows)


def _protocol(pair: Pair, unit: str, source: str) -> str:
    cost = (
        "FLOPs = 2 x parameters x generated tokens (prompt prefill not counted)"
        if unit == FLOPS
        else "generated tokens (stop cost on forced ladders)"
    )
    return (
        f"Family {pair.family!r}: {pair.small} ({pair.small_params / 1e9:g}B) vs {pair.large} "
        f"({pair.large_params / 1e9:g}B); pairs are models whose names agree once the size "
        "token is removed. Configurations: each recorded (mode, budget), plus hard caps derived "
        "from larger ones (lower bounds); accuracy per problem = mean over samples. Difficulty: "
        f"{source}; findings for all problems, for hard = bands above the median band and for "
        "easy = the rest. On half of the band's problems the large model takes its most "
        "accurate configuration and the small model its most accurate one whose mean "
        f"{cost} does not exceed the large one's; both are scored "
        f"on the other half ({REPEATS} repeated 2-fold splits, per-problem differences averaged). "
        f"Effect = (small - large accuracy) + {MARGIN:g} points, cluster bootstrap over problems "
        "(selection held fixed): supported when the CI lies above 0, i.e. the small model is "
        f"within {MARGIN:g} points or better; contradicted when it lies below 0, i.e. the small "
        f"model is worse by more than {MARGIN:g} points."
    )


def _note(matched: Matched) -> str:
    small = max(matched.small_choices, key=lambda k: matched.small_choices[k])
    large = max(matched.large_choices, key=lambda k: matched.large_choices[k])
    text = (
        f"held out: small {matched.small_accuracy:.1f} vs large {matched.large_accuracy:.1f} "
        f"points at {matched.cost_ratio:.2f}x the large model's cost (mostly {small} vs {large})"
    )
    if matched.allowance_used < 0.9:
        text += (
            f"; the small model's costliest configuration uses only {matched.allowance_used:.0%} "
            "of the allowed compute: more compute for it was not recorded"
        )
    if matched.unfit_folds:
        text += (
            f"; in {matched.unfit_folds} of {2 * REPEATS} splits no small configuration fit the "
            "large model's compute and its cheapest was used"
        )
    return text
