"""Columnar analysis (issue 12): outcome rows as Parquet segments, aggregated by DuckDB.

``segments`` writes and validates the Parquet files; ``stats`` computes the per problem x
configuration sufficient statistics from a frame (pandas) or from the segments (DuckDB, the
``columnar`` extra), with equal results; ``histogram`` the per-cell token histogram and
``answers`` the per (cell, problem, normalized answer) counts beside them; ``curves`` the
cell table from the statistics and the histogram, ``passk`` pass@k and maj@k from the
statistics and the answer counts, ``difficulty`` the difficulty bins and table from the
statistics and the problems' levels, each equal to ``ponder.curves``' table of the rows;
``batched`` all of them out of core, the side tables built a batch of models at a time;
``matrix`` one dataset's outcome matrix (for the policies) straight from the segments. See
docs/design/0009-columnar-analysis.md.
"""

from __future__ import annotations

from ponder.columnar.answers import (
    ANSWER_COLUMNS,
    answers_from_frame,
    answers_from_parquet,
)
from ponder.columnar.batched import ColumnarCurves, curves_from_parquet
from ponder.columnar.curves import (
    cell_bootstrap_from_parquet,
    cell_bootstrap_from_stats,
    cell_table_from_stats,
    token_quantiles,
)
from ponder.columnar.difficulty import (
    difficulty_bins_from_stats,
    difficulty_table_from_stats,
    problem_levels,
)
from ponder.columnar.histogram import (
    HISTOGRAM_COLUMNS,
    histogram_from_frame,
    histogram_from_parquet,
)
from ponder.columnar.matrix import matrix_from_parquet
from ponder.columnar.passk import maj_at_k_from_stats, pass_at_k_from_stats
from ponder.columnar.segments import (
    SEGMENT_COLUMNS,
    SEGMENT_SCHEMA,
    check_segment,
    list_segments,
    outcome_frame,
    read_segments,
    segment_table,
    write_segments,
)
from ponder.columnar.stats import (
    FLOAT_STATS,
    INT_STATS,
    KEYS,
    STATS,
    connect,
    stats_from_frame,
    stats_from_parquet,
)

__all__ = [
    "ANSWER_COLUMNS",
    "FLOAT_STATS",
    "HISTOGRAM_COLUMNS",
    "INT_STATS",
    "KEYS",
    "SEGMENT_COLUMNS",
    "SEGMENT_SCHEMA",
    "STATS",
    "ColumnarCurves",
    "answers_from_frame",
    "answers_from_parquet",
    "cell_bootstrap_from_parquet",
    "cell_bootstrap_from_stats",
    "cell_table_from_stats",
    "check_segment",
    "connect",
    "curves_from_parquet",
    "difficulty_bins_from_stats",
    "difficulty_table_from_stats",
    "histogram_from_frame",
    "histogram_from_parquet",
    "list_segments",
    "maj_at_k_from_stats",
    "matrix_from_parquet",
    "outcome_frame",
    "pass_at_k_from_stats",
    "problem_levels",
    "read_segments",
    "segment_table",
    "stats_from_frame",
    "stats_from_parquet",
    "token_quantiles",
    "write_segments",
]
