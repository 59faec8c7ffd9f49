"""`ponder fit` and `ponder evaluate` through the real entry point, on the recorded data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="module")
def store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ponder.importers import import_paths
    from ponder.store import Store

    path = tmp_path_factory.mktemp("pol") / "store.sqlite"
    with Store(path) as st:
        import_paths(
            st,
            [shared_data / "reasoning_budget_sweep", shared_data / "routellm_gsm8k"],
        )
    return path


def _error(result: Any) -> str:
    assert result.returncode == 1, result.stderr
    lines = [x for x in result.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return str(lines[0])


def test_fit_save_load_same_decisions(ponder: Any, store: Path, tmp_path: Path) -> None:
    out = tmp_path / "adaptive.json"
    result = ponder(
        "fit",
        "adaptive",
        "-d",
        "math500",
        "-p",
        "price_per_unit=3e-5",
        "-o",
        str(out),
        "--json",
        store=store,
        check_ok=True,
    )
    fitted = json.loads(result.stdout)
    assert abs(sum(d["share"] for d in fitted["decisions"]) - 1.0) < 1e-9
    saved = json.loads(out.read_text())
    assert saved["policy"] == "adaptive" and saved["version"] == 1

    from ponder.policies import load_policy
    from ponder.store import Store

    policy = load_policy(out)
    with Store(store) as st:
        problems = st.problems_frame()
    math500 = problems[problems["dataset"] == "math500"]
    decisions = policy.decide_batch(math500)
    shares: dict[str, float] = {}
    for row in range(len(decisions)):
        key = json.dumps(decisions[row].to_dict(), sort_keys=True)
        shares[key] = shares.get(key, 0.0) + 1 / len(decisions)
    expected = {json.dumps(d["decision"], sort_keys=True): d["share"] for d in fitted["decisions"]}
    assert shares.keys() == expected.keys()
    for key, share in shares.items():
        assert share == pytest.approx(expected[key])


def test_evaluate_json_has_protocol_and_cis(
    ponder: Any, store: Path, tmp_path: Path, shared_data: Path
) -> None:
    plot = tmp_path / "eval.png"
    result = ponder(
        "evaluate",
        "-d",
        "math500",
        "-P",
        "adaptive",
        "-P",
        "cascade",
        "--folds",
        "3",
        "--n-boot",
        "200",
        "--json",
        "--plot",
        str(plot),
        store=store,
        check_ok=True,
    )
    data = json.loads(result.stdout)
    assert data["protocol"].startswith("3-fold cross-validation by problem")
    families = {f["family"]: f for f in data["families"]}
    assert set(families) == {"uniform", "oracle", "adaptive", "cascade"}
    for family in families.values():
        assert {
            "saved_at_iso_accuracy",
            "gain_at_iso_cost",
            "gap_recovered",
            "cost_to_95pct",
        } <= set(family)
    points = data["points"]
    assert all(p["accuracy_ci_low"] <= p["accuracy"] <= p["accuracy_ci_high"] for p in points)
    # Independent figures from the raw CSV: a one-sample configuration scores, per problem,
    # the mean over its recorded seeds; the policy figure is the mean over problems.
    raw = pd.read_csv(shared_data / "reasoning_budget_sweep/reasoning_budget_sweep_math500.csv")
    per = (
        raw.groupby(["model", "budget", "item_id"])
        .agg(accuracy=("correct", "mean"), cost=("n_new_tokens", "mean"))
        .reset_index()
    )
    uniform = per.groupby(["model", "budget"])[["accuracy", "cost"]].mean()
    singles = {p["label"]: p for p in points if p["family"] == "uniform" and " x" not in p["label"]}
    assert len(singles) == len(uniform) == 20
    for label, point in singles.items():
        model, _mode, budget = label.removeprefix("uniform ").split("|")
        row = uniform.loc[(model, int(budget))]
        assert point["accuracy"] == pytest.approx(row["accuracy"], abs=1e-12), label
        assert point["mean_cost"] == pytest.approx(row["cost"], rel=1e-12), label
    # Oracle: per problem the configuration with the best expected accuracy, cheapest among
    # ties, found by sorting the per-problem table (no ponder code).
    best = per.groupby("item_id")["accuracy"].transform("max")
    chosen = per[per["accuracy"] >= best - 1e-12].sort_values("cost").groupby("item_id").head(1)
    assert len(chosen) == data["n_problems"] == 100
    (oracle_point,) = [p for p in points if p["family"] == "oracle"]
    assert oracle_point["accuracy"] == pytest.approx(chosen["accuracy"].mean(), abs=1e-12)
    assert oracle_point["mean_cost"] == pytest.approx(chosen["cost"].mean(), rel=1e-12)
    oracle = families["oracle"]
    assert oracle["best_accuracy"] == pytest.approx(chosen["accuracy"].mean(), abs=1e-12)
    others = [f["best_accuracy"] for name, f in families.items() if name != "oracle"]
    assert oracle["best_accuracy"] >= max(others)
    assert oracle["best_accuracy"] > uniform["accuracy"].max()
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_evaluate_transfer_and_calls_cost(ponder: Any, store: Path) -> None:
    result = ponder(
        "evaluate",
        "-d",
        "aime25",
        "--train-dataset",
        "aime24",
        "-P",
        "sweet_spot",
        "--n-boot",
        "200",
        "--json",
        store=store,
        check_ok=True,
    )
    assert json.loads(result.stdout)["protocol"].startswith("fit on aime24, evaluated on aime25")
    prices = Path(__file__).parents[2] / "examples/prices/routellm_gsm8k.json"
    result = ponder(
        "evaluate",
        "-d",
        "gsm8k",
        "--cost",
        "calls",
        "--prices",
        str(prices),
        "-P",
        "adaptive",
        "--n-boot",
        "200",
        "--json",
        store=store,
        check_ok=True,
    )
    data = json.loads(result.stdout)
    assert data["unit"] == "calls"
    uniform = {p["label"]: p for p in data["points"] if p["family"] == "uniform"}
    strong = next(p for label, p in uniform.items() if "gpt-4" in label)
    assert strong["mean_cost"] == pytest.approx(1.0)  # every call goes to the strong model


def test_bad_policy_inputs(ponder: Any, store: Path, tmp_path: Path) -> None:
    assert "unknown policy 'clever'" in _error(
        ponder("fit", "clever", "-d", "math500", store=store)
    )
    assert "--dataset" in _error(ponder("fit", "adaptive", store=store))
    out = tmp_path / "u.json"
    ponder(
        "fit",
        "uniform",
        "-d",
        "math500",
        "-p",
        'config={"model": "r1-1.5b", "mode": "think", "budget": 8192}',
        "-o",
        str(out),
        store=store,
        check_ok=True,
    )
    missing = ponder(
        "fit",
        "uniform",
        "-d",
        "math500",
        "-p",
        'config={"model": "r1-1.5b", "mode": "think", "budget": 777}',
        store=store,
    )
    assert "r1-1.5b|think|777 was not recorded" in _error(missing)
    tokens = ponder("evaluate", "-d", "gsm8k", "-P", "cascade", store=store)
    assert "cost in tokens is unknown" in _error(tokens) or "no recorded costs" in _error(tokens)
    unpriced = tmp_path / "p.json"
    unpriced.write_text('{"gpt-4-1106-preview": {"per_call": 1}}')
    result = ponder(
        "evaluate", "-d", "gsm8k", "--cost", "calls", "--prices", str(unpriced), store=store
    )
    assert "no entry for model(s) mistralai/Mixtral" in _error(result)
    budget = ponder(
        "fit",
        "allocation",
        "-d",
        "math500",
        "-p",
        "total_budget=10",
        "-o",
        str(tmp_path / "never.json"),
        store=store,
    )
    assert "budget" in _error(budget)
    assert not (tmp_path / "never.json").exists()


def test_tampered_and_wrong_version_policy_files(tmp_path: Path, store: Path, ponder: Any) -> None:
    from ponder.errors import InputError
    from ponder.policies import load_policy

    out = tmp_path / "c.json"
    ponder(
        "fit",
        "cascade",
        "-d",
        "math500",
        "-p",
        "price_per_unit=1e-4",
        "-o",
        str(out),
        store=store,
        check_ok=True,
    )
    data = json.loads(out.read_text())
    data["state"]["train_accuracy"] = 1.0
    out.write_text(json.dumps(data))
    with pytest.raises(InputError, match="does not match its sha256"):
        load_policy(out)
    data["version"] = 2
    out.write_text(json.dumps(data))
    with pytest.raises(InputError, match="format version 2 is not supported"):
        load_policy(out)


def test_level_transfer_and_contamination_filter(ponder: Any, store: Path) -> None:
    result = ponder(
        "evaluate",
        "-d",
        "math500",
        "--train-level",
        "1",
        "--train-level",
        "2",
        "--train-level",
        "3",
        "--level",
        "4",
        "--level",
        "5",
        "-P",
        "sweet_spot",
        "--n-boot",
        "200",
        "--json",
        store=store,
        check_ok=True,
    )
    data = json.loads(result.stdout)
    assert data["protocol"].startswith(
        "fit on math500 (levels 1, 2, 3), evaluated on math500 (levels 4, 5)"
    )
    assert data["n_problems"] == 45
    prices = Path(__file__).parents[2] / "examples/prices/routellm_gsm8k.json"
    clean = ponder(
        "evaluate",
        "-d",
        "gsm8k",
        "--cost",
        "calls",
        "--prices",
        str(prices),
        "--exclude-contaminated",
        "-P",
        "cascade",
        "--n-boot",
        "200",
        "--json",
        store=store,
        check_ok=True,
    )
    assert 1250 < json.loads(clean.stdout)["n_problems"] < 1319


def _own_sweep_csv(path: Path, seeds: int = 1) -> tuple[dict[tuple[str, int], float], float]:
    """A user's own sweep: problem, model, budget, correct and token columns only.

    Returns the accuracy of every (model, budget) cell and the share of problems some cell
    solves (the oracle's accuracy), computed here from the rows written.
    """
    rng = np.random.default_rng(7)
    lines = ["item_id,llm,max_tokens,is_right,out_tok"]
    hits: dict[tuple[str, int], list[int]] = {}
    solved = 0
    for p in range(30):
        any_right = 0
        ease = rng.uniform()
        for model, skill in (("small", 0.3), ("big", 0.6)):
            for budget in (256, 1024, 4096):
                for _ in range(seeds):
                    right = int(rng.uniform() < min(1.0, skill * budget / 4096 + 0.5 * ease))
                    tokens = int(budget * rng.uniform(0.3, 1.0))
                    lines.append(f"q{p},{model},{budget},{right},{tokens}")
                    hits.setdefault((model, budget), []).append(right)
                    any_right |= right
        solved += any_right
    path.write_text("\n".join(lines) + "\n")
    return {key: float(np.mean(v)) for key, v in hits.items()}, solved / 30


def test_own_csv_without_answers_same_accuracy_in_curves_and_evaluate(
    ponder: Any, tmp_path: Path
) -> None:
    """README's bring-your-own-data example, end to end: import -> curves -> evaluate."""
    csv = tmp_path / "my.csv"
    expected, solvable = _own_sweep_csv(csv)
    store = tmp_path / "own.sqlite"
    ponder(
        "import",
        str(csv),
        "--map",
        "problem_id=item_id",
        "--map",
        "correct=is_right",
        "--map",
        "budget=max_tokens",
        "--map",
        "model=llm",
        "--map",
        "output_tokens=out_tok",
        "--dataset",
        "mine",
        "--budget-kind",
        "hard_cap",
        store=store,
        check_ok=True,
    )
    curves = json.loads(ponder("curves", "-d", "mine", "--json", store=store, check_ok=True).stdout)
    recorded = {(r["model"], int(r["budget"])): r["accuracy"] for r in curves if not r["derived"]}
    assert recorded == pytest.approx(expected)
    result = ponder("evaluate", "-d", "mine", "--json", "--n-boot", "100", store=store)
    assert result.returncode == 0, result.stderr
    evaluation = json.loads(result.stdout)
    uniform = {p["label"]: p["accuracy"] for p in evaluation["points"] if p["family"] == "uniform"}
    assert uniform == pytest.approx(
        {f"uniform {m}|default|{b}": acc for (m, b), acc in expected.items()}
    )
    oracle = next(p for p in evaluation["points"] if p["label"] == "oracle")
    assert oracle["accuracy"] == pytest.approx(solvable)
    # Families that need answers (or ladder data) cannot run here; they are listed with why.
    not_run = {n["family"]: n["reason"] for n in evaluation["not_run"]}
    assert {f: not_run.pop(f) for f in ("router", "cascade", "adaptive_consistency")} == {
        "router": "needs both think and no-think configurations",
        "cascade": "escalates when samples disagree: needs the extracted answers",
        "adaptive_consistency": "stops when samples agree: needs the extracted answers",
    }
    from ponder.evaluate.catalog import ONLINE

    for family in ONLINE:  # reading the generation needs a live sweep's probe ladder
        assert "needs ladder data" in not_run.pop(family)
    assert set(not_run) <= {"dynasor_cot", "deer", "adaptive_consistency_beta", "esc"}
    assert all(reason.startswith(family) for family, reason in not_run.items())
    # The text report: an 80-column table, the skipped families, a one-line conclusion.
    text = ponder("evaluate", "-d", "mine", "--n-boot", "100", store=store, check_ok=True).stdout
    lines = text.rstrip("\n").splitlines()
    start = next(i for i, x in enumerate(lines) if x.lstrip().startswith("family"))
    end = next(i for i in range(start + 2, len(lines)) if lines[i].startswith("acc, cost:"))
    assert all(len(x.rstrip()) <= 80 for x in lines[start - 1 : end]), text
    assert "not run: cascade (escalates when samples disagree" in text
    assert lines[-1].startswith("Conclusion: ") and evaluation["conclusion"] in lines[-1]
    assert "nan" not in text.lower() and "–" not in text


@pytest.mark.parametrize(
    ("policy", "param", "expected"),
    [
        (
            "adaptive",
            "price_per_unit=abc",
            "parameter price_per_unit: expected number, got 'abc'; valid parameters for "
            "adaptive: price_per_unit (number, required), configs (list of configs or null), "
            "samples (integer)",
        ),
        ("adaptive", "bogus=1", "unknown parameter 'bogus'; valid parameters for adaptive: "),
        (
            "uniform",
            'config={"model": "r1',
            'parameter config: expected config (a JSON object like {"model": "m", "mode": '
            '"think", "budget": 4096}), got \'{"model": "r1\'',
        ),
        ("uniform", "config=5", "parameter config: expected config"),
        ("uniform", "samples=2", "missing parameter 'config'; valid parameters for uniform: "),
        ("adaptive", "price_per_unit=-1", "price_per_unit must be"),
        ("sweet_spot", "tolerance=best2", "parameter tolerance: expected 'best' | 'noise'"),
        ("cascade", "samples=1.5", "parameter samples: expected integer, got 1.5"),
    ],
)
def test_fit_bad_parameters_one_line_error(
    ponder: Any, tmp_path: Path, policy: str, param: str, expected: str
) -> None:
    """Bad -p values: one line naming the parameter and the valid keys, exit 1, no file.

    Parameters are checked before the store is read, so no store is needed to see the error.
    """
    own = tmp_path / "absent.sqlite"
    out = tmp_path / "p.json"
    result = ponder("fit", policy, "-d", "mine", "-p", param, "-o", str(out), store=own)
    line = _error(result)
    assert expected in line, line
    assert "Traceback" not in result.stderr
    assert not out.exists() and not own.exists()


def test_readme_python_example_adapts_to_difficulty(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run the README's "From Python" block on the recorded data: the level-1 and level-5
    problems get different configurations, as the example claims."""
    import re

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("From Python:") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    exec(code.group(1).replace("/tmp/ponder.sqlite", str(store)), {})
    printed = capsys.readouterr().out.splitlines()
    decisions = dict(
        m.groups() for line in printed if (m := re.fullmatch(r"([15]) (\S+\|\S+\|\S+)", line))
    )
    assert set(decisions) == {"1", "5"}
    assert decisions["1"] != decisions["5"]
    accuracy, cost = map(float, printed[-1].split())
    assert 0 < accuracy <= 1 and cost > 0
