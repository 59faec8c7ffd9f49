"""Claim 8: search rounds behave like thinking tokens.

A user with tokens to spare can let one chain think longer, or search: draw more chains, let
the model verify each candidate and keep the one it trusts most (best-of-n with
self-verification). The claim is that search buys accuracy at the same rate per token as
thinking: on one tokens axis, the search curve follows the thinking curve.

Both arms come from the same recorded sampled chains (mode ``think`` of a live sweep: R
samples per problem, each a probe ladder). Thinking: one chain stopped at rung B (accuracy
averaged over the R samples). Search with r rounds at rung B: r of those chains stopped at B,
each verified, the best-verified answer kept (averaged over every r-subset of the R chains).
Round 1 of the search is a point of the thinking curve, so at every rung the two arms start
together and differ only in how the next tokens are spent: a longer chain, or more chains.

Only the verification is new (:class:`SearchExperiment`): per candidate (chain j stopped at
rung B) the problem, the chain's text up to B and its answer are re-fed, then a verification
cue, and the probability of "yes" is read off the model's greedy reply. The chains are not
regenerated: the text up to B tokens is found by re-tokenizing prefixes through the backend.

Costs are generated tokens, as the sweep counts them: a chain at rung B costs its output
tokens there (thinking plus the forced answer; the ladder's earlier probes are not counted on
either axis). A search round of r >= 2 chains adds, per candidate, the verification reply.
Appended text is prompt-side on both axes, as the sweep's answer cue is: the verification cue
(its tokens are recorded) and the re-fed candidate, which a live search would verify right
after generating it, with its tokens still in the cache.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from ponder.claims.base import Claim, Effect, Finding, found, insufficient
from ponder.claims.chains import GREEDY_MODE, chains_by_id, problem_texts, think_messages
from ponder.claims.data import ClaimData, difficulty
from ponder.claims.experiments import (
    Row,
    is_experiment_run,
    outcome_row,
    require_prefix_continuation,
    seed_of,
)
from ponder.claims.stats import FloatArray, Statistic, bootstrap_effect, index_of
from ponder.errors import InputError
from ponder.types import THINK

if TYPE_CHECKING:
    from ponder.backends import Backend, Message

CLAIM_ID = "search-rounds"
VERIFY_MODE = "search-verify"
# The recorded chains searched over: the sweep's sampled think chains (temperature 0.7).
SOURCE_MODE = THINK

# Asked in a new user turn after the candidate, which is re-fed as the assistant's turn
# (self-verification). Asked inside the assistant's own turn instead, the 0.5B model ended
# its turn 85% of the time and its P(yes) did not separate right from wrong answers.
VERIFY_QUESTION = "Is the final answer in your reply above correct? Answer yes or no."
# Whitespace tokens the reply may start with before its yes / no (each costs a token).
VERIFY_TOKENS = 3
# Search and thinking "behave alike" when their gains per doubling of tokens differ by less
# than half of thinking's own gain there (a smaller difference would not change which way a
# user should spend), and never by less than MARGIN_FLOOR accuracy points per doubling.
# Relative, not a fixed number of points: where the runs compare, thinking gains only 3 to 5
# points per doubling on the recorded arith ladders, so a fixed 3 points would let a search
# that gains nothing pass as "alike".
RELATIVE_MARGIN = 0.5
MARGIN_FLOOR = 1.0
# Equivalence: the effect is the margin minus |difference|; an interval entirely below zero
# rules out equivalence (contradicted), one entirely above zero establishes it (supported).
MIN_EFFECT = 0.0
# Selection scores: a reply that is neither yes nor no says nothing (between any "no" and
# any "yes" of equal confidence); a candidate with no answer is never chosen over one with.
NO_VERDICT_SCORE = 0.5
NO_ANSWER_SCORE = -1.0
# More chains than this per problem are not used (subsets grow as 2^R).
MAX_CHAINS = 8

TABLE_COLUMNS = [
    "series",
    "rung",
    "rounds",
    "tokens",
    "accuracy",
    "oracle",
    "thinking_at_tokens",
    "compared",
    "n_problems",
]

PROTOCOL = (
    "Per model, on its sampled think chains (mode think, R samples per problem; problems "
    "with R complete ladders and every answered candidate verified; R = the most common "
    f"count, at most {MAX_CHAINS}). Candidate = one chain stopped at rung B with its answer "
    "(forced there, or its own if it ended before B); cost = its output tokens at B "
    "(thinking + forced answer). Verification (the experiment): greedy, the problem, then "
    "as the assistant's turn the chain's text up to B tokens (cut where its "
    "re-tokenization reaches B) and 'Final answer: \\boxed{answer}', then a new user turn "
    f"{VERIFY_QUESTION!r}; score = "
    "P(yes) = the reply token's probability if it says yes, 1 minus it if no, "
    f"{NO_VERDICT_SCORE:g} if neither; a candidate with no answer is not verified and is "
    "chosen last. Search, r rounds at rung B = best score among r of the chains (ties: "
    "the lower sample), averaged over every r-subset; cost = the r candidates' tokens plus, "
    "for r >= 2, their verification replies (generated tokens only, as the sweep counts: "
    "the re-fed candidate and the cues are prompt-side). Thinking = one chain at each rung "
    "(r = 1, mean over the R samples), accuracy vs mean cost. Compared: every search point "
    "with r >= 2 whose mean cost lies within the thinking curve's range. At each, gain per "
    "doubling of tokens from its own r = 1 point (the same chains at B): search = "
    "(acc_search - acc_B) / log2(cost_search / cost_B); thinking = (thinking interpolated "
    "at cost_search, linear in log2 tokens, - acc_B) / the same doublings. D = mean over "
    "the compared points of search minus thinking gain (points per doubling). Effect = "
    f"margin - |D|, margin = max({MARGIN_FLOOR:g}, {RELATIVE_MARGIN:g} x the thinking gain) "
    "(equivalence), cluster bootstrap over problems; supported if its interval is above 0, "
    "contradicted if below 0. All models: the mean over models of margin - |D|, same "
    "resamples. The greedy ladder (think-greedy) is drawn for reference."
)


class SearchRounds(Claim):
    number: ClassVar[int] = 8
    id: ClassVar[str] = CLAIM_ID
    title: ClassVar[str] = "Search rounds behave like thinking tokens"
    hypothesis: ClassVar[str] = (
        "Search iterations (best-of-n chains with self-verification) buy accuracy at the "
        "same rate per token as thinking longer: on one tokens axis the search curve follows "
        "the thinking curve."
    )
    needs: ClassVar[str] = (
        "sampled think chains (a live sweep's probe ladders, at least 2 samples per problem) "
        "and the verification rows of `ponder experiment search-rounds --model MODEL` on them"
    )
    live: ClassVar[bool] = True

    def experiment(
        self,
        *,
        seed: int = 0,
        verify_tokens: int = VERIFY_TOKENS,
    ) -> SearchExperiment:
        """The experiment whose rows this claim's check reads."""
        return SearchExperiment(seed=seed, verify_tokens=verify_tokens)

    def check(self, data: ClaimData) -> list[Finding]:
        sampled = source_rows(data, SOURCE_MODE)
        if sampled.empty:
            return [
                insufficient(
                    self.id,
                    data.dataset,
                    "no sampled think chains (a live sweep's mode think probe ladders): search "
                    "verifies several recorded chains of one problem (imported rows have no "
                    "chains, a greedy ladder has one); run a live sweep with sampled think "
                    f"chains, then {_command(None, data.dataset)}",
                    n_problems=data.n_problems,
                )
            ]
        verified = verification_rows(data)
        position = index_of(sorted(data.outcomes["problem_id"].astype(str).unique()))
        findings: list[Finding] = []
        tested: list[_Comparison] = []
        for model in sorted(sampled["model"].astype(str).unique()):
            mine = verified[verified["model"] == model]
            if mine.empty:
                reason = f"no verification rows for {model}: run {_command(model, data.dataset)}"
                findings.append(insufficient(self.id, data.dataset, reason, scope=model))
                continue
            grid, why = build_grid(data, model, sampled, mine)
            if grid is None:
                findings.append(insufficient(self.id, data.dataset, why, scope=model))
                continue
            n = len(grid.problems)
            if n < data.settings.min_problems:
                reason = (
                    f"{n} problems have {grid.chains} verified chains (needs "
                    f"{data.settings.min_problems}): run {_command(model, data.dataset)} "
                    "on more problems"
                )
                findings.append(
                    insufficient(self.id, data.dataset, reason, scope=model, n_problems=n)
                )
                continue
            comparison = _Comparison.of(grid, [position[p] for p in grid.problems])
            if not comparison.points:
                findings.append(
                    insufficient(self.id, data.dataset, _no_overlap(comparison), scope=model)
                )
                continue
            tested.append(comparison)
            findings.append(self._model_finding(data, comparison, len(position)))
        if len(tested) >= 2:
            findings.append(self._pooled_finding(data, tested, len(position)))
        return findings

    def plot(self, finding: Finding) -> bytes | None:
        table = finding.table
        if table is None or table.empty:
            return None
        import matplotlib.pyplot as plt

        from ponder.report.plots import figure_png

        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        if "model" in table:
            for i, (model, rows) in enumerate(table.groupby("model", sort=True)):
                _draw_curves(ax, rows, f"C{i}", f"{model!s}: ")
        else:
            _draw_curves(ax, table, "C0", "")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("tokens per problem (mean)", fontsize=8)
        ax.set_ylabel("accuracy (%)", fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
        gap = finding.extras.get("search minus thinking (points per doubling)")
        what = f"; search - thinking {gap:+.1f} pts/doubling" if gap is not None else ""
        fig.suptitle(f"{finding.dataset}: {finding.scope}{what} ({finding.verdict})", fontsize=9)
        return figure_png(fig)

    # -- findings ----------------------------------------------------------------------------

    def _bootstrap(
        self, data: ClaimData, statistic: Statistic, n_problems: int, name: str
    ) -> Effect:
        settings = data.settings
        return bootstrap_effect(
            statistic,
            n_problems,
            name=name,
            unit="points per doubling",
            n_boot=settings.n_boot,
            seed=settings.seed,
            key=f"{data.dataset}:{self.id}",  # one key: every finding shares the resamples
            ci=settings.ci,
            min_effect=MIN_EFFECT,
        )

    def _model_finding(self, data: ClaimData, comparison: _Comparison, n_all: int) -> Finding:
        effect = self._bootstrap(
            data, comparison.equivalence, n_all, "margin minus |search - thinking gain|"
        )
        signed = self._bootstrap(data, comparison.difference, n_all, "search - thinking gain")
        extras = comparison.extras()
        extras.update(
            {
                "search minus thinking (points per doubling)": signed.value,
                "search minus thinking, low": signed.low,
                "search minus thinking, high": signed.high,
            }
        )
        return found(
            self.id,
            data.dataset,
            comparison.grid.model,
            effect,
            n_problems=len(comparison.grid.problems),
            protocol=PROTOCOL,
            table=comparison.table(),
            extras=extras,
            note=f"search - thinking {signed.value:+.2f} points per doubling "
            f"[{signed.low:+.2f}, {signed.high:+.2f}] over {len(comparison.points)} "
            "search points",
        )

    def _pooled_finding(
        self, data: ClaimData, comparisons: Sequence[_Comparison], n_all: int
    ) -> Finding:
        def equivalence(weights: FloatArray) -> FloatArray:
            each = np.column_stack([c.equivalence(weights) for c in comparisons])
            return np.asarray(each.mean(axis=1), dtype=np.float64)

        effect = self._bootstrap(
            data, equivalence, n_all, "margin minus |search - thinking gain|, mean over models"
        )
        problems = set().union(*(c.grid.problems for c in comparisons))
        table = pd.concat(
            [c.table().assign(model=c.grid.model) for c in comparisons], ignore_index=True
        )
        return found(
            self.id,
            data.dataset,
            "all models",
            effect,
            n_problems=len(problems),
            protocol=PROTOCOL,
            table=table,
            extras={"models": float(len(comparisons))},
            note=f"mean over {len(comparisons)} models",
        )


def _draw_curves(ax: Any, table: pd.DataFrame, color: str, prefix: str) -> None:
    """One model's thinking curves (sampled, greedy) and its search lines, one per rung
    (solid where compared with thinking, dotted beyond thinking's tokens)."""
    styles = {"thinking": ("o-", 1.0), "thinking, greedy": ("s--", 0.4)}
    for series, (style, alpha) in styles.items():
        rows = table[table["series"] == series].sort_values("tokens")
        if len(rows):
            ax.plot(
                rows["tokens"],
                100 * rows["accuracy"],
                style,
                color=color,
                alpha=alpha,
                markersize=4,
                label=f"{prefix}{series}",
            )
    search = table[table["series"] == "search"]
    for n, (_, rows) in enumerate(search.groupby("rung", sort=True)):
        rows = rows.sort_values("rounds")
        compared = bool(rows["compared"].iloc[1:].astype(bool).any())
        ax.plot(
            rows["tokens"],
            100 * rows["accuracy"],
            "^-" if compared else "^:",
            color=color,
            markersize=3,
            alpha=0.9 if compared else 0.4,
            label=None if n else f"{prefix}search (1, 2, ... chains at a rung)",
        )


def _command(model: str | None, dataset: str) -> str:
    who = model if model is not None else "MODEL"
    return f"`ponder experiment {CLAIM_ID} --model {who} --dataset {dataset}`"


def _no_overlap(comparison: _Comparison) -> str:
    top = float(comparison.estimate_tokens[:, 0].max())
    cheapest = float(comparison.estimate_tokens[:, 1].min())
    return (
        f"no search point of {comparison.grid.model} costs less than the thinking curve's "
        f"largest ({top:.0f} tokens; two chains cost at least {cheapest:.0f}): the two "
        "cannot be compared on one tokens axis"
    )


# -- reading the recorded chains and the verification rows ------------------------------------


def _present(value: Any) -> bool:
    """Whether an extracted answer is there (not None, NaN, NA or blank)."""
    if isinstance(value, str):
        return bool(value.strip())
    return value is not None and not pd.isna(value)


def source_rows(data: ClaimData, mode: str) -> pd.DataFrame:
    """The recorded ladder rows of ``mode`` (one row per chain and rung)."""
    rows = data.samples
    keep = (rows["mode"] == mode) & rows["chain_id"].notna() & rows["budget"].notna()
    return rows.loc[keep & rows["correct"].notna()].reset_index(drop=True)


def verification_rows(data: ClaimData) -> pd.DataFrame:
    """This claim's experiment rows (the latest per candidate when several runs made one)."""
    columns = ["model", "problem_id", "chain_id", "budget", "answer_prob", "output_tokens"]
    frame = data.experiments
    if frame is None or frame.empty:
        return pd.DataFrame(columns=columns)
    mine = frame[frame["run_id"].map(lambda r: is_experiment_run(r, CLAIM_ID))]
    mine = mine[(mine["mode"] == VERIFY_MODE) & mine["chain_id"].notna()]
    mine = mine.drop_duplicates(["model", "chain_id", "budget"], keep="last")
    return mine[columns].reset_index(drop=True)


@dataclass(frozen=True)
class SearchGrid:
    """One model's candidates as arrays over problems x rungs x chains.

    ``tokens`` is a candidate's cost as a standalone run; ``verify_tokens`` what verifying it
    added (0 when it was not verified: no answer); ``score`` P(yes) (``NO_ANSWER_SCORE`` for a
    candidate without an answer). The greedy ladder (problems x rungs) is NaN where absent.
    """

    model: str
    problems: list[str]
    budgets: list[float]
    correct: FloatArray
    tokens: FloatArray
    verify_tokens: FloatArray
    score: FloatArray
    greedy_correct: FloatArray
    greedy_tokens: FloatArray
    unverdicted: float  # share of verified candidates whose reply was neither yes nor no

    @property
    def chains(self) -> int:
        return int(self.correct.shape[2])

    def rounds(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Per problem, rung and r (axis 2: r - 1): the search's accuracy, its tokens, and
        whether any of the r candidates is right; each a mean over every r-subset."""
        n_problems, n_rungs, n_chains = self.correct.shape
        shape = (n_problems, n_rungs, n_chains)
        accuracy, tokens, oracle = np.zeros(shape), np.zeros(shape), np.zeros(shape)
        for r in range(1, n_chains + 1):
            subsets = list(combinations(range(n_chains), r))
            for subset in subsets:
                chosen = list(subset)
                pick = np.argmax(self.score[:, :, chosen], axis=2)[:, :, None]
                right = np.take_along_axis(self.correct[:, :, chosen], pick, axis=2)[:, :, 0]
                cost = self.tokens[:, :, chosen].sum(axis=2)
                if r >= 2:
                    cost = cost + self.verify_tokens[:, :, chosen].sum(axis=2)
                accuracy[:, :, r - 1] += right
                tokens[:, :, r - 1] += cost
                oracle[:, :, r - 1] += self.correct[:, :, chosen].max(axis=2)
            for array in (accuracy, tokens, oracle):
                array[:, :, r - 1] /= len(subsets)
        return accuracy, tokens, oracle


def build_grid(
    data: ClaimData, model: str, sampled: pd.DataFrame, verified: pd.DataFrame
) -> tuple[SearchGrid | None, str]:
    """The model's grid over problems with R complete, verified chains; else None and why."""
    own = sampled[sampled["model"] == model]
    budgets = sorted(float(b) for b in own["budget"].unique())
    rungs_of = own.groupby("chain_id")["budget"].nunique()
    complete = set(rungs_of[rungs_of == len(budgets)].index)
    chains_of = own.drop_duplicates("chain_id")[["problem_id", "chain_id", "sample_idx"]]
    chains_of = chains_of[chains_of["chain_id"].isin(complete)]
    chains_of = chains_of.sort_values(["problem_id", "sample_idx", "chain_id"])
    counts = chains_of.groupby("problem_id").size()
    if counts.empty or int(counts.max()) < 2:
        return None, (
            f"{model} has at most one sampled chain with every rung per problem: search "
            "needs at least 2"
        )
    n_chains = min(MAX_CHAINS, int(counts[counts >= 2].mode().max()))
    by_cell = {
        (str(r["chain_id"]), float(r["budget"])): r
        for r in own.drop_duplicates(["chain_id", "budget"]).to_dict("records")
    }
    checks = {
        (str(c), float(b)): (math.nan if pd.isna(p) else float(p), float(t))
        for c, b, p, t in zip(
            verified["chain_id"],
            verified["budget"],
            verified["answer_prob"],
            verified["output_tokens"],
            strict=True,
        )
    }
    problems: list[str] = []
    cells: list[list[list[tuple[float, float, float, float]]]] = []
    verdicts: list[bool] = []
    for problem, group in chains_of.groupby("problem_id", sort=True):
        ids = [str(c) for c in group["chain_id"]][:n_chains]
        if len(ids) < n_chains:
            continue
        grid = _problem_cells(ids, budgets, by_cell, checks)
        if grid is None:
            continue
        problems.append(str(problem))
        cells.append(grid[0])
        verdicts.extend(grid[1])
    if not problems:
        return None, (
            f"no problem of {model} has {n_chains} sampled chains whose answered candidates "
            f"were all verified: run {_command(model, data.dataset)}"
        )
    values = np.asarray(cells, dtype=np.float64)  # problems x rungs x chains x 4
    greedy_correct, greedy_tokens = _greedy(data, model, problems, budgets)
    return (
        SearchGrid(
            model=model,
            problems=problems,
            budgets=budgets,
            correct=values[..., 0],
            tokens=values[..., 1],
            verify_tokens=values[..., 2],
            score=values[..., 3],
            greedy_correct=greedy_correct,
            greedy_tokens=greedy_tokens,
            unverdicted=float(np.mean([not v for v in verdicts])) if verdicts else math.nan,
        ),
        "",
    )


def _problem_cells(
    chain_ids: Sequence[str],
    budgets: Sequence[float],
    by_cell: Mapping[tuple[str, float], Any],
    checks: Mapping[tuple[str, float], tuple[float, float]],
) -> tuple[list[list[tuple[float, float, float, float]]], list[bool]] | None:
    """(correct, tokens, verify tokens, score) per rung and chain; None when an answered
    candidate was not verified. Also whether each verification gave a yes / no."""
    out: list[list[tuple[float, float, float, float]]] = []
    verdicts: list[bool] = []
    for budget in budgets:
        at_rung = []
        for chain in chain_ids:
            row = by_cell[(chain, budget)]
            tokens = float(row["output_tokens"])
            if math.isnan(tokens):
                return None  # its cost is unknown
            if not _present(row["extracted_answer"]):
                at_rung.append((float(row["correct"]), tokens, 0.0, NO_ANSWER_SCORE))
                continue
            check = checks.get((chain, budget))
            if check is None:
                return None
            prob, cost = check
            if math.isnan(cost):
                return None
            verdicts.append(not math.isnan(prob))
            score = NO_VERDICT_SCORE if math.isnan(prob) else prob
            at_rung.append((float(row["correct"]), tokens, float(cost), score))
        out.append(at_rung)
    return out, verdicts


def _greedy(
    data: ClaimData, model: str, problems: Sequence[str], budgets: Sequence[float]
) -> tuple[FloatArray, FloatArray]:
    """The greedy ladder's correct and output tokens (problems x rungs), NaN where absent."""
    rows = source_rows(data, GREEDY_MODE)
    rows = rows[rows["model"] == model].drop_duplicates(["problem_id", "budget"])
    shape = (len(problems), len(budgets))
    if rows.empty:
        return np.full(shape, np.nan), np.full(shape, np.nan)

    def table(column: str) -> FloatArray:
        wide = rows.pivot(index="problem_id", columns="budget", values=column)
        wide = wide.reindex(index=list(problems), columns=list(budgets))
        return np.asarray(wide.to_numpy(dtype=np.float64), dtype=np.float64)

    return table("correct"), table("output_tokens")


# -- the comparison ---------------------------------------------------------------------------


def interpolate_rows(query: FloatArray, xs: FloatArray, ys: FloatArray) -> FloatArray:
    """Per row, ys interpolated linearly at ``query`` over nodes ``xs`` (ascending), flat
    beyond the ends (the thinking curve has no recorded tokens beyond its last rung)."""
    n_rows, n_nodes = xs.shape
    rows = np.arange(n_rows)
    if n_nodes == 1:
        return np.asarray(ys[:, 0], dtype=np.float64)
    left = np.clip((xs <= query[:, None]).sum(axis=1) - 1, 0, n_nodes - 2)
    x0, x1 = xs[rows, left], xs[rows, left + 1]
    y0, y1 = ys[rows, left], ys[rows, left + 1]
    span = x1 - x0
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(span > 0, (query - x0) / span, 0.0)
    out: FloatArray = y0 + np.clip(share, 0.0, 1.0) * (y1 - y0)
    return out


@dataclass(frozen=True)
class _Comparison:
    """A model's search and thinking curves as functions of problem weights."""

    grid: SearchGrid
    columns: list[int]  # the grid's problems in the dataset-wide bootstrap order
    accuracy: FloatArray  # problems x rungs x rounds
    tokens: FloatArray
    oracle: FloatArray
    points: list[tuple[int, int]]  # compared search points: (rung index, rounds - 1)
    estimate_tokens: FloatArray  # rungs x rounds, all problems weighted once

    @classmethod
    def of(cls, grid: SearchGrid, columns: list[int]) -> _Comparison:
        accuracy, tokens, oracle = grid.rounds()
        mean_tokens = tokens.mean(axis=0)
        top = float(np.max(mean_tokens[:, 0]))
        points = [
            (k, r)
            for k in range(mean_tokens.shape[0])
            for r in range(1, mean_tokens.shape[1])
            if mean_tokens[k, r] <= top
        ]
        return cls(grid, columns, accuracy, tokens, oracle, points, mean_tokens)

    def _curves(self, weights: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Mean accuracy and tokens per weights row: rows x rungs x rounds."""
        own = weights[:, self.columns]
        total = own.sum(axis=1, keepdims=True)
        n_problems, n_rungs, n_rounds = self.accuracy.shape
        with np.errstate(invalid="ignore", divide="ignore"):
            accuracy = own @ self.accuracy.reshape(n_problems, -1) / total
            tokens = own @ self.tokens.reshape(n_problems, -1) / total
        shape = (len(weights), n_rungs, n_rounds)
        return accuracy.reshape(shape), tokens.reshape(shape)

    def gains(self, weights: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Mean gain per doubling of tokens over the compared points (points), per weights
        row: (search, thinking)."""
        accuracy, tokens = self._curves(weights)
        log_tokens = np.log2(np.maximum.accumulate(tokens[:, :, 0], axis=1))
        search, thinking = [], []
        for k, r in self.points:
            at = np.log2(tokens[:, k, r])
            doublings = at - np.log2(tokens[:, k, 0])
            along = interpolate_rows(at, log_tokens, accuracy[:, :, 0])
            search.append(100.0 * (accuracy[:, k, r] - accuracy[:, k, 0]) / doublings)
            thinking.append(100.0 * (along - accuracy[:, k, 0]) / doublings)
        return np.mean(search, axis=0), np.mean(thinking, axis=0)

    def difference(self, weights: FloatArray) -> FloatArray:
        """Search minus thinking gain per doubling (points), per weights row."""
        search, thinking = self.gains(weights)
        return np.asarray(search - thinking, dtype=np.float64)

    def equivalence(self, weights: FloatArray) -> FloatArray:
        """The margin (half the thinking gain, at least the floor) minus |difference|."""
        search, thinking = self.gains(weights)
        margin = np.maximum(MARGIN_FLOOR, RELATIVE_MARGIN * thinking)
        return np.asarray(margin - np.abs(search - thinking), dtype=np.float64)

    def extras(self) -> dict[str, float]:
        grid = self.grid
        ones = np.ones((1, max(self.columns) + 1))
        search, thinking = self.gains(ones)
        answered = grid.score >= 0
        right = answered & (grid.correct == 1)
        wrong = answered & (grid.correct == 0)
        last = len(grid.budgets) - 1
        out = {
            "chains per problem": float(grid.chains),
            "search points compared": float(len(self.points)),
            "search gain per doubling (points)": float(search[0]),
            "thinking gain per doubling (points)": float(thinking[0]),
            "equivalence margin (points per doubling)": max(
                MARGIN_FLOOR, RELATIVE_MARGIN * float(thinking[0])
            ),
            "mean P(yes), right candidates": _mean(grid.score[right]),
            "mean P(yes), wrong candidates": _mean(grid.score[wrong]),
            "verifications with no yes/no": grid.unverdicted,
            "verification tokens generated per candidate": _mean(grid.verify_tokens[answered]),
            "accuracy, one chain at the last rung": _mean(self.accuracy[:, last, 0]),
            "accuracy, search over all chains at the last rung": _mean(self.accuracy[:, last, -1]),
            "any chain right at the last rung": _mean(self.oracle[:, last, -1]),
        }
        greedy = self._greedy_difference()
        if greedy is not None:
            out["search minus greedy thinking (points per doubling)"] = greedy
        return out

    def _greedy_difference(self) -> float | None:
        """D against the greedy ladder instead of the sampled one (estimate only), when the
        greedy ladder covers every problem and rung."""
        grid = self.grid
        if np.isnan(grid.greedy_correct).any() or np.isnan(grid.greedy_tokens).any():
            return None
        xs = np.log2(np.maximum.accumulate(grid.greedy_tokens.mean(axis=0)))[None, :]
        ys = grid.greedy_correct.mean(axis=0)[None, :]
        accuracy, tokens = self.accuracy.mean(axis=0), self.estimate_tokens
        gaps = []
        for k, r in self.points:
            at = np.log2(np.array([tokens[k, r]]))
            doublings = float(at[0] - np.log2(tokens[k, 0]))
            along = float(interpolate_rows(at, xs, ys)[0])
            base = float(interpolate_rows(np.log2(np.array([tokens[k, 0]])), xs, ys)[0])
            gaps.append(100.0 * ((accuracy[k, r] - accuracy[k, 0]) - (along - base)) / doublings)
        return float(np.mean(gaps))

    def table(self) -> pd.DataFrame:
        """The curves behind the plot: thinking (sampled and greedy) and every search point."""
        grid = self.grid
        n = float(len(grid.problems))
        accuracy = self.accuracy.mean(axis=0)
        oracle = self.oracle.mean(axis=0)
        tokens = self.estimate_tokens
        log_tokens = np.log2(np.maximum.accumulate(tokens[:, 0]))[None, :]
        compared = set(self.points)
        rows: list[dict[str, object]] = []
        for k, budget in enumerate(grid.budgets):
            rows.append(_row("thinking", budget, 1, tokens[k, 0], accuracy[k, 0], n))
            if not np.isnan(grid.greedy_correct[:, k]).any():
                greedy_tokens = float(np.nanmean(grid.greedy_tokens[:, k]))
                greedy = float(grid.greedy_correct[:, k].mean())
                rows.append(_row("thinking, greedy", budget, 1, greedy_tokens, greedy, n))
            for r in range(tokens.shape[1]):
                at = np.log2(np.array([tokens[k, r]]))
                along = float(interpolate_rows(at, log_tokens, accuracy[None, :, 0])[0])
                row = _row("search", budget, r + 1, tokens[k, r], accuracy[k, r], n)
                row.update(
                    oracle=float(oracle[k, r]),
                    thinking_at_tokens=along,
                    compared=(k, r) in compared,
                )
                rows.append(row)
        return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _row(
    series: str, budget: float, rounds: int, tokens: float, accuracy: float, n: float
) -> dict[str, object]:
    return {
        "series": series,
        "rung": float(budget),
        "rounds": rounds,
        "tokens": float(tokens),
        "accuracy": float(accuracy),
        "oracle": math.nan,
        "thinking_at_tokens": math.nan,
        "compared": False,
        "n_problems": n,
    }


def _mean(values: FloatArray) -> float:
    return float(np.mean(values)) if values.size else math.nan


# -- the experiment ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CandidateRung:
    """One recorded rung of a sampled chain: the candidate it gives when stopped there."""

    budget: int
    index: int
    thinking_tokens: int
    natural: bool
    extracted: str | None
    correct: float


@dataclass(frozen=True)
class CandidateChain:
    """A recorded sampled chain and its rungs; ``position`` is its place among the
    problem's chains (the rows' sample_idx)."""

    chain_id: str
    position: int
    text: str
    tokens: int
    rungs: tuple[CandidateRung, ...]


@dataclass(frozen=True)
class SearchItem:
    """One problem: its sampled chains, every rung of which is a candidate to verify."""

    dataset: str
    problem_id: str
    problem_text: str
    level: int | None
    chains: tuple[CandidateChain, ...]

    @property
    def key(self) -> str:
        return self.problem_id


@dataclass(frozen=True)
class Verification:
    """The model's reply to the verification cue, and what it cost."""

    reply: str
    verdict: str | None  # "yes", "no", or None for anything else
    p_yes: float | None
    reply_tokens: int
    fed_tokens: int

    @property
    def cost(self) -> int:
        """Generated tokens (the question is prompt-side, like the sweep's answer cue)."""
        return self.reply_tokens


def parse_verdict(reply: str) -> str | None:
    """The reply's first word when it is "yes" or "no", else None."""
    word = "".join(ch for ch in reply.strip().split(" ")[0].lower() if ch.isalpha())
    return word if word in ("yes", "no") else None


@dataclass(frozen=True)
class SearchExperiment:
    """Verify every rung of every recorded sampled chain of a problem (one item per problem).

    ``seed`` orders the problems; ``verify_tokens`` caps the reply (whitespace before the
    yes / no is skipped, one token at a time, so the verdict's probability is its own
    token's).
    """

    seed: int = 0
    verify_tokens: int = VERIFY_TOKENS

    claim_id: ClassVar[str] = CLAIM_ID

    def __post_init__(self) -> None:
        if self.verify_tokens < 1:
            raise InputError(f"verify_tokens must be >= 1, got {self.verify_tokens}")

    @property
    def settings(self) -> Mapping[str, Any]:
        from ponder.budgets.prompts import prompt_version

        return {
            "seed": self.seed,
            "verify_question": VERIFY_QUESTION,
            "verify_tokens": self.verify_tokens,
            "prompts": prompt_version(),
        }

    def check_backend(self, backend: Backend) -> None:
        needs = "the search-rounds experiment re-feeds recorded chains"
        require_prefix_continuation(backend, needs)

    def items(self, data: ClaimData, model: str) -> list[SearchItem]:
        """The model's problems with at least 2 recorded sampled chains, in a seeded order
        interleaved by difficulty band (so a partial run covers every band)."""
        from ponder.sweep.plan import interleave_levels

        rows = source_rows(data, SOURCE_MODE)
        if rows.empty or data.chains is None or data.chains.empty:
            raise InputError(
                f"dataset {data.dataset!r} has no sampled think chains (mode {SOURCE_MODE} on "
                "a probe ladder; greedy ladders are one chain per problem): run a live sweep "
                "with sampled think chains first"
            )
        have = sorted(rows["model"].astype(str).unique())
        if model not in have:
            raise InputError(
                f"no sampled {SOURCE_MODE} chains of model {model!r} in dataset "
                f"{data.dataset!r}; models with them: {', '.join(have)}"
            )
        texts = problem_texts(data)
        recorded = chains_by_id(data)
        bands, _ = difficulty(data)
        own = rows[rows["model"] == model].drop_duplicates(["chain_id", "budget"])
        ladders: dict[str, dict[str, list[dict[Any, Any]]]] = {}
        for row in own.sort_values("budget").to_dict("records"):
            chains_of = ladders.setdefault(str(row["problem_id"]), {})
            chains_of.setdefault(str(row["chain_id"]), []).append(row)
        items: list[SearchItem] = []
        for problem in sorted(ladders):
            text = texts.get(problem)
            chains = _candidate_chains(ladders[problem], recorded)
            if isinstance(text, str) and len(chains) >= 2:
                band = bands.get(problem)
                level = None if band is None or math.isnan(band) else int(band)
                items.append(SearchItem(data.dataset, problem, text, level, chains))
        if not items:
            raise InputError(
                f"no problem of {model!r} in {data.dataset!r} has 2 sampled chains with their "
                "recorded text and problem text"
            )
        rng = np.random.default_rng(seed_of(self.seed, "order", data.dataset, model))
        shuffled = [items[i] for i in rng.permutation(len(items))]
        return interleave_levels(shuffled)

    async def run_item(self, backend: Backend, item: SearchItem) -> list[Row]:
        messages = think_messages(item.problem_text)
        done: dict[str, Verification] = {}
        rows: list[Row] = []
        for chain in item.chains:
            for rung in chain.rungs:
                if rung.extracted is None:
                    continue  # nothing to verify: never chosen over an answer
                text = await self._candidate(backend, messages, chain, rung)
                reused = text in done
                if not reused:
                    done[text] = await self._verify(backend, messages, text)
                rows.append(self._row(item, chain, rung, done[text], reused))
        return rows

    # -- steps of one item -------------------------------------------------------------------

    async def _candidate(
        self,
        backend: Backend,
        messages: tuple[Message, ...],
        chain: CandidateChain,
        rung: CandidateRung,
    ) -> str:
        """The candidate as the model wrote it: the chain up to the rung, then its answer
        (the forced one, after the sweep's cue; a chain that ended holds its own)."""
        from ponder.budgets import ANSWER_CUE

        if rung.natural:
            return chain.text
        reasoning = chain.text
        if rung.thinking_tokens < chain.tokens:
            reasoning = await _cut(backend, messages, chain.text, rung.thinking_tokens)
        return f"{reasoning}{ANSWER_CUE}{rung.extracted}}}"

    async def _verify(
        self, backend: Backend, messages: tuple[Message, ...], candidate: str
    ) -> Verification:
        """Re-feed the candidate as the assistant's turn, ask in a new user turn, read the
        first non-blank reply token."""
        from ponder.backends import Message, Sampling

        asked = (*messages, Message("assistant", candidate), Message("user", VERIFY_QUESTION))
        chain = await backend.open_chain(asked, Sampling(0.0))
        try:
            blank, skipped = 0, ""
            reply = await chain.extend(1)
            while not reply.text.strip() and reply.tokens > 0 and blank + 1 < self.verify_tokens:
                skipped, blank = skipped + reply.text, blank + 1
                reply = await chain.extend(1)
            prompt_tokens = chain.prompt_tokens
        finally:
            await chain.aclose()
        verdict = parse_verdict(reply.text)
        p_yes: float | None = None
        if verdict is not None:
            prob = math.exp(reply.logprobs[0]) if reply.logprobs else 1.0
            p_yes = prob if verdict == "yes" else 1.0 - prob
        return Verification(
            reply=skipped + reply.text,
            verdict=verdict,
            p_yes=p_yes,
            reply_tokens=reply.tokens + blank,
            fed_tokens=prompt_tokens,
        )

    def _row(
        self,
        item: SearchItem,
        chain: CandidateChain,
        rung: CandidateRung,
        verification: Verification,
        reused: bool,
    ) -> Row:
        extra = {
            "reply": verification.reply,
            "verdict": verification.verdict,
            "p_yes": verification.p_yes,
            "candidate_thinking_tokens": rung.thinking_tokens,
            "candidate_answer": rung.extracted,
            "reused": reused,
        }
        return outcome_row(
            dataset=item.dataset,
            problem_id=item.problem_id,
            chain_id=chain.chain_id,
            mode=VERIFY_MODE,
            budget=rung.budget,
            extracted=rung.extracted,
            correct=rung.correct,
            extra=extra,
            answered=int(verification.verdict is not None),
            sample_idx=chain.position,
            prompt_tokens=verification.fed_tokens,
            answer_tokens=verification.reply_tokens,
            output_tokens=verification.cost,
            response_text=verification.reply,
            rung=rung.index,
            natural=int(rung.natural),
            answer_prob=verification.p_yes,
        )


def _candidate_chains(
    ladders: Mapping[str, Sequence[Mapping[Any, Any]]], recorded: Mapping[str, Any]
) -> tuple[CandidateChain, ...]:
    """A problem's recorded sampled chains (with their text), in sample order; ``ladders``
    holds each chain's rows by ascending budget."""
    known = sorted(
        (int(rows[0]["sample_idx"]), chain_id)
        for chain_id, rows in ladders.items()
        if chain_id in recorded and isinstance(recorded[chain_id]["text"], str)
    )
    out = []
    for position, (_, chain_id) in enumerate(known[:MAX_CHAINS]):
        chain = recorded[chain_id]
        out.append(
            CandidateChain(
                chain_id=chain_id,
                position=position,
                text=str(chain["text"]),
                tokens=int(chain["tokens"]),
                rungs=tuple(
                    CandidateRung(
                        budget=int(r["budget"]),
                        index=i if pd.isna(r["rung"]) else int(r["rung"]),
                        thinking_tokens=_thinking_tokens(r, int(chain["tokens"])),
                        natural=bool(r["natural"] == 1),
                        extracted=str(r["extracted_answer"])
                        if _present(r["extracted_answer"])
                        else None,
                        correct=float(r["correct"]),
                    )
                    for i, r in enumerate(ladders[chain_id])
                ),
            )
        )
    return tuple(out)


def _thinking_tokens(row: Mapping[Any, Any], chain_tokens: int) -> int:
    """Thinking tokens at a rung: recorded by the sweep, else min(budget, chain length)."""
    if pd.isna(row["reasoning_tokens"]):
        return min(int(row["budget"]), chain_tokens)
    return int(row["reasoning_tokens"])


async def _count(backend: Backend, messages: tuple[Message, ...], text: str) -> int:
    """Tokens of ``text`` appended after the prompt (the backend's own tokenizer)."""
    from ponder.backends import Sampling

    if not text:
        return 0
    chain = await backend.open_chain(messages, Sampling(0.0))
    try:
        return await chain.append(text)
    finally:
        await chain.aclose()


async def _cut(backend: Backend, messages: tuple[Message, ...], text: str, tokens: int) -> str:
    """The longest prefix of ``text`` that re-tokenizes to at most ``tokens`` tokens (binary
    search over characters; the Chain API has no tokenizer of its own)."""
    low, high = 0, len(text)
    while high - low > 1:
        middle = (low + high) // 2
        if await _count(backend, messages, text[:middle]) <= tokens:
            low = middle
        else:
            high = middle
    if await _count(backend, messages, text[:high]) <= tokens:
        return text[:high]
    return text[:low]
