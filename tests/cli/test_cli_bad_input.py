"""Bad input through the real CLI: one clear line on stderr, non-zero exit, store unchanged."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import pytest


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def small_store(tmp_path: Path, shared_data: Path, ponder: Any) -> Path:
    store = tmp_path / "s.sqlite"
    ponder("import", str(shared_data / "matharena_aime2025_I"), store=store, check_ok=True)
    return store


def _snapshot(store: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(store)
    rows = conn.execute("SELECT * FROM outcomes ORDER BY rowid").fetchall()
    conn.close()
    return rows


def test_missing_file(ponder: Any, small_store: Path, tmp_path: Path) -> None:
    before = _snapshot(small_store)
    result = ponder("import", str(tmp_path / "nope.csv"), store=small_store)
    assert result.returncode == 1
    assert "nope.csv: no such file" in _one_error_line(result.stderr)
    assert _snapshot(small_store) == before


def test_malformed_csv_row_names_line(ponder: Any, small_store: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("problem_id,model,correct\na,m,1\nb,m\n")
    before = _snapshot(small_store)
    result = ponder("import", str(bad), "--dataset", "x", store=small_store)
    assert result.returncode == 1
    line = _one_error_line(result.stderr)
    assert "bad.csv:3" in line and "expected 3 fields, found 2" in line
    assert _snapshot(small_store) == before


def test_bad_value_names_line_and_field(ponder: Any, small_store: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "m": "x", "ok": true}\n{"id": "b", "m": "x", "ok": "perhaps"}\n')
    before = _snapshot(small_store)
    result = ponder(
        "import",
        str(bad),
        "--map",
        "problem_id=id",
        "--map",
        "model=m",
        "--map",
        "correct=ok",
        store=small_store,
    )
    assert result.returncode == 1
    line = _one_error_line(result.stderr)
    assert "bad.jsonl:2" in line and "field 'ok'" in line
    assert _snapshot(small_store) == before


def test_unknown_mapping_field_and_column(ponder: Any, small_store: Path, tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("id,m,ok\na,x,1\n")
    result = ponder("import", str(data), "--map", "problme_id=id", store=small_store)
    assert result.returncode == 1
    assert "unknown field 'problme_id'" in _one_error_line(result.stderr)
    result = ponder(
        "import",
        str(data),
        "--map",
        "problem_id=ident",
        "--map",
        "model=m",
        "--map",
        "correct=ok",
        store=small_store,
    )
    assert result.returncode == 1
    assert "not in the file: 'ident'" in _one_error_line(result.stderr)


def test_corrupt_store_is_refused_and_untouched(ponder: Any, tmp_path: Path) -> None:
    store = tmp_path / "corrupt.sqlite"
    store.write_bytes(b"\x00garbage" * 1000)
    before = store.read_bytes()
    result = ponder("curves", store=store)
    assert result.returncode == 1
    assert "not a readable ponder store" in _one_error_line(result.stderr)
    assert store.read_bytes() == before


def test_newer_schema_store(ponder: Any, small_store: Path) -> None:
    conn = sqlite3.connect(small_store)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    result = ponder("curves", store=small_store)
    assert result.returncode == 1
    assert "newer than this ponder supports" in _one_error_line(result.stderr)


def test_reading_a_missing_store_does_not_create_it(ponder: Any, tmp_path: Path) -> None:
    store = tmp_path / "absent.sqlite"
    result = ponder("report", store=store)
    assert result.returncode == 1
    assert "no store at" in _one_error_line(result.stderr)
    assert not store.exists()


def test_usage_errors_exit_2(ponder: Any, small_store: Path) -> None:
    result = ponder("curves", "--table", "everything", store=small_store)
    assert result.returncode == 2
    assert "Invalid value for --table: 'everything'" in result.stderr
    assert "expected one of cells, sweet-spots, pass-at-k, maj-at-k, difficulty" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    result = ponder("curves", "--n-boot", "5", store=small_store)
    assert result.returncode == 2
    assert "Invalid value for '--n-boot'" in result.stderr
    assert "greater than or equal to 100" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_filter_matching_nothing(ponder: Any, small_store: Path) -> None:
    result = ponder("curves", "-d", "nothing-here", store=small_store)
    assert result.returncode == 1
    line = _one_error_line(result.stderr)  # issue 7: say what the store has, not "no outcomes"
    assert "--dataset 'nothing-here': unknown dataset" in line
    assert "datasets in the store: aime25" in line


def test_demo_without_data(ponder: Any, tmp_path: Path) -> None:
    result = ponder("demo", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o"))
    assert result.returncode == 1
    assert "recorded datasets not found" in _one_error_line(result.stderr)


def test_failed_first_import_leaves_no_store(ponder: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("problem_id,model,correct\na,m,maybe\n")
    store = tmp_path / "new.sqlite"
    result = ponder("import", str(bad), "--dataset", "x", store=store)
    assert result.returncode == 1
    line = _one_error_line(result.stderr)
    assert "bad.csv:2" in line and "field 'correct'" in line
    assert not store.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("new.sqlite")] == []


def test_piped_tables_are_not_cut(ponder: Any, small_store: Path, shared_data: Path) -> None:
    result = ponder("curves", "--n-boot", "200", store=small_store)
    assert result.returncode == 0, result.stderr
    # The longest model name and its accuracy, whole, on one row; the accuracy is the mean
    # of the recorded per-problem percentages, read straight from the source CSV.
    source = pd.read_csv(shared_data / "matharena_aime2025_I/per_problem_accuracy.csv")
    model = "DeepSeek-R1-Distill-Qwen-14B"
    rows = source[source["model"] == model]
    assert len(rows) == 15
    expected = f"{rows['accuracy_pct_over_4_runs'].mean() / 100:.3f}"
    (line,) = [row for row in result.stdout.splitlines() if row.startswith(model + " ")]
    fields = line.split()
    assert fields[:5] == [model, "aime25", "default", "none", "no"]
    assert fields[5:8] == ["15", "15", expected]
    assert "…" not in result.stdout
