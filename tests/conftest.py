"""Shared fixtures: the recorded data folder and a fresh store per test.

Tests that need the recorded datasets take the ``shared_data`` fixture. Without the data
they are skipped on a user's machine (with a loud warning in the summary) and fail in CI
(``CI`` set to a true value), so a CI run can never pass by skipping the real-data tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ponder import paths
from ponder.store import Store

# Every skip for missing recorded data carries this text; the summary hook counts them.
MISSING_DATA = "recorded datasets not found"


def in_ci() -> bool:
    """True when the CI variable is set to a true value (as CI services and .ci/run do)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def require_shared_data() -> Path:
    """The recorded datasets folder; skip (or fail, in CI) when this checkout has none beside it."""
    folder = paths.shared_data_dir()
    if not (folder / "reasoning_budget_sweep").is_dir():
        message = f"{MISSING_DATA} at {folder} (set PONDER_SHARED_DATA)"
        if in_ci():
            pytest.fail(f"{message}; CI must run the real-data tests", pytrace=False)
        pytest.skip(message)
    return folder.resolve()


@pytest.hookimpl(trylast=True)  # after the short summary, so it is the last thing read
def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    """Say loudly how many tests did not run because the recorded datasets are missing."""
    skipped = terminalreporter.stats.get("skipped", [])
    count = sum(1 for report in skipped if MISSING_DATA in _skip_reason(report))
    if count:
        terminalreporter.write_sep("!", "WARNING: recorded data missing", red=True, bold=True)
        terminalreporter.write_line(
            f"{count} tests were SKIPPED: {MISSING_DATA} at {paths.shared_data_dir()}. "
            "They check the figures against the real sweeps; set PONDER_SHARED_DATA or "
            "fetch the data (docs/datasets.md). CI fails instead of skipping.",
            red=True,
            bold=True,
        )


def _skip_reason(report: Any) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


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
    """The recorded public datasets (read-only); see :func:`require_shared_data`."""
    return require_shared_data()


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
