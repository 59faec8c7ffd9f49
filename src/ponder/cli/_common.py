"""Helpers shared by the CLI verbs: the store option, JSON output, progress bars."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ponder import paths
from ponder.store import Store

StoreOption = Annotated[
    Path | None,
    typer.Option(
        "--store",
        envvar=paths.STORE_ENV,
        help="Outcome store (SQLite). Default: $PONDER_STORE, else ponder.sqlite in the "
        "user data folder.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
DatasetsOption = Annotated[
    list[str] | None, typer.Option("--dataset", "-d", help="Only these datasets.")
]
ModelsOption = Annotated[list[str] | None, typer.Option("--model", "-m", help="Only these models.")]
NBootOption = Annotated[int, typer.Option(min=100, help="Bootstrap resamples over problems.")]
SeedOption = Annotated[int, typer.Option(help="Bootstrap seed.")]

err_console = Console(stderr=True)


def out_console() -> Console:
    """Console for results on stdout: when piped to a file, wide enough that no cell is cut."""
    return Console(width=None if sys.stdout.isatty() else 250)


def store_path(option: Path | None) -> Path:
    return option if option is not None else paths.default_store_path()


def open_store(option: Path | None, *, create: bool = False) -> Store:
    """Open the store: writers may create it; readers open it read-only and never create it."""
    return Store(store_path(option), create=create, readonly=not create)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _clean(value.item())
    return value


def echo_json(value: Any) -> None:
    """Print `value` as JSON, with NaN as null and numpy scalars as Python numbers."""
    typer.echo(json.dumps(_clean(value), indent=2, sort_keys=False))


def progress(*, transient: bool = True, enabled: bool | None = None) -> Progress:
    """A progress bar with ETA on stderr (hidden when stderr is not a terminal)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
        disable=not sys.stderr.isatty() if enabled is None else not enabled,
    )
