"""Read CSV / JSONL files into string tables that remember each row's line number.

Every importer validates through these helpers, so a bad value is reported with its file,
line and field, and nothing is written until the whole file has been checked.
"""

from __future__ import annotations

import csv
import gc
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ponder.errors import InputError

_TRUE = {"true", "1", "1.0", "yes", "y", "t"}
_FALSE = {"false", "0", "0.0", "no", "n", "f"}


@dataclass
class Table:
    """A file's rows as strings ("" for missing), with the line where each row starts."""

    path: Path
    frame: pd.DataFrame
    lines: np.ndarray

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.frame.columns]

    def __len__(self) -> int:
        return len(self.frame)

    def require(self, columns: Iterable[str], *, what: str = "missing column(s)") -> None:
        missing = [c for c in columns if c not in self.frame.columns]
        if missing:
            raise InputError(
                f"{what} {', '.join(map(repr, missing))}; the file has: {', '.join(self.columns)}",
                path=self.path,
                line=1 if self.path.suffix.lower() == ".csv" else None,
            )

    def fail(self, row: int, column: str, message: str) -> InputError:
        return InputError(message, path=self.path, line=int(self.lines[row]), field=column)

    # -- typed columns -----------------------------------------------------------------------

    def text(self, column: str, *, required: bool = True) -> pd.Series:
        values = self.frame[column].astype(str)
        if required:
            empty = (values.str.strip() == "").to_numpy()
            if empty.any():
                raise self.fail(int(np.argmax(empty)), column, "empty value")
        return values

    def boolean(self, column: str, *, allow_missing: bool = False) -> pd.Series:
        """1.0 / 0.0 (NaN for missing when allowed) from true/false, 1/0, yes/no."""
        raw = self.frame[column].astype(str).str.strip().str.lower()
        out = pd.Series(np.nan, index=raw.index, dtype="float64")
        out[raw.isin(_TRUE)] = 1.0
        out[raw.isin(_FALSE)] = 0.0
        bad = out.isna() & ~((raw == "") & allow_missing)
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise self.fail(
                row, column, f"{self.frame[column].iloc[row]!r} is not a boolean (true/false, 1/0)"
            )
        return out

    def number(
        self,
        column: str,
        *,
        allow_missing: bool = False,
        integer: bool = False,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> pd.Series:
        raw = self.frame[column].astype(str).str.strip()
        values = pd.to_numeric(raw.where(raw != "", None), errors="coerce").astype("float64")
        missing = raw == ""
        bad = values.isna() & ~missing
        if integer:
            # Finite and exactly representable (|x| <= 2**53): "1e400" or "inf" is no budget.
            bad |= values.notna() & (
                ~np.isfinite(values) | (values.abs() > 2**53) | (values != np.floor(values))
            )
        if minimum is not None:
            bad |= values < minimum
        if maximum is not None:
            bad |= values > maximum
        if not allow_missing:
            bad |= missing
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            value = self.frame[column].iloc[row]
            what = "an integer" if integer else "a number"
            if minimum is not None or maximum is not None:
                what += f" in [{minimum if minimum is not None else '-inf'}, "
                what += f"{maximum if maximum is not None else 'inf'}]"
            reason = "missing value" if value == "" else f"{value!r} is not {what}"
            raise self.fail(row, column, reason)
        return values

    def correctness(self, column: str) -> pd.Series:
        """A 0..1 score from booleans (true/false, yes/no) or numbers in [0, 1]."""
        raw = self.frame[column].astype(str).str.strip()
        lower = raw.str.lower()
        values = pd.to_numeric(raw.where(raw != "", None), errors="coerce").astype("float64")
        values[lower.isin(_TRUE - {"1", "1.0"})] = 1.0
        values[lower.isin(_FALSE - {"0", "0.0"})] = 0.0
        bad = (values.isna() | (values < 0) | (values > 1)).to_numpy()
        if bad.any():
            row = int(np.argmax(bad))
            value = self.frame[column].iloc[row]
            reason = "missing value" if value == "" else f"{value!r} is not true/false or 0..1"
            raise self.fail(row, column, reason)
        return values


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise InputError("no such file", path=path)
    if path.is_dir():
        raise InputError("is a folder, expected a CSV or JSONL file", path=path)


def read_csv(path: Path) -> Table:
    """Read a CSV strictly: a row with the wrong number of fields is an error with its line."""
    _check_exists(path)
    csv.field_size_limit(sys.maxsize)
    rows: list[list[str]] = []
    lines: list[int] = []
    # Millions of small row lists make the cyclic garbage collector rescan them over and over
    # (parsing grew faster than linearly); none of them can form a cycle, so pause it.
    was_enabled = gc.isenabled()
    gc.disable()
    start = 1
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, strict=True)
            header = next(reader, None)
            if header is None:
                raise InputError("empty file (no header row)", path=path)
            header = [h.strip() for h in header]
            dupes = sorted({h for h in header if header.count(h) > 1})
            if dupes:
                raise InputError(f"duplicate column(s) {dupes}", path=path, line=1)
            start = reader.line_num + 1
            for row in reader:
                if len(row) != len(header):
                    if not row:  # blank line
                        start = reader.line_num + 1
                        continue
                    raise InputError(
                        f"expected {len(header)} fields, found {len(row)}", path=path, line=start
                    )
                rows.append(row)
                lines.append(start)
                start = reader.line_num + 1
    except csv.Error as exc:
        raise InputError(f"malformed CSV: {exc}", path=path, line=start) from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text: {exc.reason}", path=path) from exc
    finally:
        if was_enabled:
            gc.enable()
    frame = pd.DataFrame(rows, columns=header, dtype=object)
    return Table(path=path, frame=frame, lines=np.asarray(lines, dtype=np.int64))


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    return json.dumps(value)


def read_jsonl(path: Path) -> Table:
    """Read JSON Lines: each non-blank line must be a JSON object."""
    _check_exists(path)
    records: list[dict[str, str]] = []
    lines: list[int] = []
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"invalid JSON: {exc.msg}", path=path, line=number) from exc
                if not isinstance(obj, dict):
                    raise InputError("expected a JSON object", path=path, line=number)
                records.append({str(k): _as_text(v) for k, v in obj.items()})
                lines.append(number)
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text: {exc.reason}", path=path) from exc
    frame = pd.DataFrame.from_records(records).fillna("") if records else pd.DataFrame()
    return Table(path=path, frame=frame.astype(object), lines=np.asarray(lines, dtype=np.int64))


def read_table(path: Path) -> Table:
    """CSV or JSONL by suffix (`.csv`, `.jsonl`, `.json`)."""
    _check_exists(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_csv(path)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return read_jsonl(path)
    raise InputError("unsupported file type: expected .csv or .jsonl", path=path)
