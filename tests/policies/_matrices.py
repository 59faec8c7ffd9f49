"""Small hand-built outcome matrices for the sequential-policy tests."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ponder.evaluate import OutcomeMatrix
from ponder.policies import Config


def answer_matrix(
    answers: Mapping[Config, list[list[int]]],
    per_sample: Mapping[Config, float] | None = None,
    default_cost: float = 1.0,
) -> OutcomeMatrix:
    """A matrix from answer codes per config (code 0 is right, -1 no answer).

    A sample costs its config's `per_sample` price plus 0.1 per slot, so sums are checkable.
    """
    configs = tuple(answers)
    codes = np.stack([np.asarray(answers[c], dtype=np.int32) for c in configs], axis=1)
    n, _, s = codes.shape
    base = np.array([(per_sample or {}).get(c, default_cost) for c in configs])
    cost = base[None, :, None] + 0.1 * np.arange(s)[None, None, :] + np.zeros(codes.shape)
    problems = pd.DataFrame(
        {
            "dataset": "d",
            "problem_id": [f"p{i}" for i in range(n)],
            "level": np.nan,
            "subject": None,
            "text": None,
        }
    )
    return OutcomeMatrix(
        problems=problems,
        configs=configs,
        correct=(codes == 0).astype(float),
        cost=cost,
        tokens=cost.copy(),
        answer=codes,
    )


def held_out_direct(test: OutcomeMatrix, configs: list[Config]) -> tuple[float, float]:
    """Held-out accuracy and cost read straight off the arrays: for each problem, the mean
    over its recorded samples of the configuration it was given (no replay code involved)."""
    acc, cost = [], []
    for i, config in enumerate(configs):
        c = list(test.configs).index(config)
        acc.append(np.nanmean(test.correct[i, c]))
        cost.append(np.nanmean(test.cost[i, c]))
    return float(np.mean(acc)), float(np.mean(cost))
