"""The request log of `ponder serve`: one row per served request in the store's `requests` table.

Serving must never wait on the disk, so the event loop only appends a record to an in-memory
buffer and a background thread writes the buffer in batches, one transaction per batch: one
commit per request costs a disk round trip per request (see `benchmarks/bench_requestlog.py`).
Feedback (the caller's gold answer or verdict) arrives later and is written synchronously.
`ponder recalibrate` reads the log back with `read_requests`.

What can be lost, by design:

- while the disk is stalled (store locked, disk full) records wait in memory and are retried;
  beyond `max_pending` waiting records a NEW record is dropped and counted in `dropped`
  (serving never blocks and memory stays bounded; the records already waiting are older and
  just as valuable, and dropping the newest keeps the log a contiguous prefix of the traffic);
- a record the table refuses (a value outside a CHECK constraint) is dropped and counted in
  `rejected`; `RequestRecord` checks the same bounds up front, so this means a bug;
- on power loss, the last batches committed before the next checkpoint (the writer commits with
  `synchronous = NORMAL`, safe against corruption in WAL mode); a crash of the process
  loses only what was still buffered (at most `flush_s` seconds or `batch` records).
"""

from __future__ import annotations

import datetime as dt
import itertools
import operator
import sqlite3
import threading
from collections import deque
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd

from ponder.errors import StoreError
from ponder.store import Store
from ponder.store.schema import REQUEST_COLUMNS, REQUEST_FEEDBACK_COLUMNS


def utc_now() -> str:
    """The current time as the log stores it: ISO 8601 in UTC with milliseconds, so rows sort
    and compare as text (`since` filters are text comparisons on an index)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestRecord:
    """What was served for one request (one row of `requests` without the feedback columns).

    `model` is what the client asked for (`ponder/<policy>` or an upstream model); `config` the
    label of the configuration that answered; token counts are None when the upstream did not
    report them. `prompt_text` is set only when the server is told to store prompts.
    Bounds are checked here, in the caller, so a bad record fails where it was made instead of
    being refused later by the writer thread.
    """

    # In table order (keyword-only, so required fields may follow defaulted ones).
    request_id: str
    created_at: str = field(default_factory=utc_now)
    key_name: str | None = None
    model: str
    policy: str | None = None
    decision_json: str | None = None
    config: str | None = None
    status: int
    stream: bool = False
    prompt_tokens: int | None = None
    reasoning_tokens: int | None = None
    answer_tokens: int | None = None
    probe_tokens: int | None = None
    calls: int = 0
    rungs: int = 0
    escalated: bool = False
    early_exit: bool = False
    latency_s: float
    answer: str | None = None
    prompt_sha256: str | None = None
    prompt_text: str | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if not self.request_id:
            raise ValueError("request_id must not be empty")
        if not 100 <= self.status <= 599:
            raise ValueError(f"status {self.status} is not an HTTP status")
        if not self.latency_s >= 0:  # also refuses NaN
            raise ValueError(f"latency_s {self.latency_s} must be >= 0")
        for name in _COUNT_FIELDS:
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} {value} must be >= 0")


_COUNT_FIELDS = (
    "prompt_tokens",
    "reasoning_tokens",
    "answer_tokens",
    "probe_tokens",
    "calls",
    "rungs",
)
RECORD_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(RequestRecord))
if RECORD_COLUMNS + REQUEST_FEEDBACK_COLUMNS != REQUEST_COLUMNS:
    raise ImportError("RequestRecord and the requests table disagree on their columns")

_ROW = operator.attrgetter(*RECORD_COLUMNS)
# A request id seen twice (a client retry with the same id) keeps its first row. ON CONFLICT
# (not INSERT OR IGNORE, which would also silently skip CHECK and NOT NULL failures) so that
# only duplicates are skipped.
_INSERT = (
    f"INSERT INTO requests ({', '.join(RECORD_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(RECORD_COLUMNS))}) "
    "ON CONFLICT (request_id) DO NOTHING"
)
# Errors that come from the rows themselves (a constraint, a value SQLite cannot bind): retrying
# cannot help, so the batch is written row by row and the bad rows are left out. Every other
# sqlite3.Error (locked, disk full, I/O) is a stalled disk: the batch waits and is retried.
_ROW_ERRORS = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)


class RequestLog:
    """Batched, non-blocking writer: the event loop only appends to a buffer; a background thread
    writes batches in one transaction (every `flush_s` seconds or `batch` records).

    A write error (store locked beyond `busy_timeout_s`, disk full) never stops the thread or the
    server: the batch stays buffered and is retried with a growing pause (up to 2 s or
    `flush_s`), and the error is kept in `last_error`. More than `max_pending` buffered records:
    the new record is dropped and counted in `dropped`. A request id already logged keeps its
    first row; the repeat is counted in `duplicates`.
    """

    def __init__(
        self,
        store_path: Path,
        *,
        flush_s: float = 0.5,
        batch: int = 256,
        max_pending: int = 100_000,
        busy_timeout_s: float = 5.0,
    ) -> None:
        if flush_s <= 0 or batch < 1 or max_pending < 1 or busy_timeout_s < 0:
            raise ValueError("flush_s must be > 0, batch and max_pending >= 1, busy_timeout_s >= 0")
        self.store_path = Path(store_path)
        self.flush_s = flush_s
        self.batch = batch
        self.max_pending = max_pending
        # Creates or migrates the store (and switches it to WAL) the way every command does.
        Store(self.store_path).close()
        self._conn = sqlite3.connect(
            self.store_path,
            isolation_level=None,
            timeout=busy_timeout_s,
            check_same_thread=False,  # used by the writer thread and by flush / feedback
        )
        # In WAL mode NORMAL cannot corrupt the file; it only skips the fsync per commit.
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._pending: deque[RequestRecord] = deque()
        self._cond = threading.Condition()  # guards _pending, _closed, _stopping, _dropped
        self._write_lock = threading.Lock()  # one writer of the connection at a time
        self._closed = False
        self._stopping = False
        self._written = 0
        self._dropped = 0
        self._duplicates = 0
        self._rejected = 0
        self._last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="ponder-request-log", daemon=True)
        self._thread.start()

    # -- counters ----------------------------------------------------------------------------

    @property
    def written(self) -> int:
        """Rows added to the table so far."""
        return self._written

    @property
    def dropped(self) -> int:
        """Records refused because `max_pending` were already waiting (or the log was closed)."""
        return self._dropped

    @property
    def duplicates(self) -> int:
        """Records whose request id was already logged (the first row is kept)."""
        return self._duplicates

    @property
    def rejected(self) -> int:
        """Records the table refused (a constraint or an unstorable value): a bug upstream."""
        return self._rejected

    @property
    def pending(self) -> int:
        """Records waiting to be written."""
        return len(self._pending)

    @property
    def last_error(self) -> str | None:
        """The most recent write error (kept after a later success, for diagnosis)."""
        return self._last_error

    # -- writing -----------------------------------------------------------------------------

    def submit(self, record: RequestRecord) -> None:
        """Queue one record: O(1), thread-safe, never waits on the disk."""
        with self._cond:
            if self._closed or len(self._pending) >= self.max_pending:
                self._dropped += 1
                return
            self._pending.append(record)
            if len(self._pending) == self.batch:
                self._cond.notify()

    def flush(self) -> None:
        """Write everything queued now, in the calling thread (it waits on the disk: call it
        off the event loop). A StoreError if the store cannot be written; nothing is lost."""
        if not self._drain():
            raise StoreError(
                f"{self.store_path}: cannot write the request log ({self._last_error}); "
                f"{self.pending} records are kept for the next attempt"
            )

    def feedback(
        self, request_id: str, *, gold: str | None = None, correct: bool | None = None
    ) -> bool:
        """Record the caller's gold answer and/or verdict for a logged request; False if the id
        is unknown. Synchronous (call it off the event loop).

        With a gold answer and a stored answer, `correct` is graded (`ponder.grading.grade`)
        unless given explicitly. A gold answer for a request without an extracted answer leaves
        `correct` as it was: whether that is a wrong answer or a failed request is the
        caller's call. Repeated feedback overwrites the given fields only.
        """
        if gold is None and correct is None:
            raise ValueError("feedback needs a gold answer, a verdict (correct) or both")
        self.flush()  # a just-served id may still be buffered
        row = self._execute("SELECT answer FROM requests WHERE request_id = ?", (request_id,))
        if row is None:
            return False
        answer = row[0]
        if correct is None and gold is not None and answer is not None:
            from ponder.grading import grade  # sympy-backed: loaded only when grading

            correct = grade(str(answer), gold).match
        self._execute(
            "UPDATE requests SET gold = COALESCE(?, gold), correct = COALESCE(?, correct), "
            "feedback_at = ? WHERE request_id = ?",
            (gold, None if correct is None else int(correct), utc_now(), request_id),
        )
        return True

    def save_exploration(self, request_id: str, policy: str, tokens: int, payload: str) -> None:
        """Store an explored request's outcome rows (one write; explorations are rare).
        Synchronous (call it off the event loop)."""
        self._execute(
            "INSERT INTO explorations (request_id, policy, created_at, tokens, payload) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (request_id) DO NOTHING",
            (request_id, policy, utc_now(), tokens, payload),
        )

    def close(self) -> None:
        """Stop the writer thread and write what is left; idempotent. A StoreError if the last
        records cannot be written (they are lost with the process)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._stopping = True
            self._cond.notify_all()
        self._thread.join()
        try:
            if not self._drain(closing=True):
                raise StoreError(
                    f"{self.store_path}: cannot write the request log ({self._last_error}); "
                    f"{self.pending} records were not logged"
                )
        finally:
            with self._write_lock:
                self._conn.close()

    def __enter__(self) -> RequestLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the writer --------------------------------------------------------------------------

    def _run(self) -> None:
        """Write a batch when one is full or `flush_s` has passed; after a failure, wait longer
        each time (a locked or full disk is not helped by hammering it)."""
        pause = self.flush_s
        failing = False
        while True:
            with self._cond:
                if failing:
                    self._cond.wait_for(lambda: self._stopping, timeout=pause)
                elif not self._stopping and len(self._pending) < self.batch:
                    self._cond.wait(timeout=self.flush_s)
                if self._stopping:
                    return  # close() writes the rest
            try:
                ok = self._drain()
            except Exception as exc:  # a bug here must not end the log (nor the server)
                self._last_error = f"{type(exc).__name__}: {exc}"
                ok = False
            if ok:
                failing, pause = False, self.flush_s
            else:
                pause = min(pause * 2, max(self.flush_s, 2.0)) if failing else self.flush_s
                failing = True

    def _drain(self, *, closing: bool = False) -> bool:
        """Write the buffer batch by batch; False (records kept) at the first write error."""
        with self._write_lock:
            if self._closed and not closing:
                if not self._pending:
                    return True
                self._last_error = "the request log is closed"
                return False
            while True:
                with self._cond:
                    chunk = list(itertools.islice(self._pending, self.batch))
                if not chunk:
                    return True
                rows = [_ROW(r) for r in chunk]
                try:
                    added, rejected = self._insert(rows), 0
                except _ROW_ERRORS as exc:
                    self._last_error = f"{type(exc).__name__}: {exc}"
                    try:
                        added, rejected = self._insert_one_by_one(rows)
                    except sqlite3.Error as retry_exc:
                        self._last_error = f"{type(retry_exc).__name__}: {retry_exc}"
                        return False
                except sqlite3.Error as exc:
                    self._last_error = f"{type(exc).__name__}: {exc}"
                    return False
                with self._cond:
                    for _ in chunk:
                        self._pending.popleft()  # only this (locked) writer removes records
                self._written += added
                self._rejected += rejected
                self._duplicates += len(chunk) - added - rejected

    def _insert(self, rows: Sequence[tuple[Any, ...]]) -> int:
        """One batch in one transaction; the number of rows added."""
        before = self._conn.total_changes
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.executemany(_INSERT, rows)
            self._conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return self._conn.total_changes - before

    def _insert_one_by_one(self, rows: Sequence[tuple[Any, ...]]) -> tuple[int, int]:
        """A batch with bad rows, in one transaction, leaving the bad rows out: (added, rejected).
        A failed statement undoes only itself, so the good rows still commit together."""
        before = self._conn.total_changes
        rejected = 0
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for row in rows:
                try:
                    self._conn.execute(_INSERT, row)
                except _ROW_ERRORS as exc:
                    rejected += 1
                    self._last_error = f"{type(exc).__name__}: {exc}"
            self._conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return self._conn.total_changes - before, rejected

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            # SQLite may have ended it itself (disk full): the first error is the one to keep.
            with suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    def _execute(self, sql: str, params: Sequence[object]) -> tuple[Any, ...] | None:
        """One statement on the writer's connection (autocommit); its first row, if any."""
        with self._write_lock:
            if self._closed:
                raise StoreError(f"{self.store_path}: the request log is closed")
            try:
                row = self._conn.execute(sql, params).fetchone()
            except sqlite3.Error as exc:
                raise StoreError(f"{self.store_path}: cannot use the request log ({exc})") from exc
        return None if row is None else tuple(row)


_BOOL_COLUMNS = ("stream", "escalated", "early_exit")
_NULLABLE_INT_COLUMNS = ("prompt_tokens", "reasoning_tokens", "answer_tokens", "probe_tokens")


def read_requests(
    store_path: Path, *, since: str | None = None, model: str | None = None
) -> pd.DataFrame:
    """The logged requests (the columns of the table, oldest first), read-only.

    `since` is an ISO 8601 time (a date alone, or with a zone; naive means UTC): rows created at
    or after it. `model` keeps the rows for that requested model. Flags are bool, token counts
    nullable integers (None when not reported), `correct` a nullable boolean (NA until feedback).
    """
    where: list[str] = []
    params: list[object] = []
    if since is not None:
        where.append("created_at >= ?")
        params.append(_as_log_time(since))
    if model is not None:
        where.append("model = ?")
        params.append(model)
    sql = f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at, rowid"
    with Store(store_path, readonly=True) as store:
        rows = store.query(sql, params)
    frame = pd.DataFrame.from_records(rows, columns=list(REQUEST_COLUMNS))
    for name in _BOOL_COLUMNS:
        frame[name] = frame[name].astype(bool)
    for name in _NULLABLE_INT_COLUMNS:
        frame[name] = frame[name].astype("Int64")
    for name in ("status", "calls", "rungs"):
        frame[name] = frame[name].astype("int64")
    frame["latency_s"] = frame["latency_s"].astype("float64")
    frame["correct"] = frame["correct"].astype("boolean")
    return frame


def _as_log_time(when: str) -> str:
    """`when` in the stored format, so that the text comparison on created_at is a time one."""
    try:
        moment = dt.datetime.fromisoformat(when)
    except ValueError as exc:
        raise ValueError(f"since={when!r} is not an ISO 8601 time") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds")


__all__ = ["RECORD_COLUMNS", "RequestLog", "RequestRecord", "read_requests", "utc_now"]
