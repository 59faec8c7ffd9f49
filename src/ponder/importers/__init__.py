"""Turn recorded sweeps (known presets or any CSV/JSONL with a column mapping) into the store."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ponder.checksums import sha256_file as _sha256
from ponder.errors import InputError
from ponder.importers.generic import FIELDS, load_mapped, parse_mapping
from ponder.importers.presets import PRESETS, Preset, detect_preset
from ponder.store.batch import ImportBatch
from ponder.store.sqlite import Store, WriteResult
from ponder.tables import Table, read_table

__all__ = [
    "FIELDS",
    "PRESETS",
    "FileImport",
    "Preset",
    "detect_preset",
    "import_paths",
    "load_file",
    "parse_mapping",
    "read_table",
]


@dataclass
class FileImport:
    """One file's import: its preset, what was read and what was added."""

    path: Path
    preset: str
    batch: ImportBatch
    sha256: str
    result: WriteResult | None = None
    notes: list[str] = field(default_factory=list)


def load_file(
    path: Path,
    *,
    preset: str | None = None,
    mapping: Mapping[str, str] | None = None,
    dataset: str | None = None,
    model: str | None = None,
    run: str | None = None,
    budget_kind: str = "unspecified",
    table: Table | None = None,
) -> FileImport:
    """Read and validate one file into a batch (nothing is written yet).

    Pass `table` when the file has already been read (folder scans read each file once).
    """
    if table is None:
        table = read_table(path)
    sha256 = _sha256(path)
    chosen: Preset | None
    if mapping or dataset or model or run:
        chosen = None
        if preset:
            raise InputError("--preset cannot be combined with --map/--dataset/--model/--run")
    elif preset:
        if preset not in PRESETS:
            raise InputError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        chosen = PRESETS[preset]
    else:
        chosen = detect_preset(table)
    if chosen is not None:
        batch = chosen.load(table)
        name = chosen.name
    else:
        batch = load_mapped(
            table,
            mapping or {},
            dataset=dataset,
            model=model,
            run=run,
            budget_kind=budget_kind,
            default_run=f"{path.stem}-{sha256[:8]}",
        )
        name = "mapped"
    return FileImport(path=path, preset=name, batch=batch, sha256=sha256, notes=batch.notes)


def _files_in(folder: Path) -> list[tuple[Path, Table]]:
    """Files under a folder that a preset recognises (problem sets are joined, not imported).

    A CSV or JSONL that cannot be read is an error, not skipped: a broken file of a sweep must
    not vanish from the import unnoticed.
    """
    found = []
    for candidate in sorted(folder.rglob("*")):
        if candidate.suffix.lower() not in (".csv", ".jsonl") or not candidate.is_file():
            continue
        table = read_table(candidate)
        if detect_preset(table) is not None:
            found.append((candidate, table))
    return found


def import_paths(
    store: Store,
    paths: list[Path],
    *,
    on_file: Callable[[str, FileImport], None] | None = None,
    **options: object,
) -> list[FileImport]:
    """Import files (or folders of recorded sweeps) into `store`.

    Every file is read and validated before anything is written, then each file is written in
    its own transaction, so a bad file leaves the store unchanged and re-imports add nothing.
    `on_file(stage, item)` is called after each file is read and after it is written.
    """
    files: list[tuple[Path, Table | None]] = []
    for path in paths:
        if path.is_dir():
            inside = _files_in(path)
            if not inside:
                raise InputError("no file of a known preset in this folder", path=path)
            files.extend(inside)
        else:
            files.append((path, None))
    loaded = []
    for f, table in files:
        loaded.append(load_file(f, table=table, **options))  # type: ignore[arg-type]
        if on_file is not None:
            on_file("read", loaded[-1])
    for item in loaded:
        item.result = store.write(
            item.batch, source_path=str(item.path), sha256=item.sha256, preset=item.preset
        )
        if on_file is not None:
            on_file("written", item)
    return loaded
