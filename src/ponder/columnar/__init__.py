"""Columnar analysis (issue 12): outcome rows as Parquet segments, aggregated by DuckDB.

``segments`` writes and validates the Parquet files; ``stats`` computes the per problem x
configuration sufficient statistics from a frame (pandas) or from the segments (DuckDB, the
``columnar`` extra), with equal results. See docs/design/0009-columnar-analysis.md.
"""

from __future__ import annotations

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
    "INT_STATS",
    "KEYS",
    "SEGMENT_COLUMNS",
    "SEGMENT_SCHEMA",
    "STATS",
    "check_segment",
    "connect",
    "list_segments",
    "outcome_frame",
    "read_segments",
    "segment_table",
    "stats_from_frame",
    "stats_from_parquet",
    "write_segments",
]
