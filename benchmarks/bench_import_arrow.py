"""Benchmark of the Arrow import (issue 12) against today's ``ponder import`` and a bare
``pyarrow.csv.read_csv`` of the same file, at 1e5 and 1e6 rows (1e7 with ``--sizes``).

Per size, a CSV of synthetic rows (``benchmarks/synthetic.py``, with the columns
``bench_import.py`` writes; beyond 1e6 rows generated in 1e6-row chunks, model names
prefixed per chunk so keys stay unique) is written once, untimed. Each step then runs in its
own subprocess, so its peak RSS (``VmHWM``) is its own:

- bare    ``pyarrow.csv.read_csv(csv)``: parsing alone, types inferred (the floor);
- arrow   ``write_pending(csv, root)`` (read in record batches, type, validate, stream into
          one zstd Parquet segment per dataset, synced under temporary names) then
          ``Catalog.commit`` into a fresh store (renamed and listed in one transaction): the
          Arrow import end to end, its memory bounded by the batch, not the file;
- today   ``import_paths(store, [csv])`` into a fresh SQLite store: ``ponder import``.

Each step runs ``--repeat`` times and the fastest run is kept (the machine is shared: the
minimum is the least disturbed), with its CPU seconds beside the wall seconds. Prints rows/s
and peak RSS per step, then the ratios arrow / bare and today / arrow.

Run: ``nice -n 19 .venv/bin/python benchmarks/bench_import_arrow.py [--sizes 100000 1000000
10000000] [--today-max 2000000] [--repeat 3] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

CHUNK_ROWS = 1_000_000
STEPS = ("bare", "arrow", "today")


def write_csv(n_rows: int, path: Path) -> None:
    """``n_rows`` synthetic rows as a harness would write them, chunk by chunk."""
    from bench_import import harness_frame
    from synthetic import synthetic_outcomes

    written = 0
    chunk = 0
    while written < n_rows:
        size = min(CHUNK_ROWS, n_rows - written)
        outcomes = synthetic_outcomes(size, seed=chunk)
        model = outcomes["model"] if n_rows <= CHUNK_ROWS else f"c{chunk}-" + outcomes["model"]
        frame = harness_frame(outcomes, model)
        frame.to_csv(path, index=False, mode="w" if chunk == 0 else "a", header=chunk == 0)
        written += size
        chunk += 1


# -- child side: one measured step ------------------------------------------------------------


def peak_mib() -> float:
    """This process's peak RSS: VmHWM (``ru_maxrss`` would keep the parent's peak across the
    fork and exec of the step's subprocess)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(step: str, csv_path: Path, folder: Path, n: int) -> None:
    laps: dict[str, float] = {}
    start, cpu = time.perf_counter(), time.process_time()
    if step == "bare":
        import pyarrow.csv as pacsv

        start, cpu = time.perf_counter(), time.process_time()
        rows = pacsv.read_csv(csv_path).num_rows
    elif step == "arrow":
        from ponder.columnar.arrow_import import write_pending
        from ponder.columnar.catalog import Catalog, parquet_root

        store = folder / "arrow.sqlite"
        start, cpu = time.perf_counter(), time.process_time()
        imported = write_pending(csv_path, parquet_root(store), budget_kind="hard_cap")
        laps["read+validate+write"] = time.perf_counter() - start
        mark = time.perf_counter()
        with Catalog(store) as catalog:
            segments = catalog.commit(imported.pending, origin="import")
        laps["commit"] = time.perf_counter() - mark
        rows = sum(s.rows for s in segments)
    else:
        from ponder.importers import import_paths
        from ponder.store.sqlite import Store

        with Store(folder / "today.sqlite") as store:
            start, cpu = time.perf_counter(), time.process_time()
            (item,) = import_paths(store, [csv_path], budget_kind="hard_cap")
            assert item.result is not None
            rows = item.result.outcomes_added
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    assert rows == n, (step, rows, n)
    result = {"seconds": seconds, "cpu": cpu_seconds, "laps": laps, "peak_mib": peak_mib()}
    print("RESULT " + json.dumps(result), flush=True)


# -- parent side ------------------------------------------------------------------------------


def run(step: str, csv_path: Path, folder: Path, n: int) -> dict[str, Any]:
    for leftover in folder.glob("*.sqlite*"):
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
    args = [sys.executable, __file__, "--child", step, "--csv", str(csv_path), "--dir"]
    proc = subprocess.run(
        [*args, str(folder), "--rows", str(n)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"step {step} at {n} rows failed:\n{proc.stderr[-3000:]}")
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    out: dict[str, Any] = json.loads(line[len("RESULT ") :])
    return out


def best(step: str, csv_path: Path, folder: Path, n: int, repeat: int) -> dict[str, Any]:
    """The fastest of ``repeat`` runs (peak RSS: the largest seen)."""
    runs = [run(step, csv_path, folder, n) for _ in range(repeat)]
    fastest = min(runs, key=lambda r: float(r["seconds"]))
    fastest["peak_mib"] = max(float(r["peak_mib"]) for r in runs)
    fastest["all"] = [round(float(r["seconds"]), 3) for r in runs]
    return fastest


def parent(args: argparse.Namespace) -> None:
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ponder-arrow-"))
    base.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    print(f"cpus={os.cpu_count()} load={load:.1f} repeat={args.repeat} (fastest run kept)")
    print(
        f"{'rows':>11} {'step':<6} {'seconds':>8} {'cpu s':>7} {'rows/s':>11} {'peak MiB':>9}  laps"
    )
    table: dict[int, dict[str, dict[str, Any]]] = {}
    try:
        for n in args.sizes:
            csv_path = base / f"sweep_{n}.csv"
            if not csv_path.exists():
                write_csv(n, csv_path)
            table[n] = {}
            for step in STEPS:
                if step == "today" and n > args.today_max:
                    continue
                result = best(step, csv_path, base, n, args.repeat)
                table[n][step] = result
                laps = "  ".join(f"{k} {v:.3f}s" for k, v in result["laps"].items())
                print(
                    f"{n:>11,} {step:<6} {result['seconds']:>8.3f} {result['cpu']:>7.3f} "
                    f"{n / result['seconds']:>11,.0f} {result['peak_mib']:>9.0f}  {laps} "
                    f"(runs {result['all']})"
                )
        print()
        print("ratios (wall seconds of the fastest runs):")
        for n, steps in table.items():
            arrow = steps["arrow"]["seconds"]
            parts = [f"arrow / bare read_csv {arrow / steps['bare']['seconds']:.2f}x"]
            if "today" in steps:
                parts.append(f"today / arrow {steps['today']['seconds'] / arrow:.1f}x")
            rate = n / arrow / 1e6
            parts.append(f"arrow {rate:.2f} M rows/s ({'meets' if rate >= 1 else 'misses'} 1e6)")
            print(f"{n:>11,}  " + ", ".join(parts))
        print(f"load after: {os.getloadavg()[0]:.1f}")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument(
        "--today-max", type=int, default=2_000_000, help="largest size for today's import"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", help="work folder to keep (default: a temporary one)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--csv", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, Path(args.csv), Path(args.dir), args.rows)
    else:
        parent(args)


if __name__ == "__main__":
    main()
