"""`ponder sweep export`: one sweep of a store as a compact, checksummed folder.

This is how ponder's own recorded sweep (the built-in default of `ponder demo`) is made from
the store a `ponder sweep run` filled; any such folder imports with `ponder import FOLDER`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ponder.cli._common import JsonOption, StoreOption, echo_json, out_console, store_path


def export_command(
    sweep: Annotated[str, typer.Argument(help="The sweep's name (its spec's `name`).")],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Folder to write (replaced whole if it is a sweep folder already).",
        ),
    ],
    store: StoreOption = None,
    balanced: Annotated[
        bool,
        typer.Option(
            "--balanced",
            help="Keep only problems every model has reached alike (same modes and samples): "
            "for a snapshot of a sweep still running.",
        ),
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Write a sweep's outcomes (with the rung signals), problems, runs and chains as Parquet
    (zstd) plus manifest.json (format, spec, counts, sha256 per file, how it was produced).

    Safe while the sweep is still running: the store is read from one consistent snapshot.

    \b
    Examples:
      ponder sweep export arith-v1 --store .cache/sweeps/arith-v1.sqlite \\
          --out src/ponder/builtin/sweep --balanced   # refresh the built-in sweep
      ponder sweep export quick -o quick-sweep && ponder import quick-sweep
    """
    import shlex

    from ponder.builtin.export import export_sweep

    path = store_path(store)
    # Recorded in the manifest: relative paths only (no machine's folders in shipped data).
    args = ["ponder", "sweep", "export", sweep, "--store", _relative(path), "--out", _relative(out)]
    args += ["--balanced"] if balanced else []
    manifest = export_sweep(path, sweep, out, command=shlex.join(args), balanced=balanced)
    if json_out:
        echo_json(manifest)
        return
    counts = manifest["counts"]
    out_console().print(
        f"wrote sweep {sweep} to {out}: {counts['outcomes']} outcomes, {counts['problems']} "
        f"problems, {counts['runs']} runs, {counts['chains']} chains, "
        f"{manifest['bytes'] / 1e6:.2f} MB",
        highlight=False,
    )


def _relative(path: Path) -> str:
    """The path relative to the working folder when it is inside it, else its name only."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path.name
