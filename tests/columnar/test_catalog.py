"""The `segments` catalog: a file exists for readers only once its row is committed, damaged
or foreign files are one-line errors naming them while the rest stays readable, crashed
writes leave nothing listed (and their leftovers are deleted), two writers both land."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from columnar_helpers import synthetic_frame

from ponder.columnar import catalog as catalog_module
from ponder.columnar.catalog import Catalog, parquet_root, temp_path
from ponder.columnar.segments import SEGMENT_SCHEMA, segment_table
from ponder.errors import InputError, StoreError
from ponder.store import SCHEMA_VERSION, Store
from ponder.store.schema import MIGRATIONS

KEY = [("dataset", "ascending"), ("run_id", "ascending"), ("problem_id", "ascending")]
KEY += [("model", "ascending"), ("budget", "ascending"), ("sample_idx", "ascending")]


@pytest.fixture(scope="module")
def rows() -> pa.Table:
    return segment_table(synthetic_frame(seed=7))


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by(KEY)


def _one_line(exc: BaseException) -> str:
    assert "\n" not in str(exc), str(exc)
    return str(exc)


def _files(root: Path) -> list[str]:
    """Every file under the segments' folder (hidden temporary ones too)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_publish_lists_and_reads_back(tmp_path: Path, rows: pa.Table) -> None:
    store = tmp_path / "s.sqlite"
    with Catalog(store) as catalog:
        assert catalog.root == parquet_root(store) == tmp_path / "s.sqlite.parquet"
        segments = catalog.publish(rows, segment_id="first")
        assert [s.path for s in segments] == [
            "outcomes/dataset=alpha/first.parquet",
            "outcomes/dataset=beta%2Ftwo%20words/first.parquet",
            "outcomes/dataset=gamma/first.parquet",
        ]
        for segment in segments:
            data = (catalog.root / segment.path).read_bytes()
            assert segment.bytes == len(data)
            assert segment.sha256 == hashlib.sha256(data).hexdigest()
            assert segment.origin == "import" and segment.rowid_first is None
            part = rows.filter(pc.equal(rows.column("dataset"), segment.dataset))
            assert segment.rows == part.num_rows
            assert segment.run_ids == tuple(sorted(set(part.column("run_id").to_pylist())))
        assert _files(catalog.root) == [s.path for s in segments]
        assert catalog.read().schema.equals(SEGMENT_SCHEMA)
        assert _sorted(catalog.read()).equals(_sorted(rows))
        gamma = catalog.read(["gamma"], columns=["problem_id", "correct"])
        assert gamma.column_names == ["problem_id", "correct"]
    with Catalog(store, readonly=True) as again:  # listed for every later reader
        assert again.damaged == {}
        assert [s.path for s in again.segments()] == [s.path for s in segments]
        assert again.check(deep=True) == {}
        with pytest.raises(StoreError, match="read-only"):
            again.publish(rows)


def test_an_older_store_is_upgraded_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    before = 5  # the last schema without the `segments` table
    conn.executescript(";".join(MIGRATIONS[:before]))
    conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(before),))
    conn.execute("INSERT INTO runs VALUES ('r', 'm', 'recorded', 's', 'none', '{}', 'now')")
    conn.execute("INSERT INTO problems (dataset, problem_id) VALUES ('d', 'p')")
    conn.execute(
        "INSERT INTO outcomes (run_id, dataset, problem_id, model, mode, sample_idx, correct) "
        "VALUES ('r', 'd', 'p', 'm', 'default', 0, 1)"
    )
    conn.commit()
    conn.close()
    with Catalog(path) as catalog:
        assert catalog.segments() == []
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert len(store.outcomes_frame()) == 1
        assert store.query("SELECT COUNT(*) FROM segments") == [(0,)]


def test_a_failed_commit_lists_nothing_and_leaves_no_file(
    tmp_path: Path, rows: pa.Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Catalog(tmp_path / "s.sqlite") as catalog:
        kept = catalog.publish(rows.slice(0, 100))
        before = _files(catalog.root)

        def refuse(conn: sqlite3.Connection, segments: Any) -> None:
            raise OSError("disk full")  # after the rename, before the rows are committed

        monkeypatch.setattr(catalog_module, "_insert_rows", refuse)
        with pytest.raises(OSError, match="disk full"):
            catalog.publish(rows)
        assert catalog.segments() == kept
        assert _files(catalog.root) == before  # renamed files removed, temporaries too
        assert catalog.read().num_rows == 100


class _InterruptAfterCommit:
    """A connection whose COMMIT succeeds, then a Ctrl-C lands before Python returns."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, *args: Any) -> Any:
        out = self.conn.execute(sql, *args)
        if sql == "COMMIT":
            raise KeyboardInterrupt
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def test_an_interrupt_after_the_commit_keeps_the_committed_files(
    tmp_path: Path, rows: pa.Table
) -> None:
    with Catalog(tmp_path / "s.sqlite") as catalog:
        real = catalog._conn
        catalog._conn = _InterruptAfterCommit(real)  # type: ignore[assignment]
        with pytest.raises(KeyboardInterrupt):
            catalog.publish(rows)
        catalog._conn = real
    with Catalog(tmp_path / "s.sqlite") as catalog:
        assert catalog.damaged == {}
        assert len(catalog.segments()) == len(pc.unique(rows.column("dataset")))
        assert _sorted(catalog.read()).equals(_sorted(rows))


CRASH = textwrap.dedent(
    """
    import os, sys
    import pyarrow.parquet as pq
    from ponder.columnar import catalog as module
    from ponder.columnar.catalog import Catalog

    def crash(conn, segments):
        os._exit(9)  # killed between the rename and the commit: no cleanup runs

    module._insert_rows = crash
    with Catalog(sys.argv[1]) as catalog:
        catalog.publish(pq.read_table(sys.argv[2]))
    """
)


def test_a_writer_killed_before_its_commit_loses_nothing(tmp_path: Path, rows: pa.Table) -> None:
    store = tmp_path / "s.sqlite"
    with Catalog(store) as catalog:
        kept = catalog.publish(rows.slice(0, 300))
    pq.write_table(rows, tmp_path / "rows.parquet")
    done = subprocess.run(
        [sys.executable, "-c", CRASH, str(store), str(tmp_path / "rows.parquet")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 9, done.stderr
    with Catalog(store) as catalog:
        assert catalog.segments() == kept and catalog.damaged == {}
        listed = {s.path for s in kept}
        leftovers = [f for f in _files(catalog.root) if f not in listed]
        assert leftovers  # the crashed write's renamed files, never listed
        assert _sorted(catalog.read()).equals(_sorted(rows.slice(0, 300)))
        removed = catalog.remove_leftovers()
        assert sorted(p.relative_to(catalog.root).as_posix() for p in removed) == leftovers
        assert _files(catalog.root) == sorted(listed)
        assert catalog.read().num_rows == 300


def test_leftover_temporaries_of_live_writers_are_kept(tmp_path: Path, rows: pa.Table) -> None:
    with Catalog(tmp_path / "s.sqlite") as catalog:
        alpha = rows.filter(pc.equal(rows.column("dataset"), "alpha"))
        (segment,) = catalog.publish(alpha)
        folder = (catalog.root / segment.path).parent
        live = temp_path(folder / "live.parquet")  # this process: a writer still running
        dead = folder / f".gone.parquet~999999999~{catalog_module.HOST}.tmp"
        unlisted = folder / "crashed.parquet"
        for path in (live, dead, unlisted):
            path.write_bytes(b"partial")
        assert set(catalog.remove_leftovers()) == {dead, unlisted}
        assert live.exists() and (catalog.root / segment.path).exists()


def _foreign_of_size(path: Path, size: int) -> None:
    """A Parquet file of another schema, padded (footer metadata) to exactly ``size`` bytes,
    so only the footer check can tell it apart."""
    table = pa.table({"problem_id": ["x"], "score": [0.5]})
    pad = 0
    for _ in range(50):
        pq.write_table(table.replace_schema_metadata({"pad": "x" * pad}), path)
        gap = size - path.stat().st_size
        if gap == 0:
            return
        pad = max(0, pad + (gap if abs(gap) < 4 else gap // 2))
    raise AssertionError("could not pad the foreign file to the size")


def test_truncated_and_foreign_files_are_named_and_the_rest_stays(
    tmp_path: Path, rows: pa.Table
) -> None:
    store = tmp_path / "s.sqlite"
    with Catalog(store) as catalog:
        segments = {s.dataset: s for s in catalog.publish(rows)}
    alpha = parquet_root(store) / segments["alpha"].path
    gamma = parquet_root(store) / segments["gamma"].path
    with alpha.open("r+b") as handle:  # a truncated partition
        handle.truncate(segments["alpha"].bytes // 2)
    _foreign_of_size(gamma, segments["gamma"].bytes)  # a foreign file in its place
    with Catalog(store) as catalog:
        assert set(catalog.damaged) == {segments["alpha"].path, segments["gamma"].path}
        for dataset, path, reason in (
            ("alpha", alpha, "bytes, the catalog recorded"),
            ("gamma", gamma, "foreign schema"),
        ):
            with pytest.raises(StoreError) as caught:
                catalog.read([dataset])
            message = _one_line(caught.value)
            assert message.startswith(f"{path}: ") and reason in message
        beta = catalog.read(["beta/two words"])  # the intact dataset stays readable
        expected = rows.filter(pc.equal(rows.column("dataset"), "beta/two words"))
        assert _sorted(beta).equals(_sorted(expected))
        with pytest.raises(StoreError, match=r"truncated|foreign"):
            catalog.read()  # all datasets: the first damaged one is named
        assert catalog.segments() == list(segments.values())  # nothing was unlisted


def test_a_same_size_rewrite_is_found_by_the_deep_check(tmp_path: Path, rows: pa.Table) -> None:
    with Catalog(tmp_path / "s.sqlite") as catalog:
        (segment, *_) = catalog.publish(rows)
        path = catalog.root / segment.path
        data = bytearray(path.read_bytes())
        data[100] ^= 0xFF  # inside a data page: same size, same footer
        path.write_bytes(bytes(data))
        assert catalog.check() == {}
        (error,) = catalog.check(deep=True).values()
        assert _one_line(error) == f"{path}: content differs from its recorded sha256"


WRITER = textwrap.dedent(
    """
    import sys
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from ponder.columnar.catalog import Catalog

    rows = pq.read_table(sys.argv[2])
    with Catalog(sys.argv[1]) as catalog:
        for start in range(0, rows.num_rows, 250):
            catalog.publish(rows.slice(start, 250))
    """
)


def test_two_writers_in_two_processes_both_land(tmp_path: Path, rows: pa.Table) -> None:
    store = tmp_path / "s.sqlite"
    Catalog(store).close()
    halves = []
    for i, part in enumerate((rows.slice(0, 1000), rows.slice(1000))):
        halves.append(tmp_path / f"half{i}.parquet")
        pq.write_table(part, halves[-1])
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(store), str(half)]) for half in halves
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with Catalog(store) as catalog:
        assert catalog.damaged == {}
        assert _sorted(catalog.read()).equals(_sorted(rows))
        assert len({s.segment_id for s in catalog.segments()}) == -(-1000 // 250) + -(
            -(rows.num_rows - 1000) // 250
        )
        assert catalog.remove_leftovers() == []


def test_a_name_taken_fails_without_listing(tmp_path: Path, rows: pa.Table) -> None:
    with Catalog(tmp_path / "s.sqlite") as catalog:
        first = catalog.publish(rows, segment_id="same")
        with pytest.raises(StoreError, match="segment already exists"):
            catalog.publish(rows, segment_id="same")
        assert catalog.segments() == first
        assert _files(catalog.root) == [s.path for s in first]
        assert all(os.path.getsize(catalog.root / s.path) == s.bytes for s in first)


def test_a_segment_id_must_be_a_plain_name(tmp_path: Path, rows: pa.Table) -> None:
    with Catalog(tmp_path / "s.sqlite") as catalog:
        for bad in ("../escape", "a/b", ".hidden", ""):
            with pytest.raises(InputError, match="not a plain name"):
                catalog.publish(rows, segment_id=bad)
        assert catalog.segments() == []
    assert not (tmp_path / "escape.parquet").exists() and _files(catalog.root) == []


def test_a_failing_check_on_open_closes_the_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[sqlite3.Connection] = []
    connect = sqlite3.connect

    def recording(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened.append(connect(*args, **kwargs))
        return opened[-1]

    def failing(self: Catalog, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("check failed")

    monkeypatch.setattr(sqlite3, "connect", recording)
    monkeypatch.setattr(Catalog, "check", failing)
    with pytest.raises(RuntimeError, match="check failed"):
        Catalog(tmp_path / "s.sqlite")
    assert opened
    for conn in opened:  # the store's and the catalog's: both closed
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            conn.execute("SELECT 1")


def test_compaction_segments_need_their_rowids(tmp_path: Path, rows: pa.Table) -> None:
    with Catalog(tmp_path / "s.sqlite") as catalog, pytest.raises(ValueError, match="rowid"):
        catalog.publish(rows, origin="compaction")


@pytest.mark.parametrize("max_runs", [1, 4096])  # one take, or zero-copy slices of runs
def test_each_dataset_keeps_its_rows_in_order(
    tmp_path: Path, rows: pa.Table, max_runs: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog_module, "_MAX_RUNS", max_runs)
    with Catalog(tmp_path / "s.sqlite") as catalog:
        catalog.publish(rows)
        for dataset in ("alpha", "beta/two words", "gamma"):
            expected = rows.filter(pc.equal(rows.column("dataset"), dataset))
            assert catalog.read([dataset]).equals(expected)  # file order within a dataset


def test_no_rows_split_into_no_datasets() -> None:
    assert catalog_module.split_by_dataset(SEGMENT_SCHEMA.empty_table()) == ([], [])
