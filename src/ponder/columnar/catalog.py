"""The `segments` catalog: which Parquet files under ``<store>.parquet/`` hold committed rows.

SQLite stays the commit point (docs/design/0009-columnar-analysis.md). A segment file is
written under a hidden temporary name and synced outside any lock; then, inside one write
transaction (``BEGIN IMMEDIATE``), it is renamed into place and its `segments` row inserted.
A file is therefore visible to readers only once its row is committed: a crash before the
commit leaves an unlisted file that ``remove_leftovers`` deletes (under the same lock, so it
never races a writer between its rename and its commit), and a failed commit removes the file
at once. Two writers serialise on SQLite's write lock.

On open every listed file is checked against its row (size, Parquet footer, exact schema,
rows, the dataset its folder names): a truncated or foreign file is recorded as a one-line
``StoreError`` naming it, raised when that file is read; the other files stay readable.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ponder.checksums import sha256_file
from ponder.columnar.segments import (
    OUTCOMES_DIR,
    SEGMENT_SCHEMA,
    SUFFIX,
    Rows,
    check_segment,
    checked_segment_id,
    dataset_dir,
    first_line,
    fsync_dir,
    fsync_file,
    new_segment_id,
    segment_table,
)
from ponder.errors import StoreError
from ponder.store.sqlite import Store

Origin: TypeAlias = Literal["import", "compaction"]
# Called inside the publishing transaction, before the rename: more rows to commit with the
# segments (an import's runs and `imports` row, a compaction's lease check).
Also: TypeAlias = Callable[[sqlite3.Connection], None]

_COLUMNS = (
    "path",
    "segment_id",
    "dataset",
    "rows",
    "bytes",
    "sha256",
    "run_ids",
    "origin",
    "rowid_first",
    "rowid_last",
    "created_at",
)
_TEMP_SUFFIX = ".tmp"
# Rows per Parquet row group; and the most runs of one dataset's rows a publish slices
# (zero-copy) rather than gathering the rows by one take.
ROW_GROUP = 1 << 20
_MAX_RUNS = 4096
HOST = socket.gethostname()


def parquet_root(store: str | Path) -> Path:
    """The folder of a store's segments: the store's file name plus ``.parquet``."""
    path = Path(store)
    return path.with_name(path.name + ".parquet")


@dataclass(frozen=True)
class Segment:
    """One committed segment, as its `segments` row says (``path`` relative to the root)."""

    path: str
    segment_id: str
    dataset: str
    rows: int
    bytes: int
    sha256: str
    run_ids: tuple[str, ...]
    origin: Origin
    rowid_first: int | None
    rowid_last: int | None
    created_at: str


@dataclass
class Pending:
    """A segment file written and synced under its temporary name, not yet committed."""

    dataset: str
    segment_id: str
    temp: Path
    final: Path
    rows: int
    bytes: int
    sha256: str
    run_ids: tuple[str, ...]

    def discard(self) -> None:
        self.temp.unlink(missing_ok=True)


@dataclass
class SegmentWriter:
    """Streams one dataset's rows into a temporary segment file (bounded memory: batches are
    buffered until they reach ``buffer_rows`` rows, and each such flush is written as its own
    row group, split only past ``ROW_GROUP`` rows)."""

    root: Path
    dataset: str
    segment_id: str
    buffer_rows: int = 1 << 17
    rows: int = 0
    _buffer: list[pa.Table] = field(default_factory=list)
    _buffered: int = 0
    _runs: set[str] = field(default_factory=set)
    _writer: pq.ParquetWriter | None = None

    @property
    def final(self) -> Path:
        return dataset_dir(self.root, self.dataset) / f"{self.segment_id}{SUFFIX}"

    @property
    def temp(self) -> Path:
        return temp_path(self.final)

    def write(self, table: pa.Table) -> None:
        """Append rows of ``SEGMENT_SCHEMA``, all of this writer's dataset."""
        if table.num_rows == 0:
            return
        self._runs.update(str(r) for r in pc.unique(table.column("run_id")).to_pylist())
        self._buffer.append(table)
        self._buffered += table.num_rows
        self.rows += table.num_rows
        if self._buffered >= self.buffer_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        if self._writer is None:
            self.temp.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.temp, SEGMENT_SCHEMA, compression="zstd")
        self._writer.write_table(pa.concat_tables(self._buffer), row_group_size=ROW_GROUP)
        self._buffer, self._buffered = [], 0

    def finish(self) -> Pending:
        """Close and sync the file; its size and sha256 as the catalog will record them."""
        self._flush()
        if self._writer is None:
            raise StoreError(f"{self.final}: no rows to write")
        self._writer.close()
        self._writer = None
        fsync_file(self.temp)
        size, digest = _size_and_sha256(self.temp)
        return Pending(
            dataset=self.dataset,
            segment_id=self.segment_id,
            temp=self.temp,
            final=self.final,
            rows=self.rows,
            bytes=size,
            sha256=digest,
            run_ids=tuple(sorted(self._runs)),
        )

    def abort(self) -> None:
        """Drop what was written (a failed or interrupted write)."""
        if self._writer is not None:
            with suppress(Exception):
                self._writer.close()
            self._writer = None
        self.temp.unlink(missing_ok=True)


def temp_path(final: Path) -> Path:
    """A segment's temporary name: hidden, and naming the writing process (``remove_leftovers``
    keeps the files of live writers)."""
    return final.with_name(f".{final.name}~{os.getpid()}~{HOST}{_TEMP_SUFFIX}")


class Catalog:
    """The committed segments of the store at ``store`` (created and migrated if needed)."""

    def __init__(self, store: str | Path, *, readonly: bool = False, check: bool = True) -> None:
        self.store = Path(store)
        self.root = parquet_root(self.store)
        self.readonly = readonly
        Store(self.store, readonly=readonly).close()  # creates, checks and migrates
        try:
            if readonly:
                uri = f"{self.store.resolve().as_uri()}?mode=ro"
                self._conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30.0)
            else:
                self._conn = sqlite3.connect(self.store, isolation_level=None, timeout=30.0)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.store}: cannot open the store ({exc})") from exc
        try:
            self.damaged: dict[str, StoreError] = self.check() if check else {}
        except BaseException:
            self._conn.close()
            raise

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under SQLite's write lock: all of it or nothing."""
        if self.readonly:
            raise StoreError(f"{self.store}: cannot write a store opened read-only")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreError(f"{self.store}: cannot write ({exc}); nothing was written") from exc
        try:
            yield self._conn
            self._conn.execute("COMMIT")
        except BaseException as exc:
            if self._conn.in_transaction:
                with suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(
                    f"{self.store}: cannot write ({exc}); nothing was written"
                ) from exc
            raise

    # -- listing and checking ----------------------------------------------------------------

    def segments(self, datasets: Sequence[str] | None = None) -> list[Segment]:
        """Committed segments (of ``datasets`` when given), by dataset then commit order."""
        try:
            return committed(self._conn, datasets)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.store}: cannot read the segments ({exc})") from exc

    def datasets(self) -> list[str]:
        """The datasets that have committed segments."""
        return sorted({s.dataset for s in self.segments()})

    def check(
        self, datasets: Sequence[str] | None = None, *, deep: bool = False
    ) -> dict[str, StoreError]:
        """Each damaged listed file (by relative path) with its one-line error.

        Checks its size, footer (Parquet, exact schema, its folder's dataset) and rows against
        its row; ``deep`` also re-hashes the bytes (reads every file in full).
        """
        damaged: dict[str, StoreError] = {}
        for segment in self.segments(datasets):
            try:
                self._check_one(segment, deep=deep)
            except StoreError as exc:
                damaged[segment.path] = exc
        return damaged

    def _check_one(self, segment: Segment, *, deep: bool) -> None:
        check_listed(self.root / segment.path, segment, deep=deep)

    def paths(self, datasets: Sequence[str] | None = None) -> list[Path]:
        """The committed files of ``datasets`` (all when None), each checked on open; the
        first damaged one among them is raised (one line naming it)."""
        return [self.root / s.path for s in self._intact(datasets)]

    def _intact(self, datasets: Sequence[str] | None) -> list[Segment]:
        segments = self.segments(datasets)
        for segment in segments:
            if segment.path in self.damaged:
                raise self.damaged[segment.path]
        return segments

    def read(
        self, datasets: Sequence[str] | None = None, *, columns: Sequence[str] | None = None
    ) -> pa.Table:
        """The committed rows of ``datasets`` as one ``SEGMENT_SCHEMA`` table (``columns``
        only, when given), by dataset then commit order then written order."""
        wanted = list(columns) if columns is not None else list(SEGMENT_SCHEMA.names)
        schema = pa.schema([SEGMENT_SCHEMA.field(c) for c in wanted])
        tables = []
        for segment in self._intact(datasets):
            path = self.root / segment.path
            try:
                table = pq.read_table(path, columns=wanted)
            except (OSError, pa.ArrowException) as exc:
                raise StoreError(f"{path}: cannot read the segment ({first_line(exc)})") from exc
            if table.num_rows != segment.rows:
                raise StoreError(f"{path}: {table.num_rows} rows read, recorded {segment.rows}")
            tables.append(table.cast(schema))
        return pa.concat_tables(tables) if tables else schema.empty_table()

    # -- writing -----------------------------------------------------------------------------

    def publish(
        self,
        rows: Rows,
        *,
        origin: Origin = "import",
        rowids: tuple[int, int] | None = None,
        segment_id: str | None = None,
        also: Also | None = None,
    ) -> list[Segment]:
        """Write rows as one new segment per dataset and commit them together.

        The rows are validated (``segment_table``), each dataset's file is written and synced
        under a temporary name, then all are renamed and listed in one transaction (with
        ``also``'s statements). Nothing is visible before the commit, and on any failure no
        file of this call is left behind. ``segment_id`` must be a plain file name.
        """
        pending = pending_files(self.root, rows, segment_id)
        if not pending:
            return []
        return self.commit(pending, origin=origin, rowids=rowids, also=also)

    def commit(
        self,
        pending: Sequence[Pending],
        *,
        origin: Origin,
        rowids: tuple[int, int] | None = None,
        also: Also | None = None,
    ) -> list[Segment]:
        """Rename written files into place and list them, in one write transaction.

        On any failure (``also`` refusing, a name already taken, the insert or the commit
        failing) the files are removed, renamed or not, and nothing is listed.
        """
        listing = Listing(self.root, pending, origin=origin, rowids=rowids)
        try:
            with self.transaction() as conn:
                if also is not None:
                    also(conn)
                listing.put(conn)
        except BaseException:
            listing.undo(lambda paths: listed_among(self._conn, paths))
            raise
        return listing.segments

    def remove_leftovers(self) -> list[Path]:
        """Delete files of crashed writes: segment files no row lists, and temporary files of
        writers no longer running on this host. Holds the write lock while it looks, so no
        writer is between its rename and its commit."""
        base = self.root / OUTCOMES_DIR
        if not base.is_dir():
            return []
        removed: list[Path] = []
        with self.transaction() as conn:
            listed = {str(r[0]) for r in conn.execute("SELECT path FROM segments")}
            for folder in sorted(p for p in base.iterdir() if p.is_dir()):
                for path in sorted(folder.iterdir()):
                    relative = path.relative_to(self.root).as_posix()
                    if _is_leftover(path, relative, listed):
                        path.unlink(missing_ok=True)
                        removed.append(path)
        return removed


def pending_files(root: Path, rows: Rows, segment_id: str | None = None) -> list[Pending]:
    """Rows as one written, synced temporary segment file per dataset, not yet listed (none
    for no rows). The rows are validated (``segment_table``); on any failure no file of this
    call is left behind. ``segment_id`` must be a plain file name."""
    table = segment_table(rows)
    if table.num_rows == 0:
        return []
    sid = new_segment_id() if segment_id is None else checked_segment_id(segment_id)
    datasets, parts = split_by_dataset(table)
    # One file per dataset, written in parallel (Arrow encodes without the GIL).
    with ThreadPoolExecutor(max_workers=min(len(parts), os.cpu_count() or 1)) as pool:
        futures = [
            pool.submit(_write_pending, root, d, sid, part)
            for d, part in zip(datasets, parts, strict=True)
        ]
    pending = [f.result() for f in futures if f.exception() is None]
    failed = [e for f in futures if (e := f.exception()) is not None]
    if failed:
        for item in pending:
            item.discard()
        raise failed[0]
    return pending


class Listing:
    """Pending files made visible inside a caller's write transaction.

    ``put(conn)`` renames the files into place and inserts their ``segments`` rows; if the
    transaction then fails, ``undo(listed)`` removes the renamed files whose rows did not
    commit (``listed`` says which of some relative paths are listed: an interrupt can land
    after the COMMIT, and a listed file must stay) and every temporary file.
    """

    def __init__(
        self,
        root: Path,
        pending: Sequence[Pending],
        *,
        origin: Origin,
        rowids: tuple[int, int] | None = None,
    ) -> None:
        if (origin == "compaction") != (rowids is not None):
            raise ValueError("a compaction segment needs its rowid range, an import none")
        self.root = root
        self.pending = list(pending)
        created = _now()
        self.segments = [_listed(p, root, origin, rowids, created) for p in self.pending]
        self.moved: list[Path] = []

    def put(self, conn: sqlite3.Connection) -> list[Segment]:
        for item in self.pending:
            if item.final.exists():
                raise StoreError(f"{item.final}: segment already exists")
            os.replace(item.temp, item.final)
            self.moved.append(item.final)
        for folder in sorted({p.parent for p in self.moved}):
            fsync_dir(folder)
        _insert_rows(conn, self.segments)
        return self.segments

    def undo(self, listed: Callable[[set[str]], set[str]]) -> None:
        kept = listed({s.path for s in self.segments}) if self.moved else set()
        for path in self.moved:
            if path.relative_to(self.root).as_posix() not in kept:
                path.unlink(missing_ok=True)
        for item in self.pending:
            item.discard()


def listed_among(conn: sqlite3.Connection, paths: set[str]) -> set[str]:
    """Which of these relative paths the committed ``segments`` rows list (all of them when
    the store cannot say: keeping a file is safe, deleting a listed one is not)."""
    try:
        rows = conn.execute("SELECT path FROM segments").fetchall()
    except sqlite3.Error:
        return paths
    return paths & {str(r[0]) for r in rows}


def unlist(conn: sqlite3.Connection, paths: Sequence[str]) -> None:
    """Drop the ``segments`` rows of these relative paths (inside the caller's transaction;
    the files are deleted after its commit, or by ``remove_leftovers``)."""
    conn.executemany("DELETE FROM segments WHERE path = ?", [(p,) for p in paths])


def committed(conn: sqlite3.Connection, datasets: Sequence[str] | None = None) -> list[Segment]:
    """The segments a connection's snapshot lists (of ``datasets`` when given), by dataset
    then commit order."""
    sql = f"SELECT {', '.join(_COLUMNS)} FROM segments"
    params: list[str] = []
    if datasets is not None:
        names = sorted(set(datasets))
        sql += f" WHERE dataset IN ({', '.join('?' for _ in names)})"
        params = names
    rows = conn.execute(sql + " ORDER BY dataset, rowid", params).fetchall()
    return [_segment(row) for row in rows]


def check_listed(path: Path, segment: Segment, *, deep: bool = False) -> None:
    """The file at ``path`` is the one ``segment`` lists: its size, footer and rows (and with
    ``deep`` its sha256); else a one-line ``StoreError`` naming it."""
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise StoreError(f"{path}: listed segment is missing") from exc
    if size != segment.bytes:
        raise StoreError(
            f"{path}: {size} bytes, the catalog recorded {segment.bytes} (truncated or overwritten)"
        )
    rows = check_segment(path)
    if rows != segment.rows:
        raise StoreError(f"{path}: {rows} rows in its footer, the catalog recorded {segment.rows}")
    if deep and _size_and_sha256(path)[1] != segment.sha256:
        raise StoreError(f"{path}: content differs from its recorded sha256")


def split_by_dataset(table: pa.Table) -> tuple[list[str], list[pa.Table]]:
    """The rows of each dataset (sorted by name), in their order: zero-copy slices of the
    runs of rows of one dataset when there are few runs (files are mostly grouped by
    dataset), else one stable take."""
    if table.num_rows == 0:
        return [], []
    encoded = pc.dictionary_encode(table.column("dataset"))
    dictionary = [str(d) for d in encoded.chunk(0).dictionary.to_pylist()]
    codes = np.concatenate([c.indices.to_numpy() for c in encoded.chunks])
    starts = np.concatenate(([0], np.flatnonzero(codes[1:] != codes[:-1]) + 1))
    if len(starts) > _MAX_RUNS:  # interleaved: gather each dataset's rows once
        order = np.argsort(codes, kind="stable")
        table, codes = table.take(pa.array(order)), codes[order]
        starts = np.concatenate(([0], np.flatnonzero(codes[1:] != codes[:-1]) + 1))
    ends = [*starts[1:].tolist(), len(codes)]
    runs: dict[str, list[pa.Table]] = {}
    for a, b in zip(starts.tolist(), ends, strict=True):
        runs.setdefault(dictionary[int(codes[a])], []).append(table.slice(a, b - a))
    names = sorted(runs)
    return names, [pa.concat_tables(runs[n]) for n in names]


def _write_pending(root: Path, dataset: str, segment_id: str, rows: pa.Table) -> Pending:
    """One dataset's rows as a written, synced temporary file (removed if that fails)."""
    writer = SegmentWriter(root, dataset, segment_id, buffer_rows=max(rows.num_rows, 1))
    try:
        writer.write(rows)
        return writer.finish()
    except BaseException:
        writer.abort()
        raise


def _is_leftover(path: Path, relative: str, listed: set[str]) -> bool:
    if path.name.startswith(".") and path.name.endswith(_TEMP_SUFFIX):
        return not _writer_alive(path.name)
    return path.name.endswith(SUFFIX) and relative not in listed


def _writer_alive(name: str) -> bool:
    """Whether the process named in a temporary file's name may still be writing it (a
    process on another host is assumed alive)."""
    parts = name.removesuffix(_TEMP_SUFFIX).rsplit("~", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    pid, host = int(parts[1]), parts[2]
    return host != HOST or pid_alive(pid)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _insert_rows(conn: sqlite3.Connection, segments: Sequence[Segment]) -> None:
    conn.executemany(
        f"INSERT INTO segments ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})",
        [
            (
                s.path,
                s.segment_id,
                s.dataset,
                s.rows,
                s.bytes,
                s.sha256,
                json.dumps(list(s.run_ids)),
                s.origin,
                s.rowid_first,
                s.rowid_last,
                s.created_at,
            )
            for s in segments
        ],
    )


def _listed(
    item: Pending, root: Path, origin: Origin, rowids: tuple[int, int] | None, created: str
) -> Segment:
    return Segment(
        path=item.final.relative_to(root).as_posix(),
        segment_id=item.segment_id,
        dataset=item.dataset,
        rows=item.rows,
        bytes=item.bytes,
        sha256=item.sha256,
        run_ids=item.run_ids,
        origin=origin,
        rowid_first=None if rowids is None else rowids[0],
        rowid_last=None if rowids is None else rowids[1],
        created_at=created,
    )


def _segment(row: Sequence[object]) -> Segment:
    path, sid, dataset, rows, size, digest, runs, origin, first, last, created = row
    return Segment(
        path=str(path),
        segment_id=str(sid),
        dataset=str(dataset),
        rows=int(str(rows)),
        bytes=int(str(size)),
        sha256=str(digest),
        run_ids=tuple(json.loads(str(runs))),
        origin="compaction" if origin == "compaction" else "import",
        rowid_first=None if first is None else int(str(first)),
        rowid_last=None if last is None else int(str(last)),
        created_at=str(created),
    )


def _size_and_sha256(path: Path) -> tuple[int, str]:
    return path.stat().st_size, sha256_file(path)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
