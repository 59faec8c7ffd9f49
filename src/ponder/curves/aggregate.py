"""Per-cell accuracy with cluster-bootstrap intervals and token statistics.

A cell is (model, dataset, mode, budget); a NaN budget (a run without a budget) is a cell of
its own. Every row weighs 1, whether it is a sample (correct 0/1) or an aggregated row
(correct a fraction): the reported accuracy is exactly ``groupby(cell)["correct"].mean()``,
so it can be checked against the raw files with a plain pandas groupby.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from ponder.curves._frame import (
    CELL_KEYS,
    Coded,
    FloatArray,
    IntArray,
    as_float,
    derived_mask,
    require_columns,
)
from ponder.curves.bootstrap import BootstrapResult, ProblemResampler, bootstrap_rows, local_codes

CELL_COLUMNS: list[str] = [
    *CELL_KEYS,
    "budget_kind",
    "derived",
    "source_budget",
    "n_samples",
    "n_problems",
    "accuracy",
    "ci_low",
    "ci_high",
    "ci_method",
    "mean_tokens",
    "median_tokens",
    "p90_tokens",
    "truncation_rate",
    "answer_rate",
]

# The output-token and flag summaries of a cell, after its accuracy columns.
TOKEN_COLUMNS: tuple[str, ...] = (
    "mean_tokens",
    "median_tokens",
    "p90_tokens",
    "truncation_rate",
    "answer_rate",
)

_REQUIRED = [*CELL_KEYS, "problem_id", "correct"]

# Display names of the cell table's columns, shared by `ponder curves` and the report so a
# number has one name everywhere.
CELL_LABELS: dict[str, str] = {
    "model": "model",
    "dataset": "dataset",
    "mode": "mode",
    "budget": "budget",
    "derived": "derived",
    "n_problems": "problems",
    "n_samples": "samples",
    "accuracy": "accuracy",
    "ci_low": "95% low",
    "ci_high": "95% high",
    "mean_tokens": "mean tokens",
    "p90_tokens": "p90 tokens",
    "truncation_rate": "truncated",
    "answer_rate": "answered",
}


@dataclass(frozen=True)
class CellBootstrap:
    """The cell table plus its replicate matrix (columns aligned with the table's rows).

    ``replicates[b, i]`` is the accuracy of cell ``table.iloc[i]`` in resample b; cells of
    the same dataset share resamples, which is what makes the sweet-spot tests paired.
    """

    table: pd.DataFrame
    replicates: FloatArray
    bootstrap: BootstrapResult


def cell_bootstrap(
    frame: pd.DataFrame,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    resampler: ProblemResampler | None = None,
) -> CellBootstrap:
    """Cell table and the per-resample accuracies behind its intervals."""
    require_columns(frame, _REQUIRED, "the cell table")
    coded = Coded.of(frame)
    if resampler is None:
        resampler = ProblemResampler.from_coded(coded, n_boot=n_boot, seed=seed)
    return coded_cell_bootstrap(coded, ci=ci, resampler=resampler)


def coded_cell_bootstrap(coded: Coded, *, ci: float, resampler: ProblemResampler) -> CellBootstrap:
    """:func:`cell_bootstrap` on a frame whose codes are already known."""
    frame, codes, keys = coded.frame, coded.cell, coded.cell_keys
    n_cells = len(keys)
    correct = as_float(frame["correct"])
    work = pd.DataFrame({"_cell": codes, "correct": correct})
    grouped = work.groupby("_cell", sort=True)
    # Exactly the plain pandas mean (same algorithm, same float column).
    accuracy = grouped["correct"].mean().reindex(range(n_cells)).to_numpy(dtype=np.float64)

    derived = derived_mask(frame)
    source_budget: FloatArray
    if "source_budget" in frame.columns:
        src = pd.Series(as_float(frame["source_budget"])).groupby(codes).max()
        source_budget = np.asarray(src.reindex(range(n_cells)), dtype=np.float64)
    else:
        source_budget = np.full(n_cells, np.nan, dtype=np.float64)

    result, n_problems = bootstrap_rows(
        local_codes(coded, resampler),
        codes,
        correct,
        coded.cell_dataset,
        accuracy,
        resampler,
        ci=ci,
        keep_replicates=True,
    )

    tokens = pd.DataFrame(
        {
            "_cell": codes,
            "output_tokens": _column(frame, "output_tokens"),
            "truncated": _column(frame, "truncated"),
            "answered": _column(frame, "answered"),
        }
    ).groupby("_cell", sort=True)
    stats = pd.DataFrame(
        {
            "mean_tokens": tokens["output_tokens"].mean(),
            "median_tokens": tokens["output_tokens"].median(),
            "p90_tokens": tokens["output_tokens"].quantile(0.9),
            "truncation_rate": tokens["truncated"].mean(),
            "answer_rate": tokens["answered"].mean(),
        }
    ).reindex(range(n_cells))
    return assemble_cells(
        keys,
        budget_kind=cell_budget_kind(frame, codes, n_cells),
        derived=np.bincount(codes, weights=derived, minlength=n_cells) > 0,
        source_budget=source_budget,
        n_samples=np.bincount(codes, minlength=n_cells).astype(np.int64),
        accuracy=accuracy,
        result=result,
        n_problems=n_problems,
        tokens={name: stats[name].to_numpy(dtype=np.float64) for name in TOKEN_COLUMNS},
    )


def assemble_cells(
    keys: pd.DataFrame,
    *,
    budget_kind: list[str],
    derived: npt.NDArray[np.bool_],
    source_budget: FloatArray,
    n_samples: IntArray,
    accuracy: FloatArray,
    result: BootstrapResult,
    n_problems: FloatArray,
    tokens: Mapping[str, FloatArray],
) -> CellBootstrap:
    """The cell table from its per-cell columns, in one place for every way of computing them
    (the rows of a frame, or the sufficient statistics of ``ponder.columnar``)."""
    table = keys.copy()
    table["budget_kind"] = budget_kind
    table["derived"] = derived
    table["source_budget"] = source_budget
    table["n_samples"] = n_samples
    table["n_problems"] = n_problems.astype(np.int64)
    table["accuracy"] = accuracy
    table["ci_low"] = result.ci_low
    table["ci_high"] = result.ci_high
    table["ci_method"] = result.method.astype(str)
    for name in TOKEN_COLUMNS:
        table[name] = tokens[name]
    table = table[CELL_COLUMNS]
    assert result.replicates is not None
    return CellBootstrap(table=table, replicates=result.replicates, bootstrap=result)


def cell_table(
    frame: pd.DataFrame,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    resampler: ProblemResampler | None = None,
) -> pd.DataFrame:
    """One row per cell, sorted by model, dataset, mode, budget (NaN budget last).

    Columns: model, dataset, mode, budget, budget_kind, derived, source_budget (the cap a
    derived cell was computed from), n_samples (rows), n_problems (with known correct),
    accuracy, ci_low, ci_high, ci_method ("percentile" or "wilson"), mean/median/p90_tokens
    (of output_tokens, NaN ignored), truncation_rate, answer_rate.
    """
    return cell_bootstrap(frame, n_boot=n_boot, seed=seed, ci=ci, resampler=resampler).table


def _column(frame: pd.DataFrame, name: str) -> FloatArray:
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    return as_float(frame[name])


def cell_budget_kind(frame: pd.DataFrame, codes: IntArray, n_cells: int) -> list[str]:
    """The cell's budget kind, or "mixed" if its rows disagree (should not happen).

    The distinct (cell, kind) rows are found on integer codes; only those few rows go
    through the pandas first / size summary.
    """
    if "budget_kind" not in frame.columns:
        return ["none"] * n_cells
    column = frame["budget_kind"]
    if not isinstance(column.dtype, pd.StringDtype):
        column = column.astype(str)  # str() of every value decides which values are equal
    kind, uniques = pd.factorize(column, use_na_sentinel=True)
    kind = np.where(kind < 0, len(uniques), kind).astype(np.int64)
    pair, _ = pd.factorize(codes * np.int64(len(uniques) + 1) + kind)
    first = np.empty(int(pair.max()) + 1 if len(pair) else 0, dtype=np.int64)
    first[pair[::-1]] = np.arange(len(pair) - 1, -1, -1)  # first row of each distinct pair
    kinds = pd.DataFrame({"_cell": codes[first], "kind": column.iloc[first].to_numpy()})
    counts = kinds.groupby("_cell")["kind"].agg(["first", "size"]).reindex(range(n_cells))
    labels = np.where(counts["size"].to_numpy() > 1, "mixed", counts["first"].to_numpy())
    return [str(x) for x in labels]


_budget_kind = cell_budget_kind  # its earlier private name, which tests still import
