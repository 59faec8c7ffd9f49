"""A store whose rows are partly in Parquet segments answers as if they were all in SQLite:
the outcome frame, the curves (out of core) and the policies' matrix are equal to those of
the same rows kept in SQLite, on the built-in sweep and on recorded datasets; a damaged
segment is a one-line error naming it."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

import pandas as pd
import pytest
from columnar_helpers import recorded_sources
from test_columnar_matrix import assert_same_matrix

from ponder.analysis import load_curves, load_matrix
from ponder.builtin import builtin_folder
from ponder.columnar.catalog import Catalog
from ponder.columnar.segments import segment_table
from ponder.columnar.snapshot import SNAPSHOTS_DIR, store_snapshot
from ponder.errors import StoreError
from ponder.importers import import_paths
from ponder.store import Store

TABLES = ("cells", "sweet_spots", "pass_at_k", "maj_at_k", "difficulty", "derivations")
KEYS = ["run_id", "dataset", "problem_id", "model", "mode", "budget", "sample_idx"]
# In segments: the built-in sweep's dataset and two recorded ones; the rest stays in SQLite.
MOVED = ("arith", "aime25", "gsm8k")


def move_to_segments(path: Path, datasets: Sequence[str]) -> None:
    """The rows of ``datasets`` out of SQLite into segments, in one transaction (as a bulk
    import leaves them: in segments only)."""
    with Store(path) as store:
        frame = store.outcomes_frame(
            datasets=list(datasets), signals=True, include_text=True, experiments=True
        )
    marks = ", ".join("?" for _ in datasets)

    def delete(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM chains WHERE dataset IN (" + marks + ")", list(datasets))
        conn.execute(f"DELETE FROM outcomes WHERE dataset IN ({marks})", list(datasets))

    with Catalog(path) as catalog:
        catalog.publish(segment_table(frame), also=delete)


@pytest.fixture(scope="module")
def stores(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same rows twice: all in SQLite, and with MOVED's rows in segments."""
    folder = tmp_path_factory.mktemp("stores")
    plain = folder / "plain.sqlite"
    with Store(plain) as store:
        import_paths(store, [builtin_folder()])
        import_paths(store, recorded_sources(shared_data))
    mixed = folder / "mixed" / "store.sqlite"
    mixed.parent.mkdir()
    shutil.copy(plain, mixed)
    move_to_segments(mixed, MOVED)
    return plain, mixed


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(KEYS, na_position="first").reset_index(drop=True)


def test_rows_moved_and_nothing_else(stores: tuple[Path, Path]) -> None:
    plain, mixed = stores
    with Store(plain, readonly=True) as a, Store(mixed, readonly=True) as b:
        assert not a.has_segments() and b.has_segments()
    with Store(mixed) as store:
        in_sqlite = {r[0] for r in store.query("SELECT DISTINCT dataset FROM outcomes")}
    assert in_sqlite.isdisjoint(MOVED) and in_sqlite  # both places hold rows
    with Catalog(mixed, readonly=True) as catalog:
        assert catalog.datasets() == sorted(MOVED)


@pytest.mark.parametrize(
    "options",
    [
        {"signals": True},
        {},
        {"datasets": ["arith", "math500"]},
        {"models": ["qwen2.5-coder-0.5b", "gpt-4-1106-preview"]},
        {"experiments": True, "include_text": True},
    ],
    ids=["signals", "default", "datasets", "models", "text"],
)
def test_outcome_frame_is_the_same(stores: tuple[Path, Path], options: dict[str, object]) -> None:
    plain, mixed = stores
    with Store(plain) as a, Store(mixed) as b:
        want, got = a.outcomes_frame(**options), b.outcomes_frame(**options)  # type: ignore[arg-type]
    assert len(want) > 0 and list(got.columns) == list(want.columns)
    if "models" in options:
        assert set(want["model"]) == set(options["models"])  # type: ignore[call-overload]
    pd.testing.assert_frame_equal(_sorted(got), _sorted(want), check_exact=True)


def test_curves_out_of_core_equal_the_frame_path(stores: tuple[Path, Path]) -> None:
    plain, mixed = stores
    datasets = ["arith", "gsm8k", "math500"]  # SQLite and segments together
    with Store(plain) as a, Store(mixed) as b:
        want = load_curves(a, datasets=datasets, derive=False, n_boot=200)
        got = load_curves(b, datasets=datasets, derive=False, n_boot=200)
        # No hard caps in the built-in sweep: derive=True takes the columnar path too.
        builtin_want = load_curves(a, datasets=["arith"], n_boot=200)
        builtin_got = load_curves(b, datasets=["arith"], n_boot=200)
    assert set(want.cells["dataset"]) == set(datasets)
    for name in TABLES:
        pd.testing.assert_frame_equal(
            getattr(got, name), getattr(want, name), check_exact=True, obj=name
        )
        pd.testing.assert_frame_equal(
            getattr(builtin_got, name), getattr(builtin_want, name), check_exact=True, obj=name
        )


def test_hard_caps_to_derive_take_the_frame_path(stores: tuple[Path, Path]) -> None:
    plain, mixed = stores
    with Store(plain) as a, Store(mixed) as b:
        want = load_curves(a, datasets=["aime25"], n_boot=100)
        got = load_curves(b, datasets=["aime25"], n_boot=100)
    assert want.cells["derived"].any()  # the recorded hard caps are extended
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(got, name), getattr(want, name), obj=name)


@pytest.mark.parametrize("dataset", ["arith", "gsm8k", "aime25", "math500"])
def test_policy_matrix_is_the_same(stores: tuple[Path, Path], dataset: str) -> None:
    plain, mixed = stores
    with Store(plain) as a, Store(mixed) as b:
        assert_same_matrix(load_matrix(b, datasets=[dataset]), load_matrix(a, datasets=[dataset]))


def test_snapshot_holds_both_places_and_goes_away(stores: tuple[Path, Path]) -> None:
    _, mixed = stores
    with store_snapshot(mixed, ["arith", "math500"]) as root:
        folders = sorted(p.name for p in (root / "outcomes").iterdir())
        assert folders == ["dataset=arith", "dataset=math500"]
        assert root.parent.name == SNAPSHOTS_DIR
    assert not root.exists()


def test_a_damaged_segment_is_named_and_nothing_changes(
    stores: tuple[Path, Path], tmp_path: Path
) -> None:
    _, mixed = stores
    copy = tmp_path / "store.sqlite"
    shutil.copy(mixed, copy)
    shutil.copytree(mixed.parent / "store.sqlite.parquet", tmp_path / "store.sqlite.parquet")
    with Catalog(copy, readonly=True) as catalog:
        victim = catalog.root / catalog.segments(["gsm8k"])[0].path
    victim.write_bytes(victim.read_bytes()[:-100])
    with Store(copy) as store:
        with pytest.raises(StoreError, match=str(victim.name)):
            store.outcomes_frame()
        with pytest.raises(StoreError, match=str(victim.name)):
            load_curves(store, derive=False, n_boot=50)
        with pytest.raises(StoreError, match=str(victim.name)):
            load_matrix(store, datasets=["gsm8k"])
        # Another dataset's analysis is not affected.
        assert len(load_matrix(store, datasets=["arith"]).configs) > 0


def test_listing_and_name_checks_count_segment_rows(stores: tuple[Path, Path]) -> None:
    from ponder.cli._common import check_names
    from ponder.cli.ls_cmd import inventory
    from ponder.errors import InputError

    plain, mixed = stores
    with Store(plain) as a, Store(mixed) as b:
        want, got = inventory(a), inventory(b)
        for key in ("store",):
            want.pop(key), got.pop(key)
        assert got == want
        assert {d["name"] for d in got["datasets"]} >= set(MOVED)
        check_names(b, datasets=["gsm8k"], models=["gpt-4-1106-preview"])  # in segments only
        with pytest.raises(InputError, match="no outcomes for model"):
            check_names(b, datasets=["arith"], models=["gpt-4-1106-preview"])
        counts = dict(((d, n) for d, n in b.outcome_counts(["dataset"])))
        assert counts == dict(a.outcome_counts(["dataset"]))
        with pytest.raises(ValueError, match="not outcome columns"):
            b.outcome_counts(["dataset; DROP TABLE outcomes"])


def test_policy_evaluation_finds_the_same_datasets(stores: tuple[Path, Path]) -> None:
    from ponder.analysis import evaluate_policies

    plain, mixed = stores
    options = {"families": ["sweet_spot", "router"], "folds": 2, "n_boot": 50}
    with Store(plain) as a, Store(mixed) as b:
        want = evaluate_policies(a, datasets=["arith", "gsm8k", "aime25"], **options)  # type: ignore[arg-type]
        got = evaluate_policies(b, datasets=["arith", "gsm8k", "aime25"], **options)  # type: ignore[arg-type]
    # gsm8k's recorded responses carry no token counts: skipped by both paths.
    assert [name for name, _ in got] == [name for name, _ in want] == ["aime25", "arith"]
    for (_, g), (_, w) in zip(got, want, strict=True):
        pd.testing.assert_frame_equal(g.points, w.points, check_exact=True)


def test_compacted_rows_are_read_once_before_and_after_a_delete(tmp_path: Path) -> None:
    from ponder.columnar.compaction import compact

    plain, compacted = tmp_path / "plain.sqlite", tmp_path / "compacted.sqlite"
    with Store(plain) as store:
        import_paths(store, [builtin_folder()])
    with closing(sqlite3.connect(plain)) as conn, conn:  # a claims experiment's rows
        run = conn.execute("SELECT run_id FROM runs ORDER BY run_id LIMIT 1").fetchone()[0]
        runs_columns = [r[1] for r in conn.execute("PRAGMA table_info(runs)")]
        out_columns = [r[1] for r in conn.execute("PRAGMA table_info(outcomes)")]
        fresh = ["'claims/test/' || run_id" if c == "run_id" else c for c in runs_columns]
        conn.execute(
            f"INSERT INTO runs ({', '.join(runs_columns)}) SELECT {', '.join(fresh)} "
            "FROM runs WHERE run_id = ?",
            (run,),
        )
        fresh = ["'claims/test/' || run_id" if c == "run_id" else c for c in out_columns]
        conn.execute(
            f"INSERT INTO outcomes ({', '.join(out_columns)}) SELECT {', '.join(fresh)} "
            "FROM outcomes WHERE run_id = ?",
            (run,),
        )
    shutil.copy(plain, compacted)
    assert compact(compacted).rows > 0

    def same(claims: bool) -> None:
        with Store(plain) as a, Store(compacted) as b:
            want, got = a.outcomes_frame(signals=True), b.outcomes_frame(signals=True)
            pd.testing.assert_frame_equal(_sorted(got), _sorted(want), check_exact=True)
            assert_same_matrix(
                load_matrix(b, datasets=["arith"]), load_matrix(a, datasets=["arith"])
            )
            assert sorted(b.outcome_counts(["run_id"])) == sorted(a.outcome_counts(["run_id"]))
            held = any(r.startswith("claims/") for r, _ in b.outcome_counts(["run_id"]))
            assert held == claims
            want_curves = load_curves(a, n_boot=100)
            got_curves = load_curves(b, n_boot=100)  # out of core
            for name in TABLES:
                pd.testing.assert_frame_equal(
                    getattr(got_curves, name), getattr(want_curves, name), obj=name
                )

    same(claims=True)
    with Store(plain) as store:
        last = store.query("SELECT run_id FROM outcomes ORDER BY rowid DESC LIMIT 1")[0][0]
    for path in (plain, compacted):  # the run holding the top rowids: SQLite reuses them
        with closing(sqlite3.connect(path)) as conn, conn:
            conn.execute("DELETE FROM outcomes WHERE run_id = ?", (last,))
    assert last.startswith("claims/")
    same(claims=False)  # the compaction segments are stale: ignored until the next compaction
    assert compact(compacted).rows > 0
    same(claims=False)
