"""`ponder demo --recorded` (and `--data DIR`): the built-in sweep plus the recorded public
datasets, checked against a plain groupby of the raw recorded files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from ponder.builtin import builtin_folder


def test_demo_recorded_runs_from_nothing(ponder: Any, shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = ponder(
        "demo",
        "--data",
        str(shared_data),
        "--out",
        str(out),
        "--n-boot",
        "200",
        "--no-policies",
        "--no-claims",
        check_ok=True,
    )
    assert f"report: {out / 'report.html'}" in result.stdout
    assert (out / "report.html").stat().st_size > 100_000
    # --data implies --recorded: the built-in sweep is imported too, and nothing is suggested.
    assert "also imported: " in result.stdout and "ponder demo --recorded" not in result.stdout
    assert "sweet spots" in result.stdout
    # The demo's figures against a plain groupby of the raw sweep: for every model and
    # benchmark, the best recorded budget and its accuracy as printed.
    raw = pd.concat(
        pd.read_csv(shared_data / f"reasoning_budget_sweep/reasoning_budget_sweep_{name}.csv")
        for name in ("aime", "math500")
    )
    by_cell = raw.groupby(["model", "benchmark", "budget"])["correct"].mean()
    builtin_models = set(pq.read_table(builtin_folder() / "outcomes.parquet")["model"].to_pylist())
    printed = {
        (f[0], f[1]): f[3:5]
        for f in (line.split() for line in result.stdout.splitlines())
        if len(f) == 8 and f[2] == "think" and f[0] not in builtin_models
    }
    budgets = by_cell.groupby(level=["model", "benchmark"]).size()
    pairs = budgets[budgets >= 2].index  # a sweet spot needs two recorded budgets
    assert len(pairs) == 19 and set(printed) == set(pairs)
    for (model, benchmark), (budget, accuracy) in printed.items():
        curve = by_cell.loc[(model, benchmark)]
        assert (int(budget), accuracy) == (int(curve.idxmax()), f"{curve.max():.3f}")
    # The demo's sweet-spot table shows the same values, under the same names, as
    # `ponder curves --table sweet-spots` on the demo's store (issue 7).
    from ponder.curves.sweetspot import SWEET_SPOT_LABELS

    header = next(line for line in result.stdout.splitlines() if "best budget" in line)
    for column in ("sweet_spot", "sweet_spot_accuracy", "sweet_spot_share", "sweet_spot_min"):
        assert SWEET_SPOT_LABELS[column] in header
    sweet = json.loads(
        ponder(
            "curves",
            "--table",
            "sweet-spots",
            "--json",
            "--n-boot",
            "200",
            store=out / "demo.sqlite",
            check_ok=True,
        ).stdout
    )
    rows = {tuple(line.split()[:3]): line.split()[3:] for line in result.stdout.splitlines()}
    assert len(sweet) >= 10
    for record in sweet:
        shown = rows[(record["model"], record["dataset"], record["mode"])]
        assert shown[:4] == [
            f"{record['sweet_spot']:.0f}",
            f"{record['sweet_spot_accuracy']:.3f}",
            f"{record['sweet_spot_share']:.3f}",
            f"{record['sweet_spot_min']:.0f}",
        ]


def test_demo_recorded_flag_uses_the_shared_data(
    ponder: Any, shared_data: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    """`--recorded` finds $PONDER_SHARED_DATA and imports it beside the built-in sweep."""
    monkeypatch.setenv("PONDER_SHARED_DATA", str(shared_data))
    out = tmp_path / "demo"
    ponder(
        "demo",
        "--recorded",
        "--out",
        str(out),
        "--n-boot",
        "100",
        "--no-policies",
        "--no-claims",
        check_ok=True,
    )
    import sqlite3

    conn = sqlite3.connect(out / "demo.sqlite")
    try:
        datasets = {r[0] for r in conn.execute("SELECT DISTINCT dataset FROM outcomes")}
    finally:
        conn.close()
    builtin = set(pq.read_table(builtin_folder() / "outcomes.parquet")["dataset"].to_pylist())
    assert builtin <= datasets
    assert {"aime24", "aime25", "math500", "gsm8k", "mmlu_pro_math"} <= datasets
