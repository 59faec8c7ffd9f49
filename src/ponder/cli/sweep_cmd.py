"""`ponder sweep run` / `ponder sweep status`: live sweeps into the store, resumable."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ponder.cli._common import (
    JsonOption,
    StoreOption,
    echo_json,
    err_console,
    out_console,
    reflow,
    store_path,
)
from ponder.errors import InputError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from ponder.sweep import Estimate, SweepPlan, SweepSpec, SweepSummary, WorkItem

sweep_app = typer.Typer(
    name="sweep",
    help="Run models over problems at every mode, budget and sample, into the store "
    "(resumable: re-run the same command after any interruption).",
    no_args_is_help=True,
)

SpecArgument = Annotated[
    Path | None,
    typer.Argument(help="The sweep spec (YAML; see docs/sweeps.md). Omit to build it from flags."),
]


def _csv_ints(value: str | None, flag: str) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError as exc:
        raise InputError(f"{flag} {value!r}: expected comma-separated integers") from exc


def _option_values(options: list[str] | None) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in options or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--option {item!r}: expected KEY=VALUE")
        out[key.strip()] = yaml.safe_load(raw) if raw else ""
    return out


def _spec_from_flags(flags: dict[str, Any]) -> SweepSpec:
    """The same spec as a YAML file would give, from the quick-run flags."""
    from ponder.sweep import parse_spec

    if flags["model"] is None:
        raise InputError("give a SPEC.yaml, or at least --model (and --problems or --generated)")
    problems: list[dict[str, Any]] = []
    if flags["problems"] is not None:
        problems.append({"file": str(flags["problems"])})
    levels = _csv_ints(flags["generated"], "--generated")
    if levels is not None:
        problems.append(
            {
                "generated": {
                    "levels": levels,
                    "per_level": flags["per_level"],
                    "seed": flags["seed"],
                }
            }
        )
    data: dict[str, Any] = {
        "name": flags["name"],
        "problems": problems,
        "models": [
            {
                "name": flags["model"],
                "backend": flags["backend"],
                "options": _option_values(flags["option"]),
            }
        ],
        "modes": flags["mode"] or ["think", "no-think"],
        "reserve": flags["reserve"],
        "sampling": [
            {"temperature": flags["temperature"], "samples": flags["samples"]},
        ],
        "seed": flags["seed"],
        "concurrency": flags["concurrency"],
    }
    ladder = _csv_ints(flags["ladder"], "--ladder")
    forced = _csv_ints(flags["forced"], "--forced")
    native = _csv_ints(flags["native"], "--native")
    budgets: dict[str, Any] = {}
    if ladder is not None:
        budgets["ladder"] = ladder
    if forced is not None:
        budgets["forced"] = forced
    if native is not None:
        budgets["native"] = native
    if budgets:
        data["budgets"] = budgets
    if not problems:
        data["problems"] = None
    return parse_spec(data, source="<flags>")


def _load(spec_path: Path | None, flags: dict[str, Any]) -> SweepSpec:
    from ponder.sweep import load_spec

    if spec_path is None:
        return _spec_from_flags(flags)
    given = [
        k for k in ("model", "problems", "generated", "ladder", "forced", "native") if flags[k]
    ]
    if given:
        raise InputError(f"--{given[0]} is for runs without a spec; put it in {spec_path}")
    return load_spec(spec_path)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown (no decode rate for this model)"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _estimate_dict(est: Estimate) -> dict[str, Any]:
    return {
        "items": est.items,
        "pending": est.pending,
        "chains": est.chains,
        "probes": est.probes,
        "generated_tokens_max": est.tokens,
        "prompt_tokens": est.prompt_tokens,
        "seconds": est.seconds,
        "wall_seconds": est.wall_seconds,
        "models": [
            {
                "model": m.model,
                "items": m.items,
                "chains": m.chains,
                "probes": m.probes,
                "generated_tokens_max": m.tokens,
                "seconds": m.seconds,
            }
            for m in est.per_model
        ],
    }


def _print_estimate(plan: SweepPlan, est: Estimate, done: int) -> None:
    spec = plan.spec
    err_console.print(
        f"sweep [bold]{spec.name}[/]: {len(plan.problems)} problems, {len(spec.models)} "
        f"model(s), {est.items} work items ({done} done, {est.pending} to run)"
    )
    for m in est.per_model:
        if m.items:
            err_console.print(
                f"  {m.model}: {m.items} items, {m.chains} chains, {m.probes} probes, "
                f"<= {m.tokens:,} generated tokens + {m.prompt_tokens:,} prompt tokens, "
                f"~{_duration(m.seconds)}"
            )
    err_console.print(
        f"  estimate: <= {est.tokens:,} generated tokens (chains x largest rung + probes x "
        f"reserve), ~{_duration(est.seconds)} of engine time"
        + (
            f", ~{_duration(est.wall_seconds)} wall with models side by side"
            if est.wall_seconds is not None and est.wall_seconds < (est.seconds or 0)
            else ""
        )
    )


class _Bar:
    """A rich progress bar with ETA and tokens/s (the runner's Reporter)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None
        self.tokens = 0
        self.errors = 0
        self.started = 0.0

    def start(self, total: int, skipped: int) -> None:
        import time

        self.started = time.perf_counter()
        self.progress.start()
        self.task = self.progress.add_task(
            "sweep", total=total, completed=skipped, rate="", errors=""
        )

    def advance(self, item: WorkItem, tokens: int, ok: bool) -> None:
        import time

        self.tokens += tokens
        self.errors += 0 if ok else 1
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        assert self.task is not None
        self.progress.update(
            self.task,
            advance=1,
            rate=f"{self.tokens / elapsed:.1f} tok/s",
            errors=f"{self.errors} errors" if self.errors else "",
            description=f"{item.model.name} {item.mode_label}",
        )

    def finish(self) -> None:
        self.progress.stop()


def _bar(enabled: bool) -> _Bar:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("[red]{task.fields[errors]}"),
        console=err_console,
        transient=False,
        disable=not enabled,
    )
    return _Bar(progress)


def _print_summary(summary: SweepSummary) -> None:
    from rich.table import Table

    console = out_console()
    rate = summary.tokens_per_s
    console.print(
        f"sweep {summary.sweep}: {summary.done} items done, {summary.skipped} skipped (done "
        f"before), {summary.errors} errors"
        + (f", {summary.skipped_errors} errored items left alone" if summary.skipped_errors else "")
        + f"; {summary.tokens:,} tokens in {summary.wall_s:.1f} s"
        + (f" ({rate:.1f} tok/s)" if rate else "")
    )
    for message in summary.error_messages[:5]:
        console.print(f"  error: {message}")
    if summary.errors > 5:
        console.print(f"  ... {summary.errors - 5} more (ponder sweep status SPEC)")
    if summary.accuracy:
        table = Table(title="accuracy per model x mode x budget (all rows of this sweep)")
        for name in ("model", "mode", "budget", "rows", "accuracy", "output tok", "stop cost"):
            table.add_column(name, justify="left" if name in ("model", "mode") else "right")
        for row in summary.accuracy:
            table.add_row(
                row["model"],
                row["mode"],
                "-" if row["budget"] is None else str(row["budget"]),
                str(row["rows"]),
                f"{row['accuracy']:.3f}",
                "-" if row["output_tokens"] is None else f"{row['output_tokens']:.0f}",
                "-" if row["stop_cost_tokens"] is None else f"{row['stop_cost_tokens']:.0f}",
            )
        console.print(table)


def run_command(
    spec_path: SpecArgument = None,
    store: StoreOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and the estimate; run nothing.")
    ] = False,
    json_out: JsonOption = False,
    no_retry_errors: Annotated[
        bool,
        typer.Option("--no-retry-errors", help="Leave items that failed before alone."),
    ] = False,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Run items as Ray actor calls: 'local' starts a local Ray instance, 'auto' "
            "or ray://HOST:PORT joins a cluster (the distributed extra).",
        ),
    ] = None,
    name: Annotated[str, typer.Option(help="Sweep name (without a spec).")] = "quick",
    model: Annotated[str | None, typer.Option(help="Model name (without a spec).")] = None,
    backend: Annotated[str, typer.Option(help="llamacpp, openai or fake.")] = "llamacpp",
    option: Annotated[
        list[str] | None, typer.Option(help="Backend option KEY=VALUE (repeatable).")
    ] = None,
    problems: Annotated[Path | None, typer.Option(help="Problem file (JSONL / CSV).")] = None,
    generated: Annotated[
        str | None, typer.Option(help="Generated problems at these levels, e.g. 1,2,3.")
    ] = None,
    per_level: Annotated[int, typer.Option(help="Generated problems per level.")] = 8,
    mode: Annotated[list[str] | None, typer.Option(help="think / no-think (repeatable).")] = None,
    ladder: Annotated[str | None, typer.Option(help="Ladder rungs, e.g. 16,32,64.")] = None,
    forced: Annotated[str | None, typer.Option(help="Forced budgets, e.g. 128,256.")] = None,
    native: Annotated[
        str | None,
        typer.Option(help="Budgets passed to the engine's own thinking-budget parameter."),
    ] = None,
    reserve: Annotated[int, typer.Option(help="Answer reserve (tokens).")] = 16,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.0,
    samples: Annotated[int, typer.Option(help="Samples per problem.")] = 1,
    seed: Annotated[int, typer.Option(help="Sweep seed.")] = 0,
    concurrency: Annotated[int, typer.Option(help="Items at once.")] = 1,
) -> None:
    """Run a sweep: every model x problem x mode x budget x sample, into the store.

    Resumable: items already done are skipped, so after a crash, Ctrl-C or kill just run
    the same command again. Items that failed are retried (--no-retry-errors leaves them).

    \b
    Examples:
      ponder sweep run sweeps/arith-v1.yaml --dry-run
      ponder sweep run sweeps/arith-v1.yaml --store sweep.sqlite
      ponder sweep run --model smol --option path=smol.gguf --generated 1,2 --ladder 16,32
      ponder sweep run big.yaml --ray auto          # items on a Ray cluster
    """
    import asyncio

    from ponder.store import Store
    from ponder.sweep import build_plan, estimate, run_plan
    from ponder.sweep.runner import pending_items

    flags = dict(
        name=name,
        model=model,
        backend=backend,
        option=option,
        problems=problems,
        generated=generated,
        per_level=per_level,
        mode=mode,
        ladder=ladder,
        forced=forced,
        native=native,
        reserve=reserve,
        temperature=temperature,
        samples=samples,
        seed=seed,
        concurrency=concurrency,
    )
    spec = _load(spec_path, flags)
    plan = build_plan(spec)
    path = store_path(store)
    if dry_run:
        if path.exists():
            with Store(path, readonly=True) as st:
                todo, done, _ = pending_items(plan, st, retry_errors=not no_retry_errors)
        else:
            todo, done = list(plan.items), 0
        est = estimate(plan, todo)
        if json_out:
            echo_json({"sweep": spec.name, "store": str(path), "estimate": _estimate_dict(est)})
        else:
            _print_estimate(plan, est, done)
            err_console.print("dry run: nothing was run")
        return
    # Open for writing before counting what is done: a store whose creator was killed before
    # its schema was committed is finished here, not refused as unreadable.
    with Store(path) as st:
        todo, done, _ = pending_items(plan, st, retry_errors=not no_retry_errors)
        est = estimate(plan, todo)
        if not json_out:
            _print_estimate(plan, est, done)
        bar = _bar(enabled=sys.stderr.isatty() and not json_out)
        try:
            summary = asyncio.run(
                run_plan(plan, st, retry_errors=not no_retry_errors, reporter=bar, ray_address=ray)
            )
        except KeyboardInterrupt:
            bar.finish()
            err_console.print(
                f"interrupted: finished items are stored; run the same command to resume ({path})"
            )
            raise typer.Exit(130) from None
    if json_out:
        echo_json({**summary.as_dict(), "estimate": _estimate_dict(est)})
    else:
        _print_summary(summary)


def status_command(
    spec_path: Annotated[Path, typer.Argument(help="The sweep spec (YAML).")],
    store: StoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Done / error / pending work items of a sweep, per model and mode.

    \b
    Example:
      ponder sweep status sweeps/arith-v1.yaml --store sweep.sqlite
    """
    from ponder.store import Store
    from ponder.sweep import build_plan, load_spec

    plan = build_plan(load_spec(spec_path))
    path = store_path(store)
    states = {}
    if path.exists():
        with Store(path, readonly=True) as st:
            states = st.sweep_items(plan.spec.name)
    groups: dict[tuple[str, str], dict[str, int]] = {}
    errors: list[str] = []
    for item in plan.items:
        state = states.get(item.key)
        status = "pending" if state is None else state.status
        counts = groups.setdefault(
            (item.model.name, item.mode_label), {"done": 0, "error": 0, "pending": 0}
        )
        counts[status] += 1
        if state is not None and state.status == "error" and len(errors) < 20:
            errors.append(
                f"{item.model.name} {item.problem.problem_id} {item.mode_label} "
                f"(attempts {state.attempts}): {state.error}"
            )
    total = {k: sum(c[k] for c in groups.values()) for k in ("done", "error", "pending")}
    if json_out:
        echo_json(
            {
                "sweep": plan.spec.name,
                "items": len(plan.items),
                **total,
                "groups": [{"model": m, "mode": md, **c} for (m, md), c in sorted(groups.items())],
                "errors": errors,
            }
        )
        return
    from rich.table import Table

    console = out_console()
    console.print(
        f"sweep {plan.spec.name}: {len(plan.items)} items: {total['done']} done, "
        f"{total['error']} errors, {total['pending']} pending"
    )
    table = Table()
    for column in ("model", "mode", "done", "error", "pending"):
        table.add_column(column, justify="left" if column in ("model", "mode") else "right")
    for (model_name, mode_label), c in sorted(groups.items()):
        table.add_row(model_name, mode_label, str(c["done"]), str(c["error"]), str(c["pending"]))
    console.print(table)
    for message in errors[:5]:
        console.print(f"  error: {message}")


sweep_app.command("run", help=reflow(run_command.__doc__))(run_command)
sweep_app.command("status", help=reflow(status_command.__doc__))(status_command)
