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

_COLORS: tuple[tuple[float, ...], ...] = tuple(
    tuple(float(v) for v in plt.get_cmap("tab20")(i)) for i in range(20)
)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _series_label(model: str, mode: str) -> str:
    return model if mode in ("think", "default") else f"{model} ({mode})"


def _color_map(labels: list[str]) -> dict[str, tuple[float, ...]]:
    return {label: _COLORS[i % len(_COLORS)] for i, label in enumerate(sorted(labels))}


def accuracy_curves(cells: pd.DataFrame, dataset: str, *, x: str = "budget") -> bytes:
    """Accuracy vs budget (or vs mean tokens) per model, with 95% CI bands.

    Recorded cells are solid with markers; cells derived from a larger cap are dashed.
    Models with a single budget appear as points with error bars.
    """
    data = cells[(cells["dataset"] == dataset) & cells["budget"].notna()].copy()
    if x == "mean_tokens":
        data = data[data["mean_tokens"].notna()]
    data["label"] = [_series_label(m, o) for m, o in zip(data["model"], data["mode"], strict=True)]
    colors = _color_map(list(data["label"].unique()))
    fig, ax = plt.subplots(figsize=(9.5, 5))
    for label, group in data.groupby("label", sort=True):
        group = group.sort_values(x)
        color = colors[str(label)]
        xs = group[x].to_numpy(dtype=float)
        ys = group["accuracy"].to_numpy(dtype=float)
        lo = group["ci_low"].to_numpy(dtype=float)
        hi = group["ci_high"].to_numpy(dtype=float)
        derived = group["derived"].to_numpy(dtype=bool)
        if len(group) == 1:
            ax.errorbar(
                xs, ys, yerr=[ys - lo, hi - ys], fmt="o", color=color, capsize=3, label=str(label)
            )
            continue
        ax.fill_between(xs, lo, hi, color=color, alpha=0.12, linewidth=0)
        ax.plot(xs, ys, color=color, linewidth=1.6, linestyle="-", label=str(label))
        ax.plot(xs[~derived], ys[~derived], "o", color=color, markersize=5)
        ax.plot(xs[derived], ys[derived], "o", color=color, markersize=4, markerfacecolor="white")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("token budget (cap)" if x == "budget" else "mean output tokens")
    ax.set_ylabel("accuracy")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{dataset}: accuracy vs {'budget' if x == 'budget' else 'tokens spent'}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if x == "budget":
        ax.text(
            0.99,
            0.01,
            "filled: recorded   open: derived from a larger cap   band: 95% CI",
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=7,
            color="0.4",
        )
    return _png(fig)


def difficulty_panels(difficulty: pd.DataFrame, dataset: str, *, max_models: int = 6) -> bytes:
    """One panel per model: accuracy vs budget for each difficulty bin, with CI bands."""
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
    for ax, model in zip(axes.flat, models, strict=False):
        sub = data[data["model"] == model]
        for color, name in zip(palette, bins, strict=True):
            group = sub[sub["difficulty"].astype(str) == name].sort_values("budget")
            if group.empty:
                continue
            xs = group["budget"].to_numpy(dtype=float)
            ax.fill_between(
                xs, group["ci_low"], group["ci_high"], color=color, alpha=0.15, linewidth=0
            )
            ax.plot(xs, group["accuracy"], "o-", color=color, markersize=3, label=name)
        ax.set_xscale("log", base=2)
        ax.set_title(model, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(0, 1.02)
    for ax in list(axes.flat)[len(models) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7, title="difficulty", title_fontsize=7, frameon=False)
    source = data["difficulty_source"].iloc[0] if "difficulty_source" in data and len(data) else ""
    fig.suptitle(f"{dataset}: accuracy vs budget by difficulty ({source})", fontsize=10)
    fig.supxlabel("token budget (cap)", fontsize=9)
    fig.supylabel("accuracy", fontsize=9)
    return _png(fig)


def token_histograms(frame: pd.DataFrame, dataset: str, *, max_models: int = 6) -> bytes:
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
    fig.suptitle(f"{dataset}: output tokens per response, by cap", fontsize=10)
    fig.supxlabel("output tokens", fontsize=9)
    fig.supylabel("responses", fontsize=9)
    return _png(fig)


def model_accuracy_bars(cells: pd.DataFrame, dataset: str) -> bytes:
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
    ax.set_title(f"{dataset}: accuracy per model")
    ax.grid(True, axis="x", alpha=0.3)
    return _png(fig)


def accuracy_vs_tokens_points(points: pd.DataFrame, title: str) -> bytes:
    """Accuracy vs mean output tokens, one point per model (e.g. leaderboard summaries)."""
    fig, ax = plt.subplots(figsize=(8.5, 5))
    ax.errorbar(
        points["mean_tokens"],
        points["accuracy"],
        yerr=[points["accuracy"] - points["ci_low"], points["ci_high"] - points["accuracy"]],
        fmt="o",
        color="#4c78a8",
        capsize=2,
        alpha=0.8,
    )
    for _, row in points.iterrows():
        ax.annotate(
            str(row["model"]),
            (row["mean_tokens"], row["accuracy"]),
            fontsize=6,
            xytext=(3, 3),
            textcoords="offset points",
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
        ax.legend(fontsize=7, frameon=False)
    ax.set_xscale("log")
    ax.set_xlabel("mean output tokens (source's summary)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return _png(fig)


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
        ax.plot(
            group["mean_cost"], group["accuracy"], "o-", color=color, markersize=4, label=family
        )
        ax.fill_between(
            group["mean_cost"],
            group["accuracy_ci_low"],
            group["accuracy_ci_high"],
            color=color,
            alpha=0.1,
            linewidth=0,
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
