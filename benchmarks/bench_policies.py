"""Fit and evaluate every policy family on synthetic outcome matrices of 1e4 to 1e6 rows.

Prints, per size and policy: fit, decide and replay seconds, and the ratio of the vectorized
replay to the straightforward per-problem reference replay of the same decisions (whose results
are asserted equal). Run: `python benchmarks/bench_policies.py [--sizes 10000 100000 1000000]`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import pandas as pd

from ponder.evaluate import OutcomeMatrix, ReplayResult, replay
from ponder.evaluate.catalog import FAMILIES, candidates
from ponder.evaluate.protocol import Candidate
from ponder.outcomes.reference import replay_reference
from ponder.policies import Config

N_CONFIGS_MODELS = 4
BUDGETS = (1024, 2048, 4096, 8192)
SAMPLES = 5
WORDS = (
    "triangle",
    "prime",
    "integer",
    "probability",
    "polynomial",
    "sequence",
    "circle",
    "remainder",
    "digits",
    "matrix",
    "function",
    "area",
)


def synthetic_matrix(n_rows: int, seed: int = 0) -> OutcomeMatrix:
    """Problems x (models x budgets + one no-think config) x 5 samples, ~n_rows cells.

    Accuracy rises with budget and model skill and falls with difficulty (a level 1-5 and a
    hidden part); costs are the tokens a capped generation spends; wrong answers come from a
    few distractors so votes split realistically.
    """
    rng = np.random.default_rng(seed)
    configs = [Config(f"m{i}", "think", b) for i in range(N_CONFIGS_MODELS) for b in BUDGETS]
    configs.append(Config("m0", "no-think", None))
    c_count = len(configs)
    n_problems = max(20, n_rows // (c_count * SAMPLES))
    level = rng.integers(1, 6, n_problems)
    hidden = rng.normal(0, 0.7, n_problems)
    difficulty = (level - 3) * 0.8 + hidden
    skill = np.array([0.3 * (i % N_CONFIGS_MODELS) for i in range(c_count)])
    budget_gain = np.array([np.log2(c.budget / 1024) * 0.6 if c.budget else -0.8 for c in configs])
    logit = skill[None, :] + budget_gain[None, :] - difficulty[:, None]
    p = 1 / (1 + np.exp(-logit))
    correct = (rng.uniform(size=(n_problems, c_count, SAMPLES)) < p[:, :, None]).astype(float)
    wrong = rng.integers(1, 4, size=correct.shape)
    answer = np.where(correct == 1, 0, wrong).astype(np.int32)
    caps = np.array([c.budget or 600 for c in configs], dtype=float)
    natural = rng.lognormal(
        np.log(600 * 2 ** (difficulty / 2 + 1))[:, None, None], 0.5, size=correct.shape
    )
    cost = np.minimum(natural, caps[None, :, None]).round()
    words = np.array(WORDS)
    text = [
        " ".join(rng.choice(words, size=3 + int(lv) * 2)) + f" with {int(lv) * 3} steps"
        for lv in level
    ]
    problems = pd.DataFrame(
        {
            "dataset": "synthetic",
            "problem_id": [f"p{i}" for i in range(n_problems)],
            "level": level.astype(float),
            "subject": rng.choice(["algebra", "geometry", "counting"], n_problems),
            "text": text,
        }
    )
    return OutcomeMatrix(problems, tuple(configs), correct, cost, cost.copy(), answer)


def _best_of(run: Callable[[], ReplayResult], times: int = 3) -> tuple[ReplayResult, float]:
    """The result of `run` and its fastest wall time over `times` runs."""
    best = float("inf")
    result = None
    for _ in range(times):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    assert result is not None
    return result, best


def bench(n_rows: int, families: list[str]) -> list[dict[str, object]]:
    matrix = synthetic_matrix(n_rows)
    half = matrix.n_problems // 2
    train, test = matrix.subset(range(half)), matrix.subset(range(half, matrix.n_problems))
    rows = []
    chosen: dict[str, list[Candidate]] = {}
    for cand in candidates(matrix, families):
        # One representative point per family: the middle of its sweep.
        chosen.setdefault(cand.family, []).append(cand)
    for family, cands in chosen.items():
        cand = cands[len(cands) // 2]
        policy = cand.make(train)
        t0 = time.perf_counter()
        policy.fit(test if not policy.servable else train)
        t1 = time.perf_counter()
        batch = policy.decide_batch(test.problems)
        t2 = time.perf_counter()
        # Replays are timed best of 3 (both of them): on a shared machine a single run of a
        # few milliseconds mostly measures the neighbours.
        fast, fast_s = _best_of(partial(replay, test, batch))
        slow, slow_s = _best_of(partial(replay_reference, test, batch))
        np.testing.assert_allclose(fast.correct, slow.correct, rtol=1e-12)
        np.testing.assert_allclose(fast.cost, slow.cost, rtol=1e-12)
        rows.append(
            {
                "rows": int(matrix.correct.size),
                "family": family,
                "label": cand.label,
                "fit_s": t1 - t0,
                "decide_s": t2 - t1,
                "replay_s": fast_s,
                "reference_s": slow_s,
                "speedup": slow_s / max(fast_s, 1e-9),
                "accuracy": fast.accuracy,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    args = parser.parse_args()
    header = (
        f"{'rows':>9} {'family':<22} {'fit s':>8} {'decide s':>9} {'replay s':>9} "
        f"{'reference s':>12} {'speedup':>8} {'accuracy':>9}"
    )
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        start = time.perf_counter()
        for row in bench(n, args.families):
            print(
                f"{row['rows']:>9} {row['family']:<22} {row['fit_s']:>8.3f} "
                f"{row['decide_s']:>9.3f} {row['replay_s']:>9.4f} {row['reference_s']:>12.3f} "
                f"{row['speedup']:>7.0f}x {row['accuracy']:>9.3f}"
            )
        print(f"{'':>9} total for {n:,} rows: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
