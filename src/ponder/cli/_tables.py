"""Terminal tables that stay readable at 80 columns and print numbers alike within a column.

A number is never cut (no `0.0…`): each numeric column gets at least the width of its longest
value, headers wrap at spaces, and when the flat table does not fit the terminal the rows are
grouped under a heading line (model · dataset · mode) so the table keeps only numbers. Piped
output keeps the full flat table (the console is wide then).

Imported by command bodies only: it needs pandas.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

Kind = Literal["text", "count", "budget", "rate", "signed", "tokens", "flag"]

# How each known column prints; a column not listed prints by its dtype.
KINDS: dict[str, Kind] = {
    "model": "text",
    "dataset": "text",
    "mode": "text",
    "difficulty": "text",
    "budget_kind": "text",
    "budget": "budget",
    "source_budget": "budget",
    "sweet_spot": "budget",
    "sweet_spot_min": "budget",
    "largest_budget": "budget",
    "n_problems": "count",
    "n_samples": "count",
    "n_budgets": "count",
    "n_resamples": "count",
    "k": "count",
    "mean_tokens": "tokens",
    "median_tokens": "tokens",
    "p90_tokens": "tokens",
    "drop": "signed",
    "drop_ci_low": "signed",
    "drop_ci_high": "signed",
    "derived": "flag",
    "overthinking": "flag",
    "exact": "flag",
}
RATE_DECIMALS = 3
MISSING = "–"
# Text columns in a flat table fold at this width before the table falls back to groups.
_FOLD_WIDTH = 18
_UNBOUNDED = 100_000
GROUP_LEVELS: tuple[tuple[str, ...], ...] = (
    ("dataset",),
    ("model", "dataset"),
    ("model", "dataset", "mode"),
)


def format_column(values: Sequence[object], kind: Kind) -> list[str]:
    """Every value of one column in the same format: budgets and counts as integers (one
    decimal for all if any budget is fractional), rates with a fixed number of decimals."""

    def missing(v: object) -> bool:
        return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA

    if kind == "text":
        return [MISSING if missing(v) else str(v) for v in values]
    if kind == "flag":
        return [MISSING if missing(v) else ("yes" if bool(v) else "no") for v in values]
    numbers = [None if missing(v) else float(v) for v in values]  # type: ignore[arg-type]
    if kind in ("budget", "count"):
        integral = all(n is None or n.is_integer() for n in numbers)
        decimals = 0 if integral else 1
        none = "none" if kind == "budget" else MISSING
        return [none if n is None else f"{n:.{decimals}f}" for n in numbers]
    if kind == "tokens":
        return [MISSING if n is None else f"{n:.0f}" for n in numbers]
    sign = "+" if kind == "signed" else ""
    return [MISSING if n is None else f"{n:{sign}.{RATE_DECIMALS}f}" for n in numbers]


def column_kind(frame: pd.DataFrame, column: str) -> Kind:
    if column in KINDS:
        return KINDS[column]
    dtype = frame[column].dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "flag"
    if pd.api.types.is_integer_dtype(dtype):
        return "count"
    if pd.api.types.is_float_dtype(dtype):
        return "rate"
    return "text"


def _widths(
    columns: Mapping[str, str],
    formatted: Mapping[str, list[str]],
    kinds: Mapping[str, Kind],
    fold: int | None,
    available: int,
) -> dict[str, int]:
    """Column widths: numbers and header words never cut; long names folded at `fold`; then
    any room left widens the columns whose header would wrap (narrowest need first)."""
    widths: dict[str, int] = {}
    for column, label in columns.items():
        longest = max((len(c) for c in formatted[column]), default=1)
        word = max(len(w) for w in label.split()) if label.strip() else 1
        if kinds[column] == "text":
            widths[column] = max(min(longest, fold) if fold is not None else longest, word)
        else:
            widths[column] = max(longest, word)
    slack = available - (sum(widths.values()) + len(widths) - 1)
    for column in sorted(columns, key=lambda c: len(columns[c]) - widths[c]):
        extra = len(columns[column]) - widths[column]
        if 0 < extra <= slack:
            widths[column] += extra
            slack -= extra
    return widths


def _build(
    columns: Mapping[str, str],
    formatted: Mapping[str, list[str]],
    widths: Mapping[str, int],
    kinds: Mapping[str, Kind],
    *,
    title: str | None,
) -> Table:
    # No edges and one space between columns: at 80 columns every character counts.
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 0))
    for column, label in columns.items():
        table.add_column(
            label,
            justify="left" if kinds[column] == "text" else "right",
            width=widths[column],
            overflow="fold",
        )
    n_rows = len(next(iter(formatted.values()), []))
    for i in range(n_rows):
        table.add_row(*(Text(formatted[c][i]) for c in columns))
    return table


def _total(widths: Mapping[str, int]) -> int:
    return sum(widths.values()) + len(widths) - 1


def print_table(
    console: Console,
    frame: pd.DataFrame,
    columns: Mapping[str, str],
    *,
    title: str | None = None,
    group_levels: Sequence[Sequence[str]] = GROUP_LEVELS,
    wide: bool = False,
) -> None:
    """Print `frame[columns]` with `columns` mapping column -> header label.

    Tries, in order, the flat table, the flat table with long names folded, then one table
    per group, with the group's values as a heading line: by dataset, else by model and
    dataset, else by model, dataset and mode (`group_levels`). Column widths are computed
    once, so the group tables line up. `wide` prints the flat table whatever the
    terminal width (long lines then wrap in the terminal, but no value is cut).
    """
    columns = {c: label for c, label in columns.items() if c in frame.columns}
    frame = frame.reset_index(drop=True)
    kinds = {c: column_kind(frame, c) for c in columns}
    formatted = {c: format_column(list(frame[c]), kinds[c]) for c in columns}
    if wide:
        widths = _widths(columns, formatted, kinds, None, _UNBOUNDED)
        flat = _build(columns, formatted, widths, kinds, title=title)
        # rich never prints wider than the console: widen it for this table only (a terminal
        # then wraps the long lines, but no value is cut).
        narrow = console.width
        console.width = max(_total(widths), narrow)
        try:
            console.print(flat, crop=False)
        finally:
            console.width = narrow
        return
    for fold in (None, _FOLD_WIDTH):
        widths = _widths(columns, formatted, kinds, fold, console.width)
        if _total(widths) <= console.width:
            console.print(_build(columns, formatted, widths, kinds, title=title))
            return
    levels = [[k for k in level if k in frame.columns] for level in group_levels]
    levels = [level for level in levels if level] or [[]]
    for keys in levels:  # fewest heading keys first; the last level is used even if too wide
        rest = {c: label for c, label in columns.items() if c not in keys}
        widths = _widths(rest, formatted, kinds, _FOLD_WIDTH, console.width)
        if _total(widths) <= console.width:
            break
    if title:
        console.print(Text(title, style="bold"))
    groups = frame.groupby(keys, sort=False) if keys else [((), frame)]
    for _, group in groups:
        heading = " · ".join(str(group[k].iloc[0]) for k in keys)
        idx = list(group.index)
        sub = {c: [formatted[c][i] for i in idx] for c in rest}
        if heading:
            console.print(Text(heading, style="bold"))
        console.print(_build(rest, sub, widths, kinds, title=None))
