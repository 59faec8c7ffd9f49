"""`ponder demo` on the built-in sweep, from nothing but the package: no recorded data, no
network, no model. Expected figures come from the shipped Parquet files read with pyarrow
and a plain groupby, never from ponder's own analysis."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from ponder.builtin import builtin_folder


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def _report_cells(html: str) -> pd.DataFrame:
    """The report's 'All cells' table, parsed from the HTML."""
    section = html[html.index('<h2 id="cells">') :]
    header = re.findall(r"<th(?: [^>]*)?>(.*?)</th>", section[: section.index("</thead>")])
    rows = [
        re.findall(r"<td(?: [^>]*)?>(.*?)</td>", row)
        for row in re.findall(r"<tr>(.*?)</tr>", section[: section.index("</table>")])
    ]
    return pd.DataFrame([r for r in rows if r], columns=header)


@pytest.fixture
def no_recorded_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "no-shared-data"
    empty.mkdir()
    monkeypatch.setenv("PONDER_SHARED_DATA", str(empty))


def test_demo_on_the_builtin_sweep_alone(
    ponder: Any, no_recorded_data: None, tmp_path: Path
) -> None:
    out = tmp_path / "demo"
    result = ponder("demo", "--out", str(out), "--n-boot", "200", check_ok=True)
    assert f"report: {out / 'report.html'}" in result.stdout
    # It says how to add the recorded datasets and how to run a model.
    assert "`ponder data pull NAME`" in result.stdout
    assert "`ponder demo --recorded`" in result.stdout
    assert "`ponder demo --live`" in result.stdout
    # The claims suite in short form: a row per claim with its verdict counts, and the
    # report's claims section with a sub-section per claim.
    assert "claims (95% bootstrap intervals" in result.stdout
    html = (out / "report.html").read_text()
    assert '<h2 id="claims">' in html
    from ponder.claims import all_claims

    for claim in all_claims():
        row = next(line for line in result.stdout.splitlines() if claim.title in line)
        counts = [int(v) for v in row.split(claim.title)[1].split()]
        assert counts and sum(counts) >= 1, row
        assert f'id="claim-{claim.id}"' in html
    # A curve for each model: its think cells at every budget, with the accuracy a plain
    # groupby of the shipped rows gives.
    raw = pq.read_table(builtin_folder() / "outcomes.parquet").to_pandas()
    problems = pq.read_table(builtin_folder() / "problems.parquet").to_pandas()
    cells = _report_cells((out / "report.html").read_text())
    shown = cells[cells["budget"] != "–"]
    for (model, mode), rows in raw[raw["budget"].notna()].groupby(["model", "mode"]):
        accuracy = rows.groupby("budget")["correct"].mean()
        mine = shown[(shown["model"] == model) & (shown["mode"] == mode)]
        assert [int(b) for b in mine["budget"]] == [int(b) for b in accuracy.index]
        assert list(mine["accuracy"]) == [f"{a:.3f}" for a in accuracy]
        assert set(mine["dataset"]) == set(rows["dataset"])
    assert set(shown["model"]) == set(raw["model"]) and len(set(raw["model"])) == 2
    # The demo's store holds exactly the shipped sweep.
    conn = __import__("sqlite3").connect(out / "demo.sqlite")
    try:
        assert conn.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0] == len(raw)
        assert conn.execute("SELECT COUNT(*) FROM problems").fetchone()[0] == len(problems)
        chains = conn.execute("SELECT COUNT(*) FROM chains").fetchone()[0]
    finally:
        conn.close()
    assert chains == pq.read_metadata(builtin_folder() / "chains.parquet").num_rows
    # The sweet spots printed are the best think budget of each model by the same groupby.
    printed = {
        (f[0], f[1], f[2]): f[3:5]
        for f in (line.split() for line in result.stdout.splitlines())
        if len(f) == 8 and f[0] in set(raw["model"])
    }
    assert printed
    for (model, dataset, mode), (budget, accuracy) in printed.items():
        rows = raw[(raw["model"] == model) & (raw["dataset"] == dataset) & (raw["mode"] == mode)]
        curve = rows.groupby("budget")["correct"].mean()
        best = curve[curve == curve.max()].index.min()  # the smaller budget on ties
        assert (int(budget), accuracy) == (int(best), f"{curve.max():.3f}")


def test_demo_rebuilds_its_store(ponder: Any, no_recorded_data: None, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    args = ("demo", "--out", str(out), "--n-boot", "100", "--no-policies", "--no-claims")
    ponder(*args, check_ok=True)
    first = (out / "demo.sqlite").stat().st_size
    ponder(*args, check_ok=True)
    conn = __import__("sqlite3").connect(out / "demo.sqlite")
    try:
        n = conn.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0]
        imports = conn.execute("SELECT COUNT(*) FROM imports").fetchone()[0]
    finally:
        conn.close()
    assert n == pq.read_metadata(builtin_folder() / "outcomes.parquet").num_rows
    assert imports == 1 and first > 0
    assert sorted(p.name for p in out.iterdir()) == ["demo.sqlite", "report.html"]


def test_demo_recorded_without_data_is_one_line(
    ponder: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PONDER_SHARED_DATA", str(tmp_path / "absent"))
    result = ponder("demo", "--recorded", "--out", str(tmp_path / "o"))
    assert result.returncode == 1
    line = _one_error_line(result.stderr)
    assert "recorded datasets not found" in line and "ponder data pull" in line
    assert not (tmp_path / "o").exists()


def test_demo_live_without_engine_says_make_local(ponder: Any, tmp_path: Path) -> None:
    """With the engine hidden from the import system, --live stops in one line before any
    model is fetched or any store is made."""
    probe = (
        "import importlib.util as u, sys\n"
        "real = u.find_spec\n"
        "u.find_spec = lambda name, *a: None if name == 'llama_cpp' else real(name, *a)\n"
        "sys.modules['llama_cpp'] = None\n"
        "from ponder.cli import main\n"
        "sys.argv = ['ponder', *sys.argv[1:]]\n"
        "main()\n"
    )
    out = tmp_path / "o"
    result = subprocess.run(
        [sys.executable, "-c", probe, "demo", "--live", "--out", str(out)],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "PONDER_DATA_DIR": str(tmp_path / "d")},
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    line = _one_error_line(result.stderr)
    assert "--live needs the local engine" in line and "`make local`" in line
    assert not out.exists() and not (tmp_path / "d" / "models").exists()


def test_demo_live_unknown_model_is_one_line(ponder: Any, tmp_path: Path) -> None:
    result = ponder("demo", "--live", "--live-model", "nope-7b", "--out", str(tmp_path / "o"))
    assert result.returncode == 1
    assert "nope-7b" in _one_error_line(result.stderr)
    assert not (tmp_path / "o").exists()


def test_live_spec_is_short_and_apart_from_the_builtin_sweep() -> None:
    from ponder.cli.demo_cmd import LIVE_DATASET, live_spec
    from ponder.sweep import build_plan

    plan = build_plan(live_spec("qwen2.5-coder-0.5b", 2, 1))
    manifest = json.loads((builtin_folder() / "manifest.json").read_text())
    builtin_datasets = set(pq.read_table(builtin_folder() / "problems.parquet")["dataset"])
    assert LIVE_DATASET not in builtin_datasets and manifest["sweep"] != plan.spec.name
    # 4 levels x 2 problems x (think ladder + no-think), all greedy: 16 items.
    assert len(plan.items) == 16
    assert {i.problem.dataset for i in plan.items} == {LIVE_DATASET}
    assert {i.mode_label for i in plan.items} == {"think-greedy", "no-think-greedy"}
    ladders = {i.strategy.budgets for i in plan.items if i.strategy.kind == "ladder"}
    assert ladders == {(32, 64, 128, 256)}


def test_damaged_builtin_sweep_is_one_line_and_keeps_the_last_store(tmp_path: Path) -> None:
    """The demo run on a copy of the shipped folder (patched in), first intact, then with one
    byte changed: a checksum error in one line, and the last demo's store is left as it was."""
    import os
    import shutil

    copy = tmp_path / "sweep"
    shutil.copytree(builtin_folder(), copy)
    probe = (
        "import sys\nfrom pathlib import Path\nimport ponder.builtin as b\n"
        f"b.builtin_folder = lambda: Path({str(copy)!r})\n"
        "from ponder.cli import main\nsys.argv = ['ponder', *sys.argv[1:]]\nmain()\n"
    )
    out = tmp_path / "o"
    env = {
        **os.environ,
        "PONDER_DATA_DIR": str(tmp_path / "d"),
        "PONDER_SHARED_DATA": str(tmp_path / "none"),
    }

    def demo() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-c",
                probe,
                "demo",
                "--out",
                str(out),
                "--no-policies",
                "--no-claims",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )

    assert demo().returncode == 0
    before = (out / "demo.sqlite").read_bytes()
    damaged = copy / "problems.parquet"
    raw = bytearray(damaged.read_bytes())
    raw[100] ^= 0x01
    damaged.write_bytes(bytes(raw))
    result = demo()
    assert result.returncode == 1
    line = _one_error_line(result.stderr)
    assert "problems.parquet: sha256" in line and "nothing was written" in line
    assert (out / "demo.sqlite").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["demo.sqlite", "report.html"]


def test_policy_summary_is_the_cross_validated_conclusion(ponder: Any, tmp_path: Path) -> None:
    """On a sweep big enough to cross-validate (fake backend, 20 problems, patched in as the
    built-in one), the demo's policy line is `ponder evaluate`'s conclusion for that data over
    the demo's families."""
    import os

    from ponder.builtin.export import export_sweep
    from ponder.store import Store
    from ponder.sweep import parse_spec, run_sweep

    problems = tmp_path / "probs.jsonl"
    problems.write_text(  # the fake's answer is the sum of the integers: gold is that sum
        "".join(
            json.dumps(
                {
                    "problem_id": f"p{i:02d}",
                    "text": "Add " + ", ".join(str(k) for k in range(1, 2 + i % 5)) + ".",
                    "gold": str(sum(range(1, 2 + i % 5))),
                    "level": 1 + i % 5,
                }
            )
            + "\n"
            for i in range(20)
        )
    )
    spec = parse_spec(
        {
            "name": "pol",
            "problems": [{"file": str(problems), "dataset": "toy"}],
            "models": [
                {"name": "fake-a", "backend": "fake", "options": {"tokens_per_number": 10}},
                {"name": "fake-b", "backend": "fake", "options": {"tokens_per_number": 25}},
            ],
            "modes": ["think", "no-think"],
            "budgets": {"ladder": [8, 16, 32, 64, 128]},
            "reserve": 8,
            "sampling": [{"temperature": 0}],
        },
        source=str(tmp_path / "spec.yaml"),
    )
    with Store(tmp_path / "s.sqlite") as store:
        run_sweep(spec, store, backoff_s=0)
    export_sweep(tmp_path / "s.sqlite", "pol", tmp_path / "sweep")
    probe = (
        "import sys\nfrom pathlib import Path\nimport ponder.builtin as b\n"
        f"b.builtin_folder = lambda: Path({str(tmp_path / 'sweep')!r})\n"
        "from ponder.cli import main\nsys.argv = ['ponder', *sys.argv[1:]]\nmain()\n"
    )
    out = tmp_path / "o"
    result = subprocess.run(
        [sys.executable, "-c", probe, "demo", "--out", str(out), "--n-boot", "200", "--no-claims"],
        capture_output=True,
        text=True,
        env={**os.environ, "PONDER_DATA_DIR": str(tmp_path / "d"), "COLUMNS": "400"},
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    from ponder.evaluate.catalog import DEMO_FAMILIES

    evaluated = json.loads(
        ponder(
            "evaluate",
            "-d",
            "toy",
            *[arg for family in DEMO_FAMILIES for arg in ("-P", family)],
            "--n-boot",
            "200",
            "--json",
            store=out / "demo.sqlite",
            check_ok=True,
        ).stdout
    )
    assert evaluated["n_problems"] == 20
    line = next(x for x in result.stdout.splitlines() if x.strip().startswith("toy ("))
    assert line.strip() == f"toy (20 problems): {evaluated['conclusion']}"
    assert "policies vs the best uniform budget" in result.stdout
