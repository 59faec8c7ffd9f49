"""An older store opened read-only after an upgrade of ponder: migrated once when writable."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from ponder.errors import StoreError
from ponder.store import SCHEMA_VERSION, Store
from ponder.store.schema import MIGRATIONS


def _older_store(path: Path, version: int) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(";".join(MIGRATIONS[:version]))
    conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(version),))
    conn.execute("INSERT INTO runs VALUES ('r', 'm', 'recorded', 's', 'none', '{}', '2026-01-01')")
    conn.execute("INSERT INTO problems (dataset, problem_id, gold) VALUES ('d', 'p', '7')")
    conn.execute(
        "INSERT INTO outcomes (run_id, dataset, problem_id, model, mode, sample_idx, correct) "
        "VALUES ('r', 'd', 'p', 'm', 'default', 0, 1)"
    )
    conn.commit()
    conn.close()


def test_a_writable_older_store_is_migrated_by_a_read_only_open(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    _older_store(path, SCHEMA_VERSION - 1)
    with Store(path, readonly=True) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert len(store.outcomes_frame()) == 1
        with pytest.raises(StoreError):
            store.query("DELETE FROM outcomes")  # still a read-only connection


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write read-only files")
def test_a_read_only_older_store_says_how_to_migrate_and_is_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    _older_store(path, SCHEMA_VERSION - 1)
    before = path.read_bytes()
    path.chmod(stat.S_IRUSR)
    try:
        with pytest.raises(StoreError, match="open it once for writing"):
            Store(path, readonly=True)
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert path.read_bytes() == before
