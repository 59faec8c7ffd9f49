"""The report's figures, inspected as objects: panels, where derived points go, labels."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection

from ponder.report import plots


def _cells(n_models: int = 12) -> pd.DataFrame:
    """n_models models: recorded at 1024, 4096, 16384; derived lower bounds at 2048, 8192."""
    rows = []
    for m in range(n_models):
        for budget, derived in ((1024, False), (2048, True), (4096, False), (8192, True)):
            acc = 0.1 * (m % 5) + budget / 40000
            rows.append(
                {
                    "model": f"model-{m:02d}",
                    "dataset": "ds",
                    "mode": "think",
                    "budget": float(budget),
                    "derived": derived,
                    "accuracy": acc,
                    "ci_low": acc - 0.05,
                    "ci_high": acc + 0.05,
                    "mean_tokens": budget * 0.7,
                }
            )
        rows.append({**rows[-4], "budget": 16384.0, "derived": False, "mean_tokens": 9000.0})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("x", ["budget", "mean_tokens"])
def test_one_panel_per_model_with_shared_axes(x: str) -> None:
    fig = plots.accuracy_curves_figure(_cells(12), "ds", x=x)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 12
    assert sorted(ax.get_title() for ax in panels) == [f"model-{m:02d}" for m in range(12)]
    first = panels[0]
    for ax in panels[1:]:
        assert ax.get_shared_x_axes().joined(first, ax)
        assert ax.get_shared_y_axes().joined(first, ax)
    # Each panel carries its own model's band only: bands never stack.
    for ax in panels:
        assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 1
    # Twelve well-separated panel colours.
    colours = {tuple(np.round(ax.title.get_color(), 3)) for ax in panels}
    assert len(colours) == 12
    plt.close(fig)


def test_derived_points_are_hollow_and_never_on_the_line() -> None:
    cells = _cells(3)
    fig = plots.accuracy_curves_figure(cells, "ds")
    for ax in (a for a in fig.axes if a.get_visible()):
        model = ax.get_title()
        own = cells[cells["model"] == model]
        lines = {line.get_gid(): line for line in ax.get_lines() if line.get_gid()}
        line_x = set(lines["recorded"].get_xdata().tolist())
        assert line_x == set(own.loc[~own["derived"], "budget"])
        derived = lines["derived"]
        assert derived.get_linestyle() == "None"
        assert derived.get_markerfacecolor() == "none"
        assert set(derived.get_xdata().tolist()) == {2048.0, 8192.0}
        # Context lines of the other models use recorded cells only.
        for line in ax.get_lines():
            if line.get_gid() == "context":
                assert not {2048.0, 8192.0} & set(line.get_xdata().tolist())
    legend = fig.legends[0]
    assert any("derived lower bound" in t.get_text() for t in legend.get_texts())
    plt.close(fig)


def _boxes_overlap(a, b) -> bool:  # type: ignore[no-untyped-def]
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_scatter_labels_never_overlap() -> None:
    rng = np.random.default_rng(3)
    # A tight cluster (as DeepSeek-R1 distills around 12k tokens) and a few spread points.
    tokens = np.concatenate([rng.normal(12000, 300, 12), [600, 900, 2300, 2500, 6000]])
    accuracy = np.concatenate([rng.normal(0.55, 0.03, 12), [0.05, 0.13, 0.3, 0.28, 0.73]])
    points = pd.DataFrame(
        {
            "model": [f"DeepSeek-R1-Distill-{i}" for i in range(17)],
            "mean_tokens": tokens,
            "accuracy": accuracy,
            "ci_low": accuracy - 0.1,
            "ci_high": accuracy + 0.1,
        }
    )
    fig, left_out = plots.accuracy_vs_tokens_points_figure(points, "t")
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    texts = [t for t in ax.texts if t.get_text().startswith("DeepSeek")]
    boxes = [t.get_window_extent(renderer) for t in texts]
    for a, b in itertools.combinations(boxes, 2):
        assert not _boxes_overlap(a, b)
    placed = {t.get_text() for t in texts}
    assert placed | set(left_out) == set(points["model"])
    assert not placed & set(left_out)
    # The spread-out points all get their label.
    assert {f"DeepSeek-R1-Distill-{i}" for i in range(12, 17)} <= placed
    plt.close(fig)


def test_difficulty_panels_draw_no_stacked_bands() -> None:
    rows = []
    for name, rank in (("easy", 0), ("medium", 1), ("hard", 2)):
        for budget in (1024.0, 4096.0):
            acc = 0.8 - 0.3 * rank
            rows.append(
                {
                    "model": "m",
                    "dataset": "ds",
                    "budget": budget,
                    "difficulty": name,
                    "difficulty_rank": rank,
                    "difficulty_source": "level",
                    "accuracy": acc,
                    "ci_low": acc - 0.2,
                    "ci_high": acc + 0.2,
                }
            )
    fig = plots.difficulty_panels_figure(pd.DataFrame(rows), "ds", title="ds · src, 30 problems")
    assert fig.get_suptitle().startswith("ds · src, 30 problems: accuracy vs budget")
    ax = fig.axes[0]
    assert not [c for c in ax.collections if isinstance(c, PolyCollection)]
    # Three bins side by side around each budget, not on top of each other.
    xs = sorted(x for line in ax.get_lines() for x in line.get_xdata() if 700 < x < 1500)
    assert len(xs) == 3 and xs[0] < 1024.0 == xs[1] < xs[2]
    plt.close(fig)
