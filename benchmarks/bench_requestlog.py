"""Benchmark of the request log of `ponder serve`: batched writer vs one commit per request.

Per size (1k, 10k, 100k records), each into a fresh store, timed in the same run:

- batched  ``RequestLog.submit`` of every record then ``flush()``: what the server's log costs
           end to end; ``submit`` alone is also reported (what the event loop pays per request);
- naive    baseline: one INSERT and one COMMIT per request on a connection with the same
           settings (WAL, ``synchronous = NORMAL``), so the difference is batching alone;
- naive-full  the same baseline with SQLite's default ``synchronous = FULL`` (an fsync per
           commit), at the smallest size only: it is the slowest by far.

Records are built before timing (the server builds them anyway). Row counts are checked.

Run: ``.venv/bin/python benchmarks/bench_requestlog.py [--sizes 1000 10000 100000]``
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from ponder.serve.requestlog import RECORD_COLUMNS, RequestLog, RequestRecord
from ponder.store import Store

INSERT = (
    f"INSERT INTO requests ({', '.join(RECORD_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(RECORD_COLUMNS))})"
)


def records(n: int) -> list[RequestRecord]:
    return [
        RequestRecord(
            request_id=f"req-{i:08d}",
            model="ponder/auto",
            policy="auto",
            decision_json='{"mode": "think", "budget": 1024}',
            config="think-1024",
            status=200,
            prompt_tokens=50 + i % 200,
            reasoning_tokens=i % 2048,
            answer_tokens=20,
            calls=1,
            rungs=1 + i % 3,
            latency_s=0.5 + (i % 100) / 100,
            answer=str(i % 97),
            prompt_sha256=f"{i:064x}",
        )
        for i in range(n)
    ]


def count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0])
    finally:
        conn.close()


def batched(path: Path, recs: list[RequestRecord]) -> tuple[float, float]:
    """(submit seconds, submit + flush seconds)."""
    log = RequestLog(path, max_pending=len(recs) + 1)
    try:
        start = time.perf_counter()
        for r in recs:
            log.submit(r)
        submitted = time.perf_counter()
        log.flush()
        done = time.perf_counter()
    finally:
        log.close()
    return submitted - start, done - start


def naive(path: Path, recs: list[RequestRecord], synchronous: str) -> float:
    Store(path).close()  # the same schema, created and in WAL mode
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    try:
        start = time.perf_counter()
        for r in recs:
            conn.execute("BEGIN")
            conn.execute(INSERT, tuple(getattr(r, c) for c in RECORD_COLUMNS))
            conn.execute("COMMIT")
        return time.perf_counter() - start
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    args = parser.parse_args()
    print(f"{'records':>8} {'method':<11} {'seconds':>8} {'records/s':>11} {'vs naive':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            recs = records(n)
            folder = Path(tmp) / str(n)
            folder.mkdir()
            submit_s, total_s = batched(folder / "batched.sqlite", recs)
            naive_s = naive(folder / "naive.sqlite", recs, "NORMAL")
            assert count(folder / "batched.sqlite") == n
            assert count(folder / "naive.sqlite") == n
            rows = [
                ("submit", submit_s),
                ("batched", total_s),
                ("naive", naive_s),
            ]
            if n == min(args.sizes):
                naive_full_s = naive(folder / "naive-full.sqlite", recs, "FULL")
                assert count(folder / "naive-full.sqlite") == n
                rows.append(("naive-full", naive_full_s))
            for method, seconds in rows:
                print(
                    f"{n:>8} {method:<11} {seconds:>8.3f} {n / seconds:>11,.0f} "
                    f"{naive_s / seconds:>8.2f}x"
                )


if __name__ == "__main__":
    main()
