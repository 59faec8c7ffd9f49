"""`ponder curves`: accuracy vs budget per model, dataset and mode, with 95% CIs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ponder.cli._common import (
    DatasetsOption,
    JsonOption,
    ModelsOption,
    NBootOption,
    SeedOption,
    StoreOption,
    WideOption,
    check_names,
    echo_json,
    err_console,
    open_store,
    out_console,
)

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

TABLES = ("cells", "sweet-spots", "pass-at-k", "maj-at-k", "difficulty")


def curves_command(
    dataset: DatasetsOption = None,
    model: ModelsOption = None,
    table: Annotated[str, typer.Option(help=f"Which table: {', '.join(TABLES)}.")] = "cells",
    derived: Annotated[
        bool,
        typer.Option(
            "--derived/--no-derived",
            help="Add cells derived from larger hard caps (strict rule: a response longer "
            "than the cap is unanswered; a lower bound on a recorded run).",
        ),
    ] = True,
    n_boot: NBootOption = 1000,
    seed: SeedOption = 0,
    store: StoreOption = None,
    json_: JsonOption = False,
    wide: WideOption = False,
) -> None:
    """Accuracy per (model, dataset, mode, budget) with bootstrap CIs over problems.

    \b
    Examples:
      ponder curves                        # every cell, as a table
      ponder curves -d aime24 -m r1-1.5b   # one model's curve
      ponder curves --table sweet-spots    # best budget, overthinking test
      ponder curves --json > cells.json    # records for scripts
      ponder curves --wide                 # one flat table at any width
      ponder ls                            # the names -d and -m accept
    """
    if table not in TABLES:
        raise typer.BadParameter(
            f"{table!r}: expected one of {', '.join(TABLES)}", param_hint="--table"
        )
    from ponder.analysis import load_curves  # heavy imports only when needed

    with open_store(store) as st, err_console.status("computing curves"):
        check_names(st, datasets=dataset, models=model)
        curves = load_curves(
            st, datasets=dataset, models=model, derive=derived, n_boot=n_boot, seed=seed
        )
    frame = {
        "cells": curves.cells,
        "sweet-spots": curves.sweet_spots,
        "pass-at-k": curves.pass_at_k,
        "maj-at-k": curves.maj_at_k,
        "difficulty": curves.difficulty,
    }[table]
    if json_:
        echo_json(_records(frame))
        return
    print_curves_table(out_console(), frame, table, wide=wide)


def _records(frame: pd.DataFrame) -> list[dict[str, object]]:
    import pandas as pd

    out = []
    for record in frame.to_dict("records"):
        clean: dict[str, object] = {}
        for key, value in record.items():
            if isinstance(value, list | tuple):
                clean[str(key)] = list(value)
            elif pd.isna(value):
                clean[str(key)] = None
            else:
                clean[str(key)] = value
        out.append(clean)
    return out


# The cell columns the terminal table shows (names: CELL_LABELS).
_CELL_COLUMNS: tuple[str, ...] = (
    "model",
    "dataset",
    "mode",
    "budget",
    "derived",
    "n_problems",
    "n_samples",
    "accuracy",
    "ci_low",
    "ci_high",
    "mean_tokens",
    "truncation_rate",
)
_K_LABELS = {
    "model": "model",
    "dataset": "dataset",
    "mode": "mode",
    "budget": "budget",
    "k": "k",
    "value": "value",
    "ci_low": "95% low",
    "ci_high": "95% high",
    "n_problems": "problems",
}
_DIFFICULTY_LABELS = {
    "model": "model",
    "dataset": "dataset",
    "mode": "mode",
    "budget": "budget",
    "difficulty": "difficulty",
    "n_problems": "problems",
    "accuracy": "accuracy",
    "ci_low": "95% low",
    "ci_high": "95% high",
}


def _labels(name: str) -> dict[str, str]:
    from ponder.curves.aggregate import CELL_LABELS
    from ponder.curves.sweetspot import SWEET_SPOT_LABELS

    sweet = {
        c: SWEET_SPOT_LABELS[c]
        for c in (
            "model",
            "dataset",
            "mode",
            "sweet_spot",
            "sweet_spot_accuracy",
            "sweet_spot_share",
            "sweet_spot_min",
            "largest_budget",
            "drop",
            "drop_ci_low",
            "drop_ci_high",
            "overthinking",
        )
    }
    return {
        "cells": {c: CELL_LABELS[c] for c in _CELL_COLUMNS},
        "sweet-spots": sweet,
        "pass-at-k": _K_LABELS,
        "maj-at-k": _K_LABELS,
        "difficulty": _DIFFICULTY_LABELS,
    }[name]


_EMPTY_BECAUSE = {
    "sweet-spots": ": a sweet spot needs at least two recorded budgets of one model, dataset "
    "and mode",
}


def print_curves_table(console: Console, frame: pd.DataFrame, name: str, *, wide: bool) -> None:
    """One curves table, readable at the console's width (see `ponder.cli._tables`)."""
    from ponder.cli._tables import print_table

    if frame.empty:
        why = _EMPTY_BECAUSE.get(name, "")
        console.print(f"no rows in the {name} table for this selection{why}")
        return
    print_table(console, frame, _labels(name), title=name, wide=wide)
