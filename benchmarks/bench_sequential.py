"""Sequential replay and fitting on synthetic ladders of 1e4 to 1e6 ladder rows (issue 9).

A synthetic ladder matrix is problems x (2 models x (think rungs 16..512 + one no-think
config)) x 4 chains, built directly as arrays (no store). Ladder rows = problems x models x
chains x rungs. Each (problem, model, chain) is one latent chain: a natural length that grows
with difficulty (most end between 100 and 250 tokens), a final answer right with a chance
that rises with skill and falls with difficulty, and forced answers before the natural end
that settle on the final answer as the chain grows. Forced answers are often confident and
wrong. After the natural end the natural answer and its cost persist and probes cost nothing.

Printed:

1. Replay: the vectorised `replay` against the step-by-step `replay_reference` on the same
   decisions (single exit steps: window, min_prob, min_token_prob; a 3-step escalation plan;
   a beta vote step). Their results are asserted equal. The reference is timed on at most
   `--reference-problems` problems and scaled linearly to the full size (flagged `~`); at
   1e6 rows only the vectorised replay is timed.
2. Policies: fit + decide + replay of every sequential policy family at 1e5 and 1e6 ladder
   rows, one fit each at a price of 1% accuracy per typical request (fitted and replayed on
   the same problems: a timing, not an evaluation; `ponder evaluate` fits each family once per
   price and fold), and whether each meets the issue's "in seconds" target (`--target`
   seconds for fit + decide + replay).

Peak RSS and the load average (a shared machine) are printed too. Run:
``.venv/bin/python benchmarks/bench_sequential.py [--sizes 10000 100000 1000000]
[--policy-rows 100000 1000000] [--reference-problems 2500] [--target 10] [--json]``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from ponder.decision import Config, Decision, DecisionBatch, ExitRule, Step, StopRule
from ponder.evaluate import OutcomeMatrix, ReplayResult, replay
from ponder.evaluate.catalog import price_scale
from ponder.outcomes.matrix import NO_ANSWER, NO_CHAIN, Signals
from ponder.outcomes.reference import replay_reference
from ponder.policies.base import Policy

MODELS: tuple[str, ...] = ("small", "large")
SKILL: tuple[float, ...] = (-1.0, 0.6)
RUNGS: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
CHAINS = 4
THINK, FAST = "think", "no-think"
LADDER_ROWS_PER_PROBLEM = len(MODELS) * CHAINS * len(RUNGS)
WORDS = ("triangle", "prime", "integer", "sum", "digits", "remainder", "area", "sequence")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return out


def ladder_matrix(ladder_rows: int, seed: int = 0) -> OutcomeMatrix:
    """A ladder outcome matrix with about `ladder_rows` ladder rows (see the module doc)."""
    rng = np.random.default_rng(seed)
    n = max(8, round(ladder_rows / LADDER_ROWS_PER_PROBLEM))
    n_models, n_rungs = len(MODELS), len(RUNGS)
    level = rng.integers(1, 6, n)
    difficulty = (level - 3) * 0.8 + rng.normal(0.0, 0.7, n)
    skill = np.asarray(SKILL)[None, :, None]
    hard = difficulty[:, None, None]

    # Latent chains [problem, model, chain].
    shape = (n, n_models, CHAINS)
    length = np.clip(rng.lognormal(np.log(150.0) + 0.25 * hard, 0.6, shape), 20.0, 4000.0)
    right = rng.random(shape) < _sigmoid(1.0 + skill - 1.3 * hard)
    final = np.where(right, 0, rng.integers(1, 4, shape))
    final = np.where(rng.random(shape) < 0.05, NO_ANSWER, final)  # ends without an answer
    answer_len = rng.integers(2, 9, shape).astype(float)

    # Per rung [problem, model, chain, rung].
    rungs = np.asarray(RUNGS, dtype=float)[None, None, None, :]
    ended = rungs >= length[..., None]
    first_end = ended & ~np.concatenate([np.zeros((*shape, 1), bool), ended[..., :-1]], axis=-1)
    progress = np.minimum(rungs / length[..., None], 1.0)
    settled = rng.random(ended.shape) < progress**0.7
    wander = np.where(rng.random(ended.shape) < 0.1 * (1 - progress), NO_ANSWER, 0)
    wander = np.where(wander == 0, rng.integers(0, 4, ended.shape), wander)
    forced = np.where(settled, final[..., None], wander)
    answer = np.where(ended, final[..., None], forced).astype(np.int32)
    # Forced answers are confident whether right or not; settled ones a bit more.
    prob = np.where(
        ended,
        np.where(right[..., None], rng.beta(12, 1, ended.shape), rng.beta(5, 2, ended.shape)),
        np.where(settled, rng.beta(8, 1.5, ended.shape), rng.beta(3, 1.5, ended.shape)),
    )
    token_prob = prob ** (1.0 / answer_len[..., None])
    entropy = rng.gamma(2.0, (1.6 * (1 - progress) + 0.15) / 2.0)
    probe = np.where(ended, 0.0, answer_len[..., None] + 6.0)
    chain_cost = np.where(ended, length[..., None] + answer_len[..., None], rungs + probe)
    cost = np.maximum.accumulate(np.round(chain_cost), axis=-1)
    # Ended rungs repeat the natural rung's values: the natural answer persists.
    index = np.maximum.accumulate(np.where(first_end | ~ended, np.arange(n_rungs), 0), axis=-1)
    prob, token_prob, entropy = (
        np.take_along_axis(a, index, -1) for a in (prob, token_prob, entropy)
    )
    chain = np.arange(n * n_models * CHAINS, dtype=np.int64).reshape(shape)

    # No-think samples [problem, model, sample]: short, weaker, confident.
    fast_right = rng.random(shape) < _sigmoid(-0.8 + skill - 1.3 * hard)
    fast_answer = np.where(fast_right, 0, rng.integers(1, 4, shape))
    fast_answer = np.where(rng.random(shape) < 0.05, NO_ANSWER, fast_answer).astype(np.int32)
    fast_prob = np.where(fast_right, rng.beta(6, 1.5, shape), rng.beta(4, 2, shape))
    fast_cost = 3.0 + rng.geometric(0.15, shape)

    configs: list[Config] = []
    for model in MODELS:
        configs += [Config(model, THINK, r) for r in RUNGS] + [Config(model, FAST, None)]
    full = (n, len(configs), CHAINS)
    out = {
        name: np.full(full, np.nan)
        for name in ("correct", "cost", "prob", "token_prob", "entropy", "natural", "probe")
    }
    out_answer = np.full(full, NO_ANSWER, dtype=np.int32)
    out_chain = np.full(full, NO_CHAIN, dtype=np.int64)
    width = n_rungs + 1
    for m in range(n_models):
        think = slice(m * width, m * width + n_rungs)

        def put(values: np.ndarray, model: int = m) -> np.ndarray:
            moved: np.ndarray = np.moveaxis(values[:, model], -1, 1)  # [problem, rung, chain]
            return moved

        out["correct"][:, think] = put((answer == 0).astype(float))
        out["cost"][:, think] = put(cost)
        out["prob"][:, think] = put(prob)
        out["token_prob"][:, think] = put(token_prob)
        out["entropy"][:, think] = put(entropy)
        out["natural"][:, think] = put(ended.astype(float))
        out["probe"][:, think] = put(probe)
        out_answer[:, think] = put(answer)
        out_chain[:, think] = chain[:, m, None, :]
        f = m * width + n_rungs
        out["correct"][:, f] = (fast_answer[:, m] == 0).astype(float)
        out["cost"][:, f] = fast_cost[:, m]
        out["prob"][:, f] = fast_prob[:, m]
        out["token_prob"][:, f] = fast_prob[:, m] ** (1 / 3)
        out_answer[:, f] = fast_answer[:, m]
    words = np.asarray(WORDS)
    problems = pd.DataFrame(
        {
            "dataset": "synthetic",
            "problem_id": [f"p{i}" for i in range(n)],
            "level": level.astype(float),
            "subject": None,
            "text": [" ".join(rng.choice(words, 2 + int(v))) + f" in {v} steps" for v in level],
        }
    )
    signals = Signals(
        out["prob"], out["entropy"], out["natural"], out["probe"], out_chain, out["token_prob"]
    )
    return OutcomeMatrix(
        problems,
        tuple(configs),
        out["correct"],
        out["cost"],
        out["cost"].copy(),
        out_answer,
        signals=signals,
    )


def replay_plans() -> dict[str, Decision]:
    """The decisions replayed in part 1."""
    large, small = MODELS[1], MODELS[0]

    def exit_step(model: str, cap: int, escalate: str = "never", **rule: Any) -> Step:
        rungs = tuple(r for r in RUNGS if r <= cap)
        return Step(
            Config(model, THINK, cap),
            escalate=escalate,  # type: ignore[arg-type]
            exit=ExitRule(rungs, **rule),
        )

    return {
        "exit window=2": Decision((exit_step(large, 512, window=2),)),
        "exit min_prob=0.9": Decision((exit_step(large, 512, min_prob=0.9),)),
        "exit min_token_prob=0.95": Decision((exit_step(large, 512, min_token_prob=0.95),)),
        "3-step escalation": Decision(
            (
                Step(Config(small, FAST, None), escalate="unsure", min_prob=0.9),
                exit_step(small, 256, "unsure", window=2),
                exit_step(large, 512, min_prob=0.9),
            )
        ),
        "beta vote x4 conf=0.9": Decision(
            (
                Step(
                    Config(large, THINK, 512),
                    samples=CHAINS,
                    stop=StopRule(kind="beta", confidence=0.9),
                ),
            )
        ),
    }


def _best_of(run: Callable[[], ReplayResult], times: int) -> tuple[ReplayResult, float]:
    """The result of `run` and its fastest wall time over `times` runs (a shared machine)."""
    best, result = float("inf"), None
    for _ in range(times):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    assert result is not None
    return result, best


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def bench_replay(ladder_rows: int, reference_problems: int) -> list[dict[str, Any]]:
    matrix = ladder_matrix(ladder_rows)
    n = matrix.n_problems
    k = min(n, reference_problems)
    part = matrix.subset(np.arange(k))
    rows = []
    for label, decision in replay_plans().items():
        batch = DecisionBatch.same(decision, n)
        repeats = 3 if n * LADDER_ROWS_PER_PROBLEM < 500_000 else 1
        fast, fast_s = _best_of(partial(replay, matrix, batch), repeats)
        row: dict[str, Any] = {
            "ladder_rows": n * LADDER_ROWS_PER_PROBLEM,
            "problems": n,
            "plan": label,
            "replay_s": fast_s,
            "accuracy": fast.accuracy,
            "mean_cost": fast.mean_cost,
        }
        if reference_problems > 0:
            sub = DecisionBatch.same(decision, k)
            slow, slow_s = _best_of(partial(replay_reference, part, sub), 1)
            check = replay(part, sub)
            np.testing.assert_allclose(check.correct, slow.correct, rtol=1e-12)
            np.testing.assert_allclose(check.cost, slow.cost, rtol=1e-12)
            np.testing.assert_array_equal(check.steps, slow.steps)
            scaled = slow_s * n / k
            row.update(
                reference_s=scaled,
                reference_scaled=k < n,
                reference_problems=k,
                ratio=scaled / max(fast_s, 1e-9),
            )
        rows.append(row)
    return rows


def policy_makers(price: float) -> tuple[list[tuple[str, Callable[[], Policy]]], list[str]]:
    """Every sequential policy family at one price (the published ones at their defaults),
    and notes on families that could not be imported."""
    from ponder.policies import published

    makers: list[tuple[str, Callable[[], Policy]]] = [
        (cls.name, cls) for cls in published.PUBLISHED_BASELINES
    ]
    notes = []
    try:
        early = importlib.import_module("ponder.policies.early_exit")
    except ImportError as error:
        notes.append(f"ponder.policies.early_exit not importable ({error}): skipped")
    else:
        for name in ("EarlyExit", "ProbeEscalate", "LevelExit"):
            cls = getattr(early, name, None)
            if cls is None:
                notes.append(f"{name} missing from ponder.policies.early_exit: skipped")
                continue
            makers.append((cls.name, partial(cls, price)))
    return makers, notes


def bench_policies(ladder_rows: int, target_s: float) -> tuple[list[dict[str, Any]], list[str]]:
    matrix = ladder_matrix(ladder_rows)
    price = price_scale(matrix)
    makers, notes = policy_makers(price)
    rows = []
    for name, make in makers:
        try:
            t0 = time.perf_counter()
            policy = make().fit(matrix)
            t1 = time.perf_counter()
            batch = policy.decide_batch(matrix.problems)
            t2 = time.perf_counter()
            result = replay(matrix, batch)
            t3 = time.perf_counter()
        except Exception as error:  # one broken family must not hide the others' timings
            notes.append(f"{name} failed at {ladder_rows:,} rows: {type(error).__name__}: {error}")
            continue
        rows.append(
            {
                "ladder_rows": matrix.n_problems * LADDER_ROWS_PER_PROBLEM,
                "policy": name,
                "fit_s": t1 - t0,
                "decide_s": t2 - t1,
                "replay_s": t3 - t2,
                "total_s": t3 - t0,
                "meets_target": t3 - t0 <= target_s,
                "accuracy_in_sample": result.accuracy,
                "mean_cost": result.mean_cost,
                "peak_rss_mb": peak_rss_mb(),
                "plan": policy.describe(),
            }
        )
    return rows, notes


def _print_replay(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'ladder rows':>11} {'plan':<24} {'replay s':>9} {'reference s':>12} "
        f"{'ref/vec':>8} {'accuracy':>9} {'cost':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        if "reference_s" in r:
            mark = "~" if r["reference_scaled"] else " "
            ref = f"{mark}{r['reference_s']:>11.3f} {r['ratio']:>7.0f}x"
        else:
            ref = f"{'-':>12} {'-':>8}"
        print(
            f"{r['ladder_rows']:>11,} {r['plan']:<24} {r['replay_s']:>9.4f} {ref} "
            f"{r['accuracy']:>9.3f} {r['mean_cost']:>7.1f}"
        )


def _print_policies(rows: list[dict[str, Any]], target_s: float) -> None:
    header = (
        f"{'ladder rows':>11} {'policy':<26} {'fit s':>7} {'decide s':>9} {'replay s':>9} "
        f"{'total s':>8} {'<=' + format(target_s, 'g') + ' s':>7} {'acc*':>6} {'cost':>6} "
        f"{'peak MB':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['ladder_rows']:>11,} {r['policy']:<26} {r['fit_s']:>7.2f} "
            f"{r['decide_s']:>9.3f} {r['replay_s']:>9.3f} {r['total_s']:>8.2f} "
            f"{'yes' if r['meets_target'] else 'MISS':>7} "
            f"{r['accuracy_in_sample']:>6.3f} {r['mean_cost']:>6.1f} {r['peak_rss_mb']:>8.0f}"
        )
    print("  * in-sample accuracy (fitted and replayed on the same problems): a sanity figure")
    largest = max(r["ladder_rows"] for r in rows)
    print(f"  plans fitted at {largest:,} rows:")
    for r in rows:
        if r["ladder_rows"] == largest:
            print(f"  {r['policy']}: {r['plan']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument(
        "--reference-sizes",
        type=int,
        nargs="*",
        default=[10_000, 100_000],
        help="sizes at which the step-by-step reference is timed too",
    )
    parser.add_argument("--reference-problems", type=int, default=2500)
    parser.add_argument(
        "--policy-rows",
        type=int,
        nargs="*",
        default=[100_000, 1_000_000],
        help="sizes of part 2 (none: skip it)",
    )
    parser.add_argument("--target", type=float, default=10.0, help="'in seconds', per family")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    load_start = os.getloadavg()
    replay_rows: list[dict[str, Any]] = []
    for size in args.sizes:
        ref = args.reference_problems if size in args.reference_sizes else 0
        replay_rows += bench_replay(size, ref)
    replay_peak = peak_rss_mb()
    policy_rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for size in args.policy_rows:
        rows, size_notes = bench_policies(size, args.target)
        policy_rows += rows
        notes = sorted(set(notes) | set(size_notes))
    result = {
        "replay": replay_rows,
        "replay_peak_rss_mb": replay_peak,
        "policies": policy_rows,
        "notes": notes,
        "target_s": args.target,
        "peak_rss_mb": peak_rss_mb(),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "cpus": os.cpu_count(),
        "total_s": time.perf_counter() - start,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print("1. replay: vectorised vs step-by-step reference (results asserted equal)")
    _print_replay(replay_rows)
    if any(r.get("reference_scaled") for r in replay_rows):
        print(
            f"  ~ reference timed on the first {args.reference_problems} problems and scaled "
            "linearly to the full size"
        )
    print(f"  peak RSS after part 1: {replay_peak:.0f} MB")
    if policy_rows or notes:
        print("\n2. fit + decide + replay per family (fitted and replayed on all problems)")
        _print_policies(policy_rows, args.target)
        for note in notes:
            print(f"  note: {note}")
    load = ", ".join(f"{x:.2f}" for x in result["load_average_end"])
    print(
        f"\npeak RSS {result['peak_rss_mb']:.0f} MB; load average {load} on {result['cpus']} "
        f"CPUs; total {result['total_s']:.0f} s"
    )


if __name__ == "__main__":
    main()
