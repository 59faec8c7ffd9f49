"""A fitted policy served live through ``ponder serve``, against a fixed budget and the replay.

The offline numbers say what a policy should do; this measures what it does on a real engine
behind the proxy, on problems it was not fitted on.

1. Offline. ponder's built-in sweep snapshot (generated arithmetic, seed 0) is imported into a
   temporary store; on the 0.5B model's arith matrix ``ProbeEscalate(price_per_unit)`` is fitted,
   and the best uniform configuration of the 0.5B (most accurate, cheapest on ties) is the fixed
   budget. Their offline figures are the replay on the snapshot: the policy's
   ``train_accuracy_`` / ``train_cost_``, the configuration's mean correct / mean cost. Both are
   IN-SAMPLE (chosen and scored on the same 160 problems), so they flatter the offline side.
2. Live. llama-cpp-python's server on the 0.5B (one thread, n_ctx 2048) and
   ``python -m ponder serve`` in front of it with the fitted policy as ``ponder/pe``. FRESH
   problems from the generator (levels 1-4, seed 7: the snapshot used seed 0) go through the
   proxy with the official ``openai`` client, one request at a time, each problem twice in
   alternating order: (a) ``model="ponder/pe"``, the policy's plan; (b) the fixed
   configuration as a one-step override (``extra_body={"ponder": {"mode", "budget"}}``, run on
   the plan's last model, checked to be the 0.5B). Each reply's content is graded against the
   gold answer; generated tokens come from ``usage`` (checked against ``x-ponder-cost``).
3. Printed: live accuracy with a 95% Wilson interval and mean completion tokens with a 95%
   bootstrap interval over problems, the offline figure beside each, the policy's live token
   saving against the fixed budget with a paired bootstrap interval, the escalation share live
   and offline, load average at start and end, problems and wall time.

The engine decodes greedily, so when the policy escalates to the fixed configuration its
last step would repeat the fixed run's chain if the engine were bitwise reproducible across
requests; llama-cpp-python's server is not always (its prefix-cache reuse is a likely cause),
so the run counts how often the two generated the same number of tokens. The saving comes
from the problems the first step answers. 16 problems are a small sample: the intervals are
wide, and say so.

Run: ``PONDER_MODELS_DIR=DIR .venv/bin/python benchmarks/bench_serve_policy.py
[--per-level 4] [--price 3e-4] [--seed 7] [--n-boot 2000] [--json]``, the model from
``ponder models pull qwen2.5-coder-0.5b``; about 10-15 minutes with the defaults on a loaded
2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from servers import engine_and_proxy

from ponder import paths
from ponder.analysis import load_matrix
from ponder.builtin import builtin_folder
from ponder.curves import wilson_interval
from ponder.decision import Config
from ponder.grading import grade
from ponder.importers import import_paths
from ponder.outcomes.matrix import OutcomeMatrix
from ponder.policies.early_exit import ProbeEscalate
from ponder.policies.serialization import save_policy
from ponder.problems.generator import generate_problems
from ponder.store import Store
from ponder.types import Problem

MODEL = "qwen2.5-coder-0.5b"
DATASET = "arith"
POLICY = "pe"
LEVELS = (1, 2, 3, 4)
REQUEST_TIMEOUT_S = 900


# -- offline: fit on the snapshot ---------------------------------------------------------------


@dataclass(frozen=True)
class Offline:
    """The fitted policy, the fixed configuration, and their in-sample replay figures."""

    policy: ProbeEscalate
    fixed: Config
    policy_accuracy: float
    policy_cost: float
    policy_escalated: float
    fixed_accuracy: float
    fixed_cost: float
    problems: int


def best_uniform(matrix: OutcomeMatrix) -> tuple[Config, float, float]:
    """The most accurate configuration recorded for every problem (cheapest on ties)."""
    complete = set(matrix.complete_configs())
    accuracy = np.nanmean(matrix.mean_correct(), axis=0)
    cost = np.nanmean(matrix.cost, axis=(0, 2))
    candidates = [
        (round(float(a), 12), -float(k), c)
        for c, a, k in zip(matrix.configs, accuracy, cost, strict=True)
        if c in complete
    ]
    acc, neg_cost, config = max(candidates, key=lambda t: (t[0], t[1]))
    return config, acc, -neg_cost


def fit_offline(price: float, folder: Path) -> tuple[Offline, Path]:
    """Import the snapshot into a store in `folder`, fit, pick the fixed configuration, and
    save the policy there (the file the proxy serves)."""
    with Store(folder / "snapshot.sqlite") as store:
        import_paths(store, [builtin_folder()])
        matrix = load_matrix(store, datasets=[DATASET], models=[MODEL])
    policy = ProbeEscalate(price_per_unit=price).fit(matrix)
    fixed, fixed_accuracy, fixed_cost = best_uniform(matrix)
    if policy.steps_[-1].config.model != MODEL:
        raise SystemExit(f"the plan's last model is {policy.steps_[-1].config.model}, not {MODEL}")
    offline = Offline(
        policy=policy,
        fixed=fixed,
        policy_accuracy=float(policy.train_accuracy_),
        policy_cost=float(policy.train_cost_),
        policy_escalated=float(policy.reached_[1]) if len(policy.reached_) > 1 else 0.0,
        fixed_accuracy=fixed_accuracy,
        fixed_cost=fixed_cost,
        problems=matrix.n_problems,
    )
    return offline, save_policy(policy, folder / f"{POLICY}.json")


# -- the engine and the proxy -------------------------------------------------------------------


@contextmanager
def serving(model_path: Path, policy_file: Path, workdir: Path) -> Iterator[str]:
    """The engine, then the proxy serving the policy; yields the proxy's ``.../v1``. Both are
    stopped by pid on leaving."""
    options = f",engine=llama-cpp-python,timeout_s={REQUEST_TIMEOUT_S}"
    policy = ["--policy", f"{POLICY}={policy_file}"]
    with engine_and_proxy(model_path, MODEL, 2048, options, policy, workdir) as run:
        yield run.proxy_url


# -- live: ask through the proxy ----------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One answered request, as the caller sees it."""

    problem_id: str
    arm: str
    correct: bool
    extracted: str | None
    ponder_answer: str | None
    completion_tokens: int
    decision: str
    last_step_tokens: int
    rungs: int
    calls: int
    escalated: bool
    seconds: float


def ask(client: Any, problem: Problem, arm: str, fixed: Config) -> Reply:
    """One request through the proxy: the policy's plan, or the fixed configuration."""
    extra: dict[str, Any] = {}
    if arm == "fixed":
        override: dict[str, Any] = {"mode": fixed.mode}
        if fixed.budget is not None:
            override["budget"] = fixed.budget
        extra = {"ponder": override}
    started = time.perf_counter()
    raw = client.chat.completions.with_raw_response.create(
        model=f"ponder/{POLICY}",
        messages=[{"role": "user", "content": problem.text}],
        extra_body=extra or None,
    )
    seconds = time.perf_counter() - started
    completion = raw.parse()
    usage = completion.usage
    cost = int(raw.headers["x-ponder-cost"])
    if usage is None or usage.completion_tokens != cost:
        raise SystemExit(f"{problem.problem_id} {arm}: usage {usage} disagrees with cost {cost}")
    decision = raw.headers["x-ponder-decision"]
    if arm == "fixed" and decision != fixed.label:
        raise SystemExit(f"{problem.problem_id}: the override ran {decision}, not {fixed.label}")
    content = completion.choices[0].message.content or ""
    summary = (completion.model_extra or {}).get("ponder", {})
    graded = grade(content, str(problem.gold))
    return Reply(
        problem_id=problem.problem_id,
        arm=arm,
        correct=graded.match,
        extracted=graded.extracted,
        ponder_answer=summary.get("answer"),
        completion_tokens=cost,
        decision=decision,
        last_step_tokens=int(summary["steps"][-1]["generated_tokens"]),
        rungs=int(raw.headers["x-ponder-rungs"]),
        calls=int(raw.headers["x-ponder-calls"]),
        escalated=raw.headers["x-ponder-escalated"] == "true",
        seconds=seconds,
    )


def run_live(
    url: str, problems: list[Problem], fixed: Config, progress: bool
) -> dict[str, list[Reply]]:
    """Each problem through both arms, the order alternating so load hits both alike."""
    import openai

    # no client retries: a retried failure would hide what the server answered first
    client = openai.OpenAI(
        base_url=url, api_key="unused-on-loopback", max_retries=0, timeout=REQUEST_TIMEOUT_S
    )
    replies: dict[str, list[Reply]] = {"policy": [], "fixed": []}
    for i, problem in enumerate(problems):
        order = ("policy", "fixed") if i % 2 == 0 else ("fixed", "policy")
        for arm in order:
            reply = ask(client, problem, arm, fixed)
            replies[arm].append(reply)
            if progress:
                print(
                    f"  {problem.problem_id} {arm:6s} {reply.completion_tokens:4d} tok "
                    f"{'right' if reply.correct else 'wrong'} {reply.seconds:5.1f} s "
                    f"{reply.decision}",
                    file=sys.stderr,
                    flush=True,
                )
    return replies


# -- figures ------------------------------------------------------------------------------------


def wilson(correct: np.ndarray) -> tuple[float, float, float]:
    n = float(len(correct))
    p = float(correct.mean())
    low, high = wilson_interval(np.asarray([p]), np.asarray([n]))
    return p, float(low[0]), float(high[0])


def bootstrap_mean(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[float, ...]:
    """Mean with a 95% percentile bootstrap interval over problems."""
    index = rng.integers(0, len(values), size=(n_boot, len(values)))
    means = values[index].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(values.mean()), float(low), float(high)


def paired_saving(
    policy: np.ndarray, fixed: np.ndarray, n_boot: int, rng: np.random.Generator
) -> dict[str, float]:
    """Tokens saved per problem (fixed - policy) and as a share of the fixed arm's, with 95%
    paired bootstrap intervals (the same problems resampled for both arms)."""
    index = rng.integers(0, len(policy), size=(n_boot, len(policy)))
    saved = (fixed[index] - policy[index]).mean(axis=1)
    share = 1.0 - policy[index].mean(axis=1) / fixed[index].mean(axis=1)
    return {
        "tokens": float((fixed - policy).mean()),
        "tokens_low": float(np.percentile(saved, 2.5)),
        "tokens_high": float(np.percentile(saved, 97.5)),
        "share": float(1.0 - policy.mean() / fixed.mean()),
        "share_low": float(np.percentile(share, 2.5)),
        "share_high": float(np.percentile(share, 97.5)),
    }


def summarise(
    offline: Offline, replies: dict[str, list[Reply]], n_boot: int, seed: int
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    arms: dict[str, Any] = {}
    tokens: dict[str, np.ndarray] = {}
    predicted = {
        "policy": (offline.policy_accuracy, offline.policy_cost),
        "fixed": (offline.fixed_accuracy, offline.fixed_cost),
    }
    for arm, rows in replies.items():
        correct = np.asarray([r.correct for r in rows], dtype=float)
        tokens[arm] = np.asarray([r.completion_tokens for r in rows], dtype=float)
        accuracy, acc_low, acc_high = wilson(correct)
        mean, tok_low, tok_high = bootstrap_mean(tokens[arm], n_boot, rng)
        arms[arm] = {
            "accuracy": accuracy,
            "accuracy_low": acc_low,
            "accuracy_high": acc_high,
            "tokens": mean,
            "tokens_low": tok_low,
            "tokens_high": tok_high,
            "offline_accuracy": predicted[arm][0],
            "offline_tokens": predicted[arm][1],
            "escalated": float(np.mean([r.escalated for r in rows])),
            "seconds": float(sum(r.seconds for r in rows)),
            "ponder_answer_disagrees": sum(
                (r.ponder_answer or None) != (r.extracted or None) for r in rows
            ),
        }
    policy_rows = {r.problem_id: r for r in replies["policy"]}
    # escalated to the fixed configuration: did the last step repeat the fixed chain's length?
    repeated = [
        policy_rows[r.problem_id].last_step_tokens == r.completion_tokens
        for r in replies["fixed"]
        if policy_rows[r.problem_id].decision.split(" > ")[-1] == r.decision
        and policy_rows[r.problem_id].escalated
    ]
    both_right = sum(r.correct and policy_rows[r.problem_id].correct for r in replies["fixed"])
    return {
        "arms": arms,
        "saving": paired_saving(tokens["policy"], tokens["fixed"], n_boot, rng),
        "escalated_to_fixed": len(repeated),
        "same_tokens_as_fixed": sum(repeated),
        "both_right": both_right,
        "only_policy_right": sum(
            policy_rows[r.problem_id].correct and not r.correct for r in replies["fixed"]
        ),
        "only_fixed_right": sum(
            r.correct and not policy_rows[r.problem_id].correct for r in replies["fixed"]
        ),
    }


# -- main ---------------------------------------------------------------------------------------


def bench(args: argparse.Namespace) -> dict[str, Any]:
    load_start = os.getloadavg()
    started = time.perf_counter()
    model_path = paths.models_dir() / f"{MODEL}.gguf"
    if not model_path.is_file():
        raise SystemExit(f"{model_path} not found: ponder models pull {MODEL}")
    problems = generate_problems(LEVELS, args.per_level, args.seed, dataset=f"{DATASET}-live")
    with tempfile.TemporaryDirectory(prefix="bench_serve_policy_") as tmp:
        folder = Path(tmp)
        offline, policy_file = fit_offline(args.price, folder)
        fit_s = time.perf_counter() - started
        live_started = time.perf_counter()
        with serving(model_path, policy_file, folder) as url:
            replies = run_live(url, problems, offline.fixed, args.progress)
        live_s = time.perf_counter() - live_started
    figures = summarise(offline, replies, args.n_boot, args.seed)
    return {
        "model": MODEL,
        "price_per_unit": args.price,
        "plan": offline.policy.describe(),
        "fixed": offline.fixed.label,
        "offline": {
            **{k: v for k, v in asdict(offline).items() if k not in ("policy", "fixed")},
            "in_sample": True,
        },
        "live_problems": len(problems),
        "live_seed": args.seed,
        "levels": list(LEVELS),
        **figures,
        "replies": {arm: [asdict(r) for r in rows] for arm, rows in replies.items()},
        "load_start": list(load_start),
        "load_end": list(os.getloadavg()),
        "fit_s": fit_s,
        "live_s": live_s,
        "wall_s": time.perf_counter() - started,
    }


def report(r: dict[str, Any]) -> None:
    off = r["offline"]
    print(f"model {r['model']}, ProbeEscalate price_per_unit={r['price_per_unit']:g}")
    print(f"  policy plan : {r['plan']}")
    print(f"  fixed budget: {r['fixed']} (best uniform on the snapshot)")
    print(
        f"offline: replay on the built-in snapshot, {off['problems']} problems (seed 0), "
        "IN-SAMPLE (fitted and chosen on the same problems)"
    )
    print(
        f"live: {r['live_problems']} fresh problems (levels {r['levels'][0]}-{r['levels'][-1]}, "
        f"seed {r['live_seed']}) through ponder serve, greedy engine, one request at a time"
    )
    print()
    print(
        f"{'arm':7s} {'live acc':>8s} {'95% Wilson':>15s} {'offline':>8s}   "
        f"{'live tokens':>11s} {'95% bootstrap':>15s} {'offline':>8s}   {'escalated':>9s}"
    )
    for arm, a in r["arms"].items():
        escalated = f"{a['escalated']:.2f}"
        if arm == "policy":
            escalated += f" ({off['policy_escalated']:.2f})"
        print(
            f"{arm:7s} {a['accuracy']:8.3f} [{a['accuracy_low']:.3f}, {a['accuracy_high']:.3f}] "
            f"{a['offline_accuracy']:8.3f}   {a['tokens']:11.1f} "
            f"[{a['tokens_low']:6.1f}, {a['tokens_high']:6.1f}] {a['offline_tokens']:8.1f}   "
            f"{escalated:>9s}"
        )
    s = r["saving"]
    off_share = 1.0 - off["policy_cost"] / off["fixed_cost"]
    print()
    print(
        f"policy vs fixed, live: {s['tokens']:.1f} tokens saved per problem "
        f"[{s['tokens_low']:.1f}, {s['tokens_high']:.1f}], {s['share']:.1%} of the fixed arm's "
        f"[{s['share_low']:.1%}, {s['share_high']:.1%}] (paired bootstrap, 95%); "
        f"offline {off_share:.1%}"
    )
    print(
        f"paired answers: both right {r['both_right']}, only policy {r['only_policy_right']}, "
        f"only fixed {r['only_fixed_right']} of {r['live_problems']}"
    )
    print(
        f"policy escalated to the fixed configuration on {r['escalated_to_fixed']} problems; "
        f"its last step generated as many tokens as the fixed run on "
        f"{r['same_tokens_as_fixed']} of them"
    )
    disagree = sum(a["ponder_answer_disagrees"] for a in r["arms"].values())
    if disagree:
        print(f"note: {disagree} replies whose graded content and ponder.answer disagree")
    print()
    print(
        f"load average start {r['load_start'][0]:.2f} {r['load_start'][1]:.2f}, "
        f"end {r['load_end'][0]:.2f} {r['load_end'][1]:.2f} (2-core machine shared with a sweep)"
    )
    print(
        f"wall {r['wall_s']:.0f} s (fit {r['fit_s']:.1f} s, live {r['live_s']:.0f} s: policy "
        f"{r['arms']['policy']['seconds']:.0f} s, fixed {r['arms']['fixed']['seconds']:.0f} s)"
    )
    if r["live_problems"] < 100:
        print(
            f"thin data: {r['live_problems']} live problems; the intervals, not the point "
            "figures, are what this run shows"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 4 per level keeps the default run near 15 minutes at about 9 tokens/s (one engine thread
    # on a 2-core machine shared with a sweep): each problem runs both arms, ~500 tokens
    parser.add_argument("--per-level", type=int, default=4, help="fresh problems per level")
    parser.add_argument("--price", type=float, default=3e-4, help="ProbeEscalate price_per_unit")
    parser.add_argument("--seed", type=int, default=7, help="generator seed (the snapshot's: 0)")
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--progress", action="store_true", help="one line per reply on stderr")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    r = bench(args)
    if args.json:
        print(json.dumps(r, indent=2))
        return
    report(r)


if __name__ == "__main__":
    main()
