"""The outcome matrix in SQLite: transactional, idempotent by key, versioned schema.

Every analysis reads this store; nothing downstream talks to a model. You can query the file
with any SQLite client: `sqlite3 ponder.sqlite 'select model, avg(correct) from outcomes
group by model'`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ponder.errors import StoreError
from ponder.store.batch import ImportBatch
from ponder.store.frame import EXPERIMENT_RUN_PREFIX, read_outcomes_frame
from ponder.store.schema import (
    MIGRATIONS,
    OUTCOME_STORE_COLUMNS,
    PROBLEM_STORE_COLUMNS,
    SCHEMA_VERSION,
    SIGNAL_COLUMNS,
    statements,
)
from ponder.types import Run

if TYPE_CHECKING:
    from ponder.columnar.catalog import Segment
    from ponder.columnar.writes import SegmentWrites


@dataclass(frozen=True)
class WriteResult:
    """What one transactional write added (re-writing the same rows adds nothing)."""

    outcomes_read: int
    outcomes_added: int
    problems_added: int
    runs_added: int
    outcomes_replaced: int = 0

    @property
    def outcomes_skipped(self) -> int:
        return self.outcomes_read - self.outcomes_added


@dataclass(frozen=True)
class Source:
    """Where a batch came from, recorded in the `imports` table with the runs it wrote."""

    path: str
    sha256: str = ""
    preset: str = ""
    options: dict[str, object] = field(default_factory=dict)

    def options_json(self) -> str:
        return json.dumps(self.options, sort_keys=True)


@dataclass(frozen=True)
class PastImport:
    """One earlier import of a source, as the `imports` table recorded it."""

    path: str
    sha256: str
    preset: str
    options: dict[str, object]
    runs: list[str]
    rows_read: int


# Columns that are not part of the key: a stored row whose key matches but whose values differ
# is a conflict (a corrected file), never silently kept.
_VALUE_COLUMNS = tuple(
    c
    for c in OUTCOME_STORE_COLUMNS
    if c not in ("run_id", "dataset", "problem_id", "model", "mode", "budget", "sample_idx")
)


def check_can_write(path: Path) -> None:
    """Say up front when a store cannot be written there, without creating anything.

    A read-only store or folder is reported as such (not as an unreadable store after the
    whole input was parsed); SQLite writes its journal (`-wal`, `-shm`) beside the store, so
    the folder must be writable as well as the file.
    """
    if path.exists():
        if path.is_dir():
            raise StoreError(f"{path} is a folder, not a store file")
        if not os.access(path, os.W_OK):
            raise StoreError(
                f"{path} is read-only: cannot import into it (commands that only read it "
                "still work; make it writable or import into a copy)"
            )
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise StoreError(f"cannot create the store {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK):
        raise StoreError(
            f"the folder {folder} is read-only: cannot write the store {path.name} there "
            "(SQLite writes its journal beside the store); use --store in a writable folder"
        )


# Columns that may be left out of an INSERT when a batch has no value in them (they are NULL
# anyway); key and NOT NULL columns are always written.
_OPTIONAL_COLUMNS = (frozenset(_VALUE_COLUMNS) | frozenset(SIGNAL_COLUMNS)) - {"correct", "n_runs"}


def _present_columns(frame: pd.DataFrame) -> list[str]:
    """The outcome columns worth binding: an all-NULL optional column costs a bind per row
    for nothing (a third of a typical import's write time). Signal columns are bound when a
    batch brings them (a recorded live sweep)."""
    signals = [c for c in SIGNAL_COLUMNS if c in frame.columns]
    return [
        c
        for c in (*OUTCOME_STORE_COLUMNS, *signals)
        if c not in _OPTIONAL_COLUMNS or not frame[c].isna().all()
    ]


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _column_values(column: pd.Series) -> list[Any]:
    """One column as plain Python values (int, float, str) with NaN / NA as None."""
    if column.dtype == np.float64 or column.dtype == np.int64:
        array = column.to_numpy()
        out: list[Any] = array.tolist()  # numpy converts numbers far faster than object casts
        if array.dtype == np.float64:
            for i in np.flatnonzero(np.isnan(array)).tolist():
                out[i] = None
        return out
    values = column.to_numpy(dtype=object, copy=True)
    missing = column.isna().to_numpy()
    if missing.any():
        values[missing] = None
    out = values.tolist()
    return out


# Rows are converted to Python objects this many at a time: one chunk of objects is alive at
# once (all of them made a million-row import peak above a gigabyte).
_CHUNK = 50_000


def _rows(frame: pd.DataFrame, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """Rows as plain Python tuples with NaN/NA as None, which sqlite3 stores as NULL.

    Converted column by column (not value by value) and chunk by chunk: this is most of an
    import's Python time and, done all at once, most of its memory.
    """
    for start in range(0, len(frame), _CHUNK):
        chunk = frame.iloc[start : start + _CHUNK]
        yield from zip(*(_column_values(chunk[c]) for c in columns), strict=True)


# Problems are upserted field by field: a later write may fill a text, gold or level that an
# earlier one lacked, but never overwrites a known value.
_UPSERT_PROBLEMS = (
    "INSERT INTO problems (dataset, problem_id, text, gold, level, subject, "
    "metadata_json) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (dataset, problem_id) DO UPDATE SET "
    "text = COALESCE(problems.text, excluded.text), "
    "gold = COALESCE(problems.gold, excluded.gold), "
    "level = COALESCE(problems.level, excluded.level), "
    "subject = COALESCE(problems.subject, excluded.subject), "
    "metadata_json = CASE WHEN problems.metadata_json = '{}' "
    "THEN excluded.metadata_json ELSE problems.metadata_json END"
)


def _insert_runs(conn: sqlite3.Connection, runs: Sequence[Run]) -> None:
    """Add runs not yet stored (callers check conflicting ones first with `_check_runs`)."""
    conn.executemany(
        "INSERT INTO runs (run_id, model, backend, source, budget_kind, "
        "settings_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT DO NOTHING",
        [
            (r.run_id, r.model, r.backend, r.source, r.budget_kind, r.settings_json(), _now())
            for r in runs
        ],
    )


# Columns a live sweep writes per outcome row: the outcome matrix plus the rung signals.
SWEEP_OUTCOME_COLUMNS: tuple[str, ...] = OUTCOME_STORE_COLUMNS + SIGNAL_COLUMNS
CHAIN_COLUMNS: tuple[str, ...] = (
    "chain_id",
    "run_id",
    "dataset",
    "problem_id",
    "sample_idx",
    "text",
    "tokens",
    "finished",
    "entropies",
)


@dataclass(frozen=True)
class WorkItemState:
    """What the store knows of one work item of a sweep."""

    status: str
    attempts: int
    error: str | None


def _insert_import(
    conn: sqlite3.Connection, source: Source, rows_read: int, rows_added: int, runs: list[Run]
) -> None:
    conn.execute(
        "INSERT INTO imports (path, sha256, preset, rows_read, rows_added, "
        "imported_at, options_json, runs_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            source.path,
            source.sha256,
            source.preset,
            rows_read,
            rows_added,
            _now(),
            source.options_json(),
            json.dumps(sorted(r.run_id for r in runs)),
        ),
    )


class Store:
    """An outcome store at `path` (created on first write unless `create=False`)."""

    def __init__(self, path: str | Path, *, create: bool = True, readonly: bool = False) -> None:
        """Open (and migrate) a store; `readonly` opens it for reading only, so analyses work
        on a store they may not write (a shared or read-only copy) and never change it.

        Opening for writing checks the place is writable and the file is not damaged
        (`PRAGMA quick_check`) before anything is written, so a bad store is never made worse.
        """
        self.path = Path(path)
        self.readonly = readonly
        if not self.path.exists():
            if not create or readonly:
                raise StoreError(
                    f"no store at {self.path}: import data first (`ponder import PATH`) "
                    "or point --store / PONDER_STORE at an existing store"
                )
            check_can_write(self.path)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the folder of the store {self.path}: {exc}"
                ) from exc
        elif self.path.is_dir():
            raise StoreError(f"{self.path} is a folder, not a store file")
        if not readonly:
            check_can_write(self.path)
        try:
            if readonly:
                self._conn = self._connect_readonly()
                if self._upgrade_for_reading():
                    self._conn = self._connect_readonly()
                self._check_readable_version()
            else:
                self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
                self._check_intact()
                self._conn.execute("PRAGMA foreign_keys = ON")
                self._migrate()
                self._enable_wal()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a readable ponder store: {exc}") from exc

    def _enable_wal(self, wait_s: float = 30.0) -> None:
        """Switch to write-ahead logging, waiting for other writers.

        SQLite answers this pragma with "database is locked" at once, without its busy
        timeout, while another connection holds a write transaction (it would deadlock):
        that happens when processes create one store together and one is already writing.
        Retry until the writer commits; once the file is in WAL mode the pragma is a no-op.
        """
        deadline = time.monotonic() + wait_s
        delay = 0.005
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode = WAL").fetchall()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def _check_intact(self) -> None:
        """Refuse to write into a damaged file (PRAGMA quick_check), which would spread damage."""
        try:
            row = self._conn.execute("PRAGMA quick_check(1)").fetchone()
        except sqlite3.DatabaseError as exc:
            if "not a database" in str(exc):
                raise
            self._conn.close()
            raise StoreError(self._damaged(str(exc))) from exc
        if row is None or row[0] != "ok":
            self._conn.close()
            raise StoreError(self._damaged(str(row[0] if row else "no answer")))

    def _damaged(self, detail: str) -> str:
        detail = " ".join(detail.split())[:200]
        return (
            f"{self.path} is damaged (SQLite: {detail}); nothing was written. Restore it from "
            "a backup, or re-import your files into a new store"
        )

    def _connect_readonly(self) -> sqlite3.Connection:
        uri = self.path.resolve().as_uri()
        try:
            conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None, timeout=30.0)
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            # A WAL store on read-only media cannot create its shared-memory file: read it as
            # an immutable file instead (nobody can be writing it there).
            return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)

    def _upgrade_for_reading(self) -> bool:
        """An older store that this process may write is migrated once (the migrations only
        add tables and columns, in one transaction), so a read-only command after an upgrade
        of ponder just works; True when it was (the connection is then closed)."""
        if not 0 < self._read_version() < SCHEMA_VERSION:
            return False
        if not (os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK)):
            return False  # a read-only copy: the version check says what to do
        self._conn.close()
        Store(self.path).close()
        return True

    def _check_readable_version(self) -> None:
        version = self._read_version()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this ponder supports "
                f"({SCHEMA_VERSION}): upgrade ponder to read it"
            )
        if version < SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}: open it once for writing "
                "(e.g. `ponder import`) to migrate it"
            )

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def seal(self) -> None:
        """Fold the write-ahead log into the main file and leave WAL mode, so the file alone
        holds every committed row (before it is linked into place as a new store)."""
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.execute("PRAGMA journal_mode = DELETE")

    def _rollback(self) -> None:
        """Roll back if a transaction is still open: SQLite ends it itself on some errors
        (disk full, I/O error), and a second ROLLBACK would hide the real error."""
        if self._conn.in_transaction:
            with suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it or nothing; SQLite errors become one-line errors."""
        if self.readonly:
            raise StoreError(f"{self.path}: cannot write a store opened read-only")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            hint = "is another import running?" if "locked" in str(exc) else "nothing was written"
            raise StoreError(f"{self.path}: cannot write ({exc}); {hint}") from exc
        try:
            yield self._conn
        except sqlite3.Error as exc:
            self._rollback()
            raise StoreError(f"{self.path}: cannot write ({exc}); nothing was written") from exc
        except BaseException:
            self._rollback()
            raise
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise StoreError(f"{self.path}: commit failed ({exc}); nothing was written") from exc

    # -- schema ------------------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        return self._read_version()

    def _read_version(self) -> int:
        tables = {
            r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if not tables:
            return 0
        if "meta" not in tables:
            raise StoreError(f"{self.path} is a SQLite file but not a ponder store (no meta table)")
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            raise StoreError(f"{self.path}: meta table has no schema_version")
        try:
            return int(row[0])
        except ValueError as exc:
            raise StoreError(f"{self.path}: schema_version {row[0]!r} is not a number") from exc

    def _migrate(self) -> None:
        version = self._read_version()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this ponder supports "
                f"({SCHEMA_VERSION}): upgrade ponder to read it"
            )
        if version == SCHEMA_VERSION:
            return
        with self._transaction() as conn:
            # Re-read under the write lock: another process may have created or migrated the
            # store since the first read (two first imports racing to create one store).
            version = self._read_version()
            if version >= SCHEMA_VERSION:
                return
            for step in range(version, SCHEMA_VERSION):
                for statement in statements(MIGRATIONS[step]):
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )

    # -- writing -----------------------------------------------------------------------------

    def write(
        self,
        batch: ImportBatch,
        *,
        source_path: str | None = None,
        sha256: str | None = None,
        preset: str = "",
    ) -> WriteResult:
        """Write one batch in one transaction (see `write_many`)."""
        source = (
            Source(path=source_path, sha256=sha256 or "", preset=preset)
            if source_path is not None
            else None
        )
        return self.write_many([(batch, source)])[0]

    def write_many(
        self,
        batches: Sequence[tuple[ImportBatch, Source | None]],
        *,
        replace_runs: Collection[str] = (),
    ) -> list[WriteResult]:
        """Write several batches in ONE transaction: a failure in any of them keeps nothing.

        Rows whose key is already stored with the same values are skipped (re-imports add
        nothing); a stored key with other values is a conflict, never silently kept. Runs in
        `replace_runs` lose their stored rows first (an explicit `--replace`), in the same
        transaction. Problems are upserted field by field: a later import may fill a text, gold
        or level that an earlier one lacked, but never overwrites a known value.
        """
        results: list[WriteResult] = []
        segments = self._segment_writes(batches, replace_runs)
        try:
            with self._transaction() as conn:
                replaced = self._delete_runs(conn, replace_runs)
                for batch, source in batches:
                    results.append(self._write_one(conn, batch, source))
                if segments is not None:
                    segments.apply(conn)
                    replaced += segments.rows_removed
        except BaseException:
            if segments is not None:
                segments.undo(self._conn)
            raise
        if segments is not None:
            segments.finish()
        if results and replaced:
            first = results[0]
            results[0] = WriteResult(
                outcomes_read=first.outcomes_read,
                outcomes_added=first.outcomes_added,
                problems_added=first.problems_added,
                runs_added=first.runs_added,
                outcomes_replaced=replaced,
            )
        return results

    def _segment_writes(
        self, batches: Sequence[tuple[ImportBatch, Source | None]], replace_runs: Collection[str]
    ) -> SegmentWrites | None:
        """The segment files of this write (bulk rows, runs cut out by ``--replace``), written
        before the transaction; None when it touches no segment."""
        bulk = [p for b, _ in batches for p in b.segment_files or []]
        if not bulk and not (replace_runs and self._has_table("segments")):
            return None
        from ponder.columnar.writes import SegmentWrites

        writes = SegmentWrites(self.path, self._conn, bulk, replace_runs)
        return None if writes.empty else writes

    @staticmethod
    def _delete_runs(conn: sqlite3.Connection, run_ids: Collection[str]) -> int:
        removed = 0
        for run_id in sorted(set(run_ids)):
            removed += conn.execute("DELETE FROM outcomes WHERE run_id = ?", (run_id,)).rowcount
            conn.execute("DELETE FROM chains WHERE run_id = ?", (run_id,))  # a sweep's chains
            conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
        return removed

    def _write_one(
        self, conn: sqlite3.Connection, batch: ImportBatch, source: Source | None
    ) -> WriteResult:
        where = f"{source.path}: " if source is not None else ""
        self._check_runs(conn, batch, where)
        before = conn.total_changes
        _insert_runs(conn, batch.runs)
        runs_added = conn.total_changes - before

        problems = batch.problems
        referenced = batch.outcomes[["dataset", "problem_id"]].drop_duplicates()
        bare = referenced.merge(problems[["dataset", "problem_id"]], how="left", indicator=True)
        bare = bare[bare["_merge"] == "left_only"].drop(columns="_merge")
        if len(bare):
            filler = pd.DataFrame(
                {c: [None] * len(bare) for c in PROBLEM_STORE_COLUMNS[2:]}
            ).assign(metadata_json="{}")
            bare = pd.concat([bare.reset_index(drop=True), filler], axis=1)
            problems = pd.concat([problems, bare], ignore_index=True)
        n_before = self._count(conn, "problems")
        conn.executemany(_UPSERT_PROBLEMS, _rows(problems, PROBLEM_STORE_COLUMNS))
        problems_added = self._count(conn, "problems") - n_before

        if batch.segment_files is not None:  # listed with the transaction (SegmentWrites)
            return self._write_bulk(conn, batch, source, problems_added, runs_added)
        columns = _present_columns(batch.outcomes)
        placeholders = ", ".join("?" for _ in columns)
        before = conn.total_changes
        conn.executemany(
            # Not OR IGNORE: that would also drop rows failing CHECK / NOT NULL.
            f"INSERT INTO outcomes ({', '.join(columns)}) "
            f"VALUES ({placeholders}) ON CONFLICT DO NOTHING",
            _rows(batch.outcomes, columns),
        )
        outcomes_added = conn.total_changes - before
        if outcomes_added < len(batch.outcomes):
            self._check_same_values(conn, batch, where, columns)
        if batch.chains is not None and len(batch.chains):
            self._write_chains(conn, batch.chains, where)
        if source is not None:
            _insert_import(conn, source, len(batch.outcomes), outcomes_added, batch.runs)
        return WriteResult(
            outcomes_read=len(batch.outcomes),
            outcomes_added=outcomes_added,
            problems_added=problems_added,
            runs_added=runs_added,
        )

    @staticmethod
    def _write_bulk(
        conn: sqlite3.Connection,
        batch: ImportBatch,
        source: Source | None,
        problems_added: int,
        runs_added: int,
    ) -> WriteResult:
        """A bulk batch's ``imports`` row; its rows go to segments, all of them new (the
        importer refuses a bulk file whose runs are stored, unless they are replaced)."""
        rows = batch.segment_rows
        if source is not None:
            _insert_import(conn, source, rows, rows, batch.runs)
        return WriteResult(
            outcomes_read=rows,
            outcomes_added=rows,
            problems_added=problems_added,
            runs_added=runs_added,
        )

    @staticmethod
    def _check_same_values(
        conn: sqlite3.Connection, batch: ImportBatch, where: str, present: Sequence[str]
    ) -> None:
        """Rows skipped as already stored must be equal to the stored ones, not corrections.

        Only runs when some rows were skipped (a re-import), so a first import pays nothing.
        """
        columns = ", ".join(SWEEP_OUTCOME_COLUMNS)
        conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS incoming AS SELECT {columns} FROM main.outcomes "
            "WHERE 0"
        )
        conn.execute("DELETE FROM temp.incoming")
        placeholders = ", ".join("?" for _ in present)
        conn.executemany(
            f"INSERT INTO temp.incoming ({', '.join(present)}) VALUES ({placeholders})",
            _rows(batch.outcomes, present),
        )
        compared = (*_VALUE_COLUMNS, *(c for c in SIGNAL_COLUMNS if c in present))
        differs = " OR ".join(f"o.{c} IS NOT i.{c}" for c in compared)
        row = conn.execute(
            "SELECT i.rowid, i.run_id, i.problem_id, i.mode, i.budget, i.sample_idx, "
            f"{', '.join(f'o.{c}, i.{c}' for c in compared)} "
            "FROM temp.incoming i JOIN main.outcomes o ON o.run_id = i.run_id "
            "AND o.dataset = i.dataset AND o.problem_id = i.problem_id AND o.model = i.model "
            "AND o.mode = i.mode AND IFNULL(o.budget, -1) = IFNULL(i.budget, -1) "
            f"AND o.sample_idx = i.sample_idx WHERE {differs} LIMIT 1"
        ).fetchone()
        conn.execute("DELETE FROM temp.incoming")
        if row is None:
            return
        index = int(row[0]) - 1
        if batch.line_of is not None and 0 <= index < len(batch.outcomes):
            where = f"{where.rstrip(': ')}:{batch.line_of(index)}: "
        pairs = row[6:]
        field_name, stored, new = next(
            (c, pairs[2 * k], pairs[2 * k + 1])
            for k, c in enumerate(compared)
            if pairs[2 * k] != pairs[2 * k + 1]
        )
        budget = "none" if row[4] is None else row[4]
        raise StoreError(
            f"{where}run {row[1]!r}, problem {row[2]!r}, mode {row[3]!r}, budget {budget}, "
            f"sample {row[5]} is already stored with {field_name}={_short(stored)}, this file "
            f"has {_short(new)}. To replace the stored run(s) with this file, re-run with "
            "--replace; to keep both, import it under another --run label"
        )

    @staticmethod
    def _write_chains(conn: sqlite3.Connection, chains: pd.DataFrame, where: str) -> None:
        """A recorded sweep's chains; one already stored must be the same chain."""
        names = ", ".join(CHAIN_COLUMNS)
        before = conn.total_changes
        conn.executemany(
            f"INSERT INTO chains ({names}) VALUES ({', '.join('?' for _ in CHAIN_COLUMNS)}) "
            "ON CONFLICT DO NOTHING",
            _rows(chains, CHAIN_COLUMNS),
        )
        if conn.total_changes - before == len(chains):
            return
        for row in _rows(chains, CHAIN_COLUMNS):
            stored = conn.execute(
                f"SELECT {names} FROM chains WHERE chain_id = ?", (row[0],)
            ).fetchone()
            if stored is not None and tuple(stored) != row:
                raise StoreError(
                    f"{where}chain {row[0]!r} is already stored with other contents; "
                    "import into a fresh store"
                )

    @staticmethod
    def _check_runs(conn: sqlite3.Connection, batch: ImportBatch, where: str = "") -> None:
        """A run already stored with another model or budget kind is a conflict, not a no-op.

        Otherwise re-importing with a corrected `--budget-kind` would silently keep the old one.
        """
        for run in batch.runs:
            row = conn.execute(
                "SELECT model, budget_kind FROM runs WHERE run_id = ?", (run.run_id,)
            ).fetchone()
            if row is not None and tuple(row) != (run.model, run.budget_kind):
                raise StoreError(
                    f"{where}run {run.run_id!r} is already stored with model={row[0]!r}, "
                    f"budget_kind={row[1]!r}; this import says model={run.model!r}, "
                    f"budget_kind={run.budget_kind!r}. Replace it with --replace, import it "
                    "under another name (--run), or into a fresh store"
                )

    def stored_runs(self, run_ids: Collection[str]) -> dict[str, tuple[str, str]]:
        """Which of `run_ids` are stored, with their (model, budget_kind): a check before
        writing, so a conflict is reported before anything is written."""
        found: dict[str, tuple[str, str]] = {}
        ids = sorted(set(run_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = self._read(
                "SELECT run_id, model, budget_kind FROM runs WHERE run_id IN "
                f"({', '.join('?' for _ in chunk)})",
                chunk,
            )
            found.update({str(r[0]): (str(r[1]), str(r[2])) for r in rows})
        return found

    def past_imports(self, sha256: str) -> list[PastImport]:
        """Earlier imports of a source with this content (oldest first)."""
        rows = self._read(
            "SELECT path, sha256, preset, options_json, runs_json, rows_read FROM imports "
            "WHERE sha256 = ? ORDER BY import_id",
            [sha256],
        )
        return [self._past(r) for r in rows]

    def past_imports_at(self, paths: Sequence[str]) -> list[PastImport]:
        """Earlier imports recorded under any of these paths (oldest first)."""
        rows = self._read(
            "SELECT path, sha256, preset, options_json, runs_json, rows_read FROM imports "
            f"WHERE path IN ({', '.join('?' for _ in paths)}) ORDER BY import_id",
            list(paths),
        )
        return [self._past(r) for r in rows]

    @staticmethod
    def _past(r: Sequence[Any]) -> PastImport:
        return PastImport(
            path=str(r[0]),
            sha256=str(r[1]),
            preset=str(r[2]),
            options=json.loads(r[3] or "{}"),
            runs=list(json.loads(r[4] or "[]")),
            rows_read=int(r[5]),
        )

    def problem_ids(self, dataset: str) -> set[str]:
        """The problem ids stored for a dataset."""
        rows = self._read("SELECT problem_id FROM problems WHERE dataset = ?", [dataset])
        return {str(r[0]) for r in rows}

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only SQL query; a damaged file gives a one-line StoreError."""
        return [tuple(r) for r in self._read(sql, params)]

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        """Run a query; a damaged file gives a one-line StoreError, not a traceback."""
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreError(self._unreadable(exc)) from exc

    def _unreadable(self, exc: Exception) -> str:
        return (
            f"{self.path}: cannot read the store ({exc}); it may be damaged: check it with "
            "`sqlite3 FILE 'PRAGMA integrity_check'` and restore it from a backup"
        )

    @staticmethod
    def _count(conn: sqlite3.Connection, table: str) -> int:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    # -- reading -----------------------------------------------------------------------------

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """One read transaction (unless the caller is in one): what it reads from SQLite and
        the segments it lists agree; SQLite errors become one-line errors."""
        own = not self._conn.in_transaction
        try:
            if own:
                self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                if own:
                    self._conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise StoreError(self._unreadable(exc)) from exc

    def counts(self) -> dict[str, int]:
        """Row counts per table, for status lines and tests; ``outcomes`` counts the rows in
        segments too (each once)."""
        with self._snapshot() as conn:
            out = {t: self._count(conn, t) for t in ("runs", "problems", "outcomes", "imports")}
            after = self._compacted_up_to()
            if after:
                compacted = conn.execute(f"SELECT COUNT(*) FROM outcomes WHERE rowid <= {after}")
                out["outcomes"] -= int(compacted.fetchone()[0])
            out["outcomes"] += sum(s.rows for s in self._segments(None))
        return out

    def outcomes_frame(
        self,
        *,
        datasets: Sequence[str] | None = None,
        models: Sequence[str] | None = None,
        include_text: bool = False,
        signals: bool = False,
        experiments: bool = False,
    ) -> pd.DataFrame:
        """The outcome frame (see `ponder.types.OUTCOME_COLUMNS`), optionally filtered;
        `signals` adds the live-sweep columns (chain, rung, answer confidence, stop cost);
        `experiments` adds the claims' experiment rows (run ids `claims/...`)."""
        with self._snapshot() as conn:  # the segments and the rows of one snapshot
            segments = self._segments(datasets)
            frame = read_outcomes_frame(
                conn,
                datasets=datasets,
                models=models,
                include_text=include_text,
                signals=signals,
                experiments=experiments,
                after_rowid=self._compacted_up_to(),
            )
            if segments:
                frame = self._with_segment_rows(frame, segments, models, experiments)
        return frame

    def outcome_counts(
        self, keys: Sequence[str], *, experiments: bool = True
    ) -> list[tuple[Any, ...]]:
        """Outcome rows per distinct value of ``keys`` (columns of ``outcomes``), the rows in
        SQLite and in segments together: ``(*key, count)`` tuples, in no set order. Without
        ``experiments``, the claims' experiment rows are left out (as the outcome frame)."""
        unknown = [k for k in keys if k not in OUTCOME_STORE_COLUMNS]
        if not keys or unknown:
            raise ValueError(f"outcome_counts: not outcome columns: {unknown or keys}")
        names = ", ".join(keys)
        with self._snapshot() as conn:
            after = self._compacted_up_to()
            conditions = [f"rowid > {after}"] if after else []
            if not experiments:
                conditions.append(f"run_id NOT LIKE '{EXPERIMENT_RUN_PREFIX}%'")
            where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
            rows = conn.execute(
                f"SELECT {names}, COUNT(*) FROM outcomes{where} GROUP BY {names}"
            ).fetchall()
            segments = self._segments(None)
        if not segments:
            return [tuple(r) for r in rows]
        from ponder.columnar.catalog import parquet_root
        from ponder.columnar.union import segment_counts

        counts = segment_counts(parquet_root(self.path), segments, keys, experiments)
        for *key, n in rows:
            counts[tuple(key)] += int(n)
        return [(*key, n) for key, n in counts.items()]

    def has_segments(self) -> bool:
        """Whether any Parquet segment is read with the SQLite rows (else every row is in
        SQLite, and the analyses read it in memory)."""
        with self._snapshot():
            return bool(self._segments(None))

    def segment_run_ids(self) -> set[str]:
        """The runs whose rows live in import segments (a bulk import)."""
        from ponder.columnar.catalog import committed

        try:
            if not self._has_table("segments"):
                return set()
            return {r for s in committed(self._conn) if s.origin == "import" for r in s.run_ids}
        except sqlite3.DatabaseError as exc:
            raise StoreError(self._unreadable(exc)) from exc

    def _segments(self, datasets: Sequence[str] | None) -> list[Segment]:
        """The committed Parquet segments (bulk imports, compactions) of ``datasets``."""
        if not self._has_table("segments"):
            return []
        from ponder.columnar.compaction import readable_segments

        return readable_segments(self._conn, datasets)

    def _compacted_up_to(self) -> int:
        """Every SQLite outcome row at or below this rowid is in a compaction segment."""
        if not self._has_table("segments"):
            return 0
        from ponder.columnar.compaction import compacted_up_to

        return compacted_up_to(self._conn)

    def _with_segment_rows(
        self,
        frame: pd.DataFrame,
        segments: list[Segment],
        models: Sequence[str] | None,
        experiments: bool,
    ) -> pd.DataFrame:
        """The frame's SQLite rows after the segments' rows, in the same columns."""
        from ponder.columnar.catalog import parquet_root
        from ponder.columnar.union import segment_frame

        runs = dict(self._conn.execute("SELECT run_id, budget_kind FROM runs").fetchall())
        problems = {
            (d, p): (level, subject)
            for d, p, level, subject in self._conn.execute(
                "SELECT dataset, problem_id, level, subject FROM problems"
            )
        }
        stored = segment_frame(
            parquet_root(self.path),
            segments,
            list(frame.columns),
            runs=runs,
            problems=problems,
            models=models,
            experiments=experiments,
        )
        if frame.empty:
            return stored
        if stored.empty:
            return frame
        both = pd.concat([stored, frame], ignore_index=True)
        for name in both.columns:  # text: str once either part holds a value, as from_records
            if both[name].dtype == object and "str" in (stored[name].dtype, frame[name].dtype):
                both[name] = both[name].astype("str")
        return both

    def problems_frame(self) -> pd.DataFrame:
        """All known problems with their text, gold answer and metadata."""
        rows = self._read(
            f"SELECT {', '.join(PROBLEM_STORE_COLUMNS)} FROM problems ORDER BY dataset, problem_id"
        )
        return pd.DataFrame.from_records(rows, columns=list(PROBLEM_STORE_COLUMNS))

    def chains_frame(self, *, datasets: Sequence[str] | None = None) -> pd.DataFrame:
        """The live sweeps' chains: text, token count, whether the chain ended on its own, and
        per-token entropies (float32 arrays, or None where not recorded)."""
        from ponder.sweep.rows import blob_entropies

        if not self._has_table("chains"):
            return pd.DataFrame(columns=list(CHAIN_COLUMNS))
        sql = f"SELECT {', '.join(CHAIN_COLUMNS)} FROM chains"
        params: list[object] = []
        if datasets:
            sql += f" WHERE dataset IN ({', '.join('?' for _ in datasets)})"
            params.extend(datasets)
        rows = self._read(sql + " ORDER BY chain_id", params)
        frame = pd.DataFrame.from_records(rows, columns=list(CHAIN_COLUMNS))
        frame["entropies"] = pd.Series(
            [blob_entropies(b) for b in frame["entropies"]], index=frame.index, dtype=object
        )
        return frame

    def runs_frame(self) -> pd.DataFrame:
        """All runs with their settings (JSON text)."""
        names = ["run_id", "model", "backend", "source", "budget_kind", "settings_json"]
        names.append("created_at")
        rows = self._read(f"SELECT {', '.join(names)} FROM runs ORDER BY run_id")
        return pd.DataFrame.from_records(rows, columns=names)

    # -- live sweeps -------------------------------------------------------------------------

    def begin_sweep(
        self, sweep_id: str, spec_json: str, runs: Sequence[Run], problems: pd.DataFrame
    ) -> None:
        """Record a sweep (its latest spec), its runs and its problems in one transaction.

        A run already stored with another model or budget kind is a conflict (StoreError)
        and nothing is written.
        """
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO sweeps (sweep_id, spec_json, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (sweep_id) DO UPDATE SET spec_json = excluded.spec_json",
                (sweep_id, spec_json, _now()),
            )
            self._check_runs(conn, ImportBatch(runs=list(runs), outcomes=_NO_OUTCOMES))
            _insert_runs(conn, runs)
            if len(problems):
                conn.executemany(_UPSERT_PROBLEMS, _rows(problems, PROBLEM_STORE_COLUMNS))

    def sweep_items(self, sweep_id: str) -> dict[str, WorkItemState]:
        """Every recorded work item of a sweep (done or errored), by item key."""
        if not self._has_table("work_items"):
            return {}
        rows = self._read(
            "SELECT item_key, status, attempts, error FROM work_items WHERE sweep_id = ?",
            [sweep_id],
        )
        return {str(r[0]): WorkItemState(str(r[1]), int(r[2]), r[3]) for r in rows}

    def write_sweep_item(
        self,
        sweep_id: str,
        item_key: str,
        outcomes: Sequence[Mapping[str, Any]],
        chain: Mapping[str, Any] | None,
        *,
        attempts: int,
    ) -> int:
        """An item's outcome rows, its chain and its 'done' mark in ONE transaction.

        So a crash at any moment leaves either all of the item or none of it; rows whose key
        is already stored are skipped (the outcomes key guards against duplicates). Returns
        the number of outcome rows added.
        """
        columns = ", ".join(SWEEP_OUTCOME_COLUMNS)
        marks = ", ".join("?" for _ in SWEEP_OUTCOME_COLUMNS)
        with self._transaction() as conn:
            before = conn.total_changes
            conn.executemany(
                f"INSERT INTO outcomes ({columns}) VALUES ({marks}) ON CONFLICT DO NOTHING",
                [tuple(row.get(c) for c in SWEEP_OUTCOME_COLUMNS) for row in outcomes],
            )
            added = conn.total_changes - before
            if chain is not None:
                conn.execute(
                    f"INSERT INTO chains ({', '.join(CHAIN_COLUMNS)}) "
                    f"VALUES ({', '.join('?' for _ in CHAIN_COLUMNS)}) ON CONFLICT DO NOTHING",
                    tuple(chain.get(c) for c in CHAIN_COLUMNS),
                )
            self._mark_item(conn, sweep_id, item_key, "done", attempts, None)
        return added

    def record_sweep_error(self, sweep_id: str, item_key: str, error: str, attempts: int) -> None:
        """Mark a work item as failed with its message; it gets no outcome row."""
        with self._transaction() as conn:
            self._mark_item(conn, sweep_id, item_key, "error", attempts, error)

    @staticmethod
    def _mark_item(
        conn: sqlite3.Connection,
        sweep_id: str,
        item_key: str,
        status: str,
        attempts: int,
        error: str | None,
    ) -> None:
        conn.execute(
            "INSERT INTO work_items (sweep_id, item_key, status, attempts, error, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sweep_id, item_key) DO UPDATE SET "
            "status = excluded.status, attempts = work_items.attempts + excluded.attempts, "
            "error = excluded.error, updated_at = excluded.updated_at",
            (sweep_id, item_key, status, attempts, error, _now()),
        )

    def _has_table(self, name: str) -> bool:
        rows = self._read("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [name])
        return bool(rows)


_NO_OUTCOMES = pd.DataFrame(columns=list(OUTCOME_STORE_COLUMNS))
