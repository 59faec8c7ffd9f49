"""`ponder data list|pull` as a user runs them: a subprocess, exit codes, one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import REPO_ROOT, LoopbackServer
from ponder.datasets import DATASETS, get_dataset

pytestmark = pytest.mark.network_local


def run(*args: str, data_dir: Path, shared: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("PONDER_DATA_MIRROR", None)
    env["PONDER_DATA_DIR"] = str(data_dir)
    env["PONDER_SHARED_DATA"] = str(shared)
    return subprocess.run(
        [sys.executable, "-m", "ponder", "data", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
    )


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_list_json(shared: Path, tmp_path: Path) -> None:
    proc = run("list", "--json", data_dir=tmp_path, shared=shared)
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)
    assert [r["name"] for r in records] == list(DATASETS)
    by_name = {r["name"]: r for r in records}
    assert by_name["mmlu_pro_math"]["source"] == "mirror-needed"
    assert by_name["mmlu_pro_math"]["mirror_reason"]
    assert by_name["reasoning_budget_sweep"]["source"] == "upstream"
    assert by_name["reasoning_budget_sweep"]["license"] == "CC-BY-4.0"
    assert by_name["gsm8k"]["local"] == str((shared / "problem_sets").resolve())


def test_list_table_says_which_need_a_mirror(shared: Path, tmp_path: Path) -> None:
    proc = run("list", data_dir=tmp_path, shared=tmp_path / "no-shared")
    assert proc.returncode == 0, proc.stderr
    # Each dataset's own row says where it comes from, as its registry entry has it; every
    # mirror-only dataset gets a line with its reason.
    rows = {line.split()[1]: line for line in proc.stdout.splitlines() if line.startswith("│")}
    assert set(rows) == set(DATASETS)
    for name in DATASETS:
        spec = get_dataset(name)
        assert ("mirror-needed" in rows[name]) == spec.needs_mirror, rows[name]
        assert ("upstream" in rows[name]) == (not spec.needs_mirror), rows[name]
        if spec.needs_mirror:
            assert f"{name} needs a mirror: {spec.mirror_reason}" in " ".join(proc.stdout.split())


def test_pull_from_loopback_mirror(
    shared: Path, serve: Callable[..., LoopbackServer], tmp_path: Path
) -> None:
    server = serve(shared)
    data_dir = tmp_path / "data"
    args = ("pull", "gsm8k", "--mirror", server.url, "--json")
    proc = run(*args, data_dir=data_dir, shared=tmp_path / "no-shared")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["written"] == ["problem_sets/gsm8k_test.jsonl"]
    target = data_dir / "datasets" / "problem_sets" / "gsm8k_test.jsonl"
    assert hashlib.sha256(target.read_bytes()).hexdigest() == get_dataset("gsm8k").files[0].sha256

    again = run(*args, data_dir=data_dir, shared=tmp_path / "no-shared")
    assert again.returncode == 0 and json.loads(again.stdout)["skipped"] == result["written"]
    assert len(server.requests) == 1

    listed = run("list", "--json", data_dir=data_dir, shared=tmp_path / "no-shared")
    local = {r["name"]: r["local"] for r in json.loads(listed.stdout)}
    assert local["gsm8k"] == str(target.parent.resolve()) and local["math500"] is None


def test_pull_human_output(shared: Path, tmp_path: Path) -> None:
    proc = run("pull", "math500", "--mirror", str(shared), data_dir=tmp_path, shared=shared)
    assert proc.returncode == 0, proc.stderr
    assert "math500: 1 written" in proc.stdout
    (pinned,) = get_dataset("math500").files
    written = tmp_path / "datasets" / pinned.path
    assert hashlib.sha256(written.read_bytes()).hexdigest() == pinned.sha256
    assert written.read_bytes() == (shared / pinned.path).read_bytes()


def test_unknown_name(shared: Path, tmp_path: Path) -> None:
    line = one_line_error(run("pull", "nope", data_dir=tmp_path, shared=shared))
    assert line == f"error: unknown source 'nope'; sources: {', '.join(DATASETS)}"
    typo = one_line_error(run("pull", "routelm_gsm8k", data_dir=tmp_path, shared=shared))
    assert "unknown source 'routelm_gsm8k' (did you mean 'routellm_gsm8k'?)" in typo


def test_needs_mirror(shared: Path, tmp_path: Path) -> None:
    line = one_line_error(run("pull", "matharena_aime2025_I", data_dir=tmp_path, shared=shared))
    assert "matharena_aime2025_I" in line and "PONDER_DATA_MIRROR" in line


def test_404_mirror(serve: Callable[..., LoopbackServer], shared: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    server = serve(empty)
    proc = run("pull", "math500", "--mirror", server.url, data_dir=tmp_path, shared=shared)
    line = one_line_error(proc)
    assert "HTTP 404" in line and server.url in line
