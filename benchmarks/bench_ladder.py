"""The probe ladder against k separate two-phase runs, on a real local model.

For each problem one greedy chain is grown to the last rung with an answer forced at every
rung (``run_ladder``), and the same k budgets are run again as k separate two-phase runs
(``force_budget``, one fresh chain each). Both give the same answers (the chain is the same
greedy text); the ladder generates each chain token once.

Printed, summed over the problems:

- tokens   generated tokens (chain + probe answers): ladder, separate runs, and the bound
           sum over chains of min(natural length, max B) + probes x reserve;
- time     wall seconds of each, and the ladder's time against the time the engine needs to
           decode the same number of tokens with no probes at all (its raw decode rate,
           measured in the same run on the same chains): the ladder's overhead;
- ratio    separate / ladder, tokens and time.

Run: ``.venv/bin/python benchmarks/bench_ladder.py --model PATH [--problems 8]
[--rungs 16,32,64,128,256] [--reserve 16] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from ponder.backends.base import Sampling
from ponder.backends.llamacpp import LlamaCppBackend
from ponder.budgets import force_budget, messages_for, run_ladder


def _problems(count: int, seed: int) -> list[str]:
    """The first ``count`` generated problems, round-robin over levels 1-4 (as sweeps order
    them), so a short run still covers every level."""
    from ponder.problems.generator import generate_problems
    from ponder.sweep.plan import interleave_levels

    per_level = max(1, -(-count // 4))
    problems = generate_problems(levels=(1, 2, 3, 4), per_level=per_level, seed=seed)
    return [str(p.text) for p in interleave_levels(problems)[:count]]


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    backend = LlamaCppBackend(Path(args.model), n_threads=args.threads, n_ctx=2048)
    rungs = [int(r) for r in args.rungs.split(",")]
    greedy = Sampling()
    totals = {
        "ladder_tokens": 0,
        "separate_tokens": 0,
        "bound_tokens": 0,
        "ladder_s": 0.0,
        "separate_s": 0.0,
        "raw_tokens": 0,
        "raw_s": 0.0,
    }
    same_answers = 0
    answers = 0
    for text in _problems(args.problems, args.seed):
        messages = messages_for(text, "think")
        # Raw decode rate: the same chain, no probes.
        chain = await backend.open_chain(messages, greedy)
        t0 = time.perf_counter()
        await chain.extend(max(rungs))
        totals["raw_s"] += time.perf_counter() - t0
        totals["raw_tokens"] += chain.tokens
        natural = chain.tokens

        t0 = time.perf_counter()
        ladder = await run_ladder(
            await backend.open_chain(messages, greedy), rungs, reserve=args.reserve
        )
        totals["ladder_s"] += time.perf_counter() - t0
        totals["ladder_tokens"] += ladder.generated_tokens
        probes = sum(1 for r in ladder.rungs if not r.natural)
        totals["bound_tokens"] += min(natural, max(rungs)) + probes * args.reserve

        t0 = time.perf_counter()
        for rung in ladder.rungs:
            single = await force_budget(
                await backend.open_chain(messages, greedy), rung.budget, reserve=args.reserve
            )
            totals["separate_tokens"] += single.output_tokens
            answers += 1
            same_answers += single.answer_text == rung.answer_text
        totals["separate_s"] += time.perf_counter() - t0
    raw_rate = totals["raw_tokens"] / totals["raw_s"]
    return {
        **totals,
        "raw_decode_tok_s": raw_rate,
        "ladder_vs_bound_tokens": totals["ladder_tokens"] / totals["bound_tokens"],
        "ladder_time_vs_raw_decode": totals["ladder_s"] / (totals["ladder_tokens"] / raw_rate),
        "separate_over_ladder_tokens": totals["separate_tokens"] / totals["ladder_tokens"],
        "separate_over_ladder_time": totals["separate_s"] / totals["ladder_s"],
        "same_answers": f"{same_answers}/{answers}",
        "rungs": rungs,
        "reserve": args.reserve,
        "problems": args.problems,
        "model": Path(args.model).name,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a GGUF file")
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--rungs", default="16,32,64,128,256")
    parser.add_argument("--reserve", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(bench(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"model {result['model']}, {args.problems} problems, rungs {result['rungs']}")
    print(f"raw decode rate                  {result['raw_decode_tok_s']:8.1f} tok/s")
    print(
        f"tokens  ladder {result['ladder_tokens']:6d}  separate {result['separate_tokens']:6d}"
        f"  bound {result['bound_tokens']:6d}"
    )
    print(f"time    ladder {result['ladder_s']:6.1f}s  separate {result['separate_s']:6.1f}s")
    print(f"ladder tokens / bound            {result['ladder_vs_bound_tokens']:8.3f}")
    print(f"ladder time / raw decode time    {result['ladder_time_vs_raw_decode']:8.3f}")
    print(f"separate / ladder, tokens        {result['separate_over_ladder_tokens']:8.2f}x")
    print(f"separate / ladder, time          {result['separate_over_ladder_time']:8.2f}x")
    print(f"same answers (ladder vs separate) {result['same_answers']}")


if __name__ == "__main__":
    main()
