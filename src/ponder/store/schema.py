"""The outcome store's schema: a version number and append-only migrations.

Never edit a migration that has shipped: add a new one. A migration runs statement by
statement (`statements`: split at the semicolons that end a complete statement, so a trigger's
body keeps its own). `MIGRATIONS[i]` moves a store from schema version i to i + 1.
"""

from __future__ import annotations

import sqlite3

from ponder.types import PROBLEM_FIELDS


def statements(script: str) -> list[str]:
    """A migration's statements, each whole: split at the semicolons that end a complete
    statement (``sqlite3.complete_statement``), so a trigger's body keeps its own."""
    out: list[str] = []
    current = ""
    for piece in str.split(script, ";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            out.append(current.strip().removesuffix(";").strip())
            current = ""
    out.append(current.strip().removesuffix(";").strip())
    return [s for s in out if s]


MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: the outcome matrix.
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE runs (
        run_id        TEXT PRIMARY KEY,
        model         TEXT NOT NULL,
        backend       TEXT NOT NULL,
        source        TEXT NOT NULL,
        budget_kind   TEXT NOT NULL,
        settings_json TEXT NOT NULL DEFAULT '{}',
        created_at    TEXT NOT NULL
    );
    CREATE TABLE problems (
        dataset       TEXT NOT NULL,
        problem_id    TEXT NOT NULL,
        text          TEXT,
        gold          TEXT,
        level         INTEGER,
        subject       TEXT,
        metadata_json TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (dataset, problem_id)
    );
    CREATE TABLE outcomes (
        run_id           TEXT NOT NULL REFERENCES runs (run_id),
        dataset          TEXT NOT NULL,
        problem_id       TEXT NOT NULL,
        model            TEXT NOT NULL,
        mode             TEXT NOT NULL,
        budget           INTEGER,
        sample_idx       INTEGER NOT NULL,
        prompt_tokens    INTEGER,
        reasoning_tokens INTEGER,
        answer_tokens    INTEGER,
        output_tokens    INTEGER,
        latency_s        REAL,
        truncated        INTEGER,
        answered         INTEGER,
        extracted_answer TEXT,
        correct          REAL NOT NULL CHECK (correct >= 0 AND correct <= 1),
        n_runs           INTEGER NOT NULL DEFAULT 1,
        response_text    TEXT,
        extra_json       TEXT,
        FOREIGN KEY (dataset, problem_id) REFERENCES problems (dataset, problem_id)
    );
    -- The idempotency key. A NULL budget (no budget) is keyed as -1.
    CREATE UNIQUE INDEX outcomes_key ON outcomes (
        run_id, dataset, problem_id, model, mode, IFNULL(budget, -1), sample_idx
    );
    CREATE INDEX outcomes_cell ON outcomes (model, dataset, mode, budget);
    CREATE TABLE imports (
        import_id   INTEGER PRIMARY KEY,
        path        TEXT NOT NULL,
        sha256      TEXT NOT NULL,
        preset      TEXT NOT NULL,
        rows_read   INTEGER NOT NULL,
        rows_added  INTEGER NOT NULL,
        imported_at TEXT NOT NULL
    );
    """,
    # 1 -> 2: what each import was (its options and the runs it wrote), so a re-import of the
    # same source (same sha256) under other options is caught instead of silently duplicated.
    """
    ALTER TABLE imports ADD COLUMN options_json TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE imports ADD COLUMN runs_json TEXT NOT NULL DEFAULT '[]';
    CREATE INDEX imports_sha256 ON imports (sha256);
    """,
    # 2 -> 3: live sweeps. Which rows come from one chain and what stopping at each rung of a
    # probe ladder costs (imported rows leave these NULL), the sweeps and their work items
    # (resume), and the chains themselves with optional per-token entropies (float16 LE).
    """
    ALTER TABLE outcomes ADD COLUMN chain_id TEXT;
    ALTER TABLE outcomes ADD COLUMN rung INTEGER;
    ALTER TABLE outcomes ADD COLUMN natural INTEGER;
    ALTER TABLE outcomes ADD COLUMN answer_prob REAL;
    ALTER TABLE outcomes ADD COLUMN entropy_tail REAL;
    ALTER TABLE outcomes ADD COLUMN stop_cost_tokens INTEGER;
    CREATE INDEX outcomes_chain ON outcomes (chain_id) WHERE chain_id IS NOT NULL;
    CREATE TABLE sweeps (
        sweep_id   TEXT PRIMARY KEY,
        spec_json  TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE work_items (
        sweep_id   TEXT NOT NULL REFERENCES sweeps (sweep_id),
        item_key   TEXT NOT NULL,
        status     TEXT NOT NULL CHECK (status IN ('done', 'error')),
        attempts   INTEGER NOT NULL DEFAULT 0,
        error      TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (sweep_id, item_key)
    );
    CREATE TABLE chains (
        chain_id   TEXT PRIMARY KEY,
        run_id     TEXT NOT NULL REFERENCES runs (run_id),
        dataset    TEXT NOT NULL,
        problem_id TEXT NOT NULL,
        sample_idx INTEGER NOT NULL,
        text       TEXT,
        tokens     INTEGER NOT NULL,
        finished   INTEGER NOT NULL,
        entropies  BLOB
    );
    """,
    # 3 -> 4: the request log of `ponder serve` (one row per served request; see
    # `ponder.serve.requestlog`). Token counts are NULL when the upstream did not report them.
    # gold, correct and feedback_at are filled later by the caller's feedback. A rowid table
    # (not WITHOUT ROWID): rows may carry a long prompt_text, and inserts append in time order.
    """
    CREATE TABLE requests (
        request_id       TEXT NOT NULL PRIMARY KEY,
        created_at       TEXT NOT NULL,
        key_name         TEXT,
        model            TEXT NOT NULL,
        policy           TEXT,
        decision_json    TEXT,
        config           TEXT,
        status           INTEGER NOT NULL CHECK (status BETWEEN 100 AND 599),
        stream           INTEGER NOT NULL DEFAULT 0 CHECK (stream IN (0, 1)),
        prompt_tokens    INTEGER CHECK (prompt_tokens >= 0),
        reasoning_tokens INTEGER CHECK (reasoning_tokens >= 0),
        answer_tokens    INTEGER CHECK (answer_tokens >= 0),
        probe_tokens     INTEGER CHECK (probe_tokens >= 0),
        calls            INTEGER NOT NULL DEFAULT 0 CHECK (calls >= 0),
        rungs            INTEGER NOT NULL DEFAULT 0 CHECK (rungs >= 0),
        escalated        INTEGER NOT NULL DEFAULT 0 CHECK (escalated IN (0, 1)),
        early_exit       INTEGER NOT NULL DEFAULT 0 CHECK (early_exit IN (0, 1)),
        latency_s        REAL NOT NULL CHECK (latency_s >= 0),
        answer           TEXT,
        prompt_sha256    TEXT,
        prompt_text      TEXT,
        error            TEXT,
        gold             TEXT,
        correct          INTEGER CHECK (correct IN (0, 1)),
        feedback_at      TEXT
    );
    CREATE INDEX requests_created_at ON requests (created_at);
    """,
    # 4 -> 5: explored requests of `ponder serve --explore` (see `ponder.serve.explore`): every
    # configuration of the plan run in full, as the sweep's outcome rows (JSON), for
    # `ponder recalibrate`. Apart from `requests`, which gets the row at reply time.
    """
    CREATE TABLE explorations (
        request_id TEXT NOT NULL PRIMARY KEY,
        policy     TEXT NOT NULL,
        created_at TEXT NOT NULL,
        tokens     INTEGER NOT NULL CHECK (tokens >= 0),
        payload    TEXT NOT NULL
    );
    """,
    # 5 -> 6: the Parquet segments that hold bulk outcome rows (`ponder.columnar.catalog`,
    # docs/design/0009-columnar-analysis.md). `path` is relative to the store's Parquet root
    # (`<store>.parquet/`): a file there exists for readers only once its row here is
    # committed. `run_ids` is a JSON list. A compaction copies the outcome rows whose rowid is
    # in [rowid_first, rowid_last]; an import's rows are not in `outcomes` (both NULL).
    """
    CREATE TABLE segments (
        path        TEXT NOT NULL PRIMARY KEY,
        segment_id  TEXT NOT NULL,
        dataset     TEXT NOT NULL,
        rows        INTEGER NOT NULL CHECK (rows > 0),
        bytes       INTEGER NOT NULL CHECK (bytes > 0),
        sha256      TEXT NOT NULL,
        run_ids     TEXT NOT NULL DEFAULT '[]',
        origin      TEXT NOT NULL CHECK (origin IN ('import', 'compaction')),
        rowid_first INTEGER,
        rowid_last  INTEGER,
        created_at  TEXT NOT NULL,
        CHECK ((origin = 'compaction') = (rowid_first IS NOT NULL AND rowid_last IS NOT NULL)),
        CHECK (rowid_first IS NULL OR rowid_first <= rowid_last)
    );
    """,
    # 6 -> 7: deletes of compacted outcome rows (a `--replace`) are counted in `meta`
    # (`outcome_deletes`). Their copies stay in the compaction segments, and SQLite hands the
    # highest rowids out again, so the watermark no longer says which rows the segments hold:
    # while the count is above 0 readers ignore the compaction segments and the next
    # compaction rebuilds them (`ponder.columnar.compaction`). Counted for rows at or below the
    # watermark, and for any row while a compaction holds its lease (its range is not listed
    # yet). A store compacted before this migration may have lost rows uncounted: it is
    # rebuilt once.
    """
    CREATE INDEX segments_compacted ON segments (rowid_last) WHERE origin = 'compaction';
    CREATE TRIGGER outcomes_deleted AFTER DELETE ON outcomes
    WHEN OLD.rowid <= (SELECT MAX(rowid_last) FROM segments WHERE origin = 'compaction')
        OR EXISTS (SELECT 1 FROM meta WHERE key = 'compaction_lease')
    BEGIN
        INSERT INTO meta (key, value) VALUES ('outcome_deletes', '1')
        ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1;
    END;
    INSERT INTO meta (key, value)
    SELECT 'outcome_deletes', '1' FROM segments WHERE origin = 'compaction' LIMIT 1;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)

OUTCOME_STORE_COLUMNS: tuple[str, ...] = (
    "run_id",
    "dataset",
    "problem_id",
    "model",
    "mode",
    "budget",
    "sample_idx",
    "prompt_tokens",
    "reasoning_tokens",
    "answer_tokens",
    "output_tokens",
    "latency_s",
    "truncated",
    "answered",
    "extracted_answer",
    "correct",
    "n_runs",
    "response_text",
    "extra_json",
)

# Per-rung signals of live sweeps (migration 3), NULL for imported rows; read with
# `Store.outcomes_frame(signals=True)`. Not part of OUTCOME_STORE_COLUMNS, whose frame and
# importers stay as they were.
SIGNAL_COLUMNS: tuple[str, ...] = (
    "chain_id",
    "rung",
    "natural",
    "answer_prob",
    "entropy_tail",
    "stop_cost_tokens",
)

# The request log of `ponder serve` (migration 4), in table order. The last three are written by
# feedback, the others once per request.
REQUEST_COLUMNS: tuple[str, ...] = (
    "request_id",
    "created_at",
    "key_name",
    "model",
    "policy",
    "decision_json",
    "config",
    "status",
    "stream",
    "prompt_tokens",
    "reasoning_tokens",
    "answer_tokens",
    "probe_tokens",
    "calls",
    "rungs",
    "escalated",
    "early_exit",
    "latency_s",
    "answer",
    "prompt_sha256",
    "prompt_text",
    "error",
    "gold",
    "correct",
    "feedback_at",
)
REQUEST_FEEDBACK_COLUMNS: tuple[str, ...] = ("gold", "correct", "feedback_at")

# The problems table has exactly the fields of a problem record (see `ponder.types`).
PROBLEM_STORE_COLUMNS: tuple[str, ...] = PROBLEM_FIELDS
