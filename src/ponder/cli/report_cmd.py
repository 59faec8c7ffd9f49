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
    from collections.abc import Sequence

    from ponder.claims import Finding, Settings
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
    claims: Sequence[Finding] | None = None,
    claims_settings: Settings | None = None,
) -> Path:
    """Render the report (computing the curves unless given), with progress on stderr.

    With `policies`, every policy family is cross-validated on each dataset with token counts
    and the report gains a policies section; `claims` (findings of `ponder.claims`) adds the
    claims section.
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
    claims_section = None
    if claims:
        from ponder.claims import Settings
        from ponder.report.claims import claims_context

        claims_section = claims_context(claims, claims_settings or Settings())
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
            claims=claims_section,
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
    claims: Annotated[
        bool,
        typer.Option(
            "--claims/--no-claims",
            help="Add the claims suite: each hypothesis re-tested with a verdict (slower).",
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
      ponder report --claims              # add the claims suite (see `ponder claims`)
    """
    with open_store(store) as st:
        check_names(st, datasets=dataset, models=model)
        findings = None
        settings = None
        if claims:
            from ponder.claims import Settings
            from ponder.cli.claims_cmd import run_with_progress

            settings = Settings(n_boot=n_boot, seed=seed)
            findings = run_with_progress(st, datasets=dataset, settings=settings)
        path = write_report(
            st,
            out,
            datasets=dataset,
            models=model,
            n_boot=n_boot,
            seed=seed,
            policies=policies,
            claims=findings,
            claims_settings=settings,
        )
    typer.echo(f"report written to {path.resolve()}")
