"""`ponder import FOLDER` for a sweep folder (the built-in sweep, or any `ponder sweep export`).

The folder is verified (manifest and sha256 of every file) and becomes one FileImport, so it
goes through the same plan as other files: checked against the store and the other files,
then written with them in ONE transaction, skipped by its manifest's sha256 when it was
imported before unchanged.
"""

from __future__ import annotations

from pathlib import Path

from ponder.builtin.reader import MANIFEST, PRESET, is_builtin_folder, load_builtin
from ponder.checksums import sha256_file
from ponder.importers import FileImport
from ponder.store.sqlite import Store, WriteResult

__all__ = ["is_builtin_folder", "load_builtin_import"]

OPTIONS: dict[str, object] = {"preset": PRESET}


def load_builtin_import(store: Store | None, folder: Path) -> FileImport:
    """The folder as a FileImport; unchanged since an earlier import -> nothing to read."""
    if store is not None:
        digest = sha256_file(folder / MANIFEST)
        for past in store.past_imports(digest):
            if past.preset != PRESET or not past.runs:
                continue
            if len(store.stored_runs(past.runs)) == len(set(past.runs)):
                return FileImport(
                    path=folder,
                    preset=PRESET,
                    batch=None,
                    sha256=digest,
                    result=WriteResult(
                        outcomes_read=past.rows_read,
                        outcomes_added=0,
                        problems_added=0,
                        runs_added=0,
                    ),
                    notes=["unchanged since it was imported: skipped by its sha256"],
                    options=dict(OPTIONS),
                    unchanged=True,
                )
    loaded = load_builtin(folder)
    counts = loaded.manifest.get("counts", {})
    note = (
        f"sweep {loaded.manifest.get('sweep')!r}: {counts.get('outcomes')} outcomes, "
        f"{counts.get('chains')} chains"
    )
    return FileImport(
        path=folder,
        preset=PRESET,
        batch=loaded.batch,
        sha256=loaded.sha256,
        notes=[note],
        options=dict(OPTIONS),
    )
