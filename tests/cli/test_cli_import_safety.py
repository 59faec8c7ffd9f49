"""`ponder import` through the real CLI, with real concurrent processes: no input loses data."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest


def _env(tmp_path: Path, store: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PONDER_DATA_DIR"] = str(tmp_path / "user-data")
    env["PONDER_STORE"] = str(store)
    return env


def _start(tmp_path: Path, store: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ponder", "import", *args],
        env=_env(tmp_path, store),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _outcomes(store: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(store)
    try:
        return conn.execute(
            "SELECT run_id, problem_id, correct FROM outcomes ORDER BY 1, 2"
        ).fetchall()
    finally:
        conn.close()


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


def test_a_failed_first_import_never_deletes_what_another_process_committed(
    tmp_path: Path,
) -> None:
    """Import A starts on a store that does not exist and blocks reading its input (a FIFO);
    import B creates the store and commits; then A's input turns out bad. B's rows stay."""
    store = tmp_path / "s.sqlite"
    fifo = tmp_path / "slow.csv"
    os.mkfifo(fifo)
    good = tmp_path / "good.csv"
    good.write_text("problem_id,model,correct\np1,m,1\np2,m,0\n")
    a = _start(tmp_path, store, str(fifo), "--dataset", "t")
    try:
        time.sleep(1.0)  # A has decided the store is new and waits for its input
        b = subprocess.run(
            [sys.executable, "-m", "ponder", "import", str(good), "--dataset", "t"],
            env=_env(tmp_path, store),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert b.returncode == 0, b.stderr
        committed = _outcomes(store)
        assert len(committed) == 2
        with fifo.open("w") as pipe:  # unblocks A with a malformed file
            pipe.write("problem_id,model,correct\np9,m\n")
        _, stderr = a.communicate(timeout=120)
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
    assert a.returncode == 1
    assert "slow.csv:2" in _one_error_line(stderr)
    assert store.exists()
    assert _outcomes(store) == committed


def test_imports_racing_to_create_a_store_all_succeed(tmp_path: Path) -> None:
    store = tmp_path / "new.sqlite"
    files = []
    for i in range(4):
        path = tmp_path / f"f{i}.csv"
        path.write_text(f"problem_id,model,correct\np{i},m,1\nq{i},m,0\n")
        files.append(path)
    procs = [_start(tmp_path, store, str(f), "--dataset", "t") for f in files]
    results = [p.communicate(timeout=180) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    assert len(_outcomes(store)) == 8
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".new.sqlite")]
    assert leftovers == []


def test_failed_first_import_creates_nothing(ponder: Any, tmp_path: Path) -> None:
    store = tmp_path / "sub" / "new.sqlite"
    bad = tmp_path / "bad.csv"
    bad.write_text("problem_id,model,correct\np1,m,1\np2,m,maybe\n")
    result = ponder("import", str(bad), "--dataset", "t", store=store)
    assert result.returncode == 1
    assert "bad.csv:3" in _one_error_line(result.stderr)
    assert not store.exists()
    assert list(tmp_path.glob("**/.new.sqlite*")) == []


def test_store_whose_parent_is_a_file(ponder: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    good = tmp_path / "good.csv"
    good.write_text("problem_id,model,correct\np1,m,1\n")
    result = ponder("import", str(good), "--dataset", "t", store=blocker / "s.sqlite")
    assert result.returncode == 1
    assert "is a file, not a folder" in _one_error_line(result.stderr)
    assert blocker.read_text() == "x"


def test_corrupt_store_import_refused_and_curves_fail_cleanly(ponder: Any, tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    rows = "".join(f"p{i},m{i % 7},{i % 2},{'x' * 300}\n" for i in range(600))
    good = tmp_path / "good.csv"
    good.write_text("problem_id,model,correct,response_text\n" + rows)
    assert ponder("import", str(good), "--dataset", "t", store=store).returncode == 0
    data = bytearray(store.read_bytes())
    assert len(data) > 16 * 4096
    middle = (len(data) // 4096 // 2) * 4096
    data[middle : middle + 4096] = b"\x5a" * 4096
    store.write_bytes(bytes(data))
    other = tmp_path / "other.csv"
    other.write_text("problem_id,model,correct\nz1,m,1\n")
    result = ponder("import", str(other), "--dataset", "t", store=store)
    assert result.returncode == 1
    assert "damaged" in _one_error_line(result.stderr)
    assert store.read_bytes() == bytes(data)
    result = ponder("curves", store=store)
    assert result.returncode == 1
    _one_error_line(result.stderr)


def test_replace_flag_and_notes_through_the_cli(ponder: Any, tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    data = tmp_path / "mine.csv"
    data.write_text("item,who,ok,spare\nq1,m,1,0\nq2,m,0,1\n")
    args = ["import", str(data), "--map", "problem_id=item", "--map", "model=who"]
    first = ponder(*args, "--map", "correct=ok", "--dataset", "t", store=store)
    assert first.returncode == 0, first.stderr
    assert "ignored" in first.stdout and "spare" in first.stdout
    again = ponder(*args, "--map", "correct=ok", "--dataset", "t", store=store)
    assert again.returncode == 0 and "unchanged" in again.stdout
    fixed = ponder(*args, "--map", "correct=spare", "--dataset", "t", store=store)
    assert fixed.returncode == 1
    assert "--replace" in _one_error_line(fixed.stderr)
    fixed = ponder(*args, "--map", "correct=spare", "--dataset", "t", "--replace", store=store)
    assert fixed.returncode == 0, fixed.stderr
    assert sorted(r[2] for r in _outcomes(store)) == [0.0, 1.0]
    assert len(_outcomes(store)) == 2


@pytest.mark.parametrize("preset_file", ["per_problem_accuracy.csv", "gsm8k_responses.csv"])
def test_header_only_preset_files(ponder: Any, tmp_path: Path, preset_file: str) -> None:
    headers = {
        "per_problem_accuracy.csv": "problem,model,accuracy_pct_over_4_runs\n",
        "gsm8k_responses.csv": "prompt,a,b,a_response,b_response\n",
    }
    path = tmp_path / preset_file
    path.write_text(headers[preset_file])
    result = ponder("import", str(path), store=tmp_path / "s.sqlite")
    assert result.returncode == 1
    assert "no data rows" in _one_error_line(result.stderr)


def test_private_files_of_killed_imports_are_cleaned_up(tmp_path: Path) -> None:
    from ponder.importers import import_into

    dead_pid = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_pid.wait()
    stale = tmp_path / f".s.sqlite.{dead_pid.pid}.abc"
    stale_wal = tmp_path / f".s.sqlite.{dead_pid.pid}.abc-wal"
    live = tmp_path / f".s.sqlite.{os.getpid()}.def"
    for f in (stale, stale_wal, live):
        f.write_bytes(b"x")
    good = tmp_path / "good.csv"
    good.write_text("problem_id,model,correct\np1,m,1\n")
    _, counts = import_into(tmp_path / "s.sqlite", [good], dataset="t")
    assert counts["outcomes"] == 1
    assert not stale.exists() and not stale_wal.exists()
    assert live.read_bytes() == b"x"  # a process that is still running keeps its file
