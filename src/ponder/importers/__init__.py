"""Turn recorded sweeps (known presets or any CSV/JSONL with a column mapping) into the store."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ponder.checksums import sha256_file
from ponder.columnar.catalog import parquet_root
from ponder.errors import InputError, StoreError
from ponder.importers.bulk import (
    check_bulk_runs,
    is_bulk_file,
    load_bulk,
    settle_bulk,
)
from ponder.importers.generic import FIELDS, load_mapped, parse_mapping
from ponder.importers.known import dataset_notes
from ponder.importers.presets import PRESETS, Preset, detect_preset
from ponder.store.batch import ImportBatch
from ponder.store.sqlite import Source, Store, WriteResult, check_can_write
from ponder.tables import Table, check_suffix, parse_table, read_source, read_table

__all__ = [
    "FIELDS",
    "PRESETS",
    "FileImport",
    "ImportPlan",
    "Preset",
    "detect_preset",
    "import_into",
    "import_options",
    "import_paths",
    "load_file",
    "parse_mapping",
    "parse_table",
    "plan_imports",
    "read_table",
    "write_plan",
]


@dataclass
class FileImport:
    """One file's import: its preset, what was read and what was added.

    `unchanged` says the file was skipped by its checksum: the same bytes were imported before
    with the same options and their runs are still stored, so it was not even parsed.
    """

    path: Path
    preset: str
    batch: ImportBatch | None
    sha256: str
    result: WriteResult | None = None
    notes: list[str] = field(default_factory=list)
    options: dict[str, object] = field(default_factory=dict)
    unchanged: bool = False


_MAPPED_OPTIONS = ("mapping", "dataset", "model", "run")


def import_options(preset: str, options: Mapping[str, object]) -> dict[str, object]:
    """What decides how a file's bytes become rows: recorded with each import, so the same
    source imported again another way (a new mapping or run label) is caught."""
    if preset != "mapped":
        return {"preset": preset}
    mapping = options.get("mapping") or {}
    assert isinstance(mapping, Mapping)
    return {
        "preset": "mapped",
        "mapping": dict(sorted(mapping.items())),
        "dataset": options.get("dataset"),
        "model": options.get("model"),
        "run": options.get("run"),
        "budget_kind": options.get("budget_kind") or "unspecified",
    }


def _uses_mapping(options: Mapping[str, object]) -> bool:
    return any(options.get(k) for k in _MAPPED_OPTIONS)


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
    data: bytes | None = None,
    sha256: str | None = None,
) -> FileImport:
    """Read and validate one file into a batch (nothing is written yet).

    The file is read once: its bytes are hashed and parsed (pass `data`, `sha256` and/or
    `table` when they are already at hand).
    """
    if preset and (mapping or dataset or model or run):
        raise InputError("--preset cannot be combined with --map/--dataset/--model/--run")
    if preset and preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    if data is None:
        check_suffix(path)
        data = read_source(path)
    if sha256 is None:
        sha256 = hashlib.sha256(data).hexdigest()
    if table is None:
        table = parse_table(path, data)
    if len(table) == 0:
        raise InputError("no data rows (the file has only a header)", path=path)
    chosen: Preset | None
    if mapping or dataset or model or run:
        chosen = None
    elif preset:
        chosen = PRESETS[preset]
    else:
        chosen = detect_preset(table)
    notes: list[str] = []
    if chosen is not None:
        batch = chosen.load(table)
        name = chosen.name
        source_rows = (
            batch.source_rows
            if batch.source_rows is not None
            else np.arange(len(batch.outcomes)) % len(table)
        )
        _check_preset_keys(table, batch, source_rows)
        batch.line_of = _line_of(table, source_rows)
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
        batch.line_of = _line_of(table, None)
    notes.extend(batch.notes)
    options = import_options(
        name,
        {
            "mapping": mapping,
            "dataset": dataset,
            "model": model,
            "run": run,
            "budget_kind": budget_kind,
        },
    )
    return FileImport(
        path=path, preset=name, batch=batch, sha256=sha256, notes=notes, options=options
    )


def _line_of(table: Table, source_rows: np.ndarray | None) -> Callable[[int], int]:
    """The file line of an outcome row, computed on demand (the table itself is let go)."""
    lines = table.line_finder()

    def line_of(position: int) -> int:
        row = position if source_rows is None else int(source_rows[position])
        return int(lines()[row])

    return line_of


_KEY = ["run_id", "dataset", "problem_id", "model", "mode", "budget", "sample_idx"]


def _check_preset_keys(table: Table, batch: ImportBatch, source_rows: np.ndarray) -> None:
    """The same key twice in a recorded file is an error (mapped files already refuse it):
    keeping the first and dropping the second would silently decide which value is true."""
    dup = batch.outcomes.duplicated(_KEY, keep=False).to_numpy()
    if not dup.any():
        return
    positions = np.flatnonzero(batch.outcomes.duplicated(_KEY, keep="first").to_numpy())
    row = int(source_rows[positions[0]])
    key = batch.outcomes.iloc[positions[0]]
    raise InputError(
        f"duplicate key (problem {key['problem_id']!r}, model {key['model']!r}, "
        f"budget {key['budget']}, sample {key['sample_idx']}) seen on an earlier row",
        path=table.path,
        line=int(table.lines[row]),
    )


# A file found for an import: its path, parsed rows, bytes, their sha256, and the import it
# repeats unchanged (None: it must be loaded).
_Found = tuple[Path, Table | None, bytes | None, str | None, FileImport | None]


def _files_in(folder: Path, store: Store | None, options: Mapping[str, object]) -> list[_Found]:
    """Files under a folder that a preset recognises (problem sets are joined, not imported).

    A CSV or JSONL that cannot be read is an error, not skipped: a broken file of a sweep must
    not vanish from the import unnoticed. A file imported before unchanged is not parsed.
    """
    found: list[_Found] = []
    for candidate in sorted(folder.rglob("*")):
        if candidate.suffix.lower() not in (".csv", ".jsonl") or not candidate.is_file():
            continue
        data = read_source(candidate)
        sha256 = hashlib.sha256(data).hexdigest()
        unchanged = _shortcut(store, candidate, sha256, options) if store is not None else None
        if unchanged is not None:
            found.append((candidate, None, data, sha256, unchanged))
            continue
        table = parse_table(candidate, data)
        if detect_preset(table) is not None:
            found.append((candidate, table, data, sha256, None))
    return found


@dataclass
class ImportPlan:
    """Validated files, ready to be written in one transaction."""

    items: list[FileImport]
    replace_runs: set[str] = field(default_factory=set)

    def discard(self) -> None:
        """Remove the pending segment files of the plan's bulk files (not written)."""
        for item in self.items:
            if item.batch is not None:
                item.batch.discard_segments()


def plan_imports(
    store: Store | None,
    paths: list[Path],
    *,
    on_file: Callable[[str, FileImport], None] | None = None,
    replace: bool = False,
    segments: Path | None = None,
    **options: object,
) -> ImportPlan:
    """Read and validate every file, and check it against the store, writing nothing
    visible: bulk files are streamed into pending segment files under `segments` (the
    store's `parquet_root`; None: no bulk imports), listed only by `write_plan`, and removed
    if planning fails.

    `store` may be None (no store yet): then only the files are checked against each other.
    """
    plan = ImportPlan(items=[])
    try:
        _plan(store, paths, plan, on_file, replace, segments, options)
    except BaseException:
        plan.discard()
        raise
    return plan


def _plan(
    store: Store | None,
    paths: list[Path],
    plan: ImportPlan,
    on_file: Callable[[str, FileImport], None] | None,
    replace: bool,
    segments: Path | None,
    options: dict[str, object],
) -> None:
    from ponder.importers.builtin import is_builtin_folder, load_builtin_import

    files: list[_Found] = []
    sweeps: list[FileImport] = []  # sweep folders (ponder's own format), verified whole
    for path in paths:
        if is_builtin_folder(path):
            sweeps.append(load_builtin_import(store, path))
        elif path.is_dir():
            inside = _files_in(path, store, options)
            if not inside:
                raise InputError("no file of a known preset in this folder", path=path)
            files.extend(inside)
        else:
            files.append((path, None, None, None, None))
    for folder_item in sweeps:
        plan.items.append(folder_item)
        if on_file is not None:
            on_file("read", folder_item)
    files.reverse()
    while files:  # each file's bytes and parsed rows are let go once it is loaded
        path, table, data, sha256, item = files.pop()
        if item is None and table is None and segments and is_bulk_file(path, options):
            item = _plan_bulk(store, path, plan, replace, segments, options)
            plan.items.append(item)
            if on_file is not None:
                on_file("read", item)
            continue
        if data is None:
            check_suffix(path)
            data = read_source(path)
        if sha256 is None:
            sha256 = hashlib.sha256(data).hexdigest()
        if item is None and store is not None:
            item = _shortcut(store, path, sha256, options)
        if item is None:
            item = load_file(path, table=table, data=data, sha256=sha256, **options)  # type: ignore[arg-type]
            if store is not None:
                plan.replace_runs |= _check_past_imports(store, item, replace)
                plan.replace_runs |= _check_earlier_versions(store, item, replace)
        plan.items.append(item)
        if on_file is not None:
            on_file("read", item)
    _check_runs_across_files(plan.items)
    check_bulk_runs(plan)
    if store is not None:
        settle_bulk(store, plan, replace)
        plan.replace_runs |= _check_runs_against_store(store, plan.items, replace)
    for item in plan.items:
        if item.batch is not None and item.preset == "mapped":
            item.notes.extend(dataset_notes(store, item.batch, item.path))


def _plan_bulk(
    store: Store | None,
    path: Path,
    plan: ImportPlan,
    replace: bool,
    segments: Path,
    options: Mapping[str, object],
) -> FileImport:
    """A bulk file (ponder.importers.bulk): skipped by its sha256 when imported before,
    else read by Arrow and checked against earlier imports like any file."""
    sha256 = sha256_file(path)
    item = _shortcut(store, path, sha256, options) if store is not None else None
    if item is not None:
        return item
    item = load_bulk(path, options, segments)
    if store is not None:
        try:
            plan.replace_runs |= _check_past_imports(store, item, replace)
            plan.replace_runs |= _check_earlier_versions(store, item, replace)
        except BaseException:
            if item.batch is not None:
                item.batch.discard_segments()
            raise
    return item


def _shortcut(
    store: Store, path: Path, sha256: str, options: Mapping[str, object]
) -> FileImport | None:
    """The same bytes imported before with the same options, runs still stored: skip it."""
    for past in store.past_imports(sha256):
        explicit = options.get("preset")
        if _uses_mapping(options):
            preset = "mapped"
        elif explicit:
            preset = str(explicit)
        else:  # detection is a function of the bytes: the same bytes detect the same preset
            preset = past.preset
        wanted = import_options(preset, options)
        if past.options != wanted or not past.runs:
            continue
        if len(store.stored_runs(past.runs)) != len(set(past.runs)):
            continue
        same = "" if past.path in _path_names(path) else f" (as {past.path})"
        return FileImport(
            path=path,
            preset=past.preset,
            batch=None,
            sha256=sha256,
            result=WriteResult(
                outcomes_read=past.rows_read,
                outcomes_added=0,
                problems_added=0,
                runs_added=0,
            ),
            notes=[f"unchanged since it was imported{same}: skipped by its sha256"],
            options=wanted,
            unchanged=True,
        )
    return None


def _describe(options: Mapping[str, object]) -> str:
    if options.get("preset") != "mapped":
        return f"preset {options.get('preset')}"
    order = ("mapping", "dataset", "model", "run", "budget_kind")
    shown = [(k, options.get(k)) for k in order if options.get(k) not in (None, {}, "unspecified")]
    return ", ".join(f"{k}={v}" for k, v in shown) or "no mapping"


def _check_past_imports(store: Store, item: FileImport, replace: bool) -> set[str]:
    """The same source imported before another way (mapping, run label, dataset): refuse,
    or with `replace` return the runs of that earlier import so they are replaced."""
    earlier: set[str] = set()
    for past in store.past_imports(item.sha256):
        if past.options == item.options or not past.runs or past.options == {}:
            continue
        stored = set(store.stored_runs(past.runs))
        if not stored:
            continue
        if not replace:
            raise StoreError(
                f"{item.path}: this file (sha256 {item.sha256[:12]}) was already imported "
                f"as run(s) {', '.join(sorted(stored))} with {_describe(past.options)}; "
                f"this import uses {_describe(item.options)}, which would store its rows "
                "again or contradict them. Re-run with --replace to replace those runs with "
                "this import, or leave the earlier import as it is"
            )
        earlier |= stored
    return earlier


def _check_earlier_versions(store: Store, item: FileImport, replace: bool) -> set[str]:
    """Another version of the same file, imported under its default run label, is still
    stored: importing this one too would count the rows both hold twice (the label carries
    the content hash, so the two versions are two runs). Refuse, or replace it on request."""
    if item.preset != "mapped" or item.options.get("run") or item.batch is None:
        return set()
    mine = {r.run_id for r in item.batch.runs}
    earlier: set[str] = set()
    for past in store.past_imports_at(_path_names(item.path)):
        if past.sha256 == item.sha256 or past.options.get("run") or past.preset != "mapped":
            continue
        stored = set(store.stored_runs(past.runs)) - mine
        if not stored:
            continue
        if not replace:
            raise StoreError(
                f"{item.path}: another version of this file (sha256 {past.sha256[:12]}) is "
                f"stored as run(s) {', '.join(sorted(stored))}; importing this version too "
                "would count the rows both hold twice. Re-run with --replace to replace the "
                "earlier version, or give this one its own --run label if it is another sweep"
            )
        earlier |= stored
    return earlier


def _resolved(path: Path) -> str:
    """The path recorded for an import: absolute, so the same file is found from anywhere."""
    try:
        return str(path.resolve())
    except OSError:
        return str(path)


def _path_names(path: Path) -> list[str]:
    return sorted({str(path), _resolved(path)})


def _check_runs_across_files(items: list[FileImport]) -> None:
    seen: dict[str, tuple[str, str, Path]] = {}
    for item in items:
        if item.batch is None:
            continue
        for run in item.batch.runs:
            first = seen.setdefault(run.run_id, (run.model, run.budget_kind, item.path))
            if first[:2] != (run.model, run.budget_kind):
                raise InputError(
                    f"run {run.run_id!r} has model={run.model!r}, "
                    f"budget_kind={run.budget_kind!r} here but model={first[0]!r}, "
                    f"budget_kind={first[1]!r} in {first[2]}; give the files other --run "
                    "labels or import them separately",
                    path=item.path,
                )


def _check_runs_against_store(store: Store, items: list[FileImport], replace: bool) -> set[str]:
    """Run conflicts with the store are found before anything is written; with `replace`,
    every stored run that a file brings is replaced instead."""
    runs = {r.run_id: (r, item) for item in items if item.batch for r in item.batch.runs}
    stored = store.stored_runs(runs)
    if replace:
        return set(stored)
    for run_id, (model, kind) in stored.items():
        run, item = runs[run_id]
        if (model, kind) != (run.model, run.budget_kind):
            raise StoreError(
                f"{item.path}: run {run_id!r} is already stored with model={model!r}, "
                f"budget_kind={kind!r}; this import says model={run.model!r}, "
                f"budget_kind={run.budget_kind!r}. Replace it with --replace, import it "
                "under another name (--run), or into a fresh store"
            )
    return set()


def write_plan(store: Store, plan: ImportPlan) -> None:
    """Write every file of a plan in ONE transaction: a failure keeps nothing."""
    todo = [item for item in plan.items if item.batch is not None]
    sources = [
        (
            item.batch,
            Source(
                path=_resolved(item.path),
                sha256=item.sha256,
                preset=item.preset,
                options=item.options,
            ),
        )
        for item in todo
        if item.batch is not None
    ]
    results = store.write_many(sources, replace_runs=plan.replace_runs)
    for item, result in zip(todo, results, strict=True):
        item.result = result


def import_paths(
    store: Store,
    paths: list[Path],
    *,
    on_file: Callable[[str, FileImport], None] | None = None,
    replace: bool = False,
    **options: object,
) -> list[FileImport]:
    """Import files (or folders of recorded sweeps) into `store`, all or nothing.

    Every file is read and validated, and checked against the store and the other files (run
    conflicts, an earlier import of the same bytes), before anything is written; then all
    files are written in one transaction, so a failure anywhere keeps nothing. A file imported
    before unchanged is skipped by its checksum. `replace` replaces stored runs that the files
    bring (and earlier imports of the same bytes) instead of refusing them.
    `on_file(stage, item)` is called after each file is read and after all are written.
    """
    plan = plan_imports(
        store, paths, on_file=on_file, replace=replace, segments=parquet_root(store.path), **options
    )
    write_plan(store, plan)
    if on_file is not None:
        for item in plan.items:
            on_file("written", item)
    return plan.items


def _remove_stale_private_files(store_path: Path) -> None:
    """Private files left by an import that was killed while creating this store.

    Only files whose process is gone are removed: the name carries the creator's pid, so a
    file another import is still writing is never touched.
    """
    prefix = f".{store_path.name}."
    for candidate in store_path.parent.glob(f"{glob.escape(prefix)}*"):
        pid_text = candidate.name[len(prefix) :].split(".", 1)[0]
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        if candidate.is_dir():  # the private store's segments folder
            shutil.rmtree(candidate, ignore_errors=True)
        else:
            candidate.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but not ours to signal
        return True
    return True


def import_into(
    store_path: Path,
    paths: list[Path],
    *,
    on_file: Callable[[str, FileImport], None] | None = None,
    replace: bool = False,
    **options: object,
) -> tuple[list[FileImport], dict[str, int]]:
    """Import into the store at `store_path`, creating it only with the first valid data.

    A store that does not exist yet is never created early and never deleted: the files are
    validated first (bad input creates nothing), then written into a private new file beside
    it, which is linked into place only if no store appeared meanwhile (`os.link` refuses an
    existing name, atomically). If another process created the store first, the files are
    imported into that store like into any other. Returns the files and the store's counts.
    """
    if not store_path.exists():
        check_can_write(store_path)
        private = store_path.with_name(f".{store_path.name}.{os.getpid()}.{uuid.uuid4().hex}")
        segments, private_segments = parquet_root(store_path), parquet_root(private)
        if segments.exists():
            raise StoreError(
                f"{segments}: a segments folder without its store; move it away or import "
                "into another store (nothing was written)"
            )
        try:
            plan = plan_imports(
                None, paths, on_file=on_file, replace=replace, segments=private_segments, **options
            )
            store_path.parent.mkdir(parents=True, exist_ok=True)
            _remove_stale_private_files(store_path)
            with Store(private) as store:
                write_plan(store, plan)
                store.seal()
            try:
                os.link(private, store_path)
            except OSError:  # a store appeared meanwhile, or no hard links here
                pass
            else:
                if private_segments.exists():  # bulk rows: listed relative to this folder
                    os.rename(private_segments, segments)
                if on_file is not None:
                    for item in plan.items:
                        on_file("written", item)
                with Store(store_path) as store:
                    return plan.items, store.counts()
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{private}{suffix}").unlink(missing_ok=True)
            shutil.rmtree(private_segments, ignore_errors=True)
    with Store(store_path) as store:
        items = import_paths(store, paths, on_file=on_file, replace=replace, **options)
        return items, store.counts()
