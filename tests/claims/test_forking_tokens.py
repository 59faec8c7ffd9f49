"""Claim 7 (forking tokens): the resampling experiment on a fake engine, and the descriptive
figures on the built-in sweep's real chains."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
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
    load_toy,
    record_ladder,
    run_live,
    toy_problems,
    toy_run,
)

from ponder.backends import Sampling, Segment
from ponder.backends.fake import true_answer
from ponder.claims import ClaimData
from ponder.claims.experiments import ExperimentSummary
from ponder.claims.forking_tokens import (
    HIGH_MODE,
    NULL_MODE,
    OTHER_MODE,
    TEMPERATURE,
    TOP_P,
    ForkingExperiment,
    ForkingTokens,
    pick_positions,
)
from ponder.errors import InputError
from ponder.store import Store

LENGTH = 40  # words of every fake chain; the last one is \boxed{answer}
N_PROBLEMS = 24
MODEL = "fake-m"


class ForkChain(WordChain):
    """Token t (1-based) has entropy 2.0 when t % 5 == 0, else 0.05. A sampled chain writes
    `x<t>` instead of `w<t>` at those tokens (the fork); a chain holding a drawn word answers
    true + 1 when the fork is consequential, else the true answer. With ``refeed_noise`` a
    chain continued from a re-fed prefix answers true + 2 whatever it holds (an engine whose
    continuation of re-fed text drifts)."""

    with_entropy = True

    def __init__(
        self, answer: int, sampling: Sampling, consequential: bool, refeed_noise: bool = False
    ) -> None:
        super().__init__(LENGTH)
        self.answer, self.sampling, self.consequential = answer, sampling, consequential
        self.refeed_noise = refeed_noise
        self.refed = False

    def final(self) -> int:
        if self.refed and self.refeed_noise:
            return self.answer + 2
        forked = any(w.startswith("x") for w in self.words)
        return self.answer + 1 if forked and self.consequential else self.answer

    def word(self, t: int) -> str:
        return f"x{t}" if t % 5 == 0 and not self.sampling.greedy else f"w{t}"

    def entropy(self, t: int) -> float:
        return 2.0 if t % 5 == 0 else 0.05

    async def append(self, text: str) -> int:
        self.refed = True
        return await super().append(text)

    async def fork(self, cue: str, max_tokens: int, stop: tuple[str, ...] = ()) -> Segment:
        digits = str(self.final())
        return Segment(digits, len(digits), True, prompt_tokens=3)


class ForkFake(FakeBackend):
    """A backend of ForkChains; `fail_on` makes sampled chains of matching problems fail,
    `unreachable` fails the upstream check, `skew` makes greedy replays differ."""

    name = "forkfake"
    entropy = True

    def __init__(
        self,
        *,
        consequential: bool = True,
        model: str = MODEL,
        fail_on: str | None = None,
        unreachable: bool = False,
        skew: bool = False,
        refeed_noise: bool = False,
    ) -> None:
        super().__init__(model=model, fail_on=fail_on, unreachable=unreachable)
        self.consequential, self.refeed_noise, self.skew = consequential, refeed_noise, skew

    def fails(self, sampling: Sampling) -> bool:
        return not sampling.greedy

    def make_chain(self, text: str, sampling: Sampling) -> ForkChain:
        kind = _Skewed if self.skew and sampling.greedy else ForkChain
        return kind(true_answer(text), sampling, self.consequential, self.refeed_noise)


class _Skewed(ForkChain):
    """A greedy chain whose words differ from the recorded ones (`v<t>`)."""

    def word(self, t: int) -> str:
        return f"v{t}"


def record_chains(store: Store, n: int = N_PROBLEMS) -> ClaimData:
    """A sweep-like record: per problem one greedy ladder (16, 32, 64) with its chain."""
    problems = toy_problems(n)
    run = toy_run("src/fake-m", MODEL)
    begin_toy_sweep(store, problems, [run])
    backend = ForkFake()
    for problem in problems.to_dict("records"):
        chain_id = f"c-{problem['problem_id']}"
        record_ladder(
            store, backend, problem, run, mode="think-greedy", rungs=[16, 32, 64], chain_id=chain_id
        )
    return load_toy(store)


def _run(
    store: Store, data: ClaimData, backend: ForkFake, limit: int = N_PROBLEMS
) -> ExperimentSummary:
    return run_live(store, data, ForkingExperiment(positions=4, seed=0), backend, limit)


def _fork_rows(store: Store) -> list[tuple[Any, ...]]:
    return store.query(
        "SELECT problem_id, mode, budget, extracted_answer, reasoning_tokens, entropy_tail "
        "FROM outcomes WHERE run_id LIKE 'claims/forking-tokens/%' ORDER BY 1, 2, 3"
    )


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[tuple[Store, ClaimData]]:
    with Store(tmp_path / "s.sqlite") as store:
        yield store, record_chains(store)


def test_decoding_is_the_sweeps() -> None:
    from ponder.sweep.execute import DEFAULT_TEMPERATURE, DEFAULT_TOP_P

    assert (TEMPERATURE, TOP_P) == (DEFAULT_TEMPERATURE, DEFAULT_TOP_P)


def test_consequential_forks_support_the_claim(recorded: tuple[Store, ClaimData]) -> None:
    store, data = recorded
    summary = _run(store, data, ForkFake(consequential=True))
    assert (summary.done, summary.errors) == (N_PROBLEMS, 0)
    rows = _fork_rows(store)
    # 4 high + 4 other + 1 control per chain; high positions are the fake's forks (t % 5 == 0)
    assert len(rows) == N_PROBLEMS * 9
    highs = [r for r in rows if r[1] == HIGH_MODE]
    assert all((int(r[2]) + 1) % 5 == 0 and r[5] == pytest.approx(2.0) for r in highs)
    others = [r for r in rows if r[1] == OTHER_MODE]
    assert all(r[4] is not None for r in others)  # continued although the token was kept
    findings = ForkingTokens().check(load_toy(store))
    assert [f.scope for f in findings] == [MODEL]
    finding = findings[0]
    assert finding.verdict == "supported"
    assert finding.n_problems == N_PROBLEMS
    assert finding.effect is not None
    assert finding.effect.value == pytest.approx(100.0)
    assert finding.extras["answers changed, high-entropy positions"] == 1.0
    assert finding.extras["answers changed, other positions"] == 0.0
    assert finding.extras["control: answers changed with nothing resampled"] == 0.0
    assert finding.extras["share of tokens above 1 nat"] == pytest.approx(8 / 40)
    assert ForkingTokens().plot(finding)[:4] == b"\x89PNG"  # type: ignore[index]


def test_inconsequential_forks_contradict_it(recorded: tuple[Store, ClaimData]) -> None:
    store, data = recorded
    _run(store, data, ForkFake(consequential=False))
    finding = ForkingTokens().check(load_toy(store))[0]
    assert finding.verdict == "contradicted"
    assert finding.effect is not None
    assert (finding.effect.value, finding.effect.high) == (0.0, 0.0)
    # the high-entropy tokens were drawn differently every time, and it did not matter
    assert finding.extras["token changed, high-entropy positions"] == 1.0
    assert finding.extras["answers changed when the token changed, high-entropy"] == 0.0


def test_refeed_noise_is_not_credited_to_the_high_arm(
    recorded: tuple[Store, ClaimData],
) -> None:
    """An engine whose continuation of re-fed text changes every answer, with forks that do
    not matter: both arms change every answer, so the gap is 0, not the 100 points that
    skipping the continuation of unchanged (mostly low-entropy) tokens would give."""
    store, data = recorded
    _run(store, data, ForkFake(consequential=False, refeed_noise=True))
    finding = ForkingTokens().check(load_toy(store))[0]
    assert finding.verdict == "contradicted"
    assert finding.effect is not None and finding.effect.value == 0.0
    assert finding.extras["answers changed, other positions"] == 1.0
    assert finding.extras["token changed, other positions"] == 0.0
    assert finding.extras["token changed, high-entropy positions"] == 1.0
    assert finding.extras["control: answers changed with nothing resampled"] == 1.0


def test_refuses_without_experiment_rows_but_describes(
    recorded: tuple[Store, ClaimData],
) -> None:
    _, data = recorded
    (finding,) = ForkingTokens().check(data)
    assert finding.verdict == "insufficient"
    assert "ponder experiment forking-tokens --model fake-m" in finding.reason
    assert finding.extras["share of entropy in the top 20% of tokens"] == pytest.approx(
        8 * 2.0 / (8 * 2.0 + 32 * 0.05),
        rel=1e-3,  # entropies are stored as float16
    )
    assert finding.table is not None and set(finding.table["panel"]) == {"concentration"}


def test_refuses_too_few_problems(recorded: tuple[Store, ClaimData]) -> None:
    store, data = recorded
    _run(store, data, ForkFake(), limit=5)
    finding = ForkingTokens().check(load_toy(store))[0]
    assert finding.verdict == "insufficient"
    assert finding.n_problems == 5
    assert "needs 20" in finding.reason


def test_resume_skips_done_chains(recorded: tuple[Store, ClaimData]) -> None:
    store, data = recorded
    first = _run(store, data, ForkFake(), limit=3)
    before = _fork_rows(store)
    backend = ForkFake()
    second = _run(store, data, backend, limit=5)
    assert (second.done, second.skipped) == (2, 3)
    after = _fork_rows(store)
    assert set(before) <= set(after) and len(after) == 5 * 9
    assert first.run_id == second.run_id
    third_backend = ForkFake()
    third = _run(store, data, third_backend, limit=5)
    assert (third.done, third.skipped, third_backend.opened) == (0, 5, 0)


def test_failing_chain_writes_nothing_for_it(recorded: tuple[Store, ClaimData]) -> None:
    store, data = recorded
    needle = add_problem(3)
    summary = _run(store, data, ForkFake(fail_on=needle))
    assert summary.errors == 1 and summary.done == N_PROBLEMS - 1
    assert "engine crashed" in summary.error_messages[0]
    problems = {r[0] for r in _fork_rows(store)}
    assert "p03" not in problems and len(problems) == N_PROBLEMS - 1


def test_bad_model_or_dead_backend_write_nothing(recorded: tuple[Store, ClaimData]) -> None:
    store, data = recorded
    counts = store.counts()
    with pytest.raises(InputError, match="models with them: fake-m"):
        _run(store, data, ForkFake(model="no-such-model"))
    with pytest.raises(InputError, match="not usable: connection refused"):
        _run(store, data, ForkFake(unreachable=True))
    assert store.counts() == counts
    assert not store.query("SELECT 1 FROM sweeps WHERE sweep_id LIKE 'claims/%'")


def test_a_replay_that_differs_is_an_error_not_rows(recorded: tuple[Store, ClaimData]) -> None:
    store, data = recorded
    summary = _run(store, data, ForkFake(skew=True), limit=2)
    assert summary.done == 0 and summary.errors == N_PROBLEMS
    assert "differs from the recorded chain at token 1" in summary.error_messages[0]
    assert not _fork_rows(store)


def test_positions_are_matched_by_tenth() -> None:
    rng = np.random.default_rng(0)
    entropies = [2.0 if (k + 1) % 5 == 0 else 0.05 for k in range(100)]
    pairs = pick_positions(entropies, list(range(1, 99)), 6, rng)
    assert len(pairs) == 6
    for high, other in pairs:
        assert entropies[high] == 2.0 and entropies[other] == 0.05
        assert high // 10 == other // 10
    assert len({o for _, o in pairs}) == 6
    assert pick_positions([1.0] * 30, list(range(1, 29)), 4, rng) == []  # no high minority


def test_items_are_seeded_and_interleaved_by_level(recorded: tuple[Store, ClaimData]) -> None:
    _, data = recorded
    items = ForkingExperiment(seed=0).items(data, MODEL)
    again = ForkingExperiment(seed=0).items(data, MODEL)
    other = ForkingExperiment(seed=1).items(data, MODEL)
    assert [i.key for i in items] == [i.key for i in again] != [i.key for i in other]
    levels = [1 + int(i.problem_id[1:]) % 4 for i in items[:4]]
    assert sorted(levels) == [1, 2, 3, 4]
    assert {i.cap for i in items} == {64} and all(i.finished for i in items)


def test_rows_record_position_entropy_and_original(recorded: tuple[Store, ClaimData]) -> None:
    store, data = recorded
    _run(store, data, ForkFake(), limit=1)
    rows = store.query(
        "SELECT mode, budget, extra_json, correct FROM outcomes "
        "WHERE run_id LIKE 'claims/forking-tokens/%'"
    )
    modes = sorted(r[0] for r in rows)
    assert modes.count(HIGH_MODE) == modes.count(OTHER_MODE) == 4
    assert modes.count(NULL_MODE) == 1
    for mode, budget, extra_json, correct in rows:
        extra = json.loads(extra_json)
        assert extra["position"] == budget
        assert extra["token_changed"] == (mode == HIGH_MODE)
        assert extra["answer_changed"] == (mode == HIGH_MODE)
        assert correct == (0.0 if mode == HIGH_MODE else 1.0)


# -- the built-in sweep's real chains ---------------------------------------------------------


@pytest.fixture(scope="module")
def builtin_arith(tmp_path_factory: pytest.TempPathFactory) -> ClaimData:
    return builtin_claim_data(tmp_path_factory.mktemp("builtin"))


def test_descriptive_figures_on_builtin_chains(builtin_arith: ClaimData) -> None:
    findings = ForkingTokens().check(builtin_arith)
    by_model = {f.scope: f for f in findings}
    assert set(by_model) == {"qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"}
    small, large = by_model["qwen2.5-coder-0.5b"], by_model["qwen2.5-coder-1.5b"]
    assert {f.verdict for f in findings} == {"insufficient"}
    assert small.extras["chains with entropies"] == 640  # 160 greedy + 480 sampled
    # A minority of tokens is uncertain, and it carries most of the entropy.
    assert small.extras["share of tokens above 1 nat"] == pytest.approx(0.1234, abs=1e-3)
    assert large.extras["share of tokens above 1 nat"] == pytest.approx(0.0779, abs=1e-3)
    assert small.extras["share of entropy in the top 20% of tokens"] == pytest.approx(
        0.774, abs=2e-3
    )
    assert large.extras["share of entropy in the top 20% of tokens"] == pytest.approx(
        0.844, abs=2e-3
    )
    assert small.extras["median entropy (nats)"] < 0.05
    assert ForkingTokens().plot(small)[:4] == b"\x89PNG"  # type: ignore[index]
    items = ForkingExperiment().items(builtin_arith, "qwen2.5-coder-0.5b")
    assert len(items) == 160 and items[0].cap == 512


def test_two_models_are_also_pooled_by_problem(recorded: tuple[Store, ClaimData]) -> None:
    store, data = recorded
    _run(store, data, ForkFake(consequential=True))
    one = load_toy(store)
    assert one.chains is not None and one.experiments is not None

    def twin(rows: pd.DataFrame) -> pd.DataFrame:
        return rows.assign(
            model="fake-n",
            chain_id=rows["chain_id"] + "-n",
            run_id=rows["run_id"].str.replace("fake-m", "fake-n"),
        )

    chains = pd.concat([one.chains, one.chains.assign(chain_id=one.chains["chain_id"] + "-n")])
    both = replace(
        one,
        outcomes=pd.concat([one.outcomes, twin(one.outcomes)]),
        experiments=pd.concat([one.experiments, twin(one.experiments)]),
        chains=chains,
    )
    findings = ForkingTokens().check(both)
    assert [f.scope for f in findings] == ["fake-m", "fake-n", "all models"]
    pooled = findings[-1]
    assert pooled.verdict == "supported" and pooled.n_problems == N_PROBLEMS
    assert pooled.effect is not None and pooled.effect.value == pytest.approx(100.0)
