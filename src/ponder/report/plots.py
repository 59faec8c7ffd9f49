"""PNG plots for the report: curves with confidence bands, difficulty panels, token histograms.

Every function returns PNG bytes (matplotlib, Agg backend) so the HTML can embed them inline.
"""

from __future__ import annotations

import io
import math
import textwrap
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
    ax: Any,
    xs: np.ndarray,
    ys: np.ndarray,
    labels: list[str],
    *,
    fontsize: float = 6.5,
    avoid: np.ndarray | None = None,
    backdrop: bool = False,
    colors: list[Any] | None = None,
) -> list[str]:
    """Label points without any two labels overlapping; return the labels left out.

    Greedy: points in the given order (put the important ones first) try a few positions
    around themselves and take the first whose box overlaps no placed label, no other marker
    and stays inside the axes. A label that fits nowhere is left out for a table to carry.
    `avoid` holds further (x, y) markers that get no label but must not be covered either;
    `backdrop` puts a translucent white box behind each label so lines under it stay legible;
    `colors` gives each label its series' colour, so it is not read as a neighbour's.
    """
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    frame_box = ax.get_window_extent(renderer)
    centers = ax.transData.transform(np.column_stack([xs, ys]))
    extra = (
        ax.transData.transform(np.asarray(avoid, dtype=float).reshape(-1, 2))
        if avoid is not None and len(avoid)
        else np.empty((0, 2))
    )
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
                color=colors[i] if colors is not None else "black",
                bbox=(
                    {"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8}
                    if backdrop
                    else None
                ),
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
            others = np.vstack([np.delete(centers, i, axis=0), extra])
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


def _accuracy_bars(group: pd.DataFrame) -> list[np.ndarray]:
    """Vertical error-bar lengths (below, above) from a points table's 95% CI columns."""
    acc = group["accuracy"].to_numpy(dtype=float)
    low = group["accuracy_ci_low"].to_numpy(dtype=float)
    high = group["accuracy_ci_high"].to_numpy(dtype=float)
    return [np.nan_to_num(acc - low), np.nan_to_num(high - acc)]


def _draw_uniform(ax: Any, points: pd.DataFrame, *, frontier: bool = False) -> None:
    """Uniform configurations as grey dots with CI bars; with `frontier`, a grey dashed line
    through the ones no other configuration beats on both accuracy and cost."""
    uniform = points[points["family"] == "uniform"]
    ax.errorbar(
        uniform["mean_cost"],
        uniform["accuracy"],
        yerr=_accuracy_bars(uniform),
        fmt="o",
        color="0.6",
        alpha=0.6,
        markersize=4,
        capsize=0,
        label="uniform configurations",
    )
    if frontier and len(uniform):
        front = pareto_front(
            uniform["mean_cost"].to_numpy(dtype=float), uniform["accuracy"].to_numpy(dtype=float)
        )
        ax.plot(
            uniform["mean_cost"].to_numpy(dtype=float)[front],
            uniform["accuracy"].to_numpy(dtype=float)[front],
            "--",
            color="0.55",
            linewidth=1.0,
            zorder=1,
            gid="uniform-front",
        )


def _draw_oracle(ax: Any, points: pd.DataFrame) -> None:
    oracle = points[points["family"] == "oracle"]
    if len(oracle):
        ax.plot(
            oracle["mean_cost"],
            oracle["accuracy"],
            "*",
            color="black",
            markersize=12,
            label="oracle (upper bound)",
            gid="oracle",
            zorder=5,
        )


def _draw_family_curve(ax: Any, group: pd.DataFrame, color: Any, label: str) -> None:
    """One family's sweep as a line through its points, with vertical 95% CI bars."""
    group = group.sort_values("mean_cost")
    # Error bars rather than bands: one band per family stacks into an unreadable area.
    ax.errorbar(
        group["mean_cost"],
        group["accuracy"],
        yerr=_accuracy_bars(group),
        fmt="o-",
        color=color,
        markersize=4,
        elinewidth=0.8,
        capsize=2,
        label=label,
        gid=f"curve:{label}",
    )


def pareto_front(cost: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both axes, cheapest first."""
    order = np.lexsort((-accuracy, cost))
    front: list[int] = []
    for i in order:
        if not front or accuracy[i] > accuracy[front[-1]] + 1e-12:
            front.append(int(i))
    return np.asarray(front, dtype=np.int64)


def policy_curves(summary: Any, *, title: str = "") -> bytes:
    """Accuracy vs mean cost of every evaluated point: uniform configurations as grey dots,
    each policy family as a line through its sweep, the oracle as a star; 95% CI bars."""
    points = summary.points
    fig, ax = plt.subplots(figsize=(9.5, 5.5))
    _draw_uniform(ax, points)
    others = [f for f in dict.fromkeys(points["family"]) if f not in ("uniform", "oracle")]
    for i, family in enumerate(others):
        group = points[points["family"] == family]
        _draw_family_curve(ax, group, _COLORS[(2 * i) % len(_COLORS)], str(family))
    _draw_oracle(ax, points)
    ax.set_xscale("log")
    ax.set_xlabel(f"mean cost per request ({summary.unit})")
    ax.set_ylabel("accuracy (held out)")
    ax.set_title(title or "policies vs uniform budgets")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.text(0.0, -0.14, summary.protocol, transform=ax.transAxes, fontsize=7, color="0.4")
    return _png(fig)


# Published rules: one marker shape each, so a rule is told apart without its colour.
_RULE_MARKERS: tuple[str, ...] = ("s", "D", "^", "v", "P", "X", "h", "p")
_RULE_COLORS: tuple[tuple[float, ...], ...] = tuple(
    tuple(float(v) for v in plt.get_cmap("Dark2")(i)) for i in range(8)
)
BASELINE_LABEL = "best uniform (baseline)"


def online_curves_figure(
    summary: Any,
    *,
    online: tuple[str, ...],
    published: tuple[str, ...],
    title: str = "",
) -> tuple[Figure, list[str]]:
    """Policies that read the chain vs the published rules, accuracy vs mean cost (held out).

    Uniform configurations are grey dots (dashed: the non-dominated ones), the oracle a
    star, each `online` family a line through its price sweep, each `published` rule one
    labelled marker with 95% CI bars on both axes. Returns the figure and the labels that did
    not fit without overlapping (the legend names every series anyway).
    """
    points = summary.points
    fig = plt.figure(figsize=(10, 7))
    # The legend and the protocol go under the axes, so the axes keep the full width.
    ax = fig.add_axes((0.08, 0.33, 0.9, 0.61))
    _draw_uniform(ax, points, frontier=True)
    rule_labels: list[tuple[float, float, str, Any]] = []
    other_labels: list[tuple[float, float, str, Any]] = []
    curves = [f for f in online if (points["family"] == f).any()]
    for i, family in enumerate(curves):
        group = points[points["family"] == family].drop_duplicates(["mean_cost", "accuracy"])
        color = _PANEL_COLORS[i % 10]
        _draw_family_curve(ax, group, color, family)
        top = group.sort_values(["accuracy", "mean_cost"], ascending=[False, True]).iloc[0]
        other_labels.append((float(top["mean_cost"]), float(top["accuracy"]), family, color))
    rules = [f for f in published if (points["family"] == f).any()]
    for i, rule in enumerate(rules):
        one = points[points["family"] == rule].iloc[:1]
        x, y = float(one["mean_cost"].iloc[0]), float(one["accuracy"].iloc[0])
        cost_low = float(one["cost_ci_low"].iloc[0]) if "cost_ci_low" in one else x
        cost_high = float(one["cost_ci_high"].iloc[0]) if "cost_ci_high" in one else x
        color = _RULE_COLORS[i % len(_RULE_COLORS)]
        ax.errorbar(
            [x],
            [y],
            yerr=_accuracy_bars(one),
            xerr=[[np.nan_to_num(x - cost_low)], [np.nan_to_num(cost_high - x)]],
            fmt=_RULE_MARKERS[i % len(_RULE_MARKERS)],
            color=color,
            markersize=8,
            markeredgecolor="black",
            markeredgewidth=0.6,
            elinewidth=0.8,
            capsize=2,
            label=f"{rule} (published rule)",
            gid=f"rule:{rule}",
            zorder=5,
        )
        rule_labels.append((x, y, rule, color))
    _draw_oracle(ax, points)
    oracle = points[points["family"] == "oracle"]
    if len(oracle):
        x, y = float(oracle["mean_cost"].iloc[0]), float(oracle["accuracy"].iloc[0])
        other_labels.append((x, y, "oracle", "black"))
    base = points[points["label"] == summary.baseline]
    if len(base):
        x, y = float(base["mean_cost"].iloc[0]), float(base["accuracy"].iloc[0])
        ax.plot(
            [x],
            [y],
            "o",
            markersize=11,
            markerfacecolor="none",
            markeredgecolor="0.3",
            markeredgewidth=1.2,
            gid="baseline",
            label=BASELINE_LABEL,
            zorder=5,
        )
        other_labels.append((x, y, BASELINE_LABEL, "0.3"))
    policy_costs = points.loc[points["family"] != "uniform", "mean_cost"].to_numpy(dtype=float)
    policy_costs = policy_costs[np.isfinite(policy_costs) & (policy_costs > 0)]
    if len(policy_costs) and np.quantile(policy_costs, 0.9) > 20 * np.quantile(policy_costs, 0.1):
        ax.set_xscale("log")  # policies spread over orders of magnitude
    else:
        ax.set_xlim(left=0)  # savings read as distances
    ax.set_xlabel(f"mean cost per request ({summary.unit}, held out)")
    ax.set_ylabel("accuracy (held out)")
    ax.set_title(title or "during generation: policies that read the chain vs published rules")
    ax.grid(True, alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    legend = fig.legend(
        handles,
        names,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.25),
        ncol=3,
        fontsize=8,
        frameon=False,
    )
    fig.canvas.draw()  # fix the limits before measuring where labels fit
    labelled = rule_labels + other_labels  # rules first: they get the best label spots
    shown = points[points["family"].isin(["uniform", *curves])]
    left_out = place_labels(
        ax,
        np.array([p[0] for p in labelled]),
        np.array([p[1] for p in labelled]),
        [p[2] for p in labelled],
        fontsize=7.5,
        avoid=shown[["mean_cost", "accuracy"]].to_numpy(dtype=float),
        backdrop=True,
        colors=[p[3] for p in labelled],
    )
    under = legend.get_window_extent().y0 / fig.bbox.height  # the protocol, right below it
    fig.text(
        0.08,
        under - 0.01,
        textwrap.fill(str(summary.protocol), 150),
        fontsize=7,
        color="0.4",
        va="top",
    )
    return fig, left_out


def online_curves(
    summary: Any, *, online: tuple[str, ...], published: tuple[str, ...], title: str = ""
) -> tuple[bytes, list[str]]:
    """PNG of :func:`online_curves_figure` and the labels left out of it."""
    fig, left_out = online_curves_figure(summary, online=online, published=published, title=title)
    return _png(fig), left_out
