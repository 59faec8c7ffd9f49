"""Claim 6, width vs depth: k sampled chains and a majority vote against one longer chain.

A user with a token allowance can spend it on k parallel chains at budget B and vote, or on
one chain allowed more. The arms are matched on the output tokens they actually spend (a
chain that stops on its own spends less than its cap, so k x B and one chain at k x B are
not equal costs), and each comparison reports the real token ratio of its two arms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from ponder.claims.base import Claim, Effect, Finding, found, insufficient
from ponder.claims.data import ClaimData
from ponder.claims.stats import (
    FloatArray,
    Statistic,
    bootstrap_effect,
    index_of,
    weighted_mean,
)
from ponder.curves import derive_caps, expected_majority, with_derived_caps
from ponder.curves.passk import unique_rows
from ponder.grading import normalize_answer

IntArray = npt.NDArray[np.int64]

# The two arms count as equal cost when the depth arm's mean output tokens are within 15% of
# the width arm's: tighter leaves few comparisons on recorded caps, looser lets the cheaper
# arm win on cost rather than on how it spends the tokens.
TOKEN_TOLERANCE = 0.15
# "Beats": any gain of the vote counts, and an interval entirely below zero contradicts it.
MIN_EFFECT = 0.0
# Width arms at hard caps below the recorded ones are derived (exactly) from the next larger
# recorded cap, at powers of two down to this many halvings below the model's smallest cap.
WIDTH_OCTAVES = 3
# Votes over more k-subsets than this are a seeded Monte-Carlo mean (as in curves.passk).
MAX_SUBSETS = 2000


TABLE_COLUMNS = [
    "model",
    "mode",
    "k",
    "width_budget",
    "depth_budget",
    "width_derived",
    "depth_derived",
    "width_tokens",
    "depth_tokens",
    "token_ratio",
    "width_answered",
    "width_accuracy",
    "depth_accuracy",
    "effect",
    "low",
    "high",
    "n_problems",
    "status",
]

PROTOCOL = (
    "Per model and mode, for every budget B with at least 2 samples per problem and every k "
    "from 2 to the samples recorded: width = expected majority vote over k-subsets of the "
    "samples at B (answers compared after normalize_answer; unanswered samples do not vote; "
    "ties scored as the expected result of a random tie-break, as in curves.maj_at_k_table), "
    "costing k x the mean output tokens at B; a B at which no sample answers is skipped (its "
    "vote is 0 by construction). Depth = the expected accuracy of one chain of the same mode "
    "(mean over its samples) at a budget D > B: the smallest D whose chain spends at least "
    "the width arm's tokens (on hard caps solved to the token with derived caps, the first D "
    "tokens of the next larger recorded cap; on probe ladders a recorded rung, tokens = "
    "output tokens at the rung, not the probes before it), or, if that overshoots, the "
    "budget closest in tokens. A comparison counts only when depth/width mean tokens lie "
    f"within {1 - TOKEN_TOLERANCE:.2f}..{1 + TOKEN_TOLERANCE:.2f} on its problems. Width "
    f"budgets: the recorded ones plus powers of two down to 2^-{WIDTH_OCTAVES} x the model's "
    "smallest recorded cap (derived: a cut chain has no answer, so accuracies there are "
    "strict-rule lower bounds, for both arms). Effect = width minus depth accuracy in points, "
    "paired cluster bootstrap over problems; the dataset's overall effect averages each "
    "model's mean effect over its comparisons, with the same bootstrap weights. "
    "min_effect 0: the vote must beat the chain."
)


@dataclass(frozen=True)
class _Cell:
    """One budget of one model and mode, as arrays over the dataset's problems."""

    budget: float
    derived: bool
    n: FloatArray  # samples per problem (0 where absent)
    accuracy: FloatArray  # mean correct of one chain, NaN where absent
    tokens: FloatArray  # mean output tokens of one chain, NaN where absent or unknown
    answered: FloatArray  # share of samples with an answer (the ones that vote)
    votes: FloatArray  # (problems x k_max + 1): expected maj@k in column k, NaN where n < k


@dataclass(frozen=True)
class _Comparison:
    """Width (maj@k at one budget) against depth (one chain at a larger budget)."""

    model: str
    mode: str
    k: int
    width: _Cell
    depth: _Cell | None
    ratio: float
    status: str  # "matched", or why not

    def problems(self) -> npt.NDArray[np.bool_]:
        """Problems with k samples for the vote and a chain at the depth budget."""
        has_width = self.width.n >= self.k
        if self.depth is None:
            return has_width
        return has_width & (self.depth.n >= 1)

    def difference(self) -> FloatArray:
        """Width minus depth accuracy per problem (points), NaN where an arm is missing."""
        if self.depth is None:
            return np.full(len(self.width.n), np.nan)
        keep = self.problems()
        diff = 100.0 * (self.width.votes[:, self.k] - self.depth.accuracy)
        return np.where(keep, diff, np.nan)


class WidthVsDepth(Claim):
    """Claim 6: k votes at budget B against one chain that spends the same tokens."""

    number: ClassVar[int] = 6
    id: ClassVar[str] = "width-vs-depth"
    title: ClassVar[str] = "Width vs depth: parallel samples with a vote vs one longer chain"
    hypothesis: ClassVar[str] = (
        "Majority@k over parallel samples at budget B beats one chain at about k x B, "
        "at equal tokens spent."
    )
    needs: ClassVar[str] = (
        "at least 2 samples per problem at a token budget (hard caps or a sampled probe "
        "ladder) and a larger budget for the single chain, with extracted answers"
    )

    def check(self, data: ClaimData) -> list[Finding]:
        rows = data.budgeted
        if rows.empty:
            return [self._refuse(data, "no token budgets recorded (hard caps or probe ladders)")]
        if int(rows.groupby(["model", "mode", "budget", "problem_id"]).size().max()) < 2:
            return [
                self._refuse(
                    data,
                    "one sample per configuration (e.g. greedy ladders): a vote needs at "
                    "least 2 samples of a problem at one budget",
                )
            ]
        position = index_of(sorted(data.outcomes["problem_id"].astype(str).unique()))
        comparisons: list[_Comparison] = []
        skipped: list[str] = []
        for (model, mode, kind), group in rows.groupby(["model", "mode", "budget_kind"]):
            why = _unvotable(group)
            if why:
                skipped.append(f"{model} ({mode}): {why}")
                continue
            comparisons += _compare(str(model), str(mode), str(kind), group, position)
        if not comparisons:
            return [self._refuse(data, "; ".join(skipped))]
        return self._findings(data, comparisons, len(position))

    def plot(self, finding: Finding) -> bytes | None:
        table = finding.table
        if table is None or table.empty or table["effect"].notna().sum() == 0:
            return None
        import matplotlib.pyplot as plt

        from ponder.report.plots import figure_png

        shown = table[table["effect"].notna()]
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        markers = {2: "o", 3: "s", 4: "^", 5: "D"}
        for i, (label, rows) in enumerate(shown.groupby(["model", "mode"], sort=True)):
            color = plt.get_cmap("tab20")(i % 20)
            for k in sorted({int(v) for v in rows["k"]}):
                at_k = rows[rows["k"] == k]
                ax.errorbar(
                    at_k["width_tokens"],
                    at_k["effect"],
                    yerr=[at_k["effect"] - at_k["low"], at_k["high"] - at_k["effect"]],
                    fmt=markers.get(k, "v"),
                    color=color,
                    capsize=3,
                    label=f"{label[0]} ({label[1]}), k={k}",
                )
        ax.axhline(0.0, color="grey", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("tokens spent by each arm (width: k x mean output tokens at B)")
        ax.set_ylabel("maj@k minus one chain (points)")
        ax.set_title(f"{finding.dataset}: width vs depth, {finding.scope}", fontsize=10)
        ax.legend(fontsize=7, loc="best", ncol=2)
        return figure_png(fig)

    def _refuse(self, data: ClaimData, reason: str, scope: str = "all models") -> Finding:
        return insufficient(self.id, data.dataset, reason, scope=scope, n_problems=data.n_problems)

    def _findings(
        self, data: ClaimData, comparisons: Sequence[_Comparison], n_problems: int
    ) -> list[Finding]:
        settings = data.settings
        key = f"{data.dataset}:{self.id}"  # one key: every finding shares the same resamples

        def effect_of(statistic: Statistic, name: str) -> Effect:
            return bootstrap_effect(
                statistic,
                n_problems,
                name=name,
                unit="points",
                n_boot=settings.n_boot,
                seed=settings.seed,
                key=key,
                ci=settings.ci,
                min_effect=MIN_EFFECT,
            )

        findings: list[Finding] = []
        table_rows: list[dict[str, object]] = []
        tested: list[_Comparison] = []
        for comparison in comparisons:
            row = _table_row(comparison)
            table_rows.append(row)
            if comparison.status != "matched":
                continue
            used = int(comparison.problems().sum())
            if used < settings.min_problems:
                row["status"] = f"only {used} problems"
                continue
            # Each comparison's own interval is kept for the table and the plot; the
            # verdicts are per model (pooled over its comparisons) and per dataset.
            effect = effect_of(_mean_of(comparison.difference()), "comparison")
            row.update(effect=effect.value, low=effect.low, high=effect.high)
            tested.append(comparison)
        table = pd.DataFrame(table_rows, columns=TABLE_COLUMNS)
        unmatched = int((table["status"] != "matched").sum())
        if not tested:
            findings.append(self._refuse(data, _why_untested(table)))
            return findings
        models = sorted({(c.model, c.mode) for c in tested})
        diffs = np.vstack([c.difference() for c in tested])  # comparisons x problems
        owner = np.array([models.index((c.model, c.mode)) for c in tested])

        def per_model(weights: FloatArray) -> FloatArray:
            per_comparison = np.column_stack([weighted_mean(d, weights) for d in diffs])
            return np.column_stack(
                [per_comparison[:, owner == m].mean(axis=1) for m in range(len(models))]
            )

        for m, (model, mode) in enumerate(models):
            mine = [c for c, o in zip(tested, owner, strict=True) if o == m]
            rows = table[(table["model"] == model) & (table["mode"] == mode)]

            def one(weights: FloatArray, m: int = m) -> FloatArray:
                return np.asarray(per_model(weights)[:, m], dtype=np.float64)

            effect = effect_of(one, "maj@k minus one chain, mean over comparisons")
            findings.append(
                found(
                    self.id,
                    data.dataset,
                    f"{model} ({mode})",
                    effect,
                    n_problems=int(np.isfinite(diffs[owner == m]).any(axis=0).sum()),
                    protocol=PROTOCOL,
                    table=rows.reset_index(drop=True),
                    extras={
                        "comparisons": float(len(mine)),
                        "mean_token_ratio": float(np.mean([c.ratio for c in mine])),
                        "mean_width_answered": float(
                            rows.loc[rows["effect"].notna(), "width_answered"].mean()
                        ),
                    },
                    note=f"{len(mine)} comparisons (k x budget), depth/width tokens "
                    f"{min(c.ratio for c in mine):.2f}..{max(c.ratio for c in mine):.2f}",
                )
            )

        def pooled(weights: FloatArray) -> FloatArray:
            return np.asarray(per_model(weights).mean(axis=1), dtype=np.float64)

        effect = effect_of(pooled, "maj@k minus one chain, mean over models")
        used = int(np.isfinite(diffs).any(axis=0).sum())
        findings.append(
            found(
                self.id,
                data.dataset,
                "all models",
                effect,
                n_problems=used,
                protocol=PROTOCOL,
                table=table,
                extras={
                    "mean_width_answered": float(
                        table.loc[table["effect"].notna(), "width_answered"].mean()
                    ),
                    "comparisons": float(len(tested)),
                    "models": float(len(models)),
                    "not_compared": float(unmatched),
                    "mean_token_ratio": float(np.mean([c.ratio for c in tested])),
                },
                note=f"{len(tested)} comparisons over {len(models)} models, "
                f"{unmatched} not compared (tokens or problems)",
            )
        )
        return findings


def _mean_of(values: FloatArray) -> Statistic:
    """The statistic: the per-problem values' weighted mean, one per weights row."""

    def statistic(weights: FloatArray) -> FloatArray:
        return weighted_mean(values, weights)

    return statistic


def _why_untested(table: pd.DataFrame) -> str:
    """Why no comparison got a verdict, counted by status."""
    counts = table["status"].value_counts()
    parts = [f"{n} {status}" for status, n in counts.items()]
    ratios = table.loc[table["status"] == "tokens differ", "token_ratio"]
    if len(ratios):
        parts.append(
            f"depth/width tokens {ratios.min():.2f}..{ratios.max():.2f}, outside "
            f"1 +- {TOKEN_TOLERANCE:g}: one chain that stops on its own spends less than the "
            "k chains of a vote"
        )
    return f"no width arm could be compared at equal tokens ({'; '.join(parts)})"


def _unvotable(group: pd.DataFrame) -> str:
    """Why a model's samples cannot be voted on (correct samples without an answer), or ''."""
    answer = group["extracted_answer"]
    missing = answer.isna() | (answer.astype(str).str.strip() == "")
    lost = int(((group["correct"] == 1) & missing).sum())
    return f"{lost} correct samples have no extracted answer to vote with" if lost else ""


def _compare(
    model: str, mode: str, kind: str, group: pd.DataFrame, position: dict[str, int]
) -> list[_Comparison]:
    """Every (budget, k) width arm of one model and mode against its depth arm."""
    if kind == "hard_cap":
        caps = sorted(float(b) for b in group["budget"].unique())
        floor = caps[0] / 2**WIDTH_OCTAVES
        grid = [float(2**e) for e in range(64) if floor <= 2**e < caps[-1]]
        rows = with_derived_caps(group, sorted(set(grid) | set(caps)))
    else:
        rows = group.assign(derived=False)
    cells = _cells(rows, position)
    wanted: list[tuple[_Cell, int, float]] = []  # width cell, k, depth budget
    out: list[_Comparison] = []
    for cell in cells.values():
        for k in range(2, int(cell.n.max()) + 1):
            has = cell.n >= k
            if not np.any(cell.answered[has] > 0):
                # Every sample was cut before answering: maj@k is 0 by construction.
                out.append(_Comparison(model, mode, k, cell, None, math.nan, "no answers to vote"))
                continue
            spent = k * float(np.mean(cell.tokens[has]))
            if not math.isfinite(spent):
                out.append(_Comparison(model, mode, k, cell, None, math.nan, "tokens unknown"))
                continue
            if kind == "hard_cap":
                options = _cap_options(group, position, has, spent, cell.budget)
            else:
                options = [
                    (c.budget, _mean_present(c.tokens[has]))
                    for c in cells.values()
                    if c.budget > cell.budget
                ]
            depth = _choose_depth(options, spent)
            if depth is None:
                out.append(_Comparison(model, mode, k, cell, None, math.nan, "no larger budget"))
                continue
            wanted.append((cell, k, depth))
    missing = sorted({d for _, _, d in wanted if d not in cells})
    if missing:
        cells.update(_cells(derive_caps(group, missing), position))
    for cell, k, budget in wanted:
        depth_cell = cells.get(budget)
        if depth_cell is None:
            out.append(_Comparison(model, mode, k, cell, None, math.nan, "depth not derivable"))
            continue
        probe = _Comparison(model, mode, k, cell, depth_cell, math.nan, "")
        both = probe.problems()
        if not both.any():
            out.append(
                _Comparison(model, mode, k, cell, depth_cell, math.nan, "no shared problems")
            )
            continue
        ratio = _mean_present(depth_cell.tokens[both]) / (k * _mean_present(cell.tokens[both]))
        status = "matched" if abs(ratio - 1) <= TOKEN_TOLERANCE else "tokens differ"
        out.append(_Comparison(model, mode, k, cell, depth_cell, ratio, status))
    return sorted(out, key=lambda c: (c.width.budget, c.k))


def _cap_options(
    group: pd.DataFrame,
    position: dict[str, int],
    problems: npt.NDArray[np.bool_],
    spent: float,
    above: float,
) -> list[tuple[float, float]]:
    """Depth caps > ``above`` with their chain's mean tokens on ``problems``.

    The recorded caps, plus the smallest cap (solved to the token) whose chain spends at least
    ``spent``: a cap D between recorded caps is the first D tokens of the next larger one
    (the rule of curves.derive_caps), so its tokens are the source's tokens clipped at D.
    """
    pos: IntArray = np.asarray(group["problem_id"].astype(str).map(position), dtype=np.int64)
    keep = problems[pos]
    tokens = group["output_tokens"].to_numpy(dtype=np.float64)
    budget = group["budget"].to_numpy(dtype=np.float64)
    caps = [float(b) for b in np.unique(budget) if b > above]
    options: list[tuple[float, float]] = []
    lower, solved = above, False
    for cap in caps:
        at = keep & (budget == cap)

        def spent_at(d: float, at: npt.NDArray[np.bool_] = at) -> float:
            return _mean_per_problem(np.minimum(tokens[at], d), pos[at])

        options.append((cap, spent_at(cap)))
        if not solved and spent_at(cap) >= spent:
            # Smallest integer D in (lower, cap] with spent_at(D) >= spent (monotone in D).
            low, high = math.floor(lower), int(cap)
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (low, middle) if spent_at(middle) >= spent else (middle, high)
            if high < cap:
                options.append((float(high), spent_at(high)))
            solved = True
        lower = cap
    return sorted(options)


def _choose_depth(options: Sequence[tuple[float, float]], spent: float) -> float | None:
    """The smallest budget whose chain spends at least ``spent`` tokens, unless it overshoots
    the tolerance; then the budget whose tokens come closest (None without options)."""
    if not options:
        return None
    reaching = [b for b, t in sorted(options) if t >= spent]
    if reaching:
        first = reaching[0]
        tokens = dict(options)[first]
        if tokens / spent <= 1 + TOKEN_TOLERANCE:
            return first
    return min(options, key=lambda o: abs(o[1] / spent - 1))[0]


def _mean_present(values: FloatArray) -> float:
    """Mean of the values (NaN when there are none or one is unknown)."""
    return float(np.mean(values)) if len(values) else math.nan


def _mean_per_problem(values: FloatArray, problem: IntArray) -> float:
    """Mean over problems of each problem's mean (problems weigh equally, as in the effect)."""
    if len(values) == 0:
        return math.nan
    sums = np.bincount(problem, weights=values)
    counts = np.bincount(problem)
    present = counts > 0
    return float(np.mean(sums[present] / counts[present]))


def _cells(rows: pd.DataFrame, position: dict[str, int]) -> dict[float, _Cell]:
    """Per budget: samples, one-chain accuracy, tokens and maj@k, per problem."""
    if rows.empty:
        return {}
    n_problems = len(position)
    budget = rows["budget"].to_numpy(dtype=np.float64)
    budgets = np.unique(budget)
    key = np.searchsorted(budgets, budget) * n_problems + rows["problem_id"].astype(str).map(
        position
    ).to_numpy(dtype=np.int64)
    size = len(budgets) * n_problems
    n = np.bincount(key, minlength=size).astype(np.float64)
    correct = rows["correct"].to_numpy(dtype=np.float64)
    tokens = rows["output_tokens"].to_numpy(dtype=np.float64)
    known = ~np.isnan(tokens)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(key, weights=correct, minlength=size) / n
        spent = np.bincount(key, weights=np.where(known, tokens, 0.0), minlength=size) / n
    all_known = np.bincount(key, weights=known, minlength=size) == n
    spent = np.where(all_known, spent, np.nan)
    codes = _answer_codes(rows["extracted_answer"])
    with np.errstate(invalid="ignore", divide="ignore"):
        answered = np.bincount(key, weights=codes >= 0, minlength=size) / n
    votes = _majority(key, codes, correct, size)
    derived = (
        rows["derived"].fillna(False).astype(bool).to_numpy()
        if "derived" in rows.columns
        else np.zeros(len(rows), dtype=bool)
    )
    out: dict[float, _Cell] = {}
    for i, value in enumerate(budgets.tolist()):
        part = slice(i * n_problems, (i + 1) * n_problems)
        out[float(value)] = _Cell(
            budget=float(value),
            derived=bool(derived[budget == value].any()),
            n=n[part],
            accuracy=accuracy[part],
            tokens=spent[part],
            answered=answered[part],
            votes=votes[part],
        )
    return out


def _answer_codes(answers: pd.Series) -> IntArray:
    """Code of each sample's normalized answer; -1 when it gave none (it does not vote)."""
    raw, uniques = pd.factorize(answers, use_na_sentinel=True)
    normalized = [normalize_answer(str(u)) for u in uniques]
    codes, _ = pd.factorize(
        pd.Series([s if s else None for s in normalized], dtype=object), use_na_sentinel=True
    )
    mapping = np.asarray(codes, dtype=np.int64)
    out = np.full(len(answers), -1, dtype=np.int64)
    out[raw >= 0] = mapping[raw[raw >= 0]]
    return out


def _majority(key: IntArray, answer: IntArray, correct: FloatArray, size: int) -> FloatArray:
    """Expected maj@k per key (rows) and k (columns 0..k_max; column 0 is NaN).

    An answer is right when a sample of the same key gave it and was graded right; a subset
    without votes scores 0; tied answers score the share of them that are right.
    """
    n = np.bincount(key, minlength=size).astype(np.int64)
    k_max = int(n.max()) if len(n) else 0
    voter = answer >= 0
    n_answers = int(answer.max()) + 1 if voter.any() else 1
    pair, inverse = np.unique(key[voter] * n_answers + answer[voter], return_inverse=True)
    votes = np.bincount(inverse, minlength=len(pair)).astype(np.int64)
    right = np.bincount(inverse, weights=correct[voter] == 1, minlength=len(pair)) > 0
    owner = pair // n_answers
    order = np.lexsort((-right.astype(np.int64), -votes, owner))
    owner, votes, right = owner[order], votes[order], right[order]
    rank = np.arange(len(owner)) - np.searchsorted(owner, owner, side="left")
    width = int(rank.max()) + 1 if len(rank) else 1
    counts = np.zeros((size, width), dtype=np.int64)
    oks = np.zeros((size, width), dtype=np.int64)
    counts[owner, rank] = votes
    oks[owner, rank] = right
    profiles, profile_of = unique_rows(np.column_stack([n, counts, oks]))
    values = np.full((len(profiles), k_max + 1), np.nan)
    for samples in sorted(set(profiles[:, 0].tolist()) - {0}):
        sel = np.flatnonzero(profiles[:, 0] == samples)
        p_counts = profiles[sel, 1 : 1 + width]
        p_ok = profiles[sel, 1 + width :].astype(bool)
        for k in range(1, samples + 1):
            values[sel, k] = expected_majority(p_counts, p_ok, samples, _subsets(samples, k))
    out: FloatArray = values[profile_of]
    return out


def _subsets(n: int, k: int) -> IntArray:
    """All k-subsets of n sample positions, or a seeded draw of MAX_SUBSETS of them."""
    if math.comb(n, k) <= MAX_SUBSETS:
        return np.asarray(list(combinations(range(n), k)), dtype=np.int64).reshape(-1, k)
    rng = np.random.default_rng([n, k])
    return np.argsort(rng.random((MAX_SUBSETS, n)), axis=1)[:, :k].astype(np.int64)


def _scope(c: _Comparison) -> str:
    depth = c.depth.budget if c.depth is not None else math.nan
    return f"{c.model} ({c.mode}): maj@{c.k} at {c.width.budget:g} vs one chain at {depth:g}"


def _table_row(c: _Comparison) -> dict[str, object]:
    keep = c.problems()
    depth = c.depth
    return {
        "model": c.model,
        "mode": c.mode,
        "k": c.k,
        "width_budget": c.width.budget,
        "depth_budget": depth.budget if depth is not None else math.nan,
        "width_derived": c.width.derived,
        "depth_derived": depth.derived if depth is not None else False,
        "width_tokens": c.k * float(np.mean(c.width.tokens[keep])) if keep.any() else math.nan,
        "depth_tokens": float(np.mean(depth.tokens[keep]))
        if depth is not None and keep.any()
        else math.nan,
        "token_ratio": c.ratio,
        "width_answered": float(np.mean(c.width.answered[keep])) if keep.any() else math.nan,
        "width_accuracy": float(np.mean(c.width.votes[keep, c.k])) if keep.any() else math.nan,
        "depth_accuracy": float(np.mean(depth.accuracy[keep]))
        if depth is not None and keep.any()
        else math.nan,
        "effect": math.nan,
        "low": math.nan,
        "high": math.nan,
        "n_problems": int(keep.sum()),
        "status": c.status,
    }


def _extras(row: dict[str, object]) -> dict[str, float]:
    names = ("k", "width_budget", "depth_budget", "width_tokens", "depth_tokens", "token_ratio")
    extras = {name: float(row[name]) for name in names}  # type: ignore[arg-type]
    extras["width_accuracy"] = float(row["width_accuracy"])  # type: ignore[arg-type]
    extras["depth_accuracy"] = float(row["depth_accuracy"])  # type: ignore[arg-type]
    return extras
