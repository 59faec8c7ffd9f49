"""The `ponder` command line: one module per verb, thin over the library."""

from __future__ import annotations

import sys

import typer

from ponder.errors import PonderError

app = typer.Typer(
    name="ponder",
    help="How much inference-time compute should each request get? Profile, decide, explain.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # Each verb module adds its commands to `app`; imported here so `ponder --help` lists them.
    from ponder.cli import (
        curves_cmd,
        data_cmd,
        demo_cmd,
        export_cmd,
        grade_cmd,
        import_cmd,
        policy_cmd,
        report_cmd,
    )

    app.command("demo")(demo_cmd.demo_command)
    app.command("import")(import_cmd.import_command)
    app.command("curves")(curves_cmd.curves_command)
    app.command("report")(report_cmd.report_command)
    app.command("fit")(policy_cmd.fit_command)
    app.command("evaluate")(policy_cmd.evaluate_command)
    app.command("grade")(grade_cmd.grade_command)
    app.command("export")(export_cmd.export_command)
    app.add_typer(data_cmd.data_app, name="data")


def main() -> None:
    """Console entry point: usage errors exit 2; a PonderError prints one line and exits 1."""
    _register()
    try:
        app()
    except PonderError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
