"""`ponder demo`: the main job on the built-in default, from nothing to a report.

With nothing but the clone (no recorded data, no network, no model) it imports ponder's own
recorded sweep, shipped in the package, and analyses it. `--recorded` adds the public
recorded datasets; `--live` first runs a short real sweep of a small local model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ponder import paths
from ponder.cli._common import NBootOption, err_console, out_console, progress
from ponder.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from ponder.claims import Finding
    from ponder.evaluate.metrics import Summary
    from ponder.evaluate.protocol import Evaluation
    from ponder.importers import FileImport
    from ponder.store import Store
    from ponder.sweep import SweepSpec

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

# The short live sweep of `ponder demo --live`: a few generated problems per level, a greedy
# chain probed at four budgets, and a greedy direct answer (docs/builtin-sweep.md).
LIVE_MODEL = "qwen2.5-coder-0.5b"
LIVE_DATASET = "arith-live"
LIVE_LEVELS = (1, 2, 3, 4)
LIVE_LADDER = (32, 64, 128, 256)
LIVE_RESERVE = 16
LIVE_SEED = 1


def demo_command(
    out: Annotated[Path, typer.Option(help="Folder for the demo store and report.")] = Path(
        "out/demo"
    ),
    recorded: Annotated[
        bool,
        typer.Option(
            "--recorded",
            help="Also import the recorded public datasets ($PONDER_SHARED_DATA, else "
            "../shared/data, else those fetched with `ponder data pull`).",
        ),
    ] = False,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Folder of recorded datasets (implies --recorded).",
            show_default=False,
        ),
    ] = None,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="First run a short real sweep of a small local model (pulled if missing; "
            "needs the local engine: make local), analysed beside the built-in sweep.",
        ),
    ] = False,
    live_model: Annotated[
        str, typer.Option(help="Registry model for --live (see `ponder models ls`).")
    ] = LIVE_MODEL,
    live_problems: Annotated[
        int, typer.Option(min=1, max=40, help="Generated problems per level for --live.")
    ] = 2,
    threads: Annotated[
        int | None,
        typer.Option(min=1, help="Engine threads for --live (default: every core)."),
    ] = None,
    n_boot: NBootOption = 200,
    policies: Annotated[
        bool,
        typer.Option(
            "--policies/--no-policies",
            help="Evaluate the policy families offline (summary printed, section in the report).",
        ),
    ] = True,
    claims: Annotated[
        bool,
        typer.Option(
            "--claims/--no-claims",
            help="Re-test the claims suite (verdicts printed, section in the report).",
        ),
    ] = True,
) -> None:
    """Analyse ponder's own recorded sweep: curves, sweet spots, policies, HTML report.

    The built-in sweep ships with ponder (two small local models on generated arithmetic
    problems, see docs/builtin-sweep.md), so this works with nothing but the clone. The
    demo rebuilds its own store in --out each time (it never touches $PONDER_STORE).

    \b
    Examples:
      ponder demo
      ponder demo --recorded               # also the recorded public datasets
      ponder demo --data ~/datasets/ponder --out /tmp/ponder-demo
      ponder demo --live                   # a short real sweep first (make local)
    """
    from ponder.builtin import builtin_folder

    console = out_console()
    sources = [builtin_folder()]
    if data is not None or recorded:
        folder = data or _default_data()
        if not folder.is_dir():
            raise InputError(
                "recorded datasets not found: pass --data, set PONDER_SHARED_DATA, or fetch "
                "them with `ponder data pull NAME`",
                path=folder,
            )
        sources.append(folder)
    if live:
        from ponder.models import get_model

        get_model(live_model)  # an unknown name fails here, before anything is fetched
        spec = live_spec(live_model, live_problems, threads)
        _check_engine()
        from ponder.builtin import verify_folder

        verify_folder(sources[0])  # a damaged built-in sweep fails before the model runs
        sources.append(_live_sweep(spec, out, console))
    store_file = _build_store(out, sources, console)

    from ponder.store import Store

    with Store(store_file, readonly=True) as st:
        _analyse(st, out, console, n_boot=n_boot, policies=policies, claims=claims)
    if not recorded and data is None:
        console.print(
            "add the recorded public datasets: `ponder data list`, `ponder data pull NAME`, "
            "then `ponder demo --recorded`",
            highlight=False,
        )
    if not live:
        console.print(
            "run a small real model first: `ponder demo --live` (needs the local engine: "
            "`make local`)",
            highlight=False,
        )


def _default_data() -> Path:
    shared = paths.shared_data_dir()
    if shared.is_dir():
        return shared
    return paths.data_dir() / "datasets"


def _build_store(out: Path, sources: list[Path], console: Console) -> Path:
    """Import every source into a new store, then put it in place of the last demo's."""
    from ponder.importers import import_paths
    from ponder.store import Store

    out.mkdir(parents=True, exist_ok=True)
    target = out / "demo.sqlite"
    private = out / f".demo.{os.getpid()}.sqlite"
    _remove(private)
    try:
        with Store(private) as st:
            with progress() as bar:
                task = bar.add_task("importing", total=None)

                def on_file(stage: str, item: FileImport) -> None:
                    bar.update(task, advance=1, description=f"{stage} {item.path.name}")

                imported = import_paths(st, sources, on_file=on_file)
            counts = st.counts()
            st.seal()
        _remove(target)
        os.replace(private, target)
    finally:
        _remove(private)
    console.print(describe_builtin(sources[0]), highlight=False)
    for source in sources[1:]:
        console.print(f"also imported: {source.resolve()}", highlight=False)
    console.print(
        f"imported {len(imported)} sources: {counts['outcomes']} outcomes, "
        f"{counts['problems']} problems, {counts['runs']} runs"
    )
    return target


def describe_builtin(folder: Path) -> str:
    """One line on the shipped sweep: its name, size and, for a partial snapshot, how far."""
    from ponder.builtin import read_manifest

    manifest = read_manifest(folder)
    counts = manifest.get("counts", {})
    models = ", ".join(counts.get("outcomes_per_model_mode", {})) or "no models"
    line = (
        f"built-in sweep {manifest.get('sweep')} ({models}): {counts.get('outcomes')} "
        f"outcomes, {counts.get('problems')} problems, {counts.get('chains')} chains"
    )
    done, planned = counts.get("work_items_done"), counts.get("work_items_planned")
    if isinstance(done, int) and isinstance(planned, int) and done < planned:
        line += f"; a partial snapshot: {done:,} of {planned:,} work items"
    return line


def _remove(store_file: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{store_file}{suffix}").unlink(missing_ok=True)


def _analyse(
    st: Store, out: Path, console: Console, *, n_boot: int, policies: bool, claims: bool
) -> None:
    from ponder.analysis import evaluate_policies, load_curves
    from ponder.evaluate.catalog import DEMO_FAMILIES
    from ponder.report import build_report

    frame = st.outcomes_frame()
    with err_console.status("computing curves with bootstrap CIs"):
        curves = load_curves(st, n_boot=n_boot, frame=frame)
    print_sweet_spots(console, curves.sweet_spots)
    evaluations: list[tuple[str, Summary]] = []
    kept: dict[str, tuple[Evaluation, Summary]] = {}
    if policies:
        with progress() as bar:
            task = bar.add_task("evaluating policies", total=frame["dataset"].nunique())
            evaluations = evaluate_policies(
                st,
                families=DEMO_FAMILIES,
                n_boot=n_boot,
                on_dataset=lambda name: bar.update(
                    task, advance=1, description=f"evaluated {name}"
                ),
                keep=kept,
            )
        print_policy_summary(console, evaluations)
    claims_section = None
    if claims:
        from ponder.claims import Settings
        from ponder.cli.claims_cmd import run_with_progress
        from ponder.report.claims import claims_context

        settings = Settings(n_boot=n_boot)
        findings = run_with_progress(st, settings=settings, evaluations=kept)
        print_claims_summary(console, findings, st.path)
        claims_section = claims_context(findings, settings)
    names = sorted(curves.cells["dataset"].unique())
    with progress() as bar:
        task = bar.add_task("plotting", total=len(names))
        report = build_report(
            frame,
            curves,
            st.runs_frame(),
            out / "report.html",
            store_label=st.path.name,
            n_boot=n_boot,
            on_dataset=lambda name: bar.update(task, advance=1, description=f"plotted {name}"),
            evaluations=evaluations,
            claims=claims_section,
        )
    console.print(f"store:  {st.path.resolve()}", highlight=False)
    console.print(f"report: {report.resolve()}", highlight=False)


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


def print_policy_summary(console: Console, evaluations: list[tuple[str, Summary]]) -> None:
    """One line per dataset: the cross-validated conclusion of `ponder evaluate`."""
    if not evaluations:
        console.print("policies: no dataset with enough problems to cross-validate")
        return
    console.print("policies vs the best uniform budget (5-fold CV, held-out problems):")
    for dataset, summary in evaluations:
        console.print(  # one line each, never wrapped: scripts and tests read it
            f"  {dataset} ({summary.n_problems} problems): {summary.conclusion}",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        "  every family, with CIs per family: `ponder evaluate -d DATASET` on the demo's store",
        highlight=False,
    )


def print_claims_summary(console: Console, findings: Sequence[Finding], store: Path) -> None:
    """The verdict table in short form: per claim, how many slices each verdict got."""
    from rich import box
    from rich.table import Table

    from ponder.claims import VERDICTS, all_claims

    table = Table(
        title=f"claims (95% bootstrap intervals; details: `ponder claims --store {store}`)",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    table.add_column("#", justify="right")
    table.add_column("claim")
    for verdict in VERDICTS:
        table.add_column(verdict, justify="right")
    for claim in all_claims():
        own = [f for f in findings if f.claim == claim.id]
        if own:
            counts = [sum(f.verdict == v for f in own) for v in VERDICTS]
            table.add_row(str(claim.number), claim.title, *(str(n) if n else "" for n in counts))
    console.print(table)


# -- --live -------------------------------------------------------------------------------------


def live_spec(model: str, per_level: int, threads: int | None) -> SweepSpec:
    """The short real sweep: generated problems under their own dataset name (so they never
    mix with the built-in sweep's cells), greedy think ladder and greedy no-think."""
    from ponder.sweep import parse_spec

    options: dict[str, Any] = {"model": model, "n_ctx": 1024}
    if threads is not None:
        options["n_threads"] = threads
    return parse_spec(
        {
            "name": f"demo-live-{model}",
            "problems": [
                {
                    "generated": {
                        "levels": list(LIVE_LEVELS),
                        "per_level": per_level,
                        "seed": LIVE_SEED,
                    },
                    "dataset": LIVE_DATASET,
                }
            ],
            "models": [{"name": model, "backend": "llamacpp", "options": options}],
            "modes": ["think", "no-think"],
            "budgets": {"ladder": list(LIVE_LADDER)},
            "reserve": LIVE_RESERVE,
            "sampling": [{"temperature": 0, "samples": 1}],
            "seed": LIVE_SEED,
            "concurrency": 1,
            "entropy": True,
        },
        source="<ponder demo --live>",
    )


def _check_engine() -> None:
    """No engine: one line saying how to get it, before anything is pulled or run."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        raise InputError(
            "--live needs the local engine (llama-cpp-python), which is not installed: run "
            "`make local` (see docs/models.md)"
        )


def _live_sweep(spec: SweepSpec, out: Path, console: Console) -> Path:
    """Pull the model if missing, run the sweep (resumable, in out/live.sqlite) with the
    sweep runner's progress bar, and export it as a sweep folder to import beside the
    built-in one."""
    import asyncio
    import sys

    from ponder.builtin.export import export_sweep
    from ponder.cli.sweep_cmd import _bar, _print_estimate
    from ponder.models import pull
    from ponder.store import Store
    from ponder.sweep import build_plan, estimate, run_plan
    from ponder.sweep.runner import pending_items

    model = spec.models[0]
    name = str(model.options["model"])
    result = pull(name, progress=sys.stderr.isatty())
    console.print(f"model {name}: {result.status} ({result.path})", highlight=False)
    out.mkdir(parents=True, exist_ok=True)
    store_file = out / "live.sqlite"
    plan = build_plan(spec)
    with Store(store_file) as st:
        todo, done, _ = pending_items(plan, st)
        _print_estimate(plan, estimate(plan, todo), done)
        summary = asyncio.run(run_plan(plan, st, reporter=_bar(enabled=sys.stderr.isatty())))
    console.print(
        f"live sweep {spec.name}: {summary.done} items run, {summary.skipped} done before, "
        f"{summary.errors} errors; {summary.tokens:,} tokens in {summary.wall_s:.1f} s",
        highlight=False,
    )
    for message in summary.error_messages[:3]:
        console.print(f"  error: {message}", highlight=False)
    if summary.done + summary.skipped == 0:
        first = summary.error_messages[0] if summary.error_messages else "no item ran"
        raise InputError(f"the live sweep produced no rows: {first}")
    folder = out / "live-sweep"
    export_sweep(store_file, spec.name, folder, command="ponder demo --live")
    return folder
