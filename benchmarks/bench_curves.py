"""Benchmark of ponder.curves on synthetic outcome frames of 1e4, 1e5 and 1e6 rows.

Prints, per size: rows, cells (recorded + derived), seconds for ``compute_curves`` with
n_boot=1000 (cells, derived caps, pass@k, maj@k, difficulty, sweet spots), and rows/s.
Then compares the cell bootstrap alone against a naive baseline (a Python loop over cells
and resamples, ``np.random.choice`` per resample) on the 1e4 frame, and extrapolates the
baseline to the larger sizes by its (cell x resample) iteration count.

Run: ``.venv/bin/python benchmarks/bench_curves.py [--sizes 10000 100000 1000000]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import synthetic_outcomes

from ponder.curves import cell_table, compute_curves

CELL = ["model", "dataset", "mode", "budget"]
P = ParamSpec("P")
T = TypeVar("T")


def naive_cell_bootstrap(frame: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The obvious implementation: per cell, per resample, draw problems with np.random.choice."""
    np.random.seed(seed)
    rows = []
    for key, cell in frame.groupby(CELL, dropna=False, sort=True):
        per_problem = cell.groupby("problem_id")["correct"].agg(["sum", "count"])
        sums = per_problem["sum"].to_numpy()
        counts = per_problem["count"].to_numpy()
        reps = np.empty(n_boot)
        for b in range(n_boot):
            idx = np.random.choice(len(sums), len(sums), replace=True)
            reps[b] = sums[idx].sum() / counts[idx].sum()
        low, high = np.percentile(reps, [2.5, 97.5])
        rows.append((*key, sums.sum() / counts.sum(), low, high))
    return pd.DataFrame(rows, columns=[*CELL, "accuracy", "ci_low", "ci_high"])


def _timed(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> tuple[T, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args()
    n_boot = args.n_boot

    compute_curves(synthetic_outcomes(2000, seed=1), n_boot=50)  # warm up imports and caches
    print(f"cpus={os.cpu_count()} n_boot={n_boot}")
    header = f"{'rows':>9} {'cells':>6} {'derived rows':>12} {'curves s':>9} {'rows/s':>9}"
    print(f"{header} {'cell_table s':>12}")
    results = []
    for size in args.sizes:
        frame = synthetic_outcomes(size, seed=0)
        curves, seconds = _timed(compute_curves, frame, n_boot=n_boot)
        _, cells_s = _timed(cell_table, frame, n_boot=n_boot)
        n_derived = int(curves.cells.loc[curves.cells["derived"], "n_samples"].sum())
        results.append((size, frame, cells_s))
        print(
            f"{size:>9} {len(curves.cells):>6} {n_derived:>12} {seconds:>9.2f} "
            f"{size / seconds:>9.0f} {cells_s:>12.3f}"
        )

    print()
    print("cell CIs only (recorded cells), ponder.curves.cell_table vs a naive per-cell loop:")
    size, frame, ours = results[0]
    naive, naive_s = _timed(naive_cell_bootstrap, frame, n_boot=n_boot)
    per_iteration = naive_s / (len(naive) * n_boot)
    print(
        f"  {size:>9} rows, {len(naive):>4} cells: ours {ours:7.3f} s, naive {naive_s:7.3f} s "
        f"(measured, {naive_s / ours:.0f}x)"
    )
    for big, big_frame, big_ours in results[1:]:
        n_cells = big_frame.groupby(CELL, dropna=False).ngroups
        estimate = per_iteration * n_cells * n_boot
        print(
            f"  {big:>9} rows, {n_cells:>4} cells: ours {big_ours:7.3f} s, "
            f"naive >= {estimate:5.1f} s "
            f"(extrapolated by cells x resamples, {estimate / big_ours:.0f}x; a lower bound, "
            "since a naive resample also gets slower with more problems per cell)"
        )


if __name__ == "__main__":
    main()
