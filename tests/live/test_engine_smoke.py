"""The installed engine passes the install script's own smoke test (a real llama.cpp load and a
few generated tokens in a subprocess), so a SIGILL build is caught by `make local`, not later."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.live

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install-engine.sh"


def test_installed_engine_smoke(smol_path: Path) -> None:
    env = dict(os.environ, PONDER_MODELS_DIR=str(smol_path.parent))
    result = subprocess.run(
        ["bash", str(SCRIPT), "--check", sys.executable],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    pattern = r"engine: smoke test passed \(llama-cpp-python 0\.3\.36: generated [1-4] tokens\)"
    assert re.search(pattern, result.stdout), result.stdout
