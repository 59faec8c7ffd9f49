"""Shared fixtures: the recorded data folder and a fresh store per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    return folder.resolve()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store.sqlite") as st:
        yield st


@pytest.fixture(scope="session")
def math500_matrix(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The recorded MATH-500 sweep as an OutcomeMatrix (100 problems x 20 configs x 3 seeds)."""
    from ponder.evaluate import OutcomeMatrix
    from ponder.grading import normalize_answer
    from ponder.importers import import_paths

    with Store(tmp_path_factory.mktemp("math500") / "s.sqlite") as store:
        csv = shared_data / "reasoning_budget_sweep/reasoning_budget_sweep_math500.csv"
        import_paths(store, [csv])
        return OutcomeMatrix.from_frame(
            store.outcomes_frame(datasets=["math500"]),
            problems=store.problems_frame(),
            normalize=normalize_answer,
        )
