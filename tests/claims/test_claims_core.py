"""The parts every claim shares: the verdict rule, findings, model facts, difficulty bands,
the problem bootstrap and the runner."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from claims_helpers import FAST, claim_data

from ponder.claims import (
    Claim,
    ClaimData,
    Effect,
    Finding,
    ModelFacts,
    Settings,
    check_all,
    decide,
    found,
    insufficient,
    load_claim_data,
    model_facts,
    summary_table,
)
from ponder.claims.data import difficulty, load_facts_file, params_from_name
from ponder.claims.stats import bootstrap_effect, problem_weights, weighted_mean
from ponder.errors import InputError
from ponder.store import Store


def _effect(value: float, low: float, high: float, min_effect: float = 0.0) -> Effect:
    return Effect("gain", value, low, high, "points", min_effect)


@pytest.mark.parametrize(
    ("low", "high", "min_effect", "verdict"),
    [
        (1.0, 5.0, 0.0, "supported"),
        (-5.0, -1.0, 0.0, "contradicted"),
        (-1.0, 4.0, 0.0, "inconclusive"),
        # Real but smaller than what matters: the data rule out a useful effect.
        (0.5, 1.5, 2.0, "contradicted"),
        (0.5, 3.0, 2.0, "supported"),
        (-0.5, 1.5, 2.0, "contradicted"),
        (-0.5, 3.0, 2.0, "inconclusive"),
    ],
)
def test_decide_applies_one_rule(low: float, high: float, min_effect: float, verdict: str) -> None:
    got, reason = decide(_effect((low + high) / 2, low, high, min_effect))
    assert got == verdict
    assert "gain" in reason and "CI" in reason


def test_decide_on_undefined_effect_is_inconclusive() -> None:
    got, reason = decide(_effect(1.0, float("nan"), float("nan")))
    assert got == "inconclusive"
    assert "undefined" in reason


def test_effect_outside_its_interval_is_rejected() -> None:
    with pytest.raises(ValueError, match="outside its interval"):
        _effect(5.0, 0.0, 1.0)


def test_finding_needs_an_effect_unless_refused() -> None:
    with pytest.raises(ValueError, match="needs an effect"):
        Finding("c", "d", "all", "supported", "why")
    with pytest.raises(ValueError, match="unknown verdict"):
        Finding("c", "d", "all", "maybe", "why")  # type: ignore[arg-type]
    refused = insufficient("c", "d", "no budgets recorded")
    assert refused.verdict == "insufficient" and refused.effect is None
    made = found("c", "d", "all", _effect(2.0, 1.0, 3.0), n_problems=40, protocol="p", note="n")
    assert made.verdict == "supported" and made.reason.endswith("; n")


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("qwen3-1.7b", 1.7e9),
        ("r1-7b", 7e9),
        ("Llama-2-70b-hf", 70e9),
        ("smollm2-135m", 135e6),
        ("DeepSeek-R1-Distill-Qwen-1.5B", 1.5e9),
        ("Mixtral-8x7B-Instruct-v0.1", None),  # mixture of experts: active != total
        ("gpt-4o", None),
        ("claude-3.5-sonnet", None),
    ],
)
def test_params_from_name(name: str, params: float | None) -> None:
    assert params_from_name(name) == params


def test_model_facts_prefer_the_facts_file_then_importer_then_registry_then_name() -> None:
    runs = pd.DataFrame(
        {
            "model": ["r1-1.5b", "qwen25math-1.5b", "qwen2.5-coder-0.5b"],
            "settings_json": [
                json.dumps({"reasoning": True}),
                json.dumps({"reasoning": False, "model_hf_id": "Qwen/Qwen2.5-Math-1.5B"}),
                "{}",
            ],
        }
    )
    given = {"r1-1.5b": ModelFacts("r1-1.5b", params=1.78e9)}
    facts = model_facts(["r1-1.5b", "qwen25math-1.5b", "qwen2.5-coder-0.5b", "gpt-4o"], runs, given)
    assert facts["r1-1.5b"].params == 1.78e9 and facts["r1-1.5b"].reasoning is True
    assert facts["qwen25math-1.5b"] == ModelFacts(
        "qwen25math-1.5b", 1.5e9, False, source="name, importer"
    )
    assert facts["qwen2.5-coder-0.5b"].params == 494_000_000  # the registry's model card count
    assert facts["qwen2.5-coder-0.5b"].reasoning is False
    assert facts["gpt-4o"] == ModelFacts("gpt-4o")


def test_facts_file_errors_name_the_file_and_entry(tmp_path: Path) -> None:
    path = tmp_path / "facts.json"
    with pytest.raises(InputError, match="not found"):
        load_facts_file(path)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match="not valid JSON") as err:
        load_facts_file(path)
    assert "facts.json" in str(err.value)
    path.write_text(json.dumps({"m": {"params": -3}}), encoding="utf-8")
    with pytest.raises(InputError, match=r"'m'\.params: expected a positive number"):
        load_facts_file(path)
    path.write_text(json.dumps({"m": {"reasoning": "yes"}}), encoding="utf-8")
    with pytest.raises(InputError, match=r"'m'\.reasoning: expected true or false"):
        load_facts_file(path)
    path.write_text(json.dumps({"m": {"size": 3}}), encoding="utf-8")
    with pytest.raises(InputError, match="unknown field"):
        load_facts_file(path)
    path.write_text(json.dumps({"m": {"params": 7e9, "reasoning": True}}), encoding="utf-8")
    assert load_facts_file(path)["m"] == ModelFacts("m", 7e9, True, source="facts.json")


def test_difficulty_uses_levels_when_known_else_empirical_quartiles() -> None:
    rows = [
        {"model": m, "problem_id": f"p{i}", "correct": float(i % 4 > 0), "level": 1 + i % 3}
        for m in ("a", "b")
        for i in range(12)
    ]
    bands, how = difficulty(claim_data(rows))
    assert how == "level" and bands["p5"] == 3.0
    for row in rows:
        row["level"] = np.nan
        row["correct"] = float(int(str(row["problem_id"])[1:]) < 6)  # p0..p5 easy
    bands, how = difficulty(claim_data(rows))
    assert how.startswith("empirical")
    assert set(bands.unique()) <= {1.0, 2.0, 3.0, 4.0}
    assert bands["p0"] < bands["p11"]  # solved problems are the easier band


def test_problem_weights_first_row_is_the_estimate() -> None:
    w = problem_weights(30, n_boot=50, seed=0, key="d")
    assert w.shape == (51, 30)
    assert (w[0] == 1).all()
    assert np.allclose(w[1:].sum(axis=1), 30)
    again = problem_weights(30, n_boot=50, seed=0, key="d")
    assert np.array_equal(w, again)


def test_bootstrap_effect_covers_a_known_mean() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(3.0, 1.0, size=400)
    effect = bootstrap_effect(
        lambda w: weighted_mean(values, w),
        len(values),
        name="mean",
        unit="points",
        n_boot=400,
        seed=0,
        key="t",
    )
    assert effect.value == pytest.approx(values.mean())
    half = 1.96 * values.std() / math.sqrt(len(values))
    assert effect.low == pytest.approx(values.mean() - half, abs=0.05)
    assert effect.high == pytest.approx(values.mean() + half, abs=0.05)


def test_bootstrap_effect_reports_undefined_when_resamples_are() -> None:
    effect = bootstrap_effect(
        lambda w: np.where(np.arange(len(w)) % 2 == 0, np.nan, 1.0),
        10,
        name="m",
        unit="u",
        n_boot=20,
        seed=0,
        key="t",
    )
    assert math.isnan(effect.low) and math.isnan(effect.high)


def test_weighted_mean_ignores_missing_values() -> None:
    values = np.array([1.0, np.nan, 3.0])
    out = weighted_mean(values, np.array([[1.0, 1.0, 1.0], [2.0, 5.0, 0.0]]))
    assert out.tolist() == [2.0, 1.0]


class _Counting(Claim):
    number = 99
    id = "counting"
    title = "counts problems"
    hypothesis = "there are problems"
    needs = "anything"

    def check(self, data: ClaimData) -> list[Finding]:
        if data.dataset == "empty":
            return []
        if data.dataset == "broken":
            raise InputError("no budgets recorded")
        n = data.n_problems
        return [
            found(
                self.id,
                data.dataset,
                "all",
                Effect("problems", n, n - 1, n + 1, "count"),
                n_problems=n,
                protocol="count",
            )
        ]


def test_runner_turns_refusals_and_input_errors_into_insufficient_findings() -> None:
    rows = [{"model": "a", "problem_id": f"p{i}", "correct": 1.0} for i in range(3)]
    data = [
        claim_data([{**r, "dataset": name} for r in rows]) for name in ("broken", "empty", "fine")
    ]
    findings = check_all([_Counting()], data)
    assert [(f.dataset, f.verdict) for f in findings] == [
        ("broken", "insufficient"),
        ("empty", "insufficient"),
        ("fine", "supported"),
    ]
    assert findings[0].reason == "no budgets recorded"
    assert findings[1].reason == "needs anything"
    table = summary_table(findings)
    assert table["verdict"].tolist() == ["insufficient", "insufficient", "supported"]
    assert table.loc[2, "value"] == 3 and math.isnan(table.loc[0, "value"])


def test_load_claim_data_splits_datasets_and_reads_facts(tmp_path: Path) -> None:
    from ponder.builtin import builtin_folder
    from ponder.importers import import_paths

    with Store(tmp_path / "s.sqlite") as store:
        import_paths(store, [builtin_folder()])
        (data,) = load_claim_data(store, settings=FAST)
        assert data.dataset == "arith"
        assert data.n_problems == 160
        assert set(data.models) == {"qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"}
        assert data.models["qwen2.5-coder-1.5b"].params == 1_540_000_000
        assert data.chains is not None and len(data.chains)
        assert data.chains["chain_id"].isin(set(data.outcomes["chain_id"])).all()
        assert data.budgets_of("qwen2.5-coder-0.5b", "think-greedy")[0] == 16.0
        with pytest.raises(InputError, match="no outcomes for dataset"):
            load_claim_data(store, datasets=["nope"])
    with Store(tmp_path / "empty.sqlite") as empty, pytest.raises(InputError, match="empty"):
        load_claim_data(empty, settings=Settings())


def test_registry_numbers_match_the_claims() -> None:
    from ponder.claims import all_claims
    from ponder.claims.registry import claim_number

    claims = all_claims()
    assert [c.number for c in claims] == sorted(c.number for c in claims)
    for claim in claims:
        assert claim_number(claim.id) == claim.number
    assert claim_number("nope") == -1
