"""`ponder demo`: the main job on the built-in default, from nothing to a report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ponder import paths
from ponder.cli._common import NBootOption, err_console, out_console, progress
from ponder.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from ponder.importers import FileImport

# The sweet-spot columns the demo shows, labelled as everywhere else (SWEET_SPOT_LABELS).
DEMO_SWEET_SPOT_COLUMNS = (
    "model",
    "dataset",
    "mode",
    "sweet_spot",
    "sweet_spot_accuracy",
    "sweet_spot_share",
    "sweet_spot_min",
    "overthinking",
)


def demo_command(
    data: Annotated[
        Path | None,
        typer.Option(
            help="Folder of recorded datasets. Default: $PONDER_SHARED_DATA, else "
            "../shared/data, else the datasets pulled with `ponder data pull`.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for the demo store and report.")] = Path(
        "out/demo"
    ),
    n_boot: NBootOption = 1000,
    policies: Annotated[
        bool,
        typer.Option(
            "--policies/--no-policies",
            help="Evaluate the policy families offline into the report.",
        ),
    ] = True,
) -> None:
    """Import every recorded dataset, compute the curves and write the HTML report.

    The demo keeps its own store in --out (it never touches $PONDER_STORE).

    \b
    Examples:
      ponder demo
      ponder demo --data ~/datasets/ponder --out /tmp/ponder-demo
    """
    from ponder.analysis import load_curves
    from ponder.cli.report_cmd import write_report
    from ponder.importers import import_paths
    from ponder.store import Store

    folder = data or _default_data()
    if not folder.is_dir():
        raise InputError(
            "recorded datasets not found: pass --data, set PONDER_SHARED_DATA, or fetch them "
            "with `ponder data pull NAME`",
            path=folder,
        )
    console = out_console()
    console.print(f"recorded data: {folder.resolve()}")
    with Store(out / "demo.sqlite") as st:
        with progress() as bar:
            task = bar.add_task("importing", total=None)

            def on_file(stage: str, item: FileImport) -> None:
                bar.update(task, advance=1, description=f"{stage} {item.path.name}")

            imported = import_paths(st, [folder], on_file=on_file)
        counts = st.counts()
        console.print(
            f"imported {len(imported)} files: {counts['outcomes']} outcomes, "
            f"{counts['problems']} problems, {counts['runs']} runs"
        )
        with err_console.status("computing curves with bootstrap CIs"):
            curves = load_curves(st, n_boot=n_boot)
        print_sweet_spots(console, curves.sweet_spots)
        report = write_report(
            st, out / "report.html", n_boot=n_boot, curves=curves, policies=policies
        )
    console.print(f"store:  {(out / 'demo.sqlite').resolve()}")
    console.print(f"report: {report.resolve()}")


def _default_data() -> Path:
    shared = paths.shared_data_dir()
    if shared.is_dir():
        return shared
    return paths.data_dir() / "datasets"


def print_sweet_spots(console: Console, sweet: pd.DataFrame) -> None:
    """The demo's sweet-spot table: a subset of `ponder curves --table sweet-spots`, with the
    same column names."""
    from ponder.cli._tables import print_table
    from ponder.curves.sweetspot import SWEET_SPOT_LABELS

    if sweet.empty:
        return
    print_table(
        console,
        sweet,
        {c: SWEET_SPOT_LABELS[c] for c in DEMO_SWEET_SPOT_COLUMNS},
        title="sweet spots (best recorded budget per model; 95% paired bootstrap)",
    )
