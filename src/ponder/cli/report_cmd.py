"""`ponder report`: one self-contained HTML file with the curves and their plots."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ponder.cli._common import (
    DatasetsOption,
    ModelsOption,
    NBootOption,
    SeedOption,
    StoreOption,
    check_names,
    err_console,
    open_store,
    progress,
)

if TYPE_CHECKING:
    from ponder.curves import Curves
    from ponder.store import Store


def write_report(
    st: Store,
    out: Path,
    *,
    datasets: list[str] | None = None,
    models: list[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    curves: Curves | None = None,
    policies: bool = False,
) -> Path:
    """Render the report (computing the curves unless given), with progress on stderr.

    With `policies`, every policy family is cross-validated on each dataset with token counts
    and the report gains a policies section.
    """
    from ponder.analysis import evaluate_policies, load_curves
    from ponder.report import build_report

    frame = st.outcomes_frame(datasets=datasets, models=models)
    if curves is None:
        with err_console.status("computing curves with bootstrap CIs"):
            curves = load_curves(
                st, datasets=datasets, models=models, n_boot=n_boot, seed=seed, frame=frame
            )
    evaluations = []
    if policies:
        with progress() as bar:
            task = bar.add_task("evaluating policies", total=frame["dataset"].nunique())
            evaluations = evaluate_policies(
                st,
                datasets=datasets,
                seed=seed,
                n_boot=n_boot,
                on_dataset=lambda name: bar.update(
                    task, advance=1, description=f"evaluated {name}"
                ),
            )
    names = sorted(curves.cells["dataset"].unique())
    with progress() as bar:
        task = bar.add_task("plotting", total=len(names))
        return build_report(
            frame,
            curves,
            st.runs_frame(),
            out,
            store_label=st.path.name,
            n_boot=n_boot,
            seed=seed,
            on_dataset=lambda name: bar.update(task, advance=1, description=f"plotted {name}"),
            evaluations=evaluations,
        )


def report_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path(
        "ponder-report.html"
    ),
    dataset: DatasetsOption = None,
    model: ModelsOption = None,
    n_boot: NBootOption = 1000,
    seed: SeedOption = 0,
    policies: Annotated[
        bool,
        typer.Option(
            "--policies/--no-policies",
            help="Add the offline evaluation of the policy families (slower).",
        ),
    ] = False,
    store: StoreOption = None,
) -> None:
    """Write one self-contained HTML report with plots.

    Accuracy vs budget and vs tokens with CI bands, difficulty panels, token histograms,
    sweet spots and the overthinking test.

    \b
    Examples:
      ponder report                       # ponder-report.html, default store
      ponder report -o aime.html -d aime24 -d aime25
      ponder report --policies            # add policies vs uniform budgets
    """
    with open_store(store) as st:
        check_names(st, datasets=dataset, models=model)
        path = write_report(
            st, out, datasets=dataset, models=model, n_boot=n_boot, seed=seed, policies=policies
        )
    typer.echo(f"report written to {path.resolve()}")
