"""Compaction: every committed outcome row lands in exactly one segment, a crash at any point
(an exception between the write and the commit, a killed process mid-scan or mid-commit)
loses nothing and a rerun completes it, and two compactions never run at once."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from columnar_helpers import synthetic_frame

from ponder.columnar import catalog as catalog_module
from ponder.columnar import compaction
from ponder.columnar.catalog import Catalog, parquet_root
from ponder.columnar.compaction import (
    LEASE_KEY,
    compact,
    compacted_up_to,
    compaction_current,
    readable_segments,
    uncompacted_rows,
)
from ponder.columnar.segments import SEGMENT_COLUMNS, outcome_frame
from ponder.errors import StoreError
from ponder.store import ImportBatch, Store
from ponder.store.schema import MIGRATIONS, OUTCOME_STORE_COLUMNS, PROBLEM_STORE_COLUMNS
from ponder.types import Run

KEY = ["run_id", "dataset", "problem_id", "model", "mode", "budget", "sample_idx"]


def _batch(frame: pd.DataFrame) -> ImportBatch:
    runs = frame[["run_id", "model", "budget_kind"]].drop_duplicates()
    return ImportBatch(
        runs=[Run(run_id=r, model=m, budget_kind=k) for r, m, k in runs.itertuples(index=False)],
        outcomes=frame.reindex(columns=list(OUTCOME_STORE_COLUMNS)),
    )


def _store(path: Path, seed: int = 11) -> pd.DataFrame:
    frame = synthetic_frame(seed=seed)
    frame["response_text"] = [f"the answer is {i}" if i % 3 else None for i in range(len(frame))]
    with Store(path) as store:
        store.write(_batch(frame))
    return frame


def _sweep_rows(path: Path, n: int) -> None:
    """Rows of a live sweep, with the rung signals only sweeps write."""
    with Store(path) as store:
        problems = pd.DataFrame({c: [None] * n for c in PROBLEM_STORE_COLUMNS}).assign(
            dataset="delta", problem_id=[f"q{i}" for i in range(n)], metadata_json="{}"
        )
        store.begin_sweep("s", "{}", [Run("sweep/m", "m", budget_kind="hard_cap")], problems)
        rows = [
            {
                "run_id": "sweep/m",
                "dataset": "delta",
                "problem_id": f"q{i}",
                "model": "m",
                "mode": "think",
                "budget": 512,
                "sample_idx": 0,
                "output_tokens": 100 + i,
                "correct": float(i % 2),
                "n_runs": 1,
                "chain_id": f"c{i}",
                "rung": 2,
                "natural": 0,
                "answer_prob": 0.25,
                "entropy_tail": 1.5,
                "stop_cost_tokens": 7,
            }
            for i in range(n)
        ]
        store.write_sweep_item("s", "item", rows, None, attempts=1)


def _stored(path: Path) -> pd.DataFrame:
    """Every stored outcome row (text, signals, experiments) by key."""
    with Store(path) as store:
        frame = store.outcomes_frame(include_text=True, signals=True, experiments=True)
    return frame.sort_values(KEY).reset_index(drop=True)


def _compacted(path: Path) -> pd.DataFrame:
    with Catalog(path) as catalog:
        assert catalog.damaged == {}
        frame = outcome_frame(catalog.read())
    return frame.sort_values(KEY).reset_index(drop=True)


def _assert_all_compacted(path: Path) -> None:
    stored, compacted = _stored(path), _compacted(path)
    assert len(stored) == len(compacted)
    for column in SEGMENT_COLUMNS:
        if column == "extra_json":  # not in the frame; NULL on both sides here
            assert compacted[column].isna().all()
            continue
        a, b = stored[column], compacted[column]
        if a.dtype.kind in "fi":
            assert np.array_equal(a.to_numpy(float), b.to_numpy(float), equal_nan=True), column
        else:
            assert [None if pd.isna(v) else v for v in a] == [
                None if pd.isna(v) else v for v in b
            ], column


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _listed(path: Path) -> list[str]:
    with Catalog(path, check=False) as catalog:
        return sorted(s.path for s in catalog.segments())


def _lease(path: Path) -> Any:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (LEASE_KEY,)).fetchone()
    finally:
        conn.close()
    return None if row is None else json.loads(row[0])


def test_each_row_is_compacted_once_and_new_rows_next_time(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    frame = _store(path)
    first = compact(path)
    assert (first.rowid_first, first.rowid_last, first.rows) == (1, len(frame), len(frame))
    assert {s.dataset for s in first.segments} == {"alpha", "beta/two words", "gamma"}
    assert all(s.origin == "compaction" for s in first.segments)
    assert all((s.rowid_first, s.rowid_last) == (1, len(frame)) for s in first.segments)
    _assert_all_compacted(path)
    assert compact(path).rows == 0  # nothing new
    assert uncompacted_rows(path).num_rows == 0

    _sweep_rows(path, 40)
    delta = uncompacted_rows(path)
    assert delta.num_rows == 40 and set(delta.column("dataset").to_pylist()) == {"delta"}
    assert uncompacted_rows(path, datasets=["alpha"]).num_rows == 0
    second = compact(path)
    assert (second.rowid_first, second.rowid_last, second.rows) == (
        len(frame) + 1,
        len(frame) + 40,
        40,
    )
    _assert_all_compacted(path)  # the signals of the sweep rows came along
    assert _lease(path) is None
    assert _files(parquet_root(path)) == _listed(path)


def test_small_chunks_give_the_same_segments(tmp_path: Path) -> None:
    _store(tmp_path / "a.sqlite")
    _store(tmp_path / "b.sqlite")
    compact(tmp_path / "a.sqlite")
    compact(tmp_path / "b.sqlite", chunk_rows=7)  # streamed 7 rows at a time
    with Catalog(tmp_path / "a.sqlite") as a, Catalog(tmp_path / "b.sqlite") as b:
        assert a.read().equals(b.read())


def test_an_error_between_write_and_commit_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.sqlite"
    _store(path)
    before = _stored(path)

    def refuse(conn: sqlite3.Connection, segments: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(catalog_module, "_insert_rows", refuse)
    with pytest.raises(OSError, match="disk full"):
        compact(path)
    assert _listed(path) == [] and _files(parquet_root(path)) == []
    assert _lease(path) is None  # released on the way out
    pd.testing.assert_frame_equal(_stored(path), before)
    monkeypatch.undo()
    assert compact(path).rows == len(before)
    _assert_all_compacted(path)


KILLED = textwrap.dedent(
    """
    import os, sys
    from ponder.columnar import catalog, compaction

    point = sys.argv[2]
    if point == "commit":  # files renamed into place, their rows not committed
        catalog._insert_rows = lambda conn, segments: os._exit(9)
    elif point == "written":  # a temporary file written, not yet synced or renamed
        catalog.fsync_file = lambda path: os._exit(9)
    else:  # mid-scan: rows read, none written yet
        chunk = compaction._arrow_chunk
        calls = []
        def dying(rows, store):
            calls.append(1)
            if len(calls) == 3:
                os._exit(9)
            return chunk(rows, store)
        compaction._arrow_chunk = dying
    compaction.compact(sys.argv[1], chunk_rows=200)
    """
)


@pytest.mark.parametrize("point", ["scan", "written", "commit"])
def test_a_killed_compaction_is_completed_by_a_rerun(tmp_path: Path, point: str) -> None:
    path = tmp_path / "s.sqlite"
    _store(path)
    compact(path)  # a first compaction's segments must survive the crash
    _sweep_rows(path, 900)
    kept = _listed(path)
    done = subprocess.run(
        [sys.executable, "-c", KILLED, str(path), point],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 9, done.stderr
    assert _listed(path) == kept  # nothing of the crashed run is listed
    leftovers = sorted(set(_files(parquet_root(path))) - set(kept))
    assert bool(leftovers) == (point != "scan")  # its files remain (if it wrote any)
    assert _lease(path) is not None  # and its lease
    _assert_all_compacted_except(path, 900)
    result = compact(path)  # the lease of the dead process is taken over
    assert result.rows == 900
    assert sorted(p.relative_to(parquet_root(path)).as_posix() for p in result.removed) == (
        leftovers
    )
    _assert_all_compacted(path)
    assert _files(parquet_root(path)) == _listed(path)


def _assert_all_compacted_except(path: Path, missing: int) -> None:
    assert len(_stored(path)) - len(_compacted(path)) == missing


HOLDER = textwrap.dedent(
    """
    import sys
    from ponder.columnar.catalog import Catalog
    from ponder.columnar.compaction import Lease

    with Catalog(sys.argv[1], check=False) as catalog:
        lease = Lease(catalog)
        lease.acquire()
        print("held", flush=True)
        sys.stdin.readline()
        lease.release()
    """
)


def test_two_compactions_never_run_at_once(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    _store(path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreError) as caught:
            compact(path)
        message = str(caught.value)
        assert "\n" not in message
        assert f"another compaction is running (pid {holder.pid} on " in message
        assert _listed(path) == [] and _files(parquet_root(path)) == []
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=60)
    assert compact(path).rows > 0


def test_leases_of_gone_or_expired_holders_are_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    frame = _store(path)
    conn = sqlite3.connect(path)
    stale = [
        {"owner": "x", "pid": 999_999_999, "host": catalog_module.HOST, "expires": 1e12},
        {"owner": "y", "pid": 1, "host": "elsewhere", "expires": time.time() - 1},
    ]
    for value, rows in zip(stale, [len(frame), 0], strict=True):
        conn.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (LEASE_KEY, json.dumps(value)),
        )
        conn.commit()
        assert compact(path).rows == rows  # taken over: the first copies all, the second none
        assert _lease(path) is None
    live = {"owner": "z", "pid": 1, "host": "elsewhere", "expires": time.time() + 600}
    conn.execute("INSERT INTO meta VALUES (?, ?)", (LEASE_KEY, json.dumps(live)))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="pid 1 on elsewhere"):
        compact(path)


def test_a_lost_lease_publishes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.sqlite"
    _store(path)
    scan = compaction._scan

    def taken_over(*args: Any) -> Any:
        # Another compaction took the lease over while this one was copying.
        conn = sqlite3.connect(path)
        other = {"owner": "other", "pid": 1, "host": "elsewhere", "expires": time.time() + 600}
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", (json.dumps(other), LEASE_KEY))
        conn.commit()
        conn.close()
        yield from scan(*args)

    monkeypatch.setattr(compaction, "_scan", taken_over)
    with pytest.raises(StoreError, match="compaction lease was lost"):
        compact(path)
    assert _listed(path) == [] and _files(parquet_root(path)) == []
    assert _lease(path)["owner"] == "other"  # not released: it is not ours


def _reader_view(path: Path) -> tuple[int, bool, list[str]]:
    """What a reader sees: the watermark, whether compaction segments count, and the
    segments it reads (their origins)."""
    conn = sqlite3.connect(path)
    try:
        return (
            compacted_up_to(conn),
            compaction_current(conn),
            sorted(s.origin for s in readable_segments(conn)),
        )
    finally:
        conn.close()


def _replace_last_run(path: Path, frame: pd.DataFrame) -> str:
    """A --replace of the run holding the highest rowid, with other values: its new rows take
    the freed rowids again."""
    conn = sqlite3.connect(path)
    (run,) = conn.execute(
        "SELECT run_id FROM outcomes WHERE rowid = (SELECT MAX(rowid) FROM outcomes)"
    ).fetchone()
    conn.close()
    new = frame[frame["run_id"] == run].copy()
    new["correct"] = 1.0 - new["correct"].round()
    with Store(path) as store:
        store.write_many([(_batch(new), None)], replace_runs=[run])
    return str(run)


def test_a_replace_of_compacted_rows_is_rebuilt_by_the_next_compaction(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    frame = _store(path)
    first = compact(path)
    assert _reader_view(path) == (len(frame), True, ["compaction"] * 3)
    _replace_last_run(path, frame)
    # Until the rebuild, readers take every row from SQLite and no compaction segment.
    assert _reader_view(path) == (0, False, [])
    assert uncompacted_rows(path).num_rows == len(frame)
    result = compact(path)
    assert (result.rowid_first, result.rows) == (1, len(frame))
    assert sorted(result.replaced) == sorted(parquet_root(path) / s.path for s in first.segments)
    assert not any(p.exists() for p in result.replaced)
    _assert_all_compacted(path)  # the replaced values, once each
    assert _reader_view(path)[:2] == (result.rowid_last, True)
    assert uncompacted_rows(path).num_rows == 0
    assert _files(parquet_root(path)) == _listed(path)
    assert compact(path).rows == 0  # the count was reset with the rebuild


def test_deleting_every_row_unlists_the_compaction_segments(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    _store(path)
    compact(path)
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM outcomes")
    conn.commit()
    conn.close()
    result = compact(path)
    assert result.rows == 0 and len(result.replaced) == 3
    assert _listed(path) == [] and _files(parquet_root(path)) == []
    assert _reader_view(path) == (0, True, [])


def test_deleting_rows_not_yet_compacted_needs_no_rebuild(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    frame = _store(path)
    compact(path)
    _sweep_rows(path, 30)
    kept = _listed(path)
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM outcomes WHERE run_id = 'sweep/m' AND problem_id IN ('q0', 'q29')")
    conn.commit()
    conn.close()
    assert _reader_view(path) == (len(frame), True, ["compaction"] * 3)
    result = compact(path)
    assert (result.rows, result.replaced) == (28, [])
    assert set(kept) < set(_listed(path))
    _assert_all_compacted(path)


@pytest.mark.parametrize("first", [True, False])
def test_a_delete_while_compacting_publishes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first: bool
) -> None:
    path = tmp_path / "s.sqlite"
    _store(path)
    if not first:  # deleted: a row above the watermark, not yet listed anywhere
        compact(path)
        _sweep_rows(path, 30)
    kept = _listed(path)
    scan = compaction._scan

    def deleting(*args: Any) -> Any:
        # A --replace commits between the compaction's snapshot and its commit.
        conn = sqlite3.connect(path)
        conn.execute("DELETE FROM outcomes WHERE rowid = (SELECT MAX(rowid) FROM outcomes)")
        conn.commit()
        conn.close()
        yield from scan(*args)

    monkeypatch.setattr(compaction, "_scan", deleting)
    with pytest.raises(StoreError, match="deleted while the compaction copied them"):
        compact(path)
    assert _listed(path) == kept and _files(parquet_root(path)) == kept
    assert _lease(path) is None
    monkeypatch.undo()
    compact(path)
    _assert_all_compacted(path)
    assert _reader_view(path)[1]


def test_a_store_compacted_before_the_delete_count_is_rebuilt_once(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    frame = _store(path)
    compact(path)
    conn = sqlite3.connect(path)  # back to schema 6, then a delete nothing counted
    conn.executescript(
        "DROP TRIGGER outcomes_deleted; DROP INDEX segments_compacted; "
        "DELETE FROM meta WHERE key = 'outcome_deletes'; "
        f"UPDATE meta SET value = '{len(MIGRATIONS) - 1}' WHERE key = 'schema_version'; "
        "DELETE FROM outcomes WHERE rowid = 7"
    )
    conn.close()
    with Store(path) as store:  # migrated
        assert store.schema_version == len(MIGRATIONS)
    assert _reader_view(path) == (0, False, [])
    assert compact(path).rows == len(frame) - 1
    _assert_all_compacted(path)
    assert _reader_view(path)[1]


def _key(path: Path, rowid: int) -> str:
    conn = sqlite3.connect(path)
    run, problem, sample = conn.execute(
        "SELECT run_id, problem_id, sample_idx FROM outcomes WHERE rowid = ?", (rowid,)
    ).fetchone()
    conn.close()
    return f"outcome row {rowid} (run_id {run!r}, problem_id {problem!r}, sample_idx {sample})"


def test_stored_rows_a_segment_cannot_hold_are_named(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    _store(path)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE outcomes SET output_tokens = 3000000000 WHERE rowid IN (250, 260)")
    conn.execute("UPDATE outcomes SET budget = 2147483648 WHERE rowid = 290")  # a column before
    conn.commit()
    conn.close()
    with pytest.raises(StoreError) as caught:
        compact(path, chunk_rows=100)  # the first bad row, in the third chunk
    message = str(caught.value)
    assert "\n" not in message
    assert message.endswith(
        f"{_key(path, 250)} cannot go into a segment: output_tokens: 3000000000 does not fit int32"
    )
    assert _listed(path) == [] and _files(parquet_root(path)) == []


def test_a_stored_row_without_its_run_is_named(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    _store(path)
    conn = sqlite3.connect(path)  # foreign keys are off on a bare connection
    conn.execute("UPDATE outcomes SET run_id = 'gone' WHERE rowid = 9")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="its run is not in the runs table") as caught:
        compact(path)
    assert _key(path, 9) in str(caught.value)
    assert _listed(path) == []


def test_a_mistyped_store_path_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such store"):
        compact(tmp_path / "typo.sqlite")
    assert list(tmp_path.iterdir()) == []
