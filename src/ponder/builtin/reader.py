"""Read a built-in sweep folder: check the manifest and every file's sha256, then build one
ImportBatch (outcomes with their signals, problems, runs, chains) for the store's write path.

Nothing here writes SQL: the store writes the batch in one transaction, idempotently, as it
writes every other import. A damaged file is found before any row is built.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ponder.errors import ChecksumError, InputError
from ponder.store.batch import ImportBatch
from ponder.types import Run

FORMAT = "ponder-sweep"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PRESET = "builtin"

# Column types of each file, in order: "str", "int" (nullable int64), "float", "bytes".
OUTCOME_TYPES: dict[str, str] = {
    "run_id": "str",
    "dataset": "str",
    "problem_id": "str",
    "model": "str",
    "mode": "str",
    "budget": "int",
    "sample_idx": "int",
    "prompt_tokens": "int",
    "reasoning_tokens": "int",
    "answer_tokens": "int",
    "output_tokens": "int",
    "latency_s": "float",
    "truncated": "int",
    "answered": "int",
    "extracted_answer": "str",
    "correct": "float",
    "n_runs": "int",
    "response_text": "str",
    "extra_json": "str",
    "chain_id": "str",
    "rung": "int",
    "natural": "int",
    "answer_prob": "float",
    "entropy_tail": "float",
    "stop_cost_tokens": "int",
}
PROBLEM_TYPES: dict[str, str] = {
    "dataset": "str",
    "problem_id": "str",
    "text": "str",
    "gold": "str",
    "level": "int",
    "subject": "str",
    "metadata_json": "str",
}
RUN_TYPES: dict[str, str] = {
    "run_id": "str",
    "model": "str",
    "backend": "str",
    "source": "str",
    "budget_kind": "str",
    "settings_json": "str",
    "created_at": "str",
}
CHAIN_TYPES: dict[str, str] = {
    "chain_id": "str",
    "run_id": "str",
    "dataset": "str",
    "problem_id": "str",
    "sample_idx": "int",
    "text": "str",
    "tokens": "int",
    "finished": "int",
    "entropies": "bytes",
}
# The files of a sweep folder and their columns.
FILES: dict[str, dict[str, str]] = {
    "outcomes.parquet": OUTCOME_TYPES,
    "problems.parquet": PROBLEM_TYPES,
    "runs.parquet": RUN_TYPES,
    "chains.parquet": CHAIN_TYPES,
}
# Columns that may never be empty (the store's NOT NULL columns).
REQUIRED: dict[str, tuple[str, ...]] = {
    "outcomes.parquet": ("run_id", "dataset", "problem_id", "model", "mode", "sample_idx"),
    "problems.parquet": ("dataset", "problem_id", "metadata_json"),
    "runs.parquet": ("run_id", "model", "backend", "source", "budget_kind", "settings_json"),
    "chains.parquet": ("chain_id", "run_id", "dataset", "problem_id", "sample_idx", "tokens"),
}
BUDGET_KINDS = ("hard_cap", "forced", "effort", "none", "unspecified")


def builtin_folder() -> Path:
    """The sweep shipped inside the package (package data, so `pip install` carries it)."""
    return Path(__file__).resolve().parent / "sweep"


def is_builtin_folder(path: Path) -> bool:
    """A folder holding a sweep manifest (what `ponder import FOLDER` recognises)."""
    manifest = path / MANIFEST
    if not (path.is_dir() and manifest.is_file()):
        return False
    try:
        return bool(json.loads(manifest.read_text(encoding="utf-8")).get("format") == FORMAT)
    except (OSError, ValueError, AttributeError):
        return False


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest, checked for its format, version and one sha256 per file."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError("no built-in sweep here (manifest.json is missing)", path=path) from exc
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the manifest: {exc}", path=path) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"not a {FORMAT} manifest", path=path, field="format")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputError(
            f"format_version {version!r}: this ponder reads version {FORMAT_VERSION}; "
            "upgrade ponder",
            path=path,
            field="format_version",
        )
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise InputError("no file list", path=path, field="files")
    for name in FILES:
        entry = files.get(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise InputError(f"no sha256 for {name}", path=path, field=f"files.{name}")
    return manifest


def verify_folder(folder: Path) -> dict[str, bytes]:
    """Every file's bytes, after checking them against the manifest (ChecksumError names the
    first file that differs)."""
    manifest = read_manifest(folder)
    data: dict[str, bytes] = {}
    for name in FILES:
        path = folder / name
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read a file of the built-in sweep: {exc}", path=path) from exc
        expected = manifest["files"][name]["sha256"]
        actual = hashlib.sha256(raw).hexdigest()
        if actual != expected:
            raise ChecksumError(
                f"{path}: sha256 {actual[:16]}... does not match the manifest's "
                f"{expected[:16]}...; the sweep folder is damaged (re-export it or reinstall "
                "ponder); nothing was written"
            )
        data[name] = raw
    return data


@dataclass(frozen=True)
class LoadedSweep:
    """A verified sweep folder as a batch, with its manifest and the manifest's sha256."""

    folder: Path
    manifest: dict[str, Any]
    sha256: str
    batch: ImportBatch


def _frame(folder: Path, name: str, raw: bytes) -> pd.DataFrame:
    """One file as a frame with the store's value types (nullable ints stay ints)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / name
    try:
        table = pq.read_table(pa.BufferReader(raw))
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"not a readable Parquet file: {exc}", path=path) from exc
    types = FILES[name]
    if table.column_names != list(types):
        missing = [c for c in types if c not in table.column_names]
        extra = [c for c in table.column_names if c not in types]
        field = (missing or extra or [table.column_names[0]])[0]
        raise InputError(
            f"columns {table.column_names} differ from the format's {list(types)}",
            path=path,
            field=field,
        )
    expected = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bytes": pa.binary()}
    for column, kind in types.items():
        if table.schema.field(column).type != expected[kind]:
            raise InputError(
                f"type {table.schema.field(column).type} is not {expected[kind]}",
                path=path,
                field=column,
            )
    frame: pd.DataFrame = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    for column in REQUIRED[name]:
        empty = frame[column].isna().to_numpy()
        if empty.any():
            row = int(empty.argmax())
            raise InputError("empty value", path=path, line=row + 1, field=column)
    return frame


def load_builtin(folder: Path | None = None) -> LoadedSweep:
    """Read and verify a sweep folder (default: the one shipped in the package) into one
    ImportBatch; every check runs before the store is touched."""
    folder = builtin_folder() if folder is None else folder
    data = verify_folder(folder)
    manifest_bytes = (folder / MANIFEST).read_bytes()
    manifest = json.loads(manifest_bytes)
    frames = {name: _frame(folder, name, raw) for name, raw in data.items()}
    outcomes = frames["outcomes.parquet"]
    runs_frame = frames["runs.parquet"]
    runs_path = folder / "runs.parquet"
    runs: list[Run] = []
    for i, row in enumerate(runs_frame.to_dict("records")):
        if row["budget_kind"] not in BUDGET_KINDS:
            raise InputError(
                f"unknown budget kind {row['budget_kind']!r}",
                path=runs_path,
                line=i + 1,
                field="budget_kind",
            )
        try:
            settings = json.loads(row["settings_json"])
        except ValueError as exc:
            raise InputError(
                f"not JSON: {exc}", path=runs_path, line=i + 1, field="settings_json"
            ) from exc
        runs.append(
            Run(
                run_id=row["run_id"],
                model=row["model"],
                backend=row["backend"],
                source=row["source"],
                budget_kind=row["budget_kind"],
                settings=settings,
            )
        )
    _check_outcomes(folder / "outcomes.parquet", outcomes, {r.run_id for r in runs})
    batch = ImportBatch(
        runs=runs,
        outcomes=outcomes,
        problems=frames["problems.parquet"],
        chains=frames["chains.parquet"],
    )
    return LoadedSweep(
        folder=folder,
        manifest=manifest,
        sha256=hashlib.sha256(manifest_bytes).hexdigest(),
        batch=batch,
    )


_KEY = ["run_id", "dataset", "problem_id", "model", "mode", "budget", "sample_idx"]


def _check_outcomes(path: Path, outcomes: pd.DataFrame, run_ids: set[str]) -> None:
    """What the store would refuse half-way, said up front with the row (1-based)."""
    unknown = ~outcomes["run_id"].isin(list(run_ids)).to_numpy()
    if unknown.any():
        row = int(unknown.argmax())
        raise InputError(
            f"run {outcomes['run_id'].iloc[row]!r} is not in runs.parquet",
            path=path,
            line=row + 1,
            field="run_id",
        )
    correct = outcomes["correct"].to_numpy(dtype=float, na_value=float("nan"))
    bad = ~((correct >= 0) & (correct <= 1))
    if bad.any():
        row = int(bad.argmax())
        raise InputError(
            f"{float(correct[row])!r} is not in [0, 1]", path=path, line=row + 1, field="correct"
        )
    dup = outcomes.duplicated(_KEY).to_numpy()
    if dup.any():
        row = int(dup.argmax())
        raise InputError("duplicate outcome key", path=path, line=row + 1, field="sample_idx")
