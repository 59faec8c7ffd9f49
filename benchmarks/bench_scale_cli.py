"""Issue 12's table: ``ponder import``, ``ponder curves`` and ``ponder evaluate`` as a user
runs them, at 1e6, 1e7 and 1e8 synthetic outcome rows, against a bare DuckDB ``GROUP BY``
over the same rows, measured in the same run.

Per N in ``--rows``, in a fresh work folder under the repository's ``.cache/`` (deleted
afterwards unless ``--keep``):

- ``generate`` (untimed): N rows shaped like the recorded sweeps (``benchmarks/synthetic.py``,
  four datasets, 1,879 problems, 62 configurations: think at 5 forced budgets and no-think),
  as CSV files of ``--chunk`` rows in ponder's own columns (so each is a bulk import,
  docs/importing.md). Deep shape: every chunk is one of ``--distinct`` sweeps (seeds) again
  with its own run ids and new sample indices, so samples per problem x configuration grow
  with N (9 at 1e6, 900 at 1e8);
- ``import``: ``ponder import --store S <files>`` into a fresh store;
- ``groupby`` (the baseline): a bare DuckDB ``GROUP BY`` of every statistic per problem x
  configuration over the store's committed segment files (``bench_scale.BASELINE_SQL``),
  result kept as Arrow, DuckDB's own settings;
- ``curves``: ``ponder curves --json --store S`` (every dataset: cells with 1000-resample CIs,
  sweet spots, pass@k, maj@k, difficulty; out of core);
- ``evaluate``: ``ponder evaluate -d D --json --store S`` for each dataset (every policy
  family, 5-fold cross-validation; the matrix keeps 64 samples a cell, with sums over all).

Each command runs in its own process under ``/usr/bin/time``: wall seconds and peak RSS are
the whole process's (Python start and imports included; the baseline's too). Prints one row
per N, the ratio of import + curves to the ``GROUP BY``, and seconds per 1e6 rows.

Run: ``nice -n 19 .venv/bin/python benchmarks/bench_scale_cli.py [--rows 1e6 1e7 1e8]
[--skip-evaluate] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_scale import BASELINE_SQL, CACHE, environment, whole  # noqa: E402
from synthetic import DATASETS as SYNTHETIC_DATASETS  # noqa: E402

PONDER = [sys.executable, "-m", "ponder"]
DATASETS = sorted(name for name, *_ in SYNTHETIC_DATASETS)
CSV_COLUMNS = (
    "run_id",
    "dataset",
    "problem_id",
    "model",
    "mode",
    "budget",
    "budget_kind",
    "sample_idx",
    "correct",
    "output_tokens",
    "prompt_tokens",
    "truncated",
    "answered",
    "extracted_answer",
)


def generate(folder: Path, n: int, chunk: int, distinct: int) -> list[Path]:
    """N synthetic rows as CSV chunks in ponder's own columns (deep shape, forced budgets).

    ``distinct`` sweeps are generated (seeds 0, 1, ...) and cycled: chunk i is sweep
    i mod ``distinct`` with its own run ids and sample indices, written by Arrow's CSV writer
    (generating every chunk with pandas took over half a minute each)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    from synthetic import synthetic_outcomes

    bases: dict[int, tuple[pa.Table, np.ndarray, np.ndarray]] = {}
    files = []
    for index, start in enumerate(range(0, n, chunk)):
        rows = min(chunk, n - start)
        key = index % distinct if rows == chunk else -1
        if key not in bases:
            frame = synthetic_outcomes(rows, seed=max(key, 0))
            frame["budget_kind"] = np.where(frame["budget"].isna(), "none", "forced")
            frame["budget"] = frame["budget"].astype("Int64")
            for column in ("correct", "output_tokens", "prompt_tokens", "truncated", "answered"):
                frame[column] = frame[column].round().astype("Int64")
            table = pa.Table.from_pandas(frame[list(CSV_COLUMNS)], preserve_index=False)
            bases[key] = (
                table,
                frame["sample_idx"].to_numpy(),
                frame["run_id"].to_numpy(dtype=object),
            )
        table, sample_idx, run_id = bases[key]
        table = table.set_column(
            CSV_COLUMNS.index("sample_idx"),
            "sample_idx",
            pa.array(sample_idx + 16 * index),  # synthetic draws at most 16 seeds
        )
        table = table.set_column(
            CSV_COLUMNS.index("run_id"),
            "run_id",
            pa.array(run_id + f"/c{index:03d}", pa.string()),  # one file a run
        )
        path = folder / f"chunk{index:03d}.csv"
        pacsv.write_csv(table, path)
        files.append(path)
    return files


def timed(command: list[str], what: str, stdout: Path | None = None) -> dict[str, float]:
    """Run ``command`` under ``/usr/bin/time``: its wall seconds and peak RSS (MiB)."""
    handle, name = tempfile.mkstemp(prefix="time-", dir=CACHE)
    os.close(handle)
    report = Path(name)
    out = open(stdout, "w") if stdout else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%e %M", "-o", str(report), *command],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    finally:
        if stdout:
            out.close()  # type: ignore[union-attr]
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed:\n{proc.stderr[-3000:]}")
    seconds, kib = report.read_text().split()[-2:]
    report.unlink()
    return {"s": float(seconds), "mib": round(int(kib) / 1024, 1)}


BASELINE = """
import sys, duckdb
sql, glob = sys.argv[1], sys.argv[2]
table = duckdb.connect().sql(sql, params={"glob": glob}).to_arrow_table()
print(table.num_rows)
"""


def measure(n: int, args: argparse.Namespace) -> dict[str, Any]:
    CACHE.mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bench-cli-", dir=CACHE))
    result: dict[str, Any] = {"rows": n}
    try:
        started = time.perf_counter()
        files = generate(folder, n, args.chunk, args.distinct)
        result["generate_s"] = round(time.perf_counter() - started, 1)
        result["csv_mib"] = round(sum(p.stat().st_size for p in files) / 2**20, 1)
        store = folder / "store.sqlite"
        result["import"] = timed(
            [*PONDER, "import", "--store", str(store), *map(str, files)], "import"
        )
        for path in files:
            path.unlink()
        glob = str(folder / "store.sqlite.parquet" / "outcomes" / "*" / "*.parquet")
        result["groupby"] = timed([sys.executable, "-c", BASELINE, BASELINE_SQL, glob], "groupby")
        curves_json = folder / "curves.json"
        result["curves"] = timed(
            [*PONDER, "curves", "--json", "--store", str(store)], "curves", stdout=curves_json
        )
        result["cells"] = len(json.loads(curves_json.read_text()))
        if not args.skip_evaluate:
            runs = [
                timed(
                    [*PONDER, "evaluate", "-d", name, "--json", "--store", str(store)],
                    f"evaluate {name}",
                    stdout=folder / f"evaluate-{name}.json",
                )
                for name in DATASETS
            ]
            result["evaluate"] = {
                "s": round(sum(r["s"] for r in runs), 1),
                "mib": max(r["mib"] for r in runs),
                "per_dataset": dict(zip(DATASETS, runs, strict=True)),
            }
        print_row(result, file=sys.stderr)
        return result
    finally:
        if args.keep:
            print(f"kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def print_row(r: dict[str, Any], file: Any = sys.stdout) -> None:
    def cell(step: str) -> str:
        if step not in r:
            return f"{'-':>18}"
        return f"{r[step]['s']:>8.1f} s {r[step]['mib']:>6,.0f} MiB"

    ratio = (r["import"]["s"] + r["curves"]["s"]) / r["groupby"]["s"]
    per = 1e6 / r["rows"]
    print(
        f"{r['rows']:>12,} {cell('import')} {cell('groupby')} {cell('curves')} "
        f"{cell('evaluate')} {ratio:>6.1f}x  "
        f"{r['import']['s'] * per:5.2f} / {r['curves']['s'] * per:5.2f} s per 1e6 rows",
        file=file,
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=whole, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--chunk", type=whole, default=1_000_000, help="rows per CSV file")
    parser.add_argument("--distinct", type=int, default=4, help="distinct sweeps cycled")
    parser.add_argument("--skip-evaluate", action="store_true", help="no ponder evaluate")
    parser.add_argument("--keep", action="store_true", help="keep the work folders")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    env = environment()
    header = (
        f"{'rows':>12} {'import':>18} {'bare GROUP BY':>18} {'curves (all)':>18} "
        f"{'evaluate (all)':>18} {'(import+curves)/GROUP BY':>8}"
    )
    if not args.json:
        print(" ".join(f"{k}={v}" for k, v in env.items()), flush=True)
        print(header, file=sys.stderr, flush=True)
    results = [measure(n, args) for n in args.rows]
    env["load1_end"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps({"environment": env, "results": results}, indent=2))
        return
    print(header)
    for r in results:
        print_row(r)
    print(f"load1 {env['load1']} -> {env['load1_end']} on {env['cpus']} CPUs")


if __name__ == "__main__":
    main()
