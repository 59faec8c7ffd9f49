"""The outcome matrix in SQLite: transactional, idempotent by key, versioned schema.

Every analysis reads this store; nothing downstream talks to a model. You can query the file
with any SQLite client: `sqlite3 ponder.sqlite 'select model, avg(correct) from outcomes
group by model'`.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd

from ponder.errors import StoreError
from ponder.store.batch import ImportBatch
from ponder.store.schema import (
    MIGRATIONS,
    OUTCOME_STORE_COLUMNS,
    PROBLEM_STORE_COLUMNS,
    SCHEMA_VERSION,
)

_FLOAT_COLUMNS = (
    "budget",
    "prompt_tokens",
    "reasoning_tokens",
    "answer_tokens",
    "output_tokens",
    "latency_s",
    "truncated",
    "answered",
    "correct",
    "level",
)


@dataclass(frozen=True)
class WriteResult:
    """What one transactional write added (re-writing the same rows adds nothing)."""

    outcomes_read: int
    outcomes_added: int
    problems_added: int
    runs_added: int

    @property
    def outcomes_skipped(self) -> int:
        return self.outcomes_read - self.outcomes_added


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _column_values(column: pd.Series) -> list[Any]:
    """One column as plain Python values (int, float, str) with NaN / NA as None."""
    values = column.to_numpy(dtype=object, copy=True)
    missing = column.isna().to_numpy()
    if missing.any():
        values[missing] = None
    out: list[Any] = values.tolist()
    return out


def _rows(frame: pd.DataFrame, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """Rows as plain Python tuples with NaN/NA as None, which sqlite3 stores as NULL.

    Converted column by column (not value by value): this is most of an import's Python time.
    """
    return zip(*(_column_values(frame[c]) for c in columns), strict=True)


class Store:
    """An outcome store at `path` (created on first write unless `create=False`)."""

    def __init__(self, path: str | Path, *, create: bool = True, readonly: bool = False) -> None:
        """Open (and migrate) a store; `readonly` opens it for reading only, so analyses work
        on a store they may not write (a shared or read-only copy) and never change it."""
        self.path = Path(path)
        self.readonly = readonly
        if not self.path.exists():
            if not create or readonly:
                raise StoreError(
                    f"no store at {self.path}: import data first (`ponder import PATH`) "
                    "or point --store / PONDER_STORE at an existing store"
                )
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif self.path.is_dir():
            raise StoreError(f"{self.path} is a folder, not a store file")
        try:
            if readonly:
                self._conn = self._connect_readonly()
                self._check_readable_version()
            else:
                self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
                self._conn.execute("PRAGMA foreign_keys = ON")
                self._migrate()
                self._conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a readable ponder store: {exc}") from exc

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

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self.readonly:
            raise StoreError(f"{self.path}: cannot write a store opened read-only")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreError(
                f"{self.path}: cannot write ({exc}); is another import running?"
            ) from exc
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        try:
            self._conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            self._conn.execute("ROLLBACK")
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
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step].split(";"):
                    if statement.strip():
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
        """Write a batch in one transaction; rows whose key is already stored are skipped.

        Problems are upserted field by field: a later import may fill a text, gold or level
        that an earlier one lacked, but never overwrites a known value.
        """
        with self._transaction() as conn:
            self._check_runs(conn, batch)
            before = conn.total_changes
            conn.executemany(
                "INSERT INTO runs (run_id, model, backend, source, budget_kind, "
                "settings_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                [
                    (
                        r.run_id,
                        r.model,
                        r.backend,
                        r.source,
                        r.budget_kind,
                        r.settings_json(),
                        _now(),
                    )
                    for r in batch.runs
                ],
            )
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
            conn.executemany(
                "INSERT INTO problems (dataset, problem_id, text, gold, level, subject, "
                "metadata_json) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (dataset, problem_id) DO UPDATE SET "
                "text = COALESCE(problems.text, excluded.text), "
                "gold = COALESCE(problems.gold, excluded.gold), "
                "level = COALESCE(problems.level, excluded.level), "
                "subject = COALESCE(problems.subject, excluded.subject), "
                "metadata_json = CASE WHEN problems.metadata_json = '{}' "
                "THEN excluded.metadata_json ELSE problems.metadata_json END",
                _rows(problems, PROBLEM_STORE_COLUMNS),
            )
            problems_added = self._count(conn, "problems") - n_before

            placeholders = ", ".join("?" for _ in OUTCOME_STORE_COLUMNS)
            before = conn.total_changes
            conn.executemany(
                # Not OR IGNORE: that would also drop rows failing CHECK / NOT NULL.
                f"INSERT INTO outcomes ({', '.join(OUTCOME_STORE_COLUMNS)}) "
                f"VALUES ({placeholders}) ON CONFLICT DO NOTHING",
                _rows(batch.outcomes, OUTCOME_STORE_COLUMNS),
            )
            outcomes_added = conn.total_changes - before
            if source_path is not None:
                conn.execute(
                    "INSERT INTO imports (path, sha256, preset, rows_read, rows_added, "
                    "imported_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        source_path,
                        sha256 or "",
                        preset,
                        len(batch.outcomes),
                        outcomes_added,
                        _now(),
                    ),
                )
        return WriteResult(
            outcomes_read=len(batch.outcomes),
            outcomes_added=outcomes_added,
            problems_added=problems_added,
            runs_added=runs_added,
        )

    @staticmethod
    def _check_runs(conn: sqlite3.Connection, batch: ImportBatch) -> None:
        """A run already stored with another model or budget kind is a conflict, not a no-op.

        Otherwise re-importing with a corrected `--budget-kind` would silently keep the old one.
        """
        for run in batch.runs:
            row = conn.execute(
                "SELECT model, budget_kind FROM runs WHERE run_id = ?", (run.run_id,)
            ).fetchone()
            if row is not None and tuple(row) != (run.model, run.budget_kind):
                raise StoreError(
                    f"run {run.run_id!r} is already stored with model={row[0]!r}, "
                    f"budget_kind={row[1]!r}; this import says model={run.model!r}, "
                    f"budget_kind={run.budget_kind!r}. Import it under another name (--run) "
                    "or into a fresh store"
                )

    @staticmethod
    def _count(conn: sqlite3.Connection, table: str) -> int:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    # -- reading -----------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Row counts per table, for status lines and tests."""
        return {t: self._count(self._conn, t) for t in ("runs", "problems", "outcomes", "imports")}

    def outcomes_frame(
        self,
        *,
        datasets: Sequence[str] | None = None,
        models: Sequence[str] | None = None,
        include_text: bool = False,
    ) -> pd.DataFrame:
        """The outcome frame (see `ponder.types.OUTCOME_COLUMNS`), optionally filtered."""
        text = ", o.response_text" if include_text else ""
        sql = (
            "SELECT o.run_id, o.dataset, o.problem_id, o.model, o.mode, o.budget, "
            "o.sample_idx, o.prompt_tokens, o.reasoning_tokens, o.answer_tokens, "
            "o.output_tokens, o.latency_s, o.truncated, o.answered, o.extracted_answer, "
            f"o.correct, o.n_runs, r.budget_kind, p.level, p.subject{text} "
            "FROM outcomes o JOIN runs r ON r.run_id = o.run_id "
            "LEFT JOIN problems p ON p.dataset = o.dataset AND p.problem_id = o.problem_id"
        )
        where: list[str] = []
        params: list[str] = []
        for column, values in (("o.dataset", datasets), ("o.model", models)):
            if values:
                where.append(f"{column} IN ({', '.join('?' for _ in values)})")
                params.extend(values)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY o.rowid"
        cursor = self._conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        frame = pd.DataFrame.from_records(cursor.fetchall(), columns=names)
        for column in _FLOAT_COLUMNS:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        frame["sample_idx"] = frame["sample_idx"].astype("int64")
        frame["n_runs"] = frame["n_runs"].astype("int64")
        return frame

    def problems_frame(self) -> pd.DataFrame:
        """All known problems with their text, gold answer and metadata."""
        cursor = self._conn.execute(
            f"SELECT {', '.join(PROBLEM_STORE_COLUMNS)} FROM problems ORDER BY dataset, problem_id"
        )
        return pd.DataFrame.from_records(cursor.fetchall(), columns=list(PROBLEM_STORE_COLUMNS))

    def runs_frame(self) -> pd.DataFrame:
        """All runs with their settings (JSON text)."""
        cursor = self._conn.execute(
            "SELECT run_id, model, backend, source, budget_kind, settings_json, created_at "
            "FROM runs ORDER BY run_id"
        )
        names = [d[0] for d in cursor.description]
        return pd.DataFrame.from_records(cursor.fetchall(), columns=names)
