"""Shared fixtures: the recorded data folder and a fresh store per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ponder import paths
from ponder.store import Store


@pytest.fixture(autouse=True)
def _isolated_user_folders(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests never touch the real user data folder or a user's PONDER_STORE."""
    home = tmp_path_factory.mktemp("ponder-data")
    monkeypatch.setenv(paths.DATA_DIR_ENV, str(home))
    monkeypatch.delenv(paths.STORE_ENV, raising=False)
    monkeypatch.delenv("PONDER_DATA_MIRROR", raising=False)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The recorded public datasets (read-only); skip when this checkout has none beside it."""
    folder = paths.shared_data_dir()
    if not (folder / "reasoning_budget_sweep").is_dir():
        pytest.skip(f"recorded datasets not found at {folder} (set PONDER_SHARED_DATA)")
    return folder


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store.sqlite") as st:
        yield st
