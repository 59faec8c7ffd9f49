"""`ponder sweep run / status` as a user runs them (a subprocess, the real entry point)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from _sweep_toy import LADDER, RESERVE, write_problems, write_spec


def ponder(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PONDER_DATA_DIR": str(tmp_path / "user-data"), "COLUMNS": "200"}
    env.pop("PONDER_STORE", None)
    return subprocess.run(
        [sys.executable, "-m", "ponder", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )


def test_dry_run_prints_the_estimate_and_runs_nothing(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    store = tmp_path / "s.sqlite"
    result = ponder(
        tmp_path, "sweep", "run", str(spec), "--store", str(store), "--dry-run", "--json"
    )
    assert result.returncode == 0, result.stderr
    estimate = json.loads(result.stdout)["estimate"]
    # 3 problems, greedy only: 3 ladder chains (largest rung 128, 5 probes each) + 3 no-think
    chains_tokens = 3 * (max(LADDER) + len(LADDER) * RESERVE)
    assert estimate["items"] == estimate["pending"] == 6
    assert (estimate["chains"], estimate["probes"]) == (3, 3 * len(LADDER) + 3)
    assert estimate["generated_tokens_max"] == chains_tokens + 3 * RESERVE
    assert estimate["seconds"] is None  # no decode rate known for a fake model
    assert not store.exists()


def test_run_then_status_then_resume(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    store = tmp_path / "s.sqlite"
    result = ponder(tmp_path, "sweep", "run", str(spec), "--store", str(store), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["done"], summary["errors"], summary["skipped"]) == (6, 0, 0)
    by_cell = {(r["mode"], r["budget"]): r["accuracy"] for r in summary["accuracy"]}
    # Hand-worked (see test_sweep_runner): right from the need on (40 / 60 / 100 tokens).
    assert by_cell[("think-greedy", 32)] == 0.0
    assert by_cell[("think-greedy", 64)] == 2 / 3
    assert by_cell[("think-greedy", 128)] == 1.0
    assert by_cell[("no-think-greedy", None)] == 1 / 3
    status = ponder(tmp_path, "sweep", "status", str(spec), "--store", str(store), "--json")
    assert json.loads(status.stdout)["done"] == 6
    again = ponder(tmp_path, "sweep", "run", str(spec), "--store", str(store))
    assert again.returncode == 0, again.stderr
    assert "0 items done, 6 skipped" in again.stdout
    assert "think-greedy" in again.stdout  # the accuracy table


def test_bad_spec_is_one_line_and_creates_no_store(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, budgets={"ladder": [64, 32]})
    store = tmp_path / "s.sqlite"
    result = ponder(tmp_path, "sweep", "run", str(spec), "--store", str(store))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith(f"error: {spec}:")
    assert "field 'budgets.ladder'" in result.stderr and "[64, 32]" in result.stderr
    assert not store.exists()


def test_unreachable_upstream_fails_before_any_work(tmp_path: Path) -> None:
    models = [{"name": "m", "backend": "fake", "options": {"unreachable": True}}]
    spec = write_spec(tmp_path, models=models)
    store = tmp_path / "s.sqlite"
    result = ponder(tmp_path, "sweep", "run", str(spec), "--store", str(store))
    assert result.returncode == 1 and "upstream not usable" in result.stderr
    status = ponder(tmp_path, "sweep", "status", str(spec), "--store", str(store), "--json")
    assert json.loads(status.stdout)["pending"] == 6


def test_quick_run_from_flags(tmp_path: Path) -> None:
    write_problems(tmp_path)
    store = tmp_path / "s.sqlite"
    result = ponder(
        tmp_path,
        "sweep",
        "run",
        "--model",
        "f",
        "--backend",
        "fake",
        "--option",
        "tokens_per_number=20",
        "--option",
        "min_share=1.0",
        "--problems",
        "probs.jsonl",
        "--ladder",
        "32,64",
        "--reserve",
        "8",
        "--mode",
        "think",
        "--store",
        str(store),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["done"] == 3
    assert [(r["budget"], r["accuracy"]) for r in summary["accuracy"]] == [(32, 0.0), (64, 2 / 3)]


def test_native_budgets_from_flags_go_to_the_engines_own_parameter(tmp_path: Path) -> None:
    """--native sends each budget as the engine's thinking budget (the fake honours it like a
    forced budget: problem a needs 40 tokens, b 60, c 100)."""
    write_problems(tmp_path)
    store = tmp_path / "s.sqlite"
    result = ponder(
        tmp_path,
        *("sweep", "run", "--model", "f", "--backend", "fake"),
        *("--option", "tokens_per_number=20", "--option", "min_share=1.0"),
        *("--option", "native_budget=true", "--problems", "probs.jsonl"),
        *("--native", "32,64", "--reserve", "8", "--mode", "think"),
        *("--store", str(store), "--json"),
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["done"] == 6
    assert [(r["budget"], r["accuracy"]) for r in summary["accuracy"]] == [(32, 0.0), (64, 2 / 3)]


def test_native_budgets_on_an_engine_without_one_are_refused(tmp_path: Path) -> None:
    write_problems(tmp_path)
    result = ponder(
        tmp_path,
        *("sweep", "run", "--model", "f", "--backend", "fake", "--problems", "probs.jsonl"),
        *("--native", "32", "--mode", "think", "--store", str(tmp_path / "s.sqlite")),
    )
    assert result.returncode == 1
    assert "native" in result.stderr and "Traceback" not in result.stderr


def _done_items(store: Path) -> int:
    """Work items the sweep has committed (0 while the store or its tables do not exist)."""
    import sqlite3

    if not store.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM work_items").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def test_ctrl_c_stops_cleanly_and_the_next_run_resumes(tmp_path: Path) -> None:
    import signal
    import time

    # Slow enough (about 2 s an item) that the signal lands mid-sweep even on a loaded machine.
    options = {"tokens_per_number": 20, "delay_per_token": 0.05}
    spec = write_spec(
        tmp_path, models=[{"name": "m", "backend": "fake", "options": options}], concurrency=1
    )
    store = tmp_path / "s.sqlite"
    env = {**os.environ, "PONDER_DATA_DIR": str(tmp_path / "user-data")}
    process = subprocess.Popen(
        [sys.executable, "-m", "ponder", "sweep", "run", str(spec), "--store", str(store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
        # pytest-xdist workers ignore SIGINT and children inherit that; a user's terminal
        # delivers it, so restore the default before Python starts.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while _done_items(store) < 1 and time.monotonic() < deadline:  # wait until it is working
        time.sleep(0.05)
    assert process.poll() is None, "the sweep ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    again = ponder(tmp_path, "sweep", "run", str(spec), "--store", str(store), "--json")
    summary = json.loads(again.stdout)
    assert summary["done"] + summary["skipped"] == 6 and summary["errors"] == 0
