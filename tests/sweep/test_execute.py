"""`ponder run`'s executor on the fake engine, whose every figure is worked out by hand.

The fake's rules (src/ponder/backends/fake.py) with ``min_share: 1``: the answer is the sum of
the integers in the problem; a thinking chain answers right once it has ``20 x numbers``
thinking tokens (the need) and ends on its own 8 tokens later with ``\\boxed{answer}``; a
greedy probe before the need gives the same wrong answer at every rung, with probability 0.3
(a right one: 0.9); no-think is right iff the need is at most 40. Every answer here has two
digits, so a forced probe or greedy direct answer costs 2 tokens and a sampled direct answer 3
(``70}``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import Result
from typer.testing import CliRunner

from ponder.backends.base import Chain, Message, Sampling, Segment
from ponder.backends.fake import FakeBackend, FakeOptions
from ponder.budgets import messages_for
from ponder.budgets.prompts import NO_THINK_INSTRUCTION
from ponder.decision import Config, Decision, DecisionBatch, ExitRule, Score, Step, StopRule
from ponder.errors import InputError
from ponder.outcomes.reference import _leader, _stops
from ponder.policies.base import Policy
from ponder.policies.serialization import register, save_policy
from ponder.store import Store
from ponder.sweep.execute import (
    PolicyRun,
    ProblemResult,
    RunSettings,
    check_decision,
    decoding_for,
    execute_decision,
    load_run_problems,
    measured,
    plan_run,
    run_policy,
    sample_seed,
)
from ponder.sweep.plan import ProblemRef

A = ProblemRef("toy", "a", "Add 30 and 40.", "70")  # need 40, ends on its own at 48
B = ProblemRef("toy", "b", "Add 10, 20 and 5.", "35")  # need 60, ends at 68
C = ProblemRef("toy", "c", "Add 1, 2, 3, 4 and 5.", "15")  # need 100, ends at 108
OPTIONS: dict[str, Any] = {
    "tokens_per_number": 20,
    "min_share": 1.0,
    "natural_extra": 8,
    "direct_skill": 40,
}
SETTINGS = RunSettings(reserve=8, backend="fake")
THINK64 = Step(Config("m", "think-greedy", 64))
DIRECT = Step(Config("m", "no-think-greedy"))
SAMPLED = Config("m", "no-think")


def fake(**extra: Any) -> FakeBackend:
    return FakeBackend(FakeOptions(model="m", **{**OPTIONS, **extra}))


def execute(problem: ProblemRef, *steps: Step, backend: FakeBackend | None = None) -> ProblemResult:
    engines = {"m": backend or fake()}
    return asyncio.run(execute_decision(engines, problem, Decision(steps), SETTINGS))


def exit_step(rungs: tuple[int, ...], escalate: Any = "never", **rule: Any) -> Step:
    return Step(
        Config("m", "think-greedy", rungs[-1]), exit=ExitRule(rungs, **rule), escalate=escalate
    )


def prompt_tokens(problem: ProblemRef, mode: str) -> int:
    """The fake counts the words of the user message as prompt tokens."""
    return len(messages_for(problem.text, mode)[0].content.split())


def codes(keys: list[str | None]) -> list[int]:
    """Answer keys as the replay's integer codes (-1: no answer), in order of first sight."""
    seen: dict[str, int] = {}
    return [-1 if k is None else seen.setdefault(k, len(seen)) for k in keys]


# -- modes and plan checks --------------------------------------------------------------------


def test_mode_labels_map_to_the_sweeps_decoding() -> None:
    settings = RunSettings(temperature=0.6, top_p=0.9)
    greedy = decoding_for("no-think-greedy", settings)
    assert (greedy.base, greedy.temperature, greedy.greedy) == ("no-think", 0.0, True)
    sampled = decoding_for("think", settings)
    assert (sampled.base, sampled.temperature, sampled.top_p) == ("think", 0.6, 0.9)
    named = decoding_for("no-think-t0.8-p0.5", settings)
    assert (named.base, named.temperature, named.top_p) == ("no-think", 0.8, 0.5)
    assert decoding_for("think-t1", settings).top_p == 0.9
    for bad in ("cot", "think-hot", "greedy", "policy"):
        with pytest.raises(InputError, match="unknown mode"):
            decoding_for(bad, settings)


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (Step(Config("m", "think-greedy", 4)), "budget 4 is below the answer reserve"),
        (exit_step((4, 32), window=2), "budget 4 is below the answer reserve"),
        (
            Step(Config("m", "no-think-greedy", 32), exit=ExitRule((16, 32), window=2)),
            "needs a thinking chain",
        ),
        (Step(Config("m", "think-greedy")), "needs a token budget"),
        (Step(Config("m", "cot", 16)), "unknown mode 'cot'"),
    ],
)
def test_plans_the_runner_cannot_execute_are_refused(step: Step, message: str) -> None:
    with pytest.raises(InputError, match=message):
        check_decision(Decision((DIRECT, step)), SETTINGS)


# -- one step of each kind --------------------------------------------------------------------


def test_a_thinking_step_forces_the_answer_at_its_budget() -> None:
    a, b, c = (execute(p, THINK64) for p in (A, B, C))
    # a ends on its own at 48 tokens (its natural answer, no probe); b and c are forced at 64.
    assert (a.correct, a.generated_tokens, a.final.text.endswith("\\boxed{70}")) == (True, 48, True)
    assert (b.correct, b.generated_tokens) == (True, 64 + 2)
    assert (c.correct, c.generated_tokens) == (False, 64 + 2)
    assert b.prompt_tokens == prompt_tokens(B, "think")
    assert a.rungs == b.rungs == 0 and len(b.steps) == 1


def test_a_direct_answer_step_costs_the_answer_only() -> None:
    a, b = execute(A, DIRECT), execute(B, DIRECT)
    assert (a.correct, a.generated_tokens, a.final.prob) == (True, 2, pytest.approx(0.9))
    assert (b.correct, b.generated_tokens, b.final.prob) == (False, 2, pytest.approx(0.3))
    assert a.prompt_tokens == prompt_tokens(A, "no-think")
    assert a.final.key == "70" and b.final.key != "35"


def test_an_exit_step_stops_once_the_probe_answers_agree() -> None:
    # b: rungs 16 and 32 give the same (wrong) answer: the window of 2 holds at 32.
    result = execute(B, exit_step((16, 32, 64, 128), "unsure", window=2), THINK64)
    sample = result.final
    assert sample.rungs == (16, 32) and sample.stopped == "rule" and len(result.steps) == 1
    assert sample.probe_keys[0] == sample.probe_keys[1] == sample.key != "35"
    assert (result.correct, result.generated_tokens) == (False, 32 + 2 + 2)
    assert result.rungs == 2


def test_an_exit_step_stops_once_the_probe_is_confident() -> None:
    # b: wrong at 16 and 32 (p 0.3), right at 64 (p 0.9 >= 0.5): the chain stops at 64.
    result = execute(B, exit_step((16, 32, 64, 128), min_prob=0.5))
    assert result.final.rungs == (16, 32, 64) and result.final.stopped == "rule"
    assert result.final.probe_keys[-1] == "35" and "35" not in result.final.probe_keys[:2]
    assert (result.correct, result.generated_tokens) == (True, 64 + 3 * 2)
    assert result.final.prob == pytest.approx(0.9)


def test_an_exit_chain_at_its_cap_is_unsure_and_escalates() -> None:
    # p never reaches 0.95: the chain stops at its cap (32) and the plan goes on to think@64.
    result = execute(B, exit_step((16, 32), "unsure", min_prob=0.95), THINK64)
    first, second = result.steps
    assert first.chosen.rungs == (16, 32) and first.chosen.stopped == "cap"
    assert not first.chosen.sure and first.escalated
    assert not second.escalated and result.correct
    assert result.generated_tokens == (32 + 2 + 2) + (64 + 2)


def test_a_hopeless_score_gives_up_at_once_and_escalates() -> None:
    # A score that is ~0 everywhere gives up at the first rung: unsure, so think@64 runs.
    hopeless = Score((), bias=-10.0, threshold=0.5)
    result = execute(B, exit_step((16, 32), "unsure", hopeless=hopeless), THINK64)
    first, second = result.steps
    assert first.chosen.rungs == (16,) and first.chosen.stopped == "gave_up"
    assert not first.chosen.sure and first.escalated and not second.escalated
    assert result.generated_tokens == (16 + 2) + (64 + 2)


def test_a_chain_that_ends_on_its_own_stops_there_and_is_sure() -> None:
    # a ends at 48 tokens, before rung 64: its natural answer stops the chain, no escalation.
    result = execute(A, exit_step((16, 32, 64, 128), "unsure", min_prob=0.95), DIRECT)
    assert len(result.steps) == 1 and result.final.stopped == "natural" and result.correct
    assert result.final.rungs == (16, 32, 64)
    assert result.generated_tokens == 48 + 2 + 2


def test_a_min_prob_step_accepts_a_confident_answer_and_escalates_an_unsure_one() -> None:
    plan = (Step(DIRECT.config, min_prob=0.5, escalate="unsure"), THINK64)
    a, b, c = (execute(p, *plan) for p in (A, B, C))
    assert (len(a.steps), a.correct, a.generated_tokens) == (1, True, 2)
    assert (len(b.steps), b.correct, b.generated_tokens) == (2, True, 2 + 66)
    assert (len(c.steps), c.correct, c.generated_tokens) == (2, False, 2 + 66)
    assert b.steps[0].escalated and not b.steps[1].escalated


class _MuteChain:
    """A chain whose forced answers are empty (`\\boxed{}`): a request with no answer."""

    def __init__(self, inner: Chain) -> None:
        self.inner = inner

    @property
    def text(self) -> str:
        return self.inner.text

    @property
    def tokens(self) -> int:
        return self.inner.tokens

    @property
    def finished(self) -> bool:
        return self.inner.finished

    @property
    def prompt_tokens(self) -> int:
        return self.inner.prompt_tokens

    async def extend(self, max_tokens: int) -> Segment:
        return await self.inner.extend(max_tokens)

    async def append(self, text: str) -> int:
        return await self.inner.append(text)

    async def fork(self, cue: str, max_tokens: int, stop: tuple[str, ...] = ()) -> Segment:
        probe = await self.inner.fork(cue, max_tokens, stop)
        return Segment("", probe.tokens, True, probe.logprobs, prompt_tokens=probe.prompt_tokens)

    async def aclose(self) -> None:
        await self.inner.aclose()


class MuteDirect(FakeBackend):
    """The fake, except that its direct answers are empty."""

    async def open_chain(
        self, messages: tuple[Message, ...], sampling: Sampling, *, entropy: bool = False
    ) -> Chain:
        chain = await super().open_chain(messages, sampling, entropy=entropy)
        return _MuteChain(chain) if NO_THINK_INSTRUCTION in messages[0].content else chain


def test_no_answer_escalates_and_a_wrong_answer_does_not() -> None:
    plan = (Step(DIRECT.config, escalate="no_answer"), THINK64)
    muted = execute(A, *plan, backend=MuteDirect(FakeOptions(model="m", **OPTIONS)))
    assert muted.steps[0].chosen.key is None and muted.steps[0].escalated
    assert (len(muted.steps), muted.correct, muted.generated_tokens) == (2, True, 2 + 48)
    wrong = execute(B, *plan)  # answered (wrongly): no_answer keeps it
    assert (len(wrong.steps), wrong.correct) == (1, False)


def test_disagreeing_samples_escalate_and_agreeing_ones_stop() -> None:
    plan = (Step(SAMPLED, samples=3, escalate="disagree"), THINK64)
    a = execute(A, *plan)  # no-think is right for a whatever the seed: three equal answers
    assert [s.key for s in a.steps[0].samples] == ["70"] * 3
    assert (len(a.steps), a.correct, a.generated_tokens) == (1, True, 3 * 3)
    b = execute(B, *plan)  # wrong answers with seed-dependent offsets
    keys = [s.key for s in b.steps[0].samples]
    assert "35" not in keys
    assert b.steps[0].escalated == (len(set(keys)) > 1)
    assert len(b.steps) == (2 if len(set(keys)) > 1 else 1)


def test_always_runs_every_step_and_never_runs_one() -> None:
    always = execute(A, Step(DIRECT.config, escalate="always"), THINK64)
    assert len(always.steps) == 2 and always.generated_tokens == 2 + 48
    never = execute(B, DIRECT, THINK64)
    assert len(never.steps) == 1 and never.generated_tokens == 2


# -- votes and stop rules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop", "drawn"),
    [
        (None, 5),
        (StopRule(votes=2, margin=1), 2),
        # Adaptive-Consistency: P(p > 1/2 | t equal votes) = 1 - 2^-(t+1) >= 0.95 from t = 4.
        (StopRule(kind="beta", confidence=0.95), 4),
        (StopRule(kind="window", window=3), 3),
    ],
)
def test_stop_rules_end_the_draw_of_equal_greedy_samples(stop: StopRule | None, drawn: int) -> None:
    step = Step(THINK64.config, samples=5, stop=stop)
    result = execute(B, step)
    samples = result.steps[0].samples
    assert len(samples) == drawn and {s.key for s in samples} == {"35"}
    assert result.generated_tokens == drawn * (64 + 2)


@pytest.mark.parametrize(
    "stop",
    [
        StopRule(votes=2, margin=1),
        StopRule(votes=3, margin=2),
        StopRule(kind="beta", confidence=0.8),
        StopRule(kind="window", window=2),
    ],
)
@pytest.mark.parametrize("problem", [B, C])
def test_sampled_votes_stop_where_the_replays_reference_stops(
    stop: StopRule, problem: ProblemRef
) -> None:
    result = execute(problem, Step(SAMPLED, samples=6, stop=stop))
    keys = [s.key for s in result.steps[0].samples]
    answers = codes(keys)
    stops = [_stops(stop, answers[: t + 1]) for t in range(len(answers))]
    assert not any(stops[:-1]), "drew a sample after the rule held"
    assert stops[-1] or len(keys) == 6
    leader, _, _ = _leader(answers)
    assert result.final.key == keys[answers.index(leader)]
    assert result.generated_tokens == 3 * len(keys)


def test_later_steps_of_one_configuration_draw_the_next_seeds() -> None:
    result = execute(B, Step(SAMPLED, samples=2, escalate="always"), Step(SAMPLED))
    seeds = [[s.seed for s in step.samples] for step in result.steps]
    assert seeds == [
        [sample_seed(0, B, SAMPLED, 0), sample_seed(0, B, SAMPLED, 1)],
        [sample_seed(0, B, SAMPLED, 2)],
    ]
    # An exit chain uses its chain at every rung: think@16 after it is the next chain.
    think16 = Config("m", "think-greedy", 16)
    later = execute(B, exit_step((16, 32), "always", window=2), Step(think16))
    assert later.steps[0].samples[0].seed == sample_seed(0, B, think16, 0)
    assert later.steps[1].samples[0].seed == sample_seed(0, B, think16, 1)
    # ... and an exit chain after think@16 takes the next chain too.
    after = execute(B, Step(think16, escalate="always"), exit_step((16, 32), window=2))
    assert after.steps[1].samples[0].seed == sample_seed(0, B, think16, 1)


# -- live equals replay ----------------------------------------------------------------------


def test_live_execution_agrees_with_the_offline_replay_of_a_recorded_ladder(tmp_path: Path) -> None:
    """The fake is deterministic, so a plan run live must cost and score exactly what the
    replay predicts from a greedy ladder sweep of the same engine."""
    import numpy as np

    from ponder.analysis import load_matrix
    from ponder.outcomes.replay import replay_decision
    from ponder.sweep import parse_spec, run_sweep

    spec = parse_spec(
        {
            "name": "toy",
            "problems": [{"file": str(write_problems(tmp_path)), "dataset": "toy"}],
            "models": [{"name": "m", "backend": "fake", "options": OPTIONS}],
            "modes": ["think", "no-think"],
            "budgets": {"ladder": [16, 32, 64, 128]},
            "reserve": SETTINGS.reserve,
            "sampling": [{"temperature": 0}],
        }
    )
    with Store(tmp_path / "s.sqlite") as store:
        run_sweep(spec, store, backoff_s=0)
        matrix = load_matrix(store, datasets=["toy"])
    assert list(matrix.problems["problem_id"]) == ["a", "b", "c"]
    ladder = (16, 32, 64, 128)
    plans = [
        (DIRECT,),
        (THINK64,),
        (exit_step(ladder, window=2),),
        (exit_step(ladder, min_prob=0.5),),
        (Step(DIRECT.config, min_prob=0.5, escalate="unsure"), THINK64),
        (exit_step((16, 32), "unsure", min_prob=0.5), Step(Config("m", "think-greedy", 128))),
        (Step(DIRECT.config, escalate="always"), exit_step(ladder, "unsure", window=3), DIRECT),
    ]
    for steps in plans:
        replayed = replay_decision(matrix, np.arange(3), Decision(steps))
        live = [execute(p, *steps) for p in (A, B, C)]
        described = Decision(steps).to_dict()
        assert list(replayed.correct) == [float(r.correct) for r in live], described
        assert list(replayed.cost) == [float(r.generated_tokens) for r in live], described
        assert list(replayed.steps) == [len(r.steps) for r in live], described


# -- a run into the store ---------------------------------------------------------------------


@register
class FixedPlan(Policy):
    """The same plan for every problem: a stand-in for a fitted policy."""

    name = "test_fixed_plan"

    def __init__(self, plan: Mapping[str, Any] | None = None) -> None:
        self.plan = dict(plan or {})
        self.train: dict[str, Any] = {}

    def decide_batch(self, problems: pd.DataFrame) -> DecisionBatch:
        return DecisionBatch.same(Decision.from_dict(self.plan), len(problems))

    def get_params(self) -> dict[str, Any]:
        return {"plan": self.plan}

    def get_state(self) -> dict[str, Any]:
        return dict(self.train)

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.train = dict(state)


def fixed(*steps: Step, **train: float) -> FixedPlan:
    policy = FixedPlan(Decision(steps).to_dict())
    policy.set_state(train)
    policy.fingerprint_ = "test"
    policy.n_problems_fitted_ = 0
    return policy


PLAN = (Step(DIRECT.config, min_prob=0.5, escalate="unsure"), THINK64)


def write_problems(folder: Path, problems: tuple[ProblemRef, ...] = (A, B, C)) -> Path:
    path = folder / "probs.jsonl"
    path.write_text(
        "".join(
            json.dumps({"problem_id": p.problem_id, "text": p.text, "gold": p.gold}) + "\n"
            for p in problems
        )
    )
    return path


def planned(
    folder: Path, policy: Policy, problems: tuple[ProblemRef, ...] = (A, B, C)
) -> PolicyRun:
    source = {"file": str(write_problems(folder, problems)), "dataset": "toy"}
    frame, refs = load_run_problems([source])
    return plan_run(policy, frame, refs, SETTINGS, options=OPTIONS)


def stored_rows(path: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("SELECT * FROM outcomes ORDER BY problem_id")]
    conn.close()
    return rows


def test_a_run_records_one_row_per_problem_and_resumes(tmp_path: Path) -> None:
    run = planned(tmp_path, fixed(*PLAN))
    assert run.run_id == f"run:test_fixed_plan:{run.fingerprint[:8]}"
    backend = fake()
    with Store(tmp_path / "s.sqlite") as store:
        summary = asyncio.run(run_policy(run, store, backends={"m": backend}))
        assert (summary.done, summary.skipped, summary.errors) == (3, 0, 0)
        stats = measured(store, run.run_id)
        opened = backend.chains_opened
        again = asyncio.run(run_policy(run, store, backends={"m": backend}))
        assert (again.done, again.skipped) == (0, 3) and backend.chains_opened == opened
    # a: confident direct answer; b, c: unsure (p 0.3), escalated to think@64.
    assert stats["problems"] == 3 and stats["accuracy"] == pytest.approx(2 / 3)
    assert stats["mean_generated_tokens"] == pytest.approx((2 + 68 + 68) / 3)
    assert stats["mean_steps"] == pytest.approx(5 / 3)
    assert stats["ci_low"] < 2 / 3 < stats["ci_high"]
    rows = stored_rows(tmp_path / "s.sqlite")
    assert [r["problem_id"] for r in rows] == ["a", "b", "c"]
    assert [r["output_tokens"] for r in rows] == [2, 68, 68]
    assert [r["correct"] for r in rows] == [1.0, 1.0, 0.0]
    for row in rows:
        assert (row["run_id"], row["model"], row["mode"]) == (run.run_id, run.run_id, "policy")
        assert row["budget"] is None and row["dataset"] == "toy"
        assert row["reasoning_tokens"] + row["answer_tokens"] == row["output_tokens"]
    extra = json.loads(rows[1]["extra_json"])
    assert [s["config"] for s in extra["steps"]] == ["m|no-think-greedy|none", "m|think-greedy|64"]
    assert [s["escalated"] for s in extra["steps"]] == [True, False]
    assert rows[1]["reasoning_tokens"] == 64 and rows[1]["answer_tokens"] == 2 + 2


def test_a_run_stopped_part_way_goes_on_with_the_rest(tmp_path: Path) -> None:
    policy = fixed(*PLAN)
    (tmp_path / "part").mkdir()
    first = planned(tmp_path / "part", policy, (A, B))
    whole = planned(tmp_path, policy)
    assert first.run_id == whole.run_id  # the run is the policy and its settings
    backend = fake()
    with Store(tmp_path / "s.sqlite") as store:
        asyncio.run(run_policy(first, store, backends={"m": backend}))
        summary = asyncio.run(run_policy(whole, store, backends={"m": backend}))
    assert (summary.done, summary.skipped) == (1, 2)
    assert len(stored_rows(tmp_path / "s.sqlite")) == 3


def test_an_engine_error_is_recorded_and_retried_on_the_next_run(tmp_path: Path) -> None:
    run = planned(tmp_path, fixed(*PLAN))
    with Store(tmp_path / "s.sqlite") as store:
        broken = asyncio.run(run_policy(run, store, backends={"m": fake(fail_always=["Add 1,"])}))
        assert (broken.done, broken.errors) == (2, 1) and "toy/c" in broken.error_messages[0]
        assert store.query("SELECT status FROM work_items WHERE status = 'error'") == [("error",)]
        fixed_run = asyncio.run(run_policy(run, store, backends={"m": fake()}))
        assert (fixed_run.done, fixed_run.skipped) == (1, 2)
    assert [r["problem_id"] for r in stored_rows(tmp_path / "s.sqlite")] == ["a", "b", "c"]


def test_a_model_that_is_not_pulled_is_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PONDER_MODELS_DIR", str(tmp_path / "models"))
    source = {"file": str(write_problems(tmp_path)), "dataset": "toy"}
    frame, refs = load_run_problems([source])
    with pytest.raises(InputError, match="model 'm' in the plan is not pulled"):
        plan_run(fixed(*PLAN), frame, refs, RunSettings(backend="llamacpp"))


def test_a_problem_stored_with_another_text_is_refused(tmp_path: Path) -> None:
    run = planned(tmp_path, fixed(*PLAN))
    other = run.problems_frame.assign(text="Add 1 and 1.")
    with Store(tmp_path / "s.sqlite") as store:
        store.begin_sweep("earlier", "{}", [], other)
        with pytest.raises(InputError, match="toy/a is stored with another text"):
            asyncio.run(run_policy(run, store, backends={"m": fake()}))
    assert stored_rows(tmp_path / "s.sqlite") == []


# -- the command ------------------------------------------------------------------------------


def cli(*args: str) -> Result:
    from ponder.cli import _register, app

    if not any(c.name == "run" for c in app.registered_commands):
        _register()
    return CliRunner().invoke(app, list(args))


FAKE_FLAGS = [
    "--backend",
    "fake",
    "--reserve",
    "8",
    *[f for k, v in OPTIONS.items() for f in ("--option", f"{k}={v}")],
]


def test_the_command_runs_resumes_and_sets_measured_beside_predicted(tmp_path: Path) -> None:
    policy = save_policy(fixed(*PLAN, train_accuracy=0.7, train_cost=50.0), tmp_path / "p.json")
    problems = str(write_problems(tmp_path))
    store = str(tmp_path / "s.sqlite")
    args = ["run", str(policy), "--problems", problems, "--dataset", "toy", "--store", store]
    result = cli(*args, *FAKE_FLAGS, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["done"], out["skipped"], out["errors"]) == (3, 0, 0)
    assert out["measured"]["accuracy"] == pytest.approx(2 / 3)
    assert out["predicted"] == {"accuracy": 0.7, "cost": 50.0}
    assert out["plans"][0]["problems"] == 3
    assert out["plans"][0]["worst_case_generated_tokens"] == 8 + (64 + 8)
    again = cli(*args, *FAKE_FLAGS)
    assert again.exit_code == 0, again.output
    assert "0 problems run, 3 skipped" in again.stdout
    assert "measured" in again.stdout and "predicted" in again.stdout


def test_a_dry_run_prints_the_plans_and_writes_nothing(tmp_path: Path) -> None:
    policy = save_policy(fixed(*PLAN), tmp_path / "p.json")
    store = tmp_path / "s.sqlite"
    result = cli(
        "run", str(policy), "--generated", "1-2", "--per-level", "2", "--store", str(store),
        *FAKE_FLAGS, "--dry-run", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["problems"], out["pending"], out["predicted"]) == (4, 4, None)
    assert not store.exists()


@pytest.mark.parametrize("case", ["missing", "malformed", "not pulled", "low budget"])
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PONDER_MODELS_DIR", str(tmp_path / "no-models"))
    path = tmp_path / "p.json"
    flags = FAKE_FLAGS
    if case == "malformed":
        path.write_text('{"format": "ponder.policy",')
    elif case == "not pulled":
        save_policy(fixed(*PLAN), path)
        flags = []  # the default engine: llamacpp, with an empty models folder
    elif case == "low budget":
        save_policy(fixed(Step(Config("m", "think-greedy", 4))), path)
    store = tmp_path / "s.sqlite"
    result = cli("run", str(path), "--generated", "1", "--store", str(store), *flags)
    expected = {
        "missing": "no such file",
        "malformed": "invalid JSON",
        "not pulled": "is not pulled",
        "low budget": "below the answer reserve",
    }[case]
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and expected in result.stderr
    assert result.stderr.count("\n") == 1
    assert not store.exists()


def test_the_installed_command_exits_2_on_a_missing_policy(tmp_path: Path) -> None:
    env = {**os.environ, "PONDER_DATA_DIR": str(tmp_path / "data")}
    env.pop("PONDER_STORE", None)
    store = tmp_path / "s.sqlite"
    result = subprocess.run(
        [sys.executable, "-m", "ponder", "run", "nope.json", "--generated", "1", "--store", store],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: nope.json: no such file")
    assert not store.exists()


def test_problem_flags_become_the_sweep_specs_problem_entries(tmp_path: Path) -> None:
    from ponder.cli.run_cmd import _sources

    assert _sources("gsm8k", None, 8, 0, None, 40) == [{"preset": "gsm8k", "limit": 40}]
    assert _sources("a.jsonl", "1-3,5", 4, 7, "fresh", None) == [
        {"file": "a.jsonl", "dataset": "fresh"},
        {"generated": {"levels": [1, 2, 3, 5], "per_level": 4, "seed": 7}, "dataset": "fresh"},
    ]
    with pytest.raises(InputError, match="--levels '1-9'"):
        _sources(None, "1-9", 4, 0, None, None)
    frame, refs = load_run_problems(_sources(None, "1-2", 3, 7, "fresh", None))
    assert len(refs) == 6 and set(frame["dataset"]) == {"fresh"}
    assert [r.level for r in refs] == [1, 2, 1, 2, 1, 2]  # levels interleaved, as a sweep


def test_decide_as_shows_the_policy_the_dataset_it_was_fitted_on(tmp_path: Path) -> None:
    seen: list[list[str]] = []

    class Watching(FixedPlan):
        def decide_batch(self, problems: pd.DataFrame) -> DecisionBatch:
            seen.append(list(problems["dataset"]))
            return super().decide_batch(problems)

    policy = Watching(Decision(PLAN).to_dict())
    policy.fingerprint_, policy.n_problems_fitted_ = "test", 0
    frame, refs = load_run_problems([{"file": str(write_problems(tmp_path)), "dataset": "fresh"}])
    plain = plan_run(policy, frame, refs, SETTINGS, options=OPTIONS)
    shown = RunSettings(reserve=8, backend="fake", decide_as="toy")
    renamed = plan_run(policy, frame, refs, shown, options=OPTIONS)
    assert seen == [["fresh"] * 3, ["toy"] * 3]
    assert [p.dataset for p in renamed.problems] == ["fresh"] * 3  # stored under its own name
    assert renamed.run_id != plain.run_id
