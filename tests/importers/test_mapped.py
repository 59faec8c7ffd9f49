"""Bring-your-own sweeps: the column-mapped importer and its bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ponder.errors import InputError
from ponder.importers import import_paths, load_file, parse_mapping
from ponder.store import Store

CSV = """item_id,llm,max_tokens,seed,is_right,tokens,hit_cap,pred
q1,small,1024,0,true,800,false,42
q1,small,1024,1,false,1024,true,
q2,small,1024,0,1,300,0,7
q1,small,2048,0,yes,1500,no,42
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


MAP = {
    "problem_id": "item_id",
    "model": "llm",
    "budget": "max_tokens",
    "sample_idx": "seed",
    "correct": "is_right",
    "output_tokens": "tokens",
    "truncated": "hit_cap",
    "extracted_answer": "pred",
}


def test_mapped_csv_imports(tmp_path: Path, store: Store) -> None:
    path = _write(tmp_path, "mine.csv", CSV)
    results = import_paths(
        store, [path], mapping=MAP, dataset="toy", budget_kind="hard_cap", preset=None
    )
    assert results[0].preset == "mapped"
    frame = store.outcomes_frame()
    assert len(frame) == 4
    assert frame["correct"].tolist() == [1.0, 0.0, 1.0, 1.0]
    assert frame["truncated"].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert frame["answered"].tolist() == [1.0, 0.0, 1.0, 1.0]
    assert set(frame["budget_kind"]) == {"hard_cap"}
    assert set(frame["dataset"]) == {"toy"}
    again = import_paths(store, [path], mapping=MAP, dataset="toy", budget_kind="hard_cap")
    assert again[0].result is not None and again[0].result.outcomes_added == 0


def test_jsonl_with_field_named_columns_needs_no_mapping(tmp_path: Path) -> None:
    rows = [
        {"problem_id": "a", "model": "m", "correct": True, "budget": 512, "gold": "1"},
        {"problem_id": "a", "model": "m", "correct": False, "budget": 512, "gold": "1"},
    ]
    path = _write(tmp_path, "r.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    loaded = load_file(path, dataset="d")
    out = loaded.batch.outcomes
    assert out["sample_idx"].tolist() == [0, 1]  # order of appearance per configuration
    assert loaded.batch.problems["gold"].tolist() == ["1"]


def test_correctness_is_graded_when_only_answers_and_gold(tmp_path: Path) -> None:
    text = "id,answer,gold\n1,\\dfrac{1}{2},\\frac12\n2,3,4\n"
    path = _write(tmp_path, "g.csv", text)
    loaded = load_file(path, mapping={"problem_id": "id", "extracted_answer": "answer"}, model="m")
    assert loaded.batch.outcomes["correct"].tolist() == [1.0, 0.0]


@pytest.mark.parametrize(
    ("text", "mapping", "line", "field", "message"),
    [
        (
            CSV.replace("q2,small,1024,0,1,", "q2,small,lots,0,1,"),
            MAP,
            4,
            "max_tokens",
            "not an integer",
        ),
        (CSV.replace("yes,1500", "maybe,1500"), MAP, 5, "is_right", "is not true/false or 0..1"),
        (
            CSV.replace("q2,small,1024,0,1,300,0,7", "q2,small,1024,0,1,300,0"),
            MAP,
            4,
            None,
            "expected 8 fields, found 7",
        ),
        (
            CSV.replace("q1,small,1024,1,", "q1,small,1024,0,"),
            MAP,
            3,
            "sample_idx",
            "duplicate key",
        ),
        (
            CSV.replace("q2,small,1024,0,1,300", "q2,small,1024,0,1,-5"),
            MAP,
            4,
            "tokens",
            "not an integer in",
        ),
        (CSV.replace("\nq1,small,1024,0", "\n,small,1024,0", 1), MAP, 2, "item_id", "empty value"),
    ],
)
def test_bad_values_name_file_line_and_field(
    tmp_path: Path,
    store: Store,
    text: str,
    mapping: dict[str, str],
    line: int,
    field: str | None,
    message: str,
) -> None:
    path = _write(tmp_path, "bad.csv", text)
    with pytest.raises(InputError) as info:
        import_paths(store, [path], mapping=mapping, dataset="toy")
    err = info.value
    assert err.path == str(path)
    assert err.line == line
    assert err.field == field
    assert message in str(err)
    assert store.counts()["outcomes"] == 0


def test_unknown_mapping_field_and_missing_column(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown field 'problem'"):
        parse_mapping(["problem=item_id"])
    with pytest.raises(InputError, match="expected FIELD=COLUMN"):
        parse_mapping(["problem_id"])
    path = _write(tmp_path, "m.csv", CSV)
    with pytest.raises(InputError, match="mapped column\\(s\\) not in the file: 'nope'") as info:
        load_file(path, mapping={**MAP, "correct": "nope"})
    assert info.value.line == 1


def test_malformed_jsonl_line(tmp_path: Path, store: Store) -> None:
    path = _write(tmp_path, "r.jsonl", '{"problem_id": "a", "model": "m", "correct": 1}\n{oops\n')
    with pytest.raises(InputError) as info:
        import_paths(store, [path], dataset="d")
    assert info.value.line == 2
    assert "invalid JSON" in str(info.value)
    assert store.counts()["outcomes"] == 0


def test_missing_file_and_folder_without_known_files(tmp_path: Path, store: Store) -> None:
    with pytest.raises(InputError, match="no such file"):
        import_paths(store, [tmp_path / "absent.csv"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no file of a known preset"):
        import_paths(store, [tmp_path / "empty"])


def test_unknown_preset_and_wrong_preset(tmp_path: Path, store: Store) -> None:
    path = _write(tmp_path, "m.csv", CSV)
    with pytest.raises(InputError, match="unknown preset 'nope'"):
        import_paths(store, [path], preset="nope")
    with pytest.raises(InputError, match="missing column\\(s\\) 'model'") as info:
        import_paths(store, [path], preset="reasoning_budget_sweep")
    assert info.value.path == str(path)
    assert store.counts()["outcomes"] == 0


def test_a_bad_file_among_good_ones_writes_nothing(
    tmp_path: Path, store: Store, shared_data: Path
) -> None:
    bad = _write(tmp_path, "bad.csv", CSV.replace("true,800", "sure,800"))
    good = shared_data / "matharena_aime2025_I" / "per_problem_accuracy.csv"
    with pytest.raises(InputError):
        import_paths(store, [good, bad])
    assert store.counts()["outcomes"] == 0


def test_preset_file_with_a_bad_row(tmp_path: Path, shared_data: Path, store: Store) -> None:
    source = (shared_data / "reasoning_budget_sweep/reasoning_budget_sweep_aime.csv").read_text()
    lines = source.splitlines()
    fields = lines[10].split(",")
    fields[6] = "many"  # n_new_tokens
    lines[10] = ",".join(fields)
    path = _write(tmp_path, "rbs.csv", "\n".join(lines) + "\n")
    with pytest.raises(InputError) as info:
        import_paths(store, [path])
    assert (info.value.line, info.value.field) == (11, "n_new_tokens")
    assert store.counts()["outcomes"] == 0


def test_review_findings_on_import(tmp_path: Path, store: Store, shared_data: Path) -> None:
    from ponder.errors import StoreError
    from ponder.store import export_outcomes

    # Two different files with the same name are two runs, not one silently dropped.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _write(tmp_path / "a", "results.csv", "problem_id,model,correct\np1,m,1\n")
    second = _write(tmp_path / "b", "results.csv", "problem_id,model,correct\np1,m,0\n")
    for path in (first, second):
        result = import_paths(store, [path], dataset="t")[0].result
        assert result is not None and result.outcomes_added == 1
    # The same file again adds nothing; with another budget kind it is a conflict.
    again = import_paths(store, [first], dataset="t")[0].result
    assert again is not None and again.outcomes_added == 0
    with pytest.raises(StoreError, match=r"already imported .* with dataset=t; this import uses "):
        import_paths(store, [first], dataset="t", budget_kind="hard_cap")
    # An export imports back as the same rows.
    import_paths(store, [shared_data / "matharena_aime2025_I"])
    before = store.counts()["outcomes"]
    export_outcomes(store, tmp_path / "o.csv")
    back = import_paths(store, [tmp_path / "o.csv"])[0].result
    assert back is not None and back.outcomes_added == 0
    assert store.counts()["outcomes"] == before


def test_infinite_budget_and_header_quote_and_broken_folder_file(
    tmp_path: Path, store: Store
) -> None:
    inf = _write(tmp_path, "i.csv", "problem_id,model,correct,budget\np1,m,1,1e400\n")
    with pytest.raises(InputError, match="not an integer") as info:
        import_paths(store, [inf], dataset="t")
    assert (info.value.line, info.value.field) == (2, "budget")
    quote = _write(tmp_path, "h.csv", '"a"x,b\n1,2\n')
    with pytest.raises(InputError, match="malformed CSV"):
        import_paths(store, [quote], dataset="t")
    folder = tmp_path / "sweep"
    folder.mkdir()
    _write(folder, "good.csv", "problem,model,accuracy_pct_over_4_runs\n1,x,50\n")
    _write(folder, "broken.csv", "a,b\n1,2,3\n")
    with pytest.raises(InputError, match=r"broken\.csv:2"):
        import_paths(store, [folder])
    assert store.counts()["outcomes"] == 0
