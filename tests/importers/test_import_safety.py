"""Importer data safety: one command is one transaction, conflicts and corrupt values refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from ponder.errors import InputError, StoreError
from ponder.importers import import_paths
from ponder.store import Store

BASIC = "problem_id,model,correct\np1,m,1\np2,m,0\n"


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _rows(store: Store) -> list[tuple[object, ...]]:
    frame = store.outcomes_frame().astype(object)
    return [tuple(r) for r in frame.where(frame.notna(), None).itertuples(index=False)]


# -- one command, one transaction --------------------------------------------------------------


def test_a_run_conflict_in_the_second_file_keeps_nothing_and_names_the_file(
    tmp_path: Path, store: Store
) -> None:
    a = _write(tmp_path / "a.csv", BASIC)
    b = _write(tmp_path / "b.csv", "problem_id,model,correct,run_id\np1,m,1,old/m\n")
    old = _write(tmp_path / "old.csv", "problem_id,model,correct,run_id\np9,m,1,old/m\n")
    import_paths(store, [old], dataset="t", budget_kind="hard_cap")
    before = _rows(store)
    with pytest.raises(StoreError, match=r"b\.csv.*run 'old/m' is already stored"):
        import_paths(store, [a, b], dataset="t")
    assert _rows(store) == before  # a.csv was not kept either


def test_files_of_one_command_that_disagree_on_a_run(tmp_path: Path, store: Store) -> None:
    a = _write(tmp_path / "a.csv", "problem_id,model,correct,run_id,budget_kind\np1,m,1,r/m,none\n")
    b = _write(
        tmp_path / "b.csv", "problem_id,model,correct,run_id,budget_kind\np2,m,1,r/m,hard_cap\n"
    )
    with pytest.raises(InputError, match=r"b\.csv.*run 'r/m'.*a\.csv"):
        import_paths(store, [a, b], dataset="t")
    assert store.counts()["outcomes"] == 0


def test_a_failing_write_of_the_second_file_keeps_the_first(tmp_path: Path, store: Store) -> None:
    """A conflict that only the write sees (same key, other value) rolls back every file."""
    a = _write(tmp_path / "a.csv", "problem_id,model,correct,run_id\np1,m,1,r/m\n")
    b = _write(tmp_path / "b.csv", "problem_id,model,correct,run_id\np1,m,0,r/m\n")
    with pytest.raises(StoreError, match=r"b\.csv:2: .*correct=1.0, this file has 0.0"):
        import_paths(store, [a, b], dataset="t")
    assert store.counts() == {"runs": 0, "problems": 0, "outcomes": 0, "imports": 0}


# -- duplicate and corrected keys in preset files ----------------------------------------------

RBS_HEADER = (
    "model,model_hf_id,benchmark,item_id,seed,budget,n_new_tokens,reached_cap,has_answer,"
    "answer,gold,correct\n"
)


def _rbs(*rows: str) -> str:
    return RBS_HEADER + "".join(r + "\n" for r in rows)


def test_preset_file_with_a_conflicting_duplicate_key(tmp_path: Path, store: Store) -> None:
    path = _write(
        tmp_path / "rbs.csv",
        _rbs(
            "m1,org/m1,math500,p1,0,512,100,False,True,4,4,False",
            "m1,org/m1,math500,p2,0,512,100,False,True,4,4,True",
            "m1,org/m1,math500,p1,0,512,100,False,True,4,4,True",
        ),
    )
    with pytest.raises(InputError, match="duplicate key") as info:
        import_paths(store, [path])
    assert (info.value.path, info.value.line) == (str(path), 4)
    assert store.counts()["outcomes"] == 0


def test_duplicate_prompt_in_a_routellm_file(tmp_path: Path, store: Store) -> None:
    path = _write(
        tmp_path / "gsm8k_responses.csv",
        "prompt,a,b,a_response,b_response\nq one,1,0,x,y\nq two,1,1,x,y\nq one,0,0,x,y\n",
    )
    with pytest.raises(InputError, match="duplicate key") as info:
        import_paths(store, [path])
    assert info.value.line == 4


def test_corrected_preset_file_is_refused_then_replaced_on_request(
    tmp_path: Path, store: Store
) -> None:
    first = _rbs(
        "m1,org/m1,math500,p1,0,512,100,False,True,4,4,False",
        "m1,org/m1,math500,p2,0,512,100,False,True,4,4,True",
    )
    path = _write(tmp_path / "rbs.csv", first)
    import_paths(store, [path])
    corrected = first.replace("4,4,False", "4,4,True")
    _write(path, corrected)
    with pytest.raises(
        StoreError, match=r"rbs\.csv:2: .*correct=0\.0, this file has 1\.0.*--replace"
    ):
        import_paths(store, [path])
    assert store.outcomes_frame()["correct"].tolist() == [0.0, 1.0]
    results = import_paths(store, [path], replace=True)
    assert store.outcomes_frame()["correct"].tolist() == [1.0, 1.0]
    assert results[0].result is not None and results[0].result.outcomes_replaced == 2


# -- corrupt values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "line", "field", "message"),
    [
        ("nul.csv", "problem_id,model,correct\np1,m\x00x,1\n", 2, "model", "NUL"),
        (
            "nul.jsonl",
            '{"problem_id": "p1", "model": "m\\u0000x", "correct": 1}\n',
            1,
            "model",
            "NUL",
        ),
        (
            "big.csv",
            "problem_id,model,correct,output_tokens\np1,m,1,9007199254740993\n",
            2,
            "output_tokens",
            "not an integer",
        ),
        (
            "big.jsonl",
            '{"problem_id": "p1", "model": "m", "correct": 1, "budget": 9007199254740993}\n',
            1,
            "budget",
            "not an integer",
        ),
        (
            "inf.csv",
            "problem_id,model,correct,latency_s\np1,m,1,2\np2,m,1,inf\n",
            3,
            "latency_s",
            "not a number",
        ),
        (
            "nan.csv",
            "problem_id,model,correct,latency_s\np1,m,1,NaN\n",
            2,
            "latency_s",
            "not a number",
        ),
        (
            "inf.jsonl",
            '{"problem_id": "p1", "model": "m", "correct": 1, "latency_s": 1e400}\n',
            1,
            "latency_s",
            "not a number",
        ),
    ],
)
def test_corrupt_values_are_refused(
    tmp_path: Path, store: Store, name: str, content: str, line: int, field: str, message: str
) -> None:
    path = _write(tmp_path / name, content)
    with pytest.raises(InputError, match=message) as info:
        import_paths(store, [path], dataset="t")
    assert (info.value.path, info.value.line, info.value.field) == (str(path), line, field)
    assert store.counts()["outcomes"] == 0


def test_largest_exact_integer_is_kept_exactly(tmp_path: Path, store: Store) -> None:
    path = _write(
        tmp_path / "ok.csv", "problem_id,model,correct,output_tokens\np1,m,1,9007199254740992\n"
    )
    import_paths(store, [path], dataset="t")
    conn = store._conn
    assert conn.execute("SELECT output_tokens FROM outcomes").fetchone()[0] == 2**53


def test_nul_byte_in_a_preset_file(tmp_path: Path, store: Store) -> None:
    path = _write(
        tmp_path / "rbs.csv", _rbs("m1,org/m1,math500,p1,0,512,100,False,True,4\x00,4,False")
    )
    with pytest.raises(InputError, match="NUL") as info:
        import_paths(store, [path])
    assert (info.value.line, info.value.field) == (2, "answer")


# -- tracebacks and unclear messages -----------------------------------------------------------

HEADERS = {
    "rbs.csv": RBS_HEADER,
    "mmlu.csv": "model,question_id,pred,answer,correct,response_chars,response_words\n",
    "gsm8k_responses.csv": "prompt,a,b,a_response,b_response\n",
    "per_problem_accuracy.csv": "problem,model,accuracy_pct_over_4_runs\n",
    "mapped.csv": "problem_id,model,correct\n",
}


@pytest.mark.parametrize("name", sorted(HEADERS))
def test_header_only_files(tmp_path: Path, store: Store, name: str) -> None:
    path = _write(tmp_path / name, HEADERS[name])
    with pytest.raises(InputError, match="no data rows") as info:
        import_paths(store, [path], **({"dataset": "t"} if name == "mapped.csv" else {}))
    assert info.value.path == str(path)
    assert store.counts()["outcomes"] == 0


def test_invalid_utf8_names_line_and_byte_offset(tmp_path: Path, store: Store) -> None:
    data = b"problem_id,model,correct\np1,m,1\np2,m\xff\xfe,1\n"
    for name in ("bad.csv", "bad.jsonl"):
        content = data
        if name.endswith(".jsonl"):
            content = b'{"problem_id": "p1", "model": "m", "correct": 1}\n{"model": "\xff"}\n'
        path = _write(tmp_path / name, content)
        with pytest.raises(InputError, match=r"not UTF-8 .*byte offset \d+") as info:
            import_paths(store, [path], dataset="t")
        offset = content.index(b"\xff")
        assert info.value.line == content[:offset].count(b"\n") + 1
        assert f"byte offset {offset}" in str(info.value)


def test_csv_error_inside_a_multiline_record_names_the_faulty_line(
    tmp_path: Path, store: Store
) -> None:
    text = 'problem_id,model,correct,response_text\np1,m,1,"one\ntwo\nthree"x\n'
    path = _write(tmp_path / "ml.csv", text)
    with pytest.raises(InputError, match="malformed CSV") as info:
        import_paths(store, [path], dataset="t")
    assert info.value.line == 4  # where the stray character is, not where the record starts


# -- re-imports of the same source -------------------------------------------------------------

SWEEP = "item,llm,ok,extra_col,note\nq1,a,1,5,x\nq2,a,0,6,y\n"


def test_same_source_with_another_mapping_or_label_is_refused(tmp_path: Path, store: Store) -> None:
    path = _write(tmp_path / "sweep.csv", SWEEP)
    mapping = {"problem_id": "item", "model": "llm", "correct": "ok"}
    first = import_paths(store, [path], mapping=mapping, dataset="t")
    assert any("ignored" in n and "extra_col" in n and "note" in n for n in first[0].notes)
    before = _rows(store)
    corrected = {**mapping, "correct": "extra_col"}
    with pytest.raises(StoreError, match=r"sweep\.csv.*already imported.*--replace"):
        import_paths(store, [path], mapping={**mapping, "output_tokens": "extra_col"}, dataset="t")
    with pytest.raises(StoreError, match=r"sweep\.csv.*already imported.*--replace"):
        import_paths(store, [path], mapping=mapping, dataset="t", run="again")
    assert _rows(store) == before
    # --replace swaps the earlier import's runs for this one's, in one transaction.
    _write(path, SWEEP.replace("q1,a,1,5", "q1,a,1,1").replace("q2,a,0,6", "q2,a,0,0"))
    import_paths(store, [path], mapping=mapping, dataset="t", run="v2")
    with pytest.raises(StoreError, match="already imported"):
        import_paths(store, [path], mapping=corrected, dataset="t", run="fixed")
    import_paths(store, [path], mapping=corrected, dataset="t", run="fixed", replace=True)
    frame = store.outcomes_frame()
    # the first import (other content) stays; the replaced one (same content) is gone
    runs = sorted(set(frame["run_id"]))
    assert len(runs) == 2 and runs[0] == "fixed/a" and runs[1].startswith("sweep-")
    assert frame[frame["run_id"] == "fixed/a"]["correct"].tolist() == [1.0, 0.0]
    assert len(frame) == 4


def test_unchanged_reimport_is_short_cut_by_checksum(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path / "s.csv", BASIC)
    import_paths(store, [path], dataset="t")
    before = _rows(store)
    import ponder.importers as importers

    def no_parse(*args: object, **kwargs: object) -> object:
        raise AssertionError("an unchanged file must not be parsed again")

    monkeypatch.setattr(importers, "parse_table", no_parse)
    again = import_paths(store, [path], dataset="t")
    assert again[0].unchanged
    assert again[0].result is not None and again[0].result.outcomes_added == 0
    assert again[0].result.outcomes_read == 2
    assert _rows(store) == before


def test_known_dataset_name_with_foreign_problem_ids_warns(
    tmp_path: Path, store: Store, shared_data: Path
) -> None:
    import_paths(store, [shared_data / "reasoning_budget_sweep/reasoning_budget_sweep_aime.csv"])
    mine = _write(tmp_path / "mine.csv", "problem_id,model,correct\nmy-1,m,1\nmy-2,m,0\n")
    result = import_paths(store, [mine], dataset="aime24")
    notes = " ".join(result[0].notes)
    assert "aime24" in notes and "2 problem id(s)" in notes and "my-1" in notes
    own = _write(tmp_path / "own.csv", "problem_id,model,correct\nmy-1,m,1\nmy-3,m,0\n")
    ok = import_paths(store, [own], dataset="mine")
    assert not any("problem id" in n for n in ok[0].notes)


def test_known_dataset_from_problem_set_warns_on_an_empty_store(
    tmp_path: Path, store: Store, shared_data: Path
) -> None:
    mine = _write(tmp_path / "mine.csv", "problem_id,model,correct\nmy-1,m,1\n")
    result = import_paths(store, [mine], dataset="math500")
    assert any("math500" in n and "1 problem id(s)" in n for n in result[0].notes)


def test_a_new_version_of_a_file_under_its_default_label_is_not_counted_twice(
    tmp_path: Path, store: Store
) -> None:
    path = _write(tmp_path / "results.csv", BASIC)
    import_paths(store, [path], dataset="t")
    _write(path, BASIC + "p3,m,1\n")  # the same sweep with one more sample
    with pytest.raises(StoreError, match=r"results\.csv: another version .*--replace"):
        import_paths(store, [path], dataset="t")
    assert store.counts()["outcomes"] == 2
    import_paths(store, [path], dataset="t", replace=True)
    frame = store.outcomes_frame()
    assert sorted(frame["problem_id"]) == ["p1", "p2", "p3"]
    assert frame["run_id"].nunique() == 1
    # another sweep that happens to share the name: its own --run label keeps both
    _write(path, "problem_id,model,correct\nz1,m,0\n")
    import_paths(store, [path], dataset="t", run="other")
    assert store.counts()["outcomes"] == 4


def test_unchanged_files_in_a_folder_are_not_parsed_again(
    tmp_path: Path, store: Store, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "matharena_aime2025_I"
    folder.mkdir()
    for name in ("per_problem_accuracy.csv", "per_model_summary.csv"):
        (folder / name).write_bytes((shared_data / "matharena_aime2025_I" / name).read_bytes())
    import_paths(store, [folder])
    before = store.counts()
    import ponder.importers as importers

    parsed: list[str] = []
    real = importers.parse_table

    def counting(path: Path, data: bytes) -> object:
        parsed.append(path.name)
        return real(path, data)

    monkeypatch.setattr(importers, "parse_table", counting)
    again = import_paths(store, [folder])
    assert [item.unchanged for item in again] == [True]
    assert parsed == ["per_model_summary.csv"]  # only the file that is not an import
    assert store.counts()["outcomes"] == before["outcomes"]
