"""The segment side of one store write: bulk rows listed, replaced runs cut out of segments.

``Store.write_many`` writes every file of an import in one SQLite transaction. A bulk
import's rows were written before as pending segment files (``ImportBatch.segment_files``),
and a ``--replace`` of a run whose rows live in import segments rewrites those segments
without it (written here, before the transaction). Inside the transaction the old segments
are unlisted and the new ones renamed into place and listed (``apply``), so the SQLite rows
and the segments change together or not at all. After the commit the unlisted files are
deleted (``finish``); a crash before that leaves only unlisted files, which
``remove_leftovers`` deletes. Compaction segments are never rewritten: they are copies of
SQLite rows, and the delete of those rows makes them stale until the next compaction
rebuilds them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ponder.columnar.catalog import (
    Listing,
    Pending,
    Segment,
    check_listed,
    committed,
    listed_among,
    parquet_root,
    pending_files,
    unlist,
)
from ponder.columnar.segments import first_line
from ponder.errors import StoreError


class SegmentWrites:
    """What one write does to the segments; build it before the transaction."""

    def __init__(
        self,
        store: Path,
        conn: sqlite3.Connection,
        new: Sequence[Pending],
        replace_runs: Collection[str],
    ) -> None:
        self.root = parquet_root(store)
        for item in new:
            if not item.final.is_relative_to(self.root):
                raise ValueError(f"{item.final}: not a segment of the store at {store}")
        replaced = set(replace_runs)
        self.cut = [
            s for s in committed(conn) if s.origin == "import" and replaced.intersection(s.run_ids)
        ]
        self.rows_removed = 0
        pending: list[Pending] = list(new)
        try:
            for segment in self.cut:
                kept, removed = self._without(segment, replaced)
                self.rows_removed += removed
                pending += pending_files(self.root, kept)
        except BaseException:
            for item in pending:
                item.discard()
            raise
        self.listing = Listing(self.root, pending, origin="import")

    @property
    def empty(self) -> bool:
        return not self.cut and not self.listing.pending

    def _without(self, segment: Segment, runs: set[str]) -> tuple[pa.Table, int]:
        path = self.root / segment.path
        check_listed(path, segment)
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"{path}: cannot read the segment ({first_line(exc)})") from exc
        drop = pc.is_in(table.column("run_id"), pa.array(sorted(runs), pa.string()))
        kept = table.filter(pc.invert(drop))
        return kept, table.num_rows - kept.num_rows

    def apply(self, conn: sqlite3.Connection) -> list[Segment]:
        """Inside the write transaction: unlist the cut segments, list the new files. The
        cut segments must still be listed (another writer may have cut them meanwhile)."""
        listed = {s.path for s in committed(conn)}
        gone = [s.path for s in self.cut if s.path not in listed]
        if gone:
            raise StoreError(
                f"{self.root / gone[0]}: rewritten by another import meanwhile; nothing was "
                "written, run the import again"
            )
        unlist(conn, [s.path for s in self.cut])
        return self.listing.put(conn)

    def undo(self, conn: sqlite3.Connection) -> None:
        """After a failed transaction: remove this write's files that did not get listed."""
        self.listing.undo(lambda paths: listed_among(conn, paths))

    def finish(self) -> None:
        """After the commit: delete the files of the cut segments (no longer listed)."""
        for segment in self.cut:
            (self.root / segment.path).unlink(missing_ok=True)
