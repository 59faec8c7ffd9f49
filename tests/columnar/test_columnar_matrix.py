"""The outcome matrix from Parquet segments equals ``OutcomeMatrix.from_frame`` of the same
rows: same problems (ids, levels, subjects, text) and configurations in the same order, and
every array (correct, cost, tokens, answer codes, signals) equal with NaNs in the same places;
and a policy evaluation on it gives the same summary. On the built-in sweep (with ladder
signals and every cost unit), on the recorded datasets and on rows made awkward on purpose
(ties in ``sample_idx`` across runs and segment files, answers without text, answers that
normalize to nothing or alike, unknown tokens and budgets, a model filter)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from columnar_helpers import recorded_sources, synthetic_frame

from ponder.analysis import load_matrix
from ponder.builtin import builtin_folder
from ponder.columnar import connect, write_segments
from ponder.columnar.matrix import matrix_from_parquet
from ponder.columnar.segments import list_segments
from ponder.errors import InputError, StoreError
from ponder.evaluate.catalog import candidates
from ponder.evaluate.metrics import Summary, summarize
from ponder.evaluate.protocol import complete, cross_validate
from ponder.grading import normalize_answer
from ponder.importers import import_paths
from ponder.outcomes.cost import CostModel, load_prices
from ponder.outcomes.matrix import NO_ANSWER, UNKNOWN_ANSWER, OutcomeMatrix
from ponder.store import Store

ARRAYS = ("correct", "cost", "tokens", "answer")
SIGNALS = ("prob", "token_prob", "entropy", "natural", "probe_cost", "chain")


def assert_same_matrix(got: OutcomeMatrix, want: OutcomeMatrix) -> None:
    """Equal configs, problems, units and arrays (dtype, shape, values, NaN places)."""
    assert got.configs == want.configs
    assert got.unit == want.unit
    pd.testing.assert_frame_equal(got.problems, want.problems, check_exact=True)
    pairs = [(getattr(got, n), getattr(want, n), n) for n in ARRAYS]
    assert (got.signals is None) == (want.signals is None)
    if got.signals is not None and want.signals is not None:
        pairs += [(getattr(got.signals, n), getattr(want.signals, n), n) for n in SIGNALS]
    for a, b, name in pairs:
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name


def assert_same_summary(got: Summary, want: Summary) -> None:
    pd.testing.assert_frame_equal(got.points, want.points, check_exact=True)
    pd.testing.assert_frame_equal(got.families, want.families, check_exact=True)
    assert got.baseline == want.baseline and got.n_problems == want.n_problems
    assert got.baseline_figures == want.baseline_figures
    assert got.skipped == want.skipped and got.conclusion == want.conclusion


@pytest.fixture(scope="module")
def builtin_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The built-in sweep in a store and, from its frame, in segments."""
    folder = tmp_path_factory.mktemp("builtin")
    with Store(folder / "store.sqlite") as store:
        import_paths(store, [builtin_folder()])
        write_segments(folder / "segments", store.outcomes_frame(signals=True))
    return folder / "store.sqlite", folder / "segments"


def price_table(folder: Path, models: Sequence[str]) -> Path:
    """Distinct prices and sizes per model, so a mixed-up model would show in the costs."""
    table = {
        m: {
            "input_per_mtok": 0.1 * i + 0.05,
            "output_per_mtok": 0.7 * i + 0.3,
            "params_b": i + 0.5,
            "per_call": 0.01 * i + 0.02,
        }
        for i, m in enumerate(models)
    }
    path = folder / "prices.json"
    path.write_text(json.dumps(table))
    return path


def test_builtin_sweep_equals_from_frame_in_every_unit(
    builtin_store: tuple[Path, Path], tmp_path: Path
) -> None:
    db, segments = builtin_store
    with Store(db) as store:
        problems = store.problems_frame()
        want = load_matrix(store, datasets=["arith"])
        models = sorted({c.model for c in want.configs})
        prices = price_table(tmp_path, models)
        got = matrix_from_parquet(segments, "arith", problems=problems)
        assert_same_matrix(got, want)
        assert want.signals is not None and want.signals.has_chains  # ladders: signals compared
        assert want.problems["text"].notna().all() and want.problems["level"].notna().any()
        for unit in ("dollars", "flops", "calls"):
            priced = load_matrix(store, datasets=["arith"], cost=unit, prices=prices)
            cost_model = CostModel(unit, load_prices(prices))
            via = matrix_from_parquet(segments, "arith", problems=problems, cost_model=cost_model)
            assert_same_matrix(via, priced)
            assert not np.array_equal(priced.cost, want.cost, equal_nan=True)
        one = [models[0]]
        assert_same_matrix(
            matrix_from_parquet(segments, "arith", problems=problems, models=one),
            load_matrix(store, datasets=["arith"], models=one),
        )
        assert_same_matrix(
            matrix_from_parquet(segments, "arith", problems=problems, exclude_models=one),
            load_matrix(store, datasets=["arith"], exclude_models=one),
        )


@pytest.mark.slow
def test_policy_evaluation_equals_on_the_builtin_sweep(builtin_store: tuple[Path, Path]) -> None:
    db, segments = builtin_store
    with Store(db) as store:
        want = complete(load_matrix(store, datasets=["arith"]))
        got = complete(matrix_from_parquet(segments, "arith", problems=store.problems_frame()))
    # One sampled mode (ladders and no-think of both models) keeps the candidates few.
    configs = [c for c in want.configs if c.mode in ("think", "no-think")]
    # Fitted (router, cascade), sequential (votes) and ladder (early exit, DEER) families.
    families = ("router", "cascade", "adaptive_consistency", "early_exit", "deer")
    summaries = []
    for matrix in (want.select_configs(configs), got.select_configs(configs)):
        evaluation = cross_validate(matrix, candidates(matrix, families), folds=5, seed=0)
        summaries.append(summarize(evaluation, n_boot=200, seed=0))
    assert_same_summary(summaries[1], summaries[0])
    assert set(families) <= set(summaries[0].families["family"])


def test_recorded_datasets_equal_from_frame(shared_data: Path, tmp_path: Path) -> None:
    with Store(tmp_path / "store.sqlite") as store:
        import_paths(store, recorded_sources(shared_data))
        write_segments(tmp_path / "segments", store.outcomes_frame(signals=True))
        problems = store.problems_frame()
        names = sorted(set(store.outcomes_frame()["dataset"]))
        compared = []
        for name in names:
            want = load_matrix(store, datasets=[name])
            got = matrix_from_parquet(tmp_path / "segments", name, problems=problems)
            assert_same_matrix(got, want)
            compared.append(name)
    assert compared == ["aime24", "aime25", "gsm8k", "math500", "mmlu_pro_math"]


def awkward_frame() -> pd.DataFrame:
    """The columnar helpers' rows plus what the codes and slots must get right: a second run
    of one configuration repeating its sample indices, answers without text, answers that
    normalize to nothing or to the same form, levels and text from a problems table."""
    frame = synthetic_frame(seed=11)
    alpha = frame[frame["dataset"] == "alpha"]
    again = alpha[(alpha["model"] == "org/model 1") & (alpha["mode"] == "think")].copy()
    again["run_id"] = "alpha/m1/think/again"
    again["correct"] = 1.0 - again["correct"]
    rng = np.random.default_rng(5)
    frame = pd.concat([frame, again], ignore_index=True)
    pick = rng.random(len(frame))
    answered = frame["answered"].to_numpy()
    frame.loc[(pick < 0.05) & (answered == 1), "extracted_answer"] = None  # answered, no text
    frame.loc[(pick > 0.95) & (answered == 1), "extracted_answer"] = " . "  # normalizes to ""
    spaced = (pick > 0.5) & (pick < 0.6) & frame["extracted_answer"].notna().to_numpy()
    frame.loc[spaced, "extracted_answer"] = "$" + frame.loc[spaced, "extracted_answer"] + "$"
    frame["extracted_answer"] = frame["extracted_answer"].astype("str")
    frame["level"] = frame["problem_id"].str[-1].astype(float) % 4 + 1
    frame["subject"] = None
    return frame


def problems_of(frame: pd.DataFrame) -> pd.DataFrame:
    keys = frame.drop_duplicates(["dataset", "problem_id"])
    return pd.DataFrame(
        {
            "dataset": keys["dataset"].to_numpy(),
            "problem_id": keys["problem_id"].to_numpy(),
            "text": "What is " + keys["problem_id"] + "?",
            "level": keys["level"].to_numpy(),
        }
    )


def test_awkward_rows_in_two_segments_equal_from_frame(tmp_path: Path) -> None:
    frame = awkward_frame()
    half = len(frame) // 2  # two files per dataset: ties are broken in the files' order
    write_segments(tmp_path, frame.iloc[:half], segment_id="a")
    write_segments(tmp_path, frame.iloc[half:], segment_id="b")
    assert len(list_segments(tmp_path, ["alpha"])) == 2
    problems = problems_of(frame)
    for name, models in (("alpha", None), ("beta/two words", None), ("alpha", ["org/model 1"])):
        rows = frame[frame["dataset"] == name]
        if models is not None:
            rows = rows[rows["model"].isin(models)]
        want = OutcomeMatrix.from_frame(rows, problems=problems, normalize=normalize_answer)
        got = matrix_from_parquet(tmp_path, name, problems=problems, models=models)
        assert_same_matrix(got.select_configs(want.configs), want)
        assert got.configs == want.configs
        pd.testing.assert_frame_equal(
            got.problems[["dataset", "problem_id", "level", "text"]],
            want.problems[["dataset", "problem_id", "level", "text"]],
        )
    con = connect(memory_limit="256MB", threads=1)  # a caller's connection, left as it was
    alpha = matrix_from_parquet(tmp_path, "alpha", problems=problems, con=con)
    assert_same_matrix(alpha, matrix_from_parquet(tmp_path, "alpha", problems=problems))
    assert con.sql("SELECT count(*) FROM duckdb_views() WHERE NOT internal").fetchall() == [(0,)]
    con.close()
    assert alpha.correct.shape[2] == 8  # the repeated run's samples take slots 4..7
    codes = set(np.unique(alpha.answer).tolist())
    assert {NO_ANSWER, UNKNOWN_ANSWER} <= codes
    assert max(codes) > 4  # the lone answers got codes of their own beyond the 4 forms


def test_no_samples_and_damaged_segments_are_errors(tmp_path: Path) -> None:
    frame = synthetic_frame(seed=2)
    write_segments(tmp_path, frame)
    with pytest.raises(InputError, match="per-sample"):
        matrix_from_parquet(tmp_path, "gamma")  # only n_runs > 1
    with pytest.raises(InputError, match="no outcome segments"):
        matrix_from_parquet(tmp_path, "delta")
    with pytest.raises(InputError, match="per-sample"):
        matrix_from_parquet(tmp_path, "alpha", models=["nobody"])
    broken = list_segments(tmp_path, ["alpha"])[0]
    broken.write_bytes(broken.read_bytes()[:200])
    with pytest.raises(StoreError, match=str(broken.name)):
        matrix_from_parquet(tmp_path, "alpha")
