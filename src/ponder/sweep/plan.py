"""A spec expanded into work items with stable keys, their runs and their problems.

One work item is one (model, problem, mode, budget strategy, sampling entry, sample index):
a whole probe ladder is ONE item (one chain, every rung), a forced or native budget is one
item per budget, no-think is one item. Its key is the sha256 of the canonical JSON of those
fields plus the sweep name and the answer reserve, so the same spec gives the same keys in any
process, on any machine, in any order: that is what resume skips by.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pandas as pd

from ponder.backends.base import Message
from ponder.budgets.ladder import ANSWER_CUE, DIRECT_CUE
from ponder.budgets.prompts import NO_THINK_INSTRUCTION, THINK_INSTRUCTION, prompt_version
from ponder.errors import InputError
from ponder.sweep.spec import ModelSpec, ProblemSource, SamplingSpec, Strategy, SweepSpec
from ponder.types import GREEDY_SUFFIX, PROBLEM_FIELDS, BudgetKind, Run


def canonical_digest(data: Any) -> str:
    """sha256 hex of the canonical JSON of ``data`` (sorted keys, no spaces)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ProblemRef:
    dataset: str
    problem_id: str
    text: str
    gold: str
    level: int | None = None
    # Turns before the question (system prompt, earlier exchanges): a served conversation that
    # `ponder serve --explore` re-runs as it was asked. Sweeps ask the question alone.
    context: tuple[Message, ...] = ()


@dataclass(frozen=True)
class WorkItem:
    sweep: str
    model: ModelSpec
    problem: ProblemRef
    mode: str
    strategy: Strategy
    sampling_index: int
    sampling: SamplingSpec
    sample_idx: int
    seed: int
    reserve: int
    mode_label: str
    run_id: str
    key: str

    @property
    def chain_id(self) -> str:
        """Shared by every rung row of this item's chain (derived from the key)."""
        return self.key[:32]


@dataclass(frozen=True)
class SweepPlan:
    spec: SweepSpec
    problems: pd.DataFrame
    items: tuple[WorkItem, ...]
    runs: tuple[Run, ...]


def mode_label(mode: str, sampling: SamplingSpec, spec: SweepSpec) -> str:
    """The recorded mode: greedy chains are their own configuration (``think-greedy``).

    Curves and policies group rows by (model, mode, budget): a greedy chain and sampled
    chains mixed in one cell would blur two decoding rules into one accuracy, and a greedy
    "sample" repeated would not be an independent draw. When several sampled entries exist,
    each gets its temperature (and top_p) in the label for the same reason.
    """
    if sampling.greedy:
        return f"{mode}{GREEDY_SUFFIX}"
    sampled = [s for s in spec.sampling if not s.greedy]
    if len(sampled) <= 1:
        return mode
    label = f"{mode}-t{sampling.temperature:g}"
    if len({s.temperature for s in sampled}) < len(sampled):
        label += f"-p{sampling.top_p:g}"
    return label


def budget_kind(strategy: Strategy) -> BudgetKind:
    """Ladder and forced rungs are forced (the answer is never cut); native thinking budgets
    also end the thinking and leave the answer its own room; no-think has no budget."""
    return "none" if strategy.kind == "none" else "forced"


def sample_seed(spec: SweepSpec, problem: ProblemRef, sampling: SamplingSpec, sample: int) -> int:
    """Per-sample seed from (sweep seed, problem, sampling entry, sample index)."""
    digest = canonical_digest(
        {
            "seed": spec.seed,
            "dataset": problem.dataset,
            "problem_id": problem.problem_id,
            "sampling": sampling.describe(),
            "sample_idx": sample,
        }
    )
    return int(digest[:8], 16) & 0x7FFFFFFF


def run_id_for(
    spec: SweepSpec, model: ModelSpec, label: str, strategy: Strategy, sampling: SamplingSpec
) -> str:
    """One run per (sweep, model, mode label, strategy, sampling entry); the short digest
    keeps a changed ladder or reserve from sharing a run (and row keys) with the old one."""
    settings = {
        "kind": strategy.kind,
        "rungs": list(strategy.budgets) if strategy.kind == "ladder" else [],
        "reserve": spec.reserve,
        "sampling": sampling.describe(),
        "prompts": prompt_version(),
    }
    return f"{spec.name}/{model.name}/{label}/{strategy.kind}-{canonical_digest(settings)[:8]}"


def item_key(
    spec: SweepSpec,
    model: ModelSpec,
    problem: ProblemRef,
    mode: str,
    strategy: Strategy,
    sampling: SamplingSpec,
    sample: int,
) -> str:
    return canonical_digest(
        {
            "sweep": spec.name,
            "model": model.name,
            "dataset": problem.dataset,
            "problem_id": problem.problem_id,
            "mode": mode,
            "strategy": strategy.describe(),
            "sampling": sampling.describe(),
            "sample_idx": sample,
            "reserve": spec.reserve,
            "prompts": prompt_version(),
        }
    )


class _Leveled(Protocol):
    @property
    def level(self) -> int | None: ...


LeveledT = TypeVar("LeveledT", bound=_Leveled)


def interleave_levels(problems: Sequence[LeveledT]) -> list[LeveledT]:
    """Problems round-robin over difficulty levels (L1, L2, ..., L1, L2, ...), each level in
    its own order, so a sweep stopped part-way has covered every level alike."""
    by_level: dict[int | None, list[LeveledT]] = {}
    for problem in problems:
        by_level.setdefault(problem.level, []).append(problem)
    queues = list(by_level.values())
    out: list[LeveledT] = []
    for i in range(max((len(q) for q in queues), default=0)):
        out.extend(q[i] for q in queues if i < len(q))
    return out


def build_plan(spec: SweepSpec) -> SweepPlan:
    """Load the problems and expand the spec into work items (no engine is touched).

    Order: sampling entry, sample index, problem (round-robin over levels), model, mode,
    strategy, so an interrupted sweep has covered every problem at its first samples before
    the later ones, and every level alike.
    """
    problems = load_problems(spec)
    refs = [
        ProblemRef(
            dataset=str(r["dataset"]),
            problem_id=str(r["problem_id"]),
            text=str(r["text"]),
            gold=str(r["gold"]),
            level=None if r["level"] is None else int(r["level"]),
        )
        for r in problems.to_dict("records")
    ]
    refs = interleave_levels(refs)
    items: list[WorkItem] = []
    runs: dict[str, Run] = {}
    for s_index, sampling in enumerate(spec.sampling):
        for sample in range(sampling.samples):
            for problem in refs:
                seed = sample_seed(spec, problem, sampling, sample)
                for model in spec.models:
                    for mode in spec.modes:
                        label = mode_label(mode, sampling, spec)
                        for strategy in spec.strategies_for(mode):
                            run_id = run_id_for(spec, model, label, strategy, sampling)
                            if run_id not in runs:
                                runs[run_id] = _run(
                                    spec, model, mode, label, strategy, sampling, run_id
                                )
                            items.append(
                                WorkItem(
                                    sweep=spec.name,
                                    model=model,
                                    problem=problem,
                                    mode=mode,
                                    strategy=strategy,
                                    sampling_index=s_index,
                                    sampling=sampling,
                                    sample_idx=sample,
                                    seed=seed,
                                    reserve=spec.reserve,
                                    mode_label=label,
                                    run_id=run_id,
                                    key=item_key(
                                        spec, model, problem, mode, strategy, sampling, sample
                                    ),
                                )
                            )
    return SweepPlan(spec=spec, problems=problems, items=tuple(items), runs=tuple(runs.values()))


def _run(
    spec: SweepSpec,
    model: ModelSpec,
    mode: str,
    label: str,
    strategy: Strategy,
    sampling: SamplingSpec,
    run_id: str,
) -> Run:
    settings: dict[str, Any] = {
        "sweep": spec.name,
        "mode": mode,
        "mode_label": label,
        "strategy": strategy.kind,
        "reserve": spec.reserve,
        "budget_is_total": spec.budget_is_total,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "samples": sampling.samples,
        "seed": spec.seed,
        "prompts": {
            "version": prompt_version(),
            "think": THINK_INSTRUCTION,
            "no_think": NO_THINK_INSTRUCTION,
            "answer_cue": ANSWER_CUE,
            "direct_cue": DIRECT_CUE,
        },
    }
    if strategy.kind == "ladder":
        settings["rungs"] = list(strategy.budgets)
    return Run(
        run_id=run_id,
        model=model.name,
        backend=model.backend,
        source=f"sweep:{spec.name}",
        budget_kind=budget_kind(strategy),
        settings=settings,
    )


# -- problems ---------------------------------------------------------------------------------


def load_problems(spec: SweepSpec) -> pd.DataFrame:
    """Every source's problems as one frame with the store's problem columns; a problem
    listed by two sources, or one without text or gold, is an error naming the source."""
    frames = [_load_source(spec, source) for source in spec.problems]
    frame = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=list(PROBLEM_FIELDS))
    )
    duplicated = frame.duplicated(["dataset", "problem_id"])
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise InputError(
            f"problem {row['dataset']}/{row['problem_id']} is listed by two sources",
            path=spec.source,
            field="problems",
        )
    return frame.astype(object).where(pd.notna(frame), None)


def _load_source(spec: SweepSpec, source: ProblemSource) -> pd.DataFrame:
    where = source.where or "problems"
    try:
        if source.kind == "generated":
            from ponder.problems.generator import generate_problems, problems_frame

            frame = problems_frame(generate_problems(**dict(source.options)))
        elif source.kind == "preset":
            assert source.path is not None
            frame = _preset(source.preset or "", source.path)
        else:
            assert source.path is not None
            frame = _generic_file(source.path, source.dataset)
    except InputError as exc:
        raise InputError(
            exc.reason if exc.path is None else str(exc), path=spec.source, field=where
        ) from exc
    if source.dataset is not None:
        frame = frame.assign(dataset=source.dataset)
    if source.limit is not None:
        frame = frame.iloc[: source.limit]
    bad = frame["text"].isna() | frame["gold"].isna()
    if bad.any():
        row = frame[bad].iloc[0]
        raise InputError(
            f"problem {row['problem_id']} has no text or gold answer",
            path=spec.source,
            field=where,
        )
    return frame[list(PROBLEM_FIELDS)].reset_index(drop=True)


def _preset(name: str, path: Path) -> pd.DataFrame:
    from ponder.problems import load_gsm8k, load_math500

    loaders = {"gsm8k": load_gsm8k, "math500": load_math500}
    return loaders[name](path)


_TEXT = ("text", "question", "problem")
_GOLD = ("gold", "answer")
_ID = ("problem_id", "id", "unique_id")


def _metadata(value: object) -> str:
    """A problem's metadata (a JSON object, as the generator's JSONL has it) as sorted JSON;
    anything else is no metadata."""
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return "{}"
        if isinstance(parsed, dict):
            return json.dumps(parsed, sort_keys=True)
    return "{}"


def _generic_file(path: Path, dataset: str | None) -> pd.DataFrame:
    """JSONL or CSV with a text column (text / question / problem) and a gold column
    (gold / answer); optional problem_id (else the row number), level, dataset, subject and
    metadata (a JSON object: ``ponder problems generate`` files load with their knobs)."""
    from ponder.tables import read_table

    table = read_table(path)
    columns = table.columns

    def pick(names: tuple[str, ...], what: str) -> str | None:
        found = next((c for c in names if c in columns), None)
        if found is None and what:
            raise InputError(f"no {what} column (one of {', '.join(names)})", path=path)
        return found

    text, gold, pid = pick(_TEXT, "text"), pick(_GOLD, "gold"), pick(_ID, "")
    raw = table.frame
    records: list[dict[str, Any]] = []
    for i, row in enumerate(raw.to_dict("records")):
        level = row.get("level") or None
        try:
            level_value = None if level is None else int(float(level))
        except ValueError as exc:
            raise table.fail(i, "level", f"not a number: {level!r}") from exc
        records.append(
            {
                "dataset": row.get("dataset") or dataset or path.stem,
                "problem_id": str(row[pid]) if pid else str(i),
                "text": row[text] or None,
                "gold": row[gold] or None,
                "level": level_value,
                "subject": row.get("subject") or None,
                "metadata_json": _metadata(row.get("metadata")),
            }
        )
    return pd.DataFrame.from_records(records, columns=list(PROBLEM_FIELDS))
