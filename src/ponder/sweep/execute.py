"""Execute a fitted policy live: each problem's Decision, step by step, on the sweep's engines.

The offline replay scores a plan on recorded samples; this runs the same plan on a model, so
the two can be compared. It uses what the sweep runner uses (backends, prompts, the probe
ladder, direct answers, grading) and mirrors the replay's rules (``ponder.outcomes.replay``):

* A step draws its samples one at a time; a stop rule ends the draw early. A later step of
  the same configuration goes on with the next sample (the next seed), as the replay does.
* An exit step grows one chain rung by rung and stops at the first rung where its exit rule
  holds on the probe answers so far, or where the chain ended on its own; the last rung is
  the hard cap. Its cost is the chain so far plus every probe taken.
* Escalation: ``never``, ``always``, ``no_answer`` (no final answer), ``disagree`` (a drawn
  sample gave another answer), ``unsure`` (an exit chain hit the cap without the rule
  holding; a one-sample step's answer probability is below ``min_prob``; or no answer).

Every plan is checked before any engine starts: its modes, budgets and models. Each problem's
result is one outcome row (mode ``policy``, budget NULL, ``output_tokens`` = every generated
token) written in one transaction with its 'done' mark, so a run resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from ponder import paths
from ponder.backends import Backend, BackendError, Sampling
from ponder.backends.base import MODES, NO_THINK, THINK, Message
from ponder.budgets import (
    DEFAULT_RESERVE,
    Rung,
    conversation_for,
    direct_answer,
    run_ladder,
    sampled_direct_answer,
)
from ponder.budgets.prompts import prompt_version
from ponder.decision import Config, Decision, Step, StopRule
from ponder.errors import InputError
from ponder.grading import extract, grade, normalize_answer
from ponder.outcomes.replay import stop_mask
from ponder.policies.base import Policy
from ponder.policies.serialization import policy_to_dict
from ponder.store import Store
from ponder.sweep.plan import ProblemRef, canonical_digest, interleave_levels, load_problems
from ponder.sweep.runner import open_backends
from ponder.sweep.spec import ModelSpec, SweepSpec, _Fields, _problem_source
from ponder.types import GREEDY_SUFFIX, Run, base_mode

POLICY_MODE = "policy"
# The sampled decoding of ponder's recorded sweep (sweeps/arith-v1.yaml): a mode label
# without a temperature (`think`, `no-think`) was sampled this way.
DEFAULT_TEMPERATURE = 0.7
DEFAULT_TOP_P = 0.95
_SAMPLED_LABEL = re.compile(r"^(?P<base>.+?)-t(?P<t>[0-9.]+)(?:-p(?P<p>[0-9.]+))?$")


@dataclass(frozen=True)
class RunSettings:
    """How plans are executed; every field is part of the run's fingerprint."""

    reserve: int = DEFAULT_RESERVE
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    seed: int = 0
    backend: str = "llamacpp"
    # The dataset name the policy is shown (None: the problems' own). Fresh problems stored
    # under a new name would otherwise reach a policy with dataset features as unseen data.
    decide_as: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "reserve": self.reserve,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "backend": self.backend,
            "decide_as": self.decide_as,
            "prompts": prompt_version(),
        }


@dataclass(frozen=True)
class Decoding:
    """How a recorded mode label is run: the prompt (think / no-think) and the sampling."""

    base: str
    temperature: float
    top_p: float

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def decoding_for(mode: str, settings: RunSettings) -> Decoding:
    """The sweep's labels (``sweep.plan.mode_label``): ``think`` / ``no-think`` are sampled,
    ``-greedy`` is temperature 0, ``-t0.7`` (``-p0.95``) name the sampling."""
    if mode in MODES:
        return Decoding(mode, settings.temperature, settings.top_p)
    if mode.endswith(GREEDY_SUFFIX) and base_mode(mode) in MODES:
        return Decoding(base_mode(mode), 0.0, 1.0)
    match = _SAMPLED_LABEL.match(mode)
    if match and match["base"] in MODES:
        top_p = settings.top_p if match["p"] is None else float(match["p"])
        return Decoding(match["base"], float(match["t"]), top_p)
    raise InputError(
        f"unknown mode {mode!r}: expected think or no-think, optionally with -greedy or "
        "-t<temperature> (the labels `ponder sweep` records)"
    )


# -- one problem ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """What a plan runs on: a conversation (ending with the user's turn), the identity its
    samples' seeds derive from, and the gold answer when known. A served request has no gold:
    its answers are extracted, not graded."""

    conversation: tuple[Message, ...]
    identity: tuple[str, ...]
    gold: str | None = None

    @classmethod
    def of(cls, problem: ProblemRef | Prompt) -> Prompt:
        if isinstance(problem, Prompt):
            return problem
        conversation = (Message("user", problem.text),)
        return cls(conversation, (problem.dataset, problem.problem_id), problem.gold)

    def messages(self, mode: str) -> tuple[Message, ...]:
        """The conversation put in ``mode`` (ponder's instruction on the last user turn)."""
        return conversation_for(self.conversation, mode)


@dataclass(frozen=True)
class Sample:
    """One drawn sample (a chain or a direct answer) and what it cost."""

    seed: int
    key: str | None  # the normalized answer that votes and exit rules compare; None: none
    extracted: str | None
    correct: bool
    prob: float | None
    text: str
    chain_tokens: int
    probe_tokens: int
    prompt_tokens: int
    rungs: tuple[int, ...] = ()  # exit chains: the thinking budgets probed, in order
    probe_keys: tuple[str | None, ...] = ()  # exit chains: the answer at each of those rungs
    stopped: str = ""  # exit chains: "rule" (it held), "natural" (ended), "gave_up" or "cap"
    latency_s: float = 0.0
    reasoning: str = ""  # a chain stopped before its end: the thinking before the forced answer

    @property
    def generated_tokens(self) -> int:
        return self.chain_tokens + self.probe_tokens

    @property
    def sure(self) -> bool:
        """An exit chain accepted by its rule or ended on its own (any other sample: yes);
        one that hit its cap or gave up is unsure, as in the replay."""
        return self.stopped not in ("cap", "gave_up")


@dataclass(frozen=True)
class StepResult:
    config: Config
    samples: tuple[Sample, ...]
    chosen: Sample
    escalated: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.label,
            "samples": len(self.samples),
            "answers": [s.key for s in self.samples],
            "seeds": [s.seed for s in self.samples],
            "rungs": [list(s.rungs) for s in self.samples if s.rungs],
            "probe_answers": [list(s.probe_keys) for s in self.samples if s.rungs],
            "stopped": [s.stopped for s in self.samples if s.stopped],
            "answer": self.chosen.key,
            "escalated": self.escalated,
            "generated_tokens": sum(s.generated_tokens for s in self.samples),
        }


@dataclass(frozen=True)
class ProblemResult:
    steps: tuple[StepResult, ...]
    latency_s: float

    @property
    def final(self) -> Sample:
        return self.steps[-1].chosen

    @property
    def correct(self) -> bool:
        return self.final.correct

    @property
    def samples(self) -> tuple[Sample, ...]:
        return tuple(s for step in self.steps for s in step.samples)

    @property
    def generated_tokens(self) -> int:
        return sum(s.generated_tokens for s in self.samples)

    @property
    def prompt_tokens(self) -> int:
        return sum(s.prompt_tokens for s in self.samples)

    @property
    def rungs(self) -> int:
        return sum(len(s.rungs) for s in self.samples)


def _graded(text: str, gold: str | None) -> tuple[str | None, str | None, bool]:
    """(extracted, comparison key, correct): the key is what the matrix's answer codes use.
    Without a gold answer nothing is correct."""
    if gold is None:
        extracted, match = extract(text), False
    else:
        result = grade(text, gold)
        extracted, match = result.extracted, result.match
    key = normalize_answer(extracted) if extracted is not None else None
    return extracted, key or None, match


def sample_seed(seed: int, problem: ProblemRef | Prompt, config: Config, index: int) -> int:
    """Seed of the index-th sample of (model, mode): the same chain at every budget, as on a
    sweep's ladder, so a later step at a larger budget continues the recorded order."""
    identity = Prompt.of(problem).identity
    digest = canonical_digest([seed, *identity, config.model, config.mode, index])
    return int(digest[:8], 16) & 0x7FFFFFFF


async def draw_sample(
    backend: Backend, problem: Prompt, step: Step, decoding: Decoding, seed: int, reserve: int
) -> Sample:
    """One sample of the step's configuration: a direct answer, a forced chain, or an exit
    chain grown until its rule holds."""
    started = time.perf_counter()
    sampling = Sampling(decoding.temperature, decoding.top_p, seed)
    if decoding.base == NO_THINK:
        chain = await backend.open_chain(problem.messages(NO_THINK), sampling)
        try:
            if decoding.greedy:
                rung = await direct_answer(chain, reserve=reserve)
            else:
                rung = await sampled_direct_answer(chain, reserve=reserve)
        finally:
            await chain.aclose()
        extracted, key, correct = _graded(rung.answer_text, problem.gold)
        return Sample(
            seed=seed,
            key=key,
            extracted=extracted,
            correct=correct,
            prob=rung.answer_prob,
            text=rung.answer_text,
            chain_tokens=0,
            probe_tokens=rung.answer_tokens,
            prompt_tokens=chain.prompt_tokens,
            latency_s=time.perf_counter() - started,
        )
    rule = step.exit
    assert step.config.budget is not None  # checked by check_decision
    rungs = rule.rungs if rule is not None else (step.config.budget,)
    graded: list[tuple[str | None, str | None, bool]] = []
    holds: list[bool] = []
    gave_up: list[bool] = []

    def settled(so_far: tuple[Rung, ...]) -> bool:
        rung = so_far[-1]
        graded.append(_graded(rung.answer_text, problem.gold))
        if rule is None:
            return False
        keys = [g[1] for g in graded]
        token_prob = None
        if rung.answer_prob is not None and rung.answer_tokens > 0:
            token_prob = rung.answer_prob ** (1.0 / rung.answer_tokens)
        signals = (rung.answer_prob, rung.entropy_tail, token_prob, [r.budget for r in so_far])
        holds.append(rule.holds(keys, *signals))
        gave_up.append(rule.gives_up(keys, *signals))
        return rung.natural or holds[-1] or gave_up[-1]

    entropy = rule is not None and (
        rule.max_entropy is not None or rule.confident is not None or rule.hopeless is not None
    )
    messages = problem.messages(THINK)
    chain = await backend.open_chain(messages, sampling, entropy=entropy)
    try:
        result = await run_ladder(chain, rungs, reserve=reserve, stop_when=settled)
    finally:
        await chain.aclose()
    last = result.rungs[-1]
    extracted, key, correct = graded[-1]
    stopped = ""
    if rule is not None:
        if last.natural:
            stopped = "natural"
        else:
            stopped = "rule" if holds[-1] else "gave_up" if gave_up[-1] else "cap"
    return Sample(
        seed=seed,
        key=key,
        extracted=extracted,
        correct=correct,
        prob=last.answer_prob,
        text=last.answer_text,
        chain_tokens=result.chain_tokens,
        probe_tokens=result.probe_tokens,
        prompt_tokens=result.prompt_tokens,
        rungs=tuple(r.budget for r in result.rungs) if rule is not None else (),
        probe_keys=tuple(g[1] for g in graded) if rule is not None else (),
        stopped=stopped,
        latency_s=time.perf_counter() - started,
        reasoning="" if last.natural else result.chain_text,
    )


def _votes(keys: Sequence[str | None]) -> tuple[str | None, int, int]:
    """Leader (first seen among the most voted), its votes and the runner-up's votes."""
    counts = Counter(k for k in keys if k is not None)
    if not counts:
        return None, 0, 0
    top = max(counts.values())
    leader = next(k for k in keys if k is not None and counts[k] == top)
    second = max((v for k, v in counts.items() if k != leader), default=0)
    return leader, top, second


def stop_holds(rule: StopRule, keys: Sequence[str | None]) -> bool:
    """Whether the stop rule holds after these samples: the replay's own `stop_mask`."""
    codes_by_key: dict[str, int] = {}
    codes = np.array(
        [-1 if k is None else codes_by_key.setdefault(k, len(codes_by_key)) for k in keys]
    )
    prefixes = [_votes(keys[: t + 1]) for t in range(len(keys))]
    top = np.array([[p[1] for p in prefixes]])
    second = np.array([[p[2] for p in prefixes]])
    return bool(stop_mask(rule, codes[None, :], top, second)[0, -1])


def _escalates(step: Step, samples: Sequence[Sample], chosen: Sample) -> bool:
    if step.escalate == "never":
        return False
    if step.escalate == "always":
        return True
    if chosen.key is None:
        return True
    if step.escalate == "unsure":
        if step.exit is not None:
            return not chosen.sure
        return not (chosen.prob is not None and chosen.prob >= (step.min_prob or 0.0))
    if step.escalate == "disagree":
        return any(s.key != chosen.key for s in samples)
    return False  # no_answer, and there is an answer


async def run_step(
    backend: Backend,
    problem: Prompt,
    step: Step,
    settings: RunSettings,
    drawn: dict[Config, int],
) -> tuple[tuple[Sample, ...], Sample, bool]:
    """Draw the step's samples (stopping early by its rule), aggregate, and say whether the
    plan would escalate. `drawn` counts samples per configuration across the plan."""
    decoding = decoding_for(step.config.mode, settings)
    rung_configs = (
        [Config(step.config.model, step.config.mode, r) for r in step.exit.rungs]
        if step.exit is not None
        else [step.config]
    )
    samples: list[Sample] = []
    for _ in range(step.samples):
        # A chain grown or drawn at any of the step's rungs is used: take the next one.
        index = max(drawn.get(config, 0) for config in rung_configs)
        for config in rung_configs:
            drawn[config] = index + 1
        seed = sample_seed(settings.seed, problem, step.config, index)
        samples.append(await draw_sample(backend, problem, step, decoding, seed, settings.reserve))
        if step.stop is not None and stop_holds(step.stop, [s.key for s in samples]):
            break
    chosen = samples[0]
    if step.aggregate == "majority" and len(samples) > 1:
        leader, _, _ = _votes([s.key for s in samples])
        chosen = next((s for s in samples if s.key == leader), samples[0])
    return tuple(samples), chosen, _escalates(step, samples, chosen)


async def execute_decision(
    backends: Mapping[str, Backend],
    problem: ProblemRef | Prompt,
    decision: Decision,
    settings: RunSettings,
) -> ProblemResult:
    """Run a plan for one problem until a step does not escalate (or the last step)."""
    started = time.perf_counter()
    prompt = Prompt.of(problem)
    drawn: dict[Config, int] = {}
    steps: list[StepResult] = []
    for k, step in enumerate(decision.steps):
        backend = backends[step.config.model]
        samples, chosen, escalate = await run_step(backend, prompt, step, settings, drawn)
        more = escalate and k < len(decision.steps) - 1
        steps.append(StepResult(step.config, samples, chosen, more))
        if not more:
            break
    return ProblemResult(tuple(steps), time.perf_counter() - started)


# -- checking a plan --------------------------------------------------------------------------


def check_decision(decision: Decision, settings: RunSettings) -> None:
    """Fail with one line on a plan this runner cannot execute as the replay scored it."""
    for k, step in enumerate(decision.steps, start=1):
        where = f"step {k} ({step.config.label})"
        decoding = decoding_for(step.config.mode, settings)
        if decoding.base == NO_THINK:
            if step.exit is not None:
                raise InputError(f"{where}: an exit rule needs a thinking chain, not no-think")
            continue
        if step.config.budget is None:
            raise InputError(f"{where}: a thinking step needs a token budget")
        budgets = step.exit.rungs if step.exit is not None else (step.config.budget,)
        low = [b for b in budgets if b < settings.reserve]
        if low:
            raise InputError(
                f"{where}: thinking budget {low[0]} is below the answer reserve "
                f"({settings.reserve} tokens); lower --reserve or refit with larger budgets"
            )


def worst_case_tokens(decision: Decision, settings: RunSettings) -> int:
    """Generated tokens if every step runs in full: chains to the cap plus every probe."""
    total = 0
    for step in decision.steps:
        if step.exit is not None:
            total += step.exit.cap + len(step.exit.rungs) * settings.reserve
        elif decoding_for(step.config.mode, settings).base == NO_THINK:
            total += step.samples * settings.reserve
        else:
            total += step.samples * ((step.config.budget or 0) + settings.reserve)
    return total


def distinct(decisions: Sequence[Decision]) -> dict[str, tuple[Decision, int]]:
    """Each distinct plan (by its JSON) with how many problems get it."""
    out: dict[str, tuple[Decision, int]] = {}
    for decision in decisions:
        key = json.dumps(decision.to_dict(), sort_keys=True)
        out[key] = (decision, out.get(key, (decision, 0))[1] + 1)
    return out


def model_options(
    model: str, backend: str, options: Mapping[str, Any], threads: int | None
) -> dict[str, Any]:
    """A plan's model as backend options; a local model must be pulled already."""
    out: dict[str, Any] = {"model": model, **options}
    if backend == "llamacpp":
        out.setdefault("n_ctx", 2048)
        if threads is not None:
            out["n_threads"] = threads
        if "path" not in out and not (paths.models_dir() / f"{model}.gguf").is_file():
            raise InputError(
                f"model {model!r} in the plan is not pulled (no {model}.gguf in "
                f"{paths.models_dir()}): run `ponder models pull {model}` or set "
                f"{paths.MODELS_DIR_ENV}"
            )
    return out


# -- a run: many problems into the store ------------------------------------------------------


def load_run_problems(
    sources: Sequence[Mapping[str, Any]], base_dir: Path | None = None
) -> tuple[pd.DataFrame, list[ProblemRef]]:
    """Problems from entries written like a sweep spec's `problems:` (generated, file or
    preset, with dataset and limit), checked and loaded by the sweep's own code."""
    fields = _Fields("--problems", {})
    base = base_dir or Path.cwd()
    parsed = tuple(
        _problem_source(fields, dict(item), f"problems[{i}]", base)
        for i, item in enumerate(sources)
    )
    if not parsed:
        raise InputError("give problems: --problems FILE or PRESET, or --generated LEVELS")
    frame = load_problems(SweepSpec(name="run", problems=parsed, models=(), source="--problems"))
    refs = [
        ProblemRef(
            dataset=str(r["dataset"]),
            problem_id=str(r["problem_id"]),
            text=str(r["text"]),
            gold=str(r["gold"]),
            level=None if r["level"] is None else int(r["level"]),
        )
        for r in frame.to_dict("records")
    ]
    return frame, interleave_levels(refs)


@dataclass(frozen=True)
class PolicyRun:
    """A policy's plans for a list of problems, checked, with the run id they are stored under."""

    policy: Policy
    settings: RunSettings
    problems_frame: pd.DataFrame
    problems: tuple[ProblemRef, ...]
    decisions: tuple[Decision, ...]
    models: tuple[ModelSpec, ...]
    fingerprint: str
    source: str = ""

    @property
    def run_id(self) -> str:
        return f"run:{self.policy.name}:{self.fingerprint[:8]}"

    def spec(self) -> SweepSpec:
        """The plan's models as a sweep spec, so engines open as `ponder sweep` opens them."""
        return SweepSpec(name=self.run_id, problems=(), models=self.models, source="policy plan")

    def problem_key(self, problem: ProblemRef) -> str:
        return canonical_digest([self.run_id, problem.dataset, problem.problem_id])

    def predicted(self) -> dict[str, float] | None:
        """The offline replay's figures on the training problems, when the policy kept them."""
        state = self.policy.get_state()
        if "train_accuracy" not in state or "train_cost" not in state:
            return None
        return {"accuracy": float(state["train_accuracy"]), "cost": float(state["train_cost"])}

    def record(self) -> Run:
        return Run(
            run_id=self.run_id,
            model=self.run_id,
            backend=self.settings.backend,
            source=f"policy:{self.source or self.policy.name}",
            budget_kind="none",
            settings={
                "policy": self.policy.name,
                "policy_sha256": policy_to_dict(self.policy)["sha256"],
                "fitted_on": self.policy.fingerprint_,
                **self.settings.describe(),
            },
        )


def plan_run(
    policy: Policy,
    problems_frame: pd.DataFrame,
    problems: Sequence[ProblemRef],
    settings: RunSettings,
    *,
    options: Mapping[str, Any] | None = None,
    threads: int | None = None,
    source: str = "",
) -> PolicyRun:
    """Decide every problem and check every plan and model before anything runs."""
    known = problems_frame.set_index(["dataset", "problem_id"])
    keys = [(p.dataset, p.problem_id) for p in problems]
    asked = pd.DataFrame(
        {
            "dataset": [settings.decide_as or p.dataset for p in problems],
            "problem_id": [p.problem_id for p in problems],
            "level": [p.level for p in problems],
            "subject": known["subject"].reindex(keys).to_list() if keys else [],
            "text": [p.text for p in problems],
        }
    )
    batch = policy.decide_batch(asked)
    decisions = tuple(batch[i] for i in range(len(problems)))
    for decision, _ in distinct(decisions).values():
        check_decision(decision, settings)
    names = sorted({s.config.model for d in decisions for s in d.steps})
    models = tuple(
        ModelSpec(
            name,
            settings.backend,
            model_options(name, settings.backend, options or {}, threads),
            where=f"model {name!r}",
        )
        for name in names
    )
    fingerprint = canonical_digest(
        {"policy": policy_to_dict(policy)["sha256"], **settings.describe()}
    )
    return PolicyRun(
        policy, settings, problems_frame, tuple(problems), decisions, models, fingerprint, source
    )


class Reporter(Protocol):
    def start(self, total: int, skipped: int) -> None: ...

    def advance(self, problem: ProblemRef, tokens: int, ok: bool) -> None: ...

    def finish(self) -> None: ...


@dataclass
class RunSummary:
    run_id: str
    problems: int
    done: int = 0
    skipped: int = 0
    errors: int = 0
    wall_s: float = 0.0
    error_messages: list[str] = field(default_factory=list)


def pending(run: PolicyRun, store: Store | None) -> list[int]:
    """Indices of the problems not yet recorded as done for this run."""
    states = store.sweep_items(run.run_id) if store is not None else {}
    return [
        i
        for i, p in enumerate(run.problems)
        if (state := states.get(run.problem_key(p))) is None or state.status != "done"
    ]


def check_stored_problems(run: PolicyRun, store: Store) -> None:
    """A problem id already stored with another text (say generated with another seed) would
    silently keep the old text: refuse before anything is written."""
    rows = store.query("SELECT dataset, problem_id, text FROM problems")
    stored = {(str(d), str(p)): t for d, p, t in rows}
    for problem in run.problems:
        text = stored.get((problem.dataset, problem.problem_id))
        if text is not None and text != problem.text:
            raise InputError(
                f"problem {problem.dataset}/{problem.problem_id} is stored with another text "
                "(another seed or set?): give these problems their own --dataset name"
            )


def outcome_row(run: PolicyRun, problem: ProblemRef, result: ProblemResult) -> dict[str, Any]:
    final = result.final
    samples = result.samples
    extra = {
        "policy": run.policy.name,
        "steps": [s.to_dict() for s in result.steps],
        "n_steps": len(result.steps),
        "rungs": result.rungs,
        "answer_prob": final.prob,
    }
    return {
        "run_id": run.run_id,
        "dataset": problem.dataset,
        "problem_id": problem.problem_id,
        "model": run.run_id,
        "mode": POLICY_MODE,
        "budget": None,
        "sample_idx": 0,
        "prompt_tokens": result.prompt_tokens,
        "reasoning_tokens": sum(s.chain_tokens for s in samples),
        "answer_tokens": sum(s.probe_tokens for s in samples),
        "output_tokens": result.generated_tokens,
        "latency_s": result.latency_s,
        "truncated": 0,
        "answered": int(final.key is not None),
        "extracted_answer": final.extracted,
        "correct": 1.0 if final.correct else 0.0,
        "n_runs": 1,
        "response_text": final.text,
        "extra_json": json.dumps(extra, sort_keys=True),
    }


async def _attempt(
    backends: Mapping[str, Backend],
    problem: ProblemRef,
    decision: Decision,
    settings: RunSettings,
    retries: int,
    backoff_s: float,
) -> ProblemResult | str:
    """The problem's result, or the error it ended with (retryable engine errors retried)."""
    for attempt in range(retries + 1):
        try:
            return await execute_decision(backends, problem, decision, settings)
        except BackendError as exc:
            if exc.retryable and attempt < retries:
                await asyncio.sleep(backoff_s * 2**attempt)
                continue
            return str(exc)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:  # an engine crash must not end a long run
            return f"{type(exc).__name__}: {exc}"
    raise AssertionError("unreachable")


async def run_policy(
    run: PolicyRun,
    store: Store,
    *,
    backends: Mapping[str, Backend] | None = None,
    reporter: Reporter | None = None,
    retries: int = 2,
    backoff_s: float = 0.5,
) -> RunSummary:
    """Run the pending problems one at a time; each result is one transaction."""
    todo = pending(run, store)
    summary = RunSummary(run.run_id, len(run.problems), skipped=len(run.problems) - len(todo))
    check_stored_problems(run, store)
    engines = dict(backends) if backends is not None else await open_backends(run.spec())
    started = time.perf_counter()
    try:
        store.begin_sweep(
            run.run_id, json.dumps(run.record().settings), [run.record()], run.problems_frame
        )
        if reporter is not None:
            reporter.start(len(run.problems), summary.skipped)
        for i in todo:
            problem = run.problems[i]
            key = run.problem_key(problem)
            outcome = await _attempt(
                engines, problem, run.decisions[i], run.settings, retries, backoff_s
            )
            if isinstance(outcome, str):
                store.record_sweep_error(run.run_id, key, outcome, 1)
                summary.errors += 1
                summary.error_messages.append(f"{problem.dataset}/{problem.problem_id}: {outcome}")
                tokens = 0
            else:
                row = outcome_row(run, problem, outcome)
                store.write_sweep_item(run.run_id, key, [row], None, attempts=1)
                summary.done += 1
                tokens = outcome.generated_tokens
            if reporter is not None:
                reporter.advance(problem, tokens, not isinstance(outcome, str))
    finally:
        if reporter is not None:
            reporter.finish()
        if backends is None:
            for engine in engines.values():
                await engine.aclose()
    summary.wall_s = time.perf_counter() - started
    return summary


def measured(store: Store, run_id: str) -> dict[str, Any]:
    """Accuracy (with a 95% Wilson interval), mean tokens, steps and rungs over every problem
    recorded for the run (this invocation's and earlier ones')."""
    from ponder.curves import wilson_interval

    rows = store.query(
        "SELECT correct, output_tokens, prompt_tokens, extra_json FROM outcomes WHERE run_id = ?",
        [run_id],
    )
    n = len(rows)
    if n == 0:
        return {"problems": 0}
    correct = np.array([float(r[0]) for r in rows])
    extras = [json.loads(r[3] or "{}") for r in rows]
    accuracy = float(correct.mean())
    low, high = wilson_interval(np.array([accuracy]), np.array([float(n)]))
    return {
        "problems": n,
        "accuracy": accuracy,
        "ci_low": float(low[0]),
        "ci_high": float(high[0]),
        "mean_generated_tokens": float(np.mean([r[1] or 0 for r in rows])),
        "mean_prompt_tokens": float(np.mean([r[2] or 0 for r in rows])),
        "mean_steps": float(np.mean([e.get("n_steps", 0) for e in extras])),
        "mean_rungs": float(np.mean([e.get("rungs", 0) for e in extras])),
    }
