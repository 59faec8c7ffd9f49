"""The registry pins the shared folder's bytes and points at commit-pinned upstream files."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from ponder.datasets import (
    DATASETS,
    UnknownDatasetError,
    find_dataset_dir,
    get_dataset,
    pull,
)

RAW = re.compile(r"^https://raw\.githubusercontent\.com/[\w.-]+/[\w.-]+/[0-9a-f]{40}/\S+$")


def test_expected_datasets_are_registered() -> None:
    assert set(DATASETS) == {
        "reasoning_budget_sweep",
        "mmlu_pro_math",
        "routellm_gsm8k",
        "matharena_aime2025_I",
        "math500",
        "gsm8k",
        "matharena_competitions",
    }


@pytest.mark.parametrize("name", list(DATASETS))
def test_pins_match_the_shared_folder(name: str, shared: Path) -> None:
    for f in get_dataset(name).mirror_files:
        data = (shared / f.path).read_bytes()
        assert len(data) == f.size, f.path
        assert hashlib.sha256(data).hexdigest() == f.sha256, f.path


@pytest.mark.parametrize("name", list(DATASETS))
def test_upstream_urls_are_commit_pinned(name: str) -> None:
    spec = get_dataset(name)
    assert spec.upstream_commit and len(spec.upstream_commit) == 40
    for f in spec.upstream_files:
        assert f.upstream_url is not None and RAW.match(f.upstream_url), f.upstream_url
        assert f"/{spec.upstream_repo}/{spec.upstream_commit}/" in f.upstream_url
    if spec.needs_mirror:
        assert not spec.upstream_files and spec.mirror_reason
    else:
        assert spec.upstream_files


def test_reasoning_budget_sweep_maps_the_single_upstream_csv() -> None:
    spec = get_dataset("reasoning_budget_sweep")
    (single,) = spec.upstream_files
    assert single.path == "reasoning_budget_sweep/reasoning_budget_sweep.csv"
    assert single.upstream_url is not None
    assert single.upstream_url.endswith("/data/reasoning_budget_sweep.csv")
    assert single.sha256 is None and not single.in_mirror
    assert spec.license == "CC-BY-4.0" and "Hossain" in spec.attribution


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(UnknownDatasetError) as info:
        get_dataset("nope")
    message = str(info.value)
    assert "'nope'" in message
    assert all(name in message for name in DATASETS)


def test_find_dataset_dir_prefers_the_shared_folder(shared: Path) -> None:
    found = find_dataset_dir("math500")
    assert found is not None and found.resolve() == (shared / "problem_sets").resolve()


def test_find_dataset_dir_falls_back_to_the_pulled_copy(
    shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    monkeypatch.setenv("PONDER_SHARED_DATA", str(tmp_path / "no-shared"))
    assert find_dataset_dir("gsm8k") is None
    pull("gsm8k", mirror=shared, progress=False)
    assert find_dataset_dir("gsm8k") == isolated_env / "datasets" / "problem_sets"
    # problem sets share a folder: gsm8k being there says nothing about math500
    assert find_dataset_dir("math500") is None
