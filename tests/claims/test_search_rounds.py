"""Claim 8 (search rounds vs thinking tokens): the verification experiment on a fake engine
whose world makes the two equivalent when the verifier knows the answer, and the check's
verdicts, refusals and resume."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from claims_helpers import (
    FakeBackend,
    WordChain,
    add_problem,
    begin_toy_sweep,
    builtin_claim_data,
    claim_data,
    load_toy,
    record_ladder,
    run_live,
    toy_problems,
    toy_run,
)

from ponder.backends import Message, Sampling, Segment
from ponder.backends.fake import true_answer
from ponder.claims import ClaimData, Finding
from ponder.claims.experiments import ExperimentSummary
from ponder.claims.search_rounds import (
    MARGIN_FLOOR,
    NO_ANSWER_SCORE,
    RELATIVE_MARGIN,
    VERIFY_MODE,
    SearchExperiment,
    SearchGrid,
    SearchRounds,
    interpolate_rows,
    parse_verdict,
)
from ponder.errors import InputError
from ponder.store import Store

MODEL = "fake-s"
RUNGS = (32, 64, 128, 256, 512)
SAMPLES = 3
_BOXED = re.compile(r"\\boxed\{(-?\d+)\}")


def _unit(*parts: object) -> float:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2.0**64


@dataclass(frozen=True)
class World:
    """A chain is right once it has thought ``threshold`` tokens, threshold ~ Exponential
    (``tau``) per (problem, seed): every token is an equal chance to find the answer, so r
    chains at B tokens find it as often as one chain at r x B. A chain ends on its own
    ``extra`` tokens after its threshold when ``natural``. The verifier says yes to a right
    answer and no to a wrong one (``informative``), or yes / no by a coin."""

    tau: float = 200.0
    natural: bool = False
    extra: int = 8
    informative: bool = True
    confidence: float = 0.9
    blank_first: bool = False  # the reply starts with a newline before its yes / no


class SearchChain(WordChain):
    """One word per token; see World."""

    def __init__(self, world: World, text: str, sampling: Sampling) -> None:
        self.world = world
        self.answer = true_answer(text)
        u = _unit("threshold", text, "greedy" if sampling.greedy else sampling.seed)
        self.threshold = max(1, math.ceil(-world.tau * math.log(1.0 - u)))
        super().__init__(self.threshold + world.extra if world.natural else 10**9)

    def final(self) -> int:
        return self.answer

    def current(self) -> int:
        return self.answer if self.tokens >= self.threshold else self.answer + 1

    async def fork(self, cue: str, max_tokens: int, stop: tuple[str, ...] = ()) -> Segment:
        digits = str(self.current())
        return Segment(digits, len(digits), True, logprobs=(0.0,) * len(digits), prompt_tokens=3)


class VerdictChain(WordChain):
    """The reply to the verification question: yes / no on its first word (after a newline
    with ``blank_first``), by whether the re-fed candidate's boxed answer is right."""

    def __init__(self, world: World, problem: str, candidate: str) -> None:
        super().__init__(2)
        self.world, self.problem, self.candidate = world, problem, candidate

    @property
    def prompt_tokens(self) -> int:
        return 10 + len(self.candidate.split()) + 4

    async def extend(self, max_tokens: int, on_text: object = None) -> Segment:
        if self.world.blank_first and not self.words:
            self.words.append("\n")
            return Segment("\n", 1, False, logprobs=(math.log(0.99),))
        boxed = _BOXED.findall(self.candidate)
        right = bool(boxed) and int(boxed[-1]) == true_answer(self.problem)
        says_yes = right if self.world.informative else _unit("coin", self.candidate) < 0.5
        word = "yes" if says_yes else "no"
        self.words.append(word)
        return Segment(word, 1, True, logprobs=(math.log(self.world.confidence),))


class SearchFake(FakeBackend):
    """A backend of SearchChains; ``fail_on`` makes chains of matching problems fail,
    ``unreachable`` fails the upstream check."""

    name = "searchfake"

    def __init__(
        self,
        world: World,
        *,
        model: str = MODEL,
        fail_on: str | None = None,
        unreachable: bool = False,
    ) -> None:
        super().__init__(model=model, fail_on=fail_on, unreachable=unreachable)
        self.world = world

    def problem_text(self, messages: tuple[Message, ...]) -> str:
        return next(m.content for m in messages if m.role == "user")

    def make_chain(self, text: str, sampling: Sampling) -> SearchChain:
        return SearchChain(self.world, text, sampling)

    async def open_chain(
        self, messages: tuple[Message, ...], sampling: Sampling, *, entropy: bool = False
    ) -> Any:
        if messages[-1].role == "user" and "yes or no" in messages[-1].content:
            assert messages[-2].role == "assistant" and sampling.greedy
            self.opened += 1
            return VerdictChain(self.world, self.problem_text(messages), messages[-2].content)
        return await super().open_chain(messages, sampling, entropy=entropy)


def record_chains(
    store: Store, world: World, n: int, *, samples: int = SAMPLES, greedy: bool = True
) -> ClaimData:
    """A sweep-like record: per problem `samples` sampled ladders (mode think) and one greedy
    ladder (think-greedy), with their chains."""
    problems = toy_problems(n, digits=3)
    runs = {mode: toy_run(f"src/{mode}", MODEL) for mode in ("think", "think-greedy")}
    begin_toy_sweep(store, problems, list(runs.values()))
    backend = SearchFake(world)
    draws = [("think", i, Sampling(0.7, 0.95, i)) for i in range(samples)]
    if greedy:
        draws.append(("think-greedy", 0, Sampling(0.0)))
    for problem in problems.to_dict("records"):
        for mode, sample_idx, sampling in draws:
            record_ladder(
                store,
                backend,
                problem,
                runs[mode],
                mode=mode,
                rungs=RUNGS,
                chain_id=f"c-{problem['problem_id']}-{mode}-{sample_idx}",
                sample_idx=sample_idx,
                sampling=sampling,
            )
    return load_toy(store)


def _run(store: Store, data: ClaimData, backend: SearchFake, limit: int) -> ExperimentSummary:
    experiment = SearchRounds().experiment(seed=0)  # as `ponder experiment` passes it
    return run_live(store, data, experiment, backend, limit)


def _verify_rows(store: Store) -> pd.DataFrame:
    rows = store.query(
        "SELECT problem_id, chain_id, budget, sample_idx, prompt_tokens, answer_tokens, "
        "output_tokens, answered, correct, answer_prob, natural, extra_json FROM outcomes "
        "WHERE run_id LIKE 'claims/search-rounds/%' ORDER BY 1, 2, 3"
    )
    columns = [
        "problem_id",
        "chain_id",
        "budget",
        "sample_idx",
        "prompt_tokens",
        "answer_tokens",
        "output_tokens",
        "answered",
        "correct",
        "answer_prob",
        "natural",
        "extra_json",
    ]
    return pd.DataFrame(rows, columns=columns)


N_PROBLEMS = 40


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recorded ladders of the default World, stored once and copied per test."""
    folder = tmp_path_factory.mktemp("search-template")
    with Store(folder / "s.sqlite") as store:
        record_chains(store, World(), N_PROBLEMS)
    return folder


@pytest.fixture
def recorded(template: Path, tmp_path: Path) -> Iterator[tuple[Store, ClaimData]]:
    copy = tmp_path / "copy"
    shutil.copytree(template, copy)
    with Store(copy / "s.sqlite") as store:
        yield store, load_toy(store)


def _only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, [f.scope for f in findings]
    return findings[0]


# -- the experiment and the check on the fake engine ------------------------------------------


def test_informative_verifier_gains_like_thinking(recorded: tuple[Store, ClaimData]) -> None:
    store, data = recorded
    summary = _run(store, data, SearchFake(World()), N_PROBLEMS)
    assert (summary.done, summary.errors) == (N_PROBLEMS, 0)
    rows = _verify_rows(store)
    assert len(rows) == N_PROBLEMS * SAMPLES * len(RUNGS)  # every candidate has an answer
    # The verifier said yes to right answers only, with its confidence.
    assert np.allclose(rows["answer_prob"], np.where(rows["correct"] == 1, 0.9, 0.1))
    assert set(rows["output_tokens"]) == {1.0}  # the reply; the question is prompt-side
    assert {json.loads(e)["reply"] for e in rows["extra_json"]} == {"yes", "no"}
    finding = _only(SearchRounds().check(load_toy(store)))
    assert finding.scope == MODEL and finding.n_problems == N_PROBLEMS
    extras = finding.extras
    # Every token an equal chance: search gains about what thinking gains per doubling.
    thinking = extras["thinking gain per doubling (points)"]
    assert thinking == pytest.approx(20.20, abs=0.01)
    assert extras["search gain per doubling (points)"] == pytest.approx(18.82, abs=0.01)
    gap = extras["search minus thinking (points per doubling)"]
    assert gap == pytest.approx(-1.38, abs=0.01)
    assert extras["search minus thinking, low"] < 0 < extras["search minus thinking, high"]
    assert finding.verdict == "supported"
    assert finding.effect is not None
    assert finding.effect.value == pytest.approx(RELATIVE_MARGIN * thinking - abs(gap))
    assert finding.effect.low > 0
    assert extras["mean P(yes), right candidates"] == pytest.approx(0.9)
    assert extras["any chain right at the last rung"] == 1.0
    assert extras["accuracy, search over all chains at the last rung"] == 1.0
    table = finding.table
    assert table is not None
    search = table[table["series"] == "search"]
    assert int(search["compared"].sum()) == extras["search points compared"] == 6
    # Round 1 of the search is the thinking curve itself.
    thinking_curve = table[table["series"] == "thinking"].set_index("rung")["accuracy"]
    first = search[search["rounds"] == 1].set_index("rung")["accuracy"]
    assert np.allclose(first, thinking_curve)
    png = SearchRounds().plot(finding)
    assert png is not None and png[:4] == b"\x89PNG"


def test_noise_verifier_gains_nothing(recorded: tuple[Store, ClaimData]) -> None:
    store, data = recorded
    _run(store, data, SearchFake(World(informative=False)), N_PROBLEMS)
    finding = _only(SearchRounds().check(load_toy(store)))
    assert finding.verdict == "contradicted"
    assert finding.effect is not None and finding.effect.high < 0
    extras = finding.extras
    assert abs(extras["search gain per doubling (points)"]) < 4.0
    assert extras["thinking gain per doubling (points)"] == pytest.approx(20.20, abs=0.01)
    assert extras["search minus thinking, high"] < -10
    assert extras["mean P(yes), right candidates"] == pytest.approx(
        extras["mean P(yes), wrong candidates"], abs=0.1
    )


def test_candidates_are_cut_at_their_rung(recorded: tuple[Store, ClaimData]) -> None:
    store, data = recorded
    _run(store, data, SearchFake(World()), 1)
    rows = _verify_rows(store)
    assert len(rows) == SAMPLES * len(RUNGS)
    # prompt 10 words + the chain's first B words + "Final answer: \boxed{X}" (3 words)
    # + the question (4)
    assert list(rows.groupby("budget")["prompt_tokens"].first()) == [b + 17 for b in RUNGS]
    assert set(rows["sample_idx"]) == set(range(SAMPLES))
    extra = json.loads(rows["extra_json"].iloc[0])
    assert extra["verdict"] in ("yes", "no") and extra["reused"] is False


def test_refuses_without_verification_rows(recorded: tuple[Store, ClaimData]) -> None:
    _, data = recorded
    finding = _only(SearchRounds().check(data))
    assert finding.verdict == "insufficient"
    assert "ponder experiment search-rounds --model fake-s --dataset toy" in finding.reason


def test_refuses_too_few_problems(recorded: tuple[Store, ClaimData]) -> None:
    store, data = recorded
    _run(store, data, SearchFake(World()), 5)
    finding = _only(SearchRounds().check(load_toy(store)))
    assert finding.verdict == "insufficient"
    assert finding.n_problems == 5 and "needs 20" in finding.reason


def test_resume_skips_done_problems(recorded: tuple[Store, ClaimData]) -> None:
    store, data = recorded
    first = _run(store, data, SearchFake(World()), 3)
    before = _verify_rows(store)
    second = _run(store, data, SearchFake(World()), 5)
    assert (second.done, second.skipped) == (2, 3) and first.run_id == second.run_id
    after = _verify_rows(store)
    assert len(after) == 5 * SAMPLES * len(RUNGS)
    assert before.merge(after).shape[0] == len(before)  # the first rows are unchanged
    backend = SearchFake(World())
    third = _run(store, data, backend, 5)
    assert (third.done, third.skipped, backend.opened) == (0, 5, 0)


def test_failing_problem_and_dead_backend_write_nothing(
    recorded: tuple[Store, ClaimData],
) -> None:
    store, data = recorded
    counts = store.counts()
    with pytest.raises(InputError, match="models with them: fake-s"):
        _run(store, data, SearchFake(World(), model="no-such-model"), 5)
    with pytest.raises(InputError, match="not usable: connection refused"):
        _run(store, data, SearchFake(World(), unreachable=True), 5)
    assert store.counts() == counts
    summary = _run(store, data, SearchFake(World(), fail_on=add_problem(3)), N_PROBLEMS)
    assert summary.errors == 1 and summary.done == N_PROBLEMS - 1
    assert "engine crashed" in summary.error_messages[0]
    problems = set(_verify_rows(store)["problem_id"])
    assert "p003" not in problems and len(problems) == N_PROBLEMS - 1


def test_items_are_seeded_and_interleaved_by_level(recorded: tuple[Store, ClaimData]) -> None:
    _, data = recorded
    items = SearchExperiment(seed=0).items(data, MODEL)
    again = SearchExperiment(seed=0).items(data, MODEL)
    other = SearchExperiment(seed=1).items(data, MODEL)
    assert [i.key for i in items] == [i.key for i in again] != [i.key for i in other]
    assert sorted(1 + int(i.problem_id[1:]) % 4 for i in items[:4]) == [1, 2, 3, 4]
    assert all(len(i.chains) == SAMPLES for i in items)
    assert [c.position for c in items[0].chains] == list(range(SAMPLES))


def test_natural_ends_and_blank_replies(tmp_path: Path) -> None:
    world = World(tau=60.0, natural=True, blank_first=True)
    with Store(tmp_path / "s.sqlite") as store:
        data = record_chains(store, world, 4, greedy=False)
        _run(store, data, SearchFake(world), 4)
        rows = _verify_rows(store)
    natural = rows[rows["natural"] == 1]
    assert len(natural) > 0
    # A chain that ended holds its own (right) answer: verified once, reused at later rungs.
    assert np.allclose(natural["answer_prob"], 0.9) and (natural["correct"] == 1).all()
    for _, chain in natural.groupby("chain_id"):
        reused = [json.loads(e)["reused"] for e in chain["extra_json"]]
        assert all(reused[1:])
    # The newline before the verdict is skipped and paid for: newline 1 + verdict 1.
    assert set(rows["answer_tokens"]) == {2.0} and set(rows["output_tokens"]) == {2.0}
    assert set(rows["answered"]) == {1.0}


# -- refusals on data without sampled chains --------------------------------------------------


def test_refuses_greedy_ladders_only(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        data = record_chains(store, World(), 3, samples=0)
    finding = _only(SearchRounds().check(data))
    assert finding.verdict == "insufficient"
    assert "no sampled think chains" in finding.reason
    with pytest.raises(InputError, match="no sampled think chains"):
        SearchExperiment().items(data, MODEL)


def test_builtin_snapshot_is_ready_for_the_experiment(tmp_path: Path) -> None:
    """The complete built-in sweep has three sampled think chains per problem and model: the
    check asks for the verification rows, and the experiment finds an item per problem."""
    data = builtin_claim_data(tmp_path)
    findings = SearchRounds().check(data)
    assert [f.scope for f in findings] == ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    for finding in findings:
        assert finding.verdict == "insufficient"
        assert f"ponder experiment search-rounds --model {finding.scope}" in finding.reason
    items = SearchExperiment().items(data, "qwen2.5-coder-0.5b")
    assert len(items) == 160
    assert all(len(item.chains) == 3 for item in items)


# -- the verdicts on many problems (frames, no engine) ----------------------------------------


def synthetic_data(
    n: int, *, samples: int, informative: bool, model: str = MODEL, tau: float = 400.0
) -> ClaimData:
    """The World's ladders written as frames, at twice the rungs (so the cue and answer
    tokens weigh less): i.i.d. exponential thresholds, one token per forced answer, two per
    verification, an oracle (or coin) verifier."""
    rng = np.random.default_rng(7)
    recorded: list[dict[str, object]] = []
    checks: list[dict[str, object]] = []
    for i in range(n):
        problem = f"p{i:03d}"
        for sample in range(samples):
            chain = f"{model}-{problem}-{sample}"
            threshold = rng.exponential(tau)
            for index, budget in enumerate(2 * r for r in RUNGS):
                right = threshold <= budget
                cell = {"problem_id": problem, "budget": float(budget), "chain_id": chain}
                recorded.append(
                    {
                        **cell,
                        "model": model,
                        "mode": "think",
                        "sample_idx": sample,
                        "budget_kind": "forced",
                        "rung": index,
                        "natural": 0,
                        "reasoning_tokens": float(budget),
                        "output_tokens": float(budget + 1),
                        "correct": float(right),
                        "extracted_answer": "1" if right else "2",
                    }
                )
                says_yes = right if informative else rng.random() < 0.5
                checks.append(
                    {
                        **cell,
                        "run_id": f"claims/search-rounds/{model}/synthetic",
                        "model": model,
                        "mode": VERIFY_MODE,
                        "answer_prob": 0.9 if says_yes else 0.1,
                        "output_tokens": 2.0,
                    }
                )
    return replace(claim_data(recorded), experiments=pd.DataFrame(checks))


def test_flat_curves_are_alike_within_the_floor() -> None:
    # No chain is ever right: neither thinking nor search gains, and the margin is its floor.
    finding = _only(SearchRounds().check(synthetic_data(30, samples=3, informative=True, tau=1e12)))
    assert finding.extras["thinking gain per doubling (points)"] == 0.0
    assert finding.extras["equivalence margin (points per doubling)"] == MARGIN_FLOOR
    assert finding.effect is not None
    assert (finding.effect.value, finding.effect.low) == (MARGIN_FLOOR, MARGIN_FLOOR)
    assert finding.verdict == "supported"


def test_two_models_are_pooled() -> None:
    one = synthetic_data(60, samples=3, informative=False, model="m-a")
    two = synthetic_data(60, samples=3, informative=False, model="m-b")
    assert one.experiments is not None and two.experiments is not None
    both = replace(
        one,
        outcomes=pd.concat([one.outcomes, two.outcomes], ignore_index=True),
        experiments=pd.concat([one.experiments, two.experiments], ignore_index=True),
    )
    findings = SearchRounds().check(both)
    assert [f.scope for f in findings] == ["m-a", "m-b", "all models"]
    assert [f.verdict for f in findings] == ["contradicted"] * 3
    pooled = findings[-1]
    assert pooled.effect is not None and pooled.n_problems == 60
    singles = [f.effect.value for f in findings[:2] if f.effect is not None]
    assert pooled.effect.value == pytest.approx(np.mean(singles))
    assert pooled.table is not None and set(pooled.table["model"]) == {"m-a", "m-b"}
    png = SearchRounds().plot(pooled)
    assert png is not None and png[:4] == b"\x89PNG"


# -- helpers ----------------------------------------------------------------------------------


def test_search_picks_the_best_verified_answer() -> None:
    # One problem, one rung, three chains: no answer, a doubted right one, a trusted wrong one.
    def cells(*values: float) -> np.ndarray:
        return np.array(values, dtype=np.float64).reshape(1, 1, 3)

    grid = SearchGrid(
        model="m",
        problems=["p"],
        budgets=[64.0],
        correct=cells(0, 1, 0),
        tokens=cells(10, 20, 30),
        verify_tokens=cells(0, 1, 1),
        score=cells(NO_ANSWER_SCORE, 0.4, 0.7),
        greedy_correct=np.full((1, 1), np.nan),
        greedy_tokens=np.full((1, 1), np.nan),
        unverdicted=0.0,
    )
    accuracy, tokens, oracle = grid.rounds()
    # r = 1: each chain alone; r = 2: {0,1} -> 1 (an answer beats none), {0,2} -> 2, {1,2} -> 2
    assert accuracy[0, 0].tolist() == pytest.approx([1 / 3, 1 / 3, 0.0])
    assert oracle[0, 0].tolist() == pytest.approx([1 / 3, 2 / 3, 1.0])
    # cost: the chains' tokens, plus their verification replies from two chains on
    assert tokens[0, 0].tolist() == pytest.approx([20.0, (31 + 41 + 52) / 3, 62.0])


def test_parse_verdict() -> None:
    assert [parse_verdict(t) for t in (" Yes", "no.", "YES, it is", " Maybe", "", "\n")] == [
        "yes",
        "no",
        "yes",
        None,
        None,
        None,
    ]


def test_interpolation_is_linear_inside_and_flat_outside() -> None:
    xs = np.array([[1.0, 2.0, 4.0], [1.0, 2.0, 4.0]])
    ys = np.array([[0.0, 1.0, 3.0], [0.0, 0.5, 0.5]])
    at = interpolate_rows(np.array([3.0, 1.5]), xs, ys)
    assert at.tolist() == [2.0, 0.25]
    outside = interpolate_rows(np.array([0.5, 9.0]), xs, ys)
    assert outside.tolist() == [0.0, 0.5]
