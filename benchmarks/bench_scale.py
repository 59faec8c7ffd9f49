"""Scale benchmark for issue 12: outcome rows -> every curve, out of core, at 1e6..1e8 rows.

For each N in ``--rows`` (default 1e6 and 1e7; 1e8 is allowed), in a fresh work folder under
the repository's ``.cache/`` (deleted after each N):

1. ``write``: N synthetic rows (``benchmarks/synthetic.py``) generated in chunks of
   ``--chunk`` rows (default 1e6) and written with ``ponder.columnar.write_segments``, one
   segment per dataset per chunk. Only the write is timed as "write" (generation apart);
   the peak RSS includes generating one chunk.
2. in a fresh subprocess each, peak RSS from ``resource.getrusage`` (``ru_maxrss``), times
   after the imports:

   - ``baseline``: a bare DuckDB GROUP BY over the same files (a glob, no checks, result
     left as Arrow, DuckDB's own memory limit) with the statistics' keys and sums: the
     engine's least work;
   - ``stats``: ponder's side tables alone, as ``ponder.columnar.curves_from_parquet``
     builds them: footers checked, the survey (problems, groups per model, distinct
     answers), then per batch of whole models (``--max-groups`` problem x configuration
     groups, default 250,000) the statistics, token histogram and answer counts as pandas;
   - ``curves``: ``curves_from_parquet`` end to end: the same side tables, and per batch the
     cell table with bootstrap CIs (``--n-boot`` default 1000), sweet spots, pass@k, maj@k
     and difficulty (levels from a problems table), all on one problem resampler, as
     ``compute_curves(derive=False)`` does on rows: every curve, its phases as laps.

   ``stats`` and ``curves`` run DuckDB under ``--memory-limit`` (default 1GB), spilling into
   the work folder.

Shape (``--shape``): ``wide`` (default) renames the models per chunk (``c003-model-7``), so
each chunk is a whole recorded-like sweep (4 datasets, 5 hard caps + no-think, up to 16
seeds, 1,879 problems) of its own models, and problems x configurations grow with the rows
while the problem sets stay the benchmarks' fixed sizes; ``deep`` keeps the models and shifts
``sample_idx`` per chunk (more samples of the same groups). Each chunk draws its own problem
difficulties (its seed); the levels are chunk 0's, as the ``problems`` table would give them.

Policy families are measured by ``benchmarks/bench_scale_policies.py`` (matrices read from the
same segments), not here. Targets (issue 12): peak memory under 2 GiB at 1e8 rows, time linear
in rows, 1e6 rows end to end within 2x of the bare GROUP BY. Every child is killed above
``--max-rss-gib`` (default 6).

Run: ``nice -n 19 .venv/bin/python benchmarks/bench_scale.py [--rows 1e6 1e7] [--shape wide]
[--chunk 1e6] [--n-boot 1000] [--memory-limit 1GB] [--max-groups 250000] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CACHE = HERE.parent / ".cache"
STEPS = ("write", "baseline", "stats", "curves")
NOT_BUILT = "policy families: not measured here (benchmarks/bench_scale_policies.py measures them)"
# The bare GROUP BY: the statistics' keys and sums over a glob of the segments, no checks.
BASELINE_SQL = """
SELECT dataset, problem_id, model, mode, budget, budget_kind, n_runs = 1 AS sample,
       count(*) AS rows, count(correct) AS correct_n, sum(correct) AS correct_sum,
       count_if(correct = 1) AS hits, count(output_tokens) AS out_n,
       sum(output_tokens) AS out_sum, sum(prompt_tokens) AS prompt_sum,
       sum(reasoning_tokens) AS reasoning_sum, sum(answer_tokens) AS answer_sum,
       sum(truncated) AS truncated_sum, sum(answered) AS answered_sum,
       sum(latency_s) AS latency_sum
FROM read_parquet($glob, hive_partitioning = false) GROUP BY ALL
"""


# -- child side: one measured step ------------------------------------------------------------


class Clock:
    """Named wall-clock laps and facts of one step."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.info: dict[str, Any] = {}

    def lap(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, its time added to the lap ``name``."""
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        return out


def rss_mib() -> float:
    """Current resident set size (Linux), 0 where /proc is missing."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except OSError:
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mib() -> float:
    """Peak RSS of this process (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def chunks(n: int, chunk_rows: int, shape: str) -> Iterator[tuple[int, Any]]:
    """Synthetic outcome frames of ``chunk_rows`` rows (the last one shorter), reshaped."""
    from synthetic import synthetic_outcomes

    for index, start in enumerate(range(0, n, chunk_rows)):
        frame = synthetic_outcomes(min(chunk_rows, n - start), seed=index)
        if shape == "deep":
            frame["sample_idx"] += 16 * index  # synthetic draws at most 16 seeds
        else:
            prefix = f"c{index:03d}-"
            frame["model"] = prefix + frame["model"].astype(str)
            frame["run_id"] = prefix + frame["run_id"].astype(str)
        yield index, frame


def step_write(folder: Path, args: argparse.Namespace, clock: Clock) -> None:
    from ponder.columnar import problem_levels, write_segments

    files = 0
    frames = chunks(args.n, args.chunk, args.shape)
    while (item := clock.lap("generate", lambda: next(frames, None))) is not None:
        index, frame = item
        if index == 0:
            problem_levels(frame).to_parquet(folder / "problems.parquet")
        written = clock.lap("write", write_segments, folder, frame, segment_id=f"c{index:05d}")
        files += len(written)
        del frame, item
    clock.info["files"] = files
    clock.info["parquet_mib"] = round(tree_mib(folder / "outcomes"), 1)


def tree_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*.parquet")) / 2**20


def step_baseline(folder: Path, args: argparse.Namespace, clock: Clock) -> None:
    import duckdb

    con = duckdb.connect()  # DuckDB's own memory limit: the engine's least work
    con.execute(f"SET temp_directory = '{folder / 'spill'}'")
    glob = str(folder / "outcomes" / "*" / "*.parquet")
    table = clock.lap(
        "groupby", lambda: con.sql(BASELINE_SQL, params={"glob": glob}).to_arrow_table()
    )
    clock.info["groups"] = table.num_rows


def connection(folder: Path, args: argparse.Namespace) -> Any:
    """A DuckDB connection with the run's memory limit, spilling inside the work folder."""
    from ponder.columnar import connect

    con = connect(memory_limit=args.memory_limit)
    spill = folder / "spill"
    spill.mkdir(exist_ok=True)
    con.execute(f"SET temp_directory = '{spill}'")
    return con


def step_stats(folder: Path, args: argparse.Namespace, clock: Clock) -> None:
    """The side tables alone, batch by batch as ``curves_from_parquet`` builds them (the
    survey, then per batch the statistics, token histogram and answer counts), no curves."""
    from ponder.columnar.answers import answer_forms
    from ponder.columnar.batched import plan_batches, side_tables, survey_segments
    from ponder.columnar.segments import dataset_of
    from ponder.columnar.stats import checked_segments
    from ponder.grading import normalize_answer

    con = connection(folder, args)
    groups = histogram_rows = answer_rows = 0
    try:
        files = clock.lap("check", checked_segments, folder)
        survey = clock.lap("survey", survey_segments, con, files, folder)
        forms = clock.lap("survey", answer_forms, survey.answers, normalize_answer)
        batches = plan_batches(survey.models, args.max_groups)
        for batch in batches:
            params = {
                "files": [str(p) for p in files if dataset_of(p) == batch.dataset],
                "first": batch.first,
                "last": batch.last,
            }
            stats, histogram, answers = clock.lap(
                "queries", side_tables, con, forms, params, folder
            )
            groups += len(stats)
            histogram_rows += len(histogram)
            answer_rows += len(answers)
            del stats, histogram, answers
    finally:
        con.close()
    clock.info.update(
        groups=groups, histogram_rows=histogram_rows, answer_rows=answer_rows, batches=len(batches)
    )


def step_curves(folder: Path, args: argparse.Namespace, clock: Clock) -> None:
    """Every curve out of core (``curves_from_parquet``), its phases as laps."""
    import pandas as pd

    from ponder.columnar import curves_from_parquet

    levels = pd.read_parquet(folder / "problems.parquet")
    con = connection(folder, args)
    laps: dict[str, float] = {}
    try:
        curves = curves_from_parquet(
            folder, levels, n_boot=args.n_boot, max_groups=args.max_groups, con=con, laps=laps
        )
    finally:
        con.close()
    clock.seconds.update(laps)
    clock.info["batches"] = curves.batches
    clock.info["cells"] = len(curves.cells)
    clock.info["table_rows"] = {
        "sweet_spots": len(curves.sweet_spots),
        "pass_at_k": len(curves.pass_at_k),
        "maj_at_k": len(curves.maj_at_k),
        "difficulty": len(curves.difficulty),
    }


Step = Callable[[Path, argparse.Namespace, Clock], None]
CHILD_STEPS: dict[str, Step] = {
    "write": step_write,
    "baseline": step_baseline,
    "stats": step_stats,
    "curves": step_curves,
}


def child(args: argparse.Namespace, steps: Mapping[str, Step] = CHILD_STEPS) -> None:
    """Run one of `steps`; print its laps, facts and peak RSS as one JSON line."""
    clock = Clock()
    clock.info["rss0_mib"] = round(rss_mib(), 1)
    steps[args.child](Path(args.dir), args, clock)
    clock.info["peak_mib"] = round(peak_mib(), 1)
    print("RESULT " + json.dumps({"seconds": clock.seconds, "info": clock.info}), flush=True)


# -- parent side: run the steps under a memory watchdog, print the table ----------------------


def child_rss_bytes(pid: int) -> int:
    """A running child's RSS (Linux /proc), 0 when unknown."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def run_step(step: str, folder: Path, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """One step in a fresh interpreter, killed if its RSS passes ``--max-rss-gib``."""
    command = [sys.executable, __file__, "--child", step, "--dir", str(folder), "--n", str(n)]
    command += ["--chunk", str(args.chunk), "--shape", args.shape, "--n-boot", str(args.n_boot)]
    command += ["--max-groups", str(args.max_groups)]
    if args.memory_limit:
        command += ["--memory-limit", args.memory_limit]
    return run_child(command, f"step {step} at {n:,} rows", args.max_rss_gib)


def run_child(
    command: list[str], what: str, max_rss_gib: float, *, stderr_to_terminal: bool = False
) -> dict[str, Any]:
    """Run a child step, killed if its RSS passes `max_rss_gib`; its RESULT line, parsed.
    With `stderr_to_terminal` the child's progress and traceback go straight to the user."""
    stderr = None if stderr_to_terminal else subprocess.PIPE
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
    out, err, killed = watch(proc, max_rss_gib * 2**30)
    if killed:
        raise SystemExit(f"{what} passed {max_rss_gib} GiB RSS")
    if proc.returncode != 0:
        detail = " (its error is above)" if stderr_to_terminal else f":\n{(err or '')[-3000:]}"
        raise SystemExit(f"{what} failed{detail}")
    line = [x for x in out.splitlines() if x.startswith("RESULT ")][-1]
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return result


def watch(proc: subprocess.Popen[str], limit: float) -> tuple[str, str, bool]:
    """The child's output once it ends; killed (and said so) if its RSS passes ``limit``."""
    while True:
        try:
            out, err = proc.communicate(timeout=0.2)
            return out, err, False
        except subprocess.TimeoutExpired:
            if child_rss_bytes(proc.pid) > limit:
                proc.kill()
                out, err = proc.communicate()
                return out, err, True


def main_seconds(step: str, result: dict[str, Any]) -> float:
    """A step's headline time: the write alone for ``write``, every lap otherwise."""
    laps = result["seconds"]
    return float(laps["write"] if step == "write" else sum(laps.values()))


def measure(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """Every step at ``n`` rows in a fresh folder under .cache/, deleted afterwards."""
    CACHE.mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bench-scale-", dir=CACHE))
    load = [round(os.getloadavg()[0], 2)]
    try:
        steps = {}
        for step in STEPS:
            steps[step] = run_step(step, folder, n, args)
            if not args.json:
                print(f"  {n:>11,} {step:<8} {describe(step, steps[step])}", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    load.append(round(os.getloadavg()[0], 2))
    times = {step: main_seconds(step, r) for step, r in steps.items()}
    return {
        "rows": n,
        "seconds": times,
        "seconds_per_1e6_rows": {s: t / (n / 1e6) for s, t in times.items()},
        "peak_mib": {s: r["info"]["peak_mib"] for s, r in steps.items()},
        "load1": load,
        "curves_over_baseline": times["curves"] / times["baseline"],
        "stats_over_baseline": times["stats"] / times["baseline"],
        "steps": steps,
    }


def describe(step: str, result: dict[str, Any]) -> str:
    laps = " ".join(f"{k} {v:.2f}s" for k, v in result["seconds"].items())
    return f"peak {result['info']['peak_mib']:,.0f} MiB  {laps}"


def print_table(results: list[dict[str, Any]]) -> None:
    """Times, peaks, the ratio to the bare GROUP BY and seconds per 1e6 rows, by N."""
    head = (
        f"{'rows':>11} {'groups':>10} {'cells':>6} {'batches':>7} | {'write s':>8} {'base s':>7} "
        f"{'stats s':>8} {'curves s':>9} | {'curves/base':>11} | peak MiB {'write':>6} "
        f"{'base':>6} {'stats':>6} {'curves':>6}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for r in results:
        s, p, info = r["seconds"], r["peak_mib"], r["steps"]["curves"]["info"]
        groups = r["steps"]["stats"]["info"]["groups"]
        print(
            f"{r['rows']:>11,} {groups:>10,} {info['cells']:>6,} {info['batches']:>7,} | "
            f"{s['write']:>8.2f} "
            f"{s['baseline']:>7.2f} {s['stats']:>8.2f} {s['curves']:>9.2f} | "
            f"{r['curves_over_baseline']:>10.1f}x | {'':>8} {p['write']:>6.0f} "
            f"{p['baseline']:>6.0f} {p['stats']:>6.0f} {p['curves']:>6.0f}"
        )
    print("\nload average (1 min) at the start and end of each N")
    for r in results:
        print(f"{r['rows']:>11,} {r['load1'][0]} -> {r['load1'][1]}")
    print("\nseconds per 1e6 rows (flat = linear in rows)")
    for r in results:
        per = r["seconds_per_1e6_rows"]
        print(f"{r['rows']:>11,} " + "  ".join(f"{s} {per[s]:.3f}" for s in STEPS))
    print("\nall-curves laps (s)")
    for r in results:
        laps = r["steps"]["curves"]["seconds"]
        print(f"{r['rows']:>11,} " + "  ".join(f"{k} {v:.2f}" for k, v in laps.items()))


def print_targets(results: list[dict[str, Any]]) -> None:
    """The issue's targets, as far as the sizes run can tell."""
    print(f"\nnote: {NOT_BUILT}")
    for r in results:
        peak = max(r["peak_mib"][s] for s in ("stats", "curves"))  # ponder's, not DuckDB's
        print(
            f"{r['rows']:>11,} rows: analysis peak {peak:,.0f} MiB (target < 2048 at 1e8); "
            f"all curves / bare GROUP BY {r['curves_over_baseline']:.1f}x "
            f"(target <= 2x at 1e6); stats / bare {r['stats_over_baseline']:.1f}x"
        )


def environment() -> dict[str, Any]:
    import duckdb
    import pandas as pd
    import pyarrow as pa

    return {
        "cpus": os.cpu_count(),
        "load1": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "pandas": pd.__version__,
        "pyarrow": pa.__version__,
        "duckdb": duckdb.__version__,
    }


def parent(args: argparse.Namespace) -> None:
    env = environment()
    if not args.json:
        print(" ".join(f"{k}={v}" for k, v in env.items()) + f" shape={args.shape}")
        print(f"note: {NOT_BUILT}")
    results = [measure(n, args) for n in args.rows]
    env["load1_end"] = round(os.getloadavg()[0], 2)
    if args.json:
        document = {
            "environment": env,
            "shape": args.shape,
            "chunk_rows": args.chunk,
            "n_boot": args.n_boot,
            "memory_limit": args.memory_limit,
            "not_built": NOT_BUILT,
            "results": results,
        }
        print(json.dumps(document, indent=2))
        return
    print_table(results)
    print_targets(results)
    print(f"\nload1 {env['load1']} -> {env['load1_end']} on {env['cpus']} CPUs")


def whole(text: str) -> int:
    """A row count written as 1e6 or 1000000."""
    value = float(text)
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"not a whole number of rows: {text}")
    return int(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=whole, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--chunk", type=whole, default=1_000_000, help="rows per chunk")
    parser.add_argument("--shape", choices=("wide", "deep"), default="wide")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--memory-limit", default="1GB", help="DuckDB memory_limit (default 1GB)")
    parser.add_argument(
        "--max-groups", type=int, default=250_000, help="problem x config groups per batch"
    )
    parser.add_argument("--max-rss-gib", type=float, default=6.0, help="kill a child above this")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--child", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
