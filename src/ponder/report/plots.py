"""PNG plots for the report: curves with confidence bands, difficulty panels, token histograms.

Every function returns PNG bytes (matplotlib, Agg backend) so the HTML can embed them inline.
"""

from __future__ import annotations

import io
import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

_COLORS: tuple[tuple[float, ...], ...] = tuple(
    tuple(float(v) for v in plt.get_cmap("tab20")(i)) for i in range(20)
)

# Recorded sweeps cap all tokens; forced runs (ladders) budget thinking tokens only.
BUDGET_AXIS = "token budget (a cap, or the thinking budget of forced runs)"


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def figure_png(fig: Figure) -> bytes:
    """PNG bytes of a figure built by one of the ``*_figure`` functions (closes it)."""
    return _png(fig)


def _series_label(model: str, mode: str) -> str:
    return model if mode in ("think", "default") else f"{model} ({mode})"


# Well-separated hues, one per panel of the small multiples: tab10, then Dark2.
_PANEL_COLORS: tuple[tuple[float, ...], ...] = tuple(
    tuple(float(v) for v in plt.get_cmap(name)(i))
    for name, n in (("tab10", 10), ("Dark2", 8))
    for i in range(n)
)

DERIVED_LABEL = "derived lower bound"
RECORDED_LABEL = "recorded (band: 95% CI)"
CONTEXT_LABEL = "other models (recorded)"


def accuracy_curves_figure(
    cells: pd.DataFrame,
    dataset: str,
    *,
    x: str = "budget",
    title: str | None = None,
    columns: int = 4,
) -> Figure:
    """Small multiples: one panel per model (and mode), shared axes.

    A dozen overlaid curves with their bands are unreadable, so each panel shows one model's
    recorded curve with its 95% CI band and the other models as thin grey lines for context.
    Derived cells are strict-rule lower bounds, not measurements: hollow markers with no line
    through them, never joined to the recorded curve.
    """
    data = cells[(cells["dataset"] == dataset) & cells["budget"].notna()].copy()
    data = data[data[x].notna()]
    data["label"] = [_series_label(m, o) for m, o in zip(data["model"], data["mode"], strict=True)]
    derived = data["derived"].fillna(False).astype(bool)
    recorded = data[~derived]
    labels = sorted(str(v) for v in recorded["label"].unique())
    cols = max(1, min(columns, len(labels)))
    rows = max(1, math.ceil(len(labels) / cols))
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(2.9 * cols + 0.4, 2.3 * rows + 0.9),
        squeeze=False,
        sharex=True,
        sharey=True,
    )
    for i, (ax, label) in enumerate(zip(axes.flat, labels, strict=False)):
        color = _PANEL_COLORS[i % len(_PANEL_COLORS)]
        for other, group in recorded.groupby("label", sort=True):
            if str(other) == label or len(group) < 2:
                continue
            group = group.sort_values(x)
            ax.plot(
                group[x].to_numpy(dtype=float),
                group["accuracy"].to_numpy(dtype=float),
                "-",
                color="0.78",
                linewidth=0.8,
                zorder=1,
                gid="context",
            )
        own = recorded[recorded["label"] == label].sort_values(x)
        xs = own[x].to_numpy(dtype=float)
        ys = own["accuracy"].to_numpy(dtype=float)
        lo = own["ci_low"].to_numpy(dtype=float)
        hi = own["ci_high"].to_numpy(dtype=float)
        if len(own) >= 2:
            ax.fill_between(xs, lo, hi, color=color, alpha=0.2, linewidth=0, zorder=2)
            ax.plot(
                xs, ys, "o-", color=color, linewidth=1.8, markersize=4, zorder=3, gid="recorded"
            )
        else:
            ax.errorbar(xs, ys, yerr=[ys - lo, hi - ys], fmt="o", color=color, capsize=3, zorder=3)
        low = data[derived & (data["label"] == label)].sort_values(x)
        if len(low):
            ax.plot(
                low[x].to_numpy(dtype=float),
                low["accuracy"].to_numpy(dtype=float),
                linestyle="none",
                marker="o",
                markersize=5,
                markerfacecolor="none",
                markeredgecolor=color,
                markeredgewidth=1.2,
                zorder=4,
                gid="derived",
            )
        ax.set_title(label, fontsize=10, color=color, fontweight="bold")
        ax.set_xscale("log", base=2)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=8.5)
    for ax in list(axes.flat)[len(labels) :]:
        ax.set_visible(False)
    axes.flat[0].set_ylim(bottom=0)
    handles = [
        Line2D([], [], color="0.25", marker="o", markersize=4, linewidth=1.8),
        Line2D(
            [], [], color="0.25", marker="o", markersize=5, linestyle="none", markerfacecolor="none"
        ),
        Line2D([], [], color="0.78", linewidth=0.8),
    ]
    fig.legend(
        handles,
        [RECORDED_LABEL, f"{DERIVED_LABEL} (strict cap rule)", CONTEXT_LABEL],
        loc="upper center",
        bbox_to_anchor=(0.5, 1.0 - 0.35 / fig.get_figheight()),
        ncol=3,
        fontsize=10,
        frameon=False,
    )
    what = "budget" if x == "budget" else "tokens spent"
    fig.suptitle(f"{title or dataset}: accuracy vs {what}", fontsize=12, y=1.0)
    fig.supxlabel(BUDGET_AXIS if x == "budget" else "mean output tokens", fontsize=10.5)
    fig.supylabel("accuracy", fontsize=10.5)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.55 / fig.get_figheight()))
    return fig


def accuracy_curves(
    cells: pd.DataFrame, dataset: str, *, x: str = "budget", title: str | None = None
) -> bytes:
    """PNG of :func:`accuracy_curves_figure`."""
    return _png(accuracy_curves_figure(cells, dataset, x=x, title=title))


def difficulty_panels(
    difficulty: pd.DataFrame, dataset: str, *, max_models: int = 6, title: str | None = None
) -> bytes:
    """PNG of :func:`difficulty_panels_figure`."""
    return _png(difficulty_panels_figure(difficulty, dataset, max_models=max_models, title=title))


def difficulty_panels_figure(
    difficulty: pd.DataFrame, dataset: str, *, max_models: int = 6, title: str | None = None
) -> Figure:
    """One panel per model: accuracy vs budget for each difficulty bin, with 95% CI bars."""
    data = difficulty[(difficulty["dataset"] == dataset) & difficulty["budget"].notna()]
    counts = data.groupby("model")["budget"].nunique().sort_values(ascending=False)
    models = list(counts.index[:max_models])
    cols = min(3, max(1, len(models)))
    rows = math.ceil(len(models) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False, sharey=True
    )
    order = data.drop_duplicates("difficulty").sort_values("difficulty_rank")
    bins = [str(b) for b in order["difficulty"]]
    palette = plt.get_cmap("viridis")(np.linspace(0.1, 0.9, max(1, len(bins))))
    # Bins side by side around each budget (a small shift on the log axis) with error bars:
    # several overlapping bands would stack into one muddy area.
    shifts = 2.0 ** (0.07 * (np.arange(len(bins)) - (len(bins) - 1) / 2))
    for ax, model in zip(axes.flat, models, strict=False):
        sub = data[data["model"] == model]
        for color, name, shift in zip(palette, bins, shifts, strict=True):
            group = sub[sub["difficulty"].astype(str) == name].sort_values("budget")
            if group.empty:
                continue
            xs = group["budget"].to_numpy(dtype=float) * shift
            ys = group["accuracy"].to_numpy(dtype=float)
            ax.errorbar(
                xs,
                ys,
                yerr=[
                    ys - group["ci_low"].to_numpy(dtype=float),
                    group["ci_high"].to_numpy(dtype=float) - ys,
                ],
                fmt="o-",
                color=color,
                markersize=3,
                linewidth=1.2,
                elinewidth=0.8,
                capsize=0,
                label=name,
            )
        ax.set_xscale("log", base=2)
        ax.set_title(model, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(0, 1.02)
    for ax in list(axes.flat)[len(models) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7, title="difficulty", title_fontsize=7, frameon=False)
    source = data["difficulty_source"].iloc[0] if "difficulty_source" in data and len(data) else ""
    fig.suptitle(f"{title or dataset}: accuracy vs budget by difficulty ({source})", fontsize=10)
    fig.supxlabel(BUDGET_AXIS, fontsize=9)
    fig.supylabel("accuracy", fontsize=9)
    return fig


def token_histograms(
    frame: pd.DataFrame, dataset: str, *, max_models: int = 6, title: str | None = None
) -> bytes:
    """Distribution of output tokens per budget: the spike at the cap is truncation."""
    data = frame[
        (frame["dataset"] == dataset) & frame["output_tokens"].notna() & frame["budget"].notna()
    ]
    counts = data.groupby("model")["budget"].nunique().sort_values(ascending=False)
    models = list(counts.index[:max_models])
    cols = min(3, max(1, len(models)))
    rows = math.ceil(len(models) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, model in zip(axes.flat, models, strict=False):
        sub = data[data["model"] == model]
        budgets = sorted(sub["budget"].unique())
        top = float(sub["output_tokens"].max())
        edges = np.linspace(0, top * 1.02 + 1, 40)
        for i, budget in enumerate(budgets):
            values = sub.loc[sub["budget"] == budget, "output_tokens"].to_numpy(dtype=float)
            ax.hist(
                values,
                bins=edges,
                alpha=0.45,
                color=_COLORS[(2 * i) % len(_COLORS)],
                label=f"cap {int(budget)}",
            )
        ax.set_title(model, fontsize=9)
        ax.legend(fontsize=6, frameon=False)
    for ax in list(axes.flat)[len(models) :]:
        ax.set_visible(False)
    fig.suptitle(f"{title or dataset}: output tokens per response, by cap", fontsize=10)
    fig.supxlabel("output tokens", fontsize=9)
    fig.supylabel("responses", fontsize=9)
    return _png(fig)


def model_accuracy_bars(cells: pd.DataFrame, dataset: str, *, title: str | None = None) -> bytes:
    """Accuracy with 95% CI per model, for datasets recorded without a budget axis."""
    data = cells[cells["dataset"] == dataset].sort_values("accuracy")
    labels = [_series_label(m, o) for m, o in zip(data["model"], data["mode"], strict=True)]
    height = max(2.5, 0.28 * len(data) + 1)
    fig, ax = plt.subplots(figsize=(8.5, height))
    ys = np.arange(len(data))
    acc = data["accuracy"].to_numpy(dtype=float)
    err = [acc - data["ci_low"].to_numpy(dtype=float), data["ci_high"].to_numpy(dtype=float) - acc]
    ax.barh(ys, acc, xerr=err, color="#4c78a8", alpha=0.85, capsize=2)
    ax.set_yticks(ys, labels, fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy (95% CI)")
    ax.set_title(f"{title or dataset}: accuracy per model")
    ax.grid(True, axis="x", alpha=0.3)
    return _png(fig)


# Candidate label positions around a point, in points: right, left, above, below, diagonals.
_LABEL_OFFSETS: tuple[tuple[float, float, str, str], ...] = (
    (4, 0, "left", "center"),
    (-4, 0, "right", "center"),
    (0, 5, "center", "bottom"),
    (0, -5, "center", "top"),
    (4, 4, "left", "bottom"),
    (-4, 4, "right", "bottom"),
    (4, -4, "left", "top"),
    (-4, -4, "right", "top"),
    (10, 10, "left", "bottom"),
    (-10, 10, "right", "bottom"),
    (10, -10, "left", "top"),
    (-10, -10, "right", "top"),
)


def place_labels(
    ax: Any, xs: np.ndarray, ys: np.ndarray, labels: list[str], *, fontsize: float = 6.5
) -> list[str]:
    """Label points without any two labels overlapping; return the labels left out.

    Greedy: points in the given order (put the important ones first) try a few positions
    around themselves and take the first whose box overlaps no placed label, no other marker
    and stays inside the axes. A label that fits nowhere is left out for a table to carry.
    """
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    frame_box = ax.get_window_extent(renderer)
    centers = ax.transData.transform(np.column_stack([xs, ys]))
    pad = 1.5
    placed: list[Any] = []
    left_out: list[str] = []
    for i, label in enumerate(labels):
        for dx, dy, ha, va in _LABEL_OFFSETS:
            text = ax.annotate(
                label,
                (xs[i], ys[i]),
                xytext=(dx, dy),
                textcoords="offset points",
                ha=ha,
                va=va,
                fontsize=fontsize,
            )
            box = text.get_window_extent(renderer).expanded(1.0, 1.0)
            x0, y0, x1, y1 = box.x0 - pad, box.y0 - pad, box.x1 + pad, box.y1 + pad
            inside = (
                x0 >= frame_box.x0
                and x1 <= frame_box.x1
                and y0 >= frame_box.y0
                and y1 <= frame_box.y1
            )
            hits_label = any(x0 < b.x1 and b.x0 < x1 and y0 < b.y1 and b.y0 < y1 for b in placed)
            others = np.delete(centers, i, axis=0)
            hits_point = bool(
                (
                    (others[:, 0] > x0 - 2)
                    & (others[:, 0] < x1 + 2)
                    & (others[:, 1] > y0 - 2)
                    & (others[:, 1] < y1 + 2)
                ).any()
            )
            if inside and not hits_label and not hits_point:
                placed.append(box)
                break
            text.remove()
        else:
            left_out.append(label)
    return left_out


def accuracy_vs_tokens_points_figure(points: pd.DataFrame, title: str) -> tuple[Figure, list[str]]:
    """Accuracy vs mean output tokens, one point per model, labels that never overlap.

    Returns the figure and the models whose label did not fit (the report's table lists
    every point). Labels go to the most accurate models first.
    """
    points = points.sort_values("accuracy", ascending=False)
    fig, ax = plt.subplots(figsize=(8.5, 5))
    ax.errorbar(
        points["mean_tokens"],
        points["accuracy"],
        yerr=[points["accuracy"] - points["ci_low"], points["ci_high"] - points["accuracy"]],
        fmt="o",
        color="#4c78a8",
        ecolor="#4c78a855",
        capsize=2,
        markersize=4,
    )
    effort = points[points["model"].str.contains(r"\((?:low|medium|high)\)", regex=True)]
    if len(effort) > 1:
        effort = effort.sort_values("mean_tokens")
        ax.plot(
            effort["mean_tokens"],
            effort["accuracy"],
            "-",
            color="#e45756",
            label="reasoning-effort ladder of one model",
        )
        ax.legend(fontsize=7, frameon=False, loc="lower right")
    ax.set_xscale("log")
    ax.set_xlabel("mean output tokens (source's summary)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    left_out = place_labels(
        ax,
        points["mean_tokens"].to_numpy(dtype=float),
        points["accuracy"].to_numpy(dtype=float),
        [str(m) for m in points["model"]],
    )
    return fig, left_out


def accuracy_vs_tokens_points(points: pd.DataFrame, title: str) -> bytes:
    """PNG of :func:`accuracy_vs_tokens_points_figure`."""
    return _png(accuracy_vs_tokens_points_figure(points, title)[0])


def policy_curves(summary: Any, *, title: str = "") -> bytes:
    """Accuracy vs mean cost of every evaluated point: uniform configurations as grey dots,
    each policy family as a line through its sweep, the oracle as a star; 95% CI bars."""
    points = summary.points
    fig, ax = plt.subplots(figsize=(9.5, 5.5))
    uniform = points[points["family"] == "uniform"]
    ax.errorbar(
        uniform["mean_cost"],
        uniform["accuracy"],
        yerr=[
            uniform["accuracy"] - uniform["accuracy_ci_low"],
            uniform["accuracy_ci_high"] - uniform["accuracy"],
        ],
        fmt="o",
        color="0.6",
        alpha=0.6,
        markersize=4,
        capsize=0,
        label="uniform configurations",
    )
    others = [f for f in dict.fromkeys(points["family"]) if f not in ("uniform", "oracle")]
    for i, family in enumerate(others):
        group = points[points["family"] == family].sort_values("mean_cost")
        color = _COLORS[(2 * i) % len(_COLORS)]
        # Error bars rather than bands: one band per family stacks into an unreadable area.
        ax.errorbar(
            group["mean_cost"],
            group["accuracy"],
            yerr=[
                group["accuracy"] - group["accuracy_ci_low"],
                group["accuracy_ci_high"] - group["accuracy"],
            ],
            fmt="o-",
            color=color,
            markersize=4,
            elinewidth=0.8,
            capsize=2,
            label=family,
        )
    oracle = points[points["family"] == "oracle"]
    if len(oracle):
        ax.plot(
            oracle["mean_cost"],
            oracle["accuracy"],
            "*",
            color="black",
            markersize=12,
            label="oracle (upper bound)",
        )
    ax.set_xscale("log")
    ax.set_xlabel(f"mean cost per request ({summary.unit})")
    ax.set_ylabel("accuracy (held out)")
    ax.set_title(title or "policies vs uniform budgets")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.text(0.0, -0.14, summary.protocol, transform=ax.transAxes, fontsize=7, color="0.4")
    return _png(fig)
