"""Run the real `ponder` entry point in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

Runner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def ponder(tmp_path: Path) -> Runner:
    """`ponder(*args, store=PATH)` -> CompletedProcess; never touches the user's folders."""

    def run(
        *args: str, store: Path | None = None, check_ok: bool = False
    ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env["PONDER_DATA_DIR"] = str(tmp_path / "user-data")
        env.pop("PONDER_STORE", None)
        if store is not None:
            env["PONDER_STORE"] = str(store)
        env["COLUMNS"] = "200"
        result = subprocess.run(
            [sys.executable, "-m", "ponder", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            cwd=tmp_path,
            check=False,
        )
        if check_ok and result.returncode != 0:
            raise AssertionError(f"ponder {args} failed: {result.stderr}")
        return result

    return run
