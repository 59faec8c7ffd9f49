"""The outcome matrix as dense arrays: problems x configurations x samples.

Policies are fitted and replayed on these arrays, so evaluating a million outcomes is a
handful of numpy operations rather than a Python loop per row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ponder.decision import Config
from ponder.errors import InputError
from ponder.outcomes.cost import CostModel

PROBLEM_COLUMNS = ("dataset", "problem_id", "level", "subject", "text")
NO_ANSWER = -1  # the sample is known to have produced no answer
UNKNOWN_ANSWER = -2  # what (or whether) the sample answered was not recorded
NO_CHAIN = -1  # the sample is not a rung of a recorded chain


@dataclass(frozen=True)
class Signals:
    """What a live sweep saw during generation, as arrays indexed like the outcome matrix.

    For a ladder, the rungs of one chain are the configurations of one model and mode at
    increasing budgets, and the same sample slot in each is the same chain (`chain` codes say
    so; replay checks it). `prob` is the forced answer's probability, `entropy` the mean entropy
    of the last thinking tokens, `natural` 1 where the chain had ended on its own before the
    rung, `probe_cost` what the forced answer alone cost (in the matrix's unit): stopping at a
    rung costs its sample cost plus the probe cost of every earlier rung the plan probed.
    `token_prob` is the per-token (geometric mean) probability of the forced answer, DEER's
    kind of confidence. NaN (or NO_CHAIN) where not recorded, e.g. for imported public data.
    """

    prob: np.ndarray
    entropy: np.ndarray
    natural: np.ndarray
    probe_cost: np.ndarray
    chain: np.ndarray
    token_prob: np.ndarray | None = None

    def take(self, rows: np.ndarray | slice, configs: Sequence[int] | slice) -> Signals:
        def pick(a: np.ndarray) -> np.ndarray:
            out: np.ndarray = a[rows][:, configs]
            return out

        return Signals(
            pick(self.prob),
            pick(self.entropy),
            pick(self.natural),
            pick(self.probe_cost),
            pick(self.chain),
            None if self.token_prob is None else pick(self.token_prob),
        )

    @property
    def has_chains(self) -> bool:
        return bool((self.chain != NO_CHAIN).any())


@dataclass(frozen=True)
class CellStats:
    """Sums over every recorded sample of each [problem, config] cell.

    One-sample decisions are scored by these expectations, and fits compare configurations
    by them, so they cover every recorded sample even when the arrays keep only the first
    few in recorded order (`OutcomeMatrix.head`). `cost` is NaN where a recorded sample's cost
    is unknown; `unknown` says a recorded sample did not say what it answered.
    """

    recorded: np.ndarray  # int64: recorded samples
    correct: np.ndarray  # float64: sum of `correct` over them
    hits: np.ndarray  # int64: how many have `correct` 1 (a share may also be recorded)
    cost: np.ndarray  # float64: sum of their costs
    answered: np.ndarray  # int64: how many gave an answer
    unknown: np.ndarray  # bool: some did not record what (or whether) they answered

    @classmethod
    def of(cls, correct: np.ndarray, cost: np.ndarray, answer: np.ndarray) -> CellStats:
        """Reduce [..., sample] arrays over their last axis (each cell on its own, so a block
        of problems gives the same figures as the whole matrix)."""
        recorded = ~np.isnan(correct)
        return cls(
            recorded=recorded.sum(axis=-1),
            correct=np.where(recorded, correct, 0.0).sum(axis=-1),
            hits=(correct == 1.0).sum(axis=-1),
            cost=np.where(recorded, cost, 0.0).sum(axis=-1),
            answered=(recorded & (answer >= 0)).sum(axis=-1),
            unknown=(recorded & (answer == UNKNOWN_ANSWER)).any(axis=-1),
        )

    def take(self, rows: np.ndarray | slice, configs: Sequence[int] | slice) -> CellStats:
        def pick(a: np.ndarray) -> np.ndarray:
            out: np.ndarray = a[rows][:, configs]
            return out

        return CellStats(
            pick(self.recorded),
            pick(self.correct),
            pick(self.hits),
            pick(self.cost),
            pick(self.answered),
            pick(self.unknown),
        )

    def mean_correct(self) -> np.ndarray:
        """Share of recorded samples that are correct (NaN: none recorded)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            mean: np.ndarray = self.correct / self.recorded
        return mean

    def mean_cost(self) -> np.ndarray:
        """Mean cost of a recorded sample (NaN: none recorded, or a cost unknown)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            mean: np.ndarray = self.cost / self.recorded
        return mean

    def pooled(self, configs: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Accuracy and cost per sample of each configuration, pooled over all problems'
        recorded samples (NaN where none)."""
        index = np.asarray(configs, dtype=np.int64)
        count = self.recorded[:, index].sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            accuracy: np.ndarray = self.correct[:, index].sum(axis=0) / count
            cost: np.ndarray = self.cost[:, index].sum(axis=0) / count
        return accuracy, cost


@dataclass(frozen=True)
class OutcomeMatrix:
    """Recorded samples as arrays indexed [problem, config, sample].

    `correct`, `cost` and `tokens` are NaN where nothing was recorded; `answer` holds integer
    codes of normalized answers (NO_ANSWER -1: known to have no answer; UNKNOWN_ANSWER -2: the
    answer was not recorded, e.g. a user's CSV with only a `correct` column). Correctness
    always comes from `correct`; answer codes only serve votes and escalation rules. `problems`
    has one row per problem with what is known before generation (dataset, id, level, subject,
    text).

    The sample axis may keep only the first samples of each cell in recorded order
    (`head`): sequential replays draw from those, while `stats` (computed from the arrays
    when not given) always covers every recorded sample.
    """

    problems: pd.DataFrame
    configs: tuple[Config, ...]
    correct: np.ndarray
    cost: np.ndarray
    tokens: np.ndarray
    answer: np.ndarray
    unit: str = "tokens"
    signals: Signals | None = None
    cell_stats: CellStats | None = None  # None: computed from the arrays when first needed

    @property
    def stats(self) -> CellStats:
        """Sums over every recorded sample of each cell (`CellStats`)."""
        if self.cell_stats is None:
            stats = CellStats.of(self.correct, self.cost, self.answer)
            object.__setattr__(self, "cell_stats", stats)
            return stats
        return self.cell_stats

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        problems: pd.DataFrame | None = None,
        cost_model: CostModel | None = None,
        normalize: Callable[[str], str] | None = None,
    ) -> OutcomeMatrix:
        """Build from an outcome frame (`Store.outcomes_frame()`), samples only.

        Aggregated rows (n_runs > 1) cannot be replayed sample by sample and are left out; a
        frame with nothing else is an error. `problems` (from `Store.problems_frame()`) adds
        problem text for text features.
        """
        cost_model = cost_model or CostModel()
        if frame.empty:
            raise InputError("no outcomes to build a matrix from")
        samples = frame[frame["n_runs"] == 1] if "n_runs" in frame.columns else frame
        if samples.empty:
            raise InputError("only aggregated rows (n_runs > 1): policies need per-sample outcomes")
        samples = samples.reset_index(drop=True)
        keys = pd.MultiIndex.from_frame(samples[["dataset", "problem_id"]].astype(str))
        problem_codes, problem_index = pd.factorize(keys, sort=True)
        budget = samples["budget"].to_numpy(dtype=float)
        budget_key = np.where(np.isnan(budget), -1, budget).astype(np.int64)
        config_frame = pd.DataFrame(
            {
                "model": samples["model"].astype(str),
                "mode": samples["mode"].astype(str),
                "budget": budget_key,
            }
        )
        config_keys = pd.MultiIndex.from_frame(config_frame)
        config_codes, config_index = pd.factorize(config_keys, sort=True)
        configs = tuple(
            Config(m, o, None if b < 0 else int(b)) for m, o, b in config_index.tolist()
        )
        # Sample slot: the order of sample_idx within (problem, config).
        order = np.lexsort((samples["sample_idx"].to_numpy(), config_codes, problem_codes))
        p_sorted, c_sorted = problem_codes[order], config_codes[order]
        new_group = np.ones(len(order), dtype=bool)
        new_group[1:] = (p_sorted[1:] != p_sorted[:-1]) | (c_sorted[1:] != c_sorted[:-1])
        group_start = np.maximum.accumulate(np.where(new_group, np.arange(len(order)), 0))
        slot_sorted = np.arange(len(order)) - group_start
        slot = np.empty(len(order), dtype=np.int64)
        slot[order] = slot_sorted
        n_p, n_c, n_s = len(problem_index), len(configs), int(slot.max()) + 1
        shape = (n_p, n_c, n_s)
        correct = np.full(shape, np.nan)
        cost = np.full(shape, np.nan)
        tokens = np.full(shape, np.nan)
        answer = np.full(shape, -1, dtype=np.int32)
        where = (problem_codes, config_codes, slot)
        correct[where] = samples["correct"].to_numpy(dtype=float)
        cost[where] = cost_model.sample_costs(samples)
        tokens[where] = samples["output_tokens"].to_numpy(dtype=float)
        answer[where] = _answer_codes(samples, normalize)
        info = _problem_info(problem_index, samples, problems)
        signals = _signals(samples, where, shape, cost_model)
        return cls(
            problems=info,
            configs=configs,
            correct=correct,
            cost=cost,
            tokens=tokens,
            answer=answer,
            unit=cost_model.unit,
            signals=signals,
        )

    # -- views -------------------------------------------------------------------------------

    @property
    def n_problems(self) -> int:
        return int(self.correct.shape[0])

    @property
    def n_samples(self) -> np.ndarray:
        """Recorded samples per [problem, config] (all of them, kept in the arrays or not)."""
        return self.stats.recorded

    @property
    def n_slots(self) -> int:
        """Sample slots the arrays keep per cell."""
        return int(self.correct.shape[2])

    @property
    def is_cut(self) -> bool:
        """Whether some cell has more recorded samples than the arrays keep."""
        return bool(self.stats.recorded.size) and int(self.stats.recorded.max()) > self.n_slots

    def head(self, slots: int) -> OutcomeMatrix:
        """The first `slots` samples of each cell in recorded order, with the statistics of
        all of them: what sequential replays of at most `slots` samples a cell need, in memory
        that no longer grows with the samples. A matrix with ladder chains is kept whole (its
        chains are its sample slots)."""
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        if slots >= self.n_slots or (self.signals is not None and self.signals.has_chains):
            return self

        def cut(a: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(a[:, :, :slots])

        signals = self.signals
        if signals is not None:
            signals = Signals(
                cut(signals.prob),
                cut(signals.entropy),
                cut(signals.natural),
                cut(signals.probe_cost),
                cut(signals.chain),
                None if signals.token_prob is None else cut(signals.token_prob),
            )
        return OutcomeMatrix(
            problems=self.problems,
            configs=self.configs,
            correct=cut(self.correct),
            cost=cut(self.cost),
            tokens=cut(self.tokens),
            answer=cut(self.answer),
            unit=self.unit,
            signals=signals,
            cell_stats=self.stats,
        )

    def config_index(self, config: Config) -> int:
        try:
            return self.configs.index(config)
        except ValueError:
            raise InputError(
                f"configuration {config.label} was not recorded; recorded: "
                f"{', '.join(c.label for c in self.configs[:8])}"
                + (" ..." if len(self.configs) > 8 else "")
            ) from None

    def subset(self, rows: np.ndarray | Sequence[int]) -> OutcomeMatrix:
        """The same matrix restricted to some problems (for folds)."""
        index = np.asarray(rows, dtype=np.int64)
        return OutcomeMatrix(
            problems=self.problems.iloc[index].reset_index(drop=True),
            configs=self.configs,
            correct=self.correct[index],
            cost=self.cost[index],
            tokens=self.tokens[index],
            answer=self.answer[index],
            unit=self.unit,
            signals=None if self.signals is None else self.signals.take(index, slice(None)),
            cell_stats=self.stats.take(index, slice(None)),
        )

    def select_configs(self, configs: Sequence[Config]) -> OutcomeMatrix:
        """The same problems with only some configurations (in the given order)."""
        index = [self.config_index(c) for c in configs]
        return OutcomeMatrix(
            problems=self.problems,
            configs=tuple(configs),
            correct=self.correct[:, index],
            cost=self.cost[:, index],
            tokens=self.tokens[:, index],
            answer=self.answer[:, index],
            unit=self.unit,
            signals=None if self.signals is None else self.signals.take(slice(None), index),
            cell_stats=self.stats.take(slice(None), index),
        )

    def complete_configs(self, samples: int = 1) -> list[Config]:
        """Configurations with at least `samples` recorded samples for every problem.

        Only those can be chosen for any request: a configuration recorded for some problems
        only would be chosen for requests it may never have been run on.
        """
        have = self.n_samples.min(axis=0) if self.n_problems else np.zeros(len(self.configs))
        return [c for c, n in zip(self.configs, have, strict=True) if n >= samples]

    def select_datasets(self, datasets: Sequence[str]) -> OutcomeMatrix:
        mask = self.problems["dataset"].isin(list(datasets)).to_numpy()
        if not mask.any():
            raise InputError(f"no problems for datasets {list(datasets)}")
        return self.subset(np.flatnonzero(mask))

    def mean_correct(self) -> np.ndarray:
        """Per [problem, config] share of recorded samples that are correct (NaN: none)."""
        return self.stats.mean_correct()

    def fingerprint(self) -> str:
        """sha256 over problems, configs and outcomes: which data a policy was fitted on."""
        digest = hashlib.sha256()
        for key in self.problems["dataset"].astype(str) + "/" + self.problems["problem_id"]:
            digest.update(key.encode())
        for config in self.configs:
            digest.update(config.label.encode())
        digest.update(np.nan_to_num(self.correct, nan=-1.0).tobytes())
        digest.update(np.nan_to_num(self.cost, nan=-1.0).tobytes())
        if self.signals is not None:
            digest.update(np.nan_to_num(self.signals.prob, nan=-1.0).tobytes())
            digest.update(self.signals.chain.tobytes())
        if self.is_cut:  # the samples beyond the kept slots count through their sums
            digest.update(self.stats.recorded.tobytes())
            digest.update(np.nan_to_num(self.stats.correct, nan=-1.0).tobytes())
            digest.update(np.nan_to_num(self.stats.cost, nan=-1.0).tobytes())
        return digest.hexdigest()


def _signals(
    samples: pd.DataFrame,
    where: tuple[np.ndarray, np.ndarray, np.ndarray],
    shape: tuple[int, int, int],
    cost_model: CostModel,
) -> Signals | None:
    """The live-sweep signals of the samples, or None when no row has a chain."""
    if "chain_id" not in samples.columns or samples["chain_id"].isna().all():
        return None
    n = len(samples)

    def column(name: str) -> np.ndarray:
        if name not in samples.columns:
            return np.full(n, np.nan)
        values: np.ndarray = pd.to_numeric(samples[name], errors="coerce").to_numpy(dtype=float)
        return values

    chain_codes, _ = pd.factorize(samples["chain_id"], use_na_sentinel=True)
    probe_rows = samples.assign(
        output_tokens=column("answer_tokens"),
        prompt_tokens=0.0 if "prompt_tokens" in samples.columns else np.nan,
    )
    answer_prob, answer_tokens = column("answer_prob"), column("answer_tokens")
    with np.errstate(invalid="ignore", divide="ignore"):
        token_prob = np.where(answer_tokens > 0, answer_prob ** (1.0 / answer_tokens), np.nan)
    arrays = {}
    for name, values in (
        ("prob", answer_prob),
        ("token_prob", token_prob),
        ("entropy", column("entropy_tail")),
        ("natural", column("natural")),
        ("probe_cost", cost_model.sample_costs(probe_rows)),
    ):
        full = np.full(shape, np.nan)
        full[where] = values
        arrays[name] = full
    # A rung reached after the chain ended on its own took no probe.
    arrays["probe_cost"] = np.where(arrays["natural"] == 1, 0.0, arrays["probe_cost"])
    chain = np.full(shape, NO_CHAIN, dtype=np.int64)
    chain[where] = np.where(chain_codes < 0, NO_CHAIN, chain_codes)
    return Signals(chain=chain, **arrays)


def _answer_codes(samples: pd.DataFrame, normalize: Callable[[str], str] | None) -> np.ndarray:
    """Integer code per sample of its normalized answer, NO_ANSWER or UNKNOWN_ANSWER.

    A sample without extracted text is NO_ANSWER only when `answered` says so (0); one that
    answered without recorded text gets a code of its own (it agrees with no other sample);
    with no answer information at all it is UNKNOWN_ANSWER, never silently "no answer".
    """
    raw = samples["extracted_answer"] if "extracted_answer" in samples.columns else None
    n = len(samples)
    answered = (
        samples["answered"].to_numpy(dtype=float)
        if "answered" in samples.columns
        else np.full(n, np.nan)
    )
    if raw is None:
        text = pd.Series([None] * n, dtype=object)
    else:
        present = raw.notna().to_numpy() & ~(answered == 0)
        text = raw.astype(object).where(present, None)
    if normalize is not None:
        text = text.map(lambda v: normalize(str(v)) if v is not None else None)
    text = text.where(text.notna() & (text.astype(str) != ""), None)
    codes, _ = pd.factorize(text, use_na_sentinel=True)
    out = codes.astype(np.int32)
    blank = out < 0
    # Extracted text that normalizes to nothing is a known non-answer.
    extracted = raw.notna().to_numpy() if raw is not None else np.zeros(n, dtype=bool)
    known_none = (answered == 0) | extracted
    out[blank & known_none] = NO_ANSWER
    # Answered, but the text was not recorded: an answer of its own that agrees with no other.
    lone = blank & ~known_none & (answered > 0)
    out[lone] = out.max(initial=-1) + 1 + np.arange(int(lone.sum()), dtype=np.int32)
    out[blank & ~known_none & ~lone] = UNKNOWN_ANSWER
    return out


def _problem_info(
    index: pd.Index, samples: pd.DataFrame, problems: pd.DataFrame | None
) -> pd.DataFrame:
    info = pd.DataFrame(index.tolist(), columns=["dataset", "problem_id"])
    per_problem = samples.drop_duplicates(["dataset", "problem_id"]).set_index(
        ["dataset", "problem_id"]
    )
    for column in ("level", "subject"):
        if column in per_problem.columns:
            info[column] = per_problem[column].reindex(index).to_numpy()
        else:
            info[column] = None
    info["text"] = None
    if problems is not None and len(problems):
        known = problems.astype({"dataset": str, "problem_id": str}).set_index(
            ["dataset", "problem_id"]
        )
        if "text" in known.columns:
            info["text"] = known["text"].reindex(index).to_numpy()
    info["level"] = pd.to_numeric(info["level"], errors="coerce")
    return info[list(PROBLEM_COLUMNS)]
