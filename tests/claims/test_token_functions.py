"""Claim 9 (token functions): the tagger on fixed text, the ablation experiment on fake
engines whose forced answer reads only computation (or only meta-discourse), and the
descriptive tag shares on the built-in sweep's real chains."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from claims_helpers import (
    FakeBackend,
    begin_toy_sweep,
    builtin_claim_data,
    load_toy,
    run_live,
    store_chain,
    toy_problems,
    toy_run,
)

from ponder.backends import Message, Sampling, Segment
from ponder.backends.fake import true_answer
from ponder.claims import ClaimData
from ponder.claims.experiments import ExperimentSummary
from ponder.claims.token_functions import (
    COMPUTE,
    COMPUTE_MODE,
    META,
    META_MODE,
    NONE_MODE,
    OTHER,
    RESTATE,
    RESTATE_MODE,
    AblationExperiment,
    TokenFunctions,
    ablation_arms,
    cut_before_answer,
    join_pieces,
    tag_counts,
    tag_pieces,
)
from ponder.errors import InputError
from ponder.store import Store

N_PROBLEMS = 24
MODEL = "fake-m"
RIGHT_PROB, WRONG_PROB = 0.9, 0.4


def _numbers(i: int) -> tuple[int, int]:
    return 10 + i, 3 * i + 1


def _problem_text(i: int) -> str:
    a, b = _numbers(i)
    return (
        f"Mia has {a} apples and buys {b} more apples at the market. How many apples does Mia have?"
    )


def _chain_text(i: int) -> str:
    """A recorded chain: the problem restated (18 pieces), a plan (other), an equation, a
    check introduced by "Let me verify:" (3 meta pieces), and the boxed conclusion."""
    a, b = _numbers(i)
    return (
        f"{_problem_text(i)} The apples are counted together as one pile:\n"
        f"\\[ {a} + {b} = {a + b} \\]\n"
        f"Let me verify: the pile minus {b} gives {a + b} - {b} = {a} apples.\n"
        f"The answer is \\boxed{{{a + b}}}."
    )


# The cut chain's tags (hand-counted from _chain_text).
COUNTS = {RESTATE: 18, COMPUTE: 11, META: 3, OTHER: 8 + 2 + 5}


class AblationChain:
    """Appended text only; the forced answer follows the fake's rule on the chain's text:
    reads="computation" answers c iff the equation `a + b = c` is intact, reads="meta"
    answers right iff the word "verify" is there; otherwise the true answer + 1."""

    def __init__(self, answer: int, reads: str) -> None:
        self.answer, self.reads = answer, reads
        self._text = ""

    @property
    def text(self) -> str:
        return self._text

    @property
    def tokens(self) -> int:
        return len(self._text.split())

    @property
    def finished(self) -> bool:
        return False

    @property
    def prompt_tokens(self) -> int:
        return 10

    async def extend(self, max_tokens: int, on_text: object = None) -> Segment:
        return Segment("", 0, False)

    async def append(self, text: str) -> int:
        self._text += text
        return len(text.split())

    def _forced(self) -> tuple[int, bool]:
        if self.reads == "computation":
            equation = re.search(r"(\d+) \+ (\d+) = (\d+)", self._text)
            right = equation is not None and int(equation.group(3)) == self.answer
        else:
            right = "verify" in self._text
        return (self.answer if right else self.answer + 1), right

    async def fork(self, cue: str, max_tokens: int, stop: tuple[str, ...] = ()) -> Segment:
        value, right = self._forced()
        prob = RIGHT_PROB if right else WRONG_PROB
        return Segment(str(value), 1, True, logprobs=(math.log(prob),), prompt_tokens=4)

    async def aclose(self) -> None:
        return None


class AblationFake(FakeBackend):
    """A backend of AblationChains; `fail_on` makes chains of matching problems fail,
    `unreachable` fails the upstream check."""

    name = "ablationfake"
    logprobs = True

    def __init__(
        self,
        reads: str = "computation",
        *,
        model: str = MODEL,
        fail_on: str | None = None,
        unreachable: bool = False,
        prefix: bool = True,
    ) -> None:
        super().__init__(model=model, fail_on=fail_on, unreachable=unreachable, prefix=prefix)
        self.reads = reads

    def problem_text(self, messages: tuple[Message, ...]) -> str:
        return messages[-1].content.split("\n\n")[0]

    def make_chain(self, text: str, sampling: Sampling) -> AblationChain:
        return AblationChain(true_answer(text), self.reads)


def record_chains(store: Store, n: int = N_PROBLEMS) -> ClaimData:
    """A sweep-like record: per problem one greedy ladder (128, 512) ending on its chain."""
    problems = toy_problems(n, _problem_text, lambda i: str(sum(_numbers(i))))
    run = toy_run("src/fake-m", MODEL)
    begin_toy_sweep(store, problems, [run])
    for i, problem in enumerate(problems.to_dict("records")):
        chain_id = f"c-{problem['problem_id']}"
        text = _chain_text(i)
        rows: list[dict[str, object]] = [
            {
                "run_id": run.run_id,
                "dataset": "toy",
                "problem_id": problem["problem_id"],
                "model": MODEL,
                "mode": "think-greedy",
                "budget": budget,
                "sample_idx": 0,
                "reasoning_tokens": min(budget, len(text.split())),
                "truncated": 0,
                "answered": 1,
                "extracted_answer": answer,
                "correct": float(answer == problem["gold"]),
                "n_runs": 1,
                "chain_id": chain_id,
                "rung": rung,
                "natural": int(rung == 1),
            }
            # an early rung answers wrong: the reference must be the last rung's answer
            for rung, (budget, answer) in enumerate([(16, "0"), (512, problem["gold"])])
        ]
        store_chain(store, run, problem, chain_id, rows, text=text, finished=True)
    return load_toy(store)


def _run(
    store: Store, data: ClaimData, backend: AblationFake, limit: int = N_PROBLEMS
) -> ExperimentSummary:
    experiment = TokenFunctions().experiment(draws=2, seed=0)
    return run_live(store, data, experiment, backend, limit)


def _rows(store: Store) -> list[tuple[Any, ...]]:
    return store.query(
        "SELECT problem_id, mode, budget, sample_idx, extracted_answer, answer_prob, extra_json "
        "FROM outcomes WHERE run_id LIKE 'claims/token-functions/%' ORDER BY 1, 2, 3, 4"
    )


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[tuple[Store, ClaimData]]:
    with Store(tmp_path / "s.sqlite") as store:
        yield store, record_chains(store)


# -- the tagger -------------------------------------------------------------------------------


def test_tagger_on_fixed_sentences() -> None:
    problem = "Ana has 12 pens and gives 5 pens to Bo. How many pens are left?"
    text = (
        "Okay, let me think step by step.\n"
        "1. Ana has 12 pens and gives 5 pens to Bo.\n"
        "2. So we compute \\[ 12 - 5 = 7 \\]\n"
        "Wait, let's double-check: 7 + 5 = 12, which matches."
    )
    tags: dict[str, set[str]] = {}
    for piece in tag_pieces(text, problem):
        tags.setdefault(piece.text, set()).add(piece.tag)
    assert tags["Okay,"] == tags["let"] == tags["me"] == {META}
    assert tags["step"] == tags["by"] == {META}  # "step by step"
    assert tags["think"] == {OTHER}
    assert tags["1."] == tags["2."] == {OTHER}  # list markers are layout
    assert tags["Ana"] == tags["gives"] == tags["Bo."] == {RESTATE}
    assert tags["12"] == {RESTATE, COMPUTE}  # restated in line 1, computed in lines 2-3
    assert tags["\\["] == tags["\\]"] == {OTHER}
    assert tags["-"] == tags["="] == tags["7"] == tags["+"] == {COMPUTE}
    assert tags["So"] == tags["Wait,"] == tags["let's"] == tags["double-check:"] == {META}
    assert tags["compute"] == tags["which"] == tags["matches."] == {OTHER}
    counts = tag_counts(tag_pieces(text, problem))
    assert counts == {COMPUTE: 10, RESTATE: 10, META: 10, OTHER: 9}


def test_two_words_copied_are_not_a_restatement() -> None:
    pieces = tag_pieces("the market sells apples", "A market sells pears.")
    assert [p.tag for p in pieces] == [OTHER] * 4
    pieces = tag_pieces("so the market sells pears", "A market sells pears.")
    assert [p.tag for p in pieces] == [META, OTHER, RESTATE, RESTATE, RESTATE]


def test_the_chain_is_cut_before_its_conclusion() -> None:
    text = _chain_text(0)
    cut = cut_before_answer(text, finished=True)
    assert cut.endswith("= 10 apples.") and "boxed" not in cut
    assert cut_before_answer("x = \\boxed{3}", finished=True) == ""
    # a chain stopped at its budget never wrote its answer: the sweep forced it after all
    assert cut_before_answer(text, finished=False) == text
    assert cut_before_answer("no box here. ", finished=True) == "no box here."


def test_removing_pieces_keeps_line_breaks() -> None:
    pieces = tag_pieces("So x\nWait, y = 2\n  z", "")
    assert join_pieces(pieces) == "So x\nWait, y = 2\n  z"
    meta = frozenset(i for i, p in enumerate(pieces) if p.tag == META)
    assert join_pieces(pieces, meta) == "x\ny = 2\n  z"
    assert join_pieces(pieces, frozenset({1, 2})) == "So\ny = 2\n  z"


def test_arms_remove_as_many_computation_pieces() -> None:
    pieces = tag_pieces(cut_before_answer(_chain_text(3), True), _problem_text(3))
    assert tag_counts(pieces) == COUNTS

    def rng_for(what: str, n: int, draw: int) -> np.random.Generator:
        return np.random.default_rng([len(what), n, draw])

    arms = ablation_arms(pieces, 2, rng_for)
    by_mode: dict[str, list[Any]] = {}
    for arm in arms:
        by_mode.setdefault(arm.mode, []).append(arm)
    assert [len(a.drop) for a in by_mode[NONE_MODE]] == [0]
    # meta: all 3 pieces; restatement: 18 > 11 computation pieces, so 2 random draws of 11
    assert [len(a.drop) for a in by_mode[META_MODE]] == [3]
    assert [len(a.drop) for a in by_mode[RESTATE_MODE]] == [11, 11]
    assert {pieces[i].tag for a in by_mode[RESTATE_MODE] for i in a.drop} == {RESTATE}
    # computation: 2 draws of 3, and all 11 once (every draw of 11 would be the same)
    assert sorted(len(a.drop) for a in by_mode[COMPUTE_MODE]) == [3, 3, 11]
    assert {pieces[i].tag for a in by_mode[COMPUTE_MODE] for i in a.drop} == {COMPUTE}
    threes = [a.drop for a in by_mode[COMPUTE_MODE] if len(a.drop) == 3]
    assert threes[0] != threes[1]
    assert ablation_arms(pieces, 2, rng_for) == arms  # seeded


# -- the experiment on fakes ------------------------------------------------------------------


def test_answers_that_read_computation_support_the_claim(
    recorded: tuple[Store, ClaimData],
) -> None:
    store, data = recorded
    summary = _run(store, data, AblationFake("computation"))
    assert (summary.done, summary.errors) == (N_PROBLEMS, 0)
    rows = _rows(store)
    # per chain: control, meta (1), restatement (2 draws), computation (2 x 3 + 1 x 11)
    assert len(rows) == N_PROBLEMS * 7
    assert {r[1] for r in rows} == {NONE_MODE, META_MODE, RESTATE_MODE, COMPUTE_MODE}
    extra = json.loads(rows[0][6])
    assert extra["counts"] == COUNTS and extra["original_answer"] == "11"
    findings = TokenFunctions().check(load_toy(store))
    assert [f.scope for f in findings] == [f"{MODEL}: {META}", f"{MODEL}: {RESTATE}"]
    meta, restate = findings
    assert meta.verdict == restate.verdict == "supported"
    assert meta.n_problems == restate.n_problems == N_PROBLEMS
    # removing 3 random computation pieces of 11 keeps the 5-piece equation with
    # probability C(6,3)/C(11,3) = 12%; the measured rate is what the rows say
    kept_compute = meta.extras["answers kept, as many computation pieces removed"]
    assert 0.0 < kept_compute < 0.35
    assert meta.effect is not None
    assert meta.effect.value == pytest.approx(100 * (1 - kept_compute))
    assert meta.extras["answers kept, meta-discourse removed"] == 1.0
    assert meta.extras["control: answers kept, chain re-fed unchanged"] == 1.0
    # restatement is matched to all 11 computation pieces: the equation is always gone
    assert restate.effect is not None
    assert (restate.effect.value, restate.effect.low) == (100.0, 100.0)
    assert restate.extras["P(recorded answer), computation removed: upper bound"] == (
        pytest.approx(1 - WRONG_PROB)
    )
    assert restate.extras["P(recorded answer), computation removed: lower bound"] == 0.0
    assert restate.extras["P(recorded answer), control"] == pytest.approx(RIGHT_PROB)
    assert restate.extras["share of pieces: restatement"] == pytest.approx(18 / 47)
    assert TokenFunctions().plot(meta)[:4] == b"\x89PNG"  # type: ignore[index]


def test_answers_that_read_meta_discourse_contradict_it(
    recorded: tuple[Store, ClaimData],
) -> None:
    store, data = recorded
    _run(store, data, AblationFake("meta"))
    meta, restate = TokenFunctions().check(load_toy(store))
    assert meta.verdict == restate.verdict == "contradicted"
    assert meta.effect is not None and restate.effect is not None
    assert (meta.effect.value, meta.effect.high) == (-100.0, -100.0)
    # neither restatement nor computation holds "verify": both keep every answer
    assert (restate.effect.value, restate.effect.high) == (0.0, 0.0)
    assert meta.extras["P(recorded answer), meta-discourse removed: upper bound"] == (
        pytest.approx(1 - WRONG_PROB)
    )


def test_refuses_without_experiment_rows_but_describes(
    recorded: tuple[Store, ClaimData],
) -> None:
    _, data = recorded
    (finding,) = TokenFunctions().check(data)
    assert finding.verdict == "insufficient" and finding.scope == MODEL
    assert "ponder experiment token-functions --model fake-m" in finding.reason
    total = sum(COUNTS.values())
    for category, count in COUNTS.items():
        assert finding.extras[f"share of pieces: {category}"] == pytest.approx(count / total)
    assert finding.extras["chains tagged"] == N_PROBLEMS
    assert TokenFunctions().plot(finding)[:4] == b"\x89PNG"  # type: ignore[index]


def test_refuses_with_no_chains_at_all(recorded: tuple[Store, ClaimData]) -> None:
    from dataclasses import replace

    _, data = recorded
    (finding,) = TokenFunctions().check(replace(data, chains=None))
    assert finding.verdict == "insufficient" and finding.scope == "all models"
    with pytest.raises(InputError, match="no recorded chains"):
        AblationExperiment().items(replace(data, chains=None), MODEL)


def test_refuses_too_few_problems(recorded: tuple[Store, ClaimData]) -> None:
    store, data = recorded
    _run(store, data, AblationFake(), limit=5)
    findings = TokenFunctions().check(load_toy(store))
    assert {f.verdict for f in findings} == {"insufficient"}
    assert all(f.n_problems == 5 and "needs 20" in f.reason for f in findings)


def test_resume_skips_done_chains(recorded: tuple[Store, ClaimData]) -> None:
    store, data = recorded
    first = _run(store, data, AblationFake(), limit=3)
    before = _rows(store)
    second = _run(store, data, AblationFake(), limit=5)
    assert (second.done, second.skipped) == (2, 3)
    after = _rows(store)
    assert set(before) <= set(after) and len(after) == 5 * 7
    assert first.run_id == second.run_id
    third_backend = AblationFake()
    third = _run(store, data, third_backend, limit=5)
    assert (third.done, third.skipped, third_backend.opened) == (0, 5, 0)


def test_failing_chain_writes_nothing_for_it(recorded: tuple[Store, ClaimData]) -> None:
    store, data = recorded
    summary = _run(store, data, AblationFake(fail_on=_problem_text(3)))
    assert summary.errors == 1 and summary.done == N_PROBLEMS - 1
    problems = {r[0] for r in _rows(store)}
    assert "p03" not in problems and len(problems) == N_PROBLEMS - 1


def test_bad_model_or_backend_write_nothing(recorded: tuple[Store, ClaimData]) -> None:
    store, data = recorded
    counts = store.counts()
    with pytest.raises(InputError, match="models with them: fake-m"):
        _run(store, data, AblationFake(model="no-such-model"))
    with pytest.raises(InputError, match="not usable: connection refused"):
        _run(store, data, AblationFake(unreachable=True))
    with pytest.raises(InputError, match="cannot continue a prefix"):
        _run(store, data, AblationFake(prefix=False))
    assert store.counts() == counts


def test_items_are_seeded_interleaved_and_cut(recorded: tuple[Store, ClaimData]) -> None:
    _, data = recorded
    items = AblationExperiment(seed=0).items(data, MODEL)
    assert [i.key for i in items] == [i.key for i in AblationExperiment(seed=0).items(data, MODEL)]
    assert [i.key for i in items] != [i.key for i in AblationExperiment(seed=1).items(data, MODEL)]
    assert sorted(1 + int(i.problem_id[1:]) % 4 for i in items[:4]) == [1, 2, 3, 4]
    first = items[0]
    assert first.original_extracted == str(sum(_numbers(int(first.problem_id[1:]))))
    assert "boxed" not in first.reasoning


def test_the_cli_factory_takes_its_options() -> None:
    experiment = TokenFunctions().experiment(seed=3)  # as `ponder experiment` without --draws
    assert (experiment.draws, experiment.seed) == (2, 3)
    assert set(experiment.settings) >= {"draws", "seed", "tagger", "prompts"}
    with pytest.raises(InputError, match="draws"):
        AblationExperiment(draws=0)


# -- the built-in sweep's real chains ---------------------------------------------------------


@pytest.fixture(scope="module")
def builtin_arith(tmp_path_factory: pytest.TempPathFactory) -> ClaimData:
    return builtin_claim_data(tmp_path_factory.mktemp("builtin"))


def test_tag_shares_on_builtin_chains(builtin_arith: ClaimData) -> None:
    findings = TokenFunctions().check(builtin_arith)
    by_model = {f.scope: f for f in findings}
    assert set(by_model) == {"qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"}
    assert {f.verdict for f in findings} == {"insufficient"}
    small, large = by_model["qwen2.5-coder-0.5b"], by_model["qwen2.5-coder-1.5b"]
    assert small.extras["chains tagged"] == large.extras["chains tagged"] == 640  # all chains
    # Computation is a small minority of the pieces; restating the problem is about twice
    # as common, and meta-discourse is close to computation in count.
    assert small.extras["share of pieces: computation"] == pytest.approx(0.126, abs=2e-3)
    assert large.extras["share of pieces: computation"] == pytest.approx(0.138, abs=2e-3)
    assert small.extras["share of pieces: restatement"] == pytest.approx(0.244, abs=2e-3)
    assert large.extras["share of pieces: meta-discourse"] == pytest.approx(0.077, abs=2e-3)
    for finding in findings:
        shares = [finding.extras[f"share of pieces: {c}"] for c in (COMPUTE, RESTATE, META, OTHER)]
        assert sum(shares) == pytest.approx(1.0)
    items = AblationExperiment().items(builtin_arith, "qwen2.5-coder-1.5b")
    assert len(items) > 150 and all("\\boxed{" not in i.reasoning for i in items[:20])
