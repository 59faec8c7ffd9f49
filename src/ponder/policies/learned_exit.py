"""Early exit on fitted scores of the probes: stop when sure, give up when hopeless.

Hand rules (a window of agreeing probes, a probability threshold) miss what saves most on
ponder's data: forced early answers are often confident and wrong, and the oracle saves by
accepting cheap answers that are right and by spending little on problems nothing solves. A
logistic combination of the probe signals (`ponder.decision.PROBE_FEATURES`) learns both:

- `confident`: P(the probe answer at this rung is right): accept when at least a threshold;
- `hopeless`: P(the chain's answer at the family's last rung is right): give up when at most
  a threshold (answers that keep changing, low confidence late in the chain).

`LearnedExit` fits the two scores per chain family on training problems, then searches
thresholds, caps and rung subsets by the training objective, accuracy - price_per_unit x mean
cost (ties: the cheaper), with a vectorised stand-in for `run_exit` that the tests hold equal
to replay. The plan it hands on is one exit step whose rule carries the fitted scores.
`LearnedEscalate` runs `ProbeEscalate`'s search with such steps: e.g. the small model's chain
stopped by its scores, escalating when it gives up or hits its cap, then the large model's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ponder.decision import (
    PROBE_FEATURES,
    Config,
    Decision,
    DecisionBatch,
    Escalate,
    ExitRule,
    Score,
    Step,
)
from ponder.outcomes.replay import probe_feature_arrays, replay_decision, score_probability
from ponder.policies.base import Policy, PolicyError
from ponder.policies.early_exit import (
    TIE_DECIMALS,
    ChainFamily,
    Ladder,
    ProbeEscalate,
    StageOptions,
    Unit,
    cached_fit,
    check_price,
    describe_step,
    direct_configs,
    direct_unit,
    require_families,
)
from ponder.policies.serialization import register

if TYPE_CHECKING:
    from ponder.outcomes.matrix import OutcomeMatrix

CONFIDENT_THRESHOLDS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
HOPELESS_THRESHOLDS: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.3, 0.4)
# A coarser grid for the steps of an escalating plan (their combinations multiply).
ESCALATE_CONFIDENT: tuple[float, ...] = (0.5, 0.7, 0.9, 0.99)
ESCALATE_HOPELESS: tuple[float, ...] = (0.05, 0.2)
CONSTANT_LOGIT = 30.0  # the bias of a score whose training labels were all 0 (-) or all 1 (+)


# -- fitting the scores --------------------------------------------------------------------------


def fit_score(features: np.ndarray, labels: np.ndarray, C: float) -> Score:
    """A logistic regression of `labels` on standardised `features` (columns in
    `PROBE_FEATURES` order), returned on the raw feature scale as a `Score` (threshold 0.5,
    set later). Labels that are all 0 or all 1 give a constant score: nothing to separate."""
    positive = float(labels.mean()) if len(labels) else 0.0
    if positive in (0.0, 1.0):
        return Score((), CONSTANT_LOGIT if positive == 1.0 else -CONSTANT_LOGIT, 0.5)
    from sklearn.linear_model import LogisticRegression

    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    varies = scale > 1e-12
    scale = np.where(varies, scale, 1.0)
    standard = (features - mean) / scale
    model = LogisticRegression(C=C, solver="newton-cholesky", max_iter=100).fit(
        standard[:, varies], labels.astype(int)
    )
    coef = np.zeros(features.shape[1])
    coef[varies] = model.coef_[0]
    raw = coef / scale
    bias = float(model.intercept_[0] - (raw * mean).sum())
    # By name, as a saved plan lists them: a loaded score sums in the same order.
    named = sorted((name, float(w)) for name, w in zip(PROBE_FEATURES, raw, strict=True) if w)
    weights = tuple(named)
    return Score(weights, bias, 0.5)


def _stack(features: Mapping[str, np.ndarray]) -> np.ndarray:
    """[row, rung] feature arrays as a [row * rung, feature] design matrix."""
    return np.stack([np.asarray(features[name]).ravel() for name in PROBE_FEATURES], axis=1)


@dataclass(frozen=True)
class Candidate:
    """One searched plan: a rung subset of a family (`positions`), with the confident and
    hopeless thresholds (None: not used); one position means the cap alone, no probes."""

    family: int
    positions: tuple[int, ...]
    confident: float | None
    hopeless: float | None


def sequences(n_rungs: int) -> list[tuple[int, ...]]:
    """The rung subsets whose prefixes the search tries: every rung, and every other rung
    ending at the last or the one before (so every cap gets both)."""
    out = [tuple(range(n_rungs))]
    for end in (n_rungs - 1, n_rungs - 2):
        other = tuple(range(end, -1, -2))[::-1]
        if len(other) > 1 and other not in out:
            out.append(other)
    return out


@dataclass(frozen=True)
class GridBlock:
    """Candidates of one rung subset and confident threshold, with [hopeless, problem,
    chain, cap] arrays of each chain's correctness and cost where it stops, whether it
    stopped sure with an answer, and whether it is recorded up to the cap."""

    candidates: list[Candidate]
    correct: np.ndarray
    cost: np.ndarray
    accept: np.ndarray
    complete: np.ndarray


class ScoredLadder:
    """One family's ladder with its two fitted scores, scoring the whole threshold grid.

    Features are computed over the probes of each rung subset (what replay computes for the
    rule's rungs), so a decision at rung i sees only probes up to rung i.
    """

    def __init__(self, ladder: Ladder, C: float) -> None:
        self.ladder = ladder
        n, s, k = ladder.correct.shape
        self.recorded = ~np.isnan(ladder.correct)  # [problem, chain, rung]
        flat = self._flat(tuple(range(k)))
        features = probe_feature_arrays(*flat, ladder.family.rungs)
        # Training rows: chains recorded at every rung, up to and including the first rung
        # where the chain ended on its own (beyond it nothing changes).
        natural = ladder.natural.reshape(n * s, k)
        first_end = np.where(natural.any(axis=1), natural.argmax(axis=1), k - 1)
        complete = self.recorded.all(axis=2).reshape(n * s)
        keep = complete[:, None] & (np.arange(k)[None, :] <= first_end[:, None])
        design = _stack(features)[keep.ravel()]
        correct = np.nan_to_num(ladder.correct.reshape(n * s, k)) == 1
        at_cap = np.broadcast_to(correct[:, -1:], (n * s, k))
        self.n_rows_ = int(keep.sum())
        self.confident = fit_score(design, correct[keep], C)
        self.hopeless = fit_score(design, at_cap[keep], C)
        self._memo: dict[tuple[Any, ...], Any] = {}  # grid scores: the same at every price

    def _flat(
        self, positions: tuple[int, ...]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
        """answer, prob, token_prob, entropy at `positions` as [problem * chain, position]."""
        ladder = self.ladder
        n, s, _ = ladder.correct.shape
        p = list(positions)

        def flat(values: np.ndarray) -> np.ndarray:
            out: np.ndarray = values[:, :, p].reshape(n * s, len(p))
            return out

        token = None if ladder.token_prob is None else flat(ladder.token_prob)
        return flat(ladder.answer), flat(ladder.prob), token, flat(ladder.entropy)

    def _blocks(
        self,
        family: int,
        positions_list: Sequence[tuple[int, ...]],
        confident: Sequence[float | None],
        hopeless: Sequence[float | None],
    ) -> Iterator[GridBlock]:
        """The rule candidates over every prefix (two rungs or more) of each rung subset, one
        block per subset and confident threshold, as `run_exit` would stop every chain."""
        ladder = self.ladder
        n, s, _ = ladder.correct.shape
        give_up_at = [h for h in hopeless if h is not None]
        for positions in positions_list:
            m = len(positions)
            answer, prob, token, entropy = self._flat(positions)
            rungs = tuple(ladder.family.rungs[p] for p in positions)
            features = probe_feature_arrays(answer, prob, token, entropy, rungs)
            sure = score_probability(self.confident, features)
            lost = score_probability(self.hopeless, features)
            p = list(positions)
            recorded = self.recorded[:, :, p].reshape(n * s, m)
            complete = np.cumprod(recorded, axis=1).astype(bool)  # recorded up to each rung
            natural = ladder.natural[:, :, p].reshape(n * s, m)
            correct = np.where(recorded, ladder.correct[:, :, p].reshape(n * s, m), 0.0)
            answered = answer >= 0
            probe = np.where(recorded, ladder.probe[:, :, p].reshape(n * s, m), 0.0)
            spent = np.where(recorded, ladder.cost[:, :, p].reshape(n * s, m), 0.0)
            spent = spent + np.cumsum(probe, axis=1) - probe  # plus every earlier probe
            caps = np.arange(1, m)  # prefixes of two rungs or more
            gives_up = np.stack(
                [np.zeros_like(natural)] * (len(hopeless) - len(give_up_at))
                + [lost <= h for h in give_up_at]
            )
            order = [h for h in hopeless if h is None] + give_up_at
            rows = np.arange(n * s)[None, :, None]
            for t in confident:
                accept = natural if t is None else (sure >= t) | natural
                done = accept[None, :, :] | gives_up  # [hopeless, row, position]
                first = np.where(done.any(axis=2), done.argmax(axis=2), m)
                stop = np.minimum(first[:, :, None], caps[None, None, :])  # [h, row, cap]
                kept = [i for i, h in enumerate(order) if t is not None or h is not None]
                if not kept:
                    continue  # no rule: the cap alone does the same without probes
                stop = stop[kept]
                shape = (len(kept), n, s, m - 1)
                have = np.broadcast_to(complete[:, 1:].reshape(1, n, s, m - 1), shape)
                yield GridBlock(
                    [
                        Candidate(family, positions[: cap + 2], t, order[i])
                        for i in kept
                        for cap in range(m - 1)
                    ],
                    np.where(have, correct[rows, stop].reshape(shape), 0.0),
                    np.where(have, spent[rows, stop].reshape(shape), 0.0),
                    (accept & answered)[rows, stop].reshape(shape),
                    have,
                )

    def score_grid(self, family: int) -> tuple[list[Candidate], np.ndarray, np.ndarray]:
        """Every candidate of the grid with its per-problem expected correctness and cost
        over the recorded chains ([candidate, problem]), as a one-step plan replays it."""
        key = ("grid", family)
        if key not in self._memo:
            self._memo[key] = self._score_grid(family)
        result: tuple[list[Candidate], np.ndarray, np.ndarray] = self._memo[key]
        return result

    def _score_grid(self, family: int) -> tuple[list[Candidate], np.ndarray, np.ndarray]:
        ladder = self.ladder
        k = ladder.correct.shape[2]
        # The cap alone: the plain chain at that budget.
        have = self.recorded.sum(axis=1)  # [problem, rung]
        candidates = [Candidate(family, (c,), None, None) for c in range(k)]
        correct = [(np.where(self.recorded, ladder.correct, 0.0).sum(axis=1) / have).T]
        cost = [(np.where(self.recorded, ladder.cost, 0.0).sum(axis=1) / have).T]
        blocks = self._blocks(
            family,
            sequences(k),
            (None, *CONFIDENT_THRESHOLDS),
            (None, *HOPELESS_THRESHOLDS),
        )
        for block in blocks:
            candidates += block.candidates
            count = block.complete.sum(axis=2)  # [hopeless, problem, cap]
            correct.append(_by_candidate(block.correct.sum(axis=2) / count))
            cost.append(_by_candidate(block.cost.sum(axis=2) / count))
        return candidates, np.vstack(correct), np.vstack(cost)

    def first_chain_options(
        self, family: int, escalate: Escalate
    ) -> tuple[list[Step], np.ndarray, np.ndarray, np.ndarray]:
        """The coarse grid's exit steps on each problem's first chain (see `_first_chain`)."""
        key = ("first", family, escalate)
        if key not in self._memo:
            self._memo[key] = self._first_chain_options(family, escalate)
        result: tuple[list[Step], np.ndarray, np.ndarray, np.ndarray] = self._memo[key]
        return result

    def _first_chain_options(
        self, family: int, escalate: Escalate
    ) -> tuple[list[Step], np.ndarray, np.ndarray, np.ndarray]:
        """Steps of a coarse grid over every rung, run on each problem's first chain (what a
        multi-step plan draws): the steps, whether each problem stops there (the rule held or
        the chain ended, with an answer; always, for a last step), its correctness and cost,
        as [step, problem] arrays. A last step may also be the plain chain at one budget."""
        ladder = self.ladder
        k = ladder.correct.shape[2]
        steps: list[Step] = []
        accept: list[np.ndarray] = []
        correct: list[np.ndarray] = []
        cost: list[np.ndarray] = []
        blocks = self._blocks(
            family,
            [tuple(range(k))],
            (None, *ESCALATE_CONFIDENT),
            (None, *ESCALATE_HOPELESS),
        )
        for block in blocks:
            steps += [self.step(c, escalate) for c in block.candidates]
            accept.append(_by_candidate(block.accept[:, :, 0]))
            correct.append(_by_candidate(block.correct[:, :, 0]))
            cost.append(_by_candidate(block.cost[:, :, 0]))
        if escalate == "never":
            for c in range(k):
                steps.append(self.step(Candidate(family, (c,), None, None)))
                accept.append(np.ones((1, ladder.correct.shape[0]), dtype=bool))
                correct.append(ladder.correct[None, :, 0, c])
                cost.append(ladder.cost[None, :, 0, c])
        return steps, np.vstack(accept), np.vstack(correct), np.vstack(cost)

    def step(self, candidate: Candidate, escalate: Escalate = "never") -> Step:
        """The plan step a candidate stands for."""
        family = self.ladder.family
        rungs = tuple(family.rungs[p] for p in candidate.positions)
        config = Config(family.model, family.mode, rungs[-1])
        if len(rungs) == 1:
            return Step(config)
        confident = None
        if candidate.confident is not None:
            confident = Score(self.confident.weights, self.confident.bias, candidate.confident)
        hopeless = None
        if candidate.hopeless is not None:
            hopeless = Score(self.hopeless.weights, self.hopeless.bias, candidate.hopeless)
        rule = ExitRule(rungs, confident=confident, hopeless=hopeless)
        return Step(config, escalate=escalate, exit=rule)


def scored_ladders(
    outcomes: OutcomeMatrix, families: Sequence[ChainFamily], C: float
) -> list[ScoredLadder]:
    """The families' ladders with fitted scores, shared by the fits of one price sweep."""

    def compute() -> list[ScoredLadder]:
        return [ScoredLadder(Ladder(outcomes, f), C) for f in families]

    key = ("scored", outcomes.fingerprint(), tuple(f.label for f in families), C)
    ladders: list[ScoredLadder] = cached_fit(key, compute)
    return ladders


def _by_candidate(values: np.ndarray) -> np.ndarray:
    """[hopeless, problem, cap] as [candidate, problem], candidates ordered hopeless-major
    then by cap (the order `_blocks` lists them)."""
    out: np.ndarray = np.moveaxis(values, 2, 1).reshape(-1, values.shape[1])
    return out


def best_candidate(correct: np.ndarray, cost: np.ndarray, price: float) -> int:
    """The row of best mean objective; ties go to the cheaper, then the earlier."""
    accuracy, spent = correct.mean(axis=1), cost.mean(axis=1)
    value = np.round(accuracy - price * spent, TIE_DECIMALS)
    return int(np.lexsort((spent, -value))[0])


# -- LearnedExit ---------------------------------------------------------------------------------


@register
class LearnedExit(Policy):
    """One exit step whose rule is two fitted logistic scores of the probes.

    Per chain family (or the given `model` / `mode`): fit `confident` (is the probe answer
    right?) and `hopeless` (will the chain's last-rung answer be right?) on every training
    (problem, chain, rung) up to the chain's natural end, with L2 strength 1 / `C`; then keep
    the thresholds (each may be off), cap and rung subset (all rungs or every other) of best
    training accuracy - price_per_unit x mean cost, or a plain chain at one budget.
    """

    name = "learned_exit"

    def __init__(
        self,
        price_per_unit: float,
        model: str | None = None,
        mode: str | None = None,
        C: float = 1.0,
    ) -> None:
        self.price_per_unit = check_price(price_per_unit)
        if not np.isfinite(C) or C <= 0:
            raise ValueError(f"C must be finite and > 0, got {C}")
        self.model = model
        self.mode = mode
        self.C = float(C)

    def _fit(self, outcomes: OutcomeMatrix) -> None:
        families = require_families(outcomes, self.name, self.model, self.mode)
        ladders = scored_ladders(outcomes, families, self.C)
        candidates: list[Candidate] = []
        correct: list[np.ndarray] = []
        cost: list[np.ndarray] = []
        for i, ladder in enumerate(ladders):
            found, c, k = ladder.score_grid(i)
            candidates += found
            correct.append(c)
            cost.append(k)
        best = best_candidate(np.vstack(correct), np.vstack(cost), self.price_per_unit)
        chosen = candidates[best]
        step = ladders[chosen.family].step(chosen)
        result = replay_decision(outcomes, np.arange(outcomes.n_problems), Decision((step,)))
        self.step_ = step
        self.family_: ChainFamily = families[chosen.family]
        self.n_candidates_ = len(candidates)
        self.n_training_rows_ = ladders[chosen.family].n_rows_
        self.train_accuracy_ = result.accuracy
        self.train_cost_ = result.mean_cost

    def decide_batch(self, problems: pd.DataFrame) -> DecisionBatch:
        self.check_fitted()
        return DecisionBatch.same(Decision((self.step_,), reason="learned exit"), len(problems))

    def get_params(self) -> dict[str, Any]:
        return {
            "price_per_unit": self.price_per_unit,
            "model": self.model,
            "mode": self.mode,
            "C": self.C,
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> LearnedExit:
        return cls(
            float(params["price_per_unit"]),
            model=params.get("model"),
            mode=params.get("mode"),
            C=float(params.get("C", 1.0)),
        )

    def get_state(self) -> dict[str, Any]:
        family = self.family_
        return {
            "step": self.step_.to_dict(),
            "family": {
                "model": family.model,
                "mode": family.mode,
                "rungs": list(family.rungs),
                "configs": list(family.configs),
            },
            "n_candidates": self.n_candidates_,
            "n_training_rows": self.n_training_rows_,
            "train_accuracy": self.train_accuracy_,
            "train_cost": self.train_cost_,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.step_ = Step.from_dict(state["step"])
        family = state["family"]
        self.family_ = ChainFamily(
            str(family["model"]),
            str(family["mode"]),
            tuple(int(r) for r in family["rungs"]),
            tuple(int(c) for c in family["configs"]),
        )
        if (self.step_.config.model, self.step_.config.mode) != (
            self.family_.model,
            self.family_.mode,
        ):
            raise PolicyError("learned_exit state: the plan's step is not of its chain family")
        self.n_candidates_ = int(state["n_candidates"])
        self.n_training_rows_ = int(state["n_training_rows"])
        self.train_accuracy_ = float(state["train_accuracy"])
        self.train_cost_ = float(state["train_cost"])

    def describe(self) -> str:
        if not hasattr(self, "step_"):
            return f"learned_exit price={self.price_per_unit:.3g}"
        return f"learned_exit {describe_step(self.step_)}"


# -- LearnedEscalate -----------------------------------------------------------------------------


def learned_unit(scored: ScoredLadder, family: int, price: float) -> Unit:
    """A ladder with fitted scores as a unit of an escalating plan: coarse-grid exit steps on
    the first chain (escalating when unsure, or last), and alone the full grid's best plan
    at `price` (`LearnedExit`'s choice on this family, expected over the chains)."""
    up_steps, up_accept, up_correct, up_cost = scored.first_chain_options(family, "unsure")
    last_steps, _, last_correct, last_cost = scored.first_chain_options(family, "never")
    candidates, correct, cost = scored.score_grid(family)
    best = best_candidate(correct, cost, price)
    k = len(scored.ladder.family.rungs)
    n = correct.shape[1]
    return Unit(
        scored.ladder.family.label,
        float(correct[k - 1].mean()),  # the plain chain at the last rung
        float(cost[k - 1].mean()),
        StageOptions(up_steps, up_accept.astype(float), up_correct, up_cost),
        StageOptions(last_steps, np.ones((len(last_steps), n)), last_correct, last_cost),
        StageOptions(
            [scored.step(candidates[best])], np.ones((1, n)), correct[[best]], cost[[best]]
        ),
    )


@register
class LearnedEscalate(ProbeEscalate):
    """Cheap first, dearer only when unsure, each ladder stopped by its own fitted scores.

    `ProbeEscalate`'s search over units, where each ladder's exit steps carry its fitted
    confident and hopeless scores (`LearnedExit`): a step escalates when its chain hit the cap
    without the confident score holding, gave up as hopeless, or has no answer. Units outside
    the ladders are one-sample probes gated by the answer's probability. The `pool` best units
    run in every order that never gets cheaper, up to `max_steps` steps; the plan of best
    training accuracy - price_per_unit x mean cost wins (ties: the cheaper).
    """

    name = "learned_escalate"

    def __init__(
        self, price_per_unit: float, max_steps: int = 3, pool: int = 4, C: float = 1.0
    ) -> None:
        super().__init__(price_per_unit, max_steps=max_steps, pool=pool)
        if not np.isfinite(C) or C <= 0:
            raise ValueError(f"C must be finite and > 0, got {C}")
        self.C = float(C)

    def _units(self, outcomes: OutcomeMatrix, families: Sequence[ChainFamily]) -> list[Unit]:
        ladders = scored_ladders(outcomes, families, self.C)
        price = self.price_per_unit
        units = [learned_unit(ladder, i, price) for i, ladder in enumerate(ladders)]
        return units + [direct_unit(outcomes, c) for c in direct_configs(outcomes, families)]

    def get_params(self) -> dict[str, Any]:
        return {**super().get_params(), "C": self.C}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> LearnedEscalate:
        return cls(
            float(params["price_per_unit"]),
            max_steps=int(params.get("max_steps", 3)),
            pool=int(params.get("pool", 4)),
            C=float(params.get("C", 1.0)),
        )
