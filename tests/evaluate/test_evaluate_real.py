"""The outcome matrix and replay on the real Reasoning Budget Sweep, checked against the CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ponder.evaluate import OutcomeMatrix, replay
from ponder.policies import Config, Uniform


@pytest.fixture
def math500(math500_matrix: OutcomeMatrix) -> OutcomeMatrix:
    return math500_matrix


def test_matrix_shape_and_problem_info(math500: OutcomeMatrix) -> None:
    assert math500.n_problems == 100
    assert math500.correct.shape[2] == 3
    assert math500.problems["level"].between(1, 5).all()
    assert math500.problems["text"].notna().all()


def test_uniform_replay_equals_the_csv(math500: OutcomeMatrix, shared_data: Path) -> None:
    raw = pd.read_csv(shared_data / "reasoning_budget_sweep/reasoning_budget_sweep_math500.csv")
    # One-sample decisions are scored over every recorded seed: per problem the mean over its
    # seeds, then the mean over problems.
    for (model, budget), group in raw.groupby(["model", "budget"]):
        mode = "no-think" if model == "qwen25math-1.5b" else "think"
        config = Config(model, mode, int(budget))
        c = math500.config_index(config)
        if (math500.n_samples[:, c] == 0).any():
            continue  # ii-thought at 8192 lacks some problems for seed 2
        result = replay(math500, Uniform(config).fit(math500).decide_batch(math500.problems))
        per_problem = group.groupby("item_id")[["correct", "n_new_tokens"]].mean()
        assert result.accuracy == pytest.approx(per_problem["correct"].mean())
        assert result.mean_cost == pytest.approx(per_problem["n_new_tokens"].mean())


def test_majority_of_three_matches_a_direct_vote(math500: OutcomeMatrix) -> None:
    config = Config("r1-1.5b", "think", 8192)
    c = math500.config_index(config)
    result = replay(math500, Uniform(config, samples=3).fit(math500).decide_batch(math500.problems))
    answers, correct = math500.answer[:, c, :], math500.correct[:, c, :]
    expected = []
    for a, y in zip(answers, correct, strict=True):
        votes = {code: int((a == code).sum()) for code in a if code >= 0}
        if not votes:
            expected.append(0.0)
            continue
        top = max(votes.values())
        leader = next(code for code in a if code >= 0 and votes[code] == top)
        expected.append(float(y[list(a).index(leader)]))
    assert result.correct.tolist() == expected
    assert np.all(result.samples == 3)
