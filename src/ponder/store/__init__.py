"""The outcome store: one row per sample, in SQLite."""

from ponder.store.batch import ImportBatch
from ponder.store.export import export_outcomes
from ponder.store.schema import SCHEMA_VERSION
from ponder.store.sqlite import PastImport, Source, Store, WriteResult

__all__ = [
    "SCHEMA_VERSION",
    "ImportBatch",
    "PastImport",
    "Source",
    "Store",
    "WriteResult",
    "export_outcomes",
]
