"""SweetSpotCap: the best budget, or the cheapest one within noise of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _matrices import held_out_direct

from ponder.evaluate import OutcomeMatrix, replay
from ponder.policies import Config, PolicyError, Step, Uniform, load_policy, save_policy
from ponder.policies.sweetspot import SweetSpotCap

A1, A2, A4 = (Config("a", "think", b) for b in (1024, 2048, 4096))
B2, B4 = Config("b", "think", 2048), Config("b", "think", 4096)
NONE = Config("a", "no-think", None)  # uncapped: never a sweet spot


def _matrix(n: int = 40) -> OutcomeMatrix:
    """Model a: 1024 solves 20, 2048 solves 36, 4096 solves 37 (a superset). Model b: 30."""
    solved = {A1: 20, A2: 36, A4: 37, B2: 28, B4: 30, NONE: 40}
    configs = tuple(solved)
    correct = np.zeros((n, len(configs), 1))
    for c, config in enumerate(configs):
        correct[: solved[config], c, 0] = 1.0
    cost = np.tile(
        np.array([c.budget or 100 for c in configs], dtype=float)[None, :, None], (n, 1, 1)
    )
    problems = pd.DataFrame(
        {"dataset": "toy", "problem_id": [f"s{i}" for i in range(n)], "level": np.nan}
    )
    problems["subject"], problems["text"] = None, None
    answer = np.where(correct == 1, 0, 1).astype(np.int32)
    return OutcomeMatrix(problems, configs, correct, cost * 0.5, cost * 0.5, answer)


def test_best_and_noise_tolerance() -> None:
    m = _matrix()
    best = SweetSpotCap("best").fit(m)
    assert best.config_ == A4
    noise = SweetSpotCap("noise", n_boot=500).fit(m)
    assert noise.config_ == A2  # one problem apart from the best: within noise; 1024 is not
    row = next(r for r in noise.table_ if r["model"] == "a")
    assert row["budgets"] == [1024, 2048, 4096] and row["best_budget"] == 4096
    batch = noise.decide_batch(m.problems)
    assert len(batch.decisions) == 1 and batch[3].steps[0].config == A2
    uniform = Uniform(A2).fit(m).decide_batch(m.problems)
    assert replay(m, batch).accuracy == replay(m, uniform).accuracy == 36 / 40


def test_model_and_mode_parameters() -> None:
    m = _matrix()
    assert SweetSpotCap("best", model="b").fit(m).config_ == B4
    assert SweetSpotCap("noise", mode="think", model="b").fit(m).config_ in (B2, B4)
    with pytest.raises(PolicyError, match="known: a \\(think\\), b \\(think\\)"):
        SweetSpotCap(model="zzz").fit(m)
    with pytest.raises(PolicyError, match="tolerance"):
        SweetSpotCap("loose")  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match="at least 2 training problems"):
        SweetSpotCap().fit(m.subset([0]))
    with pytest.raises(PolicyError, match="at least 2 training problems"):
        SweetSpotCap().fit(m.subset([]))


def test_round_trip(tmp_path: Path) -> None:
    m = _matrix()
    policy = SweetSpotCap().fit(m)
    loaded = load_policy(save_policy(policy, tmp_path / "s.json"))
    assert isinstance(loaded, SweetSpotCap)
    assert loaded.config_ == policy.config_ and loaded.table_ == policy.table_
    a, b = policy.decide_batch(m.problems), loaded.decide_batch(m.problems)
    assert a.decisions == b.decisions
    np.testing.assert_array_equal(a.index, b.index)


@pytest.fixture(scope="module")
def halves(math500_matrix: OutcomeMatrix) -> tuple[OutcomeMatrix, OutcomeMatrix]:
    m = math500_matrix  # tests/conftest.py: the recorded MATH-500 sweep, imported once
    order = np.random.default_rng(3).permutation(m.n_problems)
    return m.subset(np.sort(order[:50])), m.subset(np.sort(order[50:]))


def test_real_data_sweet_spot(halves: tuple[OutcomeMatrix, OutcomeMatrix]) -> None:
    train, test = halves
    best = SweetSpotCap("best").fit(train)
    noise = SweetSpotCap("noise").fit(train)
    assert best.config_.model == noise.config_.model  # the model is chosen by its peak
    assert noise.config_.budget is not None and best.config_.budget is not None
    assert noise.config_.budget <= best.config_.budget
    for policy in (best, noise):
        batch = policy.decide_batch(test.problems)
        assert {d.steps[0] for d in batch.decisions} == {Step(policy.config_)}
        result = replay(test, batch)
        # Every problem gets the chosen cap: the column means of that configuration.
        accuracy, mean_cost = held_out_direct(test, [policy.config_] * test.n_problems)
        assert result.accuracy == pytest.approx(accuracy, abs=1e-12)
        assert result.mean_cost == pytest.approx(mean_cost, rel=1e-12)
    r1 = SweetSpotCap("best", model="r1-1.5b").fit(train)
    assert r1.config_.model == "r1-1.5b"
    assert {r["model"] for r in r1.table_} == {"r1-1.5b"}
