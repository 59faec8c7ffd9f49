"""The sweep runner's overhead on a real local model, measured in one run.

The same greedy sweep (generated problems, think with a probe ladder, and no-think) runs twice
on the same model:

- engine   each work item executed directly on the backend (``execute_item``: the chain,
           its probes, the direct answer), one after another: the engine's own time for
           exactly this work;
- runner   ``run_sweep`` on a fresh store: the same items plus planning, scheduling, grading,
           the progress reporter and one store transaction per item.

Greedy decoding makes both generate the same tokens, so ``engine / runner`` wall time is the
runner's throughput as a share of the engine's (target >= 0.95). The raw decode rate (one plain
chain, no probes, no prompt) is printed too, with the runner's generated tokens per second as a
share of it: that share also pays for prompt reading and the probes' cues, which are engine
work, not runner overhead.

CPU seconds of the process are printed beside wall time: on a machine shared with other work
they move less.

Run: ``.venv/bin/python benchmarks/bench_runner.py --model PATH [--problems 8] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from ponder.backends.base import Sampling
from ponder.backends.llamacpp import LlamaCppBackend
from ponder.budgets import messages_for
from ponder.store import Store
from ponder.sweep import build_plan, load_spec, run_sweep
from ponder.sweep.runner import execute_item


def _spec(folder: Path, model: Path, problems: int, threads: int) -> Path:
    spec = {
        "name": "bench-runner",
        "problems": [{"generated": {"levels": [1, 2], "per_level": -(-problems // 2), "seed": 7}}],
        "models": [
            {
                "name": "bench",
                "backend": "llamacpp",
                "options": {"path": str(model), "n_threads": threads, "n_ctx": 2048},
            }
        ],
        "modes": ["think", "no-think"],
        "budgets": {"ladder": [32, 64, 128, 256]},
        "reserve": 16,
        "sampling": [{"temperature": 0, "samples": 1}],
        "concurrency": 1,
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


async def _engine(model: Path, threads: int, plan: Any) -> tuple[float, int]:
    backend = LlamaCppBackend(model, n_threads=threads, n_ctx=2048)
    t0 = time.perf_counter()
    tokens = 0
    for item in plan.items:
        result = await execute_item(backend, item)
        tokens += result.generated_tokens
    return time.perf_counter() - t0, tokens


async def _raw_rate(model: Path, threads: int) -> float:
    backend = LlamaCppBackend(model, n_threads=threads, n_ctx=2048)
    chain = await backend.open_chain(messages_for("Count from one to fifty.", "think"), Sampling())
    await chain.extend(1)  # read the prompt first: only decoding is timed
    t0 = time.perf_counter()
    segment = await chain.extend(256)
    return segment.tokens / (time.perf_counter() - t0)


def bench(args: argparse.Namespace) -> dict[str, Any]:
    model = Path(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec = load_spec(_spec(folder, model, args.problems, args.threads))
        plan = build_plan(spec)
        raw = asyncio.run(_raw_rate(model, args.threads))
        c0 = time.process_time()
        engine_s, engine_tokens = asyncio.run(_engine(model, args.threads, plan))
        engine_cpu = time.process_time() - c0
        t_load, c_load = time.perf_counter(), time.process_time()
        LlamaCppBackend(model, n_threads=args.threads, n_ctx=2048)
        load_s = time.perf_counter() - t_load
        load_cpu = time.process_time() - c_load
        t0, c0 = time.perf_counter(), time.process_time()
        with Store(folder / "bench.sqlite") as store:
            summary = run_sweep(spec, store)
        runner_s = time.perf_counter() - t0 - load_s
        runner_cpu = time.process_time() - c0 - load_cpu
    return {
        "model": model.name,
        "items": len(plan.items),
        "generated_tokens": engine_tokens,
        "raw_decode_tok_s": raw,
        "engine_s": engine_s,
        "runner_s": runner_s,
        "model_load_s": load_s,
        "runner_share_of_engine": engine_s / runner_s,
        "engine_cpu_s": engine_cpu,
        "runner_cpu_s": runner_cpu,
        "runner_share_of_engine_cpu": engine_cpu / runner_cpu,
        "runner_tok_s": engine_tokens / runner_s,
        "runner_share_of_raw_decode": engine_tokens / runner_s / raw,
        "items_done": summary.done,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a GGUF file")
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    r = bench(args)
    if args.json:
        print(json.dumps(r, indent=2))
        return
    print(f"model {r['model']}: {r['items']} items, {r['generated_tokens']} generated tokens")
    print(f"raw decode rate                     {r['raw_decode_tok_s']:7.1f} tok/s")
    print(f"engine alone                        {r['engine_s']:7.1f} s")
    print(f"runner (model load excluded)        {r['runner_s']:7.1f} s")
    print(f"runner throughput / engine's        {r['runner_share_of_engine']:7.3f} (wall)")
    print(
        f"                                    {r['runner_share_of_engine_cpu']:7.3f} (CPU seconds:"
        f" {r['engine_cpu_s']:.1f} engine, {r['runner_cpu_s']:.1f} runner)"
    )
    print(f"runner tok/s / raw decode rate      {r['runner_share_of_raw_decode']:7.3f}")


if __name__ == "__main__":
    main()
