"""The vectorized replay agrees with the per-problem reference on random plans and data."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from ponder.evaluate import OutcomeMatrix, replay
from ponder.outcomes.reference import replay_reference
from ponder.policies import Config, Decision, DecisionBatch, Step, StopRule

CONFIGS = (Config("a", "think", 100), Config("b", "think", 1000), Config("c", "no-think", None))
S = 6


def _matrix(seed: int, n: int) -> OutcomeMatrix:
    rng = np.random.default_rng(seed)
    answer = rng.integers(-1, 3, size=(n, len(CONFIGS), S))
    correct = (answer == 0).astype(float)
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
    np.testing.assert_array_equal(fast.correct, slow.correct)
    np.testing.assert_array_equal(fast.cost, slow.cost)
    np.testing.assert_array_equal(fast.answered, slow.answered)
    np.testing.assert_array_equal(fast.samples, slow.samples)
    np.testing.assert_array_equal(fast.steps, slow.steps)
