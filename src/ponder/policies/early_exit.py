"""Policies fitted on ladder data that read the generation as it happens.

- `EarlyExit`: grow one chain through a ladder of thinking budgets and stop at the first rung
  whose probe passes a rule (answer consistency, answer confidence, a calm chain).
- `ProbeEscalate`: cheap first, dearer only when unsure: e.g. the small model without thinking,
  accepted when its answer is confident, else a thinking chain with an exit rule, else the
  larger model.
- `LevelExit`: what is known before generation (the problem's level, or a predicted
  difficulty) picks the exit plan's first rung and cap per group of problems.

Each searches a modest grid by its training objective, accuracy - price_per_unit x mean cost
(ties: the cheaper), on training problems only. Candidates are scored with the replay's own
exit rule (`exit_mask`) on arrays gathered once per chain family, so a fit takes milliseconds;
the chosen plan is then replayed with `replay_decision`, whose figures are the ones kept.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import pandas as pd

from ponder.decision import Config, Decision, DecisionBatch, Escalate, ExitRule, Step
from ponder.outcomes.matrix import NO_CHAIN, UNKNOWN_ANSWER
from ponder.outcomes.replay import exit_mask, replay, replay_decision
from ponder.policies.base import Policy, PolicyError
from ponder.policies.cascade import pareto_pool
from ponder.policies.serialization import register

if TYPE_CHECKING:
    from ponder.outcomes.matrix import OutcomeMatrix

SIGNAL_KINDS: tuple[str, ...] = ("window", "prob", "token_prob", "entropy")
WINDOWS: tuple[int, ...] = (1, 2, 3)
MIN_PROBS: tuple[float, ...] = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999)
MIN_TOKEN_PROBS: tuple[float, ...] = (0.9, 0.95, 0.99)  # DEER's default threshold is 0.95
ENTROPY_QUANTILES: tuple[float, ...] = (0.1, 0.25, 0.5)
WINDOW_WITH_PROBS: tuple[float, ...] = (0.5, 0.8, 0.95)  # window 2 and a min_prob
# ProbeEscalate: the thresholds of a one-sample probe, and the exit rules of an escalating step.
PROBE_THRESHOLDS: tuple[float, ...] = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
ESCALATE_CONDITIONS: tuple[dict[str, float], ...] = (
    {"window": 2},
    {"window": 3},
    {"min_prob": 0.7},
    {"min_prob": 0.9},
    {"min_prob": 0.99},
    {"window": 2, "min_prob": 0.9},
)
Conditions = dict[str, float]
Grouping = Literal["auto", "level", "predicted"]
GROUPINGS: tuple[str, ...] = ("auto", "level", "predicted")
TIE_DECIMALS = 12  # objective values equal to this many decimals are ties (go to the cheaper)


# -- chain families ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainFamily:
    """One model and mode whose budgets are rungs of the same recorded chains (a ladder)."""

    model: str
    mode: str
    rungs: tuple[int, ...]
    configs: tuple[int, ...]  # matrix configuration index of each rung

    @property
    def label(self) -> str:
        return f"{self.model}|{self.mode}"

    def step(
        self, positions: Sequence[int], conditions: Conditions, escalate: Escalate = "never"
    ) -> Step:
        """The exit step over the rungs at `positions` (the last is the cap)."""
        rungs = tuple(self.rungs[p] for p in positions)
        rule = ExitRule(rungs, **_typed(conditions))
        return Step(Config(self.model, self.mode, rungs[-1]), escalate=escalate, exit=rule)


def _typed(conditions: Conditions) -> dict[str, Any]:
    return {k: int(v) if k == "window" else float(v) for k, v in conditions.items()}


def chain_families(matrix: OutcomeMatrix) -> list[ChainFamily]:
    """Ladders in the matrix: per model and mode, the integer budgets recorded for every problem
    whose samples are the same chains as the largest budget's, when chain 0 is recorded at every
    rung with known answers and costs (what a multi-step plan draws first)."""
    signals = matrix.signals
    if signals is None or matrix.n_problems == 0:
        return []
    counts = matrix.n_samples
    groups: dict[tuple[str, str], list[int]] = {}
    for c, config in enumerate(matrix.configs):
        if config.budget is not None and counts[:, c].min() > 0:
            groups.setdefault((config.model, config.mode), []).append(c)
    families = []
    for (model, mode), index in sorted(groups.items()):
        index.sort(key=lambda c: matrix.configs[c].budget or 0)
        cap = index[-1]
        cap_chain = signals.chain[:, cap]
        cap_recorded = ~np.isnan(matrix.correct[:, cap])
        if (cap_chain[cap_recorded] == NO_CHAIN).any():
            continue
        rungs = []
        for c in index:
            both = cap_recorded & ~np.isnan(matrix.correct[:, c])
            if (signals.chain[:, c][both] == cap_chain[both]).all():
                rungs.append(c)
        if len(rungs) < 2:
            continue
        first = (slice(None), rungs, 0)
        if (
            np.isnan(matrix.correct[first]).any()
            or (matrix.answer[first] == UNKNOWN_ANSWER).any()
            or np.isnan(matrix.cost[first]).any()
            or np.isnan(signals.probe_cost[first]).any()
        ):
            continue
        budgets = tuple(int(matrix.configs[c].budget or 0) for c in rungs)
        families.append(ChainFamily(model, mode, budgets, tuple(rungs)))
    return families


def require_families(
    matrix: OutcomeMatrix, who: str, model: str | None = None, mode: str | None = None
) -> list[ChainFamily]:
    """The chain families a policy may use, or a PolicyError saying why there are none."""
    if matrix.signals is None or not matrix.signals.has_chains:
        raise PolicyError(
            f"{who}: needs ladder data (probe answers and signals at every rung of a recorded "
            "chain, from a live sweep with a ladder); this matrix has none, as imported public "
            "outcomes never do"
        )
    families = chain_families(matrix)
    if not families:
        raise PolicyError(
            f"{who}: no chain family: needs one model and mode at two or more token budgets "
            "whose samples are rungs of the same recorded chains, recorded for every problem "
            "with known answers and costs"
        )
    chosen = [
        f
        for f in families
        if (model is None or f.model == model) and (mode is None or f.mode == mode)
    ]
    if not chosen:
        raise PolicyError(
            f"{who}: no chain family for model={model!r}, mode={mode!r}; recorded ladders: "
            + ", ".join(f.label for f in families)
        )
    return chosen


# -- scoring exit steps on gathered arrays -------------------------------------------------------


@dataclass(frozen=True)
class ChainResults:
    """Per [problem, chain] outcome of one exit step; `complete` marks chains recorded at every
    rung of the step (the only ones replay draws)."""

    correct: np.ndarray
    cost: np.ndarray
    answered: np.ndarray
    sure: np.ndarray
    complete: np.ndarray

    def expected(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean correctness and cost over each problem's complete chains (one-step plans)."""
        have = self.complete.sum(axis=1)
        correct = np.where(self.complete, self.correct, 0.0).sum(axis=1) / have
        cost = np.where(self.complete, self.cost, 0.0).sum(axis=1) / have
        return correct, cost


class Ladder:
    """One family's arrays gathered once as [problem, chain, rung], to score many exit rules.

    `run` computes what `ponder.outcomes.replay.run_exit` does for every chain at once: the
    rule from `exit_mask`, a natural end stops, the cap stops; stopping at rung i costs that
    rung's sample cost plus every earlier probe.
    """

    def __init__(self, matrix: OutcomeMatrix, family: ChainFamily) -> None:
        assert matrix.signals is not None
        signals = matrix.signals
        index = list(family.configs)

        def gather(values: np.ndarray) -> np.ndarray:
            out: np.ndarray = np.moveaxis(values[:, index, :], 1, 2)
            return out

        self.family = family
        self.correct = gather(matrix.correct)
        self.answer = gather(matrix.answer)
        self.cost = gather(matrix.cost)
        self.prob = gather(signals.prob)
        self.token_prob = None if signals.token_prob is None else gather(signals.token_prob)
        self.entropy = gather(signals.entropy)
        self.natural = gather(signals.natural) == 1
        self.probe = gather(signals.probe_cost)
        self._views: dict[tuple[int, ...], tuple[Any, ...]] = {}

    def entropies(self) -> np.ndarray:
        """Every recorded tail entropy of the family (for threshold grids)."""
        values: np.ndarray = self.entropy[np.isfinite(self.entropy)]
        return values

    def _view(self, positions: tuple[int, ...]) -> tuple[np.ndarray, ...]:
        if positions not in self._views:
            p = list(positions)
            n, s = self.correct.shape[:2]
            complete = ~np.isnan(self.correct[:, :, p]).any(axis=2)

            def flat(values: np.ndarray) -> np.ndarray:
                out: np.ndarray = values[:, :, p].reshape(n * s, len(p))
                return out

            self._views[positions] = (
                complete,
                flat(self.correct),
                flat(self.answer),
                flat(self.cost),
                flat(self.prob),
                None if self.token_prob is None else flat(self.token_prob),
                flat(self.entropy),
                flat(self.natural),
                flat(self.probe),
            )
        return self._views[positions]

    def run(self, positions: Sequence[int], conditions: Conditions) -> ChainResults:
        complete, correct, answer, cost, prob, token, entropy, natural, probe = self._view(
            tuple(positions)
        )
        rungs = tuple(self.family.rungs[p] for p in positions)
        rule = ExitRule(rungs, **_typed(conditions))
        with np.errstate(invalid="ignore"):
            holds = exit_mask(rule, answer, prob, entropy, token)
        done = holds | natural
        done[:, -1] = True  # the hard cap
        stop = done.argmax(axis=1)
        rows = np.arange(len(stop))
        earlier = np.arange(len(positions))[None, :] < stop[:, None]
        spent = cost[rows, stop] + np.where(earlier, probe, 0.0).sum(axis=1)
        shape = complete.shape
        return ChainResults(
            correct=correct[rows, stop].reshape(shape),
            cost=spent.reshape(shape),
            answered=(answer[rows, stop] >= 0).reshape(shape),
            sure=(holds | natural)[rows, stop].reshape(shape),
            complete=complete,
        )


def rung_subsets(n_rungs: int) -> list[tuple[int, ...]]:
    """Per cap: every rung up to it, every other rung ending at it, and the cap alone."""
    out: list[tuple[int, ...]] = []
    for cap in range(n_rungs):
        every = tuple(range(cap + 1))
        other = tuple(range(cap, -1, -2))[::-1]
        for positions in (every, other, (cap,)):
            if positions not in out:
                out.append(positions)
    return out


def exit_conditions(kinds: Sequence[str], ladder: Ladder) -> list[Conditions]:
    """The rule grid for the allowed signal kinds (entropy thresholds: training quantiles)."""
    out: list[Conditions] = []
    if "window" in kinds:
        out += [{"window": w} for w in WINDOWS]
    if "prob" in kinds:
        out += [{"min_prob": p} for p in MIN_PROBS]
    if "token_prob" in kinds and ladder.token_prob is not None:
        out += [{"min_token_prob": p} for p in MIN_TOKEN_PROBS]
    entropies = ladder.entropies()
    if "entropy" in kinds and len(entropies):
        levels = sorted({round(float(q), 4) for q in np.quantile(entropies, ENTROPY_QUANTILES)})
        out += [{"max_entropy": q} for q in levels]
    if "window" in kinds and "prob" in kinds:
        out += [{"window": 2, "min_prob": p} for p in WINDOW_WITH_PROBS]
    return out


@dataclass(frozen=True)
class Scored:
    """Candidate steps with their per-problem expected correctness and cost ([step, problem])."""

    steps: list[Step]
    correct: np.ndarray
    cost: np.ndarray

    def best(self, price: float) -> int:
        """The candidate of best mean objective; ties go to the cheaper, then the earlier."""
        accuracy, spent = self.correct.mean(axis=1), self.cost.mean(axis=1)
        value = np.round(accuracy - price * spent, TIE_DECIMALS)
        return int(np.lexsort((spent, -value))[0])


_CACHE: dict[tuple[Any, ...], Any] = {}
_CACHE_SIZE = 16


def cached_fit(key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    """Price-independent fit work, shared by the fits of one price sweep.

    An evaluation fits each family at nine prices on the same training problems; the grid
    scores do not depend on the price, only the choice among them does. Keyed by the training
    matrix's fingerprint, so different data never share an entry.
    """
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = compute()
    return _CACHE[key]


def scored_grid(
    outcomes: OutcomeMatrix, families: Sequence[ChainFamily], kinds: Sequence[str]
) -> tuple[list[Ladder], Scored]:
    """The ladders of `families` and every exit step of the grid on them (cached)."""
    key = ("grid", outcomes.fingerprint(), tuple(f.label for f in families), tuple(kinds))

    def compute() -> tuple[list[Ladder], Scored]:
        ladders = [Ladder(outcomes, f) for f in families]
        return ladders, score_exit_grid(ladders, kinds)

    result: tuple[list[Ladder], Scored] = cached_fit(key, compute)
    return result


def score_exit_grid(ladders: Sequence[Ladder], kinds: Sequence[str]) -> Scored:
    """Every exit step of the grid on every ladder, scored as one-step plans (expectation)."""
    steps: list[Step] = []
    correct: list[np.ndarray] = []
    cost: list[np.ndarray] = []
    for ladder in ladders:
        conditions = exit_conditions(kinds, ladder)
        if not conditions:
            raise PolicyError(
                f"no exit condition can be built from signals {list(kinds)} for "
                f"{ladder.family.label}"
            )
        for positions in rung_subsets(len(ladder.family.rungs)):
            # With one rung the rule never matters: the cap stops the chain.
            for cond in conditions if len(positions) > 1 else conditions[:1]:
                c, k = ladder.run(positions, cond).expected()
                steps.append(ladder.family.step(positions, cond))
                correct.append(c)
                cost.append(k)
    return Scored(steps, np.vstack(correct), np.vstack(cost))


def _conditions_of(step: Step) -> Conditions:
    assert step.exit is not None
    rule = step.exit.to_dict()
    return {k: float(v) for k, v in rule.items() if k != "rungs"}


def describe_step(step: Step) -> str:
    """`model|mode rungs 16..512 (6) window=2 min_prob=0.9`, or a plain or probe step."""
    config = step.config
    if step.exit is None:
        if step.min_prob is not None:
            return f"{config.label} if p>={step.min_prob:g}"
        return config.label
    rungs = step.exit.rungs
    if len(rungs) == 1:
        return f"{config.model}|{config.mode} {rungs[0]} (no early exit)"
    parts = []
    for key, value in step.exit.to_dict().items():
        if key == "rungs":
            continue
        if isinstance(value, dict):  # a fitted score: its threshold says when it fires
            parts.append(f"{key}{'<=' if key == 'hopeless' else '>='}{value['threshold']:g}")
        else:
            parts.append(f"{key}={value:g}")
    rule = " ".join(parts)
    return f"{config.model}|{config.mode} rungs {rungs[0]}..{rungs[-1]} ({len(rungs)}) {rule}"


def check_price(price_per_unit: float) -> float:
    price = float(price_per_unit)
    if not np.isfinite(price) or price < 0:
        raise ValueError(f"price_per_unit must be finite and >= 0, got {price_per_unit}")
    return price


def _check_kinds(signals: Sequence[str] | None) -> list[str]:
    kinds = list(SIGNAL_KINDS if signals is None else signals)
    unknown = [k for k in kinds if k not in SIGNAL_KINDS]
    if unknown or not kinds:
        raise ValueError(f"signals must name some of {', '.join(SIGNAL_KINDS)}; got {list(kinds)}")
    return kinds


# -- EarlyExit ---------------------------------------------------------------------------------


@register
class EarlyExit(Policy):
    """One exit step on one chain family, the same for every request.

    Fitting scores every family (or the given `model` / `mode`), every cap and rung subset
    (all rungs up to the cap, every other rung, the cap alone) and every rule the allowed
    `signals` give (window 1-3; min_prob 0.5-0.999; min_token_prob 0.9-0.99; max_entropy at
    training quantiles; window 2 with a min_prob) on the training problems, and keeps the best
    accuracy - price_per_unit x mean cost (ties: the cheaper).
    """

    name = "early_exit"

    def __init__(
        self,
        price_per_unit: float,
        model: str | None = None,
        mode: str | None = None,
        signals: Sequence[str] | None = None,
    ) -> None:
        self.price_per_unit = check_price(price_per_unit)
        self.model = model
        self.mode = mode
        self.signals = None if signals is None else _check_kinds(signals)

    def _fit(self, outcomes: OutcomeMatrix) -> None:
        families = require_families(outcomes, self.name, self.model, self.mode)
        _, scored = scored_grid(outcomes, families, _check_kinds(self.signals))
        step = scored.steps[scored.best(self.price_per_unit)]
        result = replay_decision(outcomes, np.arange(outcomes.n_problems), Decision((step,)))
        self.step_ = step
        self.n_candidates_ = len(scored.steps)
        self.train_accuracy_ = result.accuracy
        self.train_cost_ = result.mean_cost

    def decide_batch(self, problems: pd.DataFrame) -> DecisionBatch:
        self.check_fitted()
        return DecisionBatch.same(Decision((self.step_,), reason="early exit"), len(problems))

    def get_params(self) -> dict[str, Any]:
        return {
            "price_per_unit": self.price_per_unit,
            "model": self.model,
            "mode": self.mode,
            "signals": None if self.signals is None else list(self.signals),
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> EarlyExit:
        signals = params.get("signals")
        return cls(
            float(params["price_per_unit"]),
            model=params.get("model"),
            mode=params.get("mode"),
            signals=None if signals is None else [str(s) for s in signals],
        )

    def get_state(self) -> dict[str, Any]:
        return {
            "step": self.step_.to_dict(),
            "n_candidates": self.n_candidates_,
            "train_accuracy": self.train_accuracy_,
            "train_cost": self.train_cost_,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        step = Step.from_dict(state["step"])
        if step.exit is None:
            raise ValueError("an early-exit plan needs an exit step")
        self.step_ = step
        self.n_candidates_ = int(state["n_candidates"])
        self.train_accuracy_ = float(state["train_accuracy"])
        self.train_cost_ = float(state["train_cost"])

    def describe(self) -> str:
        if not hasattr(self, "step_"):
            return f"early_exit price={self.price_per_unit:.3g}"
        return f"early_exit {describe_step(self.step_)}"


# -- ProbeEscalate -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageOptions:
    """The ways one unit can run as a step: [option, problem] arrays of whether the request
    stops there (`accept`), the step's correctness and its cost."""

    steps: list[Step]
    accept: np.ndarray
    correct: np.ndarray
    cost: np.ndarray


@dataclass(frozen=True)
class Unit:
    """A (model, mode) a plan can run: a ladder (exit steps) or one configuration (probes)."""

    label: str
    accuracy: float  # training accuracy of its dearest setting (for the pool and the order)
    cost: float
    escalating: StageOptions  # non-final steps, first chain (escalate when unsure)
    final: StageOptions  # last step of a multi-step plan, first chain
    alone: StageOptions  # a one-step plan, scored by its expectation over recorded samples


def ladder_unit(ladder: Ladder) -> Unit:
    """A ladder's options: exit rules x caps (escalating when unsure, or last), and each cap
    alone (the plain chain at that budget)."""
    family = ladder.family
    n_rungs = len(family.rungs)
    escalating: list[tuple[Step, ChainResults]] = []
    final: list[tuple[Step, ChainResults]] = []
    for cap in range(n_rungs):
        positions = tuple(range(cap + 1))
        for cond in ESCALATE_CONDITIONS:
            result = ladder.run(positions, cond)
            escalating.append((family.step(positions, cond, "unsure"), result))
            if cap > 0:
                final.append((family.step(positions, cond), result))
        # The cap alone: the plain chain at that budget, no probes.
        only = ESCALATE_CONDITIONS[0]  # any rule: the cap stops a one-rung chain
        final.append((family.step((cap,), only), ladder.run((cap,), only)))

    def first(pairs: list[tuple[Step, ChainResults]], escalates: bool) -> StageOptions:
        accept = [
            (r.sure[:, 0] & r.answered[:, 0]) if escalates else np.ones(len(r.sure), bool)
            for _, r in pairs
        ]
        return StageOptions(
            [s for s, _ in pairs],
            np.vstack(accept).astype(float),
            np.vstack([r.correct[:, 0] for _, r in pairs]),
            np.vstack([r.cost[:, 0] for _, r in pairs]),
        )

    expected = [r.expected() for _, r in final]
    alone = StageOptions(
        [s for s, _ in final],
        np.ones((len(final), len(expected[0][0]))),
        np.vstack([c for c, _ in expected]),
        np.vstack([k for _, k in expected]),
    )
    dearest = final[-1][1].expected()
    return Unit(
        family.label,
        float(dearest[0].mean()),
        float(dearest[1].mean()),
        first(escalating, True),
        first(final, False),
        alone,
    )


def direct_unit(outcomes: OutcomeMatrix, c: int) -> Unit:
    """One configuration's options: a probe at each threshold, or the plain sample last."""
    assert outcomes.signals is not None
    config = outcomes.configs[c]
    correct, cost = outcomes.correct[:, c, 0], outcomes.cost[:, c, 0]
    prob, answer = outcomes.signals.prob[:, c, 0], outcomes.answer[:, c, 0]
    n = outcomes.n_problems
    with np.errstate(invalid="ignore"):
        accept = np.vstack([(answer >= 0) & (prob >= t) for t in PROBE_THRESHOLDS])
    probes = [Step(config, escalate="unsure", min_prob=t) for t in PROBE_THRESHOLDS]
    recorded = ~np.isnan(outcomes.correct[:, c])
    mean_correct = np.nanmean(outcomes.correct[:, c], axis=1)
    mean_cost = np.where(recorded, outcomes.cost[:, c], 0.0).sum(axis=1) / recorded.sum(axis=1)
    repeat = len(PROBE_THRESHOLDS)
    return Unit(
        config.label,
        float(mean_correct.mean()),
        float(mean_cost.mean()),
        StageOptions(
            probes, accept.astype(float), np.tile(correct, (repeat, 1)), np.tile(cost, (repeat, 1))
        ),
        StageOptions([Step(config)], np.ones((1, n)), correct[None, :], cost[None, :]),
        StageOptions([Step(config)], np.ones((1, n)), mean_correct[None, :], mean_cost[None, :]),
    )


def direct_configs(outcomes: OutcomeMatrix, families: Sequence[ChainFamily]) -> list[int]:
    """Configurations outside every ladder that a plan can probe: sample 0 recorded for every
    problem with a known answer and cost (their probability gates escalation)."""
    in_ladder = {c for f in families for c in f.configs}
    out = []
    for c in range(len(outcomes.configs)):
        if c in in_ladder:
            continue
        first = (slice(None), c, 0)
        recorded = ~np.isnan(outcomes.correct[:, c])
        if (
            np.isnan(outcomes.correct[first]).any()
            or (outcomes.answer[first] == UNKNOWN_ANSWER).any()
            or np.isnan(outcomes.cost[:, c][recorded]).any()
        ):
            continue
        out.append(c)
    return out


def sequence_values(units: Sequence[Unit], price: float) -> tuple[float, float, list[int]]:
    """Best (objective, cost, option per unit) of the plans running `units` in order, summed
    over problems; each problem stops at the first step that accepts it."""
    if len(units) == 1:
        opts = units[0].alone
        total_c, total_k = opts.correct.sum(axis=1), opts.cost.sum(axis=1)
        value = np.round(total_c - price * total_k, TIE_DECIMALS - 3)
        i = int(np.lexsort((total_k, -value))[0])
        return float(value[i]), float(total_k[i]), [i]
    first = units[0].escalating
    last = units[-1].final
    reach = 1.0 - first.accept  # [o1, n] problems that go on after the first step
    if len(units) == 2:
        total_c = (first.accept * first.correct).sum(axis=1)[:, None] + reach @ last.correct.T
        total_k = first.cost.sum(axis=1)[:, None] + reach @ last.cost.T
    else:
        mid = units[1].escalating
        through = (reach[:, None, :] * (1.0 - mid.accept)[None, :, :]).reshape(-1, reach.shape[1])
        o1, o2 = len(first.steps), len(mid.steps)
        total_c = (
            (first.accept * first.correct).sum(axis=1)[:, None, None]
            + (reach @ (mid.accept * mid.correct).T)[:, :, None]
            + (through @ last.correct.T).reshape(o1, o2, -1)
        )
        total_k = (
            first.cost.sum(axis=1)[:, None, None]
            + (reach @ mid.cost.T)[:, :, None]
            + (through @ last.cost.T).reshape(o1, o2, -1)
        )
    value = np.round(total_c - price * total_k, TIE_DECIMALS - 3).ravel()
    flat = int(np.lexsort((total_k.ravel(), -value))[0])
    chosen = [int(i) for i in np.unravel_index(flat, total_c.shape)]
    return float(value[flat]), float(total_k.ravel()[flat]), chosen


@register
class ProbeEscalate(Policy):
    """Probe cheap, escalate when unsure: up to `max_steps` steps over the (model, mode) units.

    Units are the ladders (exit steps: accept when the exit rule holds or the chain ends on its
    own) and the configurations outside them (one sample: accept when the answer's probability
    is at least a threshold, 0 meaning any answer). The `pool` best units by training Pareto
    layer run in every order that never gets cheaper (so the large model's no-think may come
    first), with every threshold, exit rule and cap of a small grid; the plan of best training
    accuracy - price_per_unit x mean cost wins (ties: the cheaper). Steps after the first draw
    each unit's first recorded chain or sample, as replay does.
    """

    name = "probe_escalate"

    def __init__(self, price_per_unit: float, max_steps: int = 3, pool: int = 4) -> None:
        self.price_per_unit = check_price(price_per_unit)
        if not 1 <= max_steps <= 3:
            raise ValueError(f"max_steps must be 1, 2 or 3, got {max_steps}")
        if pool < 1:
            raise ValueError(f"pool must be at least 1, got {pool}")
        self.max_steps = max_steps
        self.pool = pool

    def _units(self, outcomes: OutcomeMatrix, families: Sequence[ChainFamily]) -> list[Unit]:
        """What the plans are built from: each ladder and each one-sample configuration."""

        def compute() -> list[Unit]:
            units = [ladder_unit(Ladder(outcomes, f)) for f in families]
            return units + [direct_unit(outcomes, c) for c in direct_configs(outcomes, families)]

        key = ("units", outcomes.fingerprint(), tuple(f.label for f in families))
        units: list[Unit] = cached_fit(key, compute)
        return units

    def _fit(self, outcomes: OutcomeMatrix) -> None:
        families = require_families(outcomes, self.name)
        units = self._units(outcomes, families)
        accuracy = np.array([u.accuracy for u in units])
        cost = np.array([u.cost for u in units])
        score = accuracy - self.price_per_unit * cost
        pool = pareto_pool(accuracy, cost, score, min(self.pool, len(units)))
        # Cheap to dear (so orders never get cheaper); equal costs by accuracy, then name.
        ordered = sorted((units[i] for i in pool), key=lambda u: (u.cost, u.accuracy, u.label))
        best: tuple[float, float] = (-np.inf, 0.0)
        plan: list[Step] = []
        for size in range(1, min(self.max_steps, len(ordered)) + 1):
            for chosen in itertools.combinations(ordered, size):
                value, spent, options = sequence_values(chosen, self.price_per_unit)
                if (value, -spent) > best:
                    best = (value, -spent)
                    if size == 1:
                        plan = [chosen[0].alone.steps[options[0]]]
                    else:
                        plan = [
                            u.escalating.steps[o]
                            for u, o in zip(chosen[:-1], options[:-1], strict=True)
                        ]
                        plan.append(chosen[-1].final.steps[options[-1]])
        steps = tuple(plan)
        result = replay_decision(outcomes, np.arange(outcomes.n_problems), Decision(steps))
        self.steps_ = steps
        self.units_ = [u.label for u in ordered]
        self.train_accuracy_ = result.accuracy
        self.train_cost_ = result.mean_cost
        self.reached_ = [float((result.steps > k).mean()) for k in range(len(steps))]

    def decide_batch(self, problems: pd.DataFrame) -> DecisionBatch:
        self.check_fitted()
        return DecisionBatch.same(Decision(self.steps_, reason=self.name), len(problems))

    def get_params(self) -> dict[str, Any]:
        return {
            "price_per_unit": self.price_per_unit,
            "max_steps": self.max_steps,
            "pool": self.pool,
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ProbeEscalate:
        return cls(
            float(params["price_per_unit"]),
            max_steps=int(params.get("max_steps", 3)),
            pool=int(params.get("pool", 4)),
        )

    def get_state(self) -> dict[str, Any]:
        return {
            "steps": [s.to_dict() for s in self.steps_],
            "units": list(self.units_),
            "train_accuracy": self.train_accuracy_,
            "train_cost": self.train_cost_,
            "reached": list(self.reached_),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.steps_ = tuple(Step.from_dict(s) for s in state["steps"])
        if not self.steps_:
            raise ValueError(f"a {self.name} plan needs at least one step")
        self.units_ = [str(u) for u in state["units"]]
        self.train_accuracy_ = float(state["train_accuracy"])
        self.train_cost_ = float(state["train_cost"])
        self.reached_ = [float(r) for r in state["reached"]]

    def describe(self) -> str:
        if not hasattr(self, "steps_"):
            return f"{self.name} price={self.price_per_unit:.3g}"
        return f"{self.name} " + " > ".join(describe_step(s) for s in self.steps_)


# -- LevelExit -----------------------------------------------------------------------------------


class DifficultyModel:
    """Predicted difficulty from pre-generation features (ridge on `ProblemFeaturizer`),
    binned at quantiles of cross-fitted training predictions, so training problems fall in
    bins the way unseen ones will (in-sample predictions would spread wider)."""

    N_FEATURES = 2**10
    FOLDS = 5

    def fit(self, problems: pd.DataFrame, difficulty: np.ndarray, bins: int) -> np.ndarray:
        """Fit and return the training problems' bins (cross-fitted)."""
        from sklearn.linear_model import Ridge
        from sklearn.model_selection import KFold

        from ponder.policies.features import ProblemFeaturizer

        n = len(problems)
        folds = min(self.FOLDS, n)
        held_out = np.zeros(n)
        for train, test in KFold(folds, shuffle=True, random_state=0).split(np.arange(n)):
            part = ProblemFeaturizer(self.N_FEATURES).fit(problems.iloc[train])
            model = Ridge(alpha=1.0).fit(part.transform(problems.iloc[train]), difficulty[train])
            held_out[test] = model.predict(part.transform(problems.iloc[test]))
        self.featurizer_ = ProblemFeaturizer(self.N_FEATURES).fit(problems)
        model = Ridge(alpha=1.0).fit(self.featurizer_.transform(problems), difficulty)
        self.coef_ = [float(v) for v in model.coef_]
        self.intercept_ = float(model.intercept_)
        quantiles = np.linspace(0, 1, bins + 1)[1:-1]
        self.edges_ = [float(e) for e in np.quantile(held_out, quantiles)]
        return self._bin(held_out)

    def _bin(self, predicted: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.searchsorted(np.asarray(self.edges_), predicted, side="right")
        return out.astype(float)

    def groups(self, problems: pd.DataFrame) -> np.ndarray:
        """Difficulty bin (0: easiest) of each problem."""
        if len(problems) == 0:
            return np.zeros(0)
        predicted = self.featurizer_.transform(problems) @ np.asarray(self.coef_)
        return self._bin(np.asarray(predicted).ravel() + self.intercept_)

    def get_state(self) -> dict[str, Any]:
        return {
            "featurizer": self.featurizer_.get_state(),
            "coef": list(self.coef_),
            "intercept": self.intercept_,
            "edges": list(self.edges_),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> DifficultyModel:
        from ponder.policies.features import ProblemFeaturizer

        model = cls()
        model.featurizer_ = ProblemFeaturizer.from_state(state["featurizer"])
        model.coef_ = [float(v) for v in state["coef"]]
        model.intercept_ = float(state["intercept"])
        model.edges_ = [float(e) for e in state["edges"]]
        return model


@register
class LevelExit(Policy):
    """Early exit whose first rung and cap depend on what is known before generation.

    The global plan is `EarlyExit`'s. Problems are grouped by `level` (`grouping="level"`, or
    "auto" when every training problem has one) or by predicted difficulty (`"predicted"`:
    `difficulty_bins` bins of a ridge fit on problem features to each problem's mean training
    correctness over all configurations). For each group with at least `min_problems`
    training problems, the plan keeps the global exit rule and picks the family, first rung and
    cap (any contiguous run of rungs) of best objective, shrunk towards the whole training set:
    (n_group x group objective + shrinkage x overall objective) / (n_group + shrinkage).
    Smaller groups, unknown levels and unseen levels get the global plan.
    """

    name = "level_exit"

    def __init__(
        self,
        price_per_unit: float,
        model: str | None = None,
        mode: str | None = None,
        signals: Sequence[str] | None = None,
        grouping: Grouping = "auto",
        min_problems: int = 10,
        shrinkage: float = 10.0,
        difficulty_bins: int = 3,
    ) -> None:
        self.price_per_unit = check_price(price_per_unit)
        if grouping not in GROUPINGS:
            raise ValueError(f"grouping must be one of {', '.join(GROUPINGS)}, got {grouping!r}")
        if min_problems < 1 or shrinkage < 0 or difficulty_bins < 2:
            raise ValueError("need min_problems >= 1, shrinkage >= 0 and difficulty_bins >= 2")
        self.model = model
        self.mode = mode
        self.signals = None if signals is None else _check_kinds(signals)
        self.grouping: Grouping = grouping
        self.min_problems = min_problems
        self.shrinkage = float(shrinkage)
        self.difficulty_bins = difficulty_bins

    def _training_groups(self, outcomes: OutcomeMatrix) -> np.ndarray:
        levels = pd.to_numeric(outcomes.problems["level"], errors="coerce").to_numpy(float)
        grouping = self.grouping
        if grouping == "auto":
            grouping = "level" if not np.isnan(levels).any() else "predicted"
        self.grouping_: str = grouping
        self.difficulty_: DifficultyModel | None = None
        if grouping == "level":
            if np.isnan(levels).all():
                raise PolicyError("level_exit: grouping='level' but no training problem has one")
            return levels
        if outcomes.n_problems < 2 * DifficultyModel.FOLDS:
            return np.full(outcomes.n_problems, np.nan)  # too few to learn: the global plan
        with np.errstate(invalid="ignore"):
            difficulty = 1.0 - np.nanmean(outcomes.mean_correct(), axis=1)
        difficulty = np.nan_to_num(difficulty, nan=float(np.nanmean(difficulty)))
        self.difficulty_ = DifficultyModel()
        return self.difficulty_.fit(outcomes.problems, difficulty, self.difficulty_bins)

    def _fit(self, outcomes: OutcomeMatrix) -> None:
        families = require_families(outcomes, self.name, self.model, self.mode)
        ladders, scored = scored_grid(outcomes, families, _check_kinds(self.signals))
        price = self.price_per_unit
        best = scored.best(price)
        global_step = scored.steps[best]
        # Per group: the global rule over any contiguous run of rungs of any family.
        conditions = _conditions_of(global_step)
        steps = [global_step]
        correct, cost = [scored.correct[[best]]], [scored.cost[[best]]]
        for ladder in ladders:
            n_rungs = len(ladder.family.rungs)
            for start, cap in itertools.combinations_with_replacement(range(n_rungs), 2):
                positions = tuple(range(start, cap + 1))
                c, k = ladder.run(positions, conditions).expected()
                steps.append(ladder.family.step(positions, conditions))
                correct.append(c[None, :])
                cost.append(k[None, :])
        all_correct, all_cost = np.vstack(correct), np.vstack(cost)
        overall = all_correct.mean(axis=1) - price * all_cost.mean(axis=1)
        groups = self._training_groups(outcomes)
        self.global_step_ = global_step
        self.groups_: list[float] = []
        self.group_steps_: list[Step] = []
        self.group_sizes_: list[int] = []
        for group in np.unique(groups[~np.isnan(groups)]).tolist():
            rows = np.flatnonzero(groups == group)
            if len(rows) < self.min_problems:
                continue
            n = len(rows)
            in_group = all_correct[:, rows].mean(axis=1) - price * all_cost[:, rows].mean(axis=1)
            value = (n * in_group + self.shrinkage * overall) / (n + self.shrinkage)
            spent = all_cost[:, rows].mean(axis=1)
            choice = int(np.lexsort((spent, -np.round(value, TIE_DECIMALS)))[0])
            self.groups_.append(float(group))
            self.group_steps_.append(steps[choice])
            self.group_sizes_.append(n)
        result = replay(outcomes, self._batch(outcomes.problems))
        self.train_accuracy_ = result.accuracy
        self.train_cost_ = result.mean_cost

    def _groups_of(self, problems: pd.DataFrame) -> np.ndarray:
        if self.grouping_ == "level":
            if "level" not in problems.columns:
                return np.full(len(problems), np.nan)
            levels: np.ndarray = pd.to_numeric(problems["level"], errors="coerce").to_numpy(float)
            return levels
        if self.difficulty_ is None:
            return np.full(len(problems), np.nan)
        return self.difficulty_.groups(problems)

    def decide_batch(self, problems: pd.DataFrame) -> DecisionBatch:
        self.check_fitted()
        return self._batch(problems)

    def _batch(self, problems: pd.DataFrame) -> DecisionBatch:
        """Each problem's group plan (the global plan outside every fitted group)."""
        plans = [Decision((self.global_step_,), reason="level exit: global")]
        plans += [
            Decision((s,), reason=f"level exit: {self.grouping_} {g:g}")
            for g, s in zip(self.groups_, self.group_steps_, strict=True)
        ]
        position = pd.Index(self.groups_, dtype=float).get_indexer(
            pd.Index(self._groups_of(problems), dtype=float)
        )
        distinct = DecisionBatch.from_list(plans)
        return DecisionBatch(distinct.decisions, distinct.index[position + 1])

    def get_params(self) -> dict[str, Any]:
        return {
            "price_per_unit": self.price_per_unit,
            "model": self.model,
            "mode": self.mode,
            "signals": None if self.signals is None else list(self.signals),
            "grouping": self.grouping,
            "min_problems": self.min_problems,
            "shrinkage": self.shrinkage,
            "difficulty_bins": self.difficulty_bins,
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> LevelExit:
        signals = params.get("signals")
        return cls(
            float(params["price_per_unit"]),
            model=params.get("model"),
            mode=params.get("mode"),
            signals=None if signals is None else [str(s) for s in signals],
            grouping=cast(Grouping, params.get("grouping", "auto")),
            min_problems=int(params.get("min_problems", 10)),
            shrinkage=float(params.get("shrinkage", 10.0)),
            difficulty_bins=int(params.get("difficulty_bins", 3)),
        )

    def get_state(self) -> dict[str, Any]:
        return {
            "grouping": self.grouping_,
            "global_step": self.global_step_.to_dict(),
            "groups": [
                {"group": g, "size": n, "step": s.to_dict()}
                for g, n, s in zip(self.groups_, self.group_sizes_, self.group_steps_, strict=True)
            ],
            "difficulty": None if self.difficulty_ is None else self.difficulty_.get_state(),
            "train_accuracy": self.train_accuracy_,
            "train_cost": self.train_cost_,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        grouping = str(state["grouping"])
        if grouping not in ("level", "predicted"):
            raise ValueError(f"unknown grouping {grouping!r}")
        self.grouping_ = grouping
        self.global_step_ = Step.from_dict(state["global_step"])
        self.groups_ = [float(g["group"]) for g in state["groups"]]
        self.group_sizes_ = [int(g["size"]) for g in state["groups"]]
        self.group_steps_ = [Step.from_dict(g["step"]) for g in state["groups"]]
        difficulty = state.get("difficulty")
        self.difficulty_ = None if difficulty is None else DifficultyModel.from_state(difficulty)
        self.train_accuracy_ = float(state["train_accuracy"])
        self.train_cost_ = float(state["train_cost"])

    def describe(self) -> str:
        if not hasattr(self, "global_step_"):
            return f"level_exit price={self.price_per_unit:.3g}"
        caps = ", ".join(
            f"{g:g}:{s.exit.rungs[0]}-{s.exit.cap}" if s.exit else f"{g:g}"
            for g, s in zip(self.groups_, self.group_steps_, strict=True)
        )
        return f"level_exit {describe_step(self.global_step_)}; by {self.grouping_} {caps}"
