"""The sufficient statistics past one machine: Ray Data over the same Parquet segments.

The statistics are mergeable counts and sums (docs/design/0009-columnar-analysis.md, "Past one
machine"), so a Ray cluster computes the same table as ``stats_from_parquet`` wherever the
segments are: a local folder, or an object store after the user copies ``<store>.parquet/``
there. A cluster has no SQLite store, so the committed files travel in ``manifest.json``
(``export_manifest``, from the `segments` catalog) and Ray reads exactly those: never a
folder listing, whose unlisted files may be leftovers of a crashed write. Every listed
file's size, footer and rows are checked against the manifest before Ray reads anything.

The aggregations are derived from ``STATS``: ``rows`` is Ray's ``Count()``, every other
statistic a ``Sum`` of a per-row contribution (the value; 1 for a non-NULL value; 1 for
``correct == 1``), so NULLs are counted apart and a sum of none is 0, as in DuckDB's
``coalesce(sum(x), 0)``. No ``map_groups`` is needed. Group keys are never NULL: a missing
budget becomes 0 plus a ``budget_known`` key, and NaN again in the finished table, so the
result does not depend on how a Ray version groups NULL keys. Ray is the optional
``distributed`` extra; ponder must be importable on every node.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ponder.columnar.catalog import Catalog, Segment, parquet_root
from ponder.columnar.segments import SEGMENT_SCHEMA, first_line
from ponder.columnar.stats import COLUMNS, KEYS, STATS, finish_stats
from ponder.errors import InputError, StoreError

MANIFEST = "manifest.json"
FORMAT = "ponder-segments"
VERSION = 1
# The segment columns the statistics read: the keys (``sample`` is ``n_runs = 1``) and the
# columns of STATS.
READ_COLUMNS: tuple[str, ...] = tuple(
    dict.fromkeys([*(k for k in KEYS if k != "sample"), "n_runs", *(c for _, c in STATS.values())])
)
# Group keys as Ray sees them: never NULL (see the module docstring).
RAY_KEYS: tuple[str, ...] = (*KEYS, "budget_known")
_CHECK_THREADS = 16


@dataclass(frozen=True)
class Listed:
    """One committed segment as the manifest lists it (``path`` relative to the base)."""

    path: str
    dataset: str
    rows: int
    bytes: int
    sha256: str


def export_manifest(store: str | Path, out: str | Path | None = None) -> Path:
    """Write ``manifest.json`` listing the store's committed segments; its path.

    Written at the top of ``<store>.parquet/`` (so a copy of that folder carries it) or to
    ``out`` (a file, or a folder to hold ``manifest.json``). A damaged listed file is an error
    naming it: a manifest must not send a cluster to a file the catalog would refuse.
    """
    with Catalog(store, readonly=True) as catalog:
        catalog.paths()  # raises the first damaged listed file
        segments = catalog.segments()
    document = {
        "format": FORMAT,
        "version": VERSION,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "segments": [_entry(s) for s in segments],
    }
    target = _manifest_target(parquet_root(store), out)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        temp.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return target


def _entry(segment: Segment) -> dict[str, Any]:
    return {
        "path": segment.path,
        "dataset": segment.dataset,
        "rows": segment.rows,
        "bytes": segment.bytes,
        "sha256": segment.sha256,
    }


def _manifest_target(root: Path, out: str | Path | None) -> Path:
    if out is None:
        return root / MANIFEST
    path = Path(out)
    return path / MANIFEST if path.is_dir() else path


def stats_from_ray(
    base: str | Path,
    manifest: str | Path | None = None,
    *,
    datasets: Sequence[str] | None = None,
    filesystem: pafs.FileSystem | None = None,
    address: str | None = None,
    deep: bool = False,
) -> pd.DataFrame:
    """The statistics of the manifest's segments under ``base``, computed by Ray Data.

    ``base`` is a folder or a URI (``s3://bucket/prefix``) that pyarrow resolves, unless
    ``filesystem`` is given (then ``base`` is a path on it); ``manifest`` defaults to
    ``base/manifest.json``. ``address`` joins Ray first (``"local"``, ``"auto"``,
    ``"ray://head:10001"``); otherwise the running instance is used, or Ray starts its own
    (honouring ``RAY_ADDRESS``). ``deep`` also re-hashes every file against its sha256.
    Same table, dtypes and order as ``stats_from_parquet``.
    """
    modules = _ray_modules(address)
    fs, root = resolve(base, filesystem)
    if manifest is None:
        listed = read_manifest(fs, _join(root, MANIFEST))
    else:
        listed = read_manifest(*resolve(manifest, filesystem))
    if datasets is not None:
        wanted = set(datasets)
        listed = [s for s in listed if s.dataset in wanted]
    check_listed(fs, root, listed, deep=deep)
    tables = _aggregate(modules, fs, [_join(root, s.path) for s in listed], base)
    if not tables:
        return finish_stats(pd.DataFrame({c: [] for c in COLUMNS}))
    table = pa.concat_tables(tables, promote_options="permissive")
    return finish_stats(_restored(table).to_pandas())


def resolve(location: str | Path, filesystem: pafs.FileSystem | None) -> tuple[Any, str]:
    """The filesystem and path of a folder or URI (a local path made absolute)."""
    text = str(location)
    if filesystem is not None:
        return filesystem, text.rstrip("/")
    if "://" not in text:
        return pafs.LocalFileSystem(), Path(text).resolve().as_posix()
    try:
        fs, path = pafs.FileSystem.from_uri(text)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(f"cannot open {text} ({first_line(exc)})") from exc
    return fs, str(path).rstrip("/")


def _join(root: str, relative: str) -> str:
    return f"{root}/{relative}" if root else relative


def read_manifest(fs: Any, path: str) -> list[Listed]:
    """The segments a manifest lists; a missing or malformed one is a one-line error."""
    try:
        with fs.open_input_stream(path) as handle:
            document = json.loads(handle.read().decode("utf-8"))
    except FileNotFoundError as exc:
        raise InputError(
            "no manifest here; write one with export_manifest(store)", path=path
        ) from exc
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise InputError(f"cannot read the manifest ({first_line(exc)})", path=path) from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InputError(f"not a ponder segments manifest (format {FORMAT!r})", path=path)
    if document.get("version") != VERSION:
        raise InputError(f"manifest version {document.get('version')!r}, expected 1", path=path)
    try:
        listed = [_listed(entry) for entry in document["segments"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"malformed segment entry ({first_line(exc)})", path=path) from exc
    return listed


def _listed(entry: dict[str, Any]) -> Listed:
    relative = PurePosixPath(str(entry["path"]))
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"path {str(relative)!r} leaves the segments' folder")
    return Listed(
        path=relative.as_posix(),
        dataset=str(entry["dataset"]),
        rows=int(entry["rows"]),
        bytes=int(entry["bytes"]),
        sha256=str(entry["sha256"]),
    )


def check_listed(fs: Any, root: str, listed: Sequence[Listed], *, deep: bool = False) -> None:
    """The catalog's check of every listed file, against the manifest: size, footer (exact
    schema, its dataset) and rows, plus the sha256 when ``deep``. The first damaged file
    (in manifest order) is a one-line ``StoreError`` naming it. Footers are read in
    parallel: on an object store each is a request."""
    with ThreadPoolExecutor(max_workers=_CHECK_THREADS) as pool:
        errors = list(pool.map(lambda s: _problem(fs, _join(root, s.path), s, deep), listed))
    for error in errors:
        if error is not None:
            raise error


def _problem(fs: Any, path: str, listed: Listed, deep: bool) -> StoreError | None:
    try:
        _check_one(fs, path, listed, deep)
    except StoreError as exc:
        return exc
    return None


def _check_one(fs: Any, path: str, listed: Listed, deep: bool) -> None:
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise StoreError(f"{path}: listed segment is missing")
    if info.size != listed.bytes:
        raise StoreError(
            f"{path}: {info.size} bytes, the manifest recorded {listed.bytes} "
            "(truncated or overwritten)"
        )
    try:
        with fs.open_input_file(path) as handle:
            metadata = pq.ParquetFile(handle).metadata
            schema = metadata.schema.to_arrow_schema()
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"{path}: not a readable Parquet segment ({first_line(exc)})") from exc
    if [(f.name, f.type) for f in schema] != [(f.name, f.type) for f in SEGMENT_SCHEMA]:
        raise StoreError(f"{path}: foreign schema (not the segments' columns and types)")
    if metadata.num_rows != listed.rows:
        raise StoreError(
            f"{path}: {metadata.num_rows} rows in its footer, the manifest recorded {listed.rows}"
        )
    _check_dataset(path, metadata, listed.dataset)
    if deep and _sha256(fs, path) != listed.sha256:
        raise StoreError(f"{path}: content differs from its recorded sha256")


def _check_dataset(path: str, metadata: Any, dataset: str) -> None:
    """Every row group's ``dataset`` statistics name the manifest's dataset."""
    index = SEGMENT_SCHEMA.get_field_index("dataset")
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(index).statistics
        if metadata.row_group(group).num_rows == 0:
            continue
        if stats is None or not stats.has_min_max or {stats.min, stats.max} != {dataset}:
            raise StoreError(f"{path}: holds rows of another dataset than {dataset!r}")


def _sha256(fs: Any, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open_input_stream(path) as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _ray_modules(address: str | None) -> tuple[Any, Any, Any]:
    """ray, ray.data and its aggregations (the optional extra, untyped for mypy)."""
    try:
        ray = importlib.import_module("ray")
        data = importlib.import_module("ray.data")
        aggregate = importlib.import_module("ray.data.aggregate")
    except ImportError as exc:
        raise InputError("Ray is not installed: pip install 'ponder[distributed]'") from exc
    if address is not None:
        from ponder.sweep.distributed import init_ray

        init_ray(address)
    return ray, data, aggregate


def aggregations(aggregate: Any) -> list[Any]:
    """Ray's aggregations of STATS: ``Count()`` of rows, a ``Sum`` of each contribution."""
    return [
        aggregate.Count(alias_name=name)
        if how == "rows"
        else aggregate.Sum(on=name, alias_name=name)
        for name, (how, _) in STATS.items()
    ]


def contributions(batch: pa.Table) -> pa.Table:
    """Each row's keys (never NULL) and its contribution to every statistic but ``rows``."""
    budget = batch.column("budget")
    columns: dict[str, Any] = {k: batch.column(k) for k in KEYS if k not in ("budget", "sample")}
    columns["budget"] = pc.fill_null(budget, 0)
    columns["budget_known"] = pc.is_valid(budget)
    columns["sample"] = pc.fill_null(pc.equal(batch.column("n_runs"), 1), False)
    for name, (how, column) in STATS.items():
        values = batch.column(column)
        if how == "count":
            columns[name] = pc.cast(pc.is_valid(values), pa.int64())
        elif how == "sum":
            columns[name] = pc.cast(values, pa.int64())
        elif how == "fsum":
            columns[name] = pc.cast(values, pa.float64())
        elif how == "hits":
            columns[name] = pc.cast(pc.fill_null(pc.equal(values, 1.0), False), pa.int64())
        elif how != "rows":  # rows: Ray's Count()
            raise ValueError(f"no Ray aggregation for {how!r} ({name})")
    return pa.table(columns)


def _aggregate(
    modules: tuple[Any, Any, Any], fs: Any, paths: list[str], base: str | Path
) -> list[pa.Table]:
    """One Ray Data GROUP BY of the files; the groups as Arrow tables on the driver."""
    if not paths:
        return []
    ray, data, aggregate = modules
    try:
        dataset = data.read_parquet(paths, filesystem=fs, partitioning=None)
        needed = dataset.select_columns(list(READ_COLUMNS))  # pushed into the scan
        grouped = needed.map_batches(contributions, batch_format="pyarrow")
        result = grouped.groupby(list(RAY_KEYS)).aggregate(*aggregations(aggregate))
        tables: list[pa.Table] = ray.get(result.to_arrow_refs())
    except ray.exceptions.RayError as exc:
        raise StoreError(f"{base}: Ray cannot aggregate the segments ({_cause(exc)})") from exc
    return [t for t in tables if t.num_rows]


def _restored(table: pa.Table) -> pa.Table:
    """Ray's groups as the statistics: NULL budgets back, a sum of no value 0."""
    columns: dict[str, Any] = {}
    for name in KEYS:
        columns[name] = table.column(name)
    known = table.column("budget_known")
    columns["budget"] = pc.if_else(known, pc.cast(table.column("budget"), pa.float64()), None)
    for name in STATS:
        columns[name] = pc.fill_null(table.column(name), 0)
    return pa.table(columns)


def _cause(exc: BaseException) -> str:
    """The first line of the original error out of Ray's wrappers."""
    cause = getattr(exc, "cause", None)
    return first_line(cause if isinstance(cause, BaseException) else exc)
