"""Claim 0: is the cheapest budget that solves a problem set by the model or by the prompt?

Per (model, problem) the target is log2 of the cheapest budget whose samples solve the
problem. Its variance is split across the model (its capability tier), the problem's
difficulty band and their interaction, so the two axes are compared on one scale; budget
tables keyed by one axis are then replayed on held-out problems against a table keyed by
both, which says what a policy loses when it ignores an axis.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ponder.claims.base import Claim, Finding, found, insufficient
from ponder.claims.data import ClaimData, difficulty
from ponder.claims.stats import FloatArray, bootstrap_effect
from ponder.curves import with_derived_caps
from ponder.curves.bootstrap import dataset_rng

CLAIM_ID = "tier-or-difficulty"
# A difference of less than 5 points of explained variance leaves both axes equally useful
# for picking a budget, so it does not make difficulty the better predictor.
MIN_EFFECT = 0.05
# A budget solves a problem when at least half of its samples are correct (greedy: the one).
SOLVED = 0.5
# Hard caps: the grid spans the top cap and the four octaves below it (derived caps).
OCTAVES = 4
# A budget table picks, per group, the cheapest budget within 2 points of the group's best.
TOLERANCE = 0.02
# Held-out replay: repeated 2-fold splits of the problems.
REPEATS = 5

ONE_BUDGET = "one budget"
TIER = "tier"
DIFFICULTY = "difficulty"
BOTH = "tier x difficulty"
ORACLE = "per-problem oracle"
KEYINGS = (ONE_BUDGET, TIER, DIFFICULTY, BOTH)


@dataclass(frozen=True)
class Grid:
    """The budgets at which every kept model has a cell, in one mode."""

    mode: str
    kind: str
    budgets: tuple[float, ...]
    models: tuple[str, ...]
    left_out: tuple[str, ...]


@dataclass(frozen=True)
class Ladder:
    """Solve rate and spent tokens per (model, problem, budget) on one grid.

    ``bands`` holds the difficulty band of each (model, problem): the same for every model
    when bands are levels, leave-one-model-out when they are measured on the outcomes.
    """

    grid: Grid
    problems: tuple[str, ...]
    accuracy: FloatArray  # models x problems x budgets
    tokens: FloatArray  # models x problems x budgets
    bands: FloatArray  # models x problems
    band_source: str

    @property
    def models(self) -> tuple[str, ...]:
        return self.grid.models

    def target(self) -> FloatArray:
        """log2 of the cheapest solving budget; unsolved: one octave above the top budget."""
        budgets = np.log2(np.asarray(self.grid.budgets, dtype=np.float64))
        solved = self.accuracy >= SOLVED
        first = np.argmax(solved, axis=2)
        out: FloatArray = np.where(solved.any(axis=2), budgets[first], budgets[-1] + 1.0)
        return out


class TierOrDifficulty(Claim):
    """Does the best budget follow the prompt's difficulty more than the model's tier?"""

    number = 0
    id = CLAIM_ID
    title = "Model tier or prompt difficulty: which sets the best budget?"
    hypothesis = (
        "The cheapest budget that solves a problem is predicted better by the prompt's "
        "difficulty band than by which model (capability tier) answers it."
    )
    needs = (
        "at least 2 models with budgeted samples in one mode (caps or forced ladders), "
        "2+ difficulty bands, and enough problems measured at every budget by all of them"
    )

    def check(self, data: ClaimData) -> list[Finding]:
        rows = data.samples[data.samples["budget"].notna()]
        if rows.empty:
            return [
                insufficient(
                    self.id,
                    data.dataset,
                    "no budgeted samples: every row has an empty budget, so there is no "
                    "cheapest budget to explain",
                    n_problems=data.n_problems,
                )
            ]
        findings: list[Finding] = []
        skipped: list[str] = []
        for mode, mode_rows in rows.groupby("mode", sort=True):
            grid = budget_grid(mode_rows, str(mode))
            if isinstance(grid, str):
                skipped.append(grid)
                continue
            findings.append(self._check_grid(data, mode_rows, grid))
        if not findings:
            return [
                insufficient(self.id, data.dataset, "; ".join(skipped), n_problems=data.n_problems)
            ]
        return findings

    def _check_grid(self, data: ClaimData, rows: pd.DataFrame, grid: Grid) -> Finding:
        scope = f"mode {grid.mode}"
        ladder = build_ladder(data, rows, grid)
        if isinstance(ladder, str):
            return insufficient(self.id, data.dataset, ladder, scope=scope)
        grid = ladder.grid  # models without every grid budget are now left out
        n_problems = len(ladder.problems)
        if n_problems < data.settings.min_problems:
            return insufficient(
                self.id,
                data.dataset,
                f"only {n_problems} problems have every budget of every kept model "
                f"(need {data.settings.min_problems})",
                scope=scope,
                n_problems=n_problems,
            )
        target = ladder.target()
        band_codes, n_bands = _codes(ladder.bands)
        if n_bands < 2:
            return insufficient(
                self.id,
                data.dataset,
                f"one difficulty band ({ladder.band_source}): difficulty cannot explain anything",
                scope=scope,
                n_problems=n_problems,
            )
        if np.ptp(target) == 0:
            return insufficient(
                self.id,
                data.dataset,
                "every model's cheapest solving budget is the same on every problem: no "
                "variation to explain",
                scope=scope,
                n_problems=n_problems,
            )
        groups = _keyings(len(grid.models), n_problems, band_codes, n_bands)
        shares = VarianceShares(target, groups)
        s = data.settings
        effect = bootstrap_effect(
            lambda w: shares.adjusted(w, DIFFICULTY) - shares.adjusted(w, TIER),
            n_problems,
            name="adjusted R2(difficulty) - R2(tier)",
            unit="share of variance",
            n_boot=s.n_boot,
            seed=s.seed,
            key=f"{data.dataset}/{self.id}/{grid.mode}",
            ci=s.ci,
            min_effect=MIN_EFFECT,
        )
        ones = np.ones((1, n_problems))
        r2 = {k: float(shares.r2(ones, k)[0]) for k in (TIER, DIFFICULTY, BOTH)}
        replayed = replay_tables(
            ladder, groups, dataset_rng(s.seed, f"{data.dataset}/{self.id}/{grid.mode}/replay")
        )
        extras = {
            "r2_tier": r2[TIER],
            "r2_difficulty": r2[DIFFICULTY],
            "r2_tier_x_difficulty": r2[BOTH],
            "r2_interaction": r2[BOTH] - r2[TIER] - r2[DIFFICULTY],
            "unsolved_share": float(np.mean(target > math.log2(grid.budgets[-1]))),
        }
        for keying, (accuracy, tokens) in replayed.items():
            name = keying.replace(" x ", "_x_").replace(" ", "_").replace("-", "_")
            prefix = "insample" if keying == ORACLE else "heldout"
            extras[f"{prefix}_accuracy_{name}"] = accuracy
            extras[f"{prefix}_tokens_{name}"] = tokens
        both_acc, both_tokens = replayed[BOTH]
        for keying in (TIER, DIFFICULTY):
            accuracy, tokens = replayed[keying]
            extras[f"{keying}_only_extra_tokens"] = _relative(tokens, both_tokens)
            extras[f"{keying}_only_accuracy_loss"] = both_acc - accuracy
        return found(
            self.id,
            data.dataset,
            scope,
            effect,
            n_problems=n_problems,
            protocol=_protocol(ladder),
            table=cell_table(ladder, target),
            extras=extras,
            note=_note(r2, replayed, grid),
        )

    def plot(self, finding: Finding) -> bytes | None:
        """Heatmap of the mean cheapest solving budget per model (rows) and band (columns).

        Rows that differ mean the tier matters; columns that differ, the difficulty.
        """
        table = finding.table
        if table is None or table.empty:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        grid = table.pivot(index="model", columns="band", values="mean_log2_budget")
        fig, ax = plt.subplots(figsize=(1.2 * grid.shape[1] + 3, 0.45 * grid.shape[0] + 1.8))
        image = ax.imshow(grid.to_numpy(dtype=float), aspect="auto", cmap="viridis")
        ax.set_xticks(range(grid.shape[1]), [f"{b:g}" for b in grid.columns])
        ax.set_yticks(range(grid.shape[0]), list(grid.index))
        for (i, j), value in np.ndenumerate(grid.to_numpy(dtype=float)):
            if np.isfinite(value):
                ax.text(j, i, f"{2**value:.0f}", ha="center", va="center", color="w", fontsize=8)
        ax.set_xlabel("difficulty band (1 = easiest); cells: geometric mean budget")
        fig.colorbar(image, ax=ax, label="log2 cheapest solving budget (unsolved: 2 x top)")
        e = finding.extras
        ax.set_title(
            f"{finding.dataset} {finding.scope}: R2 tier {e.get('r2_tier', float('nan')):.2f}, "
            f"difficulty {e.get('r2_difficulty', float('nan')):.2f}, "
            f"both {e.get('r2_tier_x_difficulty', float('nan')):.2f}",
            fontsize=9,
        )
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        return buffer.getvalue()


def budget_grid(rows: pd.DataFrame, mode: str) -> Grid | str:
    """The common budget grid of one mode's models, or why there is none.

    The top budget is the largest that at least half the models (and at least two) reach;
    models that stop below it are left out, so every kept model is measured on the same
    budgets. Hard caps below the top are derived (exact up to answers graded from truncated
    text); forced ladders use the rungs every kept model has.
    """
    kind = str(rows["budget_kind"].astype(str).value_counts().idxmax())
    rows = rows[rows["budget_kind"].astype(str) == kind]
    largest = rows.groupby("model")["budget"].max().sort_values(ascending=False)
    if len(largest) < 2:
        return f"mode {mode}: only {len(largest)} model with budgets (need 2 to compare tiers)"
    need = max(2, math.ceil(len(largest) / 2))
    top = float(largest.iloc[need - 1])
    kept = tuple(sorted(str(m) for m in largest.index[largest >= top]))
    left_out = tuple(f"{m} (largest budget {b:g} < {top:g})" for m, b in largest.items() if b < top)
    if kind == "hard_cap":
        low = top / 2**OCTAVES
        powers = {float(2**e) for e in range(64) if low <= 2**e <= top}
        budgets = tuple(sorted(powers | {top}))
    else:
        per_model = [set(rows.loc[rows["model"] == m, "budget"].astype(float)) for m in kept]
        budgets = tuple(sorted(b for b in set.intersection(*per_model) if b <= top))
    if len(budgets) < 2:
        return f"mode {mode}: the kept models share fewer than 2 budgets"
    return Grid(mode, kind, budgets, kept, left_out)


def spent_tokens(rows: pd.DataFrame) -> pd.Series:
    """Tokens a request at this budget pays: the stop cost on forced ladders, else output."""
    stop = pd.to_numeric(rows["stop_cost_tokens"], errors="coerce")
    output = pd.to_numeric(rows["output_tokens"], errors="coerce")
    forced = rows["budget_kind"].astype(str) == "forced"
    return stop.where(forced & stop.notna(), output)


def build_ladder(data: ClaimData, rows: pd.DataFrame, grid: Grid) -> Ladder | str:
    """Per (model, problem, budget) solve rates on the grid, or why they cannot be built.

    Hard caps below a model's recorded caps are derived from its larger cap; a model missing
    a grid budget after that is left out, and problems missing any cell are dropped.
    """
    rows = rows[rows["model"].isin(grid.models) & (rows["budget_kind"].astype(str) == grid.kind)]
    if grid.kind == "hard_cap":
        rows = with_derived_caps(rows, budgets=list(grid.budgets))
    rows = rows[rows["budget"].isin(grid.budgets)]
    cells = (
        rows.assign(_tokens=spent_tokens(rows))
        .groupby(["model", "problem_id", "budget"])
        .agg(accuracy=("correct", "mean"), tokens=("_tokens", "mean"))
    )
    have = cells.reset_index().groupby("model")["budget"].nunique()
    models = tuple(m for m in grid.models if have.get(m, 0) == len(grid.budgets))
    left_out = grid.left_out + tuple(
        f"{m} (no cell at some grid budget)" for m in grid.models if m not in models
    )
    if len(models) < 2:
        return f"fewer than 2 models have every budget of {list(grid.budgets)}"
    grid = replace(grid, models=models, left_out=left_out)
    index = pd.MultiIndex.from_product(
        [list(models), sorted(cells.index.get_level_values("problem_id").unique()), grid.budgets],
        names=["model", "problem_id", "budget"],
    )
    full = cells.reindex(index)
    n_models, n_budgets = len(models), len(grid.budgets)
    accuracy = full["accuracy"].to_numpy(dtype=np.float64).reshape(n_models, -1, n_budgets)
    tokens = full["tokens"].to_numpy(dtype=np.float64).reshape(n_models, -1, n_budgets)
    problems = np.asarray(index.levels[1])
    bands, source = model_bands(data, models, [str(p) for p in problems])
    complete = ~np.isnan(accuracy).any(axis=(0, 2)) & ~np.isnan(bands).any(axis=0)
    return Ladder(
        grid=grid,
        problems=tuple(str(p) for p in problems[complete]),
        accuracy=accuracy[:, complete],
        tokens=tokens[:, complete],
        bands=bands[:, complete],
        band_source=source,
    )


def model_bands(
    data: ClaimData, models: tuple[str, ...], problems: list[str]
) -> tuple[FloatArray, str]:
    """Difficulty band per (model, problem) and how it was set.

    Levels are the same for every model. Empirical bands are measured on the outcomes, so
    each model gets the bands of the other models' solve rates: its own failures do not
    make a problem "hard" for it by construction.
    """
    bands, source = difficulty(data)
    if source == "level":
        row = bands.reindex(problems).to_numpy(dtype=np.float64)
        return np.tile(row, (len(models), 1)), source
    out = np.full((len(models), len(problems)), np.nan)
    for i, model in enumerate(models):
        others = replace(data, outcomes=data.outcomes[data.outcomes["model"] != model])
        if others.samples.empty:
            continue
        own, _ = difficulty(others)
        out[i] = own.reindex(problems).to_numpy(dtype=np.float64)
    return out, f"{source} of the other models' solve rates (leave one model out)"


def _codes(bands: FloatArray) -> tuple[np.ndarray, int]:
    values, codes = np.unique(bands, return_inverse=True)
    return codes.reshape(bands.shape), len(values)


def _keyings(
    n_models: int, n_problems: int, band_codes: np.ndarray, n_bands: int
) -> dict[str, tuple[np.ndarray, int]]:
    """Group id per (model, problem) and group count, for each budget-table keying."""
    tier = np.repeat(np.arange(n_models)[:, None], n_problems, axis=1)
    return {
        ONE_BUDGET: (np.zeros((n_models, n_problems), dtype=np.int64), 1),
        TIER: (tier, n_models),
        DIFFICULTY: (band_codes, n_bands),
        BOTH: (tier * n_bands + band_codes, n_models * n_bands),
    }


class VarianceShares:
    """Explained shares (R2) of the target by each keying, for rows of problem weights.

    Every (model, problem) observation carries its problem's weight, so a bootstrap row
    resamples problems with all their models. Adjusted R2 charges each keying for its
    number of groups (models usually outnumber bands).
    """

    def __init__(self, target: FloatArray, groups: dict[str, tuple[np.ndarray, int]]) -> None:
        self.target = target
        self.n_obs = target.size
        self._sums: dict[str, tuple[FloatArray, FloatArray, int]] = {}
        for keying, (codes, n_groups) in groups.items():
            onehot = np.zeros((*target.shape, n_groups))
            np.put_along_axis(onehot, codes[..., None], 1.0, axis=2)
            per_problem_sums = np.einsum("mp,mpk->pk", target, onehot)
            self._sums[keying] = (per_problem_sums, onehot.sum(axis=0), int(n_groups))

    def _total(self, weights: FloatArray) -> tuple[FloatArray, FloatArray]:
        n_models = self.target.shape[0]
        n = n_models * weights.sum(axis=1)
        mean = (weights @ self.target.sum(axis=0)) / n
        ss = weights @ (self.target**2).sum(axis=0) - n * mean**2
        return ss, mean

    def r2(self, weights: FloatArray, keying: str) -> FloatArray:
        ss_total, mean = self._total(weights)
        sums, counts, _ = self._sums[keying]
        s = weights @ sums
        c = weights @ counts
        with np.errstate(invalid="ignore", divide="ignore"):
            between = np.where(c > 0, s**2 / c, 0.0).sum(axis=1) - c.sum(axis=1) * mean**2
            out: FloatArray = between / ss_total
        return out

    def adjusted(self, weights: FloatArray, keying: str) -> FloatArray:
        n_groups = self._sums[keying][2]
        n = self.n_obs
        out: FloatArray = 1.0 - (1.0 - self.r2(weights, keying)) * (n - 1) / (n - n_groups)
        return out


def _cheapest_near_best(curves: FloatArray) -> np.ndarray:
    """Per row, the first (cheapest) budget within TOLERANCE of the row's best accuracy."""
    filled = np.nan_to_num(curves, nan=-1.0)
    best = filled.max(axis=1, keepdims=True)
    choice: np.ndarray = np.argmax(filled >= best - TOLERANCE, axis=1)
    return choice


def replay_tables(
    ladder: Ladder, groups: dict[str, tuple[np.ndarray, int]], rng: np.random.Generator
) -> dict[str, tuple[float, float]]:
    """Held-out accuracy and mean tokens of a budget table per keying (and the oracle).

    Each table is fitted on half the problems (per group: the cheapest budget within
    TOLERANCE of the group's best training accuracy; a group without training data gets the
    one-budget choice) and replayed on the other half; repeated 2-fold splits are pooled.
    The oracle picks per (model, problem) in-sample: the floor no table can beat.
    """
    acc, tok = ladder.accuracy, ladder.tokens
    _, n_problems, n_budgets = acc.shape
    totals = {k: np.zeros(3) for k in groups}
    for _ in range(REPEATS):
        fold = rng.permutation(n_problems) % 2
        for held in (0, 1):
            train, test = fold != held, fold == held
            flat_acc = acc[:, train].reshape(-1, n_budgets)
            fallback = int(_cheapest_near_best(flat_acc.mean(axis=0, keepdims=True))[0])
            for keying, (codes, n_groups) in groups.items():
                flat = codes[:, train].ravel()
                sums = np.zeros((n_groups, n_budgets))
                np.add.at(sums, flat, flat_acc)
                counts = np.bincount(flat, minlength=n_groups)[:, None]
                with np.errstate(invalid="ignore", divide="ignore"):
                    choice = _cheapest_near_best(sums / counts)
                choice[counts[:, 0] == 0] = fallback
                picked = choice[codes[:, test]][..., None]
                got_acc = np.take_along_axis(acc[:, test], picked, axis=2)
                got_tok = np.take_along_axis(tok[:, test], picked, axis=2)
                totals[keying] += [got_acc.sum(), np.nansum(got_tok), np.sum(~np.isnan(got_tok))]
    out = {
        k: (float(t[0] / (REPEATS * acc[..., 0].size)), _mean_known(t[1], t[2]))
        for k, t in totals.items()
    }
    oracle = _cheapest_near_best(acc.reshape(-1, n_budgets))
    flat_tok = tok.reshape(-1, n_budgets)[np.arange(oracle.size), oracle]
    flat_acc = acc.reshape(-1, n_budgets)[np.arange(oracle.size), oracle]
    known = ~np.isnan(flat_tok)
    out[ORACLE] = (float(flat_acc.mean()), _mean_known(flat_tok[known].sum(), known.sum()))
    return out


def _relative(value: float, reference: float) -> float:
    """value / reference - 1, NaN when the reference is zero or unknown."""
    return value / reference - 1.0 if reference > 0 else float("nan")


def _mean_known(total: float, count: float) -> float:
    """A mean over the cells whose tokens are known (NaN when none is)."""
    return float(total / count) if count else float("nan")


def cell_table(ladder: Ladder, target: FloatArray) -> pd.DataFrame:
    """One row per (model, band): problems, mean log2 cheapest solving budget, unsolved share."""
    top = math.log2(ladder.grid.budgets[-1])
    frame = pd.DataFrame(
        {
            "model": np.repeat(np.asarray(ladder.models, dtype=object), len(ladder.problems)),
            "band": ladder.bands.ravel(),
            "target": target.ravel(),
        }
    )
    frame["unsolved"] = frame["target"] > top
    return (
        frame.groupby(["model", "band"], sort=True)
        .agg(
            n_problems=("target", "size"),
            mean_log2_budget=("target", "mean"),
            unsolved_share=("unsolved", "mean"),
        )
        .reset_index()
    )


def _protocol(ladder: Ladder) -> str:
    grid = ladder.grid
    budgets = ", ".join(f"{b:g}" for b in grid.budgets)
    derived = (
        " (caps below a model's recorded ones derived from its larger cap: a lower bound "
        "where answers are graded from truncated text)"
        if grid.kind == "hard_cap"
        else ""
    )
    left = f" Left out: {'; '.join(grid.left_out)}." if grid.left_out else ""
    return (
        f"Mode {grid.mode}, {grid.kind} budgets {budgets}{derived}; models "
        f"{', '.join(grid.models)}.{left} Per (model, problem) the target is log2 of the "
        f"cheapest budget whose samples are at least {SOLVED:.0%} correct (never solved: "
        f"log2 of the top budget + 1). Tier = the model; difficulty = {ladder.band_source}. "
        "Explained variance (R2 of group means; every model's observation of a problem carries "
        "the problem's bootstrap weight) by tier, by difficulty, by both with interaction "
        "(interaction = R2(both) - R2(tier) - R2(difficulty), exact when every model shares "
        "the bands); "
        "effect = adjusted R2(difficulty) - adjusted R2(tier), cluster bootstrap over "
        f"problems; contradicted below {MIN_EFFECT:+.2f}. Budget tables keyed by one axis, "
        f"by both, or by nothing pick per group the cheapest budget within {TOLERANCE * 100:g} "
        "points of its best accuracy on half the problems and are replayed on the other half "
        f"({REPEATS} repeated 2-fold splits; point estimates, no interval)."
    )


def _note(r2: dict[str, float], replayed: dict[str, tuple[float, float]], grid: Grid) -> str:
    both_acc, both_tok = replayed[BOTH]
    parts = [
        f"R2 tier {r2[TIER]:.2f}, difficulty {r2[DIFFICULTY]:.2f}, both {r2[BOTH]:.2f}",
        f"held-out two-axis table: {both_acc:.1%} correct at {both_tok:.0f} tokens",
    ]
    for keying in (TIER, DIFFICULTY):
        acc, tok = replayed[keying]
        parts.append(
            f"{keying} only: {acc - both_acc:+.1%} accuracy, {_relative(tok, both_tok):+.0%} tokens"
        )
    if grid.left_out:
        parts.append(f"{len(grid.left_out)} model(s) left out")
    return "; ".join(parts)
