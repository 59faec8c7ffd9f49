"""Import an outcome CSV or JSONL in ponder's own column names through Arrow's typed readers.

The canonical format is what ``ponder export`` writes (the outcome frame's columns), or any
file whose columns are named like the generic importer's ``FIELDS``. pyarrow parses every
column straight to its type (text, float64 for numbers, bool for flags) and the values are
validated vectorised, with today's rules (``ponder.tables``): integers exact and in range,
numbers finite, required text non-empty, flags 0/1, ``correct`` in [0, 1], no key twice,
one model and budget kind per run. Arrow's errors name no line, so on a bad value the column
is re-read as text and checked by today's rule of that field, which names file, line, field
and value: the same one-line error as ``ponder import``. A column Arrow cannot type (``yes``
as a flag, `` 5`` with spaces in a JSON string) takes that text path too, so every file
today's importer accepts gives the same rows.

The result is a ``SEGMENT_SCHEMA`` table ready for ``Catalog.publish``, with the runs and
problems the import brings. Files that need grading (no ``correct``) or a column mapping
stay with ``ponder.importers``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast, get_args

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from ponder.columnar.segments import SEGMENT_SCHEMA
from ponder.errors import InputError
from ponder.importers.generic import FIELDS
from ponder.store.schema import PROBLEM_STORE_COLUMNS
from ponder.tables import Table, check_suffix, read_csv, read_jsonl
from ponder.types import BudgetKind, Run

Kind = Literal["key", "text", "int", "real", "flag", "correct"]
_INT32_MAX = 2**31 - 1
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class _Spec:
    """How a field is typed and checked: ``key`` is required non-empty text, ``text`` optional
    (empty is NULL), ``int`` an exact integer, ``real`` a finite number."""

    kind: Kind
    minimum: int | None = 0
    required: bool = False


_KEY = _Spec("key", required=True)
_TEXT = _Spec("text")
_COUNT = _Spec("int")
SPECS: dict[str, _Spec] = {
    "run_id": _KEY,
    "dataset": _KEY,
    "problem_id": _KEY,
    "model": _KEY,
    "mode": _KEY,
    "budget_kind": _KEY,
    "budget": _COUNT,
    "sample_idx": _Spec("int", required=True),
    "prompt_tokens": _COUNT,
    "reasoning_tokens": _COUNT,
    "answer_tokens": _COUNT,
    "output_tokens": _COUNT,
    "n_runs": _Spec("int", minimum=1, required=True),
    "level": _Spec("int", minimum=None),
    "latency_s": _Spec("real"),
    "truncated": _Spec("flag"),
    "answered": _Spec("flag"),
    "correct": _Spec("correct", required=True),
    "extracted_answer": _TEXT,
    "response_text": _TEXT,
    "gold": _TEXT,
    "problem_text": _TEXT,
    "subject": _TEXT,
}
assert set(SPECS) == set(FIELDS), "every import field has a spec"

# What Arrow's CSV reader parses each kind as (integers as float64: exports write 1024.0).
_CSV_TYPES: dict[Kind, pa.DataType] = {
    "key": pa.string(),
    "text": pa.string(),
    "int": pa.float64(),
    "real": pa.float64(),
    "flag": pa.bool_(),
    "correct": pa.float64(),
}
_TRUE = ["1", "1.0", "true", "True", "TRUE", "yes", "Yes", "YES", "y", "Y", "t", "T"]
_FALSE = ["0", "0.0", "false", "False", "FALSE", "no", "No", "NO", "n", "N", "f", "F"]
_KEY_COLUMNS = ("run_id", "dataset", "problem_id", "model", "mode", "budget", "sample_idx")
_CONFIG_COLUMNS = _KEY_COLUMNS[:-1]
_COLUMN_INDEX = re.compile(r"In CSV column #(\d+)")


@dataclass
class ArrowImport:
    """One file's rows as a ``SEGMENT_SCHEMA`` table (file order), the runs and problems
    they reference (problems: ``PROBLEM_STORE_COLUMNS``, first row of each), the file's
    sha256 and notes for the user."""

    path: Path
    sha256: str
    table: pa.Table
    runs: list[Run]
    problems: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def read_outcomes(
    path: str | Path,
    *,
    dataset: str | None = None,
    model: str | None = None,
    run: str | None = None,
    budget_kind: str = "unspecified",
) -> ArrowImport:
    """Read, type and validate an outcome file; nothing is written.

    Defaults as ``ponder import`` gives them: ``dataset`` (else the file name), ``model``
    when there is no model column, runs ``LABEL/model`` (``run``, else the file name plus 8
    hex digits of its sha256) unless a ``run_id`` column names them, ``budget_kind`` when
    there is no such column, mode ``default``, ``sample_idx`` by order of appearance per
    configuration, ``n_runs`` 1. A bad value is an ``InputError`` with file, line and field.
    """
    source = Path(path)
    if budget_kind not in get_args(BudgetKind):
        raise InputError(
            f"budget kind {budget_kind!r} is not one of {', '.join(get_args(BudgetKind))}"
        )
    check_suffix(source)
    if not source.is_file():
        raise InputError("no such file" if not source.exists() else "not a file", path=source)
    with ThreadPoolExecutor(max_workers=1) as pool:
        scan = pool.submit(_scan, source)  # hashes (and looks for quotes) while Arrow parses
        if source.suffix.lower() == ".csv":
            columns, ctx, ignored = _csv(source, scan)
        else:
            columns, ctx, ignored = _jsonl(source)
        sha256 = scan.result().sha256
    label = run or f"{source.stem}-{sha256[:8]}"
    built = _Builder(source, ctx, columns, dataset=dataset, model=model, kind=budget_kind)
    table = built.table(label)
    notes = []
    if ignored:
        notes.append(
            f"column(s) ignored (not a field): {', '.join(ignored)}; `ponder import --help` "
            "lists the fields"
        )
    return ArrowImport(
        path=source,
        sha256=sha256,
        table=table,
        runs=built.runs(),
        problems=built.problems(),
        notes=notes,
    )


@dataclass(frozen=True)
class _Scanned:
    sha256: str
    nul: bool  # a NUL byte: refused, today's reader names its line
    quoted: bool  # quotes or bare CRs: records may span lines (parse and count lines so)


def _scan(path: Path) -> _Scanned:
    """One pass over the bytes: their sha256 and the bytes that change how to parse."""
    digest = hashlib.sha256()
    nul = quoted = False
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
            nul = nul or b"\x00" in chunk
            quoted = quoted or b'"' in chunk
            # A bare CR (a CRLF split between two chunks counts too: merely slower).
            if not quoted and b"\r" in chunk:
                quoted = chunk.count(b"\r") != chunk.count(b"\r\n")
    return _Scanned(sha256=digest.hexdigest(), nul=nul, quoted=quoted)


# -- reading ---------------------------------------------------------------------------------


class _Context:
    """What an error needs: each column as raw text and each row's line, computed only when
    a value is bad (re-reading the file)."""

    def __init__(
        self,
        path: Path,
        n_rows: int,
        text_of: Callable[[str], pd.Series],
        lines_of: Callable[[], npt.NDArray[np.int64]],
    ) -> None:
        self.path = path
        self.n_rows = n_rows
        self._text_of = text_of
        self._lines_of = lines_of
        self._lines: npt.NDArray[np.int64] | None = None

    def lines(self) -> npt.NDArray[np.int64]:
        if self._lines is None:
            self._lines = self._lines_of()
        return self._lines

    def table(self, column: str) -> Table:
        """Today's string table of one column, for today's rules and their errors."""
        frame = pd.DataFrame({column: self._text_of(column)})
        return Table(self.path, frame, line_source=self.lines)

    def fail(self, row: int, column: str, message: str) -> InputError:
        return InputError(message, path=self.path, line=int(self.lines()[row]), field=column)


_Read = tuple[dict[str, pa.ChunkedArray], _Context, list[str]]


def _csv(path: Path, scan: Future[_Scanned]) -> _Read:
    """Typed columns of a CSV (fields only), its error context and the ignored columns.

    Parsed at first as if no record spans lines (faster); if the scan finds quotes or bare
    CRs, parsed again so that they may.
    """
    header = _header(path, _first_line(path))
    fields = {i: name for i, name in enumerate(header) if name in SPECS}
    names = [f"c{i}" for i in range(len(header))]
    quoted = False
    as_text: set[int] = set()
    while True:
        types = {
            names[i]: pa.large_string() if i in as_text else _CSV_TYPES[SPECS[f].kind]
            for i, f in fields.items()
        }
        try:
            arrow = _read_csv_columns(path, names, types, quoted)
            failure = None
        except pa.ArrowInvalid as exc:
            failure = exc
        scanned = scan.result()
        if scanned.nul:
            read_csv(path, fast=False)  # today's reader names the line of the NUL
        if scanned.quoted and not quoted:
            quoted = True
            continue
        if failure is None:
            break
        match = _COLUMN_INDEX.search(str(failure))
        index = int(match.group(1)) if match else -1
        if index not in fields or index in as_text:
            raise _structural(path, failure) from failure
        as_text.add(index)  # today's rule parses it (or names the bad value)

    def text_of(column: str) -> pd.Series:
        index = header.index(column)
        only = _read_csv_columns(path, names, {names[index]: pa.large_string()}, quoted)
        return pd.Series(only.column(0), dtype="str")

    ctx = _Context(path, arrow.num_rows, text_of, lambda: _csv_lines(path, quoted))
    columns = {}
    for i, name in fields.items():
        values = arrow.column(names[i])
        if i in as_text:
            values = _from_today(ctx, name, SPECS[name])
        columns[name] = values
    ignored = [h for h in header if h not in SPECS]
    return columns, ctx, ignored


def _first_line(path: Path) -> bytes:
    with path.open("rb") as handle:
        first = handle.readline(1 << 20)
    return first.rstrip(b"\n")


def _header(path: Path, first: bytes) -> list[str]:
    """The stripped column names; an empty or duplicated header is today's error."""
    body = first[len(_BOM) :] if first.startswith(_BOM) else first
    try:
        text = body.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        read_csv(path, fast=False)  # names the line and byte
        raise InputError("the header is not UTF-8 text", path=path, line=1) from None
    row = next(csv.reader(io.StringIO(text)), None)
    if not row or not text.strip():
        raise InputError("empty file (no header row)", path=path)
    header = [h.strip() for h in row]
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise InputError(f"duplicate column(s) {dupes}", path=path, line=1)
    return header


def _read_csv_columns(
    path: Path, names: list[str], types: Mapping[str, pa.DataType], quoted: bool
) -> pa.Table:
    text_only = all(pa.types.is_large_string(t) for t in types.values())
    return pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
        parse_options=pacsv.ParseOptions(newlines_in_values=quoted, ignore_empty_lines=True),
        convert_options=pacsv.ConvertOptions(
            column_types=dict(types),
            include_columns=list(types),
            null_values=[""],
            strings_can_be_null=not text_only,
            quoted_strings_can_be_null=not text_only,
            true_values=_TRUE,
            false_values=_FALSE,
        ),
    )


def _structural(path: Path, exc: pa.ArrowInvalid) -> InputError:
    """A file Arrow cannot parse (a short row, bad UTF-8): today's strict reader names the
    line; if it accepts the file, Arrow's first line is the message."""
    read_csv(path, fast=False)
    text = str(exc).strip().splitlines()
    return InputError(f"cannot read the CSV ({text[0] if text else 'Arrow error'})", path=path)


def _csv_lines(path: Path, quoted: bool) -> npt.NDArray[np.int64]:
    """The line on which each data row starts (blank lines skipped, as both readers do)."""
    data = path.read_bytes()
    body = data[len(_BOM) :] if data.startswith(_BOM) else data
    if quoted:  # records may span lines: count them as the strict reader does
        reader = csv.reader(io.StringIO(body.decode("utf-8"), newline=""), strict=True)
        next(reader, None)
        lines, start = [], reader.line_num + 1
        for row in reader:
            if row:
                lines.append(start)
            start = reader.line_num + 1
        return np.asarray(lines, dtype=np.int64)
    raw = np.frombuffer(body, dtype=np.uint8)
    starts = np.concatenate(([0], np.flatnonzero(raw == ord("\n")) + 1))
    ends = np.concatenate((starts[1:] - 1, [len(body)]))
    blank = (ends - starts) == 0
    one = np.flatnonzero((ends - starts) == 1)
    blank[one] = raw[starts[one]] == ord("\r")
    numbers = np.flatnonzero(~blank) + 1
    return np.asarray(numbers[1:], dtype=np.int64)  # drop the header


def _jsonl(path: Path) -> _Read:
    """Typed columns of a JSON Lines file; a column of unexpected type takes the text path."""
    cache: list[Table] = []

    def today() -> Table:
        if not cache:
            cache.append(read_jsonl(path))
        return cache[0]

    try:
        arrow = pajson.read_json(path)
    except pa.ArrowInvalid:
        arrow = None  # broken JSON (today's reader names the line) or mixed types
    if arrow is None:
        frame = today().frame
        arrow = pa.table({c: pa.array(frame[c].astype(str).tolist()) for c in frame.columns})
        empty = pa.scalar(None, pa.string())
        arrow = pa.table(
            {c: pc.if_else(pc.equal(arrow[c], ""), empty, arrow[c]) for c in arrow.column_names}
        )

    def text_of(column: str) -> pd.Series:
        return today().frame[column].astype(str)

    ctx = _Context(path, arrow.num_rows, text_of, lambda: today().lines)
    columns: dict[str, pa.ChunkedArray] = {}
    for name in arrow.column_names:
        if name not in SPECS:
            continue
        typed = _json_typed(arrow.column(name), SPECS[name])
        columns[name] = typed if typed is not None else _from_today(ctx, name, SPECS[name])
    ignored = [c for c in arrow.column_names if c not in SPECS]
    return columns, ctx, ignored


def _json_typed(values: pa.ChunkedArray, spec: _Spec) -> pa.ChunkedArray | None:
    """A JSON column in the CSV reader's types, or None when its type needs the text path."""
    kind = values.type
    if spec.kind in ("key", "text"):
        return values if pa.types.is_string(kind) or pa.types.is_large_string(kind) else None
    numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind)
    if spec.kind == "flag":
        if pa.types.is_boolean(kind):
            return values
        if numeric:
            floats = pc.cast(values, pa.float64())
            if pc.all(pc.is_in(floats, pa.array([0.0, 1.0]))).as_py() in (True, None):
                return pc.cast(floats, pa.bool_())
        return None
    if numeric or (spec.kind == "correct" and pa.types.is_boolean(kind)):
        return pc.cast(values, pa.float64())
    return None


def _from_today(ctx: _Context, name: str, spec: _Spec) -> pa.ChunkedArray:
    """A column parsed by today's rule from its text (raises today's error on a bad value)."""
    values = _today(ctx.table(name), name, spec)
    if spec.kind in ("key", "text"):
        return pa.chunked_array([pa.array(values.tolist(), pa.string())])
    floats = pa.array(values.to_numpy(dtype=np.float64), from_pandas=True)
    if spec.kind == "flag":
        return pa.chunked_array([pc.cast(floats, pa.bool_())])
    return pa.chunked_array([floats])


def _today(table: Table, column: str, spec: _Spec) -> pd.Series:
    """Today's rule for a field (``ponder.tables``), with its one-line error."""
    if spec.kind == "key":
        return table.text(column)
    if spec.kind == "text":
        values = table.frame[column].astype(str)
        return values.where(values != "", None)
    if spec.kind == "int":
        return table.number(
            column,
            allow_missing=not spec.required,
            integer=True,
            minimum=spec.minimum,
            maximum=_INT32_MAX,
        )
    if spec.kind == "real":
        return table.number(column, allow_missing=True, minimum=spec.minimum)
    if spec.kind == "flag":
        return table.boolean(column, allow_missing=True)
    return table.correctness(column)


# -- checking and building -------------------------------------------------------------------


def _bad_rows(values: pa.ChunkedArray, spec: _Spec) -> npt.NDArray[np.bool_] | None:
    """Rows today's rule refuses, vectorised (None: all good); key columns are checked on
    their dictionary in ``_Builder``."""
    nulls = values.null_count
    if spec.kind in ("key", "text", "flag"):
        if spec.required and nulls:
            return np.asarray(values.is_null().to_numpy(zero_copy_only=False))
        return None
    array = np.asarray(values.to_numpy(), dtype=np.float64)  # NULL -> NaN
    low = -np.inf if spec.minimum is None else spec.minimum
    high = 1.0 if spec.kind == "correct" else _INT32_MAX if spec.kind == "int" else np.inf
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(array) & (array >= low) & (array <= high)
        if spec.kind == "int":
            ok &= np.floor(array) == array
            if spec.minimum is None:
                ok &= array >= -_INT32_MAX - 1
    if nulls and not spec.required:
        ok |= np.asarray(values.is_null().to_numpy(zero_copy_only=False))
    return None if ok.all() else ~ok


def _checked(ctx: _Context, name: str, values: pa.ChunkedArray) -> pa.ChunkedArray:
    """The column if today's rule accepts all of it; else today's error for its first bad
    value (or, should the rules ever disagree, an error at the row found here)."""
    spec = SPECS[name]
    bad = _bad_rows(values, spec)
    if bad is None:
        return values
    _today(ctx.table(name), name, spec)  # raises with file, line, field and value
    row = int(np.argmax(bad))
    raise ctx.fail(row, name, f"{ctx.table(name).frame[name].iloc[row]!r} is not accepted")


def _decoded(codes: npt.NDArray[Any], dictionary: pa.Array) -> pa.ChunkedArray:
    """The strings ``dictionary[codes]``."""
    return pa.chunked_array([pc.take(dictionary, pa.array(codes, pa.int32()))])


_REPEAT_CHUNK = 1 << 20


def _nulls(kind: pa.DataType, n: int) -> pa.ChunkedArray:
    """``n`` NULLs: one chunk of at most 2**20, shared by every chunk (a column the file does
    not have costs no memory per row)."""
    chunk = pa.nulls(min(n, _REPEAT_CHUNK), kind)
    full, rest = divmod(n, len(chunk)) if len(chunk) else (0, 0)
    return pa.chunked_array([chunk] * full + [chunk.slice(0, rest)] * bool(rest), kind)


def _repeated(value: str, n: int) -> pa.ChunkedArray:
    """``value`` ``n`` times, built from buffers: one chunk of 2**20, shared by every chunk."""
    data = value.encode()
    size = min(n, _REPEAT_CHUNK)
    offsets = np.arange(size + 1, dtype=np.int64) * len(data)
    chunk = pa.LargeStringArray.from_buffers(
        size, pa.py_buffer(offsets), pa.py_buffer(data * size)
    ).cast(pa.string())
    full, rest = divmod(n, size) if size else (0, 0)
    return pa.chunked_array([chunk] * full + [chunk.slice(0, rest)] * bool(rest), pa.string())


class _Builder:
    """Turns the typed columns into the segment table, runs and problems."""

    def __init__(
        self,
        path: Path,
        ctx: _Context,
        columns: dict[str, pa.ChunkedArray],
        *,
        dataset: str | None,
        model: str | None,
        kind: str,
    ) -> None:
        self.path = path
        self.ctx = ctx
        self.n = ctx.n_rows
        self.given = dict(columns)
        self.defaults = {"dataset": dataset or path.stem, "model": model, "budget_kind": kind}
        self.codes: dict[str, tuple[npt.NDArray[np.int64], int]] = {}
        self.dictionaries: dict[str, pa.Array] = {}
        self.columns: dict[str, pa.ChunkedArray] = {}

    def _require(self) -> None:
        line = 1 if self.path.suffix.lower() == ".csv" else None
        has = ", ".join(self.given) or "none"
        if "problem_id" not in self.given:
            raise InputError(
                f"no problem_id column; the file's fields: {has}", path=self.path, line=line
            )
        if "model" not in self.given and self.defaults["model"] is None:
            raise InputError(
                "no model column: name one `model` or give a model", path=self.path, line=line
            )
        if "correct" not in self.given:
            raise InputError(
                "no correct column: the Arrow import reads graded rows; `ponder import` "
                "grades from gold and answers",
                path=self.path,
                line=line,
            )
        if self.n == 0:
            raise InputError("no data rows (the file has only a header)", path=self.path)

    def table(self, label: str) -> pa.Table:
        """Every field checked and typed, defaults filled, keys checked: the segment rows
        (in ``SEGMENT_SCHEMA``; ``Catalog.publish`` validates them once more)."""
        self._require()
        for name in ("dataset", "problem_id", "model", "mode", "budget_kind"):
            self._key(name)
        self._run_ids(label)
        for name, values in self.given.items():
            if SPECS[name].kind != "key":
                self.columns[name] = _checked(self.ctx, name, values)
        if "answered" not in self.given and "extracted_answer" in self.given:
            self.columns["answered"] = pc.is_valid(self.columns["extracted_answer"])
        if "sample_idx" not in self.given:
            self.columns["sample_idx"] = self._order_in_config()
        self._check_duplicates()
        self._check_runs()
        return self._segment_columns()

    def _key(self, name: str) -> None:
        """A required text column as codes into its distinct values: none empty (checked
        on the distinct values), budget kinds known. A default is one code for all rows."""
        if name in self.given:
            values = self.given[name]
            encoded = pc.dictionary_encode(values)  # one dictionary for all chunks
            dictionary = encoded.chunk(0).dictionary
            blank = pc.equal(pc.utf8_trim_whitespace(dictionary), "")
            if encoded.null_count or pc.any(blank).as_py():
                _today(self.ctx.table(name), name, _KEY)  # today's "empty value", its line
            codes = np.concatenate([c.indices.to_numpy() for c in encoded.chunks])
        else:
            value = {"mode": "default"}.get(name, self.defaults.get(name))
            if not isinstance(value, str) or not value.strip():
                raise InputError(f"no {name} column and no {name} given", path=self.path)
            dictionary = pa.array([value], pa.string())
            codes = np.zeros(self.n, dtype=np.int32)
            values = _repeated(value, self.n)
        if name == "budget_kind":
            self._check_kinds(values, codes, dictionary)
        self.codes[name] = (codes.astype(np.int64), len(dictionary))
        self.dictionaries[name] = dictionary
        self.columns[name] = values.cast(pa.string())

    def _check_kinds(
        self, values: pa.ChunkedArray, codes: npt.NDArray[Any], dictionary: pa.Array
    ) -> None:
        known = sorted(get_args(BudgetKind))
        unknown = ~np.asarray(
            pc.is_in(dictionary, pa.array(known, pa.string())).to_numpy(zero_copy_only=False)
        )
        if unknown.any():
            row = int(np.argmax(np.isin(codes, np.flatnonzero(unknown))))
            value = values[row].as_py()
            raise self.ctx.fail(row, "budget_kind", f"{value!r} is not one of {', '.join(known)}")

    def _run_ids(self, label: str) -> None:
        """The file's run ids, or ``LABEL/model`` for each model (the model's codes)."""
        if "run_id" in self.given:
            self._key("run_id")
            return
        models = self.dictionaries["model"]
        names = pc.binary_join_element_wise(label, models, "/")
        codes = self.codes["model"][0]
        self.codes["run_id"] = (codes, len(models))
        self.dictionaries["run_id"] = names
        self.columns["run_id"] = _decoded(codes, names)

    def _numeric_codes(self, name: str) -> tuple[npt.NDArray[np.int64], int]:
        """An integer key column's values as codes (NULL first): they are int32 already."""
        values = self.columns.get(name)
        if values is None:
            return np.zeros(self.n, dtype=np.int64), 1
        filled = np.asarray(pc.fill_null(values, -1.0).to_numpy(), dtype=np.float64)
        codes = filled.astype(np.int64) + 1
        low = int(codes.min())
        return codes - low, int(codes.max()) - low + 1

    def _key_of(self, names: tuple[str, ...]) -> npt.NDArray[np.int64]:
        """One int64 per row, equal exactly when the rows agree on ``names``."""
        key = np.zeros(self.n, dtype=np.int64)
        size = 1
        for name in names:
            codes, card = self.codes.get(name) or self._numeric_codes(name)
            card = max(card, 1)
            if size * card >= 2**62:
                factorized, uniques = pd.factorize(key)
                key, size = np.asarray(factorized, dtype=np.int64), len(uniques)
            key = key * card + codes
            size *= card
        return key

    def _order_in_config(self) -> pa.ChunkedArray:
        key = self._key_of(_CONFIG_COLUMNS)
        order = pd.Series(key).groupby(key, sort=False).cumcount().to_numpy()
        return pa.chunked_array([pa.array(order.astype(np.float64))])

    def _check_duplicates(self) -> None:
        dup = pd.Series(self._key_of(_KEY_COLUMNS)).duplicated(keep="first").to_numpy()
        if dup.any():
            raise self.ctx.fail(
                int(np.argmax(dup)),
                "sample_idx",
                "duplicate key (problem, model, mode, budget, sample_idx) seen on an earlier row",
            )

    def _check_runs(self) -> None:
        """One model and budget kind per run (a given run_id could disagree with itself)."""
        if "run_id" not in self.given and "budget_kind" not in self.given:
            return
        triples = pd.Series(self._key_of(("run_id", "model", "budget_kind")))
        firsts = triples.drop_duplicates(keep="first").index.to_numpy()
        runs = self.codes["run_id"][0][firsts]
        clash = pd.Series(runs).duplicated(keep="first").to_numpy()
        if clash.any():
            row = int(firsts[np.argmax(clash)])
            run_id = self.columns["run_id"][row].as_py()
            seen = int(firsts[np.argmax(runs == runs[np.argmax(clash)])])
            raise self.ctx.fail(
                row,
                "run_id" if "run_id" in self.given else "budget_kind",
                f"run {run_id!r} has model/budget kind {self._triple(seen)}, this row "
                f"{self._triple(row)}",
            )

    def _triple(self, row: int) -> tuple[str, str]:
        return (self.columns["model"][row].as_py(), self.columns["budget_kind"][row].as_py())

    def _segment_columns(self) -> pa.Table:
        arrays = []
        for spec_field in SEGMENT_SCHEMA:
            values = self.columns.get(spec_field.name)
            if values is None and spec_field.name == "n_runs":
                values = pa.chunked_array([pa.array(np.ones(self.n, dtype=np.int32))])
            if values is None:
                arrays.append(_nulls(spec_field.type, self.n))
            else:
                arrays.append(pc.cast(values, spec_field.type, safe=True))
        return pa.Table.from_arrays(arrays, schema=SEGMENT_SCHEMA)

    def runs(self) -> list[Run]:
        """One run per run id, with its model and budget kind (checked to be one each)."""
        names = ("run_id", "model", "budget_kind")
        firsts = pd.Series(self._key_of(names)).drop_duplicates(keep="first").index.to_numpy()
        triples = {
            tuple(str(self.dictionaries[n][int(self.codes[n][0][row])]) for n in names)
            for row in firsts.tolist()
        }
        return [
            Run(
                run_id=r,
                model=m,
                source=f"import:{self.path.name}",
                budget_kind=cast(BudgetKind, k),
            )
            for r, m, k in sorted(triples)
        ]

    def problems(self) -> pd.DataFrame:
        """The first row of each (dataset, problem_id), with what the file says of it."""
        key = pd.Series(self._key_of(("dataset", "problem_id")))
        firsts = pa.array(key.drop_duplicates(keep="first").index.to_numpy())
        out: dict[str, Any] = {}
        sources = {"dataset": "dataset", "problem_id": "problem_id", "text": "problem_text"}
        for column in PROBLEM_STORE_COLUMNS:
            name = sources.get(column, column)
            values = self.columns.get(name)
            if column == "metadata_json":
                out[column] = ["{}"] * len(firsts)
            elif values is None:
                out[column] = [None] * len(firsts)
            else:
                taken = pc.take(values, firsts)
                if column == "level":
                    taken = pc.cast(taken, pa.int64())
                out[column] = taken.to_pylist()
        return pd.DataFrame(out, columns=list(PROBLEM_STORE_COLUMNS), dtype=object)
