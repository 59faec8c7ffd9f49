"""The Arrow import: the same rows as today's importer on the same file (read back through
`Store.outcomes_frame()`), and on a bad value the same one-line error with file, line, field
and value, whichever reader path (typed, or text after Arrow refused a column) finds it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from columnar_helpers import recorded_sources, synthetic_frame

from ponder.columnar.arrow_import import read_outcomes
from ponder.columnar.catalog import Catalog
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


def _assert_same_rows(path: Path, tmp_path: Path, **options: Any) -> pd.DataFrame:
    """Today's import of ``path`` read back from the store equals the Arrow import's rows."""
    with Store(tmp_path / f"today-{path.name}.sqlite") as store:
        import_paths(store, [path], **options)
        today = store.outcomes_frame(include_text=True)
        problems = store.problems_frame()
    imported = read_outcomes(path, **options)
    assert imported.table.schema.equals(SEGMENT_SCHEMA)
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


def test_an_export_gives_todays_rows(tmp_path: Path) -> None:
    # The canonical format: the outcome frame's columns, floats like 1024.0 in integer
    # columns, fractional correct, aggregated rows, NULLs everywhere, odd dataset names.
    path = tmp_path / "export.csv"
    synthetic_frame(seed=3).to_csv(path, index=False)
    mine = _assert_same_rows(path, tmp_path)
    assert set(mine["n_runs"]) > {1} and mine["budget"].isna().any()


def test_jsonl_gives_todays_rows(tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl"
    synthetic_frame(seed=4).to_json(path, orient="records", lines=True)
    _assert_same_rows(path, tmp_path)


def test_defaults_give_todays_rows(tmp_path: Path) -> None:
    # No run_id, budget_kind, mode or sample_idx: runs are LABEL/model with the file's hash,
    # samples are numbered by appearance per configuration.
    path = tmp_path / "sweep.csv"
    rows = [f"p{i % 7},m{i % 3},d,{i % 5},{i % 2},x{i % 4}" for i in range(200)]
    path.write_text("problem_id,model,dataset,budget,correct,extracted_answer\n" + "\n".join(rows))
    mine = _assert_same_rows(path, tmp_path, budget_kind="hard_cap")
    assert mine["run_id"].str.startswith("sweep-").all()
    assert set(mine["sample_idx"]) == {0, 1}  # 105 configurations, 200 rows


def test_recorded_datasets_exported_give_todays_rows(shared_data: Path, tmp_path: Path) -> None:
    with Store(tmp_path / "recorded.sqlite") as store:
        import_paths(store, recorded_sources(shared_data))
        export_outcomes(store, tmp_path / "recorded.csv")
    mine = _assert_same_rows(tmp_path / "recorded.csv", tmp_path)
    assert len(mine) > 10_000


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
