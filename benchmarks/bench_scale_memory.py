"""Where the out-of-core curves' memory goes (issue 12): RSS by phase and by batch.

``benchmarks/bench_scale.py`` found all curves (``ponder.columnar.curves_from_parquet``)
peaking higher with more rows at the same batch size, while the side tables alone stay flat.
This measures one ``curves_from_parquet`` run per size, in a fresh process each, without
changing it: its ``laps`` phases are tagged (``batched.Laps`` replaced by a subclass that
records where each phase starts), each batch's end is seen by wrapping ``batch_curves``, and
at each batch's end the probe records

- RSS (``VmRSS``) and the phase's own peak (``VmHWM``, reset at each phase start through
  ``/proc/self/clear_refs`` where Linux allows it), plus a sampling thread's RSS over time;
- pyarrow's pool (``pyarrow.total_allocated_bytes``), DuckDB's own accounting
  (``duckdb_memory()``), glibc's heap (``mallinfo2``: in use vs kept free);
- the Python heap (``tracemalloc``, ``--trace``): its size, and at the end the allocation
  sites that grew most between the first and the last batch;
- what the run keeps across batches: the finished batches' tables (``parts``), the survey
  and the resampler's cached matrices.

Steady growth of the end-of-batch RSS (MiB per batch, fitted) means something is kept.

Segments are written by ``bench_scale.py``'s generator (wide shape, 1e6-row chunks) into
``--dir`` (a temporary folder by default), one folder per size, reused when present.

Run: ``nice -n 19 .venv/bin/python benchmarks/bench_scale_memory.py [--rows 1e6 1e7]
[--dir FOLDER] [--max-groups 250000] [--n-boot 1000] [--memory-limit 1GB] [--trace]
[--keep] [--json]``
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_scale  # noqa: E402  (the generator, the connection and the child runner)

MIB = 2**20
SAMPLE_SECONDS = 0.05


# -- child side: one instrumented curves_from_parquet ----------------------------------------


def proc_status(field: str) -> float:
    """A ``/proc/self/status`` size field (``VmRSS``, ``VmHWM``) in MiB, 0 where missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def reset_peak() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


class MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (all size_t)."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def trim() -> None:
    """glibc's ``malloc_trim(0)``: hand the heap's free pages back (an experiment: does
    the RSS between batches fall back?)."""
    with suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


def malloc_info() -> dict[str, float]:
    """glibc heap in MiB: ``in_use`` (malloc'd, not freed), ``free_kept`` (freed but kept
    in the heap), ``mmapped``; empty off glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return {}
    fn.restype = MallInfo2
    info = fn()
    return {
        "in_use": (info.uordblks + info.hblkhd) / MIB,
        "free_kept": info.fordblks / MIB,
        "mmapped": info.hblkhd / MIB,
        "arena": info.arena / MIB,
    }


class Probe:
    """RSS sampled over time, tagged by the current phase and batch; records per batch."""

    def __init__(self, trace: bool) -> None:
        self.phase = "start"
        self.batch = 0
        self.trace = trace
        self.samples: list[tuple[float, float, str, int]] = []
        self.phase_peaks: dict[str, list[float]] = {}
        self.batches: list[dict[str, Any]] = []
        self.gaps: list[dict[str, Any]] = []
        self.phase_log: list[tuple[int, str, float]] = []
        self.trim = False
        self.kept_mib = 0.0
        self.snapshots: list[tracemalloc.Snapshot] = []
        self.con: Any = None
        self.can_reset = reset_peak()
        self._stop = threading.Event()
        self._start = time.perf_counter()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            now = time.perf_counter() - self._start
            self.samples.append((now, proc_status("VmRSS"), self.phase, self.batch))

    @contextmanager
    def in_phase(self, name: str) -> Iterator[None]:
        """Tag samples with ``name``; its own peak RSS is kept per occurrence."""
        outer = self.phase
        self.phase = name
        base = proc_status("VmRSS")
        if self.can_reset:
            reset_peak()
        try:
            yield
        finally:
            peak = proc_status("VmHWM") if self.can_reset else base
            self.phase_peaks.setdefault(name, []).append(peak)
            self.phase_log.append((self.batch, name, peak))
            self.phase = outer

    def batch_start(self) -> None:
        """The floor between batches: the previous batch's side tables are dropped by now."""
        import pyarrow as pa

        if self.trim:
            trim()
        self.batch += 1
        gap = {
            "batch": self.batch,
            "rss": proc_status("VmRSS"),
            "arrow": pa.total_allocated_bytes() / MIB,
            "malloc": malloc_info(),
        }
        if self.trace:
            gap["python"] = tracemalloc.get_traced_memory()[0] / MIB
            if self.batch > 1:  # the first gap is the survey's: kept from the second on
                snapshot = tracemalloc.take_snapshot()
                self.snapshots = [*self.snapshots[:1], snapshot]  # the first and the latest
        self.gaps.append(gap)

    def batch_end(self, tables: Any) -> None:
        """One record at a batch's end (its side tables and work arrays dropped or not)."""
        import pyarrow as pa

        self.kept_mib += (
            sum(
                t.memory_usage(deep=True).sum()
                for t in vars(tables).values()
                if hasattr(t, "shape")
            )
            / MIB
        )
        record: dict[str, Any] = {
            "batch": self.batch,
            "t": round(time.perf_counter() - self._start, 2),
            "rss": proc_status("VmRSS"),
            "arrow": pa.total_allocated_bytes() / MIB,
            "duckdb": self.duckdb_mib(),
            "malloc": malloc_info(),
            "kept_tables": self.kept_mib,
        }
        if self.trace:
            record["python"] = tracemalloc.get_traced_memory()[0] / MIB
        self.batches.append(record)

    def duckdb_mib(self) -> dict[str, float]:
        """DuckDB's own accounting: memory by tag (non-zero) and what it spilled."""
        if self.con is None:
            return {}
        rows = self.con.sql(
            "SELECT tag, memory_usage_bytes, temporary_storage_bytes FROM duckdb_memory()"
        ).fetchall()
        out = {str(tag): used / MIB for tag, used, _ in rows if used}
        out["total"] = sum(used for _, used, _ in rows) / MIB
        out["spilled"] = sum(spilled for _, _, spilled in rows) / MIB
        return out


def growth_sites(probe: Probe, top: int = 12) -> list[str]:
    """The allocation sites whose live size grew most between batches, from the second
    batch's start to the last one's."""
    if len(probe.snapshots) < 2:
        return []
    first, last = probe.snapshots
    keep = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__)]
    diff = last.filter_traces(keep).compare_to(first.filter_traces(keep), "lineno")
    return [str(stat) for stat in diff[:top]]


def largest_sites(probe: Probe, top: int = 12) -> list[str]:
    """The largest live allocation sites at the last batch's end."""
    if not probe.snapshots:
        return []
    return [str(stat) for stat in probe.snapshots[-1].statistics("lineno")[:top]]


def instrument(probe: Probe) -> Callable[[], None]:
    """Tag ``curves_from_parquet``'s phases and batch ends; returns the undo."""
    from ponder.columnar import batched

    original = (batched.Laps, batched.side_tables, batched.batch_curves)

    class TaggedLaps(batched.Laps):
        @contextmanager
        def lap(self, name: str) -> Iterator[None]:
            with probe.in_phase(name), super().lap(name):
                yield

    def side_tables(*args: Any, **kwargs: Any) -> Any:
        probe.batch_start()
        out = original[1](*args, **kwargs)
        probe.gaps[-1]["groups"] = len(out[0])
        probe.gaps[-1]["answer_rows"] = len(out[2])
        return out

    def batch_curves(*args: Any, **kwargs: Any) -> Any:
        out = original[2](*args, **kwargs)
        probe.batch_end(out)
        return out

    batched.Laps = TaggedLaps  # type: ignore[misc]
    batched.side_tables = side_tables
    batched.batch_curves = batch_curves

    def undo() -> None:
        batched.Laps, batched.side_tables, batched.batch_curves = original  # type: ignore[misc]

    return undo


def child(args: argparse.Namespace) -> None:
    """One instrumented run; prints its records as one JSON line."""
    import pandas as pd

    from ponder.columnar import curves_from_parquet

    folder = Path(args.dir)
    if args.group_chunk:  # an experiment: a smaller bound on bootstrap_groups' blocks
        from ponder.curves import bootstrap

        bootstrap._GROUP_CHUNK_ELEMENTS = args.group_chunk
    if args.trace:
        tracemalloc.start(args.trace_frames)
    levels = pd.read_parquet(folder / "problems.parquet")
    con = bench_scale.connection(folder, args)
    for setting in args.duckdb_set:  # e.g. allocator_flush_threshold = '16MB'
        con.execute(f"SET {setting}")
    laps: dict[str, float] = {}
    rss0 = proc_status("VmRSS")
    malloc0 = malloc_info()
    with Probe(args.trace) as probe:
        probe.con = con
        probe.trim = args.trim
        undo = instrument(probe)
        try:
            curves = curves_from_parquet(
                folder, levels, n_boot=args.n_boot, max_groups=args.max_groups, con=con, laps=laps
            )
        finally:
            undo()
            probe.con = None
    probe.con = con
    after = {"rss": proc_status("VmRSS"), "duckdb": probe.duckdb_mib(), "malloc": malloc_info()}
    con.close()
    result = {
        "rss0": rss0,
        # ru_maxrss follows VmHWM, which the phases reset: the largest phase peak instead.
        "peak": max([bench_scale.peak_mib(), *(max(v) for v in probe.phase_peaks.values())]),
        "batches": probe.batches,
        "gaps": probe.gaps,
        "phase_log": probe.phase_log,
        "malloc0": malloc0,
        "phase_peaks": {k: max(v) for k, v in probe.phase_peaks.items()},
        "phase_peak_last": {k: v[-1] for k, v in probe.phase_peaks.items()},
        "phase_peak_first": {k: v[0] for k, v in probe.phase_peaks.items()},
        "hwm_reset": probe.can_reset,
        "laps": laps,
        "after": after,
        "cells": len(curves.cells),
        "kept_tables_final": sum(
            getattr(curves, name).memory_usage(deep=True).sum() / MIB
            for name in ("cells", "sweet_spots", "pass_at_k", "maj_at_k", "difficulty")
        ),
        "growth_sites": growth_sites(probe),
        "largest_sites": largest_sites(probe),
        "timeline": thin(probe.samples, 400),
    }
    print("RESULT " + json.dumps(result), flush=True)


def rss_of(sample: tuple[float, float, str, int]) -> float:
    return sample[1]


def thin(samples: list[tuple[float, float, str, int]], most: int) -> list[Any]:
    """At most ``most`` samples, the largest RSS of each stretch kept."""
    if len(samples) <= most:
        return [list(s) for s in samples]
    step = len(samples) / most
    out: list[Any] = []
    for i in range(most):
        part = samples[int(i * step) : int((i + 1) * step)]
        highest = max(part, key=rss_of)
        out.append(list(highest))
    return out


# -- parent side: write the segments, run the child per size, print ---------------------------


def write_segments(folder: Path, n: int, args: argparse.Namespace) -> float:
    """``bench_scale.py``'s writer step into ``folder`` (skipped when already written)."""
    if (folder / "problems.parquet").exists() and (folder / "outcomes").exists():
        return 0.0
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    bench_scale.run_step("write", folder, n, args)
    return time.perf_counter() - start


def measure(folder: Path, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """The instrumented run at ``n`` rows in a fresh interpreter."""
    command = [sys.executable, __file__, "--child", "--dir", str(folder)]
    command += ["--n-boot", str(args.n_boot), "--max-groups", str(args.max_groups)]
    command += ["--memory-limit", args.memory_limit, "--trace-frames", str(args.trace_frames)]
    command += [f"--duckdb-set={setting}" for setting in args.duckdb_set]
    command += ["--group-chunk", str(args.group_chunk)]
    command += ["--trace"] * args.trace + ["--trim"] * args.trim
    start = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"the run at {n:,} rows failed:\n{out.stderr[-3000:]}")
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")][-1]
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    result["rows"] = n
    result["seconds"] = time.perf_counter() - start
    return result


def slope(batches: list[dict[str, Any]], field: Callable[[dict[str, Any]], float]) -> float:
    """MiB per batch of ``field`` at the batches' ends, least squares (0 for < 3 batches);
    the first batch is left out (warm-up: caches, the resampler's matrices)."""
    points = [(b["batch"], field(b)) for b in batches[1:]]
    if len(points) < 2:
        return 0.0
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


FIELDS: dict[str, Callable[[dict[str, Any]], float]] = {
    "rss": lambda b: b["rss"],
    "arrow": lambda b: b["arrow"],
    "duckdb": lambda b: b["duckdb"].get("total", 0.0),
    "malloc_in_use": lambda b: b["malloc"].get("in_use", 0.0),
    "malloc_free_kept": lambda b: b["malloc"].get("free_kept", 0.0),
    "python": lambda b: b.get("python", 0.0),
    "kept_tables": lambda b: b["kept_tables"],
}


def report(result: dict[str, Any]) -> None:
    """One size: end-of-batch records, slopes, phase peaks, growth sites."""
    batches = result["batches"]
    print(
        f"\n== {result['rows']:,} rows: {len(batches)} batches, {result['cells']:,} cells, "
        f"peak {result['peak']:,.0f} MiB (start {result['rss0']:,.0f}), "
        f"{result['seconds']:.1f} s"
    )
    print(
        "between batches (previous side tables dropped), and the batch's peak (phase):\n"
        "  batch   groups answers    rss  arrow python glibc-use glibc-free non-glibc | peak phase"
    )
    peaks = batch_peaks(result["phase_log"])
    gaps = result["gaps"]
    for g in gaps if len(gaps) <= 16 else [*gaps[:8], *gaps[-8:]]:
        m = g["malloc"]
        other = g["rss"] - m.get("arena", 0.0) - m.get("mmapped", 0.0)
        peak, phase = peaks.get(g["batch"], (0.0, ""))
        print(
            f"  {g['batch']:>4} {g.get('groups', 0):>8,} {g.get('answer_rows', 0):>7,} "
            f"{g['rss']:>6.0f} {g['arrow']:>6.1f} {g.get('python', 0.0):>6.1f} "
            f"{m.get('in_use', 0.0):>9.1f} {m.get('free_kept', 0.0):>10.1f} {other:>9.1f} | "
            f"{peak:>5.0f} {phase}"
        )
    print(f"slope between batches, rss {slope(result['gaps'], FIELDS['rss']):+.2f} MiB/batch")
    head = (
        "end of batch: batch      t     rss   arrow  duckdb  malloc-use  malloc-free  python  kept"
    )
    print(head)
    shown = batches if len(batches) <= 12 else [*batches[:6], *batches[-6:]]
    for b in shown:
        print(
            f"{b['batch']:>5} {b['t']:>6.1f} {b['rss']:>7.0f} {FIELDS['arrow'](b):>7.1f} "
            f"{FIELDS['duckdb'](b):>7.1f} {FIELDS['malloc_in_use'](b):>11.1f} "
            f"{FIELDS['malloc_free_kept'](b):>12.1f} {FIELDS['python'](b):>7.1f} "
            f"{b['kept_tables']:>5.1f}"
        )
    print(
        "slope, MiB per batch (end of batch, batch 2 on): "
        + "  ".join(f"{name} {slope(batches, fn):+.2f}" for name, fn in FIELDS.items())
    )
    first, last = result["phase_peak_first"], result["phase_peak_last"]
    print(
        "phase peak RSS MiB (first occurrence / last / max): "
        + "  ".join(
            f"{k} {first[k]:.0f}/{last[k]:.0f}/{v:.0f}" for k, v in result["phase_peaks"].items()
        )
    )
    print(f"after the run: {json.dumps(result['after'])}")
    if batches:
        print(f"DuckDB at the last batch: {json.dumps(batches[-1]['duckdb'])}")
        print(f"glibc at the last batch: {json.dumps(batches[-1]['malloc'])}")
    for title, key in (
        ("grew most, first -> last batch", "growth_sites"),
        ("largest live, last batch's start", "largest_sites"),
    ):
        if result[key]:
            print(f"python heap, {title}:")
            for line in result[key]:
                print("   " + line)


def batch_peaks(log: list[list[Any]]) -> dict[int, tuple[float, str]]:
    """Each batch's largest phase peak and the phase it came in."""
    out: dict[int, tuple[float, str]] = {}
    for batch, phase, peak in log:
        if peak > out.get(batch, (0.0, ""))[0]:
            out[batch] = (peak, phase)
    return out


def parent(args: argparse.Namespace) -> None:
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="ponder-memory-"))
    results = []
    try:
        for n in args.rows:
            folder = base / f"rows-{n}"
            wrote = write_segments(folder, n, args)
            if not args.json:
                print(f"{n:,} rows: segments in {folder} (written in {wrote:.1f} s)", flush=True)
            results.append(measure(folder, n, args))
            if not args.json:
                report(results[-1])
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=bench_scale.whole, nargs="+", default=[10**6, 10**7])
    parser.add_argument("--dir", help="where the segments go, one folder per size (kept)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--memory-limit", default="1GB")
    parser.add_argument("--max-groups", type=int, default=250_000)
    parser.add_argument("--trace", action="store_true", help="tracemalloc (slower)")
    parser.add_argument("--trim", action="store_true", help="malloc_trim between batches")
    parser.add_argument(
        "--duckdb-set", action="append", default=[], help="a DuckDB SET, e.g. threads = 1"
    )
    parser.add_argument(
        "--group-chunk",
        type=int,
        default=0,
        help="override bootstrap_groups' problems x groups bound per chunk (0: as is)",
    )
    parser.add_argument("--trace-frames", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    # What bench_scale's writer and connection read.
    args.chunk, args.shape, args.max_rss_gib = 10**6, "wide", 8.0
    if args.child:
        child(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
