"""The published adaptive-compute rules as named baselines, replayed on ponder's own data.

Each class is one paper's rule at that paper's default settings (`PUBLISHED_DEFAULTS`, one
place, with sources; `docs/baselines.md` has the citations and every default the recorded data
cannot honour). Each decides with ponder's own `Decision` types, so `replay` scores it on the
same outcomes and with the same cost accounting as ponder's policies. Fitting chooses only what
the data leaves open (which model and mode, which recorded budgets stand in for the paper's) and
what the paper itself learns (AutoThink's complexity classifier, RouteLLM's win-rate predictor
and threshold); the rules' own settings are never tuned to the data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ponder.decision import Config, Decision, DecisionBatch, ExitRule, Step, StopRule
from ponder.outcomes.matrix import NO_CHAIN, OutcomeMatrix
from ponder.outcomes.replay import replay_decision
from ponder.policies.adaptive import choice_batch, config_or_none
from ponder.policies.base import Policy, PolicyError
from ponder.policies.cascade import config_stats, usable_configs
from ponder.policies.predictor import CorrectnessPredictor, fit_predictor
from ponder.policies.serialization import register

if TYPE_CHECKING:
    from ponder.outcomes.replay import ReplayResult

# Every default in one table: name -> settings plus where they come from. docs/baselines.md
# gives the full citations, the repository commits and what ponder cannot honour.
PUBLISHED_DEFAULTS: dict[str, dict[str, Any]] = {
    "dynasor_cot": {
        "window": 3,
        "source": (
            "Fu et al., arXiv:2412.20993 (Dynasor-CoT); hao-ai-lab/Dynasor: certainty window 3 is "
            "the 'mid' effort preset (dynasor-chat default, TensorRT-LLM port); the servers "
            "default to window 2 at a 32-token interval"
        ),
    },
    "deer": {
        "threshold": 0.95,
        "source": "Yang et al., arXiv:2504.15895 (DEER); iie-ycx/DEER --threshold 0.95",
    },
    "adaptive_consistency_beta": {
        "confidence": 0.95,
        "max_samples": 40,
        "source": (
            "Aggarwal et al., EMNLP 2023, arXiv:2305.11860; Pranjal2041/AdaptiveConsistency "
            "BetaStoppingCriteria(conf_thresh=0.95), AC(max_gens=40)"
        ),
    },
    "esc": {
        "window": 5,
        "max_samples": 40,
        "source": "Li et al., ICLR 2024, arXiv:2401.10480; Yiwei98/ESC window 5, max 40",
    },
    "autothink": {
        "high_budget": 4096,
        "low_budget": 1024,
        "threshold": 0.5,
        "source": (
            "Sharma, AutoThink, SSRN 2025, doi:10.2139/ssrn.5253327; codelion/optillm "
            "optillm/autothink DEFAULT_CONFIG: HIGH max 4096, LOW max 1024 thinking tokens; "
            "the classifier's top label wins (two classes: P >= 0.5)"
        ),
    },
    "routellm_threshold": {
        "strong_share": 0.5,
        "source": (
            "Ong et al., arXiv:2406.18665 (RouteLLM); lm-sys/RouteLLM: route to strong when the "
            "predicted strong win rate >= the (1 - share) quantile on calibration data; the "
            "share has no default, 0.5 is the README example"
        ),
    },
}


def _default(name: str, key: str) -> Any:
    return PUBLISHED_DEFAULTS[name][key]


# -- choosing what the data leaves open --------------------------------------------------------


@dataclass(frozen=True)
class BudgetFamily:
    """The recorded budgets of one model and mode (a ladder when they are rungs of one chain)."""

    model: str
    mode: str
    budgets: tuple[int, ...]

    def config(self, budget: int) -> Config:
        return Config(self.model, self.mode, budget)

    @property
    def label(self) -> str:
        return f"{self.model}|{self.mode}"


def budget_families(outcomes: OutcomeMatrix) -> list[BudgetFamily]:
    """Model-and-mode groups with at least two token budgets recorded (with known costs) for
    every problem: what a budget-setting rule can choose between."""
    groups: dict[tuple[str, str], list[int]] = {}
    for c in usable_configs(outcomes).tolist():
        config = outcomes.configs[c]
        if config.budget is not None:
            groups.setdefault((config.model, config.mode), []).append(config.budget)
    return [
        BudgetFamily(model, mode, tuple(sorted(budgets)))
        for (model, mode), budgets in sorted(groups.items())
        if len(budgets) >= 2
    ]


def ladder_families(outcomes: OutcomeMatrix) -> list[BudgetFamily]:
    """Budget families whose budgets are probes of one recorded chain (a live sweep's ladder).

    The rungs kept are the budgets whose samples carry the same chain codes as the largest
    budget's; every problem needs a chain recorded, with known sample and probe costs, at every
    rung, so an exit step can be replayed on it.
    """
    signals = outcomes.signals
    if signals is None or not signals.has_chains:
        return []
    out = []
    for family in budget_families(outcomes):
        index = [outcomes.config_index(family.config(b)) for b in family.budgets]
        recorded = ~np.isnan(outcomes.correct[:, index, :])  # [problem, rung, slot]
        chain = signals.chain[:, index, :]
        top = chain[:, -1:, :]
        both = recorded & recorded[:, -1:, :]
        same = ((chain == top) & (top != NO_CHAIN)) | ~both
        rungs = [r for r in range(len(index)) if same[:, r, :].all() and both[:, r, :].any()]
        if len(rungs) < 2:
            continue
        at = [index[r] for r in rungs]
        full = recorded[:, rungs, :].all(axis=1)  # [problem, slot]: a chain at every rung
        costs_known = ~(
            np.isnan(outcomes.cost[:, at, :]) | np.isnan(signals.probe_cost[:, at, :])
        ).any(axis=1)
        if not (full & costs_known).any(axis=1).all():
            continue
        out.append(BudgetFamily(family.model, family.mode, tuple(family.budgets[r] for r in rungs)))
    return out


def _pick_family(
    outcomes: OutcomeMatrix,
    families: Sequence[BudgetFamily],
    model: str | None,
    mode: str | None,
    top: Callable[[BudgetFamily], int],
    who: str,
) -> BudgetFamily:
    """The family (of those matching `model`/`mode`) whose config at budget `top(family)` has
    the best training accuracy; ties go to the cheaper, then to the label, for determinism."""
    pool = [
        f
        for f in families
        if (model is None or f.model == model) and (mode is None or f.mode == mode)
    ]
    if not pool:
        known = ", ".join(f.label for f in families) or "none"
        raise PolicyError(
            f"{who}: no usable family for model={model!r}, mode={mode!r}; usable: {known}"
        )
    index = np.array([outcomes.config_index(f.config(top(f))) for f in pool])
    accuracy, cost = config_stats(outcomes, index)
    best = min(range(len(pool)), key=lambda i: (-accuracy[i], cost[i], pool[i].label))
    return pool[best]


def _check_rungs(rungs: Sequence[int] | None) -> tuple[int, ...] | None:
    if rungs is None:
        return None
    out = tuple(int(r) for r in rungs)
    if len(out) < 1 or list(out) != sorted(set(out)) or out[0] < 1:
        raise PolicyError(f"rungs must be positive and strictly increasing, got {list(rungs)}")
    return out


def _without_level(problems: pd.DataFrame, use_level: bool) -> pd.DataFrame:
    """The problems a classifier sees: the difficulty level blanked unless it may be used."""
    if use_level or "level" not in problems.columns:
        return problems
    return problems.assign(level=np.nan)


def _train_result(outcomes: OutcomeMatrix, step: Step) -> ReplayResult:
    return replay_decision(outcomes, np.arange(outcomes.n_problems), Decision((step,)))


# -- early exit on a ladder: Dynasor-CoT and DEER ---------------------------------------------


class _LadderExit(Policy):
    """Grow one chain of one model and mode through every recorded rung; stop by the rule.

    Which family (model, mode) runs is the only fitted choice: when not given, the one whose
    largest-budget configuration has the best training accuracy (ties: cheaper).
    """

    def __init__(
        self,
        model: str | None = None,
        mode: str | None = None,
        rungs: Sequence[int] | None = None,
    ) -> None:
        self.model = model
        self.mode = mode
        self.rungs = _check_rungs(rungs)

    def _rule(self, rungs: tuple[int, ...]) -> ExitRule:
        raise NotImplementedError

    def _step(self) -> Step:
        rule = self._rule(self.rungs_)
        return Step(Config(self.model_, self.mode_, rule.cap), exit=rule)

    def _fit(self, outcomes: OutcomeMatrix) -> None:
        families = ladder_families(outcomes)
        if not families:
            raise PolicyError(
                f"{self.name} probes a chain as it grows and needs ladder data (probe answers "
                "of one chain at increasing budgets, from `ponder sweep run` with a ladder); "
                "these outcomes have none, e.g. imported public data"
            )
        family = _pick_family(
            outcomes, families, self.model, self.mode, lambda f: f.budgets[-1], self.name
        )
        rungs = family.budgets
        if self.rungs is not None:
            missing = sorted(set(self.rungs) - set(family.budgets))
            if missing:
                raise PolicyError(
                    f"{self.name}: rungs {missing} are not recorded rungs of {family.label} "
                    f"(recorded: {list(family.budgets)})"
                )
            rungs = self.rungs
        self.model_, self.mode_, self.rungs_ = family.model, family.mode, rungs
        result = _train_result(outcomes, self._step())
        self.train_accuracy_ = result.accuracy
        self.train_cost_ = result.mean_cost

    def decide_batch(self, problems: pd.DataFrame) -> DecisionBatch:
        self.check_fitted()
        return DecisionBatch.same(Decision((self._step(),), reason=self.name), len(problems))

    def get_params(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "mode": self.mode,
            "rungs": None if self.rungs is None else list(self.rungs),
        }

    def get_state(self) -> dict[str, Any]:
        return {
            "model": self.model_,
            "mode": self.mode_,
            "rungs": list(self.rungs_),
            "train_accuracy": self.train_accuracy_,
            "train_cost": self.train_cost_,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.model_ = str(state["model"])
        self.mode_ = str(state["mode"])
        self.rungs_ = tuple(int(r) for r in state["rungs"])
        self.train_accuracy_ = float(state["train_accuracy"])
        self.train_cost_ = float(state["train_cost"])

    def _family_text(self) -> str:
        if not hasattr(self, "rungs_"):
            return "auto"
        return f"{self.model_}|{self.mode_} rungs {','.join(str(r) for r in self.rungs_)}"


@register
class DynasorCoT(_LadderExit):
    """Dynasor-CoT: probe the chain at every rung; stop once the last `window` probe answers
    are one and the same answer (none missing). A chain that ends on its own keeps its answer;
    the largest rung is the hard cap.

    Not honoured (see docs/baselines.md): the paper probes every 32-64 tokens, ponder's rungs
    are the recorded (geometric) budgets; the hedging-word filter cannot fire on ponder's
    probes (they stop at the closing brace), so this is Dynasor's own `skip_wait` variant.
    """

    name = "dynasor_cot"

    def __init__(
        self,
        model: str | None = None,
        mode: str | None = None,
        rungs: Sequence[int] | None = None,
        window: int = _default("dynasor_cot", "window"),
    ) -> None:
        super().__init__(model, mode, rungs)
        if window < 1:
            raise PolicyError(f"window must be at least 1, got {window}")
        self.window = int(window)

    def _rule(self, rungs: tuple[int, ...]) -> ExitRule:
        return ExitRule(rungs, window=self.window)

    def get_params(self) -> dict[str, Any]:
        return {**super().get_params(), "window": self.window}

    def describe(self) -> str:
        return f"dynasor_cot {self._family_text()} window={self.window}"


@register
class DEER(_LadderExit):
    """DEER: at each rung, a trial answer; stop once its per-token probability is at least
    `threshold`.

    Not honoured (see docs/baselines.md): DEER checks at "Wait" transitions, which these models
    do not write, so the rungs are the checkpoints; DEER's confidence is the arithmetic mean of
    the trial answer's token probabilities, ponder's the geometric mean (`min_token_prob`: the
    per-token probabilities of probes are not stored; the geometric mean is never above the
    arithmetic one, so ponder exits no earlier); DEER's test is strict (>), ponder's >=; DEER
    writes a fresh answer after stopping, ponder keeps the trial answer.
    """

    name = "deer"

    def __init__(
        self,
        model: str | None = None,
        mode: str | None = None,
        rungs: Sequence[int] | None = None,
        threshold: float = _default("deer", "threshold"),
    ) -> None:
        super().__init__(model, mode, rungs)
        if not 0 <= threshold <= 1:
            raise PolicyError(f"threshold must be in [0, 1], got {threshold}")
        self.threshold = float(threshold)

    def _rule(self, rungs: tuple[int, ...]) -> ExitRule:
        return ExitRule(rungs, min_token_prob=self.threshold)

    def get_params(self) -> dict[str, Any]:
        return {**super().get_params(), "threshold": self.threshold}

    def describe(self) -> str:
        return f"deer {self._family_text()} threshold={self.threshold:g}"


# -- adaptive sampling: Adaptive-Consistency and ESC ------------------------------------------


class _AdaptiveSampling(Policy):
    """Draw up to `max_samples` samples of one configuration, stop by the rule, majority vote.

    The allowance is the paper's `max_samples`, lowered to what is recorded for every training
    problem (at least 2). The configuration, when not given, is the one of best training
    accuracy (ties: cheaper) among those with at least two recorded samples for every training
    problem, with their answers recorded: the only fitted choice.
    """

    def __init__(self, config: Config | Mapping[str, Any] | None, max_samples: int) -> None:
        if max_samples < 2:
            raise PolicyError(f"max_samples must be at least 2, got {max_samples}")
        self.config = config_or_none(config)
        self.max_samples = int(max_samples)

    def _stop(self) -> StopRule:
        raise NotImplementedError

    def _step(self) -> Step:
        return Step(self.config_, samples=self.max_samples_, stop=self._stop())

    def _fit_rule(self) -> None:
        """Adapt the rule to the allowance (after `max_samples_` is known)."""

    def _fit(self, outcomes: OutcomeMatrix) -> None:
        unknown = np.asarray(outcomes.stats.unknown.any(axis=0))
        candidates = [c for c in usable_configs(outcomes, 2).tolist() if not unknown[c]]
        if self.config is not None:
            c = _config_index(outcomes, self.config, self.name)
            if c not in candidates:
                have = int(outcomes.n_samples[:, c].min())
                raise PolicyError(
                    f"{self.name}: configuration {self.config.label} needs at least 2 recorded "
                    f"samples with answers and costs for every training problem (fewest: {have})"
                )
        elif not candidates:
            most = int(outcomes.n_samples.min(axis=0).max()) if outcomes.n_problems else 0
            raise PolicyError(
                f"{self.name} stops drawing samples once they agree and needs at least 2 "
                "recorded samples (with answers and costs) of one configuration for every "
                f"training problem; the most any configuration has is {most}"
            )
        else:
            index = np.asarray(candidates)
            accuracy, cost = config_stats(outcomes, index)
            best = min(
                range(len(index)),
                key=lambda i: (-accuracy[i], cost[i], outcomes.configs[index[i]].label),
            )
            c = int(index[best])
        self.config_ = outcomes.configs[c]
        self.recorded_samples_ = int(outcomes.n_samples[:, c].min())
        self.max_samples_ = min(self.max_samples, self.recorded_samples_)
        self._fit_rule()
        result = _train_result(outcomes, self._step())
        self.train_accuracy_ = result.accuracy
        self.train_cost_ = result.mean_cost
        self.train_samples_ = float(result.samples.mean())

    def decide_batch(self, problems: pd.DataFrame) -> DecisionBatch:
        self.check_fitted()
        return DecisionBatch.same(Decision((self._step(),), reason=self.name), len(problems))

    def get_params(self) -> dict[str, Any]:
        return {
            "config": None if self.config is None else self.config.to_dict(),
            "max_samples": self.max_samples,
        }

    def get_state(self) -> dict[str, Any]:
        return {
            "config": self.config_.to_dict(),
            "recorded_samples": self.recorded_samples_,
            "max_samples": self.max_samples_,
            "train_accuracy": self.train_accuracy_,
            "train_cost": self.train_cost_,
            "train_samples": self.train_samples_,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.config_ = Config.from_dict(state["config"])
        self.recorded_samples_ = int(state["recorded_samples"])
        self.max_samples_ = int(state["max_samples"])
        self.train_accuracy_ = float(state["train_accuracy"])
        self.train_cost_ = float(state["train_cost"])
        self.train_samples_ = float(state["train_samples"])

    def _config_text(self) -> str:
        config = getattr(self, "config_", self.config)
        allowance = getattr(self, "max_samples_", self.max_samples)
        return f"{'auto' if config is None else config.label} <={allowance}"

    def _lowered(self) -> str:
        """A label when the data forced settings below the paper's (reported, not hidden)."""
        if getattr(self, "max_samples_", self.max_samples) < self.max_samples:
            return f" (lowered to the recorded samples; paper <={self.max_samples})"
        return ""


def _config_index(outcomes: OutcomeMatrix, config: Config, who: str) -> int:
    if config not in outcomes.configs:
        raise PolicyError(f"{who}: configuration {config.label} was not recorded")
    return outcomes.config_index(config)


@register
class AdaptiveConsistencyBeta(_AdaptiveSampling):
    """Adaptive-Consistency's Beta rule: with `a` votes for the leading answer and `b` for the
    runner-up, stop once P(p > 1/2) >= `confidence` for p ~ Beta(a + 1, b + 1).

    At the default 0.95 the earliest stop is after 4 identical answers (3 give 0.9375), so with
    3 recorded samples (the paper draws up to 40) it never stops early and is majority@3 at
    full cost; it is reported as such, not tuned to stop earlier.
    """

    name = "adaptive_consistency_beta"

    def __init__(
        self,
        config: Config | Mapping[str, Any] | None = None,
        max_samples: int = _default("adaptive_consistency_beta", "max_samples"),
        confidence: float = _default("adaptive_consistency_beta", "confidence"),
    ) -> None:
        super().__init__(config, max_samples)
        if not 0.5 <= confidence < 1:
            raise PolicyError(f"confidence must be in [0.5, 1), got {confidence}")
        self.confidence = float(confidence)

    def _stop(self) -> StopRule:
        return StopRule(kind="beta", confidence=self.confidence)

    def get_params(self) -> dict[str, Any]:
        return {**super().get_params(), "confidence": self.confidence}

    def describe(self) -> str:
        return (
            f"adaptive_consistency_beta {self._config_text()} confidence={self.confidence:g}"
            f"{self._lowered()}"
        )


@register
class ESC(_AdaptiveSampling):
    """ESC: samples come in windows; stop after the first window whose answers all agree,
    else draw the whole allowance; the answer is the majority of everything drawn.

    The paper's window of 5 within 40 samples needs at least two full windows to ever save.
    With fewer samples recorded, the window used is the largest one, at most the paper's, that
    fits twice into the allowance, and never below 2 (one sample always agrees with itself):
    `window_ = min(window, max(2, allowance // 2))`. With 3 samples that is 2: stop after two
    agreeing samples, else draw the third. With 2 it is one window, which cannot save anything.
    """

    name = "esc"

    def __init__(
        self,
        config: Config | Mapping[str, Any] | None = None,
        max_samples: int = _default("esc", "max_samples"),
        window: int = _default("esc", "window"),
    ) -> None:
        super().__init__(config, max_samples)
        if window < 1:
            raise PolicyError(f"window must be at least 1, got {window}")
        self.window = int(window)

    def _fit_rule(self) -> None:
        self.window_ = min(self.window, max(2, self.max_samples_ // 2))

    def _stop(self) -> StopRule:
        return StopRule(kind="window", window=self.window_)

    def get_params(self) -> dict[str, Any]:
        return {**super().get_params(), "window": self.window}

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "window": self.window_}

    def set_state(self, state: Mapping[str, Any]) -> None:
        super().set_state(state)
        self.window_ = int(state["window"])

    def describe(self) -> str:
        window = getattr(self, "window_", self.window)
        lowered = self._lowered().replace("paper", f"paper window={self.window}")
        return f"esc {self._config_text()} window={window}{lowered}"


# -- decided before generation: AutoThink and RouteLLM ----------------------------------------


@register
class AutoThinkBudget(Policy):
    """AutoThink's two-level budget: a classifier labels each request LOW or HIGH complexity
    from what is known before generation, and the label sets its thinking budget.

    The classifier here predicts P(the LOW budget answers correctly) from problem features
    (text, and the difficulty level unless `use_level=False`: a generator's level is privileged
    metadata a live request does not carry), fitted on training problems; LOW when
    P >= `threshold` (0.5: the top label wins). The paper's budgets (LOW max 1024, HIGH max
    4096 thinking tokens) are above ponder's ladders, so by default HIGH is the largest
    recorded budget up to 4096 (else the largest) and LOW the largest recorded budget up to
    HIGH x 1024/4096 (AutoThink's 1:4 ratio; the smallest recorded budget when none is that
    low). The family (model, mode), when not given, is the one whose HIGH budget has the best
    training accuracy.
    """

    name = "autothink"

    def __init__(
        self,
        model: str | None = None,
        mode: str | None = None,
        high_budget: int | None = None,
        low_budget: int | None = None,
        threshold: float = _default("autothink", "threshold"),
        use_level: bool = True,
    ) -> None:
        if not 0 <= threshold <= 1:
            raise PolicyError(f"threshold must be in [0, 1], got {threshold}")
        if high_budget is not None and low_budget is not None and low_budget >= high_budget:
            raise PolicyError(f"low_budget {low_budget} must be below high_budget {high_budget}")
        self.model = model
        self.mode = mode
        self.high_budget = high_budget
        self.low_budget = low_budget
        self.threshold = float(threshold)
        self.use_level = bool(use_level)

    def _high(self, family: BudgetFamily) -> int:
        if self.high_budget is not None:
            return self.high_budget
        paper = int(_default("autothink", "high_budget"))
        # The largest budget within the paper's HIGH that leaves a lower one to choose; data
        # recorded only above it (MATH-500: 4096-16384) takes its second budget as HIGH.
        fits = [b for b in family.budgets[1:] if b <= paper]
        return fits[-1] if fits else family.budgets[min(1, len(family.budgets) - 1)]

    def _low(self, family: BudgetFamily, high: int) -> int:
        if self.low_budget is not None:
            return self.low_budget
        ratio = _default("autothink", "low_budget") / _default("autothink", "high_budget")
        below = [b for b in family.budgets if b < high]
        fits = [b for b in below if b <= high * ratio]
        return fits[-1] if fits else below[0]

    def _fit(self, outcomes: OutcomeMatrix) -> None:
        families = budget_families(outcomes)
        if not families:
            raise PolicyError(
                "autothink chooses between two thinking budgets and needs one model and mode "
                "recorded at two or more token budgets for every training problem"
            )
        usable = [
            f
            for f in families
            if (self.high_budget is None or self.high_budget in f.budgets)
            and (self.low_budget is None or self.low_budget in f.budgets)
            and (self.low_budget is None or self.low_budget < self._high(f))
            and any(b < self._high(f) for b in f.budgets)
        ]
        if not usable:
            raise PolicyError(
                f"autothink: no family records both budgets (low={self.low_budget}, "
                f"high={self.high_budget}); recorded: "
                + "; ".join(f"{f.label} {list(f.budgets)}" for f in families)
            )
        family = _pick_family(outcomes, usable, self.model, self.mode, self._high, self.name)
        high = self._high(family)
        low = self._low(family, high)
        self.low_config_, self.high_config_ = family.config(low), family.config(high)
        view = dataclasses.replace(
            outcomes, problems=_without_level(outcomes.problems, self.use_level)
        )
        self.predictor_ = fit_predictor(view, [self.low_config_])
        self.train_low_share_ = float(self._low_mask(outcomes.problems).mean())

    def _low_mask(self, problems: pd.DataFrame) -> np.ndarray:
        view = _without_level(problems, self.use_level)
        p = self.predictor_.predict_proba(view)[:, 0]
        mask: np.ndarray = p >= self.threshold
        return mask

    def decide_batch(self, problems: pd.DataFrame) -> DecisionBatch:
        self.check_fitted()
        choice = np.where(self._low_mask(problems), 0, 1).astype(np.int64)
        return choice_batch([self.low_config_, self.high_config_], choice, 1, self.name)

    def get_params(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "mode": self.mode,
            "high_budget": self.high_budget,
            "low_budget": self.low_budget,
            "threshold": self.threshold,
            "use_level": self.use_level,
        }

    def get_state(self) -> dict[str, Any]:
        return {
            "low": self.low_config_.to_dict(),
            "high": self.high_config_.to_dict(),
            "predictor": self.predictor_.get_state(),
            "train_low_share": self.train_low_share_,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.low_config_ = Config.from_dict(state["low"])
        self.high_config_ = Config.from_dict(state["high"])
        self.predictor_ = CorrectnessPredictor.from_state(state["predictor"])
        if self.predictor_.configs_ != (self.low_config_,):
            raise ValueError("the classifier does not predict for the low budget")
        self.train_low_share_ = float(state["train_low_share"])

    def describe(self) -> str:
        if hasattr(self, "low_config_"):
            low, high = self.low_config_, self.high_config_
            family = f"{low.model}|{low.mode} low={low.budget} high={high.budget}"
        else:
            family = f"auto low={self.low_budget or 'auto'} high={self.high_budget or 'auto'}"
        level = "" if self.use_level else " no-level"
        return f"autothink {family} threshold={self.threshold:g}{level}"


STRONG_WINS_MODE = "strong-wins"  # the label's pseudo-configuration in the win-rate predictor


@register
class RouteLLMThreshold(Policy):
    """RouteLLM's threshold router: send a request to the strong model when its predicted win
    rate is at least a threshold, calibrated so that a share `strong_share` of calls goes there.

    The win rate is P(strong answers correctly and weak does not) - a tie counts as a weak win,
    as in RouteLLM - predicted from problem features (text, and the level unless
    `use_level=False`) by a classifier fitted on training problems; the threshold is the
    (1 - strong_share) quantile of its predictions on those problems (ties at the threshold go
    to strong, as RouteLLM routes on >=; so when the predictor cannot tell the training
    problems apart, e.g. strong never wins there, every call goes to strong). Defaults: strong
    is the most accurate configuration (ties: cheaper); weak is the same mode and budget on
    another model (the cheapest such; else the cheapest configuration of another model).
    """

    name = "routellm_threshold"

    def __init__(
        self,
        weak: Config | Mapping[str, Any] | None = None,
        strong: Config | Mapping[str, Any] | None = None,
        strong_share: float = _default("routellm_threshold", "strong_share"),
        use_level: bool = True,
    ) -> None:
        if not 0 <= strong_share <= 1:
            raise PolicyError(f"strong_share must be in [0, 1], got {strong_share}")
        self.weak = config_or_none(weak)
        self.strong = config_or_none(strong)
        self.strong_share = float(strong_share)
        self.use_level = bool(use_level)
        if self.weak is not None and self.weak == self.strong:
            raise PolicyError(f"weak and strong are the same configuration {self.weak.label}")

    def _pair(self, outcomes: OutcomeMatrix) -> tuple[Config, Config]:
        models = sorted({c.model for c in outcomes.configs})
        if len(models) < 2:
            raise PolicyError(
                f"routellm_threshold routes between a weak and a strong model and needs two "
                f"models recorded; this data has one ({', '.join(models)})"
            )
        index = usable_configs(outcomes)
        for given in (self.weak, self.strong):
            if given is not None and _config_index(outcomes, given, self.name) not in index:
                raise PolicyError(
                    f"{self.name}: configuration {given.label} is not recorded (with costs) for "
                    "every training problem"
                )
        accuracy, cost = config_stats(outcomes, index)
        stats = {outcomes.configs[c]: (accuracy[i], cost[i]) for i, c in enumerate(index)}
        strong = self.strong
        if strong is None:
            strong = min(stats, key=lambda c: (-stats[c][0], stats[c][1], c.label))
        weak = self.weak
        if weak is None:
            others = [c for c in stats if c.model != strong.model]
            if not others:
                raise PolicyError(
                    f"{self.name}: no configuration of a model other than {strong.model} is "
                    "recorded for every training problem"
                )
            twins = [c for c in others if (c.mode, c.budget) == (strong.mode, strong.budget)]
            weak = min(twins or others, key=lambda c: (stats[c][1], stats[c][0], c.label))
        if weak == strong:
            raise PolicyError(f"weak and strong are the same configuration {weak.label}")
        return weak, strong

    def _fit(self, outcomes: OutcomeMatrix) -> None:
        weak, strong = self._pair(outcomes)
        s, w = outcomes.config_index(strong), outcomes.config_index(weak)
        strong_ok, weak_ok = outcomes.correct[:, s, :], outcomes.correct[:, w, :]
        # Samples are paired by recorded slot: each pair is one observed strong-vs-weak duel.
        both = ~np.isnan(strong_ok) & ~np.isnan(weak_ok)
        wins = np.where(both, ((strong_ok == 1) & (weak_ok == 0)).astype(float), np.nan)
        label = Config(strong.model, STRONG_WINS_MODE, None)
        zeros = np.where(both, 0.0, np.nan)
        duels = OutcomeMatrix(
            problems=_without_level(outcomes.problems, self.use_level),
            configs=(label,),
            correct=wins[:, None, :],
            cost=zeros[:, None, :],
            tokens=zeros[:, None, :].copy(),
            answer=np.zeros(wins[:, None, :].shape, dtype=np.int32),
            unit=outcomes.unit,
        )
        self.predictor_ = fit_predictor(duels, [label])
        self.weak_, self.strong_ = weak, strong
        rate = self.win_rate(outcomes.problems)
        self.threshold_ = float(np.quantile(rate, 1 - self.strong_share))
        self.train_strong_share_ = float((rate >= self.threshold_).mean())

    def win_rate(self, problems: pd.DataFrame) -> np.ndarray:
        """Predicted P(strong wins) per problem."""
        rate: np.ndarray = self.predictor_.predict_proba(_without_level(problems, self.use_level))[
            :, 0
        ]
        return rate

    def decide_batch(self, problems: pd.DataFrame) -> DecisionBatch:
        self.check_fitted()
        choice = (self.win_rate(problems) >= self.threshold_).astype(np.int64)
        return choice_batch([self.weak_, self.strong_], choice, 1, self.name)

    def get_params(self) -> dict[str, Any]:
        return {
            "weak": None if self.weak is None else self.weak.to_dict(),
            "strong": None if self.strong is None else self.strong.to_dict(),
            "strong_share": self.strong_share,
            "use_level": self.use_level,
        }

    def get_state(self) -> dict[str, Any]:
        return {
            "weak": self.weak_.to_dict(),
            "strong": self.strong_.to_dict(),
            "threshold": self.threshold_,
            "predictor": self.predictor_.get_state(),
            "train_strong_share": self.train_strong_share_,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.weak_ = Config.from_dict(state["weak"])
        self.strong_ = Config.from_dict(state["strong"])
        self.threshold_ = float(state["threshold"])
        self.predictor_ = CorrectnessPredictor.from_state(state["predictor"])
        self.train_strong_share_ = float(state["train_strong_share"])

    def describe(self) -> str:
        weak = getattr(self, "weak_", self.weak)
        strong = getattr(self, "strong_", self.strong)
        level = "" if self.use_level else " no-level"
        return (
            f"routellm_threshold weak={'auto' if weak is None else weak.label} "
            f"strong={'auto' if strong is None else strong.label} "
            f"strong_share={self.strong_share:g}{level}"
        )


PUBLISHED_BASELINES: tuple[type[Policy], ...] = (
    DynasorCoT,
    DEER,
    AdaptiveConsistencyBeta,
    ESC,
    AutoThinkBudget,
    RouteLLMThreshold,
)
