"""The columnar CSV reader gives exactly what the strict reader gives, lines included."""

from __future__ import annotations

from pathlib import Path

import pytest

from ponder.errors import InputError
from ponder.importers import import_paths
from ponder.store import Store
from ponder.tables import read_csv

PLAIN = [
    "a,b,c\n1,x,\n2,y,z\n",
    "a,b,c\r\n1,x,\r\n\r\n2,y,z\r\n",  # CRLF with a blank line
    "\ufeff a , b ,c\n1,x,\n\n\n3,,z",  # BOM, padded header, blank lines, no final newline
    "only\nv1\n\nv2\n",
    "a,b\n" + "".join(f"p{i},{i}\n" for i in range(2000)),
]


def _as_lists(path: Path, data: bytes, fast: bool) -> tuple[list[str], list[list[str]], list[int]]:
    table = read_csv(path, data, fast=fast)
    frame = table.frame.astype(str)
    return table.columns, frame.to_numpy().tolist(), [int(x) for x in table.lines]


@pytest.mark.parametrize("text", PLAIN)
def test_fast_and_strict_readers_agree(tmp_path: Path, text: str) -> None:
    path = tmp_path / "f.csv"
    data = text.encode("utf-8")
    path.write_bytes(data)
    assert read_csv(path, data)._lines is None  # the columnar path was taken
    fast = _as_lists(path, data, True)
    strict = _as_lists(path, data, False)
    assert fast == strict
    # the lines by hand for the CRLF case: rows on lines 2 and 4
    if text.startswith("a,b,c\r\n"):
        assert fast[2] == [2, 4]


def test_errors_from_the_fast_path_name_the_right_line(tmp_path: Path, store: Store) -> None:
    text = "problem_id,model,correct\r\np1,m,1\r\n\r\n\r\np2,m,maybe\r\n"
    path = tmp_path / "crlf.csv"
    path.write_bytes(text.encode())
    with pytest.raises(InputError) as info:
        import_paths(store, [path], dataset="t")
    assert (info.value.line, info.value.field) == (5, "correct")
    short = tmp_path / "short.csv"
    short.write_text("problem_id,model,correct\np1,m,1\n\np2,m\n")
    with pytest.raises(InputError, match="expected 3 fields, found 2") as info:
        import_paths(store, [short], dataset="t")
    assert info.value.line == 4


def test_recorded_files_import_the_same_through_either_reader(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recorded files without quotes take the columnar reader: same stored rows."""
    import sqlite3

    import ponder.tables as tables

    files = [
        shared_data / "reasoning_budget_sweep/reasoning_budget_sweep_aime.csv",
        shared_data / "mmlu_pro_math/mmlu_pro_math_per_model.csv",
        shared_data / "matharena_aime2025_I/per_problem_accuracy.csv",
    ]

    def dump(path: Path) -> dict[str, list[str]]:
        conn = sqlite3.connect(path)
        out = {
            t: sorted(map(repr, conn.execute(f"SELECT * FROM {t}")))
            for t in ("outcomes", "problems")
        }
        out["runs"] = sorted(
            map(repr, conn.execute("SELECT run_id, model, backend, source, budget_kind FROM runs"))
        )
        conn.close()
        return out

    with Store(tmp_path / "fast.sqlite") as store:
        import_paths(store, files)
    monkeypatch.setattr(tables, "_fast_csv", lambda path, data: None)
    with Store(tmp_path / "strict.sqlite") as store:
        import_paths(store, files)
    fast, strict = dump(tmp_path / "fast.sqlite"), dump(tmp_path / "strict.sqlite")
    assert len(fast["outcomes"]) > 40_000
    assert fast == strict
