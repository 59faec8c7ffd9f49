"""The Arrow import: the same rows as today's importer on the same file (read back through
`Store.outcomes_frame()`), and on a bad value the same one-line error with file, line, field
and value, whichever reader path (typed, or text after Arrow refused a column) finds it;
read in one batch or in many (small ``batch_bytes``), kept as a table or written as pending
segment files that nothing lists until they are committed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from columnar_helpers import recorded_sources, synthetic_frame

from ponder.columnar.arrow_import import BATCH_BYTES, read_outcomes, write_pending
from ponder.columnar.catalog import Catalog, parquet_root
from ponder.columnar.segments import SEGMENT_SCHEMA, outcome_frame
from ponder.errors import InputError
from ponder.importers import import_paths, load_file
from ponder.store import Store, export_outcomes

KEY = ["run_id", "dataset", "problem_id", "model", "mode", "budget", "sample_idx"]
HEADER = "problem_id,model,dataset,mode,budget,sample_idx,correct,output_tokens,truncated,answered"
GOOD = [
    "p1,m,d,think,1024,0,1,10,False,True",
    "p2,m,d,think,1024,0,0,12,false,TRUE",
    "p3,m,d,think,,0,0.5,13,1,0",
]
NUL = "p\x002"


def _normalised(frame: pd.DataFrame, columns: list[str]) -> dict[str, list[Any]]:
    """Columns as plain values by key order: floats (NaN for NULL) or text (None for NULL)."""
    ordered = frame.sort_values(KEY).reset_index(drop=True)
    out: dict[str, list[Any]] = {}
    for column in columns:
        values = ordered[column]
        if values.dtype.kind in "fi":
            out[column] = values.to_numpy(dtype=np.float64).tolist()
        else:
            out[column] = [None if pd.isna(v) else str(v) for v in values]
    return out


# Small batches: a few rows each, so every file of these tests is read in many batches.
SMALL = 1024


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([(k, "ascending") for k in KEY])


def _assert_same_rows(
    path: Path, tmp_path: Path, batch_bytes: int = BATCH_BYTES, **options: Any
) -> pd.DataFrame:
    """Today's import of ``path`` read back from the store equals the Arrow import's rows,
    and the pending files ``write_pending`` leaves hold exactly those rows."""
    with Store(tmp_path / f"today-{path.name}.sqlite") as store:
        import_paths(store, [path], **options)
        today = store.outcomes_frame(include_text=True)
        problems = store.problems_frame()
    imported = read_outcomes(path, batch_bytes=batch_bytes, **options)
    assert imported.table.schema.equals(SEGMENT_SCHEMA)
    pending = write_pending(
        path, tmp_path / f"{path.name}.parquet", batch_bytes=batch_bytes, **options
    )
    try:
        assert pending.rows == imported.table.num_rows and pending.sha256 == imported.sha256
        assert pending.runs == imported.runs and pending.notes == imported.notes
        assert pending.problems.equals(imported.problems)
        written = pa.concat_tables(pq.read_table(p.temp) for p in pending.pending)
        assert _sorted(written).equals(_sorted(imported.table))
    finally:
        pending.discard()
    mine = outcome_frame(imported.table)
    columns = [c for c in mine.columns if c in today.columns]
    assert set(today.columns) - set(columns) == {"level", "subject"}  # from `problems`
    assert len(mine) == len(today)
    a, b = _normalised(today, columns), _normalised(mine, columns)
    for column in columns:
        if today[column].dtype.kind in "fi":  # NaN != NaN: compare with NaN as equal
            assert np.array_equal(np.asarray(a[column]), np.asarray(b[column]), equal_nan=True), (
                column
            )
        else:
            assert a[column] == b[column], column
    # The problems it brings are the ones today's import stored (levels and subjects too).
    keys = ["dataset", "problem_id"]
    joined = imported.problems.merge(problems, on=keys, how="outer", suffixes=("", "_today"))
    assert len(joined) == len(problems) == len(imported.problems)
    for column in ("level", "subject", "gold", "text"):
        ours = [
            None if pd.isna(v) else float(v) if column == "level" else v for v in joined[column]
        ]
        theirs = [
            None if pd.isna(v) else float(v) if column == "level" else v
            for v in joined[f"{column}_today"]
        ]
        assert ours == theirs, column
    runs = {(r.run_id, r.model, r.budget_kind) for r in imported.runs}
    assert runs == set(today[["run_id", "model", "budget_kind"]].itertuples(index=False))
    return mine


@pytest.mark.parametrize("batch_bytes", [BATCH_BYTES, SMALL])
def test_an_export_gives_todays_rows(tmp_path: Path, batch_bytes: int) -> None:
    # The canonical format: the outcome frame's columns, floats like 1024.0 in integer
    # columns, fractional correct, aggregated rows, NULLs everywhere, odd dataset names.
    path = tmp_path / "export.csv"
    synthetic_frame(seed=3).to_csv(path, index=False)
    mine = _assert_same_rows(path, tmp_path, batch_bytes)
    assert set(mine["n_runs"]) > {1} and mine["budget"].isna().any()


@pytest.mark.parametrize("batch_bytes", [BATCH_BYTES, SMALL])
def test_jsonl_gives_todays_rows(tmp_path: Path, batch_bytes: int) -> None:
    path = tmp_path / "export.jsonl"
    synthetic_frame(seed=4).to_json(path, orient="records", lines=True)
    _assert_same_rows(path, tmp_path, batch_bytes)


@pytest.mark.parametrize("batch_bytes", [BATCH_BYTES, SMALL])
def test_defaults_give_todays_rows(tmp_path: Path, batch_bytes: int) -> None:
    # No run_id, budget_kind, mode or sample_idx: runs are LABEL/model with the file's hash,
    # samples are numbered by appearance per configuration.
    path = tmp_path / "sweep.csv"
    rows = [f"p{i % 7},m{i % 3},d,{i % 5},{i % 2},x{i % 4}" for i in range(200)]
    path.write_text("problem_id,model,dataset,budget,correct,extracted_answer\n" + "\n".join(rows))
    mine = _assert_same_rows(path, tmp_path, batch_bytes, budget_kind="hard_cap")
    assert mine["run_id"].str.startswith("sweep-").all()
    assert set(mine["sample_idx"]) == {0, 1}  # 105 configurations, 200 rows


def test_recorded_datasets_exported_give_todays_rows(shared_data: Path, tmp_path: Path) -> None:
    with Store(tmp_path / "recorded.sqlite") as store:
        import_paths(store, recorded_sources(shared_data))
        export_outcomes(store, tmp_path / "recorded.csv")
    mine = _assert_same_rows(tmp_path / "recorded.csv", tmp_path, batch_bytes=1 << 16)
    assert len(mine) > 10_000
    assert read_outcomes(tmp_path / "recorded.csv").table.equals(
        read_outcomes(tmp_path / "recorded.csv", batch_bytes=1 << 16).table
    )


def test_published_rows_read_back_exactly(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    synthetic_frame(seed=5).to_csv(path, index=False)
    imported = read_outcomes(path)
    with Catalog(tmp_path / "s.sqlite") as catalog:
        segments = catalog.publish(imported.table)
        assert {s.dataset for s in segments} == {"alpha", "beta/two words", "gamma"}
        back = catalog.read()
    assert back.num_rows == imported.table.num_rows
    assert back.sort_by([(k, "ascending") for k in KEY]).equals(
        imported.table.sort_by([(k, "ascending") for k in KEY])
    )


def _file(tmp_path: Path, name: str, rows: list[str], header: str = HEADER) -> Path:
    path = tmp_path / name
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def _errors(path: Path) -> tuple[str, str]:
    """Today's error and the Arrow import's, as one line each ("OK" when none)."""
    out = []
    reader: Callable[[Path], object]
    for reader in (load_file, read_outcomes):
        try:
            reader(path)
            out.append("OK")
        except InputError as exc:
            assert "\n" not in str(exc)
            out.append(str(exc))
    return out[0], out[1]


@pytest.mark.parametrize(
    ("row", "column", "value", "expected"),
    [
        (1, "correct", "1.5", "3, field 'correct': '1.5' is not true/false or 0..1"),
        (1, "correct", "maybe", "3, field 'correct': 'maybe' is not true/false or 0..1"),
        (1, "correct", "", "3, field 'correct': missing value"),
        (1, "problem_id", "", "3, field 'problem_id': empty value"),
        (2, "problem_id", "  ", "4, field 'problem_id': empty value"),
        (2, "truncated", "2", "4, field 'truncated': '2' is not a boolean (true/false, 1/0)"),
        (2, "answered", "maybe", "4, field 'answered': 'maybe' is not a boolean"),
        (2, "sample_idx", "", "4, field 'sample_idx': missing value"),
        (2, "output_tokens", "nan", "4, field 'output_tokens': 'nan' is not an integer (inf"),
        (2, "mode", "", "4, field 'mode': empty value"),
    ],
)
def test_bad_values_give_todays_error(
    tmp_path: Path, row: int, column: str, value: str, expected: str
) -> None:
    rows = [r.split(",") for r in GOOD]
    rows[row][HEADER.split(",").index(column)] = value
    path = _file(tmp_path, "bad.csv", [",".join(r) for r in rows])
    today, mine = _errors(path)
    assert mine == today
    assert mine.startswith(f"{path}:{expected}")


@pytest.mark.parametrize(
    ("row", "column", "value"),
    [
        (2, "output_tokens", "twelve"),  # Arrow cannot parse it: the text path finds it
        (2, "output_tokens", "-3"),  # parsed, out of range: the typed check finds it
        (2, "output_tokens", "3.5"),
        (0, "budget", "1.5"),
    ],
)
def test_bad_integers_name_file_line_field_and_value(
    tmp_path: Path, row: int, column: str, value: str
) -> None:
    rows = [r.split(",") for r in GOOD]
    rows[row][HEADER.split(",").index(column)] = value
    path = _file(tmp_path, "bad.csv", [",".join(r) for r in rows])
    today, mine = _errors(path)
    # Segments keep integers as int32: the stated range is [0, 2**31 - 1], not [0, inf].
    assert mine == today.replace("[0, inf]", "[0, 2147483647]")
    assert (
        mine
        == f"{path}:{row + 2}, field '{column}': '{value}' is not an integer in [0, 2147483647]"
    )


def test_an_integer_beyond_int32_is_refused_with_its_line(tmp_path: Path) -> None:
    rows = list(GOOD)
    rows[1] = rows[1].replace(",12,", ",3000000000,")
    path = _file(tmp_path, "big.csv", rows)
    with pytest.raises(InputError, match=r"big.csv:3, field 'output_tokens': '3000000000'"):
        read_outcomes(path)


def test_values_arrow_cannot_type_take_todays_rules(tmp_path: Path) -> None:
    rows = [
        "p1,m,d,think,1024.0,0,true,  10 ,yes,no",
        "p2,m,d,think,1024,1,FALSE,12,Y,n",
    ]
    path = _file(tmp_path, "odd.csv", rows)
    assert _errors(path) == ("OK", "OK")
    _assert_same_rows(path, tmp_path)


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("short", f"{HEADER}\n{GOOD[0]}\np2,m,d\n", 3),  # a short row
        ("blank", f"{HEADER}\n{GOOD[0]}\n\n{GOOD[1]}\np3,m,d,think,,0,x,13,1,0\n", 5),
        ("crlf", f"{HEADER}\r\n{GOOD[0]}\r\n{GOOD[1].replace(',12,', ',zz,')}\r\n", 3),
        ("bom", f"\ufeff{HEADER}\n{GOOD[0]}\n{GOOD[1].replace(',12,', ',zz,')}\n", 3),
        ("nul", f"{HEADER}\n{GOOD[0]}\n{GOOD[1].replace('p2', NUL)}\n", 3),
        # A quoted value over two lines: the record after it starts on line 5.
        (
            "quoted",
            f'{HEADER}\n{GOOD[0]}\n"p,2",m,"d\nd",think,1024,0,0,12,false,TRUE\n'
            f"p3,m,d,think,,0,x,13,1,0\n",
            5,
        ),
    ],
)
def test_file_faults_name_their_line(tmp_path: Path, name: str, text: str, line: int) -> None:
    path = tmp_path / f"{name}.csv"
    path.write_bytes(text.encode())
    today, mine = _errors(path)
    assert mine == today.replace("[0, inf]", "[0, 2147483647]")
    assert mine.startswith(f"{path}:{line}")


def test_duplicate_keys_runs_and_kinds(tmp_path: Path) -> None:
    dup = _file(tmp_path, "dup.csv", [GOOD[0], GOOD[1], GOOD[0]])
    assert _errors(dup)[1] == (
        f"{dup}:4, field 'sample_idx': duplicate key (problem, model, mode, budget, "
        "sample_idx) seen on an earlier row"
    )
    assert _errors(dup)[0] == _errors(dup)[1]
    header = HEADER + ",run_id,budget_kind"
    clash = _file(
        tmp_path,
        "clash.csv",
        [GOOD[0] + ",r1,hard_cap", GOOD[1].replace(",m,", ",m2,") + ",r1,hard_cap"],
        header,
    )
    today, mine = _errors(clash)
    assert mine == today and mine.startswith(f"{clash}:3, field 'run_id': run 'r1' has")
    kind = _file(tmp_path, "kind.csv", [GOOD[0] + ",r1,hard_cap", GOOD[1] + ",r1,weird"], header)
    today, mine = _errors(kind)
    assert mine == today and mine.startswith(f"{kind}:3, field 'budget_kind': 'weird'")


def test_jsonl_bad_values_name_their_line(tmp_path: Path) -> None:
    base = {"problem_id": "p1", "model": "m", "dataset": "d", "sample_idx": 0, "correct": 1}
    cases: list[tuple[str, object, str]] = [
        ("correct", 2, "field 'correct': '2' is not true/false or 0..1"),
        ("truncated", 2, "field 'truncated': '2' is not a boolean (true/false, 1/0)"),
        ("latency_s", -1, "field 'latency_s': '-1' is not a number in [0, inf]"),
        ("problem_id", None, "field 'problem_id': empty value"),
    ]
    for column, value, expected in cases:
        rows = [dict(base, sample_idx=i) for i in range(3)]
        rows[1][column] = value
        path = tmp_path / f"{column}.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
        today, mine = _errors(path)
        assert mine == today == f"{path}:2, {expected}"
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(base) + '\n{"problem_id": \n')
    assert _errors(broken)[1] == _errors(broken)[0] == f"{broken}:2: invalid JSON: Expecting value"


def test_missing_columns_and_empty_files(tmp_path: Path) -> None:
    no_correct = _file(tmp_path, "nc.csv", ["p1,m"], "problem_id,model")
    with pytest.raises(InputError, match="no correct column"):
        read_outcomes(no_correct)
    no_model = _file(tmp_path, "nm.csv", ["p1,1"], "problem_id,correct")
    with pytest.raises(InputError, match="no model column"):
        read_outcomes(no_model)
    assert read_outcomes(no_model, model="given").table.column("model").to_pylist() == ["given"]
    header_only = tmp_path / "h.csv"
    header_only.write_text(HEADER + "\n")
    assert _errors(header_only)[1] == f"{header_only}: no data rows (the file has only a header)"
    empty = tmp_path / "e.csv"
    empty.write_text("")
    assert _errors(empty) == (f"{empty}: empty file (no header row)",) * 2
    extra = _file(tmp_path, "x.csv", [g + ",whatever" for g in GOOD], HEADER + ",notes")
    assert "notes" in read_outcomes(extra).notes[0]


# -- batches ---------------------------------------------------------------------------------


def _many(n: int, **changes: str) -> list[str]:
    """``n`` good rows of HEADER (seven problems of one configuration, sample ``i`` on row
    ``i``); ``changes`` maps ``"row:column"`` to a value."""
    rows = [f"p{i % 7},m,d,think,1024,{i},{i % 2},{10 + i},False,True".split(",") for i in range(n)]
    columns = HEADER.split(",")
    for where, value in changes.items():
        row, column = where.split(":")
        rows[int(row)][columns.index(column)] = value
    return [",".join(r) for r in rows]


def _error(reader: Callable[[], object]) -> str:
    with pytest.raises(InputError) as caught:
        reader()
    return str(caught.value)


@pytest.mark.parametrize(
    ("column", "value"),
    [("output_tokens", "-3"), ("output_tokens", "twelve"), ("correct", "2"), ("mode", " ")],
)
def test_a_bad_value_in_a_late_batch_names_its_line(
    tmp_path: Path, column: str, value: str
) -> None:
    path = _file(tmp_path, "late.csv", _many(400, **{f"390:{column}": value}))
    today = _errors(path)[0]
    assert today.startswith(f"{path}:392, field '{column}'")
    for batch_bytes in (SMALL, BATCH_BYTES):
        mine = _error(lambda b=batch_bytes: read_outcomes(path, batch_bytes=b))
        assert mine == today.replace("[0, inf]", "[0, 2147483647]")


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (b"p2,m,d", "392: expected 10 fields, found 3"),
        (b"p\x002,m,d,think,1024,0,0,12,false,TRUE", "392, field 'problem_id': NUL character"),
        (b"p\xff2,m,d,think,1024,0,0,12,false,TRUE", "392: not UTF-8 text: invalid start byte"),
    ],
)
def test_file_faults_in_a_late_batch_name_their_line(
    tmp_path: Path, fault: bytes, expected: str
) -> None:
    rows = [r.encode() for r in _many(400)]
    rows[390] = fault
    path = tmp_path / "fault.csv"
    path.write_bytes(HEADER.encode() + b"\n" + b"\n".join(rows) + b"\n")
    today = _errors(path)[0]
    assert today.startswith(f"{path}:{expected}")
    assert _error(lambda: read_outcomes(path, batch_bytes=SMALL)) == today
    assert _error(lambda: write_pending(path, tmp_path / "root", batch_bytes=SMALL)) == today


def test_lines_stay_right_after_quoted_values_with_newlines(tmp_path: Path) -> None:
    # Values spanning lines in early batches push every later record's line further down.
    rows = _many(300, **{"299:correct": "x"})
    for i in range(0, 200, 20):
        rows[i] = rows[i].replace(f"p{i % 7},", f'"p{i % 7}\nsecond line",', 1)
    path = _file(tmp_path, "quoted.csv", rows)
    today = _errors(path)[0]
    assert today.startswith(f"{path}:{299 + 2 + 10}, field 'correct'")
    assert _error(lambda: read_outcomes(path, batch_bytes=SMALL)) == today
    jsonl = tmp_path / "late.jsonl"
    records = [{"problem_id": f"p{i}", "model": "m", "correct": 1} for i in range(300)]
    records[280]["correct"] = 3
    jsonl.write_text(
        "\n".join(json.dumps(r) + ("\n" if i % 50 == 0 else "") for i, r in enumerate(records))
    )
    today = _errors(jsonl)[0]
    assert today.startswith(f"{jsonl}:{281 + 6}, field 'correct'")
    assert _error(lambda: read_outcomes(jsonl, batch_bytes=SMALL)) == today


def test_a_key_repeated_in_a_later_batch_is_refused(tmp_path: Path) -> None:
    rows = _many(300)
    rows.append(rows[3])  # the same key, some batches later
    path = _file(tmp_path, "dup.csv", rows)
    today = _errors(path)[0]
    assert today == (
        f"{path}:302, field 'sample_idx': duplicate key (problem, model, mode, budget, "
        "sample_idx) seen on an earlier row"
    )
    assert _error(lambda: read_outcomes(path, batch_bytes=SMALL)) == today
    assert _error(lambda: write_pending(path, tmp_path / "root", batch_bytes=SMALL)) == today


def test_a_run_with_a_second_model_in_a_later_batch_is_refused(tmp_path: Path) -> None:
    header = HEADER + ",run_id,budget_kind"
    rows = [r + ",r1,hard_cap" for r in _many(300)]
    rows.append(GOOD[0].replace(",m,", ",m2,") + ",r1,hard_cap")
    path = _file(tmp_path, "clash.csv", rows, header)
    today = _errors(path)[0]
    assert today.startswith(f"{path}:302, field 'run_id': run 'r1' has model/budget kind")
    assert _error(lambda: read_outcomes(path, batch_bytes=SMALL)) == today
    kinds = _file(
        tmp_path,
        "kinds.csv",
        [*rows[:-1], rows[-1].replace(",m2,", ",m,").replace("hard_cap", "none")],
        header,
    )
    today = _errors(kinds)[0]
    assert today.startswith(f"{kinds}:302, field 'run_id': run 'r1'")
    assert _error(lambda: read_outcomes(kinds, batch_bytes=SMALL)) == today


def test_an_error_after_files_were_written_leaves_no_file(tmp_path: Path) -> None:
    # More rows than a segment writer buffers, so its temporary file exists when the bad
    # value is found.
    n = 140_000
    rows = [f"p{i},m,d,0,1" for i in range(n)] + ["p0,m,d,0,2"]
    path = _file(tmp_path, "big.csv", rows, "problem_id,model,dataset,sample_idx,correct")
    root = tmp_path / "root"
    message = _error(lambda: write_pending(path, root, batch_bytes=1 << 16))
    assert message.startswith(f"{path}:{n + 2}, field 'correct'")
    assert (root / "outcomes" / "dataset=d").is_dir()  # a file was written...
    assert [p for p in root.rglob("*") if p.is_file()] == []  # ...and removed


def test_a_column_arrow_cannot_type_late_restarts_and_matches_today(tmp_path: Path) -> None:
    rows = _many(300, **{"280:truncated": "yes"})  # Arrow's flags: only a late value says so
    path = _file(tmp_path, "late-text.csv", rows)
    _assert_same_rows(path, tmp_path, SMALL)
    jsonl = tmp_path / "late-field.jsonl"  # a field first seen in a late batch
    records: list[dict[str, object]] = [
        {"problem_id": f"p{i}", "model": "m", "correct": i % 2} for i in range(300)
    ]
    records[290]["latency_s"] = 1.5
    jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    mine = _assert_same_rows(jsonl, tmp_path, SMALL)
    assert mine["latency_s"].notna().sum() == 1
    long = tmp_path / "long.csv"  # a record longer than a batch: larger batches
    rows = [
        f'p{i},m,d,think,1024,0,1,10,False,True,"{"x" * (5000 if i == 50 else 1)}"'
        for i in range(100)
    ]
    long.write_text(HEADER + ",extracted_answer\n" + "\n".join(rows) + "\n")
    assert _assert_same_rows(long, tmp_path, SMALL)["extracted_answer"].str.len().max() == 5000
    records[100]["extracted_answer"] = "y" * 5000
    long_jsonl = tmp_path / "long.jsonl"
    long_jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    _assert_same_rows(long_jsonl, tmp_path, SMALL)


def test_pending_files_are_listed_only_once_committed(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    synthetic_frame(seed=6).to_csv(path, index=False)
    store = tmp_path / "s.sqlite"
    imported = read_outcomes(path)
    pending = write_pending(path, parquet_root(store), batch_bytes=SMALL, segment_id="seg-1")
    assert {p.dataset for p in pending.pending} == {"alpha", "beta/two words", "gamma"}
    assert all(p.temp.is_file() and p.temp.name.startswith(".") for p in pending.pending)
    assert not any(p.final.exists() for p in pending.pending)
    with Catalog(store) as catalog:
        assert catalog.segments() == []
        assert catalog.remove_leftovers() == []  # this process is alive: its files stay
        segments = catalog.commit(pending.pending, origin="import")
        assert [s.rows for s in segments] == [p.rows for p in pending.pending]
        assert sum(s.rows for s in catalog.segments()) == pending.rows
        back = catalog.read()
    assert _sorted(back).equals(_sorted(imported.table))


@pytest.mark.parametrize("seed", range(8))
def test_duplicates_found_as_today_whatever_the_sample_order(tmp_path: Path, seed: int) -> None:
    # Samples numbered 0..k-1 per configuration (kept as counts), with gaps filled later,
    # and for odd seeds repeats (those need keys), over many batches.
    rng = np.random.default_rng(seed)
    counts = [0] * 5
    skipped: list[list[int]] = [[] for _ in counts]
    rows = []
    for _ in range(400):
        p = int(rng.integers(5))
        odd = rng.random()
        if odd < 0.03 * seed:  # a gap, filled some rows later
            skipped[p].append(counts[p])
            counts[p] += 1
        if odd < 0.005 * (seed % 2) * 8 and counts[p]:
            sample = int(rng.integers(counts[p]))  # perhaps a repeat
        elif skipped[p] and rng.random() < 0.1:
            sample = skipped[p].pop(0)
        else:
            sample = counts[p]
            counts[p] += 1
        rows.append(f"p{p},m,d,think,1024,{sample},1,10,False,True")
    path = _file(tmp_path, f"order{seed}.csv", rows)
    today = _errors(path)[0]
    assert (today == "OK") == (seed % 2 == 0)
    for batch_bytes in (SMALL, 4 * SMALL, BATCH_BYTES):
        mine = "OK"
        try:
            read_outcomes(path, batch_bytes=batch_bytes)
        except InputError as exc:
            mine = str(exc)
        assert mine == today, batch_bytes
    if today == "OK":
        _assert_same_rows(path, tmp_path, SMALL)


def test_a_restart_after_files_were_written_starts_them_again(tmp_path: Path) -> None:
    # "yes" as a flag, only in the last row: Arrow refuses the column there, the pass starts
    # again with it as text, and the rows written by the first pass are dropped.
    n = 140_000
    rows = [f"p{i},m,d,0,1,0" for i in range(n)] + [f"p{n},m,d,0,1,yes"]
    header = "problem_id,model,dataset,sample_idx,correct,truncated"
    path = _file(tmp_path, "restart.csv", rows, header)
    root = tmp_path / "root"
    pending = write_pending(path, root, batch_bytes=1 << 16)
    (item,) = pending.pending
    assert [p for p in root.rglob("*") if p.is_file()] == [item.temp]
    written = pq.read_table(item.temp)
    assert written.num_rows == item.rows == n + 1
    assert written.column("problem_id").to_pylist() == [f"p{i}" for i in range(n + 1)]
    assert written.column("truncated").to_pylist() == [0] * n + [1]
    pending.discard()
    assert [p for p in root.rglob("*") if p.is_file()] == []
