"""Errors that carry where the problem is, so the CLI can print one clear line."""

from __future__ import annotations

from pathlib import Path


class PonderError(Exception):
    """Base class for every error ponder reports to a user."""


class InputError(PonderError):
    """Bad input: names the file, the line and the field when they are known."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.reason = message
        where = []
        if self.path is not None:
            where.append(self.path if line is None else f"{self.path}:{line}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class StoreError(PonderError):
    """The outcome store cannot be opened or written (corrupt, newer schema, locked)."""


class ChecksumError(PonderError):
    """A downloaded file does not match its pinned or recorded sha256."""


class DownloadError(PonderError):
    """A dataset file could not be fetched."""
