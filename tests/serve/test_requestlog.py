"""The request log of `ponder serve`, on real SQLite files: every record lands once (from many
threads, across restarts), feedback grades, a locked store never blocks serving and the rows
land once it is free, the migration leaves the rest of the store alone."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ponder.errors import StoreError
from ponder.serve.requestlog import RECORD_COLUMNS, RequestLog, RequestRecord, read_requests
from ponder.store import SCHEMA_VERSION, Store
from ponder.store.schema import MIGRATIONS, REQUEST_COLUMNS, REQUEST_FEEDBACK_COLUMNS


def _record(request_id: str, **kw: Any) -> RequestRecord:
    values: dict[str, Any] = {
        "request_id": request_id,
        "model": "ponder/auto",
        "status": 200,
        "latency_s": 0.25,
        "policy": "auto",
        "config": "think-1024",
        "prompt_tokens": 40,
        "reasoning_tokens": 300,
        "answer_tokens": 12,
        "calls": 1,
        "rungs": 2,
        "answer": "42",
    }
    values.update(kw)
    return RequestRecord(**values)


def _rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_record_fields_are_the_table_columns_without_feedback(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    RequestLog(path).close()
    table = [r[1] for r in _rows(path, "PRAGMA table_info(requests)")]
    assert table == list(REQUEST_COLUMNS)
    assert [*RECORD_COLUMNS, *REQUEST_FEEDBACK_COLUMNS] == list(REQUEST_COLUMNS)
    indexes = {r[1] for r in _rows(path, "PRAGMA index_list(requests)")}
    assert "requests_created_at" in indexes


def test_records_from_many_threads_all_land_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    log = RequestLog(path, flush_s=0.02, batch=256)
    n_threads, per_thread = 4, 2_500

    def serve(thread: int) -> None:
        for i in range(per_thread):
            log.submit(_record(f"t{thread}-{i}", latency_s=i / 1000))

    threads = [threading.Thread(target=serve, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    total, distinct = _rows(path, "SELECT COUNT(*), COUNT(DISTINCT request_id) FROM requests")[0]
    assert (total, distinct) == (10_000, 10_000)
    assert (log.written, log.dropped, log.duplicates, log.pending) == (10_000, 0, 0, 0)
    expected = {f"t{t}-{i}" for t in range(n_threads) for i in range(per_thread)}
    assert {r[0] for r in _rows(path, "SELECT request_id FROM requests")} == expected


def test_a_full_batch_is_written_without_waiting_for_the_timer(tmp_path: Path) -> None:
    with RequestLog(tmp_path / "s.sqlite", flush_s=60.0, batch=10) as log:
        for i in range(10):
            log.submit(_record(f"r{i}"))
        assert _wait_until(lambda: log.written == 10)


def test_a_partial_batch_is_written_after_flush_s(tmp_path: Path) -> None:
    with RequestLog(tmp_path / "s.sqlite", flush_s=0.05, batch=1_000) as log:
        for i in range(3):
            log.submit(_record(f"r{i}"))
        assert _wait_until(lambda: log.written == 3)


def test_a_repeated_request_id_keeps_its_first_row(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with RequestLog(path) as log:
        log.submit(_record("same", answer="first"))
        log.submit(_record("same", answer="second"))
        log.submit(_record("other"))
        log.flush()
        assert (log.written, log.duplicates) == (2, 1)
    assert _rows(path, "SELECT answer FROM requests WHERE request_id = 'same'") == [("first",)]


def test_feedback_grades_against_gold_and_an_explicit_verdict_wins(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with RequestLog(path, flush_s=60.0) as log:
        log.submit(_record("a", answer="18.0"))
        log.submit(_record("b", answer="17"))
        log.submit(_record("c", answer="18"))
        log.submit(_record("d", answer=None, status=502, error="upstream down"))
        # Still buffered (flush_s is a minute): feedback must find them all the same.
        assert log.feedback("a", gold="18") is True
        assert log.feedback("b", gold="18") is True
        assert log.feedback("c", gold="18", correct=False) is True
        assert log.feedback("d", gold="18") is True
        assert log.feedback("nope", gold="18") is False
        with pytest.raises(ValueError, match="gold"):
            log.feedback("a")
    rows = _rows(path, "SELECT request_id, gold, correct, feedback_at FROM requests ORDER BY 1")
    got = {r[0]: (r[1], r[2]) for r in rows}
    assert got == {"a": ("18", 1), "b": ("18", 0), "c": ("18", 0), "d": ("18", None)}
    assert all(r[3] is not None for r in rows)


def test_a_verdict_alone_keeps_the_gold_given_earlier(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with RequestLog(path) as log:
        log.submit(_record("a", answer="x^2"))
        assert log.feedback("a", gold="x^2")
        assert log.feedback("a", correct=False)
    assert _rows(path, "SELECT gold, correct FROM requests") == [("x^2", 0)]


def test_a_restarted_log_sees_the_old_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with RequestLog(path) as log:
        for i in range(3):
            log.submit(_record(f"r{i}"))
    with RequestLog(path) as log:
        assert list(read_requests(path)["request_id"]) == ["r0", "r1", "r2"]
        assert log.feedback("r1", correct=True)  # an id logged before the restart
        log.submit(_record("r0"))  # a retry of an old id
        log.submit(_record("r3"))
        log.flush()
        assert (log.written, log.duplicates) == (1, 1)
    frame = read_requests(path)
    assert list(frame["request_id"]) == ["r0", "r1", "r2", "r3"]
    assert frame["correct"].isna().tolist() == [True, False, True, True]
    assert bool(frame["correct"].iloc[1]) is True


def _version_3_store(path: Path) -> None:
    """A store as the previous release wrote it, with one outcome, one import and one sweep."""
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0] + MIGRATIONS[1] + MIGRATIONS[2])
    conn.execute("INSERT INTO meta VALUES ('schema_version', '3')")
    conn.execute("INSERT INTO runs VALUES ('r', 'm', 'recorded', 's', 'none', '{}', '2026-01-01')")
    conn.execute("INSERT INTO problems (dataset, problem_id, gold) VALUES ('d', 'p', '7')")
    conn.execute(
        "INSERT INTO outcomes (run_id, dataset, problem_id, model, mode, sample_idx, correct) "
        "VALUES ('r', 'd', 'p', 'm', 'default', 0, 1)"
    )
    conn.execute(
        "INSERT INTO imports (path, sha256, preset, rows_read, rows_added, imported_at) "
        "VALUES ('f.csv', 'abc', 'mapped', 1, 1, '2026-01-01')"
    )
    conn.execute("INSERT INTO sweeps VALUES ('sw', '{}', '2026-01-01')")
    conn.commit()
    conn.close()


def _other_tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    names = [
        r[0]
        for r in _rows(path, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")
        if r[0] not in ("requests", "explorations", "segments", "meta")
    ]
    return {name: _rows(path, f"SELECT * FROM {name} ORDER BY 1") for name in names}


def test_the_log_migrates_an_older_store_and_leaves_its_tables_alone(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    _version_3_store(path)
    before = _other_tables(path)
    assert "requests" not in {r[0] for r in _rows(path, "SELECT name FROM sqlite_master")}
    with RequestLog(path) as log:
        log.submit(_record("r0"))
    assert _other_tables(path) == before
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
        assert store.counts() == {"runs": 1, "problems": 1, "outcomes": 1, "imports": 1}
        assert len(store.outcomes_frame()) == 1
    with Store(path, readonly=True) as store:
        assert store.query("SELECT request_id FROM requests") == [("r0",)]


def test_a_locked_store_never_blocks_submit_and_rows_land_once_free(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    log = RequestLog(path, flush_s=0.02, batch=50, busy_timeout_s=0.05)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another process writing (or a stalled disk)
    try:
        slowest = 0.0
        for i in range(500):
            start = time.perf_counter()
            log.submit(_record(f"r{i}"))
            slowest = max(slowest, time.perf_counter() - start)
        assert _wait_until(lambda: log.last_error is not None)
        assert "locked" in str(log.last_error)
        assert log.written == 0
        assert log.pending == 500
        with pytest.raises(StoreError, match="kept for the next attempt"):
            log.flush()
        assert log.pending == 500
        # The writer thread is stuck on the lock, retrying; serving goes on at memory speed.
        assert slowest < 0.1
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    assert _wait_until(lambda: log.written == 500)  # the thread recovered on its own
    log.close()
    assert _rows(path, "SELECT COUNT(*), COUNT(DISTINCT request_id) FROM requests") == [(500, 500)]
    assert log.duplicates == 0


def test_beyond_max_pending_new_records_are_dropped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    log = RequestLog(path, flush_s=0.02, max_pending=100, busy_timeout_s=0.05)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        for i in range(150):
            log.submit(_record(f"r{i:03d}"))
        assert (log.pending, log.dropped) == (100, 50)
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    log.close()
    stored = [r[0] for r in _rows(path, "SELECT request_id FROM requests ORDER BY 1")]
    assert stored == [f"r{i:03d}" for i in range(100)]  # the oldest are kept


def test_a_row_the_table_refuses_is_left_out_and_the_rest_lands(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    bad = _record("bad", decision_json={"not": "text"})  # SQLite cannot bind a dict
    with RequestLog(path) as log:
        log.submit(_record("a"))
        log.submit(bad)
        log.submit(_record("b"))
        log.flush()
        assert (log.written, log.rejected, log.pending) == (2, 1, 0)
        assert log.last_error is not None
    assert _rows(path, "SELECT request_id FROM requests ORDER BY 1") == [("a",), ("b",)]


def test_records_outside_the_table_bounds_fail_where_they_are_made() -> None:
    with pytest.raises(ValueError, match="status"):
        _record("a", status=0)
    with pytest.raises(ValueError, match="reasoning_tokens"):
        _record("a", reasoning_tokens=-1)
    with pytest.raises(ValueError, match="latency_s"):
        _record("a", latency_s=float("nan"))


def test_close_is_idempotent_and_later_records_are_counted_as_dropped(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    log = RequestLog(path)
    log.submit(_record("a"))
    log.close()
    log.close()
    log.submit(_record("b"))
    assert (log.written, log.dropped) == (1, 1)
    with pytest.raises(StoreError, match="closed"):
        log.feedback("a", correct=True)


def test_read_requests_filters_by_time_and_model_with_typed_columns(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with RequestLog(path) as log:
        log.submit(_record("old", created_at="2026-01-01T09:00:00.000+00:00"))
        log.submit(
            _record(
                "new",
                created_at="2026-01-02T09:00:00.000+00:00",
                model="upstream-model",
                stream=True,
                reasoning_tokens=None,
            )
        )
        log.submit(_record("newest", created_at="2026-01-03T09:00:00.000+00:00", escalated=True))
    frame = read_requests(path)
    assert list(frame.columns) == list(REQUEST_COLUMNS)
    assert list(frame["request_id"]) == ["old", "new", "newest"]
    assert frame["stream"].tolist() == [False, True, False]
    assert frame["escalated"].tolist() == [False, False, True]
    assert frame["reasoning_tokens"].isna().tolist() == [False, True, False]
    assert frame["correct"].isna().all()
    assert list(read_requests(path, since="2026-01-02")["request_id"]) == ["new", "newest"]
    # 10:00 in UTC+2 is 08:00 UTC: before the 09:00 UTC row of that day.
    assert list(read_requests(path, since="2026-01-02T10:00:00+02:00")["request_id"]) == [
        "new",
        "newest",
    ]
    assert list(read_requests(path, model="upstream-model")["request_id"]) == ["new"]
    assert len(read_requests(path, since="2026-01-04", model="ponder/auto")) == 0
    with pytest.raises(ValueError, match="ISO 8601"):
        read_requests(path, since="yesterday")
