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
    from ponder.cli import data_cmd, export_cmd, grade_cmd, import_cmd

    app.command("import")(import_cmd.import_command)
    app.command("grade")(grade_cmd.grade_command)
    app.command("export")(export_cmd.export_command)
    app.add_typer(data_cmd.data_app, name="data")


def main() -> None:
    """Console entry point: print PonderErrors as one line on stderr and exit 1."""
    _register()
    try:
        app(standalone_mode=False)
    except PonderError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors come through here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
