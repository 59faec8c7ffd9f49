"""`ponder grade`: see what ponder extracts from a response and whether it matches."""

from __future__ import annotations

from typing import Annotated

import typer

from ponder.cli._common import JsonOption, echo_json


def grade_command(
    response: Annotated[str, typer.Argument(help="A response text or a bare answer.")],
    gold: Annotated[str, typer.Argument(help="The reference answer.")],
    kind: Annotated[str, typer.Option(help="math, number or choice.")] = "math",
    json_: JsonOption = False,
) -> None:
    """Print the extracted answer and whether it matches GOLD (exit 0 either way).

    \b
    Examples:
      ponder grade 'so the answer is \\boxed{\\dfrac{1}{2}}' '\\frac12'
      ponder grade 'The answer is (C).' C --kind choice --json
    """
    if kind not in ("math", "number", "choice"):
        raise typer.BadParameter(f"{kind!r}: expected math, number or choice", param_hint="--kind")
    from ponder.grading import grade  # imported here: math-verify loads sympy, slow

    result = grade(response, gold, kind=kind)  # type: ignore[arg-type]
    if json_:
        echo_json({"extracted": result.extracted, "match": result.match})
    else:
        typer.echo(f"extracted: {result.extracted}")
        typer.echo(f"match:     {'yes' if result.match else 'no'}")
