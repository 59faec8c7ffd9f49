"""The `ponder` command line: one module per verb, thin over the library.

Verb modules import pandas, numpy, the store and math-verify inside their command bodies, so
`ponder --help` and every `ponder VERB --help` start without loading them.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from ponder import __version__
from ponder.errors import PonderError

app = typer.Typer(
    name="ponder",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ponder {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """How much inference-time compute should each request get? Profile, decide, explain.

    \b
    Start here:
      ponder import ../shared/data      # recorded sweeps into the store
      ponder ls                         # what the store holds: datasets, models, budgets
      ponder curves -d aime24           # accuracy vs budget with 95% CIs
    """


def _hide_flag_types() -> None:
    """Show flags as flags: typer's rich help prints `<bool>` beside options that take no
    value (`--json <bool>`), which reads as if they needed one."""
    from typer.core import TyperOption

    original = getattr(TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "_ponder_patched", False):
        return  # another typer: its help may not print `<bool>` at all

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else original(self, ctx)

    display_type_rich._ponder_patched = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


def _register() -> None:
    # Each verb module adds its commands to `app`; imported here so `ponder --help` lists them.
    from ponder.cli import (
        builtin_cmd,
        claims_cmd,
        compact_cmd,
        curves_cmd,
        data_cmd,
        demo_cmd,
        experiment_cmd,
        export_cmd,
        grade_cmd,
        import_cmd,
        ls_cmd,
        models_cmd,
        policy_cmd,
        problems_cmd,
        recalibrate_cmd,
        report_cmd,
        run_cmd,
        serve_cmd,
        sweep_cmd,
    )
    from ponder.cli._common import reflow

    _hide_flag_types()
    app.command("demo")(demo_cmd.demo_command)
    app.command("import")(import_cmd.import_command)
    app.command("ls", help=reflow(ls_cmd.ls_command.__doc__))(ls_cmd.ls_command)
    app.command("compact", help=reflow(compact_cmd.compact_command.__doc__))(
        compact_cmd.compact_command
    )
    app.command("curves")(curves_cmd.curves_command)
    app.command("report")(report_cmd.report_command)
    app.command("fit")(policy_cmd.fit_command)
    app.command("evaluate")(policy_cmd.evaluate_command)
    app.command("claims", help=reflow(claims_cmd.claims_command.__doc__))(claims_cmd.claims_command)
    app.command("experiment", help=reflow(experiment_cmd.experiment_command.__doc__))(
        experiment_cmd.experiment_command
    )
    app.command("grade")(grade_cmd.grade_command)
    app.command("export")(export_cmd.export_command)
    app.command("run", help=reflow(run_cmd.run_command.__doc__))(run_cmd.run_command)
    app.command("serve", help=reflow(serve_cmd.serve_command.__doc__))(serve_cmd.serve_command)
    app.command("recalibrate", help=reflow(recalibrate_cmd.recalibrate_command.__doc__))(
        recalibrate_cmd.recalibrate_command
    )
    app.add_typer(data_cmd.data_app, name="data")
    if not any(c.name == "export" for c in sweep_cmd.sweep_app.registered_commands):
        sweep_cmd.sweep_app.command("export")(builtin_cmd.export_command)
    app.add_typer(sweep_cmd.sweep_app, name="sweep")
    app.add_typer(models_cmd.models_app, name="models")
    app.add_typer(problems_cmd.problems_app, name="problems")


def main() -> None:
    """Console entry point: usage errors exit 2; a PonderError prints one line and exits 1."""
    _register()
    try:
        app()
    except PonderError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
