"""Spec validation: every mistake is one line naming the spec file, its line and the field,
raised before any problem is loaded or any engine started."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from _sweep_toy import spec_data, write_problems

from ponder.errors import InputError
from ponder.sweep import build_plan, load_spec, parse_spec
from ponder.sweep.plan import mode_label


def _write(folder: Path, text: str) -> Path:
    write_problems(folder)
    path = folder / "spec.yaml"
    path.write_text(text)
    return path


def _error(folder: Path, **overrides: Any) -> str:
    path = _write(folder, yaml.safe_dump(spec_data(**overrides), sort_keys=False))
    with pytest.raises(InputError) as info:
        load_spec(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"budgets": {"ladder": [64, 32]}}, "budgets.ladder", "strictly increasing, got [64, 32]"),
        ({"budgets": {"ladder": [16, 16]}}, "budgets.ladder", "strictly increasing"),
        ({"budgets": {"ladder": [0, 16]}}, "budgets.ladder[0]", "must be >= 1, got 0"),
        ({"budgets": {"forced": [64, 64]}}, "budgets.forced", "repeat"),
        ({"budgets": {"wanted": [1]}}, "budgets.wanted", "unknown key"),
        ({"budgets": {"ladder": []}}, "budgets.ladder", "non-empty list"),
        ({"reserve": 0}, "reserve", "must be >= 1, got 0"),
        ({"modes": ["think", "ponder"]}, "modes[1]", "unknown mode 'ponder'"),
        ({"sampling": [{"temperature": -0.5}]}, "sampling[0].temperature", "must be >= 0"),
        ({"sampling": [{"temperature": 0.5, "samples": 0}]}, "sampling[0].samples", ">= 1"),
        ({"sampling": [{"temperature": 0, "samples": 3}]}, "sampling[0].samples", "greedy"),
        ({"sampling": [{"top_p": 0}]}, "sampling[0].top_p", "(0, 1]"),
        ({"colour": "blue"}, "colour", "unknown key"),
        ({"concurrency": 0}, "concurrency", "must be >= 1"),
        (
            {"models": [{"name": "m", "backend": "tgi"}]},
            "models[0].backend",
            "unknown backend 'tgi'",
        ),
        (
            {"models": [{"name": "m", "backend": "fake"}, {"name": "m", "backend": "fake"}]},
            "models[1].name",
            "listed twice",
        ),
        ({"problems": [{"file": "missing.jsonl"}]}, "problems[0].file", "problem file not found"),
        ({"problems": [{"preset": "aime"}]}, "problems[0].preset", "unknown preset"),
        (
            {"budget_is_total": True, "reserve": 16, "budgets": {"ladder": [16, 64]}},
            "budgets.ladder",
            "budget 16 is not above the answer reserve (16)",
        ),
    ],
)
def test_bad_field_is_named(
    tmp_path: Path, overrides: dict[str, Any], field: str, words: str
) -> None:
    message = _error(tmp_path, **overrides)
    assert f"field '{field}'" in message and words in message


def test_missing_required_key(tmp_path: Path) -> None:
    data = spec_data()
    del data["models"]
    path = _write(tmp_path, yaml.safe_dump(data))
    with pytest.raises(InputError, match="field 'models': missing"):
        load_spec(path)


def test_line_numbers_point_at_the_field(tmp_path: Path) -> None:
    text = (
        "name: toy\n"
        "problems:\n"
        "  - file: probs.jsonl\n"
        "models:\n"
        "  - {name: m, backend: fake}\n"
        "budgets:\n"
        "  ladder: [64, 32]\n"
    )
    with pytest.raises(InputError) as info:
        load_spec(_write(tmp_path, text))
    assert info.value.line == 7 and info.value.field == "budgets.ladder"


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: toy\nproblems:\n  - file: [unclosed\nmodels: []\n")
    with pytest.raises(InputError, match="malformed YAML") as info:
        load_spec(path)
    assert info.value.line == 4


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: a\nname: b\nproblems: []\nmodels: []\n")
    with pytest.raises(InputError, match="duplicate key") as info:
        load_spec(path)
    assert info.value.line == 2


def test_budget_is_total_subtracts_the_reserve(tmp_path: Path) -> None:
    write_problems(tmp_path)
    spec = parse_spec(
        spec_data(budget_is_total=True, reserve=16, budgets={"ladder": [32, 80]}), base_dir=tmp_path
    )
    assert spec.strategies[0].budgets == (16, 64)


def test_plan_counts_items_runs_and_labels(tmp_path: Path) -> None:
    write_problems(tmp_path)
    data = spec_data(
        sampling=[{"temperature": 0.7, "samples": 4}, {"temperature": 0}],
        budgets={"ladder": [16, 32], "forced": [64, 128]},
        models=[{"name": "x", "backend": "fake"}, {"name": "y", "backend": "fake"}],
    )
    plan = build_plan(parse_spec(data, base_dir=tmp_path))
    # per problem, model and sample: think (1 ladder + 2 forced) + no-think (1) = 4 items
    assert len(plan.items) == 3 * 2 * (4 + 1) * 4
    # runs: models x (think: ladder, forced; no-think) x sampling entries
    assert len(plan.runs) == 2 * 3 * 2
    assert {i.mode_label for i in plan.items} == {
        "think",
        "no-think",
        "think-greedy",
        "no-think-greedy",
    }
    assert {r.budget_kind for r in plan.runs} == {"forced", "none"}


def test_two_sampled_entries_get_their_temperature_in_the_label(tmp_path: Path) -> None:
    write_problems(tmp_path)
    spec = parse_spec(
        spec_data(sampling=[{"temperature": 0.7, "samples": 2}, {"temperature": 1.0}]),
        base_dir=tmp_path,
    )
    assert [mode_label("think", s, spec) for s in spec.sampling] == ["think-t0.7", "think-t1"]


def test_generated_problems_come_from_the_generator(tmp_path: Path) -> None:
    from ponder.problems.generator import generate_problems

    data = spec_data(problems=[{"generated": {"levels": [1, 3], "per_level": 2, "seed": 5}}])
    plan = build_plan(parse_spec(data, base_dir=tmp_path))
    expected = generate_problems(levels=[1, 3], per_level=2, seed=5)
    assert plan.problems["problem_id"].tolist() == [p.problem_id for p in expected]
    assert plan.problems["gold"].tolist() == [p.gold for p in expected]
    assert plan.problems["level"].tolist() == [1, 1, 3, 3]


def test_limit_and_duplicates(tmp_path: Path) -> None:
    write_problems(tmp_path)
    data = spec_data(problems=[{"file": "probs.jsonl", "limit": 2}])
    assert len(build_plan(parse_spec(data, base_dir=tmp_path)).problems) == 2
    twice = spec_data(problems=[{"file": "probs.jsonl"}, {"file": "probs.jsonl"}])
    with pytest.raises(InputError, match="listed by two sources"):
        build_plan(parse_spec(twice, base_dir=tmp_path))


def test_gsm8k_preset_reads_the_public_set(shared_data: Path, tmp_path: Path) -> None:
    import json

    path = shared_data / "problem_sets" / "gsm8k_test.jsonl"
    data = spec_data(problems=[{"preset": "gsm8k", "file": str(path), "limit": 3}])
    plan = build_plan(parse_spec(data, base_dir=tmp_path))
    lines = [json.loads(line) for line in path.read_text().splitlines()[:3]]
    assert plan.problems["problem_id"].tolist() == ["test-0", "test-1", "test-2"]
    assert plan.problems["text"].tolist() == [r["question"] for r in lines]
    golds = [r["answer"].rsplit("####", 1)[1].strip().replace(",", "") for r in lines]
    assert plan.problems["gold"].tolist() == golds
    assert set(plan.problems["dataset"]) == {"gsm8k"}


def test_a_generated_problem_file_loads_with_its_metadata(tmp_path: Path) -> None:
    import json

    from ponder.problems.generator import generate_problems, write_jsonl

    problems = generate_problems(levels=[2], per_level=3, seed=1)
    write_jsonl(problems, tmp_path / "gen.jsonl")
    write_problems(tmp_path)
    plan = build_plan(parse_spec(spec_data(problems=[{"file": "gen.jsonl"}]), base_dir=tmp_path))
    frame = plan.problems
    assert frame["problem_id"].tolist() == [p.problem_id for p in problems]
    assert frame["gold"].tolist() == [p.gold for p in problems]
    assert frame["level"].tolist() == [2, 2, 2]
    assert [json.loads(m) for m in frame["metadata_json"]] == [p.metadata for p in problems]
