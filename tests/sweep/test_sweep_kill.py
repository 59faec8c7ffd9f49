"""Resume after SIGKILL: a real `ponder sweep run` process killed at random moments.

After each of three kills the same command is run again; the fourth run goes to the end. The
outcome rows must then equal those of an uninterrupted run exactly (every column but the
wall-clock latency), with no duplicate, and every item marked done once.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _sweep_toy import write_problems, write_spec

from ponder.store import Store
from ponder.sweep import load_spec, run_sweep

# Twelve problems, each answer the sum of its numbers (the fake's rule).
PROBLEMS = [
    (f"p{i:02d}", f"Add {i + 3} and {2 * i + 10} and {i}.", str((i + 3) + (2 * i + 10) + i))
    for i in range(12)
]
COMPARED = (
    "run_id, dataset, problem_id, model, mode, budget, sample_idx, prompt_tokens, "
    "reasoning_tokens, answer_tokens, output_tokens, truncated, answered, extracted_answer, "
    "correct, n_runs, response_text, extra_json, chain_id, rung, natural, answer_prob, "
    "entropy_tail, stop_cost_tokens"
)


def _spec(folder: Path, delay: float) -> Path:
    options = {"tokens_per_number": 20, "delay_per_token": delay}
    path = write_spec(
        folder,
        models=[{"name": "fake-k", "backend": "fake", "options": options}],
        sampling=[{"temperature": 0.7, "samples": 2}, {"temperature": 0}],
        budgets={"ladder": [8, 16, 32, 64, 128]},
        concurrency=3,
    )
    write_problems(folder, PROBLEMS)
    return path


def _rows(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    rows = conn.execute(f"SELECT {COMPARED} FROM outcomes").fetchall()
    conn.close()
    return rows


def _done(path: Path) -> int:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)  # never creates it
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if "work_items" not in tables:
            return 0
        return int(conn.execute("SELECT COUNT(*) FROM work_items").fetchone()[0])
    finally:
        conn.close()


def _run(spec: Path, store: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PONDER_DATA_DIR": str(store.parent / "user-data")}
    return subprocess.Popen(
        [sys.executable, "-m", "ponder", "sweep", "run", str(spec), "--store", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=spec.parent,
    )


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_at_random_moments_then_resume_gives_the_same_rows(
    tmp_path: Path, seed: int
) -> None:
    reference = tmp_path / "ref"
    reference.mkdir()
    with Store(reference / "s.sqlite") as store:
        run_sweep(load_spec(_spec(reference, 0.0)), store, backoff_s=0)
    expected = _rows(reference / "s.sqlite")
    assert len(expected) == 12 * 3 * (5 + 1)  # problems x samples x (5 rungs + no-think)

    work = tmp_path / "killed"
    work.mkdir()
    spec = _spec(work, 0.006)  # ~5 s of work uninterrupted: kills land mid-sweep
    store = work / "s.sqlite"
    rng = random.Random(seed)
    kills = 0
    partial: list[int] = []  # items done when each kill landed
    for attempt in range(4):  # three kills at random moments, then a run to the end
        before = _done(store) if store.exists() else 0
        process = _run(spec, store)
        if attempt == 1 or attempt == 2:
            # A random moment after this run has made progress: on a loaded machine the
            # start-up alone can outlast a fixed delay, and no kill would land mid-sweep.
            patience = time.monotonic() + 300
            while process.poll() is None and time.monotonic() < patience:
                with contextlib.suppress(sqlite3.Error):  # a store being created
                    if store.exists() and _done(store) > before:
                        break
                time.sleep(0.05)
            deadline = time.monotonic() + rng.uniform(0.0, 1.5)
        else:  # any moment, the store's creation included (attempt 0), or to the end
            deadline = time.monotonic() + (rng.uniform(0.5, 4.0) if attempt == 0 else 600)
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            if store.exists():
                partial.append(_done(store))
            continue
        _, err = process.communicate()
        assert process.returncode == 0, err.decode()
        break
    else:
        pytest.fail("the sweep never finished")
    assert kills >= 1, "no kill landed: the sweep finished before the first kill"
    assert any(0 < n < 72 for n in partial), f"no kill landed mid-sweep: {partial}"
    got = _rows(store)
    assert len(got) == len(set(got)) == len(expected)
    assert sorted(got, key=repr) == sorted(expected, key=repr)
    conn = sqlite3.connect(store)
    assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT item_key) FROM work_items").fetchone() == (
        72,
        72,
    )
    assert conn.execute("SELECT DISTINCT status FROM work_items").fetchall() == [("done",)]
    assert conn.execute("SELECT COUNT(*) FROM chains").fetchone() == (36,)
    conn.close()
