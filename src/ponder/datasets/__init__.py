"""Public datasets: a registry with pinned checksums, and a verified pull (mirror or upstream)."""

from __future__ import annotations

from ponder.datasets.pull import MIRROR_ENV, MirrorRequiredError, PullResult, pull
from ponder.datasets.registry import (
    DATASETS,
    DatasetFile,
    DatasetSpec,
    UnknownDatasetError,
    dataset_names,
    default_dest,
    find_dataset_dir,
    get_dataset,
)

__all__ = [
    "DATASETS",
    "MIRROR_ENV",
    "DatasetFile",
    "DatasetSpec",
    "MirrorRequiredError",
    "PullResult",
    "UnknownDatasetError",
    "dataset_names",
    "default_dest",
    "find_dataset_dir",
    "get_dataset",
    "pull",
]
