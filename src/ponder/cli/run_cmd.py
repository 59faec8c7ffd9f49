"""`ponder run POLICY.json`: execute a fitted policy live and record what it measured."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ponder.cli._common import JsonOption, StoreOption, echo_json, err_console, out_console
from ponder.errors import InputError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from ponder.decision import Decision, Step
    from ponder.sweep.execute import PolicyRun, RunSummary
    from ponder.sweep.plan import ProblemRef

PRESET_NAMES = ("gsm8k", "math500")


def _sources(
    problems: str | None,
    generated: str | None,
    per_level: int,
    seed: int,
    dataset: str | None,
    limit: int | None,
) -> list[dict[str, Any]]:
    """The problem flags as a sweep spec's `problems:` entries (the same keys, checked by
    the same code): a file or a preset name, and/or generated levels."""
    from ponder.cli.problems_cmd import parse_levels

    out: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    if dataset is not None:
        extra["dataset"] = dataset
    if limit is not None:
        extra["limit"] = limit
    if problems is not None:
        if problems in PRESET_NAMES and not Path(problems).exists():
            out.append({"preset": problems, **extra})
        else:
            out.append({"file": problems, **extra})
    if generated is not None:
        levels = list(parse_levels(generated))
        options = {"levels": levels, "per_level": per_level, "seed": seed}
        out.append({"generated": options, **extra})
    return out


def _describe_step(step: Step) -> str:
    parts = [step.config.label]
    if step.samples > 1:
        parts.append(f"x{step.samples} {step.aggregate}")
    if step.stop is not None:
        parts.append(f"stop {step.stop.to_dict()}")
    if step.exit is not None:
        rule = {k: v for k, v in step.exit.to_dict().items() if k != "rungs"}
        parts.append(f"exit at rungs {list(step.exit.rungs)} when {rule}")
    if step.min_prob is not None:
        parts.append(f"accept if p >= {step.min_prob:g}")
    if step.escalate != "never":
        parts.append(f"escalate {step.escalate}")
    return " ".join(parts)


def _describe(decision: Decision) -> str:
    return " -> ".join(_describe_step(s) for s in decision.steps)


def _plans(run: PolicyRun) -> list[dict[str, Any]]:
    from ponder.sweep.execute import distinct, worst_case_tokens

    return [
        {
            "problems": count,
            "plan": decision.to_dict(),
            "describe": _describe(decision),
            "worst_case_generated_tokens": worst_case_tokens(decision, run.settings),
        }
        for decision, count in distinct(run.decisions).values()
    ]


def _print_plan(run: PolicyRun, todo: int, path: Path) -> None:
    done = len(run.problems) - todo
    err_console.print(
        f"policy [bold]{run.policy.name}[/] as run [bold]{run.run_id}[/] into {path}: "
        f"{len(run.problems)} problems ({done} done before, {todo} to run), models "
        f"{', '.join(m.name for m in run.models)} ({run.settings.backend})"
    )
    for i, plan in enumerate(_plans(run), start=1):
        err_console.print(
            f"  plan {i} ({plan['problems']} problems, <= "
            f"{plan['worst_case_generated_tokens']} generated tokens): {plan['describe']}"
        )
    predicted = run.predicted()
    if predicted is not None:
        err_console.print(
            f"  predicted by the offline replay on its training problems: accuracy "
            f"{predicted['accuracy']:.3f}, cost {predicted['cost']:.1f} (the fit's cost unit)"
        )


class _Bar:
    """Progress over problems, with the generated tokens per second (the run's Reporter)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None
        self.tokens = 0
        self.started = 0.0

    def start(self, total: int, skipped: int) -> None:
        self.started = time.perf_counter()
        self.progress.start()
        self.task = self.progress.add_task("run", total=total, completed=skipped)

    def advance(self, problem: ProblemRef, tokens: int, ok: bool) -> None:
        self.tokens += tokens
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        assert self.task is not None
        self.progress.update(
            self.task,
            advance=1,
            description=f"{problem.problem_id} {self.tokens / elapsed:.1f} tok/s"
            + ("" if ok else " [red]error[/]"),
        )

    def finish(self) -> None:
        self.progress.stop()


def _print_summary(
    run: PolicyRun, summary: RunSummary, stats: dict[str, Any], predicted: dict[str, float] | None
) -> None:
    from rich.table import Table

    console = out_console()
    console.print(
        f"run {summary.run_id}: {summary.done} problems run, {summary.skipped} skipped (done "
        f"before), {summary.errors} errors in {summary.wall_s:.1f} s"
    )
    for message in summary.error_messages[:5]:
        console.print(f"  error: {message}")
    if not stats.get("problems"):
        return
    table = Table(title=f"{run.policy.name}: measured live vs predicted offline")
    for column in ("", "problems", "accuracy", "95% CI", "generated tok", "prompt tok"):
        table.add_column(column, justify="left" if not column else "right")
    table.add_column("steps", justify="right")
    table.add_column("rungs", justify="right")
    table.add_row(
        "measured",
        str(stats["problems"]),
        f"{stats['accuracy']:.3f}",
        f"{stats['ci_low']:.3f}-{stats['ci_high']:.3f}",
        f"{stats['mean_generated_tokens']:.1f}",
        f"{stats['mean_prompt_tokens']:.1f}",
        f"{stats['mean_steps']:.2f}",
        f"{stats['mean_rungs']:.2f}",
    )
    if predicted is not None:
        inside = stats["ci_low"] <= predicted["accuracy"] <= stats["ci_high"]
        table.add_row(
            "predicted (replay, training problems)",
            "-",
            f"{predicted['accuracy']:.3f}",
            "inside" if inside else "OUTSIDE",
            f"{predicted['cost']:.1f}",
            "-",
            "-",
            "-",
        )
    console.print(table)
    if predicted is not None:
        console.print(
            "  the prediction's cost is in the fit's cost unit (tokens: generated tokens)."
        )


def run_command(
    policy_path: Annotated[Path, typer.Argument(help="A fitted policy (`ponder fit --save`).")],
    problems: Annotated[
        str | None,
        typer.Option(
            "--problems", help="Problem file (JSONL / CSV), or a preset name: gsm8k, math500."
        ),
    ] = None,
    generated: Annotated[
        str | None,
        typer.Option(help="Generated arithmetic problems at these levels, e.g. 1-4 or 1,3."),
    ] = None,
    per_level: Annotated[int, typer.Option(min=1, help="Generated problems per level.")] = 8,
    seed: Annotated[
        int, typer.Option(help="Seed of the generated problems and of the sampled chains.")
    ] = 0,
    dataset: Annotated[
        str | None,
        typer.Option(help="Dataset name for the problems (keeps fresh problems apart)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Only the first N problems of each source.")
    ] = None,
    decide_as: Annotated[
        str | None,
        typer.Option(
            help="Dataset name the policy sees when deciding (default: the problems' own), "
            "e.g. the name it was fitted on, for fresh problems stored under --dataset."
        ),
    ] = None,
    store: StoreOption = None,
    backend: Annotated[str, typer.Option(help="llamacpp, openai or fake.")] = "llamacpp",
    threads: Annotated[
        int | None, typer.Option(min=1, help="CPU threads per local model (llamacpp).")
    ] = None,
    option: Annotated[
        list[str] | None, typer.Option(help="Backend option KEY=VALUE (repeatable).")
    ] = None,
    reserve: Annotated[int, typer.Option(min=1, help="Answer reserve (tokens).")] = 16,
    temperature: Annotated[
        float, typer.Option(min=0.0, help="Temperature of modes recorded as sampled.")
    ] = 0.7,
    top_p: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="top_p of modes recorded as sampled.")
    ] = 0.95,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plans and the predictions; run nothing.")
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Execute a fitted policy live on the local models and record its outcomes and costs.

    Each problem gets the policy's plan (steps, stop and exit rules, escalation), run with
    the same engines, prompts and budgets as `ponder sweep run`. One outcome row per problem
    goes into the store under the run id run:POLICY:FINGERPRINT (mode `policy`), so a run
    resumes where it stopped. The summary sets measured accuracy and tokens beside the
    offline replay's prediction. Bad input exits with status 2 and writes nothing.

    \b
    Examples:
      ponder run fitted.json --generated 1-4 --per-level 10 --seed 7 --dataset arith-s7 \\
          --decide-as arith
      ponder run fitted.json --problems gsm8k --limit 40 --store live.sqlite --json
      ponder run fitted.json --problems mine.jsonl --dry-run
    """
    try:
        run, path, todo = _prepare(
            policy_path,
            _sources(problems, generated, per_level, seed, dataset, limit),
            store,
            backend,
            threads,
            option,
            reserve,
            temperature,
            top_p,
            seed,
            decide_as,
        )
    except InputError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    predicted = run.predicted()
    if dry_run:
        if json_out:
            echo_json(
                {
                    "run_id": run.run_id,
                    "policy": run.policy.describe(),
                    "store": str(path),
                    "problems": len(run.problems),
                    "pending": todo,
                    "plans": _plans(run),
                    "predicted": predicted,
                }
            )
        else:
            _print_plan(run, todo, path)
            err_console.print("dry run: nothing was run")
        return
    if not json_out:
        _print_plan(run, todo, path)
    try:
        summary, stats = _execute(run, path, enabled=sys.stderr.isatty() and not json_out)
    except InputError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: finished problems are stored; run again to resume ({path})"
        )
        raise typer.Exit(130) from None
    if json_out:
        echo_json(
            {
                "run_id": run.run_id,
                "policy": run.policy.describe(),
                "store": str(path),
                "problems": summary.problems,
                "done": summary.done,
                "skipped": summary.skipped,
                "errors": summary.errors,
                "error_messages": summary.error_messages[:20],
                "wall_s": round(summary.wall_s, 3),
                "measured": stats,
                "predicted": predicted,
                "plans": _plans(run),
            }
        )
    else:
        _print_summary(run, summary, stats, predicted)


def _prepare(
    policy_path: Path,
    sources: list[dict[str, Any]],
    store: Path | None,
    backend: str,
    threads: int | None,
    option: list[str] | None,
    reserve: int,
    temperature: float,
    top_p: float,
    seed: int,
    decide_as: str | None,
) -> tuple[PolicyRun, Path, int]:
    """Everything checked before a model starts or the store is written."""
    from ponder.backends import BACKEND_KINDS
    from ponder.cli._common import store_path
    from ponder.cli.sweep_cmd import _option_values
    from ponder.policies.serialization import load_policy
    from ponder.store import Store
    from ponder.sweep.execute import (
        RunSettings,
        check_stored_problems,
        load_run_problems,
        pending,
        plan_run,
    )

    if backend not in BACKEND_KINDS:
        raise InputError(f"--backend {backend!r}: expected one of {sorted(BACKEND_KINDS)}")
    if not 0 < top_p <= 1:
        raise InputError(f"--top-p {top_p}: must be in (0, 1]")
    policy = load_policy(policy_path)
    frame, refs = load_run_problems(sources)
    settings = RunSettings(reserve, temperature, top_p, seed, backend, decide_as)
    run = plan_run(
        policy,
        frame,
        refs,
        settings,
        options=_option_values(option),
        threads=threads,
        source=policy_path.name,
    )
    path = store_path(store)
    todo = len(run.problems)
    if path.exists():
        with Store(path, readonly=True) as st:
            check_stored_problems(run, st)
            todo = len(pending(run, st))
    return run, path, todo


def _execute(run: PolicyRun, path: Path, *, enabled: bool) -> tuple[RunSummary, dict[str, Any]]:
    """Open the engines first (a model that fails to load writes nothing), then the store."""
    import asyncio

    from ponder.cli._common import progress
    from ponder.store import Store
    from ponder.sweep.execute import measured, run_policy
    from ponder.sweep.runner import open_backends

    async def go() -> tuple[RunSummary, dict[str, Any]]:
        engines = await open_backends(run.spec())
        try:
            with Store(path) as st:
                bar = _Bar(progress(transient=False, enabled=enabled))
                summary = await run_policy(run, st, backends=engines, reporter=bar)
                return summary, measured(st, run.run_id)
        finally:
            for engine in engines.values():
                await engine.aclose()

    return asyncio.run(go())
