"""Import an outcome CSV or JSONL in ponder's own column names through Arrow, in batches.

The canonical format is what ``ponder export`` writes (the outcome frame's columns), or any
file whose columns are named like the generic importer's ``FIELDS``. The file is read in
record batches (``pyarrow.csv.open_csv``; JSONL in blocks of whole lines), each column typed
by Arrow (text, float64 for numbers, bool for flags) and validated vectorised, batch by batch,
with today's rules (``ponder.tables``): integers exact and in range, numbers finite, required
text non-empty, flags 0/1, ``correct`` in [0, 1], no key twice, one model and budget kind per
run. Arrow's errors name no line, so on a bad value the batch's column is re-read as text and
checked by today's rule of that field, which names file, line, field and value: the same
one-line error as ``ponder import``. A column Arrow cannot type (``yes`` as a flag, `` 5``
with spaces) takes that text path too, so every file today's importer accepts gives the same
rows. When a file has several faults, the one reported is the first batch's.

``write_pending`` streams the checked rows into one ``SegmentWriter`` per dataset and returns
their ``Pending`` files (written and synced under temporary names, not listed: the caller
commits them with the store's rows in one transaction); ``read_outcomes`` returns the rows as
one table. Files that need grading (no ``correct``) or a column mapping stay with
``ponder.importers``.

Memory follows the batch size and the distinct keys, not the rows. Per batch: the parsed
block, its checked columns and segment rows, a few batches in flight (one parsed ahead, two
being written, at most ``_HOLD`` held until the file's hash names the default runs) and each
``SegmentWriter``'s buffer. Across batches, what the checks that span the file need, which
grows with the file's distinct keys: a dict entry per distinct text value of a key column and
per configuration; per (configuration, problem) cell about 34 B in a hash table plus 9 B of
sample state (its count of samples 0..k-1; 8 B when the file numbers no samples); per
(dataset, problem) pair 34 B and its first row's problem columns. The one state that can grow
with rows is duplicate detection for cells whose ``sample_idx`` are not 0..k-1 (gaps, other
numbering): their keys are kept in sorted runs, 8 B per row of such cells (plus a transient
copy while two runs merge). Only error paths re-read the file (streaming) to recover a
batch's lines or text.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import io
import re
import sys
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol, cast, get_args

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from ponder.columnar.catalog import Pending, SegmentWriter
from ponder.columnar.segments import SEGMENT_SCHEMA, checked_segment_id, new_segment_id
from ponder.errors import InputError
from ponder.importers.generic import FIELDS
from ponder.store.schema import PROBLEM_STORE_COLUMNS
from ponder.tables import Table, check_suffix, read_jsonl
from ponder.types import BudgetKind, Run

# pandas' int64 hash table (no public equivalent): interning ids batch by batch.
_hashtable: Any = importlib.import_module("pandas._libs.hashtable")

Kind = Literal["key", "text", "int", "real", "flag", "correct"]
_INT32_MAX = 2**31 - 1
_BOM = b"\xef\xbb\xbf"
# Bytes per parsed block: about 65,000 rows of a harness CSV per batch.
BATCH_BYTES = 1 << 22
# Batches held back while the file's hash (part of default run ids) is still being computed.
_HOLD = 4


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

# What Arrow's CSV reader parses each kind as (integers as float64: exports write 1024.0;
# keys as dictionaries, built while parsing, on the reader's thread).
_CSV_TYPES: dict[Kind, pa.DataType] = {
    "key": pa.dictionary(pa.int32(), pa.string()),
    "text": pa.string(),
    "int": pa.float64(),
    "real": pa.float64(),
    "flag": pa.bool_(),
    "correct": pa.float64(),
}
_TRUE = ["1", "1.0", "true", "True", "TRUE", "yes", "Yes", "YES", "y", "Y", "t", "T"]
_FALSE = ["0", "0.0", "false", "False", "FALSE", "no", "No", "NO", "n", "N", "f", "F"]
_TEXT_KEYS = ("run_id", "dataset", "problem_id", "model", "mode", "budget_kind")
_COLUMN_INDEX = re.compile(r"In CSV column #(\d+)")
_PROBLEM_SOURCES = {"dataset": "dataset", "problem_id": "problem_id", "text": "problem_text"}


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


@dataclass
class PendingImport:
    """One file's rows written as ``Pending`` segment files (one per dataset, not listed yet:
    ``Catalog.commit`` lists them), with the runs and problems to commit beside them."""

    path: Path
    sha256: str
    pending: list[Pending]
    rows: int
    runs: list[Run]
    problems: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def discard(self) -> None:
        """Remove the temporary files (an import that will not be committed)."""
        for item in self.pending:
            item.discard()


@dataclass
class _Options:
    dataset: str | None
    model: str | None
    run: str | None
    kind: str
    batch_bytes: int


@dataclass
class _Result:
    sha256: str
    rows: int
    runs: list[Run]
    problems: pd.DataFrame
    notes: list[str]


def read_outcomes(
    path: str | Path,
    *,
    dataset: str | None = None,
    model: str | None = None,
    run: str | None = None,
    budget_kind: str = "unspecified",
    batch_bytes: int = BATCH_BYTES,
) -> ArrowImport:
    """Read, type and validate an outcome file; nothing is written.

    Defaults as ``ponder import`` gives them: ``dataset`` (else the file name), ``model``
    when there is no model column, runs ``LABEL/model`` (``run``, else the file name plus 8
    hex digits of its sha256) unless a ``run_id`` column names them, ``budget_kind`` when
    there is no such column, mode ``default``, ``sample_idx`` by order of appearance per
    configuration, ``n_runs`` 1. A bad value is an ``InputError`` with file, line and field.
    The rows are checked batch by batch as ``write_pending`` does, then kept as one table.
    """
    sink = _Collect()
    options = _Options(dataset, model, run, budget_kind, batch_bytes)
    result = _import(Path(path), sink, options)
    table = pa.concat_tables(sink.tables) if sink.tables else SEGMENT_SCHEMA.empty_table()
    return ArrowImport(
        path=Path(path),
        sha256=result.sha256,
        table=table,
        runs=result.runs,
        problems=result.problems,
        notes=result.notes,
    )


def write_pending(
    path: str | Path,
    root: str | Path,
    *,
    dataset: str | None = None,
    model: str | None = None,
    run: str | None = None,
    budget_kind: str = "unspecified",
    segment_id: str | None = None,
    batch_bytes: int = BATCH_BYTES,
) -> PendingImport:
    """Read, check and write an outcome file as one pending segment per dataset under
    ``root`` (the store's ``parquet_root``), in batches of about ``batch_bytes`` of the file.

    Defaults and errors as ``read_outcomes``. The files are synced under temporary names and
    not listed: commit them with ``Catalog.commit`` (or ``discard``). On any error every
    temporary file of this call is removed.
    """
    sid = new_segment_id() if segment_id is None else checked_segment_id(segment_id)
    sink = _Writers(Path(root), sid)
    options = _Options(dataset, model, run, budget_kind, batch_bytes)
    try:
        result = _import(Path(path), sink, options)
        pending = sink.finish()
    except BaseException:
        sink.reset()
        raise
    return PendingImport(
        path=Path(path),
        sha256=result.sha256,
        pending=pending,
        rows=result.rows,
        runs=result.runs,
        problems=result.problems,
        notes=result.notes,
    )


# -- sinks: where checked batches go -----------------------------------------------------------


class _Sink(Protocol):
    def write(self, out: _Out) -> None: ...

    def reset(self) -> None: ...


class _Collect:
    """Keeps the batches (``read_outcomes``)."""

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []

    def write(self, out: _Out) -> None:
        self.tables.append(out.table)

    def reset(self) -> None:
        self.tables = []


class _Writers:
    """One ``SegmentWriter`` per dataset, all under one segment id."""

    def __init__(self, root: Path, segment_id: str) -> None:
        self.root = root
        self.segment_id = segment_id
        self.writers: dict[str, SegmentWriter] = {}

    def write(self, out: _Out) -> None:
        for name, table in out.by_dataset():
            writer = self.writers.get(name)
            if writer is None:
                writer = self.writers[name] = SegmentWriter(self.root, name, self.segment_id)
            writer.write(table)

    def finish(self) -> list[Pending]:
        pending: list[Pending] = []
        try:
            for name in sorted(self.writers):
                pending.append(self.writers[name].finish())
        except BaseException:
            for item in pending:
                item.discard()
            raise
        return pending

    def reset(self) -> None:
        """Remove every file written (an error, or a restart of the pass)."""
        for writer in self.writers.values():
            writer.abort()
        self.writers = {}


class _Behind:
    """Hands batches to ``sink`` on a worker thread, so that the next batch is parsed and
    checked while this one is encoded (Arrow releases the GIL); two batches at most in
    flight. Leaving waits for them (on an error, quietly: the caller removes the files)."""

    def __init__(self, sink: _Sink) -> None:
        self.sink = sink
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.flight: deque[Future[None]] = deque()

    def write(self, built: _Built, label: Callable[[], str]) -> None:
        self.flight.append(self.pool.submit(self._write, built, label))
        while len(self.flight) > 2:
            self.flight.popleft().result()

    def _write(self, built: _Built, label: Callable[[], str]) -> None:
        self.sink.write(built.output(label))

    def drain(self) -> None:
        while self.flight:
            self.flight.popleft().result()

    def reset(self) -> None:
        self._settle()
        self.sink.reset()

    def _settle(self) -> None:
        while self.flight:
            self.flight.popleft().exception()

    def __enter__(self) -> _Behind:
        return self

    def __exit__(self, *exc: object) -> None:
        self._settle()
        self.pool.shutdown(wait=True)


# -- the pass over the file -------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """How to read the file: CSV columns (by index) to read as text for today's rules, the
    JSONL fields known to be in the file, and bytes per batch."""

    as_text: frozenset[int]
    fields: tuple[str, ...]
    batch_bytes: int


class _Restart(Exception):
    """Start the pass again with this plan (what the last pass learned)."""

    def __init__(self, plan: _Plan) -> None:
        super().__init__("restart")
        self.plan = plan


def _import(source: Path, sink: _Sink, options: _Options) -> _Result:
    """Check the file batch by batch into ``sink``; restarted (``sink`` emptied) when a CSV
    column needs the text path, a record is longer than a batch, or a JSONL field first
    appears after the first batch."""
    if options.kind not in get_args(BudgetKind):
        raise InputError(
            f"budget kind {options.kind!r} is not one of {', '.join(get_args(BudgetKind))}"
        )
    check_suffix(source)
    if not source.is_file():
        raise InputError("no such file" if not source.exists() else "not a file", path=source)
    with ThreadPoolExecutor(max_workers=1) as pool, _Behind(sink) as behind:
        scan = pool.submit(_scan, source)  # hashes (and looks for NULs) while Arrow parses
        plan = _Plan(frozenset(), (), max(options.batch_bytes, 1 << 10))
        while True:
            try:
                return _one_pass(source, behind, options, scan, plan)
            except _Restart as restart:
                behind.reset()
                plan = restart.plan


def _one_pass(
    source: Path,
    sink: _Behind,
    options: _Options,
    scan: Future[_Scanned],
    plan: _Plan,
) -> _Result:
    csv_file = source.suffix.lower() == ".csv"
    reader: _Reader = _CsvReader(source, plan) if csv_file else _JsonReader(source, plan)

    def label() -> str:
        return options.run or f"{source.stem}-{scan.result().sha256[:8]}"

    state = _State(source, reader.fields(), options, label)
    labelled = options.run is not None or not state.needs_label
    held: deque[_Built] = deque()
    for raw in reader:
        held.append(state.check(raw))
        if not labelled and len(held) > _HOLD:
            scan.result()  # the run ids need the hash: wait rather than hold more rows
        if labelled or scan.done():
            while held:
                sink.write(held.popleft(), label)
    if csv_file and scan.result().nul:
        raise _strict_error(source) or InputError("NUL character in the file", path=source)
    state.finish()
    while held:
        sink.write(held.popleft(), label)
    sink.drain()
    notes = []
    if reader.ignored():
        notes.append(
            f"column(s) ignored (not a field): {', '.join(reader.ignored())}; `ponder import "
            "--help` lists the fields"
        )
    return _Result(
        sha256=scan.result().sha256,
        rows=state.rows,
        runs=state.runs(label),
        problems=state.problems(),
        notes=notes,
    )


@dataclass(frozen=True)
class _Scanned:
    sha256: str
    nul: bool  # a NUL byte: refused in a CSV, today's reader names its line


def _scan(path: Path) -> _Scanned:
    """One pass over the bytes: their sha256 and whether they hold a NUL."""
    digest = hashlib.sha256()
    nul = False
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
            nul = nul or b"\x00" in chunk
    return _Scanned(sha256=digest.hexdigest(), nul=nul)


# -- reading ---------------------------------------------------------------------------------


class _Context:
    """What an error needs about one batch: a column as today's raw text and each row's
    line, computed only when a value is bad (re-reading the batch or the file)."""

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


@dataclass
class _Raw:
    """One batch as read: typed field columns (a column that needs today's rules is already
    parsed by them) and its error context."""

    columns: dict[str, pa.Array]
    ctx: _Context


class _Reader(Protocol):
    def fields(self) -> list[str]: ...

    def ignored(self) -> list[str]: ...

    def __iter__(self) -> Iterator[_Raw]: ...


class _CsvReader:
    """A CSV's field columns in record batches (``open_csv``: records may span lines)."""

    def __init__(self, path: Path, plan: _Plan) -> None:
        self.path = path
        self.header = _header(path, _first_line(path))
        self.by_index = {i: name for i, name in enumerate(self.header) if name in SPECS}
        self.names = [f"c{i}" for i in range(len(self.header))]
        self.plan = plan
        self.as_text = plan.as_text

    def fields(self) -> list[str]:
        return list(self.by_index.values())

    def ignored(self) -> list[str]:
        return [h for h in self.header if h not in SPECS]

    def __iter__(self) -> Iterator[_Raw]:
        types = {
            self.names[i]: pa.large_string() if i in self.as_text else _CSV_TYPES[SPECS[f].kind]
            for i, f in self.by_index.items()
        }
        start = 0
        try:
            reader = _open_csv(self.path, self.names, types, self.plan.batch_bytes)
            for batch in _prefetched(reader):
                yield self._raw(start, batch)
                start += batch.num_rows
        except pa.ArrowInvalid as exc:
            raise self._failure(exc) from exc

    def _raw(self, start: int, batch: pa.RecordBatch) -> _Raw:
        n = batch.num_rows
        texts: dict[str, pa.Array] = {}

        def text_of(column: str) -> pd.Series:
            if column not in texts:
                index = self.header.index(column)
                texts[column] = _csv_text(self.path, self.names, index, start, n, self.plan)
            return pd.Series(texts[column], dtype="str")

        ctx = _Context(self.path, n, text_of, lambda: _csv_lines(self.path, start, n))
        columns: dict[str, pa.Array] = {}
        for i, name in self.by_index.items():
            values = batch.column(self.names[i])
            if i in self.as_text:
                texts[name] = values
                values = _from_today(ctx, name, SPECS[name])
            columns[name] = values
        return _Raw(columns, ctx)

    def _failure(self, exc: pa.ArrowInvalid) -> Exception:
        """A column Arrow cannot type restarts the pass with it as text, a record longer
        than a batch with larger batches; anything else is today's strict reader's error
        (it names the line), else Arrow's first line."""
        match = _COLUMN_INDEX.search(str(exc))
        index = int(match.group(1)) if match else -1
        if index in self.by_index and index not in self.as_text:
            return _Restart(replace(self.plan, as_text=self.as_text | {index}))
        size = self.plan.batch_bytes
        if "straddl" in str(exc) and size < self.path.stat().st_size:
            return _Restart(replace(self.plan, batch_bytes=4 * size))
        text = str(exc).strip().splitlines()
        return _strict_error(self.path) or InputError(
            f"cannot read the CSV ({text[0] if text else 'Arrow error'})", path=self.path
        )


def _prefetched(reader: pacsv.CSVStreamingReader) -> Iterator[pa.RecordBatch]:
    """The reader's batches, the next one parsed on a worker thread (Arrow releases the GIL)
    while this one is checked."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = pool.submit(_next_batch, reader)
        while (batch := ahead.result()) is not None:
            ahead = pool.submit(_next_batch, reader)
            yield batch


def _next_batch(reader: pacsv.CSVStreamingReader) -> pa.RecordBatch | None:
    try:
        return reader.read_next_batch()
    except StopIteration:
        return None


def _open_csv(
    path: Path, names: list[str], types: Mapping[str, pa.DataType], batch_bytes: int
) -> pacsv.CSVStreamingReader:
    text_only = all(pa.types.is_large_string(t) for t in types.values())
    return pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=batch_bytes),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=True),
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


def _csv_text(
    path: Path, names: list[str], index: int, start: int, n: int, plan: _Plan
) -> pa.Array:
    """Rows ``[start, start + n)`` of one column as today's text ("" for empty), streamed."""
    pieces: list[pa.Array] = []
    seen = 0
    for batch in _open_csv(path, names, {names[index]: pa.large_string()}, plan.batch_bytes):
        end = seen + batch.num_rows
        if end > start and seen < start + n:
            lo = max(start - seen, 0)
            pieces.append(batch.column(0).slice(lo, min(start + n, end) - seen - lo))
        seen = end
        if seen >= start + n:
            break
    return pa.concat_arrays(pieces)


def _csv_lines(path: Path, start: int, n: int) -> npt.NDArray[np.int64]:
    """The line on which each of rows ``[start, start + n)`` starts, counted as the strict
    reader counts them (blank lines skipped, quoted values may span lines), streamed."""
    csv.field_size_limit(sys.maxsize)
    lines: list[int] = []
    with path.open(encoding="utf-8-sig", newline="", errors="replace") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        row, first = 0, reader.line_num + 1
        for record in reader:
            if record:
                if row >= start:
                    lines.append(first)
                row += 1
                if row >= start + n:
                    break
            first = reader.line_num + 1
    return np.asarray(lines, dtype=np.int64)


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
        error = _strict_error(path)  # names the line and byte
        raise error or InputError("the header is not UTF-8 text", path=path, line=1) from None
    row = next(csv.reader(io.StringIO(text)), None)
    if not row or not text.strip():
        raise InputError("empty file (no header row)", path=path)
    header = [h.strip() for h in row]
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise InputError(f"duplicate column(s) {dupes}", path=path, line=1)
    return header


def _strict_error(path: Path) -> InputError | None:
    """The error today's strict CSV reader (``read_csv(fast=False)``) gives this file, found
    streaming: bad UTF-8, a row with the wrong number of fields, a malformed quote, a NUL."""
    error = _utf8_error(path)
    if error is not None:
        return error
    csv.field_size_limit(sys.maxsize)
    nul: dict[int, int] = {}  # column -> line of its first NUL
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, strict=True)
        start = 1
        try:
            header = next(reader, None)
            if header is None:
                return InputError("empty file (no header row)", path=path)
            header = [h.strip() for h in header]
            dupes = sorted({h for h in header if header.count(h) > 1})
            if dupes:
                return InputError(f"duplicate column(s) {dupes}", path=path, line=1)
            start = reader.line_num + 1
            for row in reader:
                if len(row) != len(header):
                    if row:
                        return InputError(
                            f"expected {len(header)} fields, found {len(row)}",
                            path=path,
                            line=start,
                        )
                elif "\x00" in "".join(row):
                    for i, value in enumerate(row):
                        if "\x00" in value:
                            nul.setdefault(i, start)
                start = reader.line_num + 1
        except csv.Error as exc:
            return InputError(f"malformed CSV: {exc}", path=path, line=max(reader.line_num, start))
    if any("\x00" in h for h in header):
        return InputError("NUL character in the header", path=path, line=1)
    if nul:
        column = min(nul)
        return InputError(
            "NUL character in the value", path=path, line=nul[column], field=header[column]
        )
    return None


def _utf8_error(path: Path) -> InputError | None:
    """Today's error for bytes that are not UTF-8, found in pieces of whole lines (a
    newline byte never falls inside a character)."""
    offset = lines = 0
    rest = b""
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(1 << 22)
            data = rest + chunk
            cut = data.rfind(b"\n") + 1 if chunk else len(data)
            piece, rest = data[:cut], data[cut:]
            skip = len(_BOM) if offset == 0 and piece.startswith(_BOM) else 0
            try:
                piece[skip:].decode("utf-8")
            except UnicodeDecodeError as exc:
                at = skip + exc.start
                return InputError(
                    f"not UTF-8 text: {exc.reason} (byte 0x{piece[at]:02x} at byte offset "
                    f"{offset + at})",
                    path=path,
                    line=lines + piece.count(b"\n", 0, at) + 1,
                )
            offset += len(piece)
            lines += piece.count(b"\n")
            if not chunk:
                return None


class _JsonReader:
    """A JSON Lines file's field columns in blocks of whole lines (each parsed by Arrow; a
    block Arrow refuses, or with a NUL, is read by today's reader, which names the line)."""

    def __init__(self, path: Path, plan: _Plan) -> None:
        self.path = path
        self.plan = plan
        self.known = plan.fields
        self.batch_bytes = plan.batch_bytes
        self._ignored: dict[str, None] = {}

    def fields(self) -> list[str]:
        return list(self.known)

    def ignored(self) -> list[str]:
        return list(self._ignored)

    def __iter__(self) -> Iterator[_Raw]:
        first_line = 1
        for block in self._blocks():
            if block.strip():
                yield self._raw(first_line, block)
            first_line += block.count(b"\n")

    def _blocks(self) -> Iterator[bytes]:
        """The file in pieces of about ``batch_bytes`` that end at a newline."""
        rest = b""
        with self.path.open("rb") as handle:
            while chunk := handle.read(self.batch_bytes):
                data = rest + chunk
                cut = data.rfind(b"\n") + 1
                if cut:
                    yield data[:cut]
                rest = data[cut:]
        if rest:
            yield rest

    def _raw(self, first_line: int, block: bytes) -> _Raw:
        cache: list[Table] = []

        def today() -> Table:
            if not cache:
                cache.append(_today_jsonl(self.path, block, first_line))
            return cache[0]

        arrow = None
        if b"\x00" not in block and b"\\u0000" not in block:
            arrow = _json_block(block)
        if arrow is None:
            frame = today().frame
            arrow = pa.table(
                {c: _empty_as_null(frame[c].astype(str).tolist()) for c in frame.columns}
            )
        n = arrow.num_rows

        def text_of(column: str) -> pd.Series:
            frame = today().frame
            if column not in frame.columns:
                return pd.Series([""] * n, dtype="str")
            return frame[column].astype(str)

        def lines_of() -> npt.NDArray[np.int64]:
            return np.asarray(today().lines, dtype=np.int64) + first_line - 1

        ctx = _Context(self.path, n, text_of, lines_of)
        new = [c for c in arrow.column_names if c in SPECS and c not in self.known]
        if new:  # a field first seen here: start again knowing it
            raise _Restart(replace(self.plan, fields=(*self.known, *new)))
        self._ignored.update(dict.fromkeys(c for c in arrow.column_names if c not in SPECS))
        columns: dict[str, pa.Array] = {}
        for name in self.known:
            spec = SPECS[name]
            if name not in arrow.column_names:
                columns[name] = pa.nulls(n, _CSV_TYPES[spec.kind])
                continue
            values = arrow.column(name).combine_chunks()
            typed = _json_typed(values, spec)
            columns[name] = typed if typed is not None else _from_today(ctx, name, spec)
        return _Raw(columns, ctx)


def _json_block(block: bytes) -> pa.Table | None:
    """Arrow's parse of a block of whole lines; None for broken JSON (today's reader names
    the line) or mixed types."""
    try:
        return pajson.read_json(pa.BufferReader(block))
    except pa.ArrowInvalid as exc:
        if "straddl" not in str(exc):
            return None
    try:  # a line longer than Arrow's block: one block for all
        options = pajson.ReadOptions(block_size=len(block) + 1)
        return pajson.read_json(pa.BufferReader(block), read_options=options)
    except pa.ArrowInvalid:
        return None


def _today_jsonl(path: Path, block: bytes, first_line: int) -> Table:
    """Today's reader of one block; its errors name the line in the file."""
    try:
        block.decode("utf-8")
    except UnicodeDecodeError:
        error = _utf8_error(path)
        if error is not None:
            raise error from None
    try:
        return read_jsonl(path, block)
    except InputError as exc:
        if exc.line is None:
            raise
        raise InputError(
            exc.reason, path=exc.path, line=exc.line + first_line - 1, field=exc.field
        ) from exc


def _empty_as_null(values: list[str]) -> pa.Array:
    array = pa.array(values, pa.string())
    return pc.if_else(pc.equal(array, ""), pa.scalar(None, pa.string()), array)


def _json_typed(values: pa.Array, spec: _Spec) -> pa.Array | None:
    """A JSON column in the CSV reader's types, or None when its type needs the text path."""
    kind = values.type
    if pa.types.is_null(kind):
        return pa.nulls(len(values), _CSV_TYPES[spec.kind])
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


def _from_today(ctx: _Context, name: str, spec: _Spec) -> pa.Array:
    """A column parsed by today's rule from its text (raises today's error on a bad value)."""
    values = _today(ctx.table(name), name, spec)
    if spec.kind in ("key", "text"):
        return pa.array(values.tolist(), pa.string())
    floats = pa.array(values.to_numpy(dtype=np.float64), from_pandas=True)
    if spec.kind == "flag":
        return pc.cast(floats, pa.bool_())
    return floats


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


# -- checking one batch ----------------------------------------------------------------------


def _bad_rows(values: pa.Array, spec: _Spec) -> npt.NDArray[np.bool_] | None:
    """Rows today's rule refuses, vectorised (None: all good); key columns are checked on
    their dictionary in ``_Batch``."""
    nulls = values.null_count
    if spec.kind in ("key", "text", "flag"):
        if spec.required and nulls:
            return np.asarray(values.is_null().to_numpy(zero_copy_only=False))
        return None
    array = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)  # NULL: NaN
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


def _checked(ctx: _Context, name: str, values: pa.Array) -> pa.Array:
    """The column if today's rule accepts all of it; else today's error for its first bad
    value (or, should the rules ever disagree, an error at the row found here)."""
    spec = SPECS[name]
    bad = _bad_rows(values, spec)
    if bad is None:
        return values
    _today(ctx.table(name), name, spec)  # raises with file, line, field and value
    row = int(np.argmax(bad))
    raise ctx.fail(row, name, f"{ctx.table(name).frame[name].iloc[row]!r} is not accepted")


class _Fill:
    """Constant columns (NULLs, a default value) for batches of any size, built once at the
    largest size seen and sliced (zero-copy)."""

    def __init__(self) -> None:
        self._arrays: dict[tuple[str, object], pa.Array] = {}

    def nulls(self, kind: pa.DataType, n: int) -> pa.Array:
        return self._get(("nulls", kind), n, lambda size: pa.nulls(size, kind))

    def repeated(self, value: str, n: int) -> pa.Array:
        return self._get(("value", value), n, lambda size: _repeated(value, size))

    def ones(self, n: int) -> pa.Array:
        return self._get(("ones", None), n, lambda size: pa.array(np.ones(size, np.int32)))

    def _get(self, key: tuple[str, object], n: int, make: Callable[[int], pa.Array]) -> pa.Array:
        array = self._arrays.get(key)
        if array is None or len(array) < n:
            array = self._arrays[key] = make(max(n, 1))
        return array.slice(0, n)


def _repeated(value: str, n: int) -> pa.Array:
    """``value`` ``n`` times, built from buffers."""
    data = value.encode()
    offsets = np.arange(n + 1, dtype=np.int64) * len(data)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data * n)).cast(
        pa.string()
    )


def _factorize(key: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Labels of ``key`` by order of first appearance, and the row where each first appears."""
    labels = np.asarray(pd.factorize(key)[0], dtype=np.int64)
    if len(labels) == 0:
        return labels, labels
    peak = np.maximum.accumulate(labels)
    new = np.empty(len(labels), dtype=bool)
    new[0] = True
    new[1:] = labels[1:] > peak[:-1]
    return labels, np.flatnonzero(new)


class _Codes:
    """File-wide codes of one text column's distinct values (a dict entry each)."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def of(self, dictionary: pa.Array) -> npt.NDArray[np.int64]:
        index = self.index
        return np.fromiter(
            (index.setdefault(v, len(index)) for v in dictionary.to_pylist()),
            dtype=np.int64,
            count=len(dictionary),
        )


class _Interner:
    """File-wide ids of int64 values by order of first appearance (pandas' hash table)."""

    def __init__(self) -> None:
        self.table = _hashtable.Int64HashTable(1 << 10)

    def __len__(self) -> int:
        return len(self.table)

    def ids(self, values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        labels = self.table.get_labels(values, _hashtable.Int64Vector(), len(self.table), -1)
        return np.asarray(labels, dtype=np.int64)


class _SortedRuns:
    """An exact set of int64 keys as sorted runs, each at least twice the size of the next (a
    small log-structured merge): 8 B per key, a few runs to search per batch, and while two
    runs merge a transient copy of them."""

    def __init__(self) -> None:
        self.runs: list[npt.NDArray[np.int64]] = []

    def add(self, keys: npt.NDArray[np.int64]) -> int | None:
        """Add keys; the first whose key is already in the set or earlier among them (then
        nothing is added), else None."""
        ordered = np.sort(keys)
        if (ordered[1:] == ordered[:-1]).any() or any(h.any() for h in self._hits(ordered)):
            order = np.argsort(keys, kind="stable")  # which row: the slow way, once
            seen = np.zeros(len(keys), dtype=bool)
            seen[order[1:][ordered[1:] == ordered[:-1]]] = True
            for hits in self._hits(ordered):
                seen[order[hits]] = True
            return int(np.argmax(seen))
        self.push(ordered)
        return None

    def push(self, ordered: npt.NDArray[np.int64]) -> None:
        """Add sorted keys known to be new."""
        self.runs.append(ordered)
        while len(self.runs) > 1 and len(self.runs[-2]) <= 2 * len(self.runs[-1]):
            last = self.runs.pop()
            merged = np.concatenate((self.runs.pop(), last))
            merged.sort(kind="stable")  # two sorted runs: a linear merge
            self.runs.append(merged)

    def _hits(self, ordered: npt.NDArray[np.int64]) -> Iterator[npt.NDArray[np.bool_]]:
        """For each run, which of these sorted keys it holds."""
        for run in self.runs:
            at = np.minimum(np.searchsorted(run, ordered), len(run) - 1)
            yield run[at] == ordered


_SAMPLE_BITS = 31


class _SampleKeys:
    """The (cell, sample_idx) keys seen so far, exactly. A cell whose samples so far are
    0..k-1 (how harnesses number them; any order within a batch) is held as its count k,
    9 B per cell; the keys of any other cell are held in ``_SortedRuns``, 8 B per row."""

    def __init__(self) -> None:
        self.count = np.zeros(0, dtype=np.int64)
        self.sparse = np.zeros(0, dtype=bool)
        self.runs = _SortedRuns()

    def add(self, cells: npt.NDArray[np.int64], samples: npt.NDArray[np.int64]) -> int | None:
        """Add a batch's keys; the first row whose key was seen before, else None."""
        if len(cells) == 0:
            return None
        self._grow(int(cells.max()) + 1)
        ordered = np.sort((cells << _SAMPLE_BITS) | samples)
        cell = ordered >> _SAMPLE_BITS
        starts = np.flatnonzero(np.concatenate(([True], cell[1:] != cell[:-1])))
        sizes = np.diff(np.append(starts, len(ordered)))
        rank = np.arange(len(ordered)) - np.repeat(starts, sizes)
        sample = ordered & ((1 << _SAMPLE_BITS) - 1)
        fits = ~self.sparse[cell] & (sample == self.count[cell] + rank)
        dense = np.logical_and.reduceat(fits, starts)
        self.count[cell[starts[dense]]] += sizes[dense]
        if dense.all():
            return None
        # Cells that stop being 0..k-1: their keys so far join the sorted runs.
        turning = cell[starts[~dense]]
        turning = turning[~self.sparse[turning]]
        counts = self.count[turning]
        if counts.sum():
            within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            self.runs.push(np.sort((np.repeat(turning, counts) << _SAMPLE_BITS) | within))
        self.sparse[turning] = True
        rows = np.flatnonzero(self.sparse[cells])
        found = self.runs.add((cells[rows] << _SAMPLE_BITS) | samples[rows])
        return None if found is None else int(rows[found])

    def _grow(self, size: int) -> None:
        if len(self.count) < size:
            capacity = max(size, 2 * len(self.count))
            self.count = np.concatenate(
                (self.count, np.zeros(capacity - len(self.count), np.int64))
            )
            self.sparse = np.concatenate((self.sparse, np.zeros(capacity - len(self.sparse), bool)))


class _State:
    """What the checks that span the file keep between batches (see the module docstring
    for what grows with the file)."""

    def __init__(
        self, path: Path, given: list[str], options: _Options, label: Callable[[], str]
    ) -> None:
        self.path = path
        self.given = given
        self.defaults = {
            "dataset": options.dataset or path.stem,
            "model": options.model,
            "budget_kind": options.kind,
            "mode": "default",
        }
        self.label = label
        self.codes = {name: _Codes() for name in _TEXT_KEYS}
        self.configs: dict[tuple[int, ...], int] = {}
        self.cells = _Interner()
        self.pairs = _Interner()
        self.samples = np.zeros(0, dtype=np.int64)  # samples numbered so far per cell
        self.keys = _SampleKeys()
        self.run_of: dict[int, tuple[str, str, str]] = {}  # run code: run id, model, kind
        self.problem_rows: list[pa.Table] = []
        self.fill = _Fill()
        self.rows = 0
        self.required = False

    @property
    def needs_label(self) -> bool:
        """Whether run ids are ``LABEL/model`` (the label holds the file's hash)."""
        return "run_id" not in self.given

    def check(self, raw: _Raw) -> _Built:
        if not self.required:
            self._require()
        built = _Batch(self, raw).build()
        self.rows += raw.ctx.n_rows
        return built

    def finish(self) -> None:
        self._require()
        if self.rows == 0:
            raise InputError("no data rows (the file has only a header)", path=self.path)

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
        for name in ("dataset", "model", "mode", "budget_kind"):
            value = self.defaults.get(name)
            if name not in self.given and (not isinstance(value, str) or not value.strip()):
                raise InputError(f"no {name} column and no {name} given", path=self.path)
        self.required = True

    def config_ids(self, parts: list[tuple[int, ...]]) -> npt.NDArray[np.int64]:
        """File-wide ids of configurations given as tuples of file-wide codes."""
        configs = self.configs
        return np.fromiter(
            (configs.setdefault(p, len(configs)) for p in parts), dtype=np.int64, count=len(parts)
        )

    def runs(self, label: Callable[[], str]) -> list[Run]:
        """One run per run id, with its model and budget kind (checked to be one each)."""
        triples = {
            (run_id if run_id else f"{label()}/{model}", model, kind)
            for run_id, model, kind in self.run_of.values()
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
        if not self.problem_rows:
            return pd.DataFrame(columns=list(PROBLEM_STORE_COLUMNS), dtype=object)
        rows = pa.concat_tables(self.problem_rows)
        out: dict[str, Any] = {}
        for column in PROBLEM_STORE_COLUMNS:
            if column == "metadata_json":
                out[column] = ["{}"] * rows.num_rows
            elif column in rows.column_names:
                values = rows.column(column)
                if column == "level":
                    values = pc.cast(values, pa.int64())
                out[column] = values.to_pylist()
            else:
                out[column] = [None] * rows.num_rows
        return pd.DataFrame(out, columns=list(PROBLEM_STORE_COLUMNS), dtype=object)


class _Built:
    """One checked batch: its segment columns, the run ids (``LABEL/model`` once the label
    is known) and its rows split by dataset."""

    def __init__(
        self,
        columns: dict[str, pa.Array],
        models: tuple[npt.NDArray[np.int64], pa.Array] | None,
        datasets: tuple[npt.NDArray[np.int64], pa.Array],
    ) -> None:
        self.columns = columns
        self.models = models
        self.datasets = datasets

    def output(self, label: Callable[[], str]) -> _Out:
        """The segment rows (run on the writer's thread: casts and run ids are copies)."""
        columns = self.columns
        if self.models is not None:
            codes, models = self.models
            names = pc.binary_join_element_wise(label(), models, "/")
            columns = {**columns, "run_id": pc.take(names, pa.array(codes))}
        table = pa.Table.from_arrays(
            [pc.cast(columns[f.name], f.type, safe=True) for f in SEGMENT_SCHEMA],
            schema=SEGMENT_SCHEMA,
        )
        codes, dictionary = self.datasets
        return _Out(table, codes, [str(d) for d in dictionary.to_pylist()])


@dataclass
class _Out:
    """A checked batch's segment rows (file order) and each row's dataset."""

    table: pa.Table
    codes: npt.NDArray[np.int64]  # into names
    names: list[str]

    def by_dataset(self) -> list[tuple[str, pa.Table]]:
        """The rows of each dataset, in their order (by name). Rows of several datasets are
        copied apart: a slice would keep the whole batch alive in a writer's buffer."""
        if len(self.names) == 1:
            return [(self.names[0], self.table)]
        order = np.argsort(self.codes, kind="stable")
        ends = np.cumsum(np.bincount(self.codes, minlength=len(self.names)))
        starts = ends - np.bincount(self.codes, minlength=len(self.names))
        return [
            (self.names[c], self.table.take(pa.array(order[starts[c] : ends[c]])))
            for c in sorted(range(len(self.names)), key=self.names.__getitem__)
        ]


class _Batch:
    """Checks one batch with today's rules, and against the file so far (``_State``)."""

    def __init__(self, state: _State, raw: _Raw) -> None:
        self.state = state
        self.ctx = raw.ctx
        self.n = raw.ctx.n_rows
        self.given = raw.columns
        self.local: dict[str, tuple[npt.NDArray[np.int64], int]] = {}
        self.dictionaries: dict[str, pa.Array] = {}
        self.wide: dict[str, npt.NDArray[np.int64]] = {}  # file-wide code per local code
        self.columns: dict[str, pa.Array] = {}
        self.group_firsts = self.cell_firsts = np.zeros(0, dtype=np.int64)

    def build(self) -> _Built:
        for name in ("dataset", "problem_id", "model", "mode", "budget_kind"):
            self._key(name)
        if "run_id" in self.given:
            self._key("run_id")
        else:  # LABEL/model: the model's codes
            self.local["run_id"] = self.local["model"]
            self.wide["run_id"] = self.wide["model"]
            self.dictionaries["run_id"] = self.dictionaries["model"]
        for name, values in self.given.items():
            if SPECS[name].kind != "key":
                self.columns[name] = _checked(self.ctx, name, values)
        if "answered" not in self.given and "extracted_answer" in self.given:
            self.columns["answered"] = pc.is_valid(self.columns["extracted_answer"])
        cells = self._cells()
        if "sample_idx" in self.given:
            self._check_duplicates(cells)
        else:
            self.columns["sample_idx"] = self._order_in_cell(cells)
        self._check_runs()
        self._add_problems()
        models = (
            None if "run_id" in self.given else (self.local["model"][0], self.dictionaries["model"])
        )
        return _Built(
            self._segment_columns(),
            models,
            (self.local["dataset"][0], self.dictionaries["dataset"]),
        )

    def _key(self, name: str) -> None:
        """A required text column as codes into its distinct values: none empty (checked
        on the distinct values), budget kinds known. A default is one code for all rows."""
        if name in self.given:
            values = self.given[name]
            encoded = (
                values if pa.types.is_dictionary(values.type) else pc.dictionary_encode(values)
            )
            dictionary = encoded.dictionary
            blank = pc.equal(pc.utf8_trim_whitespace(dictionary), "")
            if encoded.null_count or pc.any(blank).as_py():
                _today(self.ctx.table(name), name, _KEY)  # today's "empty value", its line
            codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        else:
            value = str(self.state.defaults[name])
            dictionary = pa.array([value], pa.string())
            codes = np.zeros(self.n, dtype=np.int64)
            values = self.state.fill.repeated(value, self.n)
        if name == "budget_kind":
            self._check_kinds(values, codes, dictionary)
        self.local[name] = (codes, len(dictionary))
        self.dictionaries[name] = dictionary
        self.wide[name] = self.state.codes[name].of(dictionary)
        self.columns[name] = values  # cast to text by ``_Built.output``

    def _check_kinds(self, values: pa.Array, codes: npt.NDArray[Any], dictionary: pa.Array) -> None:
        known = sorted(get_args(BudgetKind))
        unknown = ~np.asarray(
            pc.is_in(dictionary, pa.array(known, pa.string())).to_numpy(zero_copy_only=False)
        )
        if unknown.any():
            row = int(np.argmax(np.isin(codes, np.flatnonzero(unknown))))
            value = values[row].as_py()
            raise self.ctx.fail(row, "budget_kind", f"{value!r} is not one of {', '.join(known)}")

    def _budget_codes(self) -> npt.NDArray[np.int64]:
        """The budget as a code valid in the whole file: NULL 0, else the value plus one."""
        values = self.columns.get("budget")
        if values is None:
            return np.zeros(self.n, dtype=np.int64)
        filled = np.asarray(pc.fill_null(values, -1.0).to_numpy(zero_copy_only=False))
        return np.asarray(filled.astype(np.int64) + 1, dtype=np.int64)

    def _local_key(self, parts: list[tuple[npt.NDArray[np.int64], int]]) -> npt.NDArray[np.int64]:
        """One int64 per row, equal exactly when the rows agree on every part."""
        key = np.zeros(self.n, dtype=np.int64)
        size = 1
        for codes, card in parts:
            card = max(card, 1)
            if size * card >= 2**62:
                factorized, uniques = pd.factorize(key)
                key, size = np.asarray(factorized, dtype=np.int64), len(uniques)
            key = key * card + codes
            size *= card
        return key

    def _cells(self) -> npt.NDArray[np.int64]:
        """File-wide ids of each row's (run, dataset, problem, model, mode, budget).

        Rows are grouped first by configuration and budget kind (``group_firsts``: the row
        where each group first appears, what the run check needs), then by problem within
        (``cell_firsts``, what the problems need).
        """
        budget = self._budget_codes()
        low = int(budget.min()) if self.n else 0
        names = ("run_id", "dataset", "model", "mode")
        parts = [self.local[name] for name in (*names, "budget_kind")]
        parts.append((budget - low, int(budget.max()) - low + 1 if self.n else 1))
        labels, self.group_firsts = _factorize(self._local_key(parts))
        firsts = self.group_firsts
        wide = [self.wide[name][self.local[name][0][firsts]] for name in names]
        tuples = list(zip(*(w.tolist() for w in wide), budget[firsts].tolist(), strict=True))
        configs = self.state.config_ids(tuples)
        problems, n_problems = self.local["problem_id"]
        cell_labels, self.cell_firsts = _factorize(labels * n_problems + problems)
        cell_firsts = self.cell_firsts
        problem_wide = self.wide["problem_id"][problems[cell_firsts]]
        if len(self.state.configs) >= 2**31 or len(self.state.codes["problem_id"].index) >= 2**32:
            raise InputError("too many configurations or problems in one file", path=self.ctx.path)
        ids = self.state.cells.ids((configs[labels[cell_firsts]] << 32) | problem_wide)
        return np.asarray(ids[cell_labels], dtype=np.int64)

    def _order_in_cell(self, cells: npt.NDArray[np.int64]) -> pa.Array:
        """Samples numbered by order of appearance per cell, continuing the earlier batches."""
        state = self.state
        if len(state.samples) < len(state.cells):
            grown = np.zeros(max(len(state.cells), 2 * len(state.samples)), dtype=np.int64)
            grown[: len(state.samples)] = state.samples
            state.samples = grown
        order = np.argsort(cells, kind="stable")
        ordered = cells[order]
        starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
        within = np.arange(self.n) - np.repeat(starts, np.diff(np.append(starts, self.n)))
        numbers = np.empty(self.n, dtype=np.int64)
        numbers[order] = within + state.samples[ordered]
        np.add.at(state.samples, ordered[starts], np.diff(np.append(starts, self.n)))
        if self.n and int(numbers.max()) > _INT32_MAX:
            raise InputError("more than 2**31 samples of one configuration", path=self.ctx.path)
        return pa.array(numbers.astype(np.float64))

    def _check_duplicates(self, cells: npt.NDArray[np.int64]) -> None:
        samples = np.asarray(self.columns["sample_idx"].to_numpy(zero_copy_only=False))
        row = self.state.keys.add(cells, samples.astype(np.int64))
        if row is not None:
            raise self.ctx.fail(
                row,
                "sample_idx",
                "duplicate key (problem, model, mode, budget, sample_idx) seen on an earlier row",
            )

    def _check_runs(self) -> None:
        """One model and budget kind per run, across the file (the first row of each group
        has every (run, model, budget kind) of the batch, in the order they appear)."""
        names = ("run_id", "model", "budget_kind")
        text = {n: self.dictionaries[n] for n in names}
        given = "run_id" in self.given
        for row in self.group_firsts.tolist():
            code = {n: int(self.local[n][0][row]) for n in names}
            run = int(self.wide["run_id"][code["run_id"]])
            run_id = str(text["run_id"][code["run_id"]]) if given else ""
            triple = (
                run_id,
                str(text["model"][code["model"]]),
                str(text["budget_kind"][code["budget_kind"]]),
            )
            seen = self.state.run_of.setdefault(run, triple)
            if seen[1:] != triple[1:]:
                shown = run_id or f"{self.state.label()}/{triple[1]}"
                raise self.ctx.fail(
                    row,
                    "run_id" if given else "budget_kind",
                    f"run {shown!r} has model/budget kind {seen[1:]}, this row {triple[1:]}",
                )

    def _add_problems(self) -> None:
        """Keep the first row of each (dataset, problem_id) not seen in earlier batches
        (it is the first row of one of the batch's cells)."""
        problems, n_problems = self.local["problem_id"]
        rows = self.cell_firsts
        datasets = self.local["dataset"][0][rows]
        _, firsts = _factorize(datasets * n_problems + problems[rows])
        firsts = rows[firsts]
        wide = (self.wide["dataset"][self.local["dataset"][0][firsts]] << 32) | self.wide[
            "problem_id"
        ][problems[firsts]]
        before = len(self.state.pairs)
        new = firsts[self.state.pairs.ids(wide) >= before]
        if len(new) == 0:
            return
        taken = pa.array(new)
        out = {}
        for column in PROBLEM_STORE_COLUMNS:
            values = self.columns.get(_PROBLEM_SOURCES.get(column, column))
            if values is not None:
                out[column] = pc.take(values, taken)
        self.state.problem_rows.append(pa.table(out))

    def _segment_columns(self) -> dict[str, pa.Array]:
        fill = self.state.fill
        out: dict[str, pa.Array] = {}
        for spec_field in SEGMENT_SCHEMA:
            name = spec_field.name
            values = self.columns.get(name)
            if name == "run_id" and "run_id" not in self.given:
                values = fill.nulls(pa.string(), self.n)  # replaced once the label is known
            elif values is None and name == "n_runs":
                values = fill.ones(self.n)
            out[name] = fill.nulls(spec_field.type, self.n) if values is None else values
        return out
