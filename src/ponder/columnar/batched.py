"""Every curve of the segments out of core: side tables built and used one batch at a time.

A wide sweep at 1e8 rows has ~1.2e7 problem x configuration groups, ~2 GB of statistics if
held at once (docs/design/0009-columnar-analysis.md). Every curve is local to a cell, or to
a (model, dataset, mode) for sweet spots, given two things shared across cells: each
dataset's problem resampler and its difficulty bins. So:

1. one survey scan (DuckDB, GROUPING SETS) gives the problems of each dataset (the
   resampler's universe), each problem's solve-rate sums (the bins), the distinct recorded
   answers (normalized once) and an estimate of the groups of each (dataset, model);
2. each dataset's models are cut into batches of whole models with at most ``max_groups``
   estimated groups (a model with more is a batch of its own); for each batch DuckDB reads
   that dataset's segments filtered to the batch's model range (row-group statistics skip the
   other models' row groups) into the statistics, token histogram and answer counts, and the
   curves of its cells are computed with the shared resampler and bins, then the side tables
   and the replicates are dropped;
3. the batches' tables are concatenated and put in the in-memory tables' row order.

Memory then follows the largest batch, not the rows; DuckDB's own ``memory_limit`` (and
``temp_directory`` for what it spills) bounds each query. Each batch runs the same public
functions as the in-memory path (``cell_bootstrap_from_stats``, ``sweet_spot_table``,
``pass_at_k_from_stats``, ``maj_at_k_from_stats``, the difficulty table) on the same rows of
the same cells with the same resampling counts, so the tables are equal to theirs on the
whole tables (tests/columnar/test_columnar_scale.py). One difference is of summation order:
a problem's solve rate sums its rows here (DuckDB ``fsum``), its groups' sums there; with
0/1 or dyadic ``correct`` both are exact and equal, other fractions may move a tie between
difficulty terciles, as between the columnar and the frame paths.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ponder.columnar.answers import DISTINCT_ANSWERS_SQL, answer_forms, grouped_answers
from ponder.columnar.curves import StatsCodes, cell_bootstrap_from_stats
from ponder.columnar.difficulty import difficulty_table_from_bins, levels_bins
from ponder.columnar.histogram import finish_histogram, histogram_sql
from ponder.columnar.passk import maj_at_k_from_stats, pass_at_k_from_stats
from ponder.columnar.segments import dataset_of
from ponder.columnar.stats import (
    checked_segments,
    configure,
    connect,
    finish_stats,
    run_query,
    stats_sql,
)
from ponder.curves._frame import CELL_KEYS, cell_codes
from ponder.curves.bootstrap import ProblemResampler
from ponder.curves.sweetspot import sweet_spot_table
from ponder.errors import InputError
from ponder.grading import normalize_answer

if TYPE_CHECKING:
    import duckdb

# Groups per batch by default: the statistics, histogram and answer counts of 250k groups
# and the curves' work arrays stay well under 1 GiB.
DEFAULT_MAX_GROUPS = 250_000
# The rows of one batch: a dataset's segments, one model range.
_BATCH_WHERE = "model BETWEEN $first AND $last"
_READ = "read_parquet($files, hive_partitioning = false, union_by_name = false)"
# The survey: three small GROUP BYs (one scan each; cheaper than one scan with GROUPING SETS).
_PROBLEMS_SQL = (
    "SELECT dataset, problem_id, n_runs = 1 AS sample, "
    "coalesce(fsum(correct), 0)::DOUBLE AS correct_sum, count(correct)::BIGINT AS correct_n "
    f"FROM {_READ} GROUP BY ALL ORDER BY dataset, problem_id, sample"
)
_MODELS_SQL = (
    "SELECT dataset, model, approx_count_distinct(hash(problem_id, mode, budget, budget_kind, "
    f"n_runs = 1))::BIGINT AS groups FROM {_READ} GROUP BY ALL ORDER BY dataset, model"
)


@dataclass(frozen=True)
class ColumnarCurves:
    """Every curve of the segments: the tables ``compute_curves(derive=False)`` gives on the
    rows (no derivations: the statistics hold recorded outcomes only), and how many batches
    they took."""

    cells: pd.DataFrame
    sweet_spots: pd.DataFrame
    pass_at_k: pd.DataFrame
    maj_at_k: pd.DataFrame
    difficulty: pd.DataFrame
    batches: int


@dataclass(frozen=True)
class Batch:
    """The rows of one dataset's models ``first`` .. ``last`` (whole models, sorted)."""

    dataset: str
    first: str
    last: str
    groups: int


@dataclass(frozen=True)
class Survey:
    """What every batch shares: the problems (with solve-rate sums), the models' estimated
    groups, the distinct recorded answers."""

    problems: pd.DataFrame
    models: pd.DataFrame
    answers: list[str]


class Laps:
    """Seconds per phase, summed over batches (for the benchmark; free otherwise)."""

    def __init__(self, into: dict[str, float] | None) -> None:
        self.into = into

    @contextmanager
    def lap(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.into is not None:
                self.into[name] = self.into.get(name, 0.0) + time.perf_counter() - start


def curves_from_parquet(
    root: str | Path,
    levels: pd.DataFrame | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    normalize: Callable[[str], str] = normalize_answer,
    max_subsets: int = 2000,
    max_groups: int = DEFAULT_MAX_GROUPS,
    con: duckdb.DuckDBPyConnection | None = None,
    memory_limit: str | None = None,
    temp_directory: str | Path | None = None,
    threads: int | None = None,
    laps: dict[str, float] | None = None,
) -> ColumnarCurves:
    """Cells with bootstrap CIs, sweet spots, pass@k, maj@k and difficulty of the segments
    under ``root``, computed ``max_groups`` problem x configuration groups at a time.

    ``levels`` (``dataset, problem_id, level``; None: solve-rate terciles) as for
    ``difficulty_table_from_stats``; ``memory_limit``, ``temp_directory`` (where DuckDB
    spills) and ``threads`` are set on ``con`` (a new in-memory connection otherwise);
    ``laps``, when given, receives the seconds of each phase.
    """
    if isinstance(max_groups, bool) or not isinstance(max_groups, int) or max_groups < 1:
        raise InputError(f"max_groups must be a whole number >= 1, not {max_groups!r}")
    files = checked_segments(root)
    if not files:
        raise InputError(f"{root}: no outcome segments to compute curves from")
    clock = Laps(laps)
    db = connect() if con is None else con
    spill = None
    try:
        configure(db, memory_limit=memory_limit, threads=threads)
        if temp_directory is None and con is None:
            spill = tempfile.TemporaryDirectory(prefix="ponder-duckdb-")
            temp_directory = spill.name
        if temp_directory is not None:
            db.execute(f"SET temp_directory = '{_quoted(str(temp_directory))}'")
        with clock.lap("survey"):
            survey = survey_segments(db, files, root)
            resampler = ProblemResampler.from_frame(survey.problems, n_boot=n_boot, seed=seed)
            bins = levels_bins(survey.problems, levels)
            forms = answer_forms(survey.answers, normalize)
        by_dataset: dict[str, list[str]] = {}
        for path in files:
            by_dataset.setdefault(dataset_of(path), []).append(str(path))
        parts = []
        batches = plan_batches(survey.models, max_groups)
        for batch in batches:
            params = {"files": by_dataset[batch.dataset], "first": batch.first, "last": batch.last}
            with clock.lap("queries"):
                stats, histogram, answers = side_tables(db, forms, params, root)
            parts.append(
                batch_curves(
                    stats,
                    histogram,
                    answers,
                    resampler=resampler,
                    bins=bins,
                    ci=ci,
                    seed=seed,
                    max_subsets=max_subsets,
                    clock=clock,
                )
            )
            del stats, histogram, answers
    finally:
        if con is None:
            db.close()
        if spill is not None:
            spill.cleanup()
    with clock.lap("assemble"):
        return assemble(parts, len(batches))


def survey_segments(con: duckdb.DuckDBPyConnection, files: Sequence[Path], root: Any) -> Survey:
    """The problems with their solve-rate sums, the (dataset, model) group estimates and
    the distinct recorded answers."""
    params = {"files": [str(p) for p in files]}
    problems = run_query(con, _PROBLEMS_SQL, params, root).to_pandas()
    models = run_query(con, _MODELS_SQL, params, root).to_pandas()
    answers = run_query(con, DISTINCT_ANSWERS_SQL, params, root).column(0).to_pylist()
    return Survey(problems=problems, models=models, answers=answers)


def plan_batches(models: pd.DataFrame, max_groups: int) -> list[Batch]:
    """Consecutive models of a dataset, whole, until the next would pass ``max_groups``."""
    batches: list[Batch] = []
    for dataset, rows in models.groupby("dataset", sort=True):
        names = rows["model"].astype(str).tolist()
        sizes = rows["groups"].astype("int64").tolist()
        start, total = 0, 0
        for i, size in enumerate(sizes):
            if i > start and total + size > max_groups:
                batches.append(Batch(str(dataset), names[start], names[i - 1], total))
                start, total = i, 0
            total += size
        batches.append(Batch(str(dataset), names[start], names[-1], total))
    return batches


def side_tables(
    con: duckdb.DuckDBPyConnection, forms: Any, params: dict[str, Any], root: Any
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A batch's statistics, token histogram and answer counts, as the public functions
    give them for the same rows, in their row order where an order can matter.

    Sorting the string keys is most of the time spent outside DuckDB, so a table is sorted
    only where a result depends on its order: the statistics, when some ``correct_sum`` is
    fractional (those are summed in row order, and a float sum's last bits depend on it).
    Integer sums do not, nor do the histogram's and answer table's consumers (the token
    quantiles sort the lengths themselves; votes are counted per answer, with integers).
    """
    raw = run_query(con, stats_sql(_BATCH_WHERE), params, root).to_pandas()
    fractional = raw["correct_sum"].to_numpy(dtype=np.float64)
    stats = finish_stats(raw, sort=not np.array_equal(fractional, np.round(fractional)))
    histogram = run_query(con, histogram_sql(_BATCH_WHERE), params, root).to_pandas()
    answers = grouped_answers(con, forms, params, root, _BATCH_WHERE, sort=False)
    return stats, finish_histogram(histogram, sort=False), answers


@dataclass(frozen=True)
class BatchCurves:
    """The curve tables of one batch's cells."""

    cells: pd.DataFrame
    sweet_spots: pd.DataFrame
    pass_at_k: pd.DataFrame
    maj_at_k: pd.DataFrame
    difficulty: pd.DataFrame


def batch_curves(
    stats: pd.DataFrame,
    histogram: pd.DataFrame,
    answers: pd.DataFrame,
    *,
    resampler: ProblemResampler,
    bins: pd.DataFrame,
    ci: float,
    seed: int,
    max_subsets: int,
    clock: Laps,
) -> BatchCurves:
    """Every curve of one batch's cells (whole models of one dataset)."""
    with clock.lap("codes"):
        shared: dict[str, Any] = {"resampler": resampler, "ci": ci, "codes": StatsCodes(stats)}
    with clock.lap("cells"):
        cells = cell_bootstrap_from_stats(stats, histogram, **shared)
    with clock.lap("sweet_spots"):
        spots = sweet_spot_table(cells=cells, ci=ci)
    with clock.lap("pass_at_k"):
        passk = pass_at_k_from_stats(stats, **shared)
    with clock.lap("maj_at_k"):
        majk = maj_at_k_from_stats(stats, answers, seed=seed, max_subsets=max_subsets, **shared)
    with clock.lap("difficulty"):
        difficulty = difficulty_table_from_bins(stats, bins, **shared)
    return BatchCurves(cells.table, spots, passk, majk, difficulty)


def assemble(parts: Sequence[BatchCurves], batches: int) -> ColumnarCurves:
    """The batches' tables in the in-memory tables' order: cells by their keys (NaN budget
    last), pass@k / maj@k by cell then k, difficulty by cell then bin, sweet spots by
    (model, dataset, mode)."""
    cells = _ordered(_concat([p.cells for p in parts]), [])
    return ColumnarCurves(
        cells=cells,
        sweet_spots=_concat([p.sweet_spots for p in parts])
        .sort_values(["model", "dataset", "mode"], kind="stable")
        .reset_index(drop=True),
        pass_at_k=_ordered(_concat([p.pass_at_k for p in parts]), ["k"]),
        maj_at_k=_ordered(_concat([p.maj_at_k for p in parts]), ["k"]),
        difficulty=_ordered(
            _concat([p.difficulty for p in parts]), ["difficulty_rank", "difficulty"]
        ),
        batches=batches,
    )


def _concat(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The non-empty tables one after the other (an empty one keeps the columns)."""
    full = [t for t in tables if len(t)]
    if not full:
        return tables[0] if tables else pd.DataFrame()
    return pd.concat(full, ignore_index=True) if len(full) > 1 else full[0]


def _ordered(table: pd.DataFrame, then: list[str]) -> pd.DataFrame:
    """Rows by cell (the order ``cell_codes`` gives cells), then by ``then``."""
    if table.empty:
        return table.reset_index(drop=True)
    codes, _ = cell_codes(table[CELL_KEYS])
    # Each further key as its sorted codes (text sorts as Python sorts it).
    columns = [np.asarray(pd.factorize(table[c], sort=True)[0]) for c in reversed(then)]
    order = np.lexsort([*columns, codes])
    return table.iloc[order].reset_index(drop=True)


def _quoted(text: str) -> str:
    """A SQL string literal's body."""
    return text.replace("'", "''")
