"""A validated batch of runs, problems and outcomes, ready to be written in one transaction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ponder.store.schema import OUTCOME_STORE_COLUMNS, PROBLEM_STORE_COLUMNS
from ponder.types import Run

if TYPE_CHECKING:
    from ponder.columnar.catalog import Pending


@dataclass
class ImportBatch:
    """What an importer produces: everything is validated before the store is touched.

    `outcomes` has the columns of `OUTCOME_STORE_COLUMNS` (and optionally `SIGNAL_COLUMNS`,
    for recorded live sweeps); `problems` those of `PROBLEM_STORE_COLUMNS` (problems
    referenced by outcomes but missing here are added bare); `chains`, when given, the
    columns of the chains table (a recorded sweep's thinking chains), written in the same
    transaction.
    """

    runs: list[Run]
    outcomes: pd.DataFrame
    problems: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=list(PROBLEM_STORE_COLUMNS))
    )
    notes: list[str] = field(default_factory=list)
    # The file line of an outcome row (by position), when known, so a conflict found while
    # writing can still name its line; computed only then.
    line_of: Callable[[int], int] | None = None
    # The table row of each outcome row when it is not simply its position (a wide file
    # becomes several outcome rows per table row).
    source_rows: np.ndarray | None = None
    chains: pd.DataFrame | None = None
    # A bulk import's rows, already written as pending Parquet segment files (one per
    # dataset, ponder.columnar) and listed with the transaction, instead of ``outcomes``
    # (then empty); ``problems`` holds every problem they reference.
    segment_files: list[Pending] | None = None

    @property
    def segment_rows(self) -> int:
        return sum(p.rows for p in self.segment_files or [])

    def discard_segments(self) -> None:
        """Remove the pending segment files (a batch that will not be written)."""
        for item in self.segment_files or []:
            item.discard()

    def __post_init__(self) -> None:
        missing = [c for c in OUTCOME_STORE_COLUMNS if c not in self.outcomes.columns]
        if missing:
            raise ValueError(f"outcomes frame lacks columns {missing}")
        missing = [c for c in PROBLEM_STORE_COLUMNS if c not in self.problems.columns]
        if missing:
            raise ValueError(f"problems frame lacks columns {missing}")
        run_ids = {r.run_id for r in self.runs}
        unknown = set(self.outcomes["run_id"].unique()) - run_ids
        if unknown:
            raise ValueError(f"outcomes reference runs not in the batch: {sorted(unknown)[:5]}")
