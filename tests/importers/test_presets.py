"""Preset importers on the real recorded datasets."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ponder.importers import PRESETS, detect_preset, import_paths, load_file, read_table
from ponder.store import Store


@pytest.fixture(scope="module")
def imported(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Store:
    store = Store(tmp_path_factory.mktemp("s") / "all.sqlite")
    import_paths(store, [shared_data])
    return store


def test_every_recorded_dataset_is_detected(shared_data: Path) -> None:
    expected = {
        "reasoning_budget_sweep/reasoning_budget_sweep_aime.csv": "reasoning_budget_sweep",
        "reasoning_budget_sweep/reasoning_budget_sweep_math500.csv": "reasoning_budget_sweep",
        "mmlu_pro_math/mmlu_pro_math_per_model.csv": "mmlu_pro_math",
        "routellm_gsm8k/gsm8k_responses.csv": "routellm_gsm8k",
        "matharena_aime2025_I/per_problem_accuracy.csv": "matharena_aime2025_I",
    }
    for relative, preset in expected.items():
        found = detect_preset(read_table(shared_data / relative))
        assert found is not None and found.name == preset, relative
    assert detect_preset(read_table(shared_data / "problem_sets/gsm8k_test.jsonl")) is None


def test_reasoning_budget_sweep_matches_plain_groupby(imported: Store, shared_data: Path) -> None:
    frame = imported.outcomes_frame()
    frame = frame[frame["run_id"].str.startswith("rbs/")]
    for name in ("reasoning_budget_sweep_aime.csv", "reasoning_budget_sweep_math500.csv"):
        raw = pd.read_csv(shared_data / "reasoning_budget_sweep" / name)
        expected = raw.groupby(["model", "benchmark", "budget"])["correct"].mean()
        ours = (
            frame[frame["dataset"].isin(raw["benchmark"].unique())]
            .groupby(["model", "dataset", "budget"])["correct"]
            .mean()
        )
        ours.index = ours.index.set_names(["model", "benchmark", "budget"])
        ours = ours.reindex(expected.index)
        assert ours.to_numpy() == pytest.approx(expected.to_numpy(), abs=0)
        sizes = frame[frame["dataset"].isin(raw["benchmark"].unique())].groupby("dataset").size()
        assert sizes.sum() == len(raw)


def test_problem_sets_are_joined(imported: Store) -> None:
    problems = imported.problems_frame().set_index(["dataset", "problem_id"])
    math500 = problems.loc["math500"]
    assert len(math500) == 100
    assert math500["level"].notna().all()
    assert math500["text"].notna().all()
    # AIME 2025 items 0..29 map onto the canonical ids shared with MathArena.
    assert problems.loc[("aime25", "2025-I-1"), "gold"] == "70"
    assert problems.loc[("aime25", "2025-II-15"), "gold"] == "240"
    assert problems.loc[("aime24", "2024-I-1"), "text"].startswith("Every morning Aya")


def test_modes_and_budget_kinds(imported: Store) -> None:
    frame = imported.outcomes_frame()
    rbs = frame[frame["run_id"].str.startswith("rbs/")]
    assert set(rbs.loc[rbs["model"] == "qwen25math-1.5b", "mode"]) == {"no-think"}
    assert set(rbs.loc[rbs["model"] != "qwen25math-1.5b", "mode"]) == {"think"}
    assert set(rbs["budget_kind"]) == {"hard_cap"}
    mmlu = frame[frame["dataset"] == "mmlu_pro_math"]
    assert mmlu["model"].nunique() == 29
    assert mmlu["budget"].isna().all()
    assert not mmlu["model"].str.endswith("_5shots").any()


def test_matharena_rows_are_marked_aggregated(imported: Store) -> None:
    frame = imported.outcomes_frame()
    arena = frame[frame["run_id"].str.startswith("matharena/")]
    assert len(arena) == 240
    assert (arena["n_runs"] == 4).all()
    assert set(arena["correct"].unique()) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    runs = imported.runs_frame().set_index("run_id")
    assert '"reasoning_effort": "high"' in runs.loc["matharena/o3-mini (high)", "settings_json"]
    assert runs.loc["matharena/o3-mini (high)", "budget_kind"] == "effort"
    assert '"mean_output_tokens": 12046.85' in runs.loc["matharena/o3-mini (high)", "settings_json"]


def test_routellm_joins_gsm8k_and_keeps_recorded_correctness(
    imported: Store, shared_data: Path
) -> None:
    frame = imported.outcomes_frame(datasets=["gsm8k"])
    raw = pd.read_csv(shared_data / "routellm_gsm8k/gsm8k_responses.csv")
    for model in ("mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"):
        ours = frame.loc[frame["model"] == model, "correct"].mean()
        assert ours == pytest.approx(raw[model].mean())
    assert frame["problem_id"].str.startswith("test-").all()
    problems = imported.problems_frame()
    flagged = problems["metadata_json"].str.contains("contaminated").sum()
    assert flagged > 0


def test_reimport_adds_nothing(imported: Store, shared_data: Path) -> None:
    before = imported.counts()["outcomes"]
    results = import_paths(imported, [shared_data / "reasoning_budget_sweep"])
    assert all(r.result is not None and r.result.outcomes_added == 0 for r in results)
    assert imported.counts()["outcomes"] == before


def test_upstream_single_file_layout_imports_the_same(shared_data: Path, tmp_path: Path) -> None:
    """Upstream ships one CSV with both benchmarks; the preset reads it the same way."""
    parts = [
        pd.read_csv(shared_data / "reasoning_budget_sweep" / f, dtype=str, keep_default_na=False)
        for f in ("reasoning_budget_sweep_aime.csv", "reasoning_budget_sweep_math500.csv")
    ]
    single = tmp_path / "reasoning_budget_sweep.csv"
    pd.concat(parts).to_csv(single, index=False)
    loaded = load_file(single)
    assert loaded.preset == "reasoning_budget_sweep"
    assert len(loaded.batch.outcomes) == sum(len(p) for p in parts)


def test_preset_names_are_listed() -> None:
    assert set(PRESETS) == {
        "reasoning_budget_sweep",
        "mmlu_pro_math",
        "routellm_gsm8k",
        "matharena_aime2025_I",
    }
