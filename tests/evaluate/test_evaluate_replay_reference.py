"""The vectorized replay agrees with the per-problem reference on random plans and data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ponder.evaluate import OutcomeMatrix, ReplayError, replay
from ponder.outcomes.reference import replay_reference
from ponder.policies import Config, Decision, DecisionBatch, Step, StopRule

CONFIGS = (Config("a", "think", 100), Config("b", "think", 1000), Config("c", "no-think", None))
S = 6


def _matrix(seed: int, n: int, unknown: bool = False) -> OutcomeMatrix:
    """Random codes; with `unknown`, some answers are not recorded (-2) and correctness is
    drawn independently of the codes, as in a user's CSV with only a `correct` column."""
    rng = np.random.default_rng(seed)
    answer = rng.integers(-2 if unknown else -1, 3, size=(n, len(CONFIGS), S))
    correct = (answer == 0).astype(float)
    if unknown:
        correct = np.where(answer == -2, rng.integers(0, 2, size=answer.shape), correct)
    cost = rng.integers(1, 50, size=answer.shape).astype(float)
    problems = pd.DataFrame(
        {
            "dataset": "d",
            "problem_id": [str(i) for i in range(n)],
            "level": np.nan,
            "subject": None,
            "text": None,
        }
    )
    return OutcomeMatrix(problems, CONFIGS, correct, cost, cost.copy(), answer.astype(np.int32))


steps = st.builds(
    Step,
    config=st.sampled_from(CONFIGS),
    samples=st.integers(1, 3),
    aggregate=st.sampled_from(["first", "majority"]),
    escalate=st.sampled_from(["never", "no_answer", "disagree", "always"]),
    stop=st.none() | st.builds(StopRule, votes=st.integers(1, 3), margin=st.integers(1, 2)),
)
decisions = st.lists(steps, min_size=1, max_size=2).map(lambda s: Decision(tuple(s)))


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    plans=st.lists(decisions, min_size=1, max_size=3),
    data=st.data(),
)
def test_vectorized_replay_equals_reference(
    seed: int, plans: list[Decision], data: st.DataObject
) -> None:
    n = 12
    matrix = _matrix(seed, n)
    index = np.array(data.draw(st.lists(st.integers(0, len(plans) - 1), min_size=n, max_size=n)))
    batch = DecisionBatch(tuple(plans), index)
    fast, slow = replay(matrix, batch), replay_reference(matrix, batch)
    np.testing.assert_allclose(fast.correct, slow.correct, rtol=1e-12)
    np.testing.assert_allclose(fast.cost, slow.cost, rtol=1e-12)
    np.testing.assert_allclose(fast.answered, slow.answered, rtol=1e-12)
    np.testing.assert_array_equal(fast.samples, slow.samples)
    np.testing.assert_array_equal(fast.steps, slow.steps)


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    plans=st.lists(decisions, min_size=1, max_size=3),
    data=st.data(),
)
def test_replay_with_unrecorded_answers_equals_reference(
    seed: int, plans: list[Decision], data: st.DataObject
) -> None:
    """Either both replays refuse (a rule needs answers that were not recorded) or both agree."""
    n = 12
    matrix = _matrix(seed, n, unknown=True)
    index = np.array(data.draw(st.lists(st.integers(0, len(plans) - 1), min_size=n, max_size=n)))
    batch = DecisionBatch(tuple(plans), index)
    try:
        slow = replay_reference(matrix, batch)
    except ReplayError:
        with pytest.raises(ReplayError, match="needs the extracted answers"):
            replay(matrix, batch)
        return
    fast = replay(matrix, batch)
    np.testing.assert_allclose(fast.correct, slow.correct, rtol=1e-12)
    np.testing.assert_allclose(fast.cost, slow.cost, rtol=1e-12)
    np.testing.assert_allclose(fast.answered, slow.answered, rtol=1e-12)
    np.testing.assert_array_equal(fast.samples, slow.samples)


def test_one_sample_decision_is_scored_over_all_recorded_samples() -> None:
    """Brute force: a single-sample configuration's score is the mean over every seed."""
    matrix = _matrix(3, 12)
    # Leave some samples unrecorded: the mean runs over what was recorded.
    correct, cost = matrix.correct.copy(), matrix.cost.copy()
    correct[0, 0, 3:], cost[0, 0, 3:] = np.nan, np.nan
    matrix = OutcomeMatrix(matrix.problems, CONFIGS, correct, cost, cost.copy(), matrix.answer)
    result = replay(matrix, DecisionBatch.same(Decision((Step(CONFIGS[0]),)), 12))
    for p in range(12):
        seeds = [s for s in range(S) if not np.isnan(correct[p, 0, s])]
        assert result.correct[p] == pytest.approx(sum(correct[p, 0, s] for s in seeds) / len(seeds))
        assert result.cost[p] == pytest.approx(sum(cost[p, 0, s] for s in seeds) / len(seeds))
    assert len([s for s in range(S) if not np.isnan(correct[0, 0, s])]) == 3
    # A vote still draws samples in recorded order: the first three, not the mean.
    vote = replay(matrix, DecisionBatch.same(Decision((Step(CONFIGS[0], samples=3),)), 12))
    for p in range(12):
        assert vote.cost[p] == pytest.approx(cost[p, 0, :3].sum())
