"""The generated HTML, read as a person would: headings, folded tables, number formats,
the policies conclusion."""

from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd
import pytest

from ponder.curves import compute_curves
from ponder.evaluate.metrics import Summary
from ponder.report import build_report
from ponder.report.html import html_table, number_format, policy_conclusion


def test_number_format_is_one_per_column() -> None:
    budgets = number_format([512.0, 1024.0, 16384.0, np.nan])
    assert [budgets(v) for v in (512.0, 1024.0, 16384.0, np.nan)] == ["512", "1,024", "16,384", "–"]
    accuracy = number_format([0.5, 1.0, 0.0, 0.125])
    assert [accuracy(v) for v in (0.5, 1.0, 0.0, 0.125)] == ["0.500", "1.000", "0.000", "0.125"]
    tokens = number_format([64.0, 942.7, 3124.5])
    assert [tokens(v) for v in (64.0, 942.7, 3124.5)] == ["64", "943", "3,124"]
    flags = number_format([True, False])
    assert [flags(True), flags(False)] == ["yes", "no"]


def test_html_table_prints_a_column_the_same_way() -> None:
    frame = pd.DataFrame({"budget": [64.0, 128.0, 2048.0], "accuracy": [0.5, 1.0, 0.25]})
    html = str(html_table(frame, {"budget": "budget", "accuracy": "accuracy"}))
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", html)
    assert cells == ["64", "0.500", "128", "1.000", "2,048", "0.250"]


@pytest.fixture(scope="module")
def report(two_source_frame: tuple[pd.DataFrame, pd.DataFrame], tmp_path_factory) -> str:  # type: ignore[no-untyped-def]
    frame, runs = two_source_frame
    curves = compute_curves(frame, n_boot=50, seed=0)
    out = tmp_path_factory.mktemp("report") / "r.html"
    build_report(frame, curves, runs, out, n_boot=50, evaluations=[("aime25", _summary())])
    return out.read_text()


def test_same_dataset_name_from_two_sources_is_told_apart(report: str) -> None:
    headings = re.findall(r"<h[23][^>]*>([^<]*)</h[23]>", report)
    assert "aime25 · sweep_src, 30 problems" in headings
    assert "aime25 · board_src, 15 problems" in headings
    # Plot titles carry the same label (alt text names the dataset, the title the source).
    assert report.count("aime25 · sweep_src, 30 problems") >= 2
    # Tables name the source next to the dataset.
    sweet = report[report.index('id="sweet"') : report.index('id="passk"')]
    header = re.findall(r"<th[^>]*>([^<]*)</th>", sweet)
    assert header[header.index("dataset") + 1] == "source"
    assert "sweep_src" in sweet


def test_passk_table_is_folded(report: str) -> None:
    section = report[report.index('id="passk"') : report.index('id="policies"')]
    assert "<details" in section
    opened = section.index("<details")
    assert section.index("pass@2") > opened
    assert section.index("</details>") > section.index("pass@2")


def test_budget_column_of_the_cells_table_has_no_decimals(report: str) -> None:
    section = report[report.index('id="cells"') : report.index('id="methods"')]
    header = re.findall(r"<th[^>]*>([^<]*)</th>", section)
    column = header.index("budget")
    for row in re.findall(r"<tr>(.*?)</tr>", section)[1:]:
        value = re.findall(r"<td[^>]*>([^<]*)</td>", row)[column]
        assert re.fullmatch(r"[\d,]+|–", value), value


def test_scatter_points_are_all_listed(report: str) -> None:
    section = report[
        report.index("aime25 · board_src, 15 problems</h3>") : report.index('id="sweet"')
    ]
    table = section[section.index("<details") : section.index("</details>")]
    assert all(model in table for model in ("alpha", "beta", "gamma"))


def _summary(saved: float = 0.30, lo: float = 0.12, hi: float = 0.45) -> Summary:
    """A hand-made evaluation: one policy saving `saved` [lo, hi] of the baseline's cost."""
    points = pd.DataFrame(
        {
            "label": ["uniform a|4096", "uniform a|1024", "adaptive price=1", "oracle"],
            "family": ["uniform", "uniform", "adaptive", "oracle"],
            "accuracy": [0.60, 0.40, 0.61, 0.80],
            "accuracy_ci_low": [0.5, 0.3, 0.5, 0.7],
            "accuracy_ci_high": [0.7, 0.5, 0.7, 0.9],
            "mean_cost": [4000.0, 1000.0, 2800.0, 1500.0],
        }
    )
    families = pd.DataFrame(
        {
            "family": ["uniform", "adaptive", "oracle"],
            "best_label": ["uniform a|4096", "adaptive price=1", "oracle"],
            "saved_at_iso_accuracy": [0.0, saved, 0.6],
            "saved_at_iso_accuracy_ci_low": [0.0, lo, 0.5],
            "saved_at_iso_accuracy_ci_high": [0.0, hi, 0.7],
            "gain_at_iso_cost": [0.0, np.nan, 0.2],
            "gain_at_iso_cost_ci_low": [0.0, np.nan, 0.1],
            "gain_at_iso_cost_ci_high": [0.0, np.nan, 0.3],
            "frontier_gain": [0.0, 0.05, 0.2],
            "frontier_gain_ci_low": [0.0, 0.0, 0.1],
            "frontier_gain_ci_high": [0.0, 0.1, 0.3],
            "frontier_saving": [0.0, 0.3, 0.6],
            "frontier_saving_ci_low": [0.0, 0.1, 0.5],
            "frontier_saving_ci_high": [0.0, 0.4, 0.7],
            "cost_to_95pct": [3000.0, 2500.0, 1200.0],
            "uniform_cost_to_95pct": [3000.0, 3000.0, 3000.0],
            "calibration_error": [np.nan, 0.05, np.nan],
        }
    )
    return Summary(
        protocol="5-fold cross-validation",
        unit="tokens",
        n_problems=30,
        baseline="uniform a|4096",
        points=points,
        families=families,
    )


def test_conclusion_names_the_winner_with_its_interval() -> None:
    text = policy_conclusion(_summary())
    assert text.startswith("adaptive beats the best uniform setting (uniform a|4096")
    assert "accuracy 0.600 at 4,000 tokens per request" in text
    assert "30% less cost at the same accuracy (95% CI +12% to +45%)" in text


def test_conclusion_says_when_nothing_beats_the_baseline() -> None:
    text = policy_conclusion(_summary(saved=0.10, lo=-0.05, hi=0.2))
    assert text.startswith("No policy beats the best uniform setting (uniform a|4096")
    assert "the closest, adaptive, has 10% less cost at the same accuracy" in text
    assert "(95% CI -5% to +20%)" in text


def test_policies_section_starts_with_its_conclusion(report: str) -> None:
    section = report[report.index('id="policies"') :]
    first = html.unescape(re.sub(r"<[^>]+>", "", section[: section.index("</div>")]))
    # The evaluation's own one-line conclusion when it has one, else the report's.
    summary = _summary()
    expected = getattr(summary, "conclusion", "") or policy_conclusion(summary)
    assert expected in " ".join(first.split())
    # Undefined figures say why instead of printing a dash with an interval.
    table = section[section.index("<table") : section.index("</table>")]
    assert "– [" not in table
    assert "undefined (a)" in table
    assert "no setting of the policy is as cheap as the baseline" in section
    # Terms are explained.
    assert "<dt>cost saved at the baseline's accuracy</dt>" in section


def test_sweet_spot_columns_are_named_as_everywhere_else(report: str) -> None:
    from ponder.curves import sweetspot

    labels = getattr(sweetspot, "SWEET_SPOT_LABELS", None)
    best = labels["sweet_spot"] if labels else "sweet spot"
    section = report[report.index('id="sweet"') : report.index('id="passk"')]
    header = [html.unescape(h) for h in re.findall(r"<th[^>]*>([^<]*)</th>", section)]
    assert best in header
    # The explanation above the table quotes the same name.
    assert f'("{best}")' in section


def test_budget_section_counts_its_derived_lower_bounds(report: str) -> None:
    # Caps 512 and 4096 for two models: 1024 and 2048 derived for each.
    section = report[report.index("aime25 · sweep_src, 30 problems</h2>") :]
    section = section[: section.index("<img")]
    assert "Hollow circles (4) are" in " ".join(section.split())
    assert "derived lower bounds" in section


def test_policies_table_shows_the_nested_figures() -> None:
    """With operating points chosen per fold, the table shows the evaluation's own held-out
    figures (what `ponder evaluate` prints), with a CI only where one point won every fold."""
    from ponder.report.html import _policy_section

    summary = _summary()
    families = summary.families.assign(
        best_accuracy=[0.533, 0.45, 0.7],
        best_accuracy_cost=[3900.0, 2700.0, 1500.0],
        best_folds=[5, 3, 5],
    )
    nested = Summary(
        protocol=summary.protocol,
        unit=summary.unit,
        n_problems=summary.n_problems,
        baseline=summary.baseline,
        points=summary.points,
        families=families,
        baseline_figures={
            "accuracy": 0.533,
            "accuracy_ci_low": 0.4,
            "accuracy_ci_high": 0.65,
            "mean_cost": 3900.0,
            "folds": 5,
        },
    )
    table = str(_policy_section("aime25", nested)["table"])
    rows = [re.findall(r"<td[^>]*>([^<]*)</td>", r) for r in re.findall(r"<tr>(.*?)</tr>", table)]
    by_policy = {row[0]: row for row in rows if row}
    assert by_policy["uniform"][2] == "0.533 [0.400, 0.650]"
    assert by_policy["uniform"][3] == "3,900"
    assert by_policy["adaptive"][1] == "price=1 (chosen in 3 of 5 folds)"
    assert by_policy["adaptive"][2] == "0.450"
    assert by_policy["adaptive"][3] == "2,700"
    assert "accuracy 0.533 at 3,900 tokens" in policy_conclusion(nested)
