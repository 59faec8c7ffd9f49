"""One consistent view of a store's outcome rows as a folder of segments, for the analyses.

The columnar analyses (``curves_from_parquet``, ``matrix_from_parquet``) read a folder laid
out like the segments (``outcomes/dataset=<name>/*.parquet``). A store's rows are in two
places: its committed segments (bulk imports, compactions) and the SQLite rows not in a
segment (live sweeps, small imports). ``store_snapshot`` gives a temporary folder holding
both, read in one SQLite read transaction so no row is missed or counted twice:

- every listed segment file, hard-linked (a later rewrite that deletes the file cannot pull it
  from under a running analysis), or symlinked where the filesystem has no hard links;
- the SQLite rows above the compaction watermark, written as one file per dataset.

Listed files are checked first (size and footer against their ``segments`` row): a damaged
one is a one-line ``StoreError`` naming it. The folder is removed on exit; folders of
crashed analyses are removed by the next snapshot on the same host.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ponder.columnar.catalog import (
    HOST,
    SegmentWriter,
    check_listed,
    parquet_root,
    pid_alive,
    split_by_dataset,
)
from ponder.columnar.compaction import (
    CHUNK_ROWS,
    _last_rowid,
    _scan,
    compacted_up_to,
    readable_segments,
)
from ponder.columnar.segments import first_line
from ponder.errors import StoreError
from ponder.store.frame import EXPERIMENT_RUN_PREFIX

SNAPSHOTS_DIR = ".snapshots"


@contextmanager
def store_snapshot(
    store: str | Path,
    datasets: Sequence[str] | None = None,
    *,
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[Path]:
    """A temporary segments folder with every committed outcome row of ``datasets`` (all when
    None) but the claims' experiment rows, removed on exit."""
    store = Path(store)
    root = parquet_root(store)
    base = root / SNAPSHOTS_DIR
    _remove_dead(base)
    base.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}~{HOST}~", dir=base))
    try:
        _fill(store, root, folder, datasets, chunk_rows)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _fill(
    store: Path, root: Path, folder: Path, datasets: Sequence[str] | None, chunk_rows: int
) -> None:
    try:
        conn = sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
    except sqlite3.Error as exc:
        raise StoreError(f"{store}: cannot read the store ({exc})") from exc
    wanted = None if datasets is None else sorted(set(datasets))
    try:
        conn.isolation_level = None
        conn.execute("BEGIN")  # one read snapshot: the listing and the rows agree
        for segment in readable_segments(conn, wanted):
            source = root / segment.path
            check_listed(source, segment)
            target = folder / segment.path
            target.parent.mkdir(parents=True, exist_ok=True)
            if any(r.startswith(EXPERIMENT_RUN_PREFIX) for r in segment.run_ids):
                _copy_without_experiments(source, target)  # a compaction copies them too
            else:
                _link(source, target)
        _write_uncompacted(conn, store, folder, wanted, chunk_rows)
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise StoreError(f"{store}: cannot read the outcome rows ({exc})") from exc
    finally:
        conn.close()


def _write_uncompacted(
    conn: sqlite3.Connection,
    store: Path,
    folder: Path,
    datasets: list[str] | None,
    chunk_rows: int,
) -> None:
    """The SQLite rows not yet in a segment, one file per dataset (rowid order)."""
    start, end = compacted_up_to(conn), _last_rowid(conn)
    writers: dict[str, SegmentWriter] = {}
    try:
        for chunk in _scan(conn, store, start, end, chunk_rows):
            keep = pc.invert(pc.starts_with(chunk.column("run_id"), EXPERIMENT_RUN_PREFIX))
            if datasets is not None:
                keep = pc.and_(keep, pc.is_in(chunk.column("dataset"), pa.array(datasets)))
            for dataset, part in zip(*split_by_dataset(chunk.filter(keep)), strict=True):
                if dataset not in writers:
                    writers[dataset] = SegmentWriter(folder, dataset, "sqlite")
                writers[dataset].write(part)
        for writer in writers.values():
            pending = writer.finish()
            os.replace(pending.temp, pending.final)
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise


def _copy_without_experiments(source: Path, target: Path) -> None:
    """The segment's rows but the claims' experiment rows (not configurations to analyse)."""
    try:
        table = pq.read_table(source)
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"{source}: cannot read the segment ({first_line(exc)})") from exc
    claims = pc.starts_with(table.column("run_id"), EXPERIMENT_RUN_PREFIX)
    pq.write_table(table.filter(pc.invert(claims)), target, compression="zstd")


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except FileNotFoundError as exc:
        raise StoreError(
            f"{source}: listed segment is missing (rewritten meanwhile? run the command again)"
        ) from exc
    except OSError:
        os.symlink(source.resolve(), target)


def _remove_dead(base: Path) -> None:
    """Folders of analyses on this host whose process is gone."""
    if not base.is_dir():
        return
    for folder in base.iterdir():
        pid, _, rest = folder.name.partition("~")
        host = rest.rpartition("~")[0]
        if host == HOST and pid.isdigit() and not pid_alive(int(pid)):
            with suppress(OSError):
                shutil.rmtree(folder)


__all__ = ["SNAPSHOTS_DIR", "store_snapshot"]
