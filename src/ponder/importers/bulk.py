"""Bulk imports: large files in ponder's own columns go to Parquet segments through Arrow.

A file whose columns are ponder's own (what ``ponder export`` writes, or any file named like
the generic importer's fields, with ``correct``) and that is at least ``bulk_bytes()`` long is
read by Arrow's typed readers (``ponder.columnar.arrow_import``, the same rows and one-line
errors as the generic importer) and its rows become segments, listed in the import's one
SQLite transaction; its runs, problems and ``imports`` row go to SQLite as always
(docs/design/0009-columnar-analysis.md). Smaller files, presets and mapped files take the
row-by-row path.

A run's rows live in one place. A bulk file whose run is already stored with rows in SQLite
is imported the row-by-row way (today's per-key rules: identical rows skipped, a changed
value a conflict); a run stored in segments is replaced whole with ``--replace`` and refused
without it (segments are not merged key by key).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ponder.errors import InputError, StoreError
from ponder.importers.presets import detect_columns
from ponder.store.batch import ImportBatch
from ponder.store.schema import OUTCOME_STORE_COLUMNS

if TYPE_CHECKING:
    from ponder.importers import FileImport, ImportPlan
    from ponder.store import Store

# Files from this size on are bulk imports (a million rows is about 100 MB); the environment
# variable PONDER_BULK_IMPORT_BYTES sets another threshold (0: every eligible file).
BULK_BYTES = 32 * 1024 * 1024
_REQUIRED = ("problem_id", "correct")


def bulk_bytes() -> int:
    value = os.environ.get("PONDER_BULK_IMPORT_BYTES")
    try:
        return BULK_BYTES if value is None else max(0, int(value))
    except ValueError:
        return BULK_BYTES


def is_bulk_file(path: Path, options: Mapping[str, object]) -> bool:
    """A large CSV/JSONL in ponder's own columns, imported without a preset or mapping."""
    if options.get("preset") or options.get("mapping"):
        return False
    if path.suffix.lower() not in (".csv", ".jsonl") or not path.is_file():
        return False
    if path.stat().st_size < bulk_bytes():
        return False
    columns = _columns(path)
    return columns is not None and set(_REQUIRED) <= set(columns) and not detect_columns(columns)


def _columns(path: Path) -> list[str] | None:
    """The file's column names from its first line (None when it cannot be read so)."""
    try:
        with path.open("rb") as handle:
            first = handle.readline(1 << 20).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None
    if path.suffix.lower() == ".csv":
        return next(csv.reader(io.StringIO(first)), None)
    try:
        record = json.loads(first)
    except ValueError:
        return None
    return list(record) if isinstance(record, dict) else None


def load_bulk(path: Path, options: Mapping[str, object], root: Path) -> FileImport:
    """Read and validate a bulk file, streaming its rows into pending (unlisted) segment
    files under ``root``; nothing is visible until the import's transaction lists them."""
    from ponder.columnar.arrow_import import write_pending
    from ponder.importers import FileImport, import_options

    budget_kind = str(options.get("budget_kind") or "unspecified")
    read = write_pending(
        path,
        root,
        dataset=_text(options.get("dataset")),
        model=_text(options.get("model")),
        run=_text(options.get("run")),
        budget_kind=budget_kind,
    )
    batch = ImportBatch(
        runs=read.runs,
        outcomes=pd.DataFrame({c: [] for c in OUTCOME_STORE_COLUMNS}),
        problems=read.problems,
        notes=list(read.notes),
        segment_files=read.pending,
    )
    chosen = import_options(
        "mapped",
        {
            "mapping": None,
            "dataset": options.get("dataset"),
            "model": options.get("model"),
            "run": options.get("run"),
            "budget_kind": budget_kind,
        },
    )
    return FileImport(
        path=path,
        preset="mapped",
        batch=batch,
        sha256=read.sha256,
        notes=list(read.notes),
        options=chosen,
    )


def settle_bulk(store: Store, plan: ImportPlan, replace: bool) -> None:
    """Keep each run's rows in one place: a bulk file whose run has rows in SQLite is loaded
    the row-by-row way instead; one whose run lives in segments needs ``--replace``."""
    from ponder.importers import load_file

    in_segments = store.segment_run_ids()
    for index, item in enumerate(plan.items):
        batch = item.batch
        if batch is None or batch.segment_files is None:
            continue
        stored = set(store.stored_runs([r.run_id for r in batch.runs]))
        if not stored or replace:
            continue
        bulk_held = sorted(stored & in_segments)
        if bulk_held:
            raise StoreError(
                f"{item.path}: run {bulk_held[0]!r} is already stored from a bulk import "
                "(Parquet segments), whose rows are not merged key by key: re-run with "
                "--replace to replace the run with this file, or import it under another --run"
            )
        given = item.options
        reloaded = load_file(
            item.path,
            sha256=item.sha256,
            dataset=_text(given.get("dataset")),
            model=_text(given.get("model")),
            run=_text(given.get("run")),
            budget_kind=str(given.get("budget_kind") or "unspecified"),
        )
        reloaded.notes.append("its runs are stored row by row: imported row by row")
        batch.discard_segments()
        plan.items[index] = reloaded


def check_bulk_runs(plan: ImportPlan) -> None:
    """A bulk run's rows come from one file: segments are not merged key by key, so a second
    file with the same run would store its shared keys twice."""
    source: dict[str, Path] = {}
    bulk: set[str] = set()
    for item in plan.items:
        if item.batch is None:
            continue
        if item.batch.segment_files is not None:
            bulk |= {r.run_id for r in item.batch.runs}
        for run in item.batch.runs:
            first = source.setdefault(run.run_id, item.path)
            if first != item.path and run.run_id in bulk:
                raise InputError(
                    f"run {run.run_id!r} comes from {first} and from this file, and one of them "
                    "is a bulk import (its rows are not merged key by key): import them in "
                    "one file, or give them other --run labels",
                    path=item.path,
                )


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)
