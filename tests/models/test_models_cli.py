"""`ponder models` as a user runs it: a subprocess of the real entry point."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _run(
    tmp_path: Path, *args: str, models: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PONDER_DATA_DIR"] = str(tmp_path / "user-data")
    env.pop("PONDER_MODELS_DIR", None)
    if models is not None:
        env["PONDER_MODELS_DIR"] = str(models)
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "ponder", "models", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "Tiny-Q8.gguf"
    path.write_bytes(b"GGUF" + bytes(range(256)) * 4)
    return path


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_pull_path_then_present_then_ls_and_rm(tmp_path: Path, gguf: Path) -> None:
    models = tmp_path / "models"
    first = _run(tmp_path, "pull", "./Tiny-Q8.gguf", "--name", "tiny", models=models)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("tiny: written (0 MB, sha256 verified): ")
    second = _run(tmp_path, "pull", "./Tiny-Q8.gguf", "--name", "tiny", models=models)
    assert "tiny: already present and verified, nothing to do" in second.stdout

    listed = _run(tmp_path, "ls", "--json", models=models)
    records = {r["name"]: r for r in json.loads(listed.stdout)}
    assert records["tiny"]["sha256"] == hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert records["tiny"]["sha256_ok"] is True
    assert records["tiny"]["size"] == 4 + 1024
    assert records["tiny"]["path"] == str(models / "tiny.gguf")
    assert records["qwen2.5-coder-1.5b"] | {"sha256_ok": False} == records["qwen2.5-coder-1.5b"]
    assert records["qwen2.5-coder-1.5b"]["params"] == 1_540_000_000
    assert records["qwen2.5-coder-1.5b"]["check"] == "missing"

    table = _run(tmp_path, "ls", models=models)
    assert table.returncode == 0
    assert "tiny" in table.stdout
    assert "1.54B" in table.stdout

    where = _run(tmp_path, "path", "tiny", models=models)
    assert where.stdout.strip() == str((models / "tiny.gguf").resolve())

    removed = _run(tmp_path, "rm", "tiny", models=models)
    assert removed.returncode == 0
    assert not (models / "tiny.gguf").exists()
    assert "ponder models pull tiny" in _one_error_line(
        _run(tmp_path, "path", "tiny", models=models)
    )


def test_dir_option_beats_environment(tmp_path: Path, gguf: Path) -> None:
    result = _run(tmp_path, "pull", str(gguf), "--dir", str(tmp_path / "a"), models=tmp_path / "b")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "a" / "tiny-q8.gguf").is_file()
    assert not (tmp_path / "b").exists()


def test_not_a_gguf(tmp_path: Path) -> None:
    (tmp_path / "notes.gguf").write_text("hello")
    line = _one_error_line(_run(tmp_path, "pull", "notes.gguf", models=tmp_path / "m"))
    assert line == "error: notes.gguf: not a GGUF file (starts with b'hell', expected b'GGUF')"
    assert not (tmp_path / "m").exists()


def test_unknown_name_stops_before_any_work(tmp_path: Path, gguf: Path) -> None:
    line = _one_error_line(_run(tmp_path, "pull", str(gguf), "qwen-0.5b", models=tmp_path / "m"))
    assert "unknown model 'qwen-0.5b'" in line
    assert not (tmp_path / "m").exists()  # the first, valid, file was not added either


def test_name_with_several_models(tmp_path: Path, gguf: Path) -> None:
    line = _one_error_line(_run(tmp_path, "pull", str(gguf), str(gguf), "--name", "x"))
    assert "--name needs exactly one model" in line


def test_rm_checks_every_name_first(tmp_path: Path, gguf: Path) -> None:
    models = tmp_path / "m"
    assert _run(tmp_path, "pull", str(gguf), "--name", "keep", models=models).returncode == 0
    line = _one_error_line(_run(tmp_path, "rm", "keep", "ghost", models=models))
    assert "no model named 'ghost'" in line
    assert (models / "keep.gguf").is_file()


def test_hub_without_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in module that fails to import, as when huggingface_hub is not installed.
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "huggingface_hub.py").write_text("raise ImportError('not installed')\n")
    monkeypatch.setenv("PYTHONPATH", str(shadow))
    line = _one_error_line(_run(tmp_path, "pull", "org/repo:f.gguf", models=tmp_path / "m"))
    assert "pulling org/repo:f.gguf from a model hub needs the huggingface_hub package" in line
    assert not (tmp_path / "m").exists()
