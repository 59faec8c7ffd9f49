"""`ponder demo`: the main job on the built-in default, from nothing to a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ponder import paths
from ponder.cli._common import NBootOption, err_console, out_console, progress
from ponder.cli.report_cmd import write_report
from ponder.errors import InputError
from ponder.importers import FileImport, import_paths
from ponder.store import Store


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
        bool, typer.Option(help="Evaluate the policy families offline into the report.")
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
        _print_sweet_spots(console, curves.sweet_spots)
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


def _print_sweet_spots(console: Console, sweet: object) -> None:
    import pandas as pd

    assert isinstance(sweet, pd.DataFrame)
    if sweet.empty:
        return
    table = Table(title="sweet spots (best recorded budget per model; 95% paired bootstrap)")
    for column in (
        "model",
        "dataset",
        "best budget",
        "accuracy",
        "share",
        "cheapest within noise",
        "overthinking",
    ):
        table.add_column(column, justify="left" if column in ("model", "dataset") else "right")
    for _, row in sweet.iterrows():
        table.add_row(
            str(row["model"]),
            str(row["dataset"]),
            f"{row['sweet_spot']:.0f}",
            f"{row['sweet_spot_accuracy']:.3f}",
            f"{row['sweet_spot_share']:.2f}",
            f"{row['sweet_spot_min']:.0f}",
            "yes" if row["overthinking"] else "no",
        )
    console.print(table)
