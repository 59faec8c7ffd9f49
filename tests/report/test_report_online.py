"""The report's sub-section on policies that read the chain vs the published rules: shown only
when one of them ran, its plain words drawn from the evaluation's numbers, and its one plot."""

from __future__ import annotations

import html
import itertools
import math
import re
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from ponder.evaluate.metrics import Summary
from ponder.report import plots
from ponder.report.html import (
    _policy_section,
    compare_with_rule,
    family_groups,
    online_conclusion,
)

HEADING = "During generation: policies that read the chain vs the published rules"


def _text(markup: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", markup)).split())


def _interval(row: Any, key: str) -> tuple[float, float, float]:
    return tuple(float(row.get(f"{key}{s}", np.nan)) for s in ("", "_ci_low", "_ci_high"))  # type: ignore[return-value]


def _gain_words(row: Any) -> str:
    gain, lo, hi = _interval(row, "gain_at_iso_cost")
    return f"{100 * gain:+.1f} pts, 95% CI {100 * lo:+.1f} to {100 * hi:+.1f}"


def _saving_words(row: Any) -> str:
    saved, lo, hi = _interval(row, "saved_at_iso_accuracy")
    return f"{saved:.1%}, 95% CI {lo:.1%} to {hi:.1%}"


# -- the built-in sweep: a real evaluation with ladder data --------------------------------------


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Summary, str]:
    """The built-in sweep's arith problems, cross-validated with ponder's online families, the
    published rules and one a-priori family; and the report built from it."""
    from ponder.analysis import evaluate_policies, load_curves
    from ponder.builtin import builtin_folder
    from ponder.evaluate.catalog import FAMILIES
    from ponder.importers import import_paths
    from ponder.report import build_report
    from ponder.store import Store

    groups = family_groups()
    families = [f for f in (*groups["online"], *groups["published"]) if f in FAMILIES]
    path = tmp_path_factory.mktemp("online") / "store.sqlite"
    with Store(path) as store:
        import_paths(store, [builtin_folder()])
    with Store(path, readonly=True) as store:
        evaluations = evaluate_policies(
            store, datasets=["arith"], families=[*families, "cascade"], n_boot=100
        )
        frame = store.outcomes_frame(datasets=["arith"])
        curves = load_curves(store, datasets=["arith"], n_boot=20, frame=frame)
        out = build_report(
            frame,
            curves,
            store.runs_frame(),
            path.parent / "report.html",
            n_boot=20,
            evaluations=evaluations,
        )
    (name, summary), *_ = evaluations
    assert name == "arith"
    return summary, out.read_text()


def _section(report: str) -> str:
    start = report.index(HEADING)
    return report[start : report.index("</p>", report.index("<img", start)) + 4]


def test_section_and_plot_name_the_families_that_ran(evaluated: tuple[Summary, str]) -> None:
    summary, report = evaluated
    groups = family_groups()
    ran = set(summary.families["family"])
    online = [f for f in groups["online"] if f in ran]
    rules = [f for f in groups["published"] if f in ran]
    assert online, "the built-in sweep has ladders: ponder's online families run on it"
    assert rules
    section = _section(report)
    alt = html.unescape(re.search(r'<img alt="([^"]*)"', section).group(1))  # type: ignore[union-attr]
    for family in (*online, *rules):
        assert family in alt
    assert "cascade" not in alt  # decided before generation: not part of this comparison
    assert 'src="data:image/png;base64,' in section
    # The caption lists the two groups as they ran.
    assert ", ".join(online) in _text(section)
    assert ", ".join(rules) in _text(section)


def test_plain_words_match_the_summary(evaluated: tuple[Summary, str]) -> None:
    summary, report = evaluated
    listed = report[report.index(HEADING) :].split('<ul class="online">', 1)[1].split("</ul>")[0]
    sentences = [_text(item) for item in re.findall(r"<li>(.*?)</li>", listed, flags=re.S)]
    assert 2 <= len(sentences) <= 4
    words = " ".join(sentences)
    groups = family_groups()
    families = summary.families.set_index("family", drop=False)
    online = [f for f in groups["online"] if f in families.index]
    rules = [f for f in groups["published"] if f in families.index]
    named = re.search(r"\), (\w+) does best on held-out problems", words)
    assert named is not None
    best = named.group(1)
    assert best in online
    row = families.loc[best]

    # Best: no other online family saves more at the baseline's accuracy, or (none saving)
    # gains more at its cost.
    def figure(f: str, key: str) -> float:
        value = float(families.loc[f].get(key, np.nan))
        return value if math.isfinite(value) else -math.inf

    for other in online:
        key = "saved_at_iso_accuracy"
        if figure(best, key) == figure(other, key) == -math.inf:
            key = "gain_at_iso_cost"
        assert figure(best, key) >= figure(other, key)

    # Its figures and the baseline's, as the summary has them.
    assert f"accuracy {float(row['best_accuracy']):.3f}" in words
    assert f"{summary.baseline_figures['accuracy']:.3f} at" in words
    assert summary.baseline.removeprefix("uniform ") in words
    saved, lo, hi = _interval(row, "saved_at_iso_accuracy")
    if math.isnan(saved):
        assert f"no saving: {row['saved_at_iso_accuracy_note']}" in words
    elif lo <= 0 <= hi:
        assert "no saving: interval includes 0" in words
    else:
        assert f"{saved:.1%}" in words
    gain, glo, ghi = _interval(row, "gain_at_iso_cost")
    if math.isfinite(gain):
        assert f"{100 * gain:+.1f} pts (95% CI {100 * glo:+.1f} to {100 * ghi:+.1f})" in words

    # Each published rule that ran: the verdict agrees with the intervals quoted.
    rules_sentence = words[words.index("Against the published rules") :]
    rules_sentence = rules_sentence[: rules_sentence.index(". The oracle")]
    for rule in rules:
        rule_row = families.loc[rule]
        part = next(p for p in rules_sentence.split("; ") if f"{rule} (" in p)
        shared = [
            key
            for key in ("saved_at_iso_accuracy", "gain_at_iso_cost")
            if all(math.isfinite(v) for v in (*_interval(row, key), *_interval(rule_row, key)))
        ]
        if not shared:
            assert "not comparable with" in part
            continue
        key = shared[0]
        quoted = (
            _saving_words(rule_row) if key == "saved_at_iso_accuracy" else _gain_words(rule_row)
        )
        assert (
            f"{rule} ({quoted})" in part
            or f"{rule} (saving {quoted})" in part
            or (f"{rule} (gain {quoted})" in part)
        )
        _, f_lo, f_hi = _interval(row, key)
        _, r_lo, r_hi = _interval(rule_row, key)
        if f_lo > r_hi:
            assert "ahead of" in part
        elif f_hi < r_lo:
            assert "behind " in part
        else:
            assert "tied within the CIs with" in part

    # The gap to the oracle, with the oracle's own saving.
    oracle = families.loc["oracle"]
    o_saved, o_lo, o_hi = _interval(oracle, "saved_at_iso_accuracy")
    assert f"{o_saved:.1%} fewer {summary.unit}" in words
    assert f"(95% CI {o_lo:.1%} to {o_hi:.1%})" in words

    # Every rule that could not run is named with its reason.
    group = (*groups["online"], *groups["published"])
    for family, why in summary.skipped:
        if family in group:
            tail = words[words.index("Could not run here") :]
            assert family in tail
            assert why.removeprefix(f"{family} ") in tail


def test_online_plot_draws_each_group_and_no_label_overlaps(
    evaluated: tuple[Summary, str],
) -> None:
    summary, _ = evaluated
    groups = family_groups()
    fig, left_out = plots.online_curves_figure(
        summary, online=groups["online"], published=groups["published"], title="arith"
    )
    ax = fig.axes[0]
    gids = {artist.get_gid() for artist in ax.get_children() if artist.get_gid()}
    gids |= {
        line.get_gid()
        for container in ax.containers
        for line in container.get_children()
        if line.get_gid()
    }
    ran = set(summary.families["family"])
    for family in groups["online"]:
        assert (f"curve:{family}" in gids) == (family in ran)
    for rule in groups["published"]:
        assert (f"rule:{rule}" in gids) == (rule in ran)
    assert "oracle" in gids and "uniform-front" in gids
    assert not any("cascade" in str(g) for g in gids)
    # Each rule's marker sits at its held-out point.
    points = summary.points.set_index("label")
    for container in ax.containers:
        line = container.get_children()[0]
        gid = str(line.get_gid())
        if gid.startswith("rule:"):
            rule = gid.removeprefix("rule:")
            assert line.get_xdata()[0] == pytest.approx(points.loc[rule, "mean_cost"])
            assert line.get_ydata()[0] == pytest.approx(points.loc[rule, "accuracy"])
    # Labels: none overlaps another, all inside the axes; rules are labelled first.
    renderer = fig.canvas.get_renderer()
    texts = [t for t in ax.texts if t.get_text()]
    boxes = [t.get_window_extent(renderer) for t in texts]
    frame = ax.get_window_extent(renderer)
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b)
    for box in boxes:
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1
    placed = {t.get_text() for t in texts}
    assert placed.isdisjoint(left_out)
    assert {r for r in groups["published"] if r in ran} - set(left_out) <= placed
    plt.close(fig)


# -- hand-made summaries: each wording follows its numbers ---------------------------------------


def _row(family: str, **figures: float | str) -> dict[str, Any]:
    row: dict[str, Any] = {"family": family, "best_label": family, "points": 1}
    for key in ("saved_at_iso_accuracy", "gain_at_iso_cost", "gap_recovered"):
        row[key] = row[f"{key}_ci_low"] = row[f"{key}_ci_high"] = np.nan
    row.update(figures)
    return row


def _figure(key: str, value: float, lo: float, hi: float) -> dict[str, float]:
    return {key: value, f"{key}_ci_low": lo, f"{key}_ci_high": hi}


def _hand_made(
    online: dict[str, dict[str, float | str]],
    rules: dict[str, dict[str, float | str]],
    skipped: tuple[tuple[str, str], ...] = (),
) -> Summary:
    rows = [
        _row("uniform", best_label="uniform m|512"),
        _row("oracle", **_figure("saved_at_iso_accuracy", 0.6, 0.5, 0.7)),
        *(_row(f, **figs) for f, figs in {**online, **rules}.items()),
    ]
    families = pd.DataFrame(rows)
    labels = ["uniform m|64", "uniform m|512", *families["family"].iloc[1:]]
    points = pd.DataFrame(
        {
            "label": labels,
            "family": ["uniform", "uniform", *families["family"].iloc[1:]],
            "accuracy": np.linspace(0.3, 0.7, len(labels)),
            "accuracy_ci_low": np.linspace(0.2, 0.6, len(labels)),
            "accuracy_ci_high": np.linspace(0.4, 0.8, len(labels)),
            "mean_cost": np.linspace(50.0, 500.0, len(labels)),
            "cost_ci_low": np.linspace(40.0, 450.0, len(labels)),
            "cost_ci_high": np.linspace(60.0, 550.0, len(labels)),
        }
    )
    return Summary(
        protocol="5-fold cross-validation",
        unit="tokens",
        n_problems=60,
        baseline="uniform m|512",
        points=points,
        families=families,
        baseline_figures={"accuracy": 0.55, "mean_cost": 400.0, "folds": 5},
        skipped=skipped,
    )


def test_no_section_without_online_families_or_published_rules() -> None:
    summary = _hand_made({}, {})
    assert online_conclusion(summary) == []
    assert _policy_section("ds", summary)["online"] is None


def test_a_saving_whose_interval_excludes_zero_is_stated_with_it() -> None:
    saving = _figure("saved_at_iso_accuracy", 0.25, 0.10, 0.40)
    summary = _hand_made(
        {"early_exit": saving, "level_exit": _figure("saved_at_iso_accuracy", 0.05, -0.1, 0.2)},
        {"deer": _figure("saved_at_iso_accuracy", -0.05, -0.15, 0.05)},
    )
    words = " ".join(online_conclusion(summary))
    assert "early_exit does best" in words
    assert "it needs 25.0% fewer tokens at the baseline's accuracy (95% CI 10.0% to 40.0%)" in words
    assert "ahead of deer (-5.0%, 95% CI -15.0% to 5.0%)" in words
    # 25% of the oracle's 60% saving.
    assert "early_exit recovers 42% of that saving" in words


def test_an_interval_including_zero_is_no_saving_and_overlaps_are_ties() -> None:
    summary = _hand_made(
        {"probe_escalate": _figure("saved_at_iso_accuracy", 0.04, -0.02, 0.09)},
        {
            "dynasor_cot": _figure("saved_at_iso_accuracy", 0.01, -0.01, 0.03),
            "autothink": _figure("saved_at_iso_accuracy", 0.2, 0.12, 0.3),
        },
    )
    words = " ".join(online_conclusion(summary))
    assert "no saving: interval includes 0 (4.0% fewer tokens" in words
    assert "tied within the CIs with dynasor_cot" in words
    assert "behind autothink (20.0%, 95% CI 12.0% to 30.0%)" in words
    assert "recovers none of it measurably" in words


def test_rules_without_a_common_figure_and_skipped_rules_are_explained() -> None:
    note = "no point reached the baseline's training accuracy in 5 of 5 folds"
    summary = _hand_made(
        {"early_exit": _figure("gain_at_iso_cost", -0.01, -0.03, 0.0)},
        {"routellm_threshold": {"saved_at_iso_accuracy_note": note}},
        skipped=(
            ("esc", "esc needs at least 2 recorded samples"),
            (
                "adaptive_consistency_beta",
                "adaptive_consistency_beta needs at least 2 recorded samples",
            ),
        ),
    )
    words = " ".join(online_conclusion(summary))
    assert f"not comparable with routellm_threshold ({note})" in words
    assert (
        "Could not run here: esc and adaptive_consistency_beta (needs at least 2 recorded" in words
    )
    # A rule neither run nor skipped is named as missing, without an invented reason.
    assert "no reason recorded" in words and "autothink" in words


def test_rules_alone_are_compared_with_the_baseline() -> None:
    summary = _hand_made({}, {"autothink": _figure("saved_at_iso_accuracy", 0.01, 0.003, 0.018)})
    words = " ".join(online_conclusion(summary))
    assert words.startswith("None of the policies that read the chain ran here")
    assert "autothink: it needs 1.0% fewer tokens at the baseline's accuracy" in words


def test_verdicts_follow_the_intervals() -> None:
    family = pd.Series(_row("early_exit", **_figure("gain_at_iso_cost", 0.05, 0.02, 0.08)))
    below = pd.Series(_row("deer", **_figure("gain_at_iso_cost", -0.2, -0.3, -0.1)))
    above = pd.Series(_row("deer", **_figure("gain_at_iso_cost", 0.2, 0.1, 0.3)))
    overlapping = pd.Series(_row("deer", **_figure("gain_at_iso_cost", 0.0, -0.05, 0.03)))
    assert compare_with_rule(family, below) == ("ahead", "gain_at_iso_cost")
    assert compare_with_rule(family, above) == ("behind", "gain_at_iso_cost")
    assert compare_with_rule(family, overlapping) == ("tied", "gain_at_iso_cost")
    # Saving at the baseline's accuracy comes first when both have it.
    both = pd.Series({**family.to_dict(), **_figure("saved_at_iso_accuracy", 0.1, 0.05, 0.15)})
    rule = pd.Series({**below.to_dict(), **_figure("saved_at_iso_accuracy", 0.3, 0.2, 0.4)})
    assert compare_with_rule(both, rule) == ("behind", "saved_at_iso_accuracy")


def test_hand_made_plot_is_written(tmp_path: Path) -> None:
    summary = _hand_made(
        {"early_exit": _figure("gain_at_iso_cost", -0.01, -0.03, 0.0)},
        {"deer": {}, "dynasor_cot": {}},
    )
    groups = family_groups()
    png, left_out = plots.online_curves(
        summary, online=groups["online"], published=groups["published"]
    )
    assert png.startswith(b"\x89PNG")
    assert isinstance(left_out, list)
