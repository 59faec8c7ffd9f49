"""Read CSV / JSONL files into string tables that remember each row's line number.

Every importer validates through these helpers, so a bad value is reported with its file,
line and field, and nothing is written until the whole file has been checked.
"""

from __future__ import annotations

import csv
import gc
import io
import json
import sys
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np
import pandas as pd

from ponder.errors import InputError

# Integers beyond 2**53 cannot be held exactly by a float (nor by the analyses' frames).
_MAX_EXACT = 2**53
_BOM = b"\xef\xbb\xbf"

_TRUE = {"true", "1", "1.0", "yes", "y", "t"}
_FALSE = {"false", "0", "0.0", "no", "n", "f"}


class Table:
    """A file's rows as strings ("" for missing), with the line where each row starts.

    The lines may be computed on first use (`line_source`): the fast CSV reader does not track
    them, and they are only needed to report an error.
    """

    def __init__(
        self,
        path: Path,
        frame: pd.DataFrame,
        lines: np.ndarray | None = None,
        *,
        line_source: Callable[[], np.ndarray] | None = None,
    ) -> None:
        if lines is None and line_source is None:
            raise ValueError("a Table needs its lines or a way to compute them")
        self.path = path
        self.frame = frame
        self._lines = lines
        self._line_source = line_source

    def line_finder(self) -> Callable[[], np.ndarray]:
        """The lines, later, without keeping the parsed rows alive (only what computes them)."""
        if self._lines is not None:
            known = self._lines
            return lambda: known
        source = self._line_source
        assert source is not None
        cache: list[np.ndarray] = []

        def lines() -> np.ndarray:
            if not cache:
                cache.append(source())
            return cache[0]

        return lines

    @property
    def lines(self) -> np.ndarray:
        if self._lines is None:
            assert self._line_source is not None
            self._lines = self._line_source()
            self._line_source = None
        return self._lines

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

    @property
    def header_line(self) -> int | None:
        """Line 1 for a CSV (its header); JSONL has no header line."""
        return 1 if self.path.suffix.lower() == ".csv" else None

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
        """Numbers, always finite ("inf" and "nan" are refused); integers must be exact.

        An integer is range-checked on its exact decimal value, not on the float it would round
        to: "9007199254740993" must not become 2**53 and pass.
        """
        raw = self.frame[column].astype(str).str.strip()
        values = _to_float(raw)
        missing = raw == ""
        bad = values.isna() & ~missing
        infinite = values.notna() & ~np.isfinite(values)
        bad |= infinite
        if integer:
            bad |= values.notna() & ((values.abs() > _MAX_EXACT) | (values != np.floor(values)))
            near = (values.abs() >= _MAX_EXACT) & ~bad
            inexact = [
                int(i) for i in np.flatnonzero(near.to_numpy()) if not _exact_integer(raw.iloc[i])
            ]
            if inexact:
                flags = bad.to_numpy(copy=True)
                flags[inexact] = True
                bad = pd.Series(flags, index=bad.index)
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
            if value == "":
                reason = "missing value"
            elif infinite.iloc[row] or raw.iloc[row].lower() in ("nan", "-nan", "+nan"):
                kind = "an integer" if integer else "a number"
                reason = f"{value!r} is not {kind} (infinite and NaN values are refused)"
            else:
                reason = f"{value!r} is not {what}"
            raise self.fail(row, column, reason)
        return values

    def correctness(self, column: str) -> pd.Series:
        """A 0..1 score from booleans (true/false, yes/no) or numbers in [0, 1]."""
        raw = self.frame[column].astype(str).str.strip()
        lower = raw.str.lower()
        values = _to_float(raw)
        values[lower.isin(_TRUE - {"1", "1.0"})] = 1.0
        values[lower.isin(_FALSE - {"0", "0.0"})] = 0.0
        bad = (values.isna() | (values < 0) | (values > 1)).to_numpy()
        if bad.any():
            row = int(np.argmax(bad))
            value = self.frame[column].iloc[row]
            reason = "missing value" if value == "" else f"{value!r} is not true/false or 0..1"
            raise self.fail(row, column, reason)
        return values


def _to_float(raw: pd.Series) -> pd.Series:
    """Stripped strings to float64, NaN where empty or not a number.

    Arrow parses a clean column at once; a column with anything it refuses goes through
    `pd.to_numeric(errors="coerce")`, which marks exactly the values that are not numbers.
    """
    try:
        import pyarrow as pa
        import pyarrow.compute as pc

        array = pa.array(raw.array)  # Arrow-backed strings: no copy
        empty = pc.equal(array, "")
        parsed = pc.cast(pc.if_else(empty, pa.scalar(None, array.type), array), pa.float64())
        values = parsed.to_numpy(zero_copy_only=False)
        return pd.Series(values, index=raw.index, dtype="float64")
    except Exception:  # any value Arrow refuses: the exact, slower parse
        values = pd.to_numeric(raw.where(raw != "", None), errors="coerce")
        return values.astype("float64")


def _exact_integer(text: str) -> bool:
    """True when `text` is an integer whose exact value is within +-2**53."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        return False
    return value.is_finite() and value == value.to_integral_value() and abs(value) <= _MAX_EXACT


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise InputError("no such file", path=path)
    if path.is_dir():
        raise InputError("is a folder, expected a CSV or JSONL file", path=path)


def read_source(path: Path) -> bytes:
    """A file's bytes, read once: the importer hashes and parses the same bytes."""
    _check_exists(path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=path) from exc


def _decode(path: Path, data: bytes) -> str:
    """UTF-8 text (a leading BOM is dropped); a bad byte is named by line and byte offset."""
    skip = len(_BOM) if data.startswith(_BOM) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = skip + exc.start
        line = data.count(b"\n", 0, offset) + 1
        raise InputError(
            f"not UTF-8 text: {exc.reason} (byte 0x{data[offset]:02x} at byte offset {offset})",
            path=path,
            line=line,
        ) from exc


def _check_nul(table: Table, data: bytes) -> None:
    """A NUL character inside a field is refused: it would be stored inside a name."""
    for column in table.frame.columns:
        if "\x00" in str(column):
            raise InputError("NUL character in the header", path=table.path, line=table.header_line)
    for column in table.frame.columns:
        has = table.frame[column].str.contains("\x00", regex=False).to_numpy(dtype=bool)
        if has.any():
            raise table.fail(int(np.argmax(has)), str(column), "NUL character in the value")


def _fast_csv(path: Path, data: bytes) -> Table | None:
    """Columnar read with pyarrow for the plain case, or None to take the strict reader.

    Only files without quotes, NUL bytes or bare carriage returns take this path: there the
    two readers cannot disagree on a value, and each record is exactly one line, so line
    numbers are computed from the newlines when an error needs one. Anything pyarrow refuses
    (a short row, bad UTF-8) is left to the strict reader, which reports it with its line.
    """
    body = data[len(_BOM) :] if data.startswith(_BOM) else data
    if b'"' in body or b"\x00" in body or body.count(b"\r") != body.count(b"\r\n"):
        return None
    end = body.find(b"\n")
    first = body if end < 0 else body[:end]
    try:
        header = [h.strip() for h in first.decode("utf-8").rstrip("\r").split(",")]
    except UnicodeDecodeError:
        return None
    if not first.strip() or len(set(header)) != len(header) or end < 0:
        return None
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = [f"c{i}" for i in range(len(header))]
    try:
        arrow = pacsv.read_csv(
            pa.BufferReader(body[end + 1 :]),
            read_options=pacsv.ReadOptions(column_names=names, use_threads=False),
            parse_options=pacsv.ParseOptions(quote_char=False, ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.large_string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowException):
        return None
    frame = pd.DataFrame(
        {h: pd.Series(arrow.column(i), dtype="str") for i, h in enumerate(header)},
        index=pd.RangeIndex(arrow.num_rows),
    )

    def lines() -> np.ndarray:
        # Record k is on the k-th non-empty line after the header (empty lines are skipped).
        starts = np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == ord("\n")) + 1
        starts = np.concatenate(([0], starts))
        ends = np.concatenate((starts[1:] - 1, [len(body)]))
        lengths = ends - starts
        if len(body) and body.endswith(b"\n"):
            starts, lengths = starts[:-1], lengths[:-1]
        crlf_only = np.array([body[s : s + 1] == b"\r" for s in starts[lengths == 1]])
        blank = lengths == 0
        if crlf_only.size:
            blank[np.flatnonzero(lengths == 1)[crlf_only]] = True
        numbers = np.flatnonzero(~blank) + 1
        return numbers[1:].astype(np.int64)  # drop the header

    return Table(path=path, frame=frame, line_source=lines)


def read_csv(path: Path, data: bytes | None = None, *, fast: bool = True) -> Table:
    """Read a CSV strictly: a row with the wrong number of fields is an error with its line.

    `fast=False` always takes the strict reader (the fast one is checked against it).
    """
    if data is None:
        data = read_source(path)
    quick = _fast_csv(path, data) if fast else None
    if quick is not None:
        return quick
    text = _decode(path, data)
    csv.field_size_limit(sys.maxsize)
    rows: list[list[str]] = []
    lines: list[int] = []
    # Millions of small row lists make the cyclic garbage collector rescan them over and over
    # (parsing grew faster than linearly); none of them can form a cycle, so pause it.
    was_enabled = gc.isenabled()
    gc.disable()
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    del text
    start = 1
    try:
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
        # The line where the fault is (inside a multi-line quoted record, not where it began).
        raise InputError(
            f"malformed CSV: {exc}", path=path, line=max(reader.line_num, start)
        ) from exc
    finally:
        if was_enabled:
            gc.enable()
    frame = pd.DataFrame(rows, columns=header, dtype=object)
    table = Table(path=path, frame=frame, lines=np.asarray(lines, dtype=np.int64))
    if b"\x00" in data:
        _check_nul(table, data)
    return table


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    return json.dumps(value)


def read_jsonl(path: Path, data: bytes | None = None) -> Table:
    """Read JSON Lines: each non-blank line must be a JSON object."""
    if data is None:
        data = read_source(path)
    text = _decode(path, data)
    records: list[dict[str, str]] = []
    lines: list[int] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"invalid JSON: {exc.msg}", path=path, line=number) from exc
        except RecursionError as exc:
            raise InputError("invalid JSON: nested too deeply", path=path, line=number) from exc
        if not isinstance(obj, dict):
            raise InputError("expected a JSON object", path=path, line=number)
        record = {str(k): _as_text(v) for k, v in obj.items()}
        if "\\u0000" in line or "\x00" in line:
            for key, value in record.items():
                if "\x00" in value or "\x00" in key:
                    raise InputError(
                        "NUL character in the value", path=path, line=number, field=key
                    )
        records.append(record)
        lines.append(number)
    frame = pd.DataFrame.from_records(records).fillna("") if records else pd.DataFrame()
    return Table(path=path, frame=frame.astype(object), lines=np.asarray(lines, dtype=np.int64))


def parse_table(path: Path, data: bytes) -> Table:
    """CSV or JSONL by suffix (`.csv`, `.jsonl`, `.json`), from bytes already read."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_csv(path, data)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return read_jsonl(path, data)
    raise InputError("unsupported file type: expected .csv or .jsonl", path=path)


def check_suffix(path: Path) -> None:
    """Refuse an unsupported file type before reading it."""
    if path.suffix.lower() not in (".csv", ".jsonl", ".ndjson", ".json"):
        raise InputError("unsupported file type: expected .csv or .jsonl", path=path)


def read_table(path: Path) -> Table:
    """CSV or JSONL by suffix (`.csv`, `.jsonl`, `.json`)."""
    _check_exists(path)
    check_suffix(path)
    return parse_table(path, read_source(path))
