"""Bulk imports: a large file in ponder's own columns goes to Parquet segments through Arrow,
and the store answers as if it had been imported row by row; re-imports, --replace,
conflicts, bad values and failed writes keep today's rules and lose nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ponder.analysis import load_curves, load_matrix
from ponder.builtin import builtin_folder
from ponder.columnar.catalog import Catalog, parquet_root
from ponder.errors import InputError, StoreError
from ponder.importers import import_into, import_paths
from ponder.store import Store
from ponder.store.export import export_outcomes

KEYS = ["run_id", "dataset", "problem_id", "model", "mode", "budget", "sample_idx"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in sweep exported to a CSV in ponder's own columns."""
    folder = tmp_path_factory.mktemp("export")
    with Store(folder / "sweep.sqlite") as store:
        import_paths(store, [builtin_folder()])
        export_outcomes(store, folder / "sweep.csv")
    return folder / "sweep.csv"


@pytest.fixture
def bulk(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("PONDER_BULK_IMPORT_BYTES", "0")  # every eligible file is bulk
    yield


def _frame(store: Store) -> pd.DataFrame:
    frame = store.outcomes_frame()
    return frame.sort_values(KEYS, na_position="first").reset_index(drop=True)


def _files(store_path: Path) -> list[str]:
    root = parquet_root(store_path)
    if not root.exists():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_bulk_rows_equal_the_row_by_row_import(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows_path, bulk_path = tmp_path / "rows.sqlite", tmp_path / "bulk.sqlite"
    with Store(rows_path) as rows:
        import_paths(rows, [exported])
        assert not _files(rows_path)  # under the threshold: row by row
        n_rows = len(_frame(rows))
    monkeypatch.setenv("PONDER_BULK_IMPORT_BYTES", "0")
    with Store(bulk_path) as store:
        (item,) = import_paths(store, [exported])
        assert item.result is not None and item.result.outcomes_added == n_rows
        assert store.query("SELECT COUNT(*) FROM outcomes") == [(0,)]  # all in segments
        assert store.counts() == Store(rows_path, readonly=True).counts()
        with Store(rows_path, readonly=True) as a:
            pd.testing.assert_frame_equal(_frame(store), _frame(a), check_exact=True)
            want = load_curves(a, n_boot=100)
            got = load_curves(store, n_boot=100)  # out of core
            for name in ("cells", "pass_at_k", "maj_at_k", "difficulty", "sweet_spots"):
                pd.testing.assert_frame_equal(getattr(got, name), getattr(want, name), obj=name)
            # The export carries no signal columns: compare the matrices without them.
            got_matrix = load_matrix(store, datasets=["arith"])
            want_matrix = load_matrix(a, datasets=["arith"])
            assert got_matrix.configs == want_matrix.configs
            assert np.array_equal(got_matrix.correct, want_matrix.correct, equal_nan=True)
            assert np.array_equal(got_matrix.tokens, want_matrix.tokens, equal_nan=True)
    with Catalog(bulk_path, readonly=True) as catalog:
        assert [s.dataset for s in catalog.segments()] == ["arith"]
        assert catalog.damaged == {}


def test_a_reimport_adds_nothing_and_another_version_needs_replace(
    exported: Path, tmp_path: Path, bulk: None
) -> None:
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        import_paths(store, [exported])
        files, rows = _files(path), _frame(store)
        (again,) = import_paths(store, [exported])
        assert again.unchanged and _files(path) == files  # skipped by its sha256
        changed = tmp_path / exported.name
        frame = pd.read_csv(exported)
        frame.loc[0, "correct"] = 1.0 - frame.loc[0, "correct"]
        frame.to_csv(changed, index=False)
        with pytest.raises(StoreError, match="already stored from a bulk import"):
            import_paths(store, [changed])  # the export names its runs: the same run ids
        pd.testing.assert_frame_equal(_frame(store), rows)
        (item,) = import_paths(store, [changed], replace=True)
        assert item.result is not None and item.result.outcomes_replaced == len(rows)
        now = _frame(store)
        assert len(now) == len(rows) and now["correct"].sum() != rows["correct"].sum()
        assert not set(files) & set(_files(path))  # the old segment is gone
    with Catalog(path, readonly=True) as catalog:
        assert len(catalog.segments()) == 1 and catalog.damaged == {}


def test_a_run_stored_in_segments_is_not_merged_without_replace(
    exported: Path, tmp_path: Path, bulk: None
) -> None:
    path = tmp_path / "s.sqlite"
    frame = pd.read_csv(exported)
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    frame.iloc[: len(frame) // 2].to_csv(first, index=False)
    frame.iloc[len(frame) // 2 :].to_csv(second, index=False)
    with Store(path) as store:
        import_paths(store, [first])
        before = _frame(store)
        with pytest.raises(StoreError, match="already stored from a bulk import"):
            import_paths(store, [second])
        pd.testing.assert_frame_equal(_frame(store), before)


def test_a_run_stored_row_by_row_keeps_its_rules(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.sqlite"
    frame = pd.read_csv(exported)
    first = tmp_path / "first.csv"
    frame.iloc[:100].to_csv(first, index=False)
    with Store(path) as store:
        import_paths(store, [first])  # row by row
        monkeypatch.setenv("PONDER_BULK_IMPORT_BYTES", "0")
        (item,) = import_paths(store, [exported])  # the same runs: row by row again
        assert any("row by row" in note for note in item.notes)
        assert not _files(path)
        assert item.result is not None and item.result.outcomes_added == len(frame) - 100


def test_a_bad_value_late_in_the_file_names_its_line_and_writes_nothing(
    exported: Path, tmp_path: Path, bulk: None
) -> None:
    path = tmp_path / "s.sqlite"
    bad = tmp_path / "bad.csv"
    frame = pd.read_csv(exported)
    frame["output_tokens"] = frame["output_tokens"].astype(object)
    frame.loc[len(frame) - 3, "output_tokens"] = "twelve"
    frame.to_csv(bad, index=False)
    with Store(path) as store:
        with pytest.raises(InputError, match=rf"bad\.csv:{len(frame) - 1}.*output_tokens"):
            import_paths(store, [bad])
        assert store.counts()["outcomes"] == 0 and store.counts()["runs"] == 0
    assert not _files(path)


def test_a_failed_write_lists_nothing_and_leaves_no_file(
    exported: Path, tmp_path: Path, bulk: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ponder.store.sqlite as sqlite_module

    def refuse(*args: object, **kwargs: object) -> None:
        raise StoreError("disk full")  # inside the transaction, before the listing

    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        monkeypatch.setattr(sqlite_module, "_insert_import", refuse)
        with pytest.raises(StoreError, match="disk full"):
            import_paths(store, [exported])
        assert store.counts() == {"runs": 0, "problems": 0, "outcomes": 0, "imports": 0}
    assert not _files(path)


def test_the_cli_imports_in_bulk_and_lists_it(exported: Path, tmp_path: Path, bulk: None) -> None:
    store = tmp_path / "s.sqlite"
    env = {**os.environ, "PONDER_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}

    def ponder(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "ponder", *args, "--store", str(store)]
        return subprocess.run(command, capture_output=True, text=True, env=env, check=False)

    imported = ponder("import", str(exported), "--json")
    assert imported.returncode == 0, imported.stderr
    listing = ponder("ls", "--json")
    assert listing.returncode == 0, listing.stderr
    (dataset,) = json.loads(listing.stdout)["datasets"]
    assert dataset["name"] == "arith" and dataset["outcomes"] == len(pd.read_csv(exported))
    assert _files(store)
    curves = ponder("curves", "--json")
    assert curves.returncode == 0, curves.stderr


def test_a_bad_second_file_removes_the_first_files_pending_segments(
    exported: Path, tmp_path: Path, bulk: None
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("problem_id,model,correct\np1,m,2\n")  # correct outside [0, 1]
    for path in (tmp_path / "new.sqlite", tmp_path / "old.sqlite"):
        if path.name == "old.sqlite":
            with Store(path) as store:  # an existing store takes the other code path
                import_paths(store, [builtin_folder()])
        with pytest.raises(InputError, match=r"bad\.csv:2"):
            import_into(path, [exported, bad])
        assert not _files(path)
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".{path.name}")]


def test_a_jsonl_file_gives_the_same_rows_as_its_csv(
    exported: Path, tmp_path: Path, bulk: None
) -> None:
    jsonl = tmp_path / "sweep.jsonl"
    frame = pd.read_csv(exported).astype(object)
    records = frame.where(frame.notna(), None).to_dict("records")  # floats round-trip exactly
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    frames = []
    for source in (exported, jsonl):
        path = tmp_path / f"{source.suffix[1:]}.sqlite"
        with Store(path) as store:
            import_paths(store, [source])
            assert _files(path) and store.query("SELECT COUNT(*) FROM outcomes") == [(0,)]
            frames.append(_frame(store).drop(columns="run_id"))  # labels carry the file hash
    pd.testing.assert_frame_equal(frames[1], frames[0], check_exact=True)


def test_one_run_from_two_files_is_refused_when_one_is_bulk(
    exported: Path, tmp_path: Path, bulk: None
) -> None:
    frame = pd.read_csv(exported)
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    frame.iloc[: len(frame) // 2].to_csv(first, index=False)
    frame.iloc[len(frame) // 3 :].to_csv(second, index=False)  # overlapping keys
    path = tmp_path / "s.sqlite"
    with pytest.raises(InputError, match=r"second\.csv.*comes from .*first\.csv"):
        import_into(path, [first, second])
    assert not path.exists() and not _files(path)
