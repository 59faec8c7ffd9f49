"""The CLI a new user meets (issue 7): wrong names, `ponder ls`, `data list`, tables at 80
columns, numbers alike within a column, one name per sweet-spot column, `--version`, fast
`--help` without heavy imports, and flags shown as flags.

Expected values come from the hand-built sweep below, computed here in plain Python.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

# A user's own sweep: 4 problems x 2 models x budgets 64 and 128 x 2 samples, plus a third
# model at one large budget. `correct` and tokens are deterministic functions of the row.
MODELS = ("alpha-1b", "beta-7b")
BUDGETS = (64, 128)
PROBLEMS = ("p1", "p2", "p3", "p4")


def _rows() -> list[dict[str, Any]]:
    rows = []
    for m, model in enumerate(MODELS):
        for budget in BUDGETS:
            for p, problem in enumerate(PROBLEMS):
                for sample in range(2):
                    correct = int((p + sample + m + budget // 64) % 3 == 0)
                    tokens = budget - 3 * p - sample
                    rows.append(
                        {
                            "problem_id": problem,
                            "model": model,
                            "budget": budget,
                            "correct": correct,
                            "output_tokens": tokens,
                            "sample_idx": sample,
                        }
                    )
    for p, problem in enumerate(PROBLEMS):
        rows.append(
            {
                "problem_id": problem,
                "model": "gamma-70b-instruct-with-a-rather-long-name",
                "budget": 131072,
                "correct": int(p % 2 == 0),
                "output_tokens": 90000 + p,
                "sample_idx": 0,
            }
        )
    return rows


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    header = list(rows[0])
    lines = [",".join(header)] + [",".join(str(r[h]) for h in header) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def toy_store(ponder: Any, tmp_path: Path) -> Path:
    """A store holding the toy sweep as dataset `toyset`, and one model on dataset `other`."""
    store = tmp_path / "toy.sqlite"
    sweep = _write_csv(tmp_path / "sweep.csv", _rows())
    ponder("import", str(sweep), "--dataset", "toyset", store=store, check_ok=True)
    other = _write_csv(
        tmp_path / "other.csv",
        [
            {"problem_id": "q1", "model": "beta-7b", "budget": 64, "correct": 1},
            {"problem_id": "q2", "model": "beta-7b", "budget": 64, "correct": 0},
        ],
    )
    ponder("import", str(other), "--dataset", "other", store=store, check_ok=True)
    return store


# -- unknown names -------------------------------------------------------------------------


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_unknown_dataset_lists_the_store_and_suggests(ponder: Any, toy_store: Path) -> None:
    line = _one_line_error(ponder("curves", "-d", "toyst", store=toy_store))
    assert line.startswith("error: --dataset 'toyst': unknown dataset")
    assert "did you mean 'toyset'?" in line
    assert "datasets in the store: other, toyset" in line


def test_unknown_model_lists_the_store_and_suggests(ponder: Any, toy_store: Path) -> None:
    line = _one_line_error(ponder("curves", "-m", "alpha1b", store=toy_store))
    assert "--model 'alpha1b': unknown model (did you mean 'alpha-1b'?)" in line
    assert "models in the store: alpha-1b, beta-7b, gamma-70b" in line
    line = _one_line_error(ponder("curves", "-m", "gpt-5", store=toy_store))
    assert "--model 'gpt-5': unknown model" in line and "alpha-1b, beta-7b" in line


def test_known_names_without_outcomes_together(ponder: Any, toy_store: Path) -> None:
    line = _one_line_error(ponder("curves", "-d", "other", "-m", "alpha-1b", store=toy_store))
    assert "no outcomes for model alpha-1b on dataset other" in line
    assert "that model has outcomes on: toyset" in line


def test_report_checks_names_too(ponder: Any, toy_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    line = _one_line_error(ponder("report", "-o", str(out), "-d", "toyst", store=toy_store))
    assert "did you mean 'toyset'?" in line
    assert not out.exists()


# -- ponder ls -----------------------------------------------------------------------------


def test_ls_json_counts(ponder: Any, toy_store: Path) -> None:
    rows = _rows()
    result = ponder("ls", "--json", store=toy_store, check_ok=True)
    inv = json.loads(result.stdout)
    assert inv["outcomes"] == len(rows) + 2
    by_name = {d["name"]: d for d in inv["datasets"]}
    assert set(by_name) == {"toyset", "other"}
    toy = by_name["toyset"]
    assert (toy["problems"], toy["models"], toy["outcomes"]) == (4, 3, len(rows))
    assert toy["runs"] == 3  # one run per model of the imported file
    assert sum(toy["sources"].values()) == 3
    assert all(source.startswith("import:sweep.csv") for source in toy["sources"])
    per_model: dict[str, int] = defaultdict(int)
    for r in rows:
        per_model[r["model"]] += 1
    per_model["beta-7b"] += 2
    assert {m["name"]: m["outcomes"] for m in inv["models"]} == per_model
    assert {m["name"]: m["datasets"] for m in inv["models"]}["beta-7b"] == 2
    per_budget: dict[int, int] = defaultdict(int)
    for r in rows:
        per_budget[r["budget"]] += 1
    per_budget[64] += 2
    assert [(b["budget"], b["outcomes"]) for b in inv["budgets"]] == sorted(per_budget.items())
    assert inv["modes"] == [{"name": "default", "outcomes": len(rows) + 2}]


def test_ls_table_names_everything(ponder: Any, toy_store: Path) -> None:
    out = ponder("ls", store=toy_store, check_ok=True).stdout
    for name in ("toyset", "other", "alpha-1b", "beta-7b", "default", "131072"):
        assert name in out
    assert "datasets (-d)" in out and "models (-m)" in out


def test_ls_without_a_store_is_one_line(ponder: Any, tmp_path: Path) -> None:
    line = _one_line_error(ponder("ls", store=tmp_path / "missing.sqlite"))
    assert "no store at" in line
    assert not (tmp_path / "missing.sqlite").exists()


# -- data list -----------------------------------------------------------------------------


def test_data_list_shows_dataset_names(ponder: Any) -> None:
    records = json.loads(ponder("data", "list", "--json", check_ok=True).stdout)
    by_name = {r["name"]: r for r in records}
    assert by_name["reasoning_budget_sweep"]["datasets"] == ["aime24", "aime25", "math500"]
    assert by_name["routellm_gsm8k"]["datasets"] == ["gsm8k"]
    assert by_name["matharena_competitions"]["problem_texts_for"] == ["aime24", "aime25"]
    table = ponder("data", "list", check_ok=True).stdout
    assert "datasets (-d)" in table and "aime24, aime25, math500" in table


def test_data_list_names_match_a_real_import(shared_data: Path, tmp_path: Path) -> None:
    """The source -> dataset names shown by `data list` are what an import really stores."""
    from ponder.cli.data_cmd import PROVIDES
    from ponder.importers import import_paths
    from ponder.store import Store

    with Store(tmp_path / "s.sqlite") as st:
        import_paths(st, [shared_data])
        pairs = st.query(
            "SELECT DISTINCT r.source, o.dataset FROM outcomes o JOIN runs r USING (run_id)",
        )
    stored: dict[str, set[str]] = defaultdict(set)
    for source, dataset in pairs:
        stored[source].add(dataset)
    assert {s: set(d) for s, d in PROVIDES.items()} == dict(stored)


# -- tables --------------------------------------------------------------------------------


def test_format_column_keeps_one_format_per_column() -> None:
    from ponder.cli._tables import format_column

    assert format_column([64.0, 128.0, math.nan], "budget") == ["64", "128", "none"]
    assert format_column([64.0, 128.5], "budget") == ["64.0", "128.5"]
    assert format_column([0.5, 0.123456, 1.0], "rate") == ["0.500", "0.123", "1.000"]
    assert format_column([0.05, -0.1, math.nan], "signed") == ["+0.050", "-0.100", "–"]
    assert format_column([1023.6, 7.0], "tokens") == ["1024", "7"]
    assert format_column([True, False], "flag") == ["yes", "no"]


def _render(store: Path, name: str, width: int, *, wide: bool = False) -> str:
    from ponder.analysis import load_curves
    from ponder.cli.curves_cmd import print_curves_table
    from ponder.store import Store

    with Store(store, create=False, readonly=True) as st:
        curves = load_curves(st, n_boot=200, seed=0)
    frame = {
        "cells": curves.cells,
        "sweet-spots": curves.sweet_spots,
        "pass-at-k": curves.pass_at_k,
        "maj-at-k": curves.maj_at_k,
        "difficulty": curves.difficulty,
    }[name]
    console = Console(width=width, record=True, force_terminal=False, color_system=None)
    print_curves_table(console, frame, name, wide=wide)
    return console.export_text()


TABLE_NAMES = ("cells", "sweet-spots", "pass-at-k", "maj-at-k", "difficulty")


@pytest.mark.parametrize("name", TABLE_NAMES)
def test_tables_fit_80_columns_uncut(toy_store: Path, name: str) -> None:
    text = _render(toy_store, name, 80)
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_cells_at_80_columns_show_every_accuracy_and_integral_budgets(toy_store: Path) -> None:
    text = _render(toy_store, "cells", 80)
    cells: dict[tuple[str, int], list[int]] = defaultdict(list)
    for r in _rows():
        cells[(r["model"], r["budget"])].append(r["correct"])
    tokens = " ".join(text.split())  # numbers are whole words in the rendered table
    for values in cells.values():
        assert f" {sum(values) / len(values):.3f} " in f" {tokens} "
    for budget in ("64", "128", "131072"):
        assert f" {budget} " in f" {tokens} "
    assert "64.0" not in text and "128.0" not in text
    for model in MODELS:
        assert model in text


def test_wide_prints_one_flat_table(toy_store: Path) -> None:
    text = _render(toy_store, "cells", 80, wide=True)
    assert "…" not in text
    header = next(line for line in text.splitlines() if "accuracy" in line)
    for label in ("model", "dataset", "mode", "budget", "problems", "95% low", "truncated"):
        assert label in header


def test_sweet_spot_labels_are_the_same_in_curves_and_demo(toy_store: Path) -> None:
    from ponder.analysis import load_curves
    from ponder.cli.curves_cmd import print_curves_table
    from ponder.cli.demo_cmd import DEMO_SWEET_SPOT_COLUMNS, print_sweet_spots
    from ponder.curves.sweetspot import SWEET_SPOT_LABELS
    from ponder.store import Store

    with Store(toy_store, create=False, readonly=True) as st:
        sweet = load_curves(st, n_boot=200, seed=0).sweet_spots
    assert len(sweet) == 2  # alpha and beta have two budgets each; gamma has one
    outputs = []
    for show in (
        lambda c: print_curves_table(c, sweet, "sweet-spots", wide=False),
        lambda c: print_sweet_spots(c, sweet),
    ):
        console = Console(width=250, record=True, force_terminal=False, color_system=None)
        show(console)
        outputs.append(console.export_text())
    for column in DEMO_SWEET_SPOT_COLUMNS:
        for text in outputs:
            assert SWEET_SPOT_LABELS[column] in text
    # The best budget by hand: the budget with the higher accuracy (smaller on ties).
    for model in ("alpha-1b", "beta-7b"):
        acc = {
            b: sum(r["correct"] for r in _rows() if r["model"] == model and r["budget"] == b)
            for b in BUDGETS
        }
        best = max(BUDGETS, key=lambda b: (acc[b], -b))
        for text in outputs:
            line = next(line for line in text.splitlines() if model in line)
            assert line.split()[3] == str(best)  # model, dataset, mode, best budget


def test_real_tables_fit_80_columns(shared_data: Path, tmp_path: Path) -> None:
    from ponder.analysis import load_curves
    from ponder.cli.curves_cmd import print_curves_table
    from ponder.importers import import_paths
    from ponder.store import Store

    with Store(tmp_path / "s.sqlite") as st:
        import_paths(st, [shared_data])
        curves = load_curves(st, n_boot=200, seed=0)
    for name, frame in (
        ("cells", curves.cells),
        ("sweet-spots", curves.sweet_spots),
        ("pass-at-k", curves.pass_at_k),
        ("difficulty", curves.difficulty),
    ):
        console = Console(width=80, record=True, force_terminal=False, color_system=None)
        print_curves_table(console, frame, name, wide=False)
        text = console.export_text()
        assert "…" not in text, name
        assert max(len(line) for line in text.splitlines()) <= 80, name
        words = set(text.split())
        if name == "cells":
            for value in frame["accuracy"]:
                assert f"{value:.3f}" in words


# -- version, help ---------------------------------------------------------------------------


def test_version(ponder: Any) -> None:
    result = ponder("--version", check_ok=True)
    assert result.stdout.strip() == f"ponder {importlib.metadata.version('ponder')}"


COMMANDS = (
    (),
    ("demo",),
    ("import",),
    ("ls",),
    ("curves",),
    ("report",),
    ("fit",),
    ("evaluate",),
    ("grade",),
    ("export",),
    ("data",),
    ("data", "list"),
    ("data", "pull"),
    ("run",),
    ("sweep", "run"),
)
HEAVY = ("pandas", "numpy", "matplotlib", "sklearn", "math_verify", "scipy", "sympy")

_PROBE = """
import json, sys
command, heavy_names = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))
sys.argv = ["ponder", *command, "--help"]
from ponder.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = sorted({m.split(".")[0] for m in sys.modules} & heavy_names)
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "ponder")
def test_help_imports_nothing_heavy(command: tuple[str, ...], tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(list(command)), json.dumps(list(HEAVY))],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    report = json.loads(result.stderr.strip().splitlines()[-1])
    assert report == {"code": 0, "heavy": []}
    assert "Usage:" in result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "ponder")
def test_help_shows_flags_as_flags(ponder: Any, command: tuple[str, ...]) -> None:
    out = ponder(*command, "--help", check_ok=True).stdout
    assert "<bool>" not in out


def test_help_has_examples(ponder: Any) -> None:
    for command in (("ls",), ("curves",)):
        out = ponder(*command, "--help", check_ok=True).stdout
        assert "Examples:" in out and f"ponder {command[0]}" in out


# -- grade -----------------------------------------------------------------------------------


@pytest.mark.parametrize("response", [r"\boxed{\frac{1}{2}", r"\boxed{}"])
def test_grade_broken_box_extracts_nothing(ponder: Any, response: str) -> None:
    result = ponder("grade", response, "2", "--json", check_ok=True)
    assert json.loads(result.stdout) == {"extracted": None, "match": False}


# -- a new user's mistakes -------------------------------------------------------------------


def test_data_pull_of_a_dataset_name_names_its_sources(ponder: Any) -> None:
    line = _one_line_error(ponder("data", "pull", "aime24"))
    assert "'aime24' is a dataset name, not a source" in line
    assert "pull reasoning_budget_sweep or matharena_competitions" in line


def test_data_pull_of_a_misspelt_source_suggests(ponder: Any) -> None:
    line = _one_line_error(ponder("data", "pull", "routellm-gsm8k"))
    assert "unknown source 'routellm-gsm8k' (did you mean 'routellm_gsm8k'?)" in line


def test_export_rejects_an_unknown_format_by_name(
    ponder: Any, toy_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.csv"
    result = ponder("export", str(out), "--format", "xlsx", store=toy_store)
    assert result.returncode == 2
    assert "'xlsx': expected csv or parquet" in result.stderr
    assert not out.exists()


def test_empty_sweet_spot_table_says_why(ponder: Any, toy_store: Path) -> None:
    out = ponder(
        "curves",
        "--table",
        "sweet-spots",
        "-m",
        "gamma-70b-instruct-with-a-rather-long-name",
        store=toy_store,
        check_ok=True,
    ).stdout
    assert "needs at least two recorded budgets" in out
