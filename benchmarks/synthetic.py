"""Synthetic outcome frames shaped like the recorded budget sweeps, for benchmarks.

Shape: models x datasets x (hard-cap budgets + one no-budget "no-think" run) x seeds x
problems. Each (model, problem, seed) has one latent generation: a natural length drawn from
a log-normal that grows with problem difficulty, and whether it is right if it finishes.
Every cap then sees a prefix of that same generation (so derived caps are exact, as they are
for real max_new_tokens runs): output_tokens = min(length, cap), truncated = length > cap,
and a truncated sample has no answer. Wrong answers come from three distractors per problem,
so maj@k has realistic vote splits and ties. Rows are dropped at random to hit ``n_rows``
exactly, which also leaves some cells with missing samples, as in real sweeps.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ponder.types import OUTCOME_COLUMNS

# (name, number of problems, has known levels, median think length in tokens)
DATASETS: list[tuple[str, int, bool, float]] = [
    ("aime24", 30, False, 9000.0),
    ("aime25", 30, False, 10000.0),
    ("math500", 500, True, 2500.0),
    ("gsm8k", 1319, False, 900.0),
]
BUDGETS: list[float] = [1024.0, 2048.0, 4096.0, 8192.0, 16384.0]
ROWS_PER_MODEL_SEED = sum(d[1] for d in DATASETS) * (len(BUDGETS) + 1)


def model_budgets(i: int) -> list[float]:
    """Budgets model i was run at: like real sweeps, not every model has every cap."""
    if i % 3 == 1:
        return [b for b in BUDGETS if b != 2048.0]
    if i % 3 == 2:
        return [b for b in BUDGETS if b <= 4096.0 and b != 1024.0]
    return list(BUDGETS)


def _n_rows_full(n_models: int, n_seeds: int) -> int:
    per_config = sum(d[1] for d in DATASETS) * n_seeds
    return sum((len(model_budgets(i)) + 1) * per_config for i in range(n_models))


def synthetic_outcomes(n_rows: int, seed: int = 0) -> pd.DataFrame:
    """An outcome frame with every OUTCOME_COLUMNS column and exactly ``n_rows`` rows."""
    rng = np.random.default_rng(seed)
    combos = max(1, math.ceil(n_rows / ROWS_PER_MODEL_SEED))
    n_models = max(1, math.ceil(math.sqrt(combos)))
    n_seeds = min(16, math.ceil(combos / n_models))
    while _n_rows_full(n_models, n_seeds) < n_rows:
        n_models += 1
    models = [f"model-{i}" for i in range(n_models)]
    skill = rng.normal(0.0, 0.6, n_models)
    verbosity = rng.normal(0.0, 0.25, n_models)

    frames = []
    for d_name, n_prob, has_level, median_len in DATASETS:
        difficulty = rng.normal(0.0, 1.0, n_prob)
        level = np.clip(np.round(3 + 1.2 * difficulty), 1, 5) if has_level else None
        # Latent generation per (model, problem, seed).
        shape = (n_models, n_prob, n_seeds)
        log_len = (
            np.log(median_len)
            + verbosity[:, None, None]
            + 0.35 * difficulty[None, :, None]
            + rng.normal(0.0, 0.5, shape)
        )
        length = np.maximum(40.0, np.round(np.exp(log_len)))
        p_right = 1.0 / (
            1.0 + np.exp(-(1.2 + skill[:, None, None] - 1.3 * difficulty[None, :, None]))
        )
        right = rng.random(shape) < p_right
        distractor = rng.integers(1, 4, shape)  # which wrong answer, if wrong
        short_len = np.maximum(20.0, np.round(length * 0.12))
        right_short = rng.random(shape) < p_right * 0.7

        configs = [("think", b, "hard_cap") for b in BUDGETS] + [("no-think", np.nan, "none")]
        for mode, budget, kind in configs:
            if mode == "think":
                tokens = np.minimum(length, budget)
                truncated = length > budget
                correct = right & ~truncated
                answer_code = np.where(truncated, -1, np.where(right, 0, distractor))
            else:
                tokens = short_len
                truncated = np.zeros(shape, dtype=bool)
                correct = right_short
                answer_code = np.where(right_short, 0, distractor)
            m_idx, p_idx, s_idx = (a.ravel() for a in np.indices(shape))
            flat_tokens = tokens.ravel()
            answer_tokens = np.where(truncated.ravel(), 0.0, np.minimum(flat_tokens, 150.0))
            frames.append(
                pd.DataFrame(
                    {
                        "_model": m_idx,
                        "dataset": d_name,
                        "_problem": p_idx,
                        "mode": mode,
                        "budget": budget,
                        "sample_idx": s_idx,
                        "prompt_tokens": 80.0 + 3.0 * p_idx % 200,
                        "reasoning_tokens": flat_tokens - answer_tokens,
                        "answer_tokens": answer_tokens,
                        "output_tokens": flat_tokens,
                        "latency_s": flat_tokens / 60.0 + rng.exponential(0.3, flat_tokens.size),
                        # 1.0 / 0.0 floats, as the store gives them back.
                        "truncated": truncated.ravel().astype(np.float64),
                        "answered": (answer_code.ravel() >= 0).astype(np.float64),
                        "_answer": answer_code.ravel(),
                        "correct": correct.ravel().astype(np.float64),
                        "n_runs": 1,
                        "budget_kind": kind,
                        "level": level[p_idx] if level is not None else np.nan,
                        "subject": None,
                    }
                )
            )
    frame = pd.concat(frames, ignore_index=True)
    has_budget = np.zeros((n_models, len(BUDGETS) + 1), dtype=bool)
    for i in range(n_models):
        has_budget[i, [BUDGETS.index(b) for b in model_budgets(i)]] = True
    has_budget[:, -1] = True  # every model has its no-think run
    b_arr = frame["budget"].to_numpy()
    b_pos = np.where(np.isnan(b_arr), len(BUDGETS), np.searchsorted(BUDGETS, np.nan_to_num(b_arr)))
    frame = frame.loc[has_budget[frame["_model"].to_numpy(), b_pos]].reset_index(drop=True)
    keep = np.sort(rng.choice(len(frame), size=n_rows, replace=False))
    frame = frame.iloc[keep].reset_index(drop=True)

    model_names = np.asarray(models, dtype=object)
    frame["model"] = model_names[frame["_model"].to_numpy()]
    problem_names = np.asarray([f"p{i:04d}" for i in range(max(d[1] for d in DATASETS))])
    frame["problem_id"] = problem_names[frame["_problem"].to_numpy()]
    budget = frame["budget"].to_numpy()
    budget_label = np.where(
        np.isnan(budget), "none", np.nan_to_num(budget).astype(np.int64).astype(str)
    )
    frame["run_id"] = frame["model"] + "/" + frame["mode"] + "/" + budget_label.astype(object)
    # Answers: "gold-<problem>" when right, "wrong<j>-<problem>" otherwise; None when none.
    code = frame["_answer"].to_numpy()
    prob = frame["problem_id"].to_numpy(dtype=object)
    prefix = np.asarray(["gold-", "wrong1-", "wrong2-", "wrong3-"], dtype=object)
    answers = np.where(code >= 0, prefix[np.clip(code, 0, 3)] + prob, None)
    frame["extracted_answer"] = answers
    frame["sample_idx"] = frame["sample_idx"].astype(np.int64)
    frame["n_runs"] = frame["n_runs"].astype(np.int64)
    out: pd.DataFrame = frame[list(OUTCOME_COLUMNS)]
    return out
