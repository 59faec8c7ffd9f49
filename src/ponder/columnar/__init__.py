"""Columnar analysis (issue 12): outcome rows as Parquet segments, aggregated by DuckDB.

``segments`` writes and validates the Parquet files; ``stats`` computes the per problem x
configuration sufficient statistics from a frame (pandas) or from the segments (DuckDB, the
``columnar`` extra), with equal results; ``histogram`` the per-cell token histogram beside
them; ``curves`` the cell table from those two, equal to ``ponder.curves.cell_table``. See
docs/design/0009-columnar-analysis.md.
"""

from __future__ import annotations

from ponder.columnar.curves import (
    cell_bootstrap_from_parquet,
    cell_bootstrap_from_stats,
    cell_table_from_stats,
    token_quantiles,
)
from ponder.columnar.histogram import (
    HISTOGRAM_COLUMNS,
    histogram_from_frame,
    histogram_from_parquet,
)
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
    "FLOAT_STATS",
    "HISTOGRAM_COLUMNS",
    "INT_STATS",
    "KEYS",
    "SEGMENT_COLUMNS",
    "SEGMENT_SCHEMA",
    "STATS",
    "cell_bootstrap_from_parquet",
    "cell_bootstrap_from_stats",
    "cell_table_from_stats",
    "check_segment",
    "connect",
    "histogram_from_frame",
    "histogram_from_parquet",
    "list_segments",
    "outcome_frame",
    "read_segments",
    "segment_table",
    "stats_from_frame",
    "stats_from_parquet",
    "token_quantiles",
    "write_segments",
]
