"""Fuzzing the importer with corrupted slices of the real recorded files (seeded).

Each variant must either fail with one clean line that names the file (and the line, when the
fault is on one), leaving the store's contents exactly as they were, or, when it is still valid,
store the rows of the clean file: rows from lines the corruption did not touch are identical.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from ponder.errors import InputError, PonderError
from ponder.importers import import_paths
from ponder.store import Store

SEED = 20261129
VARIANTS_PER_SOURCE = 50
# Errors about the file as a whole, which have no single line to name.
WHOLE_FILE = (
    "no data rows",
    "empty file",
    "missing column",
    "no model column",
    "not in the file",
    "no problem_id column",
    "no correctness",
)


@dataclass(frozen=True)
class Source:
    name: str  # the file name the variant gets (presets are detected from the columns)
    data: bytes
    rows_per_line: int  # outcome rows one data line makes
    options: dict[str, object]


def _csv_slice(path: Path, n_lines: int) -> bytes:
    """The header and the first records of a CSV, cut at a record boundary (quoted newlines
    inside a record are kept)."""
    import csv
    import io

    text = path.read_text(encoding="utf-8")
    reader = csv.reader(io.StringIO(text, newline=""))
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    for i, row in enumerate(reader):
        if i > n_lines:
            break
        writer.writerow(row)
    return out.getvalue().encode()


def _sources(shared: Path) -> list[Source]:
    rbs = _csv_slice(shared / "reasoning_budget_sweep/reasoning_budget_sweep_math500.csv", 30)
    mmlu = _csv_slice(shared / "mmlu_pro_math/mmlu_pro_math_per_model.csv", 30)
    arena = _csv_slice(shared / "matharena_aime2025_I/per_problem_accuracy.csv", 30)
    route = _csv_slice(shared / "routellm_gsm8k/gsm8k_responses.csv", 8)
    # Your own sweep: the same RBS rows as a mapped JSONL and a mapped CSV.
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(rbs.decode())))
    mapped = [
        {
            "problem_id": r["item_id"],
            "model": r["model"],
            "budget": int(r["budget"]),
            "sample_idx": int(r["seed"]),
            "correct": r["correct"] == "True",
            "output_tokens": int(r["n_new_tokens"]),
            "extracted_answer": r["answer"],
        }
        for r in rows
    ]
    jsonl = "".join(json.dumps(m) + "\n" for m in mapped).encode()
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=list(mapped[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(mapped)
    own = {"dataset": "fuzz", "run": "fuzz", "budget_kind": "hard_cap"}
    return [
        Source("reasoning_budget_sweep_math500.csv", rbs, 1, {}),
        Source("mmlu_pro_math_per_model.csv", mmlu, 1, {}),
        Source("per_problem_accuracy.csv", arena, 1, {}),
        Source("gsm8k_responses.csv", route, 2, {}),
        Source("mine.jsonl", jsonl, 1, own),
        Source("mine.csv", out.getvalue().encode(), 1, own),
    ]


# -- corruptions: each returns the new bytes and the byte offset where the damage starts ----


def _truncate(data: bytes, rng: random.Random) -> tuple[bytes, int]:
    cut = rng.randrange(1, len(data))
    return data[:cut], cut


def _flip(data: bytes, rng: random.Random) -> tuple[bytes, int]:
    at = rng.randrange(len(data))
    return data[:at] + bytes([rng.randrange(256)]) + data[at + 1 :], at


def _bad_utf8(data: bytes, rng: random.Random) -> tuple[bytes, int]:
    at = rng.randrange(len(data))
    return data[:at] + rng.choice([b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80"]) + data[
        at:
    ], at


def _nul(data: bytes, rng: random.Random) -> tuple[bytes, int]:
    at = rng.randrange(len(data))
    return data[:at] + b"\x00" + data[at:], at


def _quote(data: bytes, rng: random.Random) -> tuple[bytes, int]:
    at = rng.randrange(len(data))
    return data[:at] + b'"' + data[at:], at


def _huge_int(data: bytes, rng: random.Random) -> tuple[bytes, int]:
    """Replace one run of digits with a value no field accepts exactly."""
    runs = [
        i
        for i in range(1, len(data))
        if data[i : i + 1].isdigit() and not data[i - 1 : i].isdigit()
    ]
    if not runs:
        return _flip(data, rng)
    at = rng.choice(runs)
    end = at
    while end < len(data) and data[end : end + 1].isdigit():
        end += 1
    value = rng.choice([b"9007199254740993", b"1e400", b"99999999999999999999999", b"-7"])
    return data[:at] + value + data[end:], at


def _column(data: bytes, rng: random.Random, *, duplicate: bool) -> tuple[bytes, int]:
    """Remove or duplicate one column in every record (CSV) or one key in every object."""
    import csv
    import io

    text = data.decode()
    if text.lstrip().startswith("{"):
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        key = rng.choice(sorted(lines[0]))
        out = []
        for obj in lines:
            if duplicate:  # a repeated key: JSON keeps the last, which is the same value
                body = json.dumps(obj)[:-1] + f", {json.dumps(key)}: {json.dumps(obj[key])}}}"
                out.append(body)
            else:
                obj.pop(key, None)
                out.append(json.dumps(obj))
        return ("\n".join(out) + "\n").encode(), 0
    rows = list(csv.reader(io.StringIO(text, newline="")))
    col = rng.randrange(len(rows[0]))
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    for row in rows:
        if col < len(row):
            if duplicate:
                row.insert(col, row[col])
            else:
                del row[col]
        writer.writerow(row)
    return buf.getvalue().encode(), 0


CORRUPTIONS: dict[str, Callable[[bytes, random.Random], tuple[bytes, int]]] = {
    "truncate": _truncate,
    "flip": _flip,
    "bad_utf8": _bad_utf8,
    "nul": _nul,
    "quote": _quote,
    "huge_int": _huge_int,
    "drop_column": lambda d, r: _column(d, r, duplicate=False),
    "dup_column": lambda d, r: _column(d, r, duplicate=True),
}


def _digest(path: Path) -> str:
    """Digest of the store's table contents (not its bytes: pages may move)."""
    conn = sqlite3.connect(path)
    try:
        h = hashlib.sha256()
        for table in ("runs", "problems", "outcomes", "imports", "meta"):
            for row in sorted(map(repr, conn.execute(f"SELECT * FROM {table}"))):
                h.update(row.encode())
        return h.hexdigest()
    finally:
        conn.close()


OUTCOME_SQL = (
    "SELECT run_id, dataset, problem_id, model, mode, budget, sample_idx, output_tokens, "
    "truncated, answered, extracted_answer, correct, n_runs, response_text, extra_json "
    "FROM outcomes"
)


def _outcomes(path: Path, exclude_runs: set[str]) -> Counter[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return Counter(r for r in conn.execute(OUTCOME_SQL) if r[0] not in exclude_runs)
    finally:
        conn.close()


def _without_nulls(
    rows: Counter[tuple[object, ...]], columns: set[int]
) -> Counter[tuple[object, ...]]:
    return Counter(
        {tuple(None if i in columns else v for i, v in enumerate(r)): n for r, n in rows.items()}
    )


def test_importer_fuzz(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = _sources(shared_data)
    # Problem sets are looked up in the data folders: leave them out (speed, not behaviour).
    empty = tmp_path / "no-shared-data"
    empty.mkdir()
    monkeypatch.setenv("PONDER_SHARED_DATA", str(empty))
    base = tmp_path / "base.sqlite"
    seed_file = tmp_path / "base.csv"
    seed_file.write_text("problem_id,model,correct\nb1,base-model,1\nb2,base-model,0\n")
    with Store(base) as store:
        import_paths(store, [seed_file], dataset="base")
        base_runs = set(store.runs_frame()["run_id"])
    clean: dict[str, Counter[tuple[object, ...]]] = {}
    for source in sources:
        work = tmp_path / "clean" / source.name
        work.parent.mkdir(exist_ok=True)
        work.write_bytes(source.data)
        copy = tmp_path / f"clean-{source.name}.sqlite"
        shutil.copy(base, copy)
        with Store(copy) as store:
            import_paths(store, [work], **source.options)  # type: ignore[arg-type]
        clean[source.name] = _outcomes(copy, base_runs)
        assert sum(clean[source.name].values()) > 10
    base_digest = _digest(base)
    rng = random.Random(SEED)
    kinds = Counter[str]()
    outcomes = Counter[str]()
    failures: list[str] = []
    cli_cases: list[tuple[Path, Path, Source, str]] = []
    for source in sources:
        for i in range(VARIANTS_PER_SOURCE):
            kind = rng.choice(sorted(CORRUPTIONS))
            data, at = CORRUPTIONS[kind](source.data, rng)
            kinds[kind] += 1
            case = tmp_path / f"v{source.name}-{i}"
            case.mkdir()
            path = case / source.name
            path.write_bytes(data)
            store_path = case / "s.sqlite"
            shutil.copy(base, store_path)
            label = f"{source.name} #{i} {kind} at byte {at}"
            try:
                with Store(store_path) as store:
                    import_paths(store, [path], **source.options)  # type: ignore[arg-type]
            except PonderError as exc:
                outcomes["error"] += 1
                if len(cli_cases) < 3 and kind not in {c[3] for c in cli_cases}:
                    cli_cases.append((path, store_path, source, kind))
                message = str(exc)
                if "\n" in message or str(path) not in message:
                    failures.append(f"{label}: not one line naming the file: {message!r}")
                elif (
                    isinstance(exc, InputError)
                    and exc.line is None
                    and not any(w in message for w in WHOLE_FILE)
                ):
                    failures.append(f"{label}: no line: {message!r}")
                if _digest(store_path) != base_digest:
                    failures.append(f"{label}: the store changed on error")
                continue
            except Exception as exc:  # a traceback for the user
                failures.append(f"{label}: {type(exc).__name__}: {exc}")
                continue
            outcomes["valid"] += 1
            got = _outcomes(store_path, base_runs)
            expected = clean[source.name]
            if kind == "dup_column":
                if got != expected:
                    failures.append(f"{label}: a duplicated column changed the rows")
                continue
            header_end = source.data.find(b"\n") if source.name.endswith(".csv") else -1
            if kind == "drop_column" or (at <= header_end and kind != "truncate"):
                # A lost or renamed column (the header was hit): its field is NULL now (a note
                # names the ignored column); a lost sample_idx is numbered by order of
                # appearance instead (column 6), which is valid and differs from the seeds.
                nulled = {
                    i
                    for i in range(len(OUTCOME_SQL.split(",")))
                    if all(r[i] is None for r in got) and not all(r[i] is None for r in expected)
                }
                if b'"sample_idx"' in source.data or b"sample_idx" in source.data[:header_end]:
                    nulled.add(6)
                if _without_nulls(got, nulled) - _without_nulls(expected, nulled):
                    failures.append(f"{label}: losing a column changed other values")
                continue
            touched = 2 * source.rows_per_line  # the damaged line's rows, plus a merged line
            extra = got - expected
            missing = expected - got
            if kind == "truncate":
                kept_lines = data.count(b"\n")
                if sum(extra.values()) > source.rows_per_line:
                    failures.append(f"{label}: {sum(extra.values())} rows differ")
                if kept_lines and sum(got.values()) > sum(expected.values()):
                    failures.append(f"{label}: more rows than the clean file")
                continue
            if sum(extra.values()) > touched or sum(missing.values()) > touched:
                failures.append(
                    f"{label}: {sum(extra.values())} new and {sum(missing.values())} lost rows"
                )
    assert not failures, "\n".join(failures[:20])
    # A few of the failing variants through the real CLI: one line, exit 1, store unchanged.
    for path, store_path, source, _ in cli_cases:
        args = [str(path)]
        for key in ("dataset", "run", "budget_kind"):
            if key in source.options:
                args += [f"--{key.replace('_', '-')}", str(source.options[key])]
        result = subprocess.run(
            [sys.executable, "-m", "ponder", "import", *args, "--store", str(store_path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "PONDER_SHARED_DATA": str(empty)},
        )
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1, result.stderr
        assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0]
        assert _digest(store_path) == base_digest
    assert sum(kinds.values()) == VARIANTS_PER_SOURCE * len(sources)
    assert outcomes["error"] > 100 and outcomes["valid"] > 20, outcomes
