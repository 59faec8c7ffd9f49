"""One table for the whole offline pipeline on synthetic sweeps of 1e4, 1e5 and 1e6 rows.

Per size, each stage runs in its own subprocess (so peak memory is that stage's own), on the
same synthetic sweep (``benchmarks/synthetic.py``):

- import   ``import_paths`` of the sweep's CSV into a fresh store (what ``ponder import``
           does); baseline: ``pd.read_csv`` + ``DataFrame.to_sql`` into a plain table.
- read     ``Store.outcomes_frame()``; baseline: ``pd.read_sql("SELECT * FROM outcomes")``.
- curves   ``compute_curves`` with 1000 resamples and answer normalization, every table the
           CLI and the report show (cells with CIs, derived caps, pass@k, maj@k, difficulty,
           sweet spots); baseline: a plain pandas groupby mean per cell (no intervals).
- policies every policy family fitted, decided and replayed through the policy benchmark's
           own code path (``bench_policies.bench``): the sum of fit + decide + replay over
           the families; baseline: the per-problem reference replay of the same decisions,
           so the ratio is reference / vectorized replay (summed over the families).
- memory   peak resident memory of the read + curves subprocess above what it had after its
           imports (``resource.getrusage`` maxrss), also per million rows.

CPU seconds (``time.process_time``) of read, curves and the policy benchmark are printed
too: on a shared machine they move less than wall-clock time. The read + curves and
policies stages are repeated (``--repeat``, default 3) and the median is printed, with the
range. Run: ``.venv/bin/python benchmarks/bench_all.py [--sizes ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def stage_import(rows: int, folder: Path) -> dict[str, Any]:
    """Write the sweep's CSV, import it into a fresh store, then the pandas baseline."""
    import sqlite3

    import pandas as pd
    from bench_import import sweep_csv

    from ponder.importers import import_paths
    from ponder.store import Store

    csv = folder / f"sweep_{rows}.csv"
    store_path = folder / f"store_{rows}.sqlite"
    sweep_csv(rows, csv)
    with Store(store_path) as store:
        start = time.perf_counter()
        import_paths(store, [csv], budget_kind="hard_cap")
        seconds = time.perf_counter() - start
        assert store.counts()["outcomes"] == rows
    base = folder / f"baseline_{rows}.sqlite"
    start = time.perf_counter()
    with sqlite3.connect(base) as conn:
        pd.read_csv(csv).to_sql("outcomes", conn, index=False)
    base_seconds = time.perf_counter() - start
    return {"import_s": seconds, "import_base_s": base_seconds}


def stage_curves(rows: int, folder: Path) -> dict[str, Any]:
    """Read the store and compute every curve table; then the baselines (after the peak)."""
    import sqlite3

    import pandas as pd
    from synthetic import synthetic_outcomes

    from ponder.curves import compute_curves
    from ponder.grading import normalize_answer
    from ponder.store import Store

    compute_curves(synthetic_outcomes(2000, seed=1), n_boot=50)  # warm up
    before = _rss_mb()
    store_path = folder / f"store_{rows}.sqlite"
    with Store(store_path, readonly=True) as store:
        start, cpu = time.perf_counter(), time.process_time()
        frame = store.outcomes_frame()
        read_s, read_cpu = time.perf_counter() - start, time.process_time() - cpu
    assert len(frame) == rows
    start, cpu = time.perf_counter(), time.process_time()
    curves = compute_curves(frame, n_boot=1000, normalize=normalize_answer)
    curves_s, curves_cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = _rss_mb() - before
    n_cells = len(curves.cells)
    del curves

    start = time.perf_counter()
    frame.groupby(["model", "dataset", "mode", "budget"], dropna=False)["correct"].mean()
    curves_base_s = time.perf_counter() - start
    del frame
    with sqlite3.connect(store_path) as conn:
        start = time.perf_counter()
        back = pd.read_sql("SELECT * FROM outcomes", conn)
        read_base_s = time.perf_counter() - start
    assert len(back) == rows
    return {
        "read_s": read_s,
        "read_cpu": read_cpu,
        "curves_cpu": curves_cpu,
        "read_base_s": read_base_s,
        "curves_s": curves_s,
        "curves_base_s": curves_base_s,
        "cells": n_cells,
        "peak_mb": peak,
    }


def stage_policies(rows: int, folder: Path) -> dict[str, Any]:
    """Every policy family through the policy benchmark's code path."""
    from bench_policies import bench

    from ponder.evaluate.catalog import FAMILIES

    bench(2000, list(FAMILIES))  # warm up
    start, cpu = time.perf_counter(), time.process_time()
    results = bench(rows, list(FAMILIES))
    seconds, bench_cpu = time.perf_counter() - start, time.process_time() - cpu
    fit = sum(float(r["fit_s"]) + float(r["decide_s"]) for r in results)
    replay = sum(float(r["replay_s"]) for r in results)
    reference = sum(float(r["reference_s"]) for r in results)
    return {
        "policies_s": fit + replay,
        "bench_s": seconds,
        "bench_cpu": bench_cpu,
        "fit_decide_s": fit,
        "replay_s": replay,
        "replay_ref_s": reference,
        "families": len(results),
    }


STAGES = {"import": stage_import, "curves": stage_curves, "policies": stage_policies}


def run_stage(name: str, rows: int, folder: Path) -> dict[str, Any]:
    """Run one stage in a fresh interpreter and return what it measured."""
    out = subprocess.run(
        [sys.executable, __file__, "--stage", name, "--rows", str(rows), "--folder", str(folder)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _median(runs: list[dict[str, Any]], key: str) -> tuple[float, float, float]:
    values = [float(r[key]) for r in runs]
    return statistics.median(values), min(values), max(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(STAGES[args.stage](args.rows, args.folder)))
        return

    print(f"cpus={os.cpu_count()} load average at start={os.getloadavg()[0]:.1f}")
    table = []
    with tempfile.TemporaryDirectory(prefix="ponder-bench-all-") as tmp:
        folder = Path(tmp)
        for rows in args.sizes:
            imported = run_stage("import", rows, folder)
            curves = [run_stage("curves", rows, folder) for _ in range(args.repeat)]
            policies = [run_stage("policies", rows, folder) for _ in range(args.repeat)]
            for path in folder.glob(f"*_{rows}*"):
                path.unlink()
            table.append((rows, imported, curves, policies))
            print(f"  measured {rows:,} rows", file=sys.stderr)

    header = (
        f"{'rows':>9} | {'import s':>8} {'x base':>6} | {'read s':>7} {'x base':>6} | "
        f"{'curves s':>8} {'x grpby':>7} | {'policies s':>10} {'replay x':>8} | "
        f"{'curves+pol s':>12} | {'peak MB':>7} {'MB/1e6':>7}"
    )
    print(header)
    print("-" * len(header))
    for rows, imported, curves, policies in table:
        read, _, _ = _median(curves, "read_s")
        read_base, _, _ = _median(curves, "read_base_s")
        curve, _, _ = _median(curves, "curves_s")
        curve_base, _, _ = _median(curves, "curves_base_s")
        pol, _, _ = _median(policies, "policies_s")
        replay, _, _ = _median(policies, "replay_s")
        reference, _, _ = _median(policies, "replay_ref_s")
        total = statistics.median(
            float(c["curves_s"]) + float(p["policies_s"])
            for c, p in zip(curves, policies, strict=True)
        )
        peak, _, _ = _median(curves, "peak_mb")
        print(
            f"{rows:>9} | {imported['import_s']:>8.2f} "
            f"{imported['import_s'] / imported['import_base_s']:>5.1f}x | "
            f"{read:>7.2f} {read / read_base:>5.1f}x | "
            f"{curve:>8.2f} {curve / curve_base:>6.0f}x | "
            f"{pol:>10.2f} {reference / replay:>7.1f}x | {total:>12.2f} | "
            f"{peak:>7.0f} {peak / rows * 1e6:>7.0f}"
        )
    print()
    print("medians of", args.repeat, "runs; ranges (min-max):")
    for rows, _, curves, policies in table:
        parts = []
        for name, runs, key in (
            ("read", curves, "read_s"),
            ("curves", curves, "curves_s"),
            ("policies", policies, "policies_s"),
            ("peak MB", curves, "peak_mb"),
            ("read cpu", curves, "read_cpu"),
            ("curves cpu", curves, "curves_cpu"),
            ("policy bench cpu (incl. reference replay)", policies, "bench_cpu"),
        ):
            _, low, high = _median(runs, key)
            parts.append(f"{name} {low:.2f}-{high:.2f}")
        print(f"{rows:>9}: " + ", ".join(parts))


if __name__ == "__main__":
    main()
