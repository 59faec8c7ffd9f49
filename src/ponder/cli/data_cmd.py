"""`ponder data`: list the known datasets and pull them, verified, from upstream or a mirror."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ponder.cli._common import echo_json, out_console, reflow
from ponder.errors import InputError

data_app = typer.Typer(
    help=(
        "Public datasets ponder can analyse: list them and pull them (sha256-verified) from "
        "their public upstream or from a mirror. Files go to the user data folder, never into "
        "a repository."
    ),
    no_args_is_help=True,
)


# The dataset names (what `-d` takes) each source yields once imported. Sources with outcomes
# name their datasets; problem sets only supply problem texts and gold answers for them.
# tests/cli/test_cli_ux.py checks the outcome sources against a real import.
PROVIDES: dict[str, tuple[str, ...]] = {
    "reasoning_budget_sweep": ("aime24", "aime25", "math500"),
    "mmlu_pro_math": ("mmlu_pro_math",),
    "routellm_gsm8k": ("gsm8k",),
    "matharena_aime2025_I": ("aime25",),
}
PROBLEM_SETS: dict[str, tuple[str, ...]] = {
    "math500": ("math500",),
    "gsm8k": ("gsm8k",),
    "matharena_competitions": ("aime24", "aime25"),
}


def provides(name: str) -> str:
    """`aime24, aime25` for an outcome source, `texts for math500` for a problem set."""
    if name in PROVIDES:
        return ", ".join(PROVIDES[name])
    if name in PROBLEM_SETS:
        return "problem texts for " + ", ".join(PROBLEM_SETS[name])
    return "-"


def check_source(name: str) -> None:
    """Fail with one line when `name` is not a source: a dataset name (what `-d` takes) gets
    the sources that provide it, a misspelling the closest source."""
    import difflib

    from ponder.datasets import DATASETS

    if name in DATASETS:
        return
    sources = [s for s, names in {**PROVIDES, **PROBLEM_SETS}.items() if name in names]
    if sources:
        raise InputError(
            f"{name!r} is a dataset name, not a source: pull {' or '.join(sources)} "
            "(see `ponder data list`)"
        )
    close = difflib.get_close_matches(name, list(DATASETS), n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise InputError(f"unknown source {name!r}{hint}; sources: {', '.join(DATASETS)}")


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB"):
        if size < 1024 or unit == "MB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} MB"  # pragma: no cover


def _records() -> list[dict[str, Any]]:
    from ponder.datasets import DATASETS, find_dataset_dir

    records = []
    for spec in DATASETS.values():
        local = find_dataset_dir(spec.name)
        records.append(
            {
                "name": spec.name,
                "datasets": list(PROVIDES.get(spec.name, ())),
                "problem_texts_for": list(PROBLEM_SETS.get(spec.name, ())),
                "title": spec.title,
                "folder": spec.folder,
                "files": [f.path for f in spec.mirror_files],
                "size": spec.size,
                "license": spec.license,
                "attribution": spec.attribution,
                "source": "mirror-needed" if spec.needs_mirror else "upstream",
                "needs_mirror": spec.needs_mirror,
                "mirror_reason": spec.mirror_reason or None,
                "upstream_repo": spec.upstream_repo,
                "upstream_commit": spec.upstream_commit,
                "upstream_files": [f.upstream_url for f in spec.upstream_files],
                "local": str(local.resolve()) if local is not None else None,
            }
        )
    return records


def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of records.")] = False,
) -> None:
    """List the known sources: the dataset names they provide, files, size, licence, where
    they come from and where a local copy is.

    A source is what `ponder data pull NAME` fetches; the dataset names in the "datasets
    (-d)" column are what `ponder curves -d`, `ponder report -d` and `ponder evaluate -d`
    take after `ponder import` (`ponder ls` lists what a store holds). One dataset can come
    from several sources: aime25 has 30 problems from reasoning_budget_sweep and 15 from
    matharena_aime2025_I.

    From "upstream" means `ponder data pull NAME` fetches it from its public repository at a
    pinned commit; "mirror-needed" means the recorded copy is a conversion that exists only on
    a mirror (pass --mirror or set PONDER_DATA_MIRROR).
    """
    records = _records()
    if as_json:
        echo_json(records)
        return
    from rich.table import Table

    table = Table(title="ponder data sources")
    table.add_column("source", no_wrap=True)
    table.add_column("datasets (-d)")
    table.add_column("files", justify="right")
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("licence")
    table.add_column("from", no_wrap=True)
    table.add_column("local copy", overflow="fold")
    for r in records:
        table.add_row(
            r["name"],
            provides(r["name"]),
            str(len(r["files"])),
            _human_size(r["size"]),
            r["license"],
            r["source"],
            r["local"] or "-",
        )
    console = out_console()
    console.print(table)
    mirror_only = [r for r in records if r["needs_mirror"]]
    for r in mirror_only:
        console.print(f"[bold]{r['name']}[/bold] needs a mirror: {r['mirror_reason']}.")
    if mirror_only:
        console.print("Pass --mirror URL_OR_DIR to `ponder data pull`, or set PONDER_DATA_MIRROR.")


def pull_cmd(
    name: Annotated[str, typer.Argument(help="Source name, as shown by `ponder data list`.")],
    mirror: Annotated[
        str | None,
        typer.Option(
            "--mirror",
            metavar="URL_OR_DIR",
            help="Mirror serving the FOLDER/FILE layout: http(s) URL, folder or file:// URL. "
            "Default: $PONDER_DATA_MIRROR, else the public upstream.",
        ),
    ] = None,
    dest: Annotated[
        Path | None,
        typer.Option("--dest", metavar="DIR", help="Datasets root (default: <data dir>/datasets)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Fetch again even if the files verify.")
    ] = False,
    show_progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Progress bar on a terminal.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Download a source (the files behind one or more datasets), verifying each file's
    sha256 before it is put in place.

    Files already present with the right checksum are not fetched again. Upstream files whose
    checksum is not pinned are trusted on first use: their sha256 is recorded in
    checksums.json next to them and checked on every later pull.

    Examples:

        ponder data pull reasoning_budget_sweep

        ponder data pull mmlu_pro_math --mirror https://example.org/ponder-data

        ponder data pull gsm8k --mirror ~/shared/data --dest /tmp/datasets

        PONDER_DATA_MIRROR=http://127.0.0.1:8000 ponder data pull math500 --json
    """
    from ponder.datasets import pull

    check_source(name)
    result = pull(name, dest=dest, mirror=mirror, progress=show_progress, force=force)
    if as_json:
        echo_json(result.to_dict())
        return
    parts = [f"{len(result.written)} written ({_human_size(result.bytes_written)})"]
    if result.skipped:
        parts.append(f"{len(result.skipped)} already verified")
    if result.recorded:
        parts.append(f"{len(result.recorded)} checksum(s) recorded on first use")
    typer.echo(f"{result.name}: {', '.join(parts)} from {result.source} into {result.folder}")


data_app.command("list", help=reflow(list_cmd.__doc__))(list_cmd)
data_app.command("pull", help=reflow(pull_cmd.__doc__))(pull_cmd)
