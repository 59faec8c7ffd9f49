"""`ponder curves`: accuracy vs budget per model, dataset and mode, with 95% CIs."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from ponder.cli._common import (
    DatasetsOption,
    JsonOption,
    ModelsOption,
    NBootOption,
    SeedOption,
    StoreOption,
    echo_json,
    err_console,
    open_store,
    out_console,
)

TABLES = ("cells", "sweet-spots", "pass-at-k", "maj-at-k", "difficulty")


def curves_command(
    dataset: DatasetsOption = None,
    model: ModelsOption = None,
    table: Annotated[str, typer.Option(help=f"Which table: {', '.join(TABLES)}.")] = "cells",
    derived: Annotated[
        bool,
        typer.Option(
            help="Add cells derived from larger hard caps (strict rule: a response longer "
            "than the cap is unanswered; a lower bound on a recorded run)."
        ),
    ] = True,
    n_boot: NBootOption = 1000,
    seed: SeedOption = 0,
    store: StoreOption = None,
    json_: JsonOption = False,
) -> None:
    """Accuracy per (model, dataset, mode, budget) with bootstrap CIs over problems.

    \b
    Examples:
      ponder curves                          # every cell, as a table
      ponder curves -d aime24 -m r1-1.5b     # one model's curve
      ponder curves --table sweet-spots      # best budget and overthinking test
      ponder curves --json > cells.json      # records for scripts
    """
    if table not in TABLES:
        raise typer.BadParameter(
            f"{table!r}: expected one of {', '.join(TABLES)}", param_hint="--table"
        )
    from ponder.analysis import load_curves  # heavy imports only when needed

    with open_store(store) as st, err_console.status("computing curves"):
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
    _print_table(frame, table)


def _records(frame: pd.DataFrame) -> list[dict[str, object]]:
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


_K_COLUMNS = ["model", "dataset", "mode", "budget", "k", "value", "ci_low", "ci_high", "n_problems"]
_SHOW = {
    "cells": [
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
    ],
    "sweet-spots": [
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
    ],
    "pass-at-k": _K_COLUMNS,
    "maj-at-k": _K_COLUMNS,
    "difficulty": [
        "model",
        "dataset",
        "mode",
        "budget",
        "difficulty",
        "n_problems",
        "accuracy",
        "ci_low",
        "ci_high",
    ],
}


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() and abs(value) >= 100 else f"{value:.3f}"
    return str(value)


def _print_table(frame: pd.DataFrame, name: str) -> None:
    console = out_console()
    if frame.empty:
        console.print(f"no rows in the {name} table for this selection")
        return
    columns = [c for c in _SHOW[name] if c in frame.columns]
    table = Table(title=name)
    for column in columns:
        table.add_column(
            column.replace("_", " "), justify="left" if frame[column].dtype == object else "right"
        )
    for _, row in frame.iterrows():
        table.add_row(*(_cell(row[c]) for c in columns))
    console.print(table)
