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

Deletes. Compaction segments are copies of SQLite rows, so a delete of a compacted row (a
``--replace``) leaves its copy behind, and SQLite hands the highest rowids out again, so new
rows can land at or below the watermark. A trigger (store migration 7) counts those deletes in
``meta``; from then on the compaction segments are not current (``compaction_current``):
``compacted_up_to`` says 0, so every SQLite row is read from SQLite, and readers must ignore
the compaction segments (``readable_segments`` lists the others). The next compaction rebuilds:
it copies from rowid 0 again and, in its one commit, unlists every compaction segment and
resets the count (the old files are deleted after the commit). A delete while a compaction
copies is counted too (the trigger sees its lease), and that compaction publishes nothing.

What a reader does, in one SQLite read transaction: ``compacted_up_to(conn)`` rows from SQLite
(``rowid >`` it), plus the files of ``readable_segments(conn)`` (never ``committed`` alone).
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
    Pending,
    Segment,
    SegmentWriter,
    committed,
    pid_alive,
    split_by_dataset,
)
from ponder.columnar.segments import (
    SEGMENT_COLUMNS,
    SEGMENT_SCHEMA,
    new_segment_id,
    segment_table,
)
from ponder.errors import InputError, StoreError

LEASE_KEY = "compaction_lease"
# Deletes of compacted rows since the last compaction, counted by the trigger of store
# migration 7 (which names both keys in its SQL).
DELETES_KEY = "outcome_deletes"
# Seconds a lease lasts without renewal (renewed every third of it while copying).
LEASE_S = 300.0
# Rows fetched from SQLite at a time: one chunk of Python objects is alive at once.
CHUNK_ROWS = 1 << 15

# The segment columns, then the rowid (named in errors). A LEFT JOIN: a row whose run is not
# stored is named as an error rather than skipped.
_SELECT = (
    f"SELECT {', '.join('o.' + c for c in SEGMENT_COLUMNS if c != 'budget_kind')}, "
    "r.budget_kind, o.rowid FROM outcomes o LEFT JOIN runs r ON r.run_id = o.run_id "
    "WHERE o.rowid > ? AND o.rowid <= ?"
)
_KEY = tuple(SEGMENT_COLUMNS.index(c) for c in ("run_id", "problem_id", "sample_idx"))


@dataclass(frozen=True)
class CompactionResult:
    """What one compaction copied: the rowid range, its rows and segments, the files of
    crashed writes it removed first, and (a rebuild after deletes) the compaction segments
    it unlisted and deleted."""

    rowid_first: int
    rowid_last: int
    rows: int
    segments: list[Segment]
    removed: list[Path]
    replaced: list[Path] = field(default_factory=list)


def compact(
    store: str | Path, *, chunk_rows: int = CHUNK_ROWS, lease_s: float = LEASE_S
) -> CompactionResult:
    """Copy the outcome rows above the last compacted rowid into one segment per dataset.

    After deletes of compacted rows it rebuilds: every row from rowid 0, the old compaction
    segments unlisted in the same commit. Raises ``StoreError`` when the store does not exist,
    another compaction holds the lease, or rows were deleted while it copied (nothing is
    published). Nothing to copy is not an error (an empty range, ``rows`` 0).
    """
    if not Path(store).is_file():
        raise StoreError(f"{store}: no such store; nothing was compacted")
    with Catalog(store, check=False) as catalog:
        lease = Lease(catalog, lease_s)
        lease.acquire()
        try:
            removed = catalog.remove_leftovers()
            return _copy(catalog, lease, chunk_rows, removed)
        finally:
            lease.release()


def compacted_up_to(conn: sqlite3.Connection) -> int:
    """The watermark: every outcome row at or below this rowid is in a compaction segment,
    and those segments hold no other row. 0 when they are not current (``compaction_current``):
    then every row is read from SQLite and the compaction segments are ignored."""
    return _last_compacted(conn) if compaction_current(conn) else 0


def compaction_current(conn: sqlite3.Connection) -> bool:
    """Whether the compaction segments still copy exactly the outcome rows up to their
    watermark: False once a compacted row was deleted, until the next compaction rebuilds."""
    return _deletes(conn) == 0


def readable_segments(
    conn: sqlite3.Connection, datasets: Sequence[str] | None = None
) -> list[Segment]:
    """The segments a reader adds to the SQLite rows above ``compacted_up_to`` (in the same
    read transaction): every committed one, but no compaction segment when they are not
    current."""
    segments = committed(conn, datasets)
    if compaction_current(conn):
        return segments
    return [s for s in segments if s.origin != "compaction"]


def _last_compacted(conn: sqlite3.Connection) -> int:
    row = conn.execute(
        "SELECT COALESCE(MAX(rowid_last), 0) FROM segments WHERE origin = 'compaction'"
    ).fetchone()
    return int(row[0])


def _deletes(conn: sqlite3.Connection) -> int:
    """The trigger's count (an unreadable value counts as a delete: rebuilding is safe)."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (DELETES_KEY,)).fetchone()
    if row is None:
        return 0
    try:
        return int(row[0])
    except (TypeError, ValueError):
        return 1


def uncompacted_rows(
    store: str | Path, *, datasets: Sequence[str] | None = None, chunk_rows: int = CHUNK_ROWS
) -> pa.Table:
    """The committed outcome rows not yet compacted (of ``datasets``), as one
    ``SEGMENT_SCHEMA`` table in rowid order: what an analysis adds to ``readable_segments``
    (every row when the compaction segments are not current)."""
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
        last, deletes = _last_compacted(reader), _deletes(reader)
        # After deletes the compaction segments are stale: copy every row again, replace them.
        stale = [s for s in committed(reader) if s.origin == "compaction"] if deletes else []
        start = 0 if deletes else last
        end = _last_rowid(reader)
        if end < start:
            raise StoreError(
                f"{catalog.store}: outcome rows up to rowid {start} were compacted, but the "
                f"last stored row is {end}: rows were deleted uncounted (the store's delete "
                "trigger is missing?); nothing was compacted"
            )
        if end == start and not deletes:
            return CompactionResult(start + 1, end, 0, [], removed)
        pending = _write(reader, catalog, lease, start, end, chunk_rows) if end > start else []

    def guard(conn: sqlite3.Connection) -> None:
        lease.check(conn)
        if _last_compacted(conn) != last:
            raise StoreError(f"{catalog.store}: another compaction published meanwhile")
        if _deletes(conn) != deletes:
            raise StoreError(
                f"{catalog.store}: outcome rows were deleted while the compaction copied them "
                "(a --replace?); nothing was published: compact again"
            )
        conn.executemany("DELETE FROM segments WHERE path = ?", [(s.path,) for s in stale])
        conn.execute("DELETE FROM meta WHERE key = ?", (DELETES_KEY,))

    segments = catalog.commit(pending, origin="compaction", rowids=(start + 1, end), also=guard)
    replaced = [catalog.root / s.path for s in stale]
    for path in replaced:  # unlisted: a crash here leaves leftovers the next run deletes
        path.unlink(missing_ok=True)
    rows = sum(s.rows for s in segments)
    return CompactionResult(start + 1, end, rows, segments, removed, replaced)


def _write(
    reader: sqlite3.Connection,
    catalog: Catalog,
    lease: Lease,
    start: int,
    end: int,
    chunk_rows: int,
) -> list[Pending]:
    """The rows in (start, end] as one written, unlisted file per dataset."""
    sid = new_segment_id()
    writers: dict[str, SegmentWriter] = {}
    try:
        for chunk in _scan(reader, catalog.store, start, end, chunk_rows):
            for dataset, part in zip(*split_by_dataset(chunk), strict=True):
                if dataset not in writers:
                    writers[dataset] = SegmentWriter(catalog.root, dataset, sid)
                writers[dataset].write(part)
            lease.renew_if_due()
        return [writers[d].finish() for d in sorted(writers)]
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise


class _Snapshot:
    """A read transaction on its own connection: one consistent view of the store while
    writers go on (WAL)."""

    def __init__(self, store: Path) -> None:
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.conn = sqlite3.connect(self.store, isolation_level=None, timeout=30.0)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.store}: cannot read the store ({exc})") from exc
        try:
            self.conn.execute("BEGIN")
        except sqlite3.Error as exc:
            self.conn.close()
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
    """Python rows (the columns of ``SEGMENT_COLUMNS``, then the rowid) as a validated Arrow
    table; a value a segment cannot hold is an error naming the first such row."""
    try:
        return _converted(rows)
    except InputError as exc:
        index, error = _first_bad(rows, exc)
        row = rows[index]
        run_id, problem_id, sample_idx = (row[i] for i in _KEY)
        reason = error.reason
        if error.field == "budget_kind":
            reason = "its run is not in the runs table"
        raise StoreError(
            f"{store}: outcome row {row[-1]} (run_id {run_id!r}, problem_id {problem_id!r}, "
            f"sample_idx {sample_idx!r}) cannot go into a segment: {error.field}: {reason}"
        ) from error


def _converted(rows: Sequence[Sequence[Any]]) -> pa.Table:
    """Rows as a ``SEGMENT_SCHEMA`` table; an ``InputError`` naming the field otherwise."""
    columns = list(zip(*rows, strict=True))[: len(SEGMENT_SCHEMA)]
    arrays = []
    for field_, values in zip(SEGMENT_SCHEMA, columns, strict=True):
        try:
            arrays.append(pa.array(values, type=field_.type))
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            value = next((v for v in values if not _fits(v, field_.type)), None)
            raise InputError(
                f"{value!r:.40} does not fit {field_.type}", field=field_.name
            ) from exc
    return segment_table(pa.Table.from_arrays(arrays, schema=SEGMENT_SCHEMA))


def _fits(value: Any, type_: pa.DataType) -> bool:
    try:
        pa.array([value], type=type_)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return False
    return True


def _first_bad(rows: list[Any], error: InputError) -> tuple[int, InputError]:
    """The first row that cannot be converted, and its error (bisection on prefixes: all
    ``rows`` failed with ``error``; once a failing prefix is one row longer than one that
    converts, its error is about its last row)."""
    good, bad = 0, len(rows)  # rows[:good] convert, rows[:bad] do not
    while bad - good > 1:
        middle = (good + bad) // 2
        try:
            _converted(rows[:middle])
            good = middle
        except InputError as exc:
            bad, error = middle, exc
    return bad - 1, error


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
