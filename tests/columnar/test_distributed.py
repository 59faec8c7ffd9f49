"""The statistics by Ray Data over the manifest's segments equal DuckDB's over the same files
(integer-valued columns exactly, float sums within FLOAT_RTOL), on a local Ray instance: the
recorded datasets and the built-in sweep, synthetic rows with NULL tokens, fractional correct
and no budgets; only listed files are read; a damaged listed file is named before Ray reads."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from columnar_helpers import FLOAT_RTOL, recorded_sources, synthetic_frame

from ponder.builtin import builtin_folder
from ponder.columnar import FLOAT_STATS, INT_STATS, KEYS, STATS, stats_from_parquet
from ponder.columnar.catalog import Catalog, parquet_root
from ponder.columnar.compaction import compact
from ponder.columnar.distributed import MANIFEST, export_manifest, stats_from_ray
from ponder.errors import InputError, StoreError
from ponder.importers import import_paths
from ponder.store import Store

if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}:
    import ray  # CI installs the distributed extra: a missing Ray must fail, not skip
else:
    ray = pytest.importorskip("ray", reason="Ray is the optional distributed extra")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def assert_same_stats(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Keys, order, dtypes and integer-valued columns exact; float sums within FLOAT_RTOL."""
    assert list(got.columns) == list(want.columns) == [*KEYS, *STATS]
    exact = [*KEYS, *INT_STATS]
    pd.testing.assert_frame_equal(got[exact], want[exact], check_exact=True)
    pd.testing.assert_frame_equal(
        got[list(FLOAT_STATS)], want[list(FLOAT_STATS)], check_exact=False, rtol=FLOAT_RTOL, atol=0
    )


def published(store: Path, frame: pd.DataFrame, parts: int) -> None:
    """The rows committed as ``parts`` segments per dataset, so groups span files."""
    with Catalog(store) as catalog:
        for i, chunk in enumerate(np.array_split(np.arange(len(frame)), parts)):
            catalog.publish(frame.iloc[chunk], segment_id=f"part{i}")


@pytest.mark.slow  # a Ray Data job: about 10 s on 2 cores
def test_recorded_datasets_and_builtin_sweep_equal_duckdb(
    local_ray: None, shared_data: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store.sqlite"
    sources = [*recorded_sources(shared_data)[:3], builtin_folder()]
    with Store(store) as opened:
        import_paths(opened, sources)
        imported = opened.counts()["outcomes"]
    assert compact(store, chunk_rows=50_000).rows == imported
    manifest = export_manifest(store)
    assert manifest == parquet_root(store) / MANIFEST
    want = stats_from_parquet(parquet_root(store))
    got = stats_from_ray(parquet_root(store))
    assert_same_stats(got, want)
    assert int(got["rows"].sum()) == imported
    assert {"math500", "aime25"} <= set(got["dataset"]) and len(set(got["dataset"])) >= 4
    assert (~got["sample"]).any() and got["budget"].isna().any()  # aggregated rows, no budget
    some = sorted(set(got["dataset"]))[:2]
    assert_same_stats(
        stats_from_ray(parquet_root(store), datasets=some),
        stats_from_parquet(parquet_root(store), datasets=some),
    )


@pytest.mark.slow  # a Ray Data job: about 10 s on 2 cores
def test_synthetic_nulls_fractions_and_no_budgets(local_ray: None, tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    published(store, synthetic_frame(seed=5), parts=3)
    written = export_manifest(store, tmp_path / "elsewhere.json")
    want = stats_from_parquet(parquet_root(store))
    got = stats_from_ray(parquet_root(store), written)
    assert_same_stats(got, want)
    # The cases the synthetic rows are there for are present.
    assert want["budget"].isna().any() and not want["sample"].all()
    assert ((want["out_n"] == 0) & (want["out_sum"] == 0) & (want["rows"] > 0)).any()
    assert (want["latency_n"] < want["rows"]).any() and (want["hits"] < want["correct_n"]).any()
    fractional = want.loc[~want["sample"], "correct_sum"]
    assert (fractional != fractional.round()).any()
    assert set(want["dataset"]) == {"alpha", "beta/two words", "gamma"}


@pytest.mark.slow  # a Ray Data job: about 10 s on 2 cores
def test_only_listed_files_are_read(local_ray: None, tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    frame = synthetic_frame(seed=6)
    published(store, frame, parts=1)
    manifest = json.loads(export_manifest(store).read_text())
    listed = [s["path"] for s in manifest["segments"]]
    root = parquet_root(store)
    assert sorted(listed) == sorted(s.path for s in Catalog(store, readonly=True).segments())
    want = stats_from_parquet(root)  # DuckDB over the folder: the listed files alone here
    # A crashed write's leftover: a valid segment file no row lists, beside a listed one.
    leftover = root / Path(listed[0]).with_name("crashed.parquet")
    shutil.copyfile(root / listed[0], leftover)
    got = stats_from_ray(root)
    assert_same_stats(got, want)
    assert int(got["rows"].sum()) == len(frame)
    globbed = stats_from_parquet(root)  # a folder listing would count the leftover's rows
    assert int(globbed["rows"].sum()) > len(frame)
    # A manifest that is not one is refused in one line.
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(InputError, match="not a ponder segments manifest"):
        stats_from_ray(root, tmp_path / "bad.json")
    with pytest.raises(InputError, match="no manifest here"):
        stats_from_ray(tmp_path / "nowhere")


@pytest.mark.slow  # a Ray Data job: about 10 s on 2 cores
def test_a_truncated_listed_file_is_named_before_ray_reads(local_ray: None, tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    published(store, synthetic_frame(seed=8), parts=2)
    export_manifest(store)
    root = parquet_root(store)
    victim = next(s for s in Catalog(store, readonly=True).segments() if s.dataset == "gamma")
    with (root / victim.path).open("r+b") as handle:
        handle.truncate(victim.bytes // 2)
    with pytest.raises(StoreError, match="truncated") as caught:
        stats_from_ray(root)
    assert str(root / victim.path) in str(caught.value) and "\n" not in str(caught.value)
    # The other datasets stay readable; a new manifest is refused by the catalog's check.
    assert set(stats_from_ray(root, datasets=["alpha"])["dataset"]) == {"alpha"}
    with pytest.raises(StoreError, match="truncated"):
        export_manifest(store)


@pytest.mark.slow  # a Ray Data job: about 10 s on 2 cores
def test_a_rewritten_file_is_found_by_the_deep_check(local_ray: None, tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    published(store, synthetic_frame(seed=9), parts=1)
    export_manifest(store)
    root = parquet_root(store)
    victim = Catalog(store, readonly=True).segments()[0]
    table = pq.read_table(root / victim.path)
    pq.write_table(table, root / victim.path, compression="snappy")  # same rows, other bytes
    manifest = json.loads((root / MANIFEST).read_text())
    for entry in manifest["segments"]:  # the size as it now is, so only the hash tells
        entry["bytes"] = (root / entry["path"]).stat().st_size
    (root / MANIFEST).write_text(json.dumps(manifest))
    assert len(stats_from_ray(root)) > 0
    with pytest.raises(StoreError, match="sha256"):
        stats_from_ray(root, deep=True)


def test_no_segments_give_the_empty_table(tmp_path: Path) -> None:
    store = tmp_path / "empty.sqlite"
    Store(store).close()
    export_manifest(store)
    got = stats_from_ray(parquet_root(store))
    want = stats_from_parquet(parquet_root(store))
    assert len(got) == 0
    pd.testing.assert_frame_equal(got, want)


def test_without_ray_the_error_says_which_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "s.sqlite"
    published(store, synthetic_frame(seed=4), parts=1)
    export_manifest(store)
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets without the extra
    with pytest.raises(InputError, match=r"pip install 'ponder\[distributed\]'") as caught:
        stats_from_ray(parquet_root(store))
    assert "\n" not in str(caught.value)
