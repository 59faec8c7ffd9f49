"""Helpers shared by the CLI verbs: the store option, JSON output, progress bars, name checks.

Nothing heavy is imported at module level (no pandas, numpy or the store, which needs pandas):
every verb imports this module, and `ponder --help` must start fast.
"""

from __future__ import annotations

import difflib
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from ponder import paths
from ponder.errors import InputError

if TYPE_CHECKING:
    from rich.progress import Progress

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
WideOption = Annotated[
    bool,
    typer.Option(
        "--wide",
        help="One flat table even when the terminal is narrower (by default a narrow "
        "terminal gets one table per dataset or per model; numbers are never cut).",
    ),
]
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


def reflow(doc: str | None) -> str:
    """Join a docstring's wrapped lines so the terminal, not the source, decides the width
    (typer keeps single newlines); indented blocks such as examples stay as written."""
    import inspect

    paragraphs = inspect.cleandoc(doc or "").split("\n\n")
    return "\n\n".join(
        p if p.startswith(("    ", "\b")) else " ".join(p.split()) for p in paragraphs
    )


def store_path(option: Path | None) -> Path:
    return option if option is not None else paths.default_store_path()


def open_store(option: Path | None, *, create: bool = False) -> Store:
    """Open the store: writers may create it; readers open it read-only and never create it."""
    from ponder.store import Store

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
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

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


def _names_line(kind: str, names: Sequence[str], limit: int = 30) -> str:
    shown = ", ".join(names[:limit])
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return f"{kind} in the store: {shown}{more}" if names else f"the store has no {kind}"


def _unknown(kind: str, option: str, wanted: Sequence[str], known: Sequence[str]) -> str | None:
    """One sentence for the first name in `wanted` that `known` lacks, else None."""
    for name in wanted:
        if name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        if not close and len(name) >= 3:  # `gpt5` vs `gpt-5-mini`: a case-insensitive prefix
            close = [k for k in known if k.lower().startswith(name.lower()[:3])][:1]
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{option} {name!r}: unknown {kind[:-1]}{hint}; {_names_line(kind, known)}"
    return None


def check_names(
    store: Store,
    *,
    datasets: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
) -> None:
    """Fail with one line when a `-d` / `-m` name is not in the store, or the pair has no
    outcomes: list what the store holds and suggest the closest name, instead of a bare
    "no outcomes" from deep inside an analysis."""
    if not datasets and not models:
        return
    pairs = [(d, m) for d, m, _ in store.outcome_counts(["dataset", "model"])]
    known_datasets = sorted({d for d, _ in pairs})
    known_models = sorted({m for _, m in pairs})
    for message in (
        _unknown("datasets", "--dataset", datasets or [], known_datasets),
        _unknown("models", "--model", models or [], known_models),
    ):
        if message is not None:
            raise InputError(message + " (see `ponder ls`)")
    if datasets and models:
        chosen = {(d, m) for d, m in pairs if d in datasets and m in models}
        if not chosen:
            where = sorted({d for d, m in pairs if m in models})
            raise InputError(
                f"no outcomes for model {', '.join(models)} on dataset {', '.join(datasets)}; "
                f"{'that model has' if len(models) == 1 else 'those models have'} outcomes on: "
                f"{', '.join(where)} (see `ponder ls`)"
            )
