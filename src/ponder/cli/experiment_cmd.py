"""`ponder experiment`: generate the data a live claim needs, with a model, resumably."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ponder.cli._common import StoreOption, open_store, out_console, progress
from ponder.errors import InputError


def experiment_command(
    claim: Annotated[str, typer.Argument(help="A live claim (see `ponder claims --list`).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model whose chains to use.")],
    dataset: Annotated[
        str, typer.Option("--dataset", "-d", help="Dataset with the model's recorded chains.")
    ] = "arith",
    chains: Annotated[
        int,
        typer.Option(
            min=1,
            help="Items to run: chains (problems for search-rounds); done ones count.",
        ),
    ] = 24,
    positions: Annotated[
        int | None,
        typer.Option(
            min=1, help="forking-tokens: position pairs per chain (high entropy / other)."
        ),
    ] = None,
    draws: Annotated[
        int | None,
        typer.Option(min=1, help="token-functions: random edits per removal count."),
    ] = None,
    verify_tokens: Annotated[
        int | None,
        typer.Option(min=1, help="search-rounds: tokens of each verification reply."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the chain order and the draws.")] = 0,
    backend: Annotated[str, typer.Option(help="llamacpp or openai.")] = "llamacpp",
    threads: Annotated[
        int | None, typer.Option(min=1, help="CPU threads of the local model (llamacpp).")
    ] = None,
    option: Annotated[
        list[str] | None, typer.Option(help="Backend option KEY=VALUE (repeatable).")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Run the experiment a live claim reads (forks, edits or checks of recorded chains).

    The rows are kept apart from the recorded ones (run ids `claims/...`; curves and
    policies never see them). A run resumes where it stopped: items already done are
    skipped, failed ones retried. Everything is checked before anything is written (the
    claim, the dataset's chains for this model, the model, the backend). Then
    `ponder claims -c CLAIM` gives the verdict.

    \b
    Examples:
      ponder experiment forking-tokens -m qwen2.5-coder-0.5b --chains 24
      ponder experiment token-functions -m qwen2.5-coder-0.5b --draws 2
      ponder experiment search-rounds -m qwen2.5-coder-0.5b --chains 40
      ponder experiment forking-tokens -m qwen2.5-coder-1.5b --threads 2 --store s.sqlite
      ponder experiment forking-tokens -m my-model --backend openai \\
          --option base_url=http://127.0.0.1:8000/v1
    """
    import asyncio

    from ponder.claims import get_claim, load_claim_data
    from ponder.claims.experiments import open_model_backend, run_experiment
    from ponder.cli.sweep_cmd import _option_values

    chosen = get_claim(claim)
    make = getattr(chosen, "experiment", None)
    if not chosen.live or make is None:
        raise InputError(
            f"claim {claim!r} reads stored outcomes and has no experiment to run: "
            "`ponder claims -c " + claim + "` checks it directly"
        )
    experiment = make(
        **_experiment_options(claim, make, seed=seed, positions=positions, draws=draws)
    )
    console = out_console()
    with open_store(store, create=False) as st:
        (data,) = load_claim_data(st, datasets=[dataset])
        experiment.items(data, model)  # no usable chains for this model: fails before loading it
    options: dict[str, Any] = _option_values(option)
    engine = open_model_backend(model, backend=backend, options=options, threads=threads)
    with open_store(store, create=True) as st, progress() as bar:
        task = bar.add_task(f"{claim} on {model}", total=chains)

        def on_item(item: Any, ok: bool, message: str) -> None:
            bar.update(task, advance=1 if ok else 0)
            if not ok:
                console.print(f"  {item.problem_id}: error: {message}", highlight=False)

        async def go() -> Any:
            try:
                return await run_experiment(
                    experiment, engine, st, data, limit=chains, on_item=on_item
                )
            finally:
                await engine.aclose()

        summary = asyncio.run(go())
    console.print(
        f"{claim} on {model}: {summary.done} chains run now, {summary.skipped} done before, "
        f"{summary.errors} failed; {summary.rows} rows in {summary.wall_s:.0f} s "
        f"(run {summary.run_id})",
        highlight=False,
    )
    if not summary.complete:
        console.print(
            f"fewer than {chains} chains done: run the same command again to retry",
            highlight=False,
        )
    store_hint = f" --store {store}" if store is not None else ""
    console.print(f"verdict: `ponder claims -c {claim} -d {dataset}{store_hint}`", highlight=False)
    if summary.errors and summary.done == 0 and summary.skipped == 0:
        raise typer.Exit(1)


def _experiment_options(claim: str, make: Any, **given: int | None) -> dict[str, int]:
    """The options this claim's experiment takes; one it does not take is an error."""
    import inspect

    takes = set(inspect.signature(make).parameters)
    out: dict[str, int] = {}
    for name, value in given.items():
        if value is None:
            continue
        if name not in takes:
            known = ", ".join(f"--{p.replace('_', '-')}" for p in sorted(takes - {"seed"}))
            raise InputError(
                f"--{name.replace('_', '-')} does not apply to {claim!r} "
                f"(its options: {known or 'none'})"
            )
        out[name] = value
    return out
