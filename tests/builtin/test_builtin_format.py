"""The sweep folder format: export a store's sweep, import it elsewhere, exactly; checksums
guard every file; bad folders fail before anything is written; the shipped folder is intact.

The sweep here runs on the fake backend, whose figures are worked out by hand in
tests/sweep; expected values come from the source store read with plain sqlite3 and from the
Parquet files read with pyarrow, never from the reader under test.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ponder.builtin import FILES, builtin_folder, load_builtin, read_manifest
from ponder.builtin.export import export_sweep
from ponder.errors import ChecksumError, InputError, StoreError
from ponder.importers import import_into, import_paths
from ponder.store import Store
from ponder.sweep import parse_spec, run_sweep

# Three problems whose true answer (the fake's rule: the sum of the integers) is the gold.
PROBLEMS = [
    ("a", "Add 30 and 40.", "70", 1),
    ("b", "Add 10, 20 and 5.", "35", 2),
    ("c", "Add 1, 2, 3, 4 and 5.", "15", 3),
]
LADDER = [8, 16, 32, 64, 128]
SAMPLES = 2  # sampled chains, besides one greedy chain


def _spec(folder: Path, name: str = "toy") -> Any:
    problems = folder / "probs.jsonl"
    problems.write_text(
        "".join(
            json.dumps({"problem_id": p, "text": t, "gold": g, "level": lv}) + "\n"
            for p, t, g, lv in PROBLEMS
        )
    )
    return parse_spec(
        {
            "name": name,
            "problems": [{"file": str(problems), "dataset": "toy"}],
            "models": [
                {"name": "fake-a", "backend": "fake", "options": {"tokens_per_number": 20}},
                {"name": "fake-b", "backend": "fake", "options": {"tokens_per_number": 30}},
            ],
            "modes": ["think", "no-think"],
            "budgets": {"ladder": LADDER},
            "reserve": 8,
            "sampling": [
                {"temperature": 0},
                {"temperature": 0.8, "top_p": 0.95, "samples": SAMPLES},
            ],
            "seed": 0,
            "concurrency": 2,
            "entropy": True,
        },
        source=str(folder / "spec.yaml"),
    )


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding one finished fake sweep (read-only for the tests)."""
    folder = tmp_path_factory.mktemp("swept")
    with Store(folder / "source.sqlite") as store:
        summary = run_sweep(_spec(folder), store, backoff_s=0)
    assert summary.errors == 0
    return folder / "source.sqlite"


@pytest.fixture
def exported(swept: Path, tmp_path: Path) -> Path:
    out = tmp_path / "sweep"
    export_sweep(swept, "toy", out)
    return out


def _raw(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return [tuple(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def _counts(path: Path) -> dict[str, int]:
    tables = ("runs", "problems", "outcomes", "chains", "imports")
    return {t: _raw(path, f"SELECT COUNT(*) FROM {t}")[0][0] for t in tables}


def test_round_trip_is_exact(swept: Path, exported: Path, tmp_path: Path) -> None:
    with Store(tmp_path / "fresh.sqlite") as fresh:
        items = import_paths(fresh, [exported])
        assert items[0].preset == "builtin"
        got = fresh.outcomes_frame(signals=True, include_text=True)
    with Store(swept, readonly=True) as source:
        want = source.outcomes_frame(signals=True, include_text=True)
    # Rows by hand: 3 problems x 2 models x (1 greedy + 2 sampled) x (5 rungs + 1 direct).
    assert len(want) == 3 * 2 * (1 + SAMPLES) * (len(LADDER) + 1)
    pd.testing.assert_frame_equal(got, want)
    # Every stored column, signals and extra JSON included, byte for byte in SQLite.
    every = "SELECT * FROM outcomes ORDER BY rowid"
    assert _raw(tmp_path / "fresh.sqlite", every) == _raw(swept, every)
    chains = "SELECT * FROM chains ORDER BY chain_id"
    assert _raw(tmp_path / "fresh.sqlite", chains) == _raw(swept, chains)
    assert len(_raw(swept, chains)) == 3 * 2 * (1 + SAMPLES)  # one chain per think item
    problems = "SELECT * FROM problems ORDER BY dataset, problem_id"
    assert _raw(tmp_path / "fresh.sqlite", problems) == _raw(swept, problems)
    runs = "SELECT run_id, model, backend, source, budget_kind, settings_json FROM runs"
    assert sorted(_raw(tmp_path / "fresh.sqlite", runs)) == sorted(_raw(swept, runs))


def test_entropies_are_float16_bytes_of_the_chain(exported: Path, swept: Path) -> None:
    chains = pq.read_table(exported / "chains.parquet").to_pylist()
    stored = dict(_raw(swept, "SELECT chain_id, entropies FROM chains"))
    for chain in chains:
        assert chain["entropies"] == stored[chain["chain_id"]]
        assert len(chain["entropies"]) == 2 * chain["tokens"]  # one float16 per token


def test_manifest_counts_and_checksums(exported: Path, swept: Path) -> None:
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["format"] == "ponder-sweep" and manifest["sweep"] == "toy"
    assert manifest["spec"]["name"] == "toy"
    for name in FILES:
        raw = (exported / name).read_bytes()
        assert manifest["files"][name]["sha256"] == hashlib.sha256(raw).hexdigest()
        assert manifest["files"][name]["bytes"] == len(raw)
        assert manifest["files"][name]["rows"] == pq.read_metadata(exported / name).num_rows
        assert pq.read_metadata(exported / name).row_group(0).column(0).compression == "ZSTD"
    counts = manifest["counts"]
    assert counts["outcomes"] == _raw(swept, "SELECT COUNT(*) FROM outcomes")[0][0] == 108
    assert counts["chains"] == 18 and counts["problems"] == 3 and counts["runs"] == 8
    assert counts["work_items_done"] == 3 * 2 * 2 * (1 + SAMPLES)
    assert counts["work_items_planned"] is None  # problems from a file: not counted
    assert counts["outcomes_per_model_mode"]["fake-a"] == {
        "no-think": 3 * SAMPLES,
        "no-think-greedy": 3,
        "think": 3 * SAMPLES * len(LADDER),
        "think-greedy": 3 * len(LADDER),
    }


def test_import_is_idempotent(exported: Path, tmp_path: Path) -> None:
    store_path = tmp_path / "s.sqlite"
    with Store(store_path) as store:
        first = import_paths(store, [exported])[0]
        assert first.result is not None and first.result.outcomes_added == 108
        again = import_paths(store, [exported])[0]
        assert again.unchanged and again.result is not None and again.result.outcomes_added == 0
        # A copy elsewhere has the same manifest: skipped by its sha256 as well.
        copy = tmp_path / "copy"
        shutil.copytree(exported, copy)
        assert import_paths(store, [copy])[0].unchanged
    # Another manifest (a re-export of the same rows) is read: every row is already stored
    # with the same values, so nothing is added.
    manifest = copy / "manifest.json"
    manifest.write_text(manifest.read_text() + "\n")
    with Store(store_path) as store:
        third = import_paths(store, [copy])[0]
        assert not third.unchanged and third.result is not None
        assert third.result.outcomes_added == 0
    assert _counts(store_path)["outcomes"] == 108 and _counts(store_path)["chains"] == 18


def test_corrupted_file_is_a_checksum_error_and_writes_nothing(
    exported: Path, tmp_path: Path
) -> None:
    damaged = exported / "chains.parquet"
    raw = bytearray(damaged.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    store_path = tmp_path / "s.sqlite"
    with pytest.raises(ChecksumError, match=r"chains\.parquet: sha256 .* does not match"):
        import_into(store_path, [exported])
    assert not store_path.exists()  # a new store is never created for bad input
    with Store(store_path) as store, pytest.raises(ChecksumError):
        import_paths(store, [exported])
    assert _counts(store_path) == dict.fromkeys(("runs", "problems", "outcomes", "chains"), 0) | {
        "imports": 0
    }


def test_one_transaction_with_other_files(exported: Path, tmp_path: Path) -> None:
    """A sweep folder and a bad file in one import: nothing at all is written."""
    bad = tmp_path / "bad.csv"
    bad.write_text("problem_id,model,correct\nq1,m,yes\nq2,m,maybe\n")
    store_path = tmp_path / "s.sqlite"
    with Store(store_path) as store, pytest.raises(InputError, match=r"bad\.csv:3.*'correct'"):
        import_paths(store, [exported, bad], dataset="x")
    assert _counts(store_path)["outcomes"] == 0 and _counts(store_path)["chains"] == 0


def _rewrite(folder: Path, name: str, table: pa.Table) -> None:
    """Replace one file and its checksum, as a careless hand edit would."""
    pq.write_table(table, folder / name, compression="zstd")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][name]["sha256"] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_bad_folders_name_the_file_line_and_field(exported: Path, tmp_path: Path) -> None:
    outcomes = pq.read_table(exported / "outcomes.parquet")
    correct = outcomes.column("correct").to_pylist()
    correct[4] = 2.0
    index = outcomes.column_names.index("correct")
    _rewrite(
        exported,
        "outcomes.parquet",
        outcomes.set_column(index, "correct", pa.array(correct, pa.float64())),
    )
    with pytest.raises(InputError, match=r"outcomes\.parquet:5, field 'correct': 2\.0"):
        load_builtin(exported)
    _rewrite(exported, "outcomes.parquet", outcomes.drop_columns(["rung"]))
    with pytest.raises(InputError, match=r"outcomes\.parquet, field 'rung'"):
        load_builtin(exported)
    manifest = json.loads((exported / "manifest.json").read_text())
    (exported / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(InputError, match=r"manifest\.json, field 'format_version'"):
        read_manifest(exported)


def test_export_unknown_sweep_names_the_known_ones(swept: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no sweep 'nope' in this store; sweeps in it: toy"):
        export_sweep(swept, "nope", tmp_path / "o")
    assert not (tmp_path / "o").exists()
    with pytest.raises(StoreError, match="no store"):
        export_sweep(tmp_path / "missing.sqlite", "toy", tmp_path / "o")


def test_export_never_replaces_a_folder_that_is_not_a_sweep(swept: Path, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a sweep folder"):
        export_sweep(swept, "toy", precious)
    assert (precious / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]


def test_shipped_sweep_is_intact_and_small() -> None:
    folder = builtin_folder()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(p.name for p in folder.iterdir()) == sorted([*FILES, "manifest.json"])
    for name in FILES:
        raw = (folder / name).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == manifest["files"][name]["sha256"]
        assert pq.read_metadata(folder / name).num_rows == manifest["files"][name]["rows"]
    assert sum(len((folder / n).read_bytes()) for n in FILES) < 8_000_000
    outcomes = pq.read_table(folder / "outcomes.parquet").to_pandas()
    assert len(outcomes) == manifest["counts"]["outcomes"]
    # Both local models of the protocol, each with think-ladder rows at several budgets.
    assert set(outcomes["model"]) == {"qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"}
    think = outcomes[outcomes["budget"].notna()]
    assert think.groupby("model")["budget"].nunique().min() >= 2
    # Nothing machine-specific in the shipped manifest.
    text = (folder / "manifest.json").read_text()
    assert "/work/" not in text and "/home/" not in text and "/tmp/" not in text


def test_a_changed_signal_is_a_conflict_not_kept(exported: Path, tmp_path: Path) -> None:
    store_path = tmp_path / "s.sqlite"
    with Store(store_path) as store:
        import_paths(store, [exported])
    outcomes = pq.read_table(exported / "outcomes.parquet")
    probs = outcomes.column("answer_prob").to_pylist()
    row = next(i for i, p in enumerate(probs) if p is not None)
    probs[row] = 0.123
    index = outcomes.column_names.index("answer_prob")
    _rewrite(
        exported,
        "outcomes.parquet",
        outcomes.set_column(index, "answer_prob", pa.array(probs, pa.float64())),
    )
    before = _raw(store_path, "SELECT * FROM outcomes ORDER BY rowid")
    with (
        Store(store_path) as store,
        pytest.raises(StoreError, match=r"already stored with answer_prob=.*has 0\.123"),
    ):
        import_paths(store, [exported])
    assert _raw(store_path, "SELECT * FROM outcomes ORDER BY rowid") == before
    assert _counts(store_path)["imports"] == 1


def test_planned_items_by_hand() -> None:
    from ponder.builtin.export import planned_items

    spec = json.loads((builtin_folder() / "manifest.json").read_text())["spec"]
    # arith-v1: 4 levels x 40 problems, 2 models, think (one ladder) + no-think, 1 + 3 samples.
    assert spec["problems"][0]["options"]["levels"] == [1, 2, 3, 4]
    assert planned_items(spec) == 4 * 40 * 2 * (1 + 1) * (1 + 3) == 2560
    forced = {
        "problems": [{"kind": "generated", "options": {"levels": [1, 2], "per_level": 3}}],
        "models": [{"name": "m"}],
        "modes": ["think"],
        "strategies": [{"kind": "forced", "budgets": [8]}, {"kind": "forced", "budgets": [16]}],
        "sampling": [{"samples": 2}],
    }
    assert planned_items(forced) == 6 * 1 * 2 * 2
    assert planned_items({**forced, "problems": [{"kind": "file", "path": "x.jsonl"}]}) is None


def test_replace_swaps_rows_and_chains_of_a_changed_sweep(exported: Path, tmp_path: Path) -> None:
    """`--replace` with a corrected folder: the runs' rows AND chains are replaced in one
    transaction (a chain references its run, so it cannot be left behind)."""
    store_path = tmp_path / "s.sqlite"
    with Store(store_path) as store:
        import_paths(store, [exported])
    chains = pq.read_table(exported / "chains.parquet")
    texts = chains.column("text").to_pylist()
    texts[0] = "a corrected chain"
    index = chains.column_names.index("text")
    _rewrite(exported, "chains.parquet", chains.set_column(index, "text", pa.array(texts)))
    with Store(store_path) as store:
        with pytest.raises(StoreError, match="already stored with other contents"):
            import_paths(store, [exported])
        import_paths(store, [exported], replace=True)
    stored = dict(_raw(store_path, "SELECT chain_id, text FROM chains"))
    assert stored[chains.column("chain_id")[0].as_py()] == "a corrected chain"
    assert len(stored) == 18 and _counts(store_path)["outcomes"] == 108


def _partial(swept: Path, path: Path, where: str) -> Path:
    """A copy of the finished sweep with the rows (and chains) matching `where` deleted."""
    source, copy = sqlite3.connect(swept), sqlite3.connect(path)
    source.backup(copy)
    copy.execute(
        f"DELETE FROM chains WHERE chain_id IN (SELECT chain_id FROM outcomes WHERE {where})"
    )
    copy.execute(f"DELETE FROM outcomes WHERE {where}")
    copy.commit()
    source.close()
    copy.close()
    return path


def test_balanced_export_keeps_every_problem_and_the_slots_all_models_reached(
    swept: Path, tmp_path: Path
) -> None:
    """A snapshot where model fake-b has not reached problem c's sample 1 yet (a sampled pass
    under way): the balanced export keeps all three problems and drops sample 1 everywhere,
    since power comes from problems (rows, chains and runs alike)."""
    partial = _partial(
        swept,
        tmp_path / "partial.sqlite",
        "model = 'fake-b' AND problem_id = 'c' AND sample_idx = 1",
    )
    manifest = export_sweep(partial, "toy", tmp_path / "b", balanced=True)
    outcomes = pq.read_table(tmp_path / "b" / "outcomes.parquet").to_pandas()
    assert sorted(set(outcomes["problem_id"])) == ["a", "b", "c"]
    assert 1 not in set(outcomes["sample_idx"])
    assert len(outcomes) == 3 * 2 * SAMPLES * (len(LADDER) + 1)
    chains = pq.read_table(tmp_path / "b" / "chains.parquet").to_pandas()
    thinking = outcomes[outcomes["budget"].notna()]  # no-think answers have no chain text
    assert set(chains["chain_id"]) == set(thinking["chain_id"])
    runs = pq.read_table(tmp_path / "b" / "runs.parquet").to_pandas()
    assert set(runs["run_id"]) == set(outcomes["run_id"])
    counts = manifest["counts"]
    assert counts["problems_dropped_unbalanced"] == 0 and counts["balanced"] is True
    assert {slot[1] for slot in counts["slots_dropped_unbalanced"]} == {1}
    # Unbalanced, everything stored is kept.
    whole = export_sweep(partial, "toy", tmp_path / "w")
    assert whole["counts"]["problems"] == 3 and whole["counts"]["balanced"] is False


def test_balanced_export_drops_problems_when_no_slot_is_complete(
    swept: Path, tmp_path: Path
) -> None:
    """fake-b has not reached problem c at all: no slot is complete on every problem, so the
    balanced export keeps a and b only, with every slot."""
    partial = _partial(swept, tmp_path / "p.sqlite", "model = 'fake-b' AND problem_id = 'c'")
    manifest = export_sweep(partial, "toy", tmp_path / "b", balanced=True)
    outcomes = pq.read_table(tmp_path / "b" / "outcomes.parquet").to_pandas()
    assert sorted(set(outcomes["problem_id"])) == ["a", "b"]
    assert len(outcomes) == 2 * 2 * (1 + SAMPLES) * (len(LADDER) + 1)
    chains = pq.read_table(tmp_path / "b" / "chains.parquet").to_pandas()
    assert sorted(set(chains["problem_id"])) == ["a", "b"] and len(chains) == 2 * 2 * 3
    assert manifest["counts"]["problems_dropped_unbalanced"] == 1
    assert manifest["counts"]["slots_dropped_unbalanced"] == []
