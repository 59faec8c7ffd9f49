"""Data safety of the store: race-free creation, corrupt files, full disks, unwritable places."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import sqlite3
import threading
from pathlib import Path

import pandas as pd
import pytest

from ponder.errors import StoreError
from ponder.store import ImportBatch, Store
from ponder.store.schema import MIGRATIONS, OUTCOME_STORE_COLUMNS, SCHEMA_VERSION
from ponder.types import Run


def _batch(run: str, n_problems: int = 5, text: str = "") -> ImportBatch:
    rows = [
        {
            "run_id": run,
            "dataset": "toy",
            "problem_id": f"p{p}",
            "model": "m",
            "mode": "think",
            "budget": 1024,
            "sample_idx": 0,
            "output_tokens": 10 * p,
            "correct": float(p % 2),
            "n_runs": 1,
            "response_text": text or None,
        }
        for p in range(n_problems)
    ]
    frame = pd.DataFrame(rows).reindex(columns=list(OUTCOME_STORE_COLUMNS))
    return ImportBatch(runs=[Run(run_id=run, model="m", budget_kind="hard_cap")], outcomes=frame)


def _create_and_write(path: str, run: str, barrier: object) -> None:
    barrier.wait(timeout=30)  # type: ignore[attr-defined]
    with Store(path) as store:
        store.write(_batch(run))


def test_processes_creating_one_store_all_succeed(tmp_path: Path) -> None:
    """Processes opening a store that does not exist yet: every one creates or joins it.

    Released together by a barrier, 8 processes x 3 rounds: before creation re-checked the
    schema version under the write lock, most rounds failed with "table meta already exists".
    """
    ctx = mp.get_context("fork")
    n = 8
    for round_ in range(3):
        path = tmp_path / f"new{round_}.sqlite"
        barrier = ctx.Barrier(n)
        procs = [
            ctx.Process(target=_create_and_write, args=(str(path), f"run{i}", barrier))
            for i in range(n)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
        codes = [p.exitcode for p in procs]
        for p in procs:
            if p.is_alive():
                p.kill()
        assert codes == [0] * n
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0] == 5 * n
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == n
        conn.close()


def test_opening_waits_for_a_writer_before_switching_to_wal(tmp_path: Path) -> None:
    """SQLite refuses `journal_mode = WAL` at once (no busy wait) while another connection
    writes; a store created together with other processes met exactly that in CI."""
    path = tmp_path / "rollback.sqlite"
    with Store(path) as store:
        store.write(_batch("first"))
        store.seal()  # back to a rollback journal, as a store is right after creation
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE meta SET value = value WHERE key = 'schema_version'")
    release = threading.Timer(0.3, lambda: writer.execute("COMMIT"))
    release.start()
    try:
        with Store(path) as store:
            store.write(_batch("second"))
    finally:
        release.join()
        writer.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 2
    conn.close()


def _corrupt_middle(path: Path) -> bytes:
    """Overwrite one page in the middle of the file with garbage; returns the new bytes."""
    page = 4096
    data = bytearray(path.read_bytes())
    assert len(data) >= 8 * page
    middle = (len(data) // page // 2) * page
    data[middle : middle + page] = b"\xa5" * page
    path.write_bytes(bytes(data))
    return bytes(data)


def _corrupt_an_outcomes_page(path: Path) -> None:
    """Overwrite the middle one of the pages that hold outcome rows (found by their response
    text), so that reading outcomes must meet the damage whatever the schema's other tables."""
    page = 4096
    data = bytearray(path.read_bytes())
    pages = [i for i in range(0, len(data), page) if b"x" * 200 in data[i : i + page]]
    assert len(pages) >= 8
    middle = pages[len(pages) // 2]
    data[middle : middle + page] = b"\xa5" * page
    path.write_bytes(bytes(data))


def _big_store(path: Path) -> None:
    with Store(path) as store:
        store.write(_batch("r", n_problems=400, text="x" * 200))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def test_corrupt_store_is_refused_for_writing_and_reads_fail_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    _big_store(path)
    damaged = _corrupt_middle(path)
    conn = sqlite3.connect(path)
    with contextlib.suppress(sqlite3.DatabaseError):  # the damage is real: SQLite sees it
        assert conn.execute("PRAGMA quick_check").fetchone()[0] != "ok"
    conn.close()
    with pytest.raises(StoreError, match="damaged") as info:
        Store(path)
    assert "\n" not in str(info.value)
    assert path.read_bytes() == damaged
    # Reading meets the damage where it reads: a page of outcome rows (the middle page may
    # belong to an index the read does not use).
    _corrupt_an_outcomes_page(path)
    damaged = path.read_bytes()
    with Store(path, readonly=True) as store, pytest.raises(StoreError, match="damaged"):
        store.outcomes_frame()
    assert path.read_bytes() == damaged


def test_full_disk_reports_the_real_error_and_keeps_the_store(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        store.write(_batch("small"))
        before = store.outcomes_frame()
        pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
        store._conn.execute(f"PRAGMA max_page_count = {pages + 2}")
        with pytest.raises(StoreError, match="full") as info:
            store.write(_batch("big", n_problems=2000, text="y" * 500))
        assert "no transaction is active" not in str(info.value)
        pd.testing.assert_frame_equal(store.outcomes_frame(), before)


def test_rollback_is_safe_when_sqlite_already_ended_the_transaction(tmp_path: Path) -> None:
    """SQLite may end a transaction itself (disk full, I/O error): the real error must surface."""
    with Store(tmp_path / "s.sqlite") as store:

        class Boom(Exception):
            pass

        with pytest.raises(Boom), store._transaction() as conn:
            conn.execute("ROLLBACK")  # what SQLite does on SQLITE_FULL
            raise Boom
        assert not store._conn.in_transaction


def test_store_whose_parent_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="not a folder"):
        Store(blocker / "s.sqlite")
    assert blocker.read_text() == "not a folder"


def test_unwritable_store_and_folder_are_reported_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Permission checks are simulated (tests may run as root, who may write anything)."""
    path = tmp_path / "s.sqlite"
    Store(path).close()
    real_access = os.access

    def no_write_on(target: Path) -> object:
        def access(p: object, mode: int, **kw: object) -> bool:
            if mode & os.W_OK and Path(str(p)) == target:
                return False
            return real_access(p, mode)  # type: ignore[arg-type]

        return access

    monkeypatch.setattr(os, "access", no_write_on(path))
    with pytest.raises(StoreError, match="read-only") as info:
        Store(path)
    assert "not a readable ponder store" not in str(info.value)
    monkeypatch.setattr(os, "access", no_write_on(tmp_path))
    with pytest.raises(StoreError, match=r"folder .* is read-only"):
        Store(path)
    with pytest.raises(StoreError, match=r"folder .* is read-only"):
        Store(tmp_path / "other.sqlite")
    assert not (tmp_path / "other.sqlite").exists()
    with Store(path, readonly=True) as store:  # reading still works
        assert store.counts()["outcomes"] == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write read-only files")
def test_real_read_only_store_file(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    Store(path).close()
    path.chmod(0o444)
    with pytest.raises(StoreError, match="read-only"):
        Store(path)


def test_a_version_1_store_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0])
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.execute("INSERT INTO runs VALUES ('r', 'm', 'recorded', 's', 'none', '{}', '2026-01-01')")
    conn.execute("INSERT INTO problems (dataset, problem_id) VALUES ('d', 'p')")
    conn.execute(
        "INSERT INTO outcomes (run_id, dataset, problem_id, model, mode, sample_idx, correct) "
        "VALUES ('r', 'd', 'p', 'm', 'default', 0, 1)"
    )
    conn.execute(
        "INSERT INTO imports (path, sha256, preset, rows_read, rows_added, imported_at) "
        "VALUES ('f.csv', 'abc', 'mapped', 1, 1, '2026-01-01')"
    )
    conn.commit()
    conn.close()
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.counts()["outcomes"] == 1
        assert store.counts()["imports"] == 1


def test_query_on_a_damaged_store_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    _big_store(path)
    with Store(path, readonly=True) as store:
        assert store.query("SELECT COUNT(*) FROM runs") == [(1,)]
    _corrupt_an_outcomes_page(path)
    with Store(path, readonly=True) as store, pytest.raises(StoreError, match="damaged"):
        store.query("SELECT SUM(LENGTH(response_text)) FROM outcomes")
