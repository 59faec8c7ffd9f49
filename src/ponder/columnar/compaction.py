"""Compaction: the store's outcome rows above the last compacted rowid, copied into segments.

Live sweeps commit their rows to SQLite (one transaction per work item); compaction copies
the rows added since the last compaction into one segment per dataset, so analyses read them
from Parquet (docs/design/0009-columnar-analysis.md). Rows stay in SQLite: the sweep's
idempotency key needs them. The copy reads one SQLite snapshot in chunks (bounded memory:
one chunk of Python rows plus one buffered row group per dataset), writes temporary files
and publishes them all with the range's rowids in one transaction, so the watermark
(the highest ``rowid_last`` of a compaction segment) moves only with its files.

A lease row in ``meta`` keeps two compactions from running at once; a crashed compaction's
lease is taken over once its process is gone (or its lease expired, for another host). A
crash at any point loses nothing: before the commit nothing is listed and the rerun copies
the same range again (deleting the crashed run's files first), after it the work is done.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ponder.columnar.catalog import (
    HOST,
    Catalog,
    Segment,
    SegmentWriter,
    new_segment_id,
    pid_alive,
)
from ponder.columnar.segments import SEGMENT_COLUMNS, SEGMENT_SCHEMA, segment_table
from ponder.errors import InputError, StoreError

LEASE_KEY = "compaction_lease"
# Seconds a lease lasts without renewal (renewed every third of it while copying).
LEASE_S = 300.0
# Rows fetched from SQLite at a time: one chunk of Python objects is alive at once.
CHUNK_ROWS = 1 << 15

_SELECT = (
    f"SELECT {', '.join('o.' + c for c in SEGMENT_COLUMNS if c != 'budget_kind')}, "
    "r.budget_kind FROM outcomes o JOIN runs r ON r.run_id = o.run_id "
    "WHERE o.rowid > ? AND o.rowid <= ?"
)


@dataclass(frozen=True)
class CompactionResult:
    """What one compaction copied: the rowid range, its rows and segments, and the files
    of crashed writes it removed first."""

    rowid_first: int
    rowid_last: int
    rows: int
    segments: list[Segment]
    removed: list[Path]


def compact(
    store: str | Path, *, chunk_rows: int = CHUNK_ROWS, lease_s: float = LEASE_S
) -> CompactionResult:
    """Copy the outcome rows above the last compacted rowid into one segment per dataset.

    Raises ``StoreError`` when another compaction holds the lease. Nothing to copy is not an
    error (an empty range, ``rows`` 0).
    """
    with Catalog(store, check=False) as catalog:
        lease = Lease(catalog, lease_s)
        lease.acquire()
        try:
            removed = catalog.remove_leftovers()
            return _copy(catalog, lease, chunk_rows, removed)
        finally:
            lease.release()


def compacted_up_to(conn: sqlite3.Connection) -> int:
    """The watermark: every outcome row at or below this rowid is in a compaction segment."""
    row = conn.execute(
        "SELECT COALESCE(MAX(rowid_last), 0) FROM segments WHERE origin = 'compaction'"
    ).fetchone()
    return int(row[0])


def uncompacted_rows(
    store: str | Path, *, datasets: Sequence[str] | None = None, chunk_rows: int = CHUNK_ROWS
) -> pa.Table:
    """The committed outcome rows not yet compacted (of ``datasets``), as one
    ``SEGMENT_SCHEMA`` table in rowid order: what an analysis adds to the segments."""
    wanted = None if datasets is None else set(datasets)
    Catalog(store, readonly=True, check=False).close()  # an older store is migrated first
    with _Snapshot(Path(store)) as reader:
        start = compacted_up_to(reader)
        end = _last_rowid(reader)
        parts = []
        for chunk in _scan(reader, Path(store), start, end, chunk_rows):
            if wanted is not None:
                keep = pc.is_in(chunk.column("dataset"), pa.array(sorted(wanted), pa.string()))
                chunk = chunk.filter(keep)
            parts.append(chunk)
    return pa.concat_tables(parts) if parts else SEGMENT_SCHEMA.empty_table()


def _copy(catalog: Catalog, lease: Lease, chunk_rows: int, removed: list[Path]) -> CompactionResult:
    with _Snapshot(catalog.store) as reader:
        start = compacted_up_to(reader)
        end = _last_rowid(reader)
        if end < start:
            raise StoreError(
                f"{catalog.store}: outcome rows up to rowid {start} were compacted, but the "
                f"last stored row is {end}: rows were deleted since (a --replace?); the "
                "compacted segments of those runs must be rewritten first"
            )
        if end == start:
            return CompactionResult(start + 1, end, 0, [], removed)
        sid = new_segment_id()
        writers: dict[str, SegmentWriter] = {}
        try:
            for chunk in _scan(reader, catalog.store, start, end, chunk_rows):
                for dataset, part in _by_dataset(chunk):
                    if dataset not in writers:
                        writers[dataset] = SegmentWriter(catalog.root, dataset, sid)
                    writers[dataset].write(part)
                lease.renew_if_due()
            pending = [writers[d].finish() for d in sorted(writers)]
        except BaseException:
            for writer in writers.values():
                writer.abort()
            raise

    def guard(conn: sqlite3.Connection) -> None:
        lease.check(conn)
        if compacted_up_to(conn) != start:
            raise StoreError(f"{catalog.store}: another compaction published meanwhile")

    segments = catalog.commit(pending, origin="compaction", rowids=(start + 1, end), also=guard)
    return CompactionResult(start + 1, end, sum(s.rows for s in segments), segments, removed)


class _Snapshot:
    """A read transaction on its own connection: one consistent view of the store while
    writers go on (WAL)."""

    def __init__(self, store: Path) -> None:
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.conn = sqlite3.connect(self.store, isolation_level=None, timeout=30.0)
            self.conn.execute("BEGIN")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.store}: cannot read the store ({exc})") from exc
        return self.conn

    def __exit__(self, *exc: object) -> None:
        with suppress(sqlite3.Error):
            self.conn.execute("COMMIT")
        self.conn.close()


def _last_rowid(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM outcomes").fetchone()[0])


def _scan(
    reader: sqlite3.Connection, store: Path, start: int, end: int, chunk_rows: int
) -> Iterator[pa.Table]:
    """The rows with rowid in (start, end], in rowid order, as ``SEGMENT_SCHEMA`` chunks."""
    try:
        cursor = reader.execute(_SELECT + " ORDER BY o.rowid", (start, end))
        while rows := cursor.fetchmany(chunk_rows):
            yield _arrow_chunk(rows, store)
    except sqlite3.Error as exc:
        raise StoreError(f"{store}: cannot read the outcome rows ({exc})") from exc


def _arrow_chunk(rows: list[Any], store: Path) -> pa.Table:
    """Python rows (the columns of ``SEGMENT_COLUMNS``) as a validated Arrow table."""
    arrays = []
    for field_, values in zip(SEGMENT_SCHEMA, zip(*rows, strict=True), strict=True):
        try:
            arrays.append(pa.array(values, type=field_.type))
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            raise StoreError(
                f"{store}: an outcome row's {field_.name} does not fit {field_.type} ({exc})"
            ) from exc
    try:
        return segment_table(pa.Table.from_arrays(arrays, schema=SEGMENT_SCHEMA))
    except InputError as exc:
        raise StoreError(f"{store}: stored outcome rows cannot be compacted: {exc}") from exc


def _by_dataset(chunk: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    column = chunk.column("dataset")
    for dataset in pc.unique(column).to_pylist():
        yield str(dataset), chunk.filter(pc.equal(column, dataset))


@dataclass
class Lease:
    """The compaction lease in ``meta``: who holds it (a random owner id, its process and
    host) and until when. Taken, renewed and released in write transactions."""

    catalog: Catalog
    seconds: float = LEASE_S
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)
    renewed: float = 0.0

    def acquire(self) -> None:
        with self.catalog.transaction() as conn:
            held = read_lease(conn)
            if held is not None and held.get("owner") != self.owner and lease_alive(held):
                until = time.strftime("%H:%M:%S", time.gmtime(float(held["expires"])))
                raise StoreError(
                    f"{self.catalog.store}: another compaction is running (pid "
                    f"{held.get('pid')} on {held.get('host')}, lease until {until} UTC); "
                    "nothing was changed"
                )
            self._write(conn)
        self.renewed = time.monotonic()

    def check(self, conn: sqlite3.Connection) -> None:
        """Inside a write transaction: refuse when the lease is no longer ours."""
        held = read_lease(conn)
        if held is None or held.get("owner") != self.owner:
            raise StoreError(
                f"{self.catalog.store}: the compaction lease was lost (expired and taken "
                "over); nothing was published"
            )

    def renew_if_due(self) -> None:
        if time.monotonic() - self.renewed < self.seconds / 3:
            return
        with self.catalog.transaction() as conn:
            self.check(conn)
            self._write(conn)
        self.renewed = time.monotonic()

    def release(self) -> None:
        with suppress(StoreError), self.catalog.transaction() as conn:
            held = read_lease(conn)
            if held is not None and held.get("owner") == self.owner:
                conn.execute("DELETE FROM meta WHERE key = ?", (LEASE_KEY,))

    def _write(self, conn: sqlite3.Connection) -> None:
        value = {
            "owner": self.owner,
            "pid": os.getpid(),
            "host": HOST,
            "expires": time.time() + self.seconds,
        }
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (LEASE_KEY, json.dumps(value, sort_keys=True)),
        )


def read_lease(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """The lease row's value, or None; an unreadable value counts as no lease."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (LEASE_KEY,)).fetchone()
    if row is None:
        return None
    try:
        value = json.loads(row[0])
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def lease_alive(held: dict[str, Any]) -> bool:
    """A lease counts until it expires, unless its process is known gone (same host)."""
    try:
        expires, pid = float(held["expires"]), int(held["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    if expires <= time.time():
        return False
    return held.get("host") != HOST or pid_alive(pid)
