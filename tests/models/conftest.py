"""Fixtures for the models tests (the helpers live in _wheels.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _wheels import MakeModel, model_factory


@pytest.fixture
def make_model(tmp_path: Path) -> MakeModel:
    """Build synthetic split models (see _wheels.model_factory)."""
    return model_factory(tmp_path)
