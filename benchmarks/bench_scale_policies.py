"""Scale benchmark for issue 12: policy evaluation from Parquet segments, one dataset at a time.

For each N in ``--rows`` (default 1e6 and 1e7), in a fresh work folder under the repository's
``.cache/`` (deleted after each N), each step in a fresh subprocess (peak RSS = ``ru_maxrss``,
times after the imports, killed above ``--max-rss-gib``):

- ``write``: N synthetic rows written as segments exactly as ``bench_scale.py`` writes them
  (its writer, imported: chunks of ``--chunk`` rows, ``--shape`` wide or deep);
- ``matrix``: ``ponder.columnar.matrix_from_parquet`` per dataset (the ordered DuckDB scan
  into the dense arrays): time, shape, bytes per sample slot, share of slots filled, and a
  digest of every array;
- ``policies``: per dataset the same matrix, then ``complete`` + ``cross_validate`` of the
  uniform candidates, the oracle and all policy families (``FAMILIES``) with the default 5
  folds, as ``ponder evaluate`` does (``--families`` to narrow it down);
- ``store`` + ``frame`` (today's path, for N <= ``--frame-max``, default 1e6): the same rows
  as a CSV imported into a SQLite store, then ``Store.outcomes_frame()`` (as
  ``evaluate_policies`` loads it) and ``load_matrix`` (``OutcomeMatrix.from_frame``) per
  dataset, with the same digests: the parent says whether both paths built equal matrices;
- ``narrow`` (with ``--narrow``): per dataset of ``--narrow-datasets``, the evaluation's
  summary with cost and tokens as float32 against float64, to see whether narrower arrays
  keep every figure.

Shapes: ``wide`` renames the models per chunk, so configurations grow with the rows (10x the
uniform candidates at 1e7: the time then measures candidates, not rows); ``deep`` (default
here) keeps the configurations and adds samples. Policy evaluation is per dataset, so the
peak is that of the largest dataset (gsm8k, 70% of the rows).

The matrices keep ``--max-slots`` samples a cell (default 64, as ``ponder evaluate``; 0: all),
with sums over every sample (``OutcomeMatrix.head``).

Run: ``nice -n 19 .venv/bin/python benchmarks/bench_scale_policies.py [--rows 1e6 1e7]
[--shape deep] [--families router cascade] [--max-slots 64] [--narrow] [--json]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_scale import (  # noqa: E402  (benchmarks/ is not a package)
    CACHE,
    Clock,
    Step,
    child,
    chunks,
    environment,
    rss_mib,
    run_child,
    step_write,
    tree_mib,
    whole,
)

from ponder.evaluate.catalog import SEQUENTIAL_SLOTS  # noqa: E402
from ponder.store.schema import OUTCOME_STORE_COLUMNS  # noqa: E402

STEPS = ("write", "matrix", "policies", "store", "frame", "narrow")
# The columns of the CSV today's path imports (what `ponder import` reads from a sweep file).
CSV_COLUMNS = [
    *(c for c in OUTCOME_STORE_COLUMNS if c not in ("response_text", "extra_json")),
    "budget_kind",
    "level",
]
FOLDS = 5  # ponder evaluate's default


def datasets_of(folder: Path) -> list[str]:
    from ponder.columnar.segments import dataset_of, list_segments

    return sorted({dataset_of(p) for p in list_segments(folder)})


def levels(folder: Path) -> Any:
    """The problems table the writer kept (dataset, problem_id, level)."""
    import pandas as pd

    return pd.read_parquet(folder / "problems.parquet")


def digest(matrix: Any) -> str:
    """sha256 of a matrix's configs, problems (ids, levels) and every array."""
    sha = hashlib.sha256()
    sha.update(repr(matrix.configs).encode())
    problems = matrix.problems[["dataset", "problem_id", "level"]]
    sha.update(problems.to_csv(index=False).encode())
    stats = matrix.stats
    for array in (
        matrix.correct,
        matrix.cost,
        matrix.tokens,
        matrix.answer,
        stats.recorded,
        stats.correct,
        stats.hits,
        stats.cost,
        stats.answered,
        stats.unknown,
    ):
        sha.update(str(array.dtype).encode() + str(array.shape).encode() + array.tobytes())
    return sha.hexdigest()[:16]


def max_slots(args: argparse.Namespace) -> int | None:
    """Sample slots the matrices keep (``ponder evaluate`` keeps ``SEQUENTIAL_SLOTS``)."""
    return args.max_slots or None


def scan_options(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``matrix_from_parquet``'s problems table, DuckDB memory limit and kept slots."""
    return {
        "problems": levels(folder),
        "memory_limit": args.memory_limit,
        "max_slots": max_slots(args),
    }


def describe_matrix(matrix: Any) -> dict[str, Any]:
    import numpy as np

    arrays = [matrix.correct, matrix.cost, matrix.tokens, matrix.answer]
    if matrix.signals is not None:
        names = ("prob", "token_prob", "entropy", "natural", "probe_cost", "chain")
        arrays += [a for a in (getattr(matrix.signals, n) for n in names) if a is not None]
    slots = int(matrix.correct.size)
    nbytes = sum(int(a.nbytes) for a in arrays)
    return {
        "shape": list(matrix.correct.shape),
        "slots": slots,
        "mib": round(nbytes / 2**20, 1),
        "bytes_per_slot": round(nbytes / slots, 1),
        "filled": round(float((~np.isnan(matrix.correct)).mean()), 4),
        "digest": digest(matrix),
    }


def step_matrix(folder: Path, args: argparse.Namespace, clock: Clock) -> None:
    from ponder.columnar.matrix import matrix_from_parquet

    options = scan_options(folder, args)
    for name in datasets_of(folder):
        matrix = clock.lap(f"matrix {name}", matrix_from_parquet, folder, name, **options)
        clock.info[name] = describe_matrix(matrix)
        del matrix


def evaluate(matrix: Any, families: list[str], clock: Clock, name: str) -> Any:
    """``complete`` + ``cross_validate`` of every candidate, as ``ponder evaluate`` does."""
    from ponder.evaluate.catalog import Skipped, candidates
    from ponder.evaluate.protocol import complete, cross_validate

    matrix = complete(matrix)
    skipped: list[Skipped] = []
    cands = candidates(matrix, families, skipped=skipped)
    evaluation = clock.lap(f"cv {name}", cross_validate, matrix, cands, folds=FOLDS)
    note(f"{name}: {len(cands)} candidates, cross_validate {clock.seconds[f'cv {name}']:.1f}s")
    clock.info[name] = {
        "configs": len(matrix.configs),
        "candidates": len(cands),
        "evaluated": len(evaluation.labels),
        "skipped_families": sorted({s.family for s in skipped}),
        "rss_mib_after": round(rss_mib(), 1),
    }
    return evaluation


def note(text: str) -> None:
    """Progress of a long step, on the child's stderr (the parent's terminal)."""
    print(f"    ... {text}", file=sys.stderr, flush=True)


def family_list(args: argparse.Namespace) -> list[str]:
    from ponder.evaluate.catalog import FAMILIES

    return list(args.families or FAMILIES)


def step_policies(folder: Path, args: argparse.Namespace, clock: Clock) -> None:
    from ponder.columnar.matrix import matrix_from_parquet

    options = scan_options(folder, args)
    for name in datasets_of(folder):
        matrix = clock.lap(f"matrix {name}", matrix_from_parquet, folder, name, **options)
        evaluate(matrix, family_list(args), clock, name)
        del matrix


def step_store(folder: Path, args: argparse.Namespace, clock: Clock) -> None:
    """The same rows as one CSV (the chunks concatenated) imported by today's importer."""
    import numpy as np

    from ponder.importers import import_paths
    from ponder.store import Store

    csv = folder / "sweep.csv"
    for index, frame in chunks(args.n, args.chunk, args.shape):
        out = frame[CSV_COLUMNS].copy()
        for name in ("budget", "prompt_tokens", "reasoning_tokens", "answer_tokens"):
            out[name] = out[name].astype("Int64")
        out["output_tokens"] = out["output_tokens"].astype("Int64")
        out["level"] = out["level"].astype("Int64")
        out["correct"] = out["correct"].astype(np.int64)
        out["truncated"] = out["truncated"].astype(bool)
        out["answered"] = out["answered"].astype(bool)
        clock.lap("write_csv", out.to_csv, csv, index=False, mode="a", header=index == 0)
        del out, frame
    with Store(folder / "store.sqlite") as store:
        items = clock.lap("import", import_paths, store, [csv])
    result = items[0].result
    clock.info["rows_imported"] = None if result is None else result.outcomes_added
    csv.unlink()


def step_frame(folder: Path, args: argparse.Namespace, clock: Clock) -> None:
    """Today's path: the store's frame (as evaluate_policies reads it), then from_frame."""
    from ponder.analysis import load_matrix
    from ponder.store import Store

    with Store(folder / "store.sqlite", readonly=True) as store:
        frame = clock.lap("outcomes_frame", store.outcomes_frame)
        clock.info["frame_rows"] = len(frame)
        clock.info["frame_mib"] = round(float(frame.memory_usage(deep=True).sum()) / 2**20, 1)
        names = sorted(set(frame["dataset"]))
        del frame
        for name in names:
            matrix = clock.lap(
                f"matrix {name}", load_matrix, store, datasets=[name], max_slots=max_slots(args)
            )
            clock.info[name] = describe_matrix(matrix)
            del matrix


def step_narrow(folder: Path, args: argparse.Namespace, clock: Clock) -> None:
    """Summaries with float32 cost and tokens against float64: identical or not."""
    import dataclasses

    import numpy as np
    import pandas as pd

    from ponder.columnar.matrix import matrix_from_parquet
    from ponder.evaluate.metrics import summarize

    options = scan_options(folder, args)
    for name in args.narrow_datasets:
        wide = matrix_from_parquet(folder, name, **options)
        narrow = dataclasses.replace(
            wide, cost=wide.cost.astype(np.float32), tokens=wide.tokens.astype(np.float32)
        )
        found = []
        for label, matrix in (("float64", wide), ("float32", narrow)):
            evaluation = evaluate(matrix, family_list(args), clock, f"{name} {label}")
            found.append(summarize(evaluation, n_boot=200, seed=0))
        same = True
        for table in ("points", "families"):
            try:
                pd.testing.assert_frame_equal(
                    getattr(found[0], table), getattr(found[1], table), check_exact=True
                )
            except AssertionError:
                same = False
        clock.info[f"{name} identical"] = same


CHILD_STEPS: dict[str, Step] = {
    "write": step_write,
    "matrix": step_matrix,
    "policies": step_policies,
    "store": step_store,
    "frame": step_frame,
    "narrow": step_narrow,
}


# -- parent ----------------------------------------------------------------------------------


def run_step(step: str, folder: Path, n: int, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", step, "--dir", str(folder), "--n", str(n)]
    command += ["--chunk", str(args.chunk), "--shape", args.shape]
    command += ["--max-slots", str(args.max_slots)]
    if args.families:
        command += ["--families", *args.families]
    command += ["--narrow-datasets", *args.narrow_datasets]
    if args.memory_limit:
        command += ["--memory-limit", args.memory_limit]
    # stderr goes to the terminal: progress notes, and the traceback if the step fails.
    what = f"step {step} at {n:,} rows"
    return run_child(command, what, args.max_rss_gib, stderr_to_terminal=True)


def steps_for(n: int, args: argparse.Namespace) -> list[str]:
    steps = ["write", "matrix", "policies"]
    if n <= args.frame_max:
        steps += ["store", "frame"]
    if args.narrow:
        steps.append("narrow")
    return steps


def measure(n: int, args: argparse.Namespace) -> dict[str, Any]:
    CACHE.mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bench-policies-", dir=CACHE))
    steps: dict[str, Any] = {}
    try:
        for step in steps_for(n, args):
            start = time.perf_counter()
            steps[step] = run_step(step, folder, n, args)
            steps[step]["wall_s"] = round(time.perf_counter() - start, 2)
            if not args.json:
                print(f"  {n:>11,} {step:<8} {describe(steps[step])}", flush=True)
        steps["write"]["info"]["parquet_mib"] = round(tree_mib(folder / "outcomes"), 1)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result: dict[str, Any] = {"rows": n, "steps": steps}
    if "frame" in steps:
        result["paths_equal"] = {
            name: steps["frame"]["info"][name]["digest"] == info["digest"]
            for name, info in steps["matrix"]["info"].items()
            if isinstance(info, dict) and "digest" in info
        }
    return result


def describe(result: dict[str, Any]) -> str:
    laps = " ".join(f"{k} {v:.2f}s" for k, v in result["seconds"].items())
    return f"peak {result['info']['peak_mib']:,.0f} MiB  {laps}"


def print_table(results: list[dict[str, Any]]) -> None:
    print(
        f"\n{'rows':>11} {'step':<9} {'seconds':>8} {'peak MiB':>9} | per dataset: shape, "
        "matrix MiB, B/slot, filled"
    )
    for r in results:
        for step, s in r["steps"].items():
            total = sum(s["seconds"].values())
            print(f"{r['rows']:>11,} {step:<9} {total:>8.2f} {s['info']['peak_mib']:>9,.0f}")
        for name, info in r["steps"]["matrix"]["info"].items():
            if isinstance(info, dict) and "shape" in info:
                print(
                    f"{'':>11} {name:<9} {'x'.join(map(str, info['shape'])):>18} "
                    f"{info['mib']:>8} MiB {info['bytes_per_slot']:>5} B/slot "
                    f"filled {info['filled']:.3f}"
                )
        for name, info in r["steps"].get("policies", {}).get("info", {}).items():
            if isinstance(info, dict):
                print(
                    f"{'':>11} {name:<9} policies: {info['configs']} complete configs, "
                    f"{info['candidates']} candidates, skipped {info['skipped_families']}"
                )
        narrow = r["steps"].get("narrow", {}).get("info", {})
        for key, same in narrow.items():
            if key.endswith(" identical"):
                print(f"{'':>11} float32 cost/tokens, {key}: {same}")
        if "paths_equal" in r:
            print(f"{'':>11} segments vs store frame, equal matrices: {r['paths_equal']}")


def parent(args: argparse.Namespace) -> None:
    env = environment()
    if not args.json:
        print(" ".join(f"{k}={v}" for k, v in env.items()) + f" shape={args.shape}", flush=True)
    results = [measure(n, args) for n in args.rows]
    env["load1_end"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps({"environment": env, "shape": args.shape, "results": results}, indent=2))
        return
    print_table(results)
    print(f"\nload1 {env['load1']} -> {env['load1_end']} on {env['cpus']} CPUs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=whole, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--chunk", type=whole, default=1_000_000, help="rows per chunk")
    parser.add_argument("--shape", choices=("wide", "deep"), default="deep")
    parser.add_argument("--families", nargs="+", help="policy families (default: all)")
    parser.add_argument("--frame-max", type=whole, default=1_000_000, help="today's path up to")
    parser.add_argument("--narrow", action="store_true", help="float32 cost/tokens vs float64")
    parser.add_argument("--narrow-datasets", nargs="+", default=["aime24", "aime25"])
    parser.add_argument("--memory-limit", help="DuckDB memory_limit of the scan, e.g. 512MB")
    parser.add_argument(
        "--max-slots",
        type=int,
        default=SEQUENTIAL_SLOTS,
        help=f"sample slots a matrix keeps per cell (default {SEQUENTIAL_SLOTS}, as ponder "
        "evaluate; 0: all)",
    )
    parser.add_argument("--max-rss-gib", type=float, default=6.0, help="kill a child above this")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--child", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args, CHILD_STEPS)
    else:
        parent(args)


if __name__ == "__main__":
    main()
