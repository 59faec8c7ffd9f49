"""ponder's own recorded sweep, shipped in the package: the built-in default of `ponder demo`.

A sweep is kept as a folder of Parquet files (zstd) plus ``manifest.json``: ``outcomes``
(with the live-sweep signal columns), ``problems``, ``runs`` and ``chains`` (text and
per-token entropies as float16 bytes). The manifest carries the format version, the sweep's
spec, row counts, a sha256 per file and how the data was produced, so a copy can be checked
before a single row is imported. See docs/builtin-sweep.md.

``export_sweep`` (in :mod:`ponder.builtin.export`) writes such a folder from a store;
:func:`load_builtin` reads and verifies one into an :class:`ImportBatch`, which the store
writes in one transaction like any other import (``ponder import FOLDER`` works too).
"""

from __future__ import annotations

from ponder.builtin.reader import (
    FILES,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    builtin_folder,
    is_builtin_folder,
    load_builtin,
    read_manifest,
    verify_folder,
)

__all__ = [
    "FILES",
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "builtin_folder",
    "is_builtin_folder",
    "load_builtin",
    "read_manifest",
    "verify_folder",
]
