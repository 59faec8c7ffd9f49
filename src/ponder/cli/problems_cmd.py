"""`ponder problems`: generated word problems whose difficulty is set by construction."""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from ponder.cli._common import echo_json, reflow
from ponder.errors import InputError

problems_app = typer.Typer(
    help=(
        "Problem sets: generate arithmetic word problems whose difficulty (steps, number "
        "size, distractor sentences) is set by construction, with exact gold answers."
    ),
    no_args_is_help=True,
)


def parse_levels(text: str) -> tuple[int, ...]:
    """`1-5`, `2,4` or `1-3,5` -> levels in the order given; one-line error otherwise."""
    levels: list[int] = []
    for part in text.split(","):
        part = part.strip()
        low, sep, high = part.partition("-")
        try:
            first = int(low)
            last = int(high) if sep else first
        except ValueError:
            raise InputError(
                f"--levels {text!r}: expected levels 1..5 such as 1-5, 2,4 or 1-3,5"
            ) from None
        if first > last:
            raise InputError(f"--levels {text!r}: range {part!r} runs backwards")
        levels.extend(range(first, last + 1))
    bad = [level for level in levels if not 1 <= level <= 5]
    if bad:
        raise InputError(f"--levels {text!r}: level {bad[0]} is not in 1..5")
    if len(set(levels)) != len(levels):
        raise InputError(f"--levels {text!r}: a level is listed twice")
    return tuple(levels)


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file beside `path`, so an error leaves no half file."""
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def generate_command(
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="JSONL file to write (default: print to stdout)."),
    ] = None,
    levels: Annotated[
        str, typer.Option(help="Difficulty levels 1..5: a range, a list or both (1-3,5).")
    ] = "1-5",
    per_level: Annotated[int, typer.Option(min=1, help="Problems per level.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed: the same seed writes the same bytes.")] = 0,
    dataset: Annotated[str, typer.Option(help="Dataset name written on every problem.")] = "arith",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    json_: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary (with -o) for scripts.")
    ] = False,
) -> None:
    """Generate arithmetic word problems with exact integer answers, as JSONL.

    Each line has dataset, problem_id (L3-017), text, gold, level and metadata (the knobs:
    steps, digits, distractors, ops; the program that computes the gold; the seed). Level 1 is
    one step with one-digit numbers; level 5 is 6-8 steps with 3-4 digit numbers and 2-3
    distractor sentences (docs/problems.md has the table).

    \b
    Examples:
      ponder problems generate --levels 1-5 --per-level 32 --seed 0 -o problems.jsonl
      ponder problems generate --levels 2,4 --per-level 5 | jq -r .text
      ponder problems generate -o arith.jsonl --json
    """
    chosen = parse_levels(levels)
    if output is not None:
        if output.is_dir():
            raise InputError("is a folder, expected a .jsonl file to write", path=output)
        if output.suffix.lower() not in (".jsonl", ".ndjson"):
            raise InputError("expected a .jsonl file name", path=output)
        if output.exists() and not force:
            raise InputError("file exists; pass --force to overwrite it", path=output)
        if not output.parent.is_dir() and str(output.parent):
            raise InputError("folder does not exist", path=output.parent)
    from ponder.problems.generator import generate_problems, problem_record, write_jsonl

    problems = generate_problems(chosen, per_level=per_level, seed=seed, dataset=dataset)
    if output is None:
        import json

        for problem in problems:
            typer.echo(json.dumps(problem_record(problem), ensure_ascii=False))
        return
    _write_atomically(output, lambda tmp: write_jsonl(problems, tmp))
    counts = Counter(p.level for p in problems)
    if json_:
        echo_json(
            {
                "path": str(output),
                "dataset": dataset,
                "seed": seed,
                "problems": len(problems),
                "per_level": {str(level): counts[level] for level in chosen},
            }
        )
    else:
        typer.echo(
            f"wrote {len(problems)} problems ({dataset}, levels {levels}, seed {seed}) to {output}"
        )


problems_app.command("generate", help=reflow(generate_command.__doc__))(generate_command)
