"""Where ponder keeps its data by default, overridable by environment variables."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

STORE_ENV = "PONDER_STORE"
DATA_DIR_ENV = "PONDER_DATA_DIR"
SHARED_DATA_ENV = "PONDER_SHARED_DATA"
MODELS_DIR_ENV = "PONDER_MODELS_DIR"


def data_dir() -> Path:
    """The user's ponder data folder (datasets, default store)."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else Path(platformdirs.user_data_dir("ponder"))


def models_dir() -> Path:
    """Where pulled model weights live: `$PONDER_MODELS_DIR`, else `models/` in the data folder."""
    env = os.environ.get(MODELS_DIR_ENV)
    return Path(env) if env else data_dir() / "models"


def default_store_path() -> Path:
    """`$PONDER_STORE`, else `ponder.sqlite` in the user's data folder."""
    env = os.environ.get(STORE_ENV)
    return Path(env) if env else data_dir() / "ponder.sqlite"


def shared_data_dir() -> Path:
    """Recorded datasets: `$PONDER_SHARED_DATA`, else `../shared/data` beside the checkout.

    Looks beside the working directory first, then beside the source checkout (for an
    editable install run from elsewhere).
    """
    env = os.environ.get(SHARED_DATA_ENV)
    if env:
        return Path(env)
    beside_cwd = Path("..") / "shared" / "data"
    beside_checkout = Path(__file__).resolve().parents[3] / "shared" / "data"
    for candidate in (beside_cwd, beside_checkout):
        if candidate.is_dir():
            return candidate
    return beside_cwd
