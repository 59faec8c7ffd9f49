"""Accuracy-vs-budget curves with paired cluster-bootstrap confidence intervals.

:func:`compute_curves` runs everything on one outcome frame with one shared resampler, so
every interval in the result comes from the same problem resamples and differences between
any two cells of a dataset are paired. See docs/curves.md for what each number means.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from ponder.curves._frame import CELL_KEYS, Coded, require_columns
from ponder.curves.aggregate import (
    CELL_COLUMNS,
    CellBootstrap,
    cell_bootstrap,
    cell_table,
    coded_cell_bootstrap,
)
from ponder.curves.bootstrap import (
    BootstrapResult,
    ProblemResampler,
    bootstrap_groups,
    paired_difference_interval,
    percentile_interval,
    resample_counts,
    wilson_interval,
)
from ponder.curves.derived import (
    PLAN_COLUMNS,
    default_grid,
    derivation_plan,
    derive_caps,
    with_derived_caps,
)
from ponder.curves.difficulty import (
    coded_difficulty_table,
    difficulty_bins,
    difficulty_table,
    with_problem,
)
from ponder.curves.passk import (
    _Prepared,
    coded_maj_at_k_table,
    coded_pass_at_k_table,
    expected_majority,
    maj_at_k_table,
    pass_at_k,
    pass_at_k_table,
)
from ponder.curves.sweetspot import SWEET_SPOT_COLUMNS, sweet_spot_table

__all__ = [
    "CELL_COLUMNS",
    "SWEET_SPOT_COLUMNS",
    "BootstrapResult",
    "CellBootstrap",
    "Curves",
    "ProblemResampler",
    "bootstrap_groups",
    "cell_bootstrap",
    "cell_table",
    "compute_curves",
    "default_grid",
    "derivation_plan",
    "derive_caps",
    "difficulty_bins",
    "difficulty_table",
    "expected_majority",
    "maj_at_k_table",
    "paired_difference_interval",
    "pass_at_k",
    "pass_at_k_table",
    "percentile_interval",
    "resample_counts",
    "sweet_spot_table",
    "wilson_interval",
    "with_derived_caps",
]


# Columns any curve table (or the derivation feeding it) reads.
_CURVE_COLUMNS = frozenset(
    [
        *CELL_KEYS,
        "problem_id",
        "correct",
        "output_tokens",
        "truncated",
        "answered",
        "extracted_answer",
        "n_runs",
        "budget_kind",
        "level",
        "derived",
        "source_budget",
    ]
)


# Columns the derivation plan reads.
_PLAN_INPUT = frozenset(
    [*CELL_KEYS, "problem_id", "correct", "output_tokens", "budget_kind", "n_runs", "derived"]
)


@dataclass(frozen=True)
class Curves:
    """All curve tables of one outcome frame.

    ``cells`` holds recorded and derived cells (``derived`` column); ``derivations`` lists
    every derived-cap target considered, with ``status`` derive/skip and the reason.
    """

    cells: pd.DataFrame
    pass_at_k: pd.DataFrame
    maj_at_k: pd.DataFrame
    difficulty: pd.DataFrame
    sweet_spots: pd.DataFrame
    derivations: pd.DataFrame


def compute_curves(
    frame: pd.DataFrame,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    derive: bool = True,
    ci: float = 0.95,
    normalize: Callable[[str], str] = str.strip,
    include_derived_sweet_spots: bool = False,
) -> Curves:
    """Cells, pass@k, maj@k, difficulty and sweet spots, all from one paired bootstrap.

    With ``derive`` the hard-cap runs are extended to smaller caps (see
    :mod:`ponder.curves.derived`) and those cells join every table with ``derived`` True.
    Pass ``normalize=ponder.grading.normalize_answer`` for maj@k answer matching.
    """
    # Only the columns some table reads go through the derivation (which copies every
    # column it gets): identifiers like run_id and the token splits are left behind.
    slim = frame[[c for c in frame.columns if c in _CURVE_COLUMNS]]
    if derive:
        plan = derivation_plan(slim[[c for c in slim.columns if c in _PLAN_INPUT]])
        full = with_derived_caps(slim, plan=plan)
    else:
        plan = pd.DataFrame(columns=PLAN_COLUMNS)
        full = slim
    require_columns(full, [*CELL_KEYS, "problem_id", "correct"], "the cell table")
    # One factorization of the string keys, shared by every table.
    coded = Coded.of(full)
    resampler = ProblemResampler.from_coded(coded, n_boot=n_boot, seed=seed)
    cells = coded_cell_bootstrap(coded, ci=ci, resampler=resampler)
    prepared = _Prepared(coded, resampler)
    has_problem = with_problem(coded)
    return Curves(
        cells=cells.table,
        pass_at_k=coded_pass_at_k_table(prepared, ci=ci),
        maj_at_k=coded_maj_at_k_table(
            prepared, normalize=normalize, ci=ci, max_subsets=2000, seed=0
        )
        if "extracted_answer" in full.columns
        else pd.DataFrame(),
        difficulty=coded_difficulty_table(has_problem, ci=ci, resampler=resampler),
        sweet_spots=sweet_spot_table(
            cells=cells, ci=ci, include_derived=include_derived_sweet_spots
        ),
        derivations=plan,
    )
