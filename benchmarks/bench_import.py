"""Benchmark of importing a recorded sweep into the store, on synthetic CSVs of 1e4..1e6 rows.

Per size: a synthetic sweep (``benchmarks/synthetic.py``) is written to a CSV whose columns are
named like the mapped-import fields (so no ``--map`` is needed), then timed, in order:

- import   ``import_paths(store, [csv])`` into a fresh store: read + parse + validate
           (``load_file``) then one transaction (``Store.write``); split by ``on_file``;
- parse    ``read_table(csv)`` alone, the CSV-parsing part of the read stage (re-measured);
- reimport the same file again: idempotent, must add 0 rows (an unchanged file is recognised by
           its sha256 in the store's import records and not parsed again);
- load     ``store.outcomes_frame()``, the frame every analysis starts from;
- to_sql   baseline: pandas ``DataFrame.to_sql`` of the same frame into a plain SQLite table
           (no validation, no idempotency key, no indexes), and ``pd.read_csv`` + ``to_sql``;
- read_sql baseline for load: ``pd.read_sql`` of that plain table.

Prints rows, seconds and rows/s per stage, ponder / baseline ratios, and the time per row as n
grows. Row counts and a few column sums are checked along the way.

Run: ``.venv/bin/python benchmarks/bench_import.py [--sizes 10000 100000 1000000] [--quick]``
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ParamSpec, TypeVar

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import synthetic_outcomes

from ponder.importers import FileImport, import_paths, read_table
from ponder.store.sqlite import Store

CSV_COLUMNS = [
    "problem_id",
    "model",
    "dataset",
    "mode",
    "budget",
    "sample_idx",
    "correct",
    "output_tokens",
    "truncated",
    "answered",
    "extracted_answer",
]
P = ParamSpec("P")
T = TypeVar("T")


def _timed(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> tuple[T, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def harness_frame(outcomes: pd.DataFrame, model: pd.Series | None = None) -> pd.DataFrame:
    """Synthetic outcomes as a harness's per-sample CSV would hold them (``CSV_COLUMNS``);
    `model` replaces the model names (e.g. prefixed per chunk)."""
    return pd.DataFrame(
        {
            "problem_id": outcomes["problem_id"],
            "model": outcomes["model"] if model is None else model,
            "dataset": outcomes["dataset"],
            "mode": outcomes["mode"],
            "budget": outcomes["budget"].astype("Int64"),  # "" for the no-budget run
            "sample_idx": outcomes["sample_idx"],
            "correct": outcomes["correct"].astype(np.int64),
            "output_tokens": outcomes["output_tokens"].astype(np.int64),
            "truncated": outcomes["truncated"].astype(bool),
            "answered": outcomes["answered"].astype(bool),
            "extracted_answer": outcomes["extracted_answer"],
        }
    )[CSV_COLUMNS]


def sweep_csv(n_rows: int, path: Path) -> pd.DataFrame:
    """Write a synthetic sweep of ``n_rows`` rows to ``path`` as a harness would; return it."""
    frame = harness_frame(synthetic_outcomes(n_rows, seed=0))
    frame.to_csv(path, index=False)
    return frame


@dataclass
class Stages:
    """Wall-clock seconds per stage for one size."""

    n: int
    seconds: dict[str, float] = field(default_factory=dict)


def _check_loaded(loaded: pd.DataFrame, source: pd.DataFrame) -> None:
    """The store gives back what the CSV held (row count, a few sums, missing budgets)."""
    n = len(source)
    assert len(loaded) == n, (len(loaded), n)
    assert loaded["correct"].sum() == source["correct"].sum()
    assert loaded["output_tokens"].sum() == source["output_tokens"].sum()
    assert loaded["truncated"].sum() == source["truncated"].sum()
    assert int(loaded["budget"].isna().sum()) == int(source["budget"].isna().sum())
    assert int(loaded["extracted_answer"].isna().sum()) == int(
        source["extracted_answer"].isna().sum()
    )
    assert (loaded["budget_kind"] == "hard_cap").all()


def run_size(n: int, folder: Path) -> Stages:
    csv_path = folder / f"sweep_{n}.csv"
    source = sweep_csv(n, csv_path)
    stages = Stages(n)
    marks: dict[str, float] = {}

    def on_file(stage: str, item: FileImport) -> None:
        marks[stage] = time.perf_counter()

    # (a) import into a fresh store, split into load_file (read + validate) and Store.write.
    with Store(folder / f"store_{n}.sqlite") as store:
        start = time.perf_counter()
        items = import_paths(store, [csv_path], on_file=on_file, budget_kind="hard_cap")
        end = time.perf_counter()
        stages.seconds["import"] = end - start
        stages.seconds["  load_file"] = marks["read"] - start
        stages.seconds["  Store.write"] = marks["written"] - marks["read"]
        (item,) = items
        assert item.preset == "mapped", item.preset
        assert item.result is not None and item.result.outcomes_added == n, item.result
        assert store.counts()["outcomes"] == n

        table, stages.seconds["  of which parse"] = _timed(read_table, csv_path)
        assert len(table) == n
        del table

        # (b) re-import: same file, nothing added.
        items, stages.seconds["reimport"] = _timed(
            import_paths, store, [csv_path], budget_kind="hard_cap"
        )
        result = items[0].result
        assert result is not None and result.outcomes_added == 0, result
        assert result.outcomes_skipped == n
        assert store.counts()["outcomes"] == n

        # (c) load the outcome frame back.
        loaded, stages.seconds["load"] = _timed(store.outcomes_frame)
        _check_loaded(loaded, source)
        del loaded

    # (d) baselines: pandas into a plain SQLite table.
    conn = sqlite3.connect(folder / f"baseline_{n}.sqlite")
    try:
        written, stages.seconds["to_sql"] = _timed(
            source.to_sql, "outcomes", conn, index=False, if_exists="replace"
        )
        assert written in (None, n), written
        start = time.perf_counter()
        again = pd.read_csv(csv_path)
        again.to_sql("outcomes2", conn, index=False)
        stages.seconds["read_csv+to_sql"] = time.perf_counter() - start
        back, stages.seconds["read_sql"] = _timed(pd.read_sql, "SELECT * FROM outcomes", conn)
        assert len(back) == n and len(again) == n
        assert int(conn.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0]) == n
    finally:
        conn.close()
    for name in ("store", "baseline"):
        for suffix in (".sqlite", ".sqlite-wal", ".sqlite-shm"):
            (folder / f"{name}_{n}{suffix}").unlink(missing_ok=True)
    csv_path.unlink()
    return stages


STAGE_NOTES = {
    "import": "import_paths, fresh store",
    "  load_file": "read + parse + validate",
    "  Store.write": "one transaction",
    "  of which parse": "read_table alone (re-run)",
    "reimport": "same file, adds 0 rows",
    "load": "store.outcomes_frame()",
    "to_sql": "baseline: pandas to_sql",
    "read_csv+to_sql": "baseline: read_csv + to_sql",
    "read_sql": "baseline: pd.read_sql",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--quick", action="store_true", help="1e4 rows only")
    args = parser.parse_args()
    sizes = [10_000] if args.quick else args.sizes

    with tempfile.TemporaryDirectory(prefix="ponder-bench-import-") as tmp:
        folder = Path(tmp)
        run_size(2000, folder)  # warm up imports and caches
        print(f"cpus={os.cpu_count()} sqlite={sqlite3.sqlite_version} pandas={pd.__version__}")
        print(f"{'rows':>9} {'stage':<17} {'seconds':>8} {'rows/s':>10}  what")
        results = []
        for n in sizes:
            stages = run_size(n, folder)
            results.append(stages)
            for name, seconds in stages.seconds.items():
                print(
                    f"{n:>9} {name:<17} {seconds:>8.3f} {n / seconds:>10,.0f}  {STAGE_NOTES[name]}"
                )
            s = stages.seconds
            print(
                f"{n:>9} ratios: import / to_sql {s['import'] / s['to_sql']:.1f}x, "
                f"import / (read_csv+to_sql) {s['import'] / s['read_csv+to_sql']:.1f}x, "
                f"write / to_sql {s['  Store.write'] / s['to_sql']:.1f}x, "
                f"load / read_sql {s['load'] / s['read_sql']:.1f}x"
            )
            print()

    print("scaling, microseconds per row (x: change from the previous size):")
    names = ["import", "  load_file", "  Store.write", "reimport", "load", "to_sql"]
    print(f"{'rows':>9}" + "".join(f"{name.strip():>20}" for name in names))
    previous: Stages | None = None
    for stages in results:
        cells = []
        for name in names:
            per_row = stages.seconds[name] / stages.n * 1e6
            growth = ""
            if previous is not None:
                before = previous.seconds[name] / previous.n * 1e6
                growth = f"({per_row / before:.2f}x)"
            cells.append(f"{per_row:>11.2f} {growth:>8}")
        print((f"{stages.n:>9}" + "".join(cells)).rstrip())
        previous = stages


if __name__ == "__main__":
    main()
