"""One self-contained HTML report (inline PNG plots) from the outcome store's curves."""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup, escape

from ponder import __version__
from ponder.curves import Curves
from ponder.curves.aggregate import CELL_LABELS
from ponder.report import plots

if TYPE_CHECKING:
    from ponder.evaluate.metrics import Summary

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("ponder.report", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
)

ATTRIBUTIONS = {
    "reasoning_budget_sweep": '"Reasoning Budget Sweep", S. Hossain (CC-BY-4.0)',
    "mmlu_pro_math": "MMLU-Pro, TIGER-AI-Lab (MIT data)",
    "routellm_gsm8k": "RouteLLM, LMSYS (Apache-2.0)",
    "matharena_aime2025_I": "MathArena, ETH SRI (MIT)",
}


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


def number_format(values: Sequence[object] | pd.Series) -> Callable[[object], str]:
    """One format for a whole column, so `64.000` never sits above `128`.

    Whole numbers print without decimals; a column reaching 100 prints without decimals
    (token counts); anything else with three decimals. Missing values print as "–".
    """
    numbers = [
        float(v)
        for v in values
        if isinstance(v, int | float | np.number) and not isinstance(v, bool | np.bool_)
    ]
    finite = [v for v in numbers if math.isfinite(v)]
    whole = bool(finite) and all(v == round(v) for v in finite)
    large = bool(finite) and max(abs(v) for v in finite) >= 100

    def fmt(value: object) -> str:
        if value is None or value is pd.NA:
            return "–"
        if isinstance(value, bool | np.bool_):
            return "yes" if value else "no"
        if isinstance(value, int | float | np.number):
            number = float(value)
            if math.isnan(number):
                return "–"
            return f"{number:,.0f}" if whole or large else f"{number:.3f}"
        return str(value)

    return fmt


def html_table(frame: pd.DataFrame, columns: dict[str, str]) -> Markup:
    """A plain HTML table of `frame[columns]`, headers renamed, one number format per column."""
    head = "".join(
        f'<th class="{"l" if frame[c].dtype == object else ""}">{escape(h)}</th>'
        for c, h in columns.items()
    )
    formats = {c: number_format(frame[c]) for c in columns}
    body = []
    for row in frame[list(columns)].itertuples(index=False):
        cells = []
        for c, value in zip(columns, row, strict=True):
            cls = "l" if frame[c].dtype == object else ""
            if c == "overthinking" and value is True:
                cls += " yes"
            cells.append(f'<td class="{cls}">{escape(formats[c](value))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return Markup(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def _summary_tokens(runs: pd.DataFrame) -> dict[str, float]:
    """Per-model mean output tokens from run settings (for sources that publish only those)."""
    out: dict[str, float] = {}
    for _, run in runs.iterrows():
        settings = json.loads(run["settings_json"] or "{}")
        if "mean_output_tokens" in settings:
            out[str(run["model"])] = float(settings["mean_output_tokens"])
    return out


def build_report(
    frame: pd.DataFrame,
    curves: Curves,
    runs: pd.DataFrame,
    out: Path,
    *,
    store_label: str = "",
    n_boot: int = 1000,
    seed: int = 0,
    title: str = "ponder: accuracy vs inference-time budget",
    on_dataset: Callable[[str], None] | None = None,
    evaluations: Sequence[tuple[str, Summary]] = (),
    claims: dict[str, Any] | None = None,
) -> Path:
    """Render the report to `out` (written atomically) and return its path.

    `on_dataset(name)` is called as each dataset's plots are done (for progress bars);
    `claims` is the claims section (``ponder.report.claims.claims_context``), if any.
    """
    cells = curves.cells
    framed = with_sources(frame, runs)
    sources = source_map(framed)
    budget_sections = []
    flat_sections = []
    notes: list[str] = []
    for dataset in sorted(cells["dataset"].unique()):
        ds_cells = cells[cells["dataset"] == dataset]
        budgeted = ds_cells[ds_cells["budget"].notna()]
        ds_frame = framed[framed["dataset"] == dataset]
        if budgeted["budget"].nunique() >= 2:
            label = dataset_label(ds_frame[ds_frame["budget"].notna()], str(dataset))
            has_tokens = budgeted["mean_tokens"].notna().any()
            diff = curves.difficulty
            has_diff = not diff.empty and (diff["dataset"] == dataset).any()
            budget_sections.append(
                {
                    "name": dataset,
                    "label": label,
                    "n_models": budgeted["model"].nunique(),
                    "n_problems": ds_frame.loc[ds_frame["budget"].notna(), "problem_id"].nunique(),
                    "budgets": ", ".join(str(int(b)) for b in sorted(budgeted["budget"].unique())),
                    "n_derived": int(budgeted["derived"].fillna(False).astype(bool).sum()),
                    "curve_budget": _b64(plots.accuracy_curves(cells, dataset, title=label)),
                    "curve_tokens": _b64(
                        plots.accuracy_curves(cells, dataset, x="mean_tokens", title=label)
                    )
                    if has_tokens
                    else None,
                    "difficulty": _b64(plots.difficulty_panels(diff, dataset, title=label))
                    if has_diff
                    else None,
                    "histograms": _b64(plots.token_histograms(ds_frame, dataset, title=label))
                    if ds_frame["output_tokens"].notna().any()
                    else None,
                }
            )
        flat = ds_cells[ds_cells["budget"].isna()]
        if len(flat):
            label = dataset_label(ds_frame[ds_frame["budget"].isna()], str(dataset))
            summary = _summary_tokens(runs)
            points = flat.assign(mean_tokens=flat["model"].map(summary))
            points = points[points["mean_tokens"].notna()]
            aggregated = bool((ds_frame.loc[ds_frame["budget"].isna(), "n_runs"] > 1).any())
            caption = (
                f"{flat['model'].nunique()} models, "
                f"{ds_frame.loc[ds_frame['budget'].isna(), 'problem_id'].nunique()} problems"
                + ("; aggregated rows (share of runs solved per problem)" if aggregated else "")
                + "."
            )
            scatter: str | None = None
            left_out: list[str] = []
            if len(points) >= 2:
                figure, left_out = plots.accuracy_vs_tokens_points_figure(
                    points, f"{label}: accuracy vs mean output tokens"
                )
                scatter = _b64(plots.figure_png(figure))
            flat_sections.append(
                {
                    "name": dataset,
                    "label": label,
                    "caption": caption,
                    "bars": _b64(plots.model_accuracy_bars(flat, str(dataset), title=label)),
                    "points": scatter,
                    "points_table": _points_table(points) if scatter else None,
                    "n_points": len(points),
                    "n_unlabelled": len(left_out),
                }
            )
        if on_dataset is not None:
            on_dataset(dataset)
    sweet = _add_source(curves.sweet_spots, sources)
    sweet_labels = _sweet_labels()
    sweet_table = (
        html_table(sweet, _with_source_column(_present(sweet, sweet_labels)))
        if not sweet.empty
        else Markup("<p>No model has two or more budgets on one dataset.</p>")
    )
    passk_table, n_passk = _passk_table(curves, sources)
    cells_table = html_table(
        _add_source(cells, sources), _with_source_column(_present(cells, CELL_LABELS))
    )
    policy_sections = [
        _policy_section(name, summary, _policy_label(framed, name)) for name, summary in evaluations
    ]
    run_sources = sorted(set(runs["source"])) if "source" in runs else []
    attributions = [ATTRIBUTIONS.get(s, s) for s in run_sources]
    html = _ENV.get_template("report.html").render(
        title=title,
        version=__version__,
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        store_label=store_label,
        counts={
            "outcomes": len(frame),
            "problems": frame[["dataset", "problem_id"]].drop_duplicates().shape[0],
            "models": frame["model"].nunique(),
        },
        n_boot=n_boot,
        seed=seed,
        budget_sections=budget_sections,
        flat_sections=flat_sections,
        sweet_table=sweet_table,
        sweet_labels=sweet_labels,
        passk_table=passk_table,
        n_passk=n_passk,
        cells_table=cells_table,
        policy_sections=policy_sections,
        claims=claims,
        n_cells=len(cells),
        notes=notes,
        attributions=attributions,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out)
    return out


# The sweet-spot columns the report shows, named as everywhere else (SWEET_SPOT_LABELS).
_SWEET_COLUMNS: tuple[str, ...] = (
    "model",
    "dataset",
    "mode",
    "n_budgets",
    "sweet_spot",
    "sweet_spot_accuracy",
    "sweet_spot_share",
    "sweet_spot_min",
    "largest_budget",
    "drop",
    "drop_ci_low",
    "drop_ci_high",
    "overthinking",
)


def _sweet_labels() -> dict[str, str]:
    """The report's sweet-spot columns under the names the CLI and the demo use."""
    from ponder.curves.sweetspot import SWEET_SPOT_LABELS

    return {c: SWEET_SPOT_LABELS[c] for c in _SWEET_COLUMNS}


def _present(frame: pd.DataFrame, columns: dict[str, str]) -> dict[str, str]:
    return {c: h for c, h in columns.items() if c in frame.columns}


def with_sources(frame: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The outcome frame with each row's ``source`` (from its run); "" when unknown."""
    if "source" in frame.columns:
        return frame
    if "run_id" not in frame.columns or not {"run_id", "source"} <= set(runs.columns):
        return frame.assign(source="")
    lookup = runs.drop_duplicates("run_id").set_index("run_id")["source"]
    return frame.assign(source=frame["run_id"].map(lookup).fillna("").astype(str))


def dataset_label(rows: pd.DataFrame, dataset: str) -> str:
    """`aime25 · matharena_aime2025_I, 15 problems`: a dataset name with where it came from.

    Two sources can use the same dataset name for different problem sets (30 AIME 2025
    problems in one, 15 in another), so every heading and title carries source and count.
    """
    if rows.empty:
        return dataset
    parts = []
    for source, group in rows.groupby("source", sort=True):
        count = group["problem_id"].nunique()
        noun = "problem" if count == 1 else "problems"
        parts.append(f"{source!s}, {count} {noun}" if source else f"{count} {noun}")
    return f"{dataset} · " + " + ".join(parts)


def source_map(framed: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(dataset, model) -> its source(s), for the source column of the tables."""
    pairs = framed[["dataset", "model", "source"]].drop_duplicates()
    out: dict[tuple[str, str], str] = {}
    for (dataset, model), group in pairs.groupby(["dataset", "model"], sort=True):
        out[(str(dataset), str(model))] = " + ".join(sorted(str(v) for v in group["source"]))
    return out


def _add_source(table: pd.DataFrame, sources: dict[tuple[str, str], str]) -> pd.DataFrame:
    if table.empty or not {"dataset", "model"} <= set(table.columns):
        return table
    keys = zip(table["dataset"].astype(str), table["model"].astype(str), strict=True)
    return table.assign(source=[sources.get(k, "") for k in keys]).astype({"source": object})


def _with_source_column(columns: dict[str, str]) -> dict[str, str]:
    """The same headers with a "source" column right after "dataset"."""
    out: dict[str, str] = {}
    for c, h in columns.items():
        out[c] = h
        if c == "dataset":
            out["source"] = "source"
    return out


def _policy_label(framed: pd.DataFrame, dataset: str) -> str:
    """Label of the rows a policy evaluation uses: the dataset's single samples."""
    rows = framed[framed["dataset"] == dataset]
    if "n_runs" in rows.columns:
        rows = rows[rows["n_runs"].fillna(1) <= 1]
    return dataset_label(rows, dataset)


def _points_table(points: pd.DataFrame) -> Markup:
    """Every point of the scatter, since only labels that fit are drawn."""
    table = points.sort_values("accuracy", ascending=False)
    return html_table(
        table,
        {
            "model": "model",
            "mean_tokens": "mean output tokens",
            "accuracy": "accuracy",
            "ci_low": "95% low",
            "ci_high": "95% high",
        },
    )


def _passk_table(curves: Curves, sources: dict[tuple[str, str], str]) -> tuple[Markup | None, int]:
    """pass@k and maj@k side by side, for recorded cells with repeated samples; row count."""
    keys = ["model", "dataset", "mode", "budget"]
    passk, majk = curves.pass_at_k, curves.maj_at_k
    if passk.empty:
        return None, 0
    passk = passk[~passk["derived"]]
    repeated = passk[passk["k"] >= 2][keys].drop_duplicates()
    if repeated.empty:
        return None, 0
    passk = passk.merge(repeated, on=keys)
    majk = majk[~majk["derived"]].merge(repeated, on=keys) if not majk.empty else majk
    wide = passk.pivot_table(index=keys, columns="k", values="value")
    wide.columns = [f"pass@{int(k)}" for k in wide.columns]
    if not majk.empty:
        maj = majk.pivot_table(index=keys, columns="k", values="value")
        maj.columns = [f"maj@{int(k)}" for k in maj.columns]
        wide = wide.join(maj)
    wide = _add_source(wide.reset_index(), sources)
    columns = _with_source_column({c: c for c in wide.columns if c != "source"})
    return html_table(wide, columns), len(wide)


def _value(row: Any, key: str) -> float:
    """A float field of a summary row, NaN when missing (the tables evolve)."""
    value = row.get(key, np.nan) if hasattr(row, "get") else np.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


class _Notes:
    """Reasons why figures are undefined, printed once under the table as (a), (b), ..."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def mark(self, reason: str) -> str:
        if reason not in self.reasons:
            self.reasons.append(reason)
        return f"undefined ({chr(ord('a') + self.reasons.index(reason))})"

    def html(self) -> Markup:
        items = "".join(
            f"<li>({chr(ord('a') + k)}) {escape(r)}</li>" for k, r in enumerate(self.reasons)
        )
        return Markup(f'<ul class="notes">{items}</ul>') if items else Markup("")


def _with_ci(row: Any, key: str, notes: _Notes, *, points: bool, undefined: str) -> str:
    """`-12.3% [-20.1%, -4.0%]` (or `+3.3 pts [...]` for accuracy), or a marked reason why it
    is undefined (the evaluation's own `<key>_note` when it gives one)."""
    value = _value(row, key)
    if math.isnan(value):
        note = row.get(f"{key}_note") if hasattr(row, "get") else None
        return notes.mark(note if isinstance(note, str) and note else undefined)

    def fmt(v: float) -> str:
        if math.isnan(v):
            return "?"
        return f"{100 * v:+.1f} pts" if points else f"{v:+.1%}"

    lo, hi = _value(row, f"{key}_ci_low"), _value(row, f"{key}_ci_high")
    return f"{fmt(value)} [{fmt(lo)}, {fmt(hi)}]"


_NOT_AS_ACCURATE = "no setting of the policy is as accurate as the baseline"
_NOT_AS_CHEAP = "no setting of the policy is as cheap as the baseline"
_NO_MIX = "no mix of uniform settings is comparable"


def _best_point(
    summary: Summary, row: Any, points: pd.DataFrame
) -> tuple[float, float, float, float]:
    """Held-out accuracy, its 95% CI and mean cost of a family's most accurate point.

    With nested selection the point may differ between folds: the figures are then the
    evaluation's own (`best_accuracy`, `best_accuracy_cost`), the same numbers `ponder
    evaluate` prints, with a CI only where one candidate was chosen in every fold (the
    baseline's from `baseline_figures`).
    """
    label = str(row["best_label"])
    figures: dict[str, float] = getattr(summary, "baseline_figures", {}) or {}
    if isinstance(row.get("best_accuracy_note"), str) and row["best_accuracy_note"]:
        nan = float("nan")  # no choice in some fold: undefined, never the hindsight point
        return nan, nan, nan, nan
    nested = not math.isnan(_value(row, "best_accuracy"))
    same_everywhere = _value(row, "best_folds") >= _value(figures, "folds") or not nested
    lo = hi = float("nan")
    if label in points.index and same_everywhere:
        best = points.loc[label]
        lo, hi = _value(best, "accuracy_ci_low"), _value(best, "accuracy_ci_high")
    if row["family"] == "uniform" and "accuracy_ci_low" in figures:
        lo, hi = _value(figures, "accuracy_ci_low"), _value(figures, "accuracy_ci_high")
    if nested:
        return _value(row, "best_accuracy"), lo, hi, _value(row, "best_accuracy_cost")
    best = points.loc[label]
    return _value(best, "accuracy"), lo, hi, _value(best, "mean_cost")


def _families_table(summary: Summary) -> tuple[Markup, Markup]:
    """The policies table in plain-word headers, each figure with its 95% CI and undefined
    figures explained under it; and the hindsight upper bounds as a second table."""
    points = summary.points.set_index("label")
    summary_figures: dict[str, float] = getattr(summary, "baseline_figures", {}) or {}
    notes = _Notes()
    has_change = "accuracy_change_at_iso_accuracy" in summary.families.columns
    rows, hindsight = [], []
    for _, row in summary.families.iterrows():
        family = str(row["family"])
        name = "oracle (upper bound, not servable)" if family == "oracle" else family
        label = str(row["best_label"])
        acc, lo, hi, cost = _best_point(summary, row, points)
        setting = label.removeprefix(f"{family} ")
        chosen, folds = _value(row, "best_folds"), _value(summary_figures, "folds")
        if chosen < folds:
            setting += f" (chosen in {chosen:.0f} of {folds:.0f} folds)"
        ci = "" if math.isnan(lo) else f" [{lo:.3f}, {hi:.3f}]"
        record: dict[str, object] = {
            "policy": name,
            "setting": setting,
            "accuracy [95% CI]": f"{acc:.3f}{ci}"
            if math.isfinite(acc)
            else f"undefined ({row.get('best_accuracy_note')})",
            "mean cost": cost,
            "cost saved at the baseline's accuracy": _with_ci(
                row, "saved_at_iso_accuracy", notes, points=False, undefined=_NOT_AS_ACCURATE
            ),
        }
        if has_change:
            record["accuracy change at that setting"] = _with_ci(
                row,
                "accuracy_change_at_iso_accuracy",
                notes,
                points=True,
                undefined=_NOT_AS_ACCURATE,
            )
        record["accuracy gained at the baseline's cost"] = _with_ci(
            row, "gain_at_iso_cost", notes, points=True, undefined=_NOT_AS_CHEAP
        )
        record["cost to reach 95% of the baseline (mixed uniform settings)"] = (
            _value(row, "cost_to_95pct"),
            _value(row, "uniform_cost_to_95pct"),
        )
        record["calibration error"] = _value(row, "calibration_error")
        rows.append(record)
        hindsight.append(
            {
                "policy": name,
                "most accuracy gained over mixed uniform settings": _with_ci(
                    row, "frontier_gain", notes, points=True, undefined=_NO_MIX
                ),
                "most cost saved over mixed uniform settings": _with_ci(
                    row, "frontier_saving", notes, points=False, undefined=_NO_MIX
                ),
            }
        )
    table = pd.DataFrame(rows)
    reach_column = "cost to reach 95% of the baseline (mixed uniform settings)"
    reach = number_format([v for pair in table[reach_column] for v in pair])

    def reached(v: float) -> str:
        return "not reached" if math.isnan(v) else reach(v)

    table[reach_column] = [f"{reached(a)} ({reached(b)})" for a, b in table[reach_column]]
    cost_format = number_format(table["mean cost"])
    table["mean cost"] = [cost_format(v) for v in table["mean cost"]]
    calibration = number_format(table["calibration error"])
    table["calibration error"] = [
        "no prediction" if math.isnan(v) else calibration(v)
        for v in table["calibration error"].to_numpy(float)
    ]
    main = html_table(table.astype(object), {c: c for c in table.columns})
    upper = pd.DataFrame(hindsight).astype(object)
    return Markup(main + notes.html()), html_table(upper, {c: c for c in upper.columns})


def policy_conclusion(summary: Summary) -> str:
    """One plain sentence: which policy, if any, beats the best uniform setting on held-out
    problems, by how much, with the 95% CI; otherwise which comes closest."""
    points = summary.points.set_index("label")
    unit = summary.unit
    baseline = f"the best uniform setting ({summary.baseline}"
    figures: dict[str, float] = getattr(summary, "baseline_figures", {}) or {}
    if "accuracy" in figures:
        accuracy, cost = _value(figures, "accuracy"), _value(figures, "mean_cost")
        baseline += f": accuracy {accuracy:.3f} at {cost:,.0f} {unit}"
    elif summary.baseline in points.index:
        base = points.loc[summary.baseline]
        accuracy, cost = _value(base, "accuracy"), _value(base, "mean_cost")
        baseline += f": accuracy {accuracy:.3f} at {cost:,.0f} {unit}"
    baseline += " per request)"
    families = summary.families[~summary.families["family"].isin(["uniform", "oracle"])]
    if families.empty:
        return f"No policy could be evaluated against {baseline}."

    def saving(row: Any) -> str:
        lo, hi = (
            _value(row, "saved_at_iso_accuracy_ci_low"),
            _value(row, "saved_at_iso_accuracy_ci_high"),
        )
        return (
            f"{_value(row, 'saved_at_iso_accuracy'):.0%} less cost at the same accuracy "
            f"(95% CI {lo:+.0%} to {hi:+.0%})"
        )

    def gain(row: Any) -> str:
        lo, hi = _value(row, "gain_at_iso_cost_ci_low"), _value(row, "gain_at_iso_cost_ci_high")
        return (
            f"{100 * _value(row, 'gain_at_iso_cost'):+.1f} accuracy points at no more cost "
            f"(95% CI {100 * lo:+.1f} to {100 * hi:+.1f})"
        )

    saves = families.assign(
        _lo=[_value(r, "saved_at_iso_accuracy_ci_low") for _, r in families.iterrows()],
        _v=[_value(r, "saved_at_iso_accuracy") for _, r in families.iterrows()],
    )
    gains = families.assign(
        _lo=[_value(r, "gain_at_iso_cost_ci_low") for _, r in families.iterrows()],
        _v=[_value(r, "gain_at_iso_cost") for _, r in families.iterrows()],
    )
    winners = saves[saves["_lo"] > 0]
    if len(winners):
        row = winners.sort_values("_v", ascending=False).iloc[0]
        return f"{row['family']} beats {baseline} on held-out problems: {saving(row)}."
    winners = gains[gains["_lo"] > 0]
    if len(winners):
        row = winners.sort_values("_v", ascending=False).iloc[0]
        return f"{row['family']} beats {baseline} on held-out problems: {gain(row)}."
    verdict = f"No policy beats {baseline} on held-out problems at 95% confidence"
    reaching = saves[saves["_v"].notna()]
    if len(reaching):
        row = reaching.sort_values("_v", ascending=False).iloc[0]
        return f"{verdict}; the closest, {row['family']}, has {saving(row)}."
    cheap = gains[gains["_v"].notna()]
    if len(cheap):
        row = cheap.sort_values("_v", ascending=False).iloc[0]
        return f"{verdict}; none is as accurate, and the closest, {row['family']}, has {gain(row)}."
    return f"{verdict}: none is as accurate, and none is as cheap."


# -- during generation: policies that read the chain vs the published rules ---------------------


def family_groups() -> dict[str, tuple[str, ...]]:
    """Which registered families are ponder's online ones, published rules, or decide a priori
    (from what is known before generation): the one place the report groups them."""
    from ponder.evaluate.catalog import FAMILIES, ONLINE, PUBLISHED

    online = ONLINE
    published = tuple(PUBLISHED)
    a_priori = tuple(f for f in FAMILIES if f not in online and f not in published)
    return {"online": online, "published": published, "a priori": a_priori}


def _fig(row: Any, key: str) -> tuple[float, float, float, str]:
    """A summary figure: value, 95% CI low and high, and the note saying why it is undefined."""
    note = row.get(f"{key}_note") if hasattr(row, "get") else None
    return (
        _value(row, key),
        _value(row, f"{key}_ci_low"),
        _value(row, f"{key}_ci_high"),
        note if isinstance(note, str) else "",
    )


def _share(v: float) -> str:
    return f"{v:.1%}"


def _points(v: float) -> str:
    return f"{100 * v:+.1f}"


# The measures a family is compared on, in order, both relative to the same baseline:
# (column, what it is, value format, unit after the value).
_MEASURES: tuple[tuple[str, str, Callable[[float], str], str], ...] = (
    ("saved_at_iso_accuracy", "cost saved at the baseline's accuracy", _share, ""),
    ("gain_at_iso_cost", "accuracy gained at the baseline's cost", _points, " pts"),
)


def _with_interval(row: Any, key: str) -> str:
    """`-1.3 pts, 95% CI -3.9 to +0.0` for one of the `_MEASURES`."""
    _, _, fmt, unit = next(m for m in _MEASURES if m[0] == key)
    value, lo, hi, _ = _fig(row, key)
    return f"{fmt(value)}{unit}, 95% CI {fmt(lo)} to {fmt(hi)}"


def _rank(row: Any) -> tuple[float, float, float, float]:
    """Best online family: largest saving at the baseline's accuracy; if none reaches that
    accuracy, largest accuracy gain at the baseline's cost; then the most accurate, then the
    cheapest."""

    def known(v: float) -> float:
        return v if math.isfinite(v) else -math.inf

    return (
        known(_value(row, "saved_at_iso_accuracy")),
        known(_value(row, "gain_at_iso_cost")),
        known(_value(row, "best_accuracy")),
        known(-_value(row, "best_accuracy_cost")),
    )


def _versus_baseline(row: Any, unit: str) -> str:
    """Cost saved at the baseline's accuracy and accuracy change at its cost, with 95% CIs."""
    saved, lo, hi, note = _fig(row, "saved_at_iso_accuracy")
    interval = f"95% CI {_share(lo)} to {_share(hi)}"
    if math.isnan(saved):
        first = f"no saving: {note or _NOT_AS_ACCURATE}"
    elif lo > 0:
        first = f"it needs {_share(saved)} fewer {unit} at the baseline's accuracy ({interval})"
    elif hi < 0:
        first = (
            f"no saving: it needs {_share(-saved)} more {unit} at the baseline's accuracy "
            f"({interval})"
        )
    else:
        first = (
            f"no saving: interval includes 0 ({_share(saved)} fewer {unit} at the baseline's "
            f"accuracy, {interval})"
        )
    gain, _, _, gain_note = _fig(row, "gain_at_iso_cost")
    if math.isnan(gain):
        second = f"at the baseline's cost: {gain_note or _NOT_AS_CHEAP}"
    else:
        _, glo, ghi, _ = _fig(row, "gain_at_iso_cost")
        second = (
            f"at the baseline's cost its accuracy changes by {_points(gain)} pts "
            f"(95% CI {_points(glo)} to {_points(ghi)})"
        )
    return f"{first}; {second}"


def compare_with_rule(family: Any, rule: Any) -> tuple[str, str]:
    """(verdict, measure): "ahead", "behind" or "tied" on the first of `_MEASURES` both have
    with a 95% CI (ahead: the family's interval lies above the rule's; behind: below; tied:
    they overlap), or ("not compared", why) when they share none."""
    for key, _, _, _ in _MEASURES:
        a, alo, ahi, _ = _fig(family, key)
        b, blo, bhi, _ = _fig(rule, key)
        if not all(math.isfinite(v) for v in (a, alo, ahi, b, blo, bhi)):
            continue
        if alo > bhi:
            return "ahead", key
        if ahi < blo:
            return "behind", key
        return "tied", key
    reasons = [_fig(rule, key)[3] for key, _, _, _ in _MEASURES if math.isnan(_value(rule, key))]
    # ", and " between reasons: "; " separates the verdicts of the sentence they go into
    return "not compared", ", and ".join(
        dict.fromkeys(r for r in reasons if r)
    ) or "no figure in common"


def _join(items: list[str]) -> str:
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _reason(family: str, why: str) -> str:
    """A skip reason without the family name it often starts with."""
    return why.removeprefix(f"{family}: ").removeprefix(f"{family} ")


def _rules_sentence(best: str, row: Any, rules: dict[str, Any]) -> str:
    """The best online family against each published rule, with the figures it rests on."""
    compared = {rule: compare_with_rule(row, rule_row) for rule, rule_row in rules.items()}
    used = list(dict.fromkeys(m for v, m in compared.values() if v != "not compared"))
    short = {"saved_at_iso_accuracy": "saving ", "gain_at_iso_cost": "gain "}
    verdicts: dict[str, list[str]] = {}
    for rule, (verdict, measure) in compared.items():
        if verdict == "not compared":
            figure = measure  # why not
        else:
            prefix = short[measure] if len(used) > 1 else ""
            figure = prefix + _with_interval(rules[rule], measure)
        verdicts.setdefault(verdict, []).append(f"{rule} ({figure})")
    phrases = {
        "ahead": "ahead of",
        "tied": "tied within the CIs with",
        "behind": "behind",
        "not compared": "not comparable with",
    }
    text = "; ".join(f"{phrases[v]} {_join(verdicts[v])}" for v in phrases if v in verdicts)
    basis = ", else on ".join(
        f"{what} ({best} {_with_interval(row, key)})"
        for key, what, _, _ in _MEASURES
        if key in used
    )
    lead = "Against the published rules on the same problems"
    if basis:
        lead += f", compared on {basis}"
    return f"{lead}, {best} is {text}."


def online_conclusion(summary: Summary) -> list[str]:
    """Plain sentences from the numbers: the best online family against the best uniform
    configuration and against each published rule that ran, its share of the gap to the
    oracle, and which of these families could not run and why. Empty when none of them ran."""
    groups = family_groups()
    group = (*groups["online"], *groups["published"])
    families = summary.families.set_index("family", drop=False)
    ran_online = [f for f in groups["online"] if f in families.index]
    ran_rules = [f for f in groups["published"] if f in families.index]
    if not ran_online and not ran_rules:
        return []
    unit = summary.unit
    figures: dict[str, float] = getattr(summary, "baseline_figures", {}) or {}
    base_acc, base_cost = _value(figures, "accuracy"), _value(figures, "mean_cost")
    points = summary.points.set_index("label")
    if math.isnan(base_acc) and summary.baseline in points.index:
        base_acc = _value(points.loc[summary.baseline], "accuracy")
        base_cost = _value(points.loc[summary.baseline], "mean_cost")
    baseline = (
        f"{base_acc:.3f} at {base_cost:,.0f} for the best uniform configuration, "
        f"{summary.baseline.removeprefix('uniform ')}"
    )
    sentences: list[str] = []
    if ran_online:
        best = max(ran_online, key=lambda f: _rank(families.loc[f]))
        row = families.loc[best]
        acc, _, _, cost = _best_point(summary, row, points)
        where = (
            f"with accuracy {acc:.3f} at {cost:,.0f} {unit} per request against {baseline}"
            if math.isfinite(acc)
            else f"though its most accurate setting is undefined (the baseline: {baseline})"
        )
        sentences.append(
            f"Of the policies that read the chain ({_join(ran_online)}), {best} does best on "
            f"held-out problems, {where}; {_versus_baseline(row, unit)}."
        )
        if ran_rules:
            sentences.append(_rules_sentence(best, row, {r: families.loc[r] for r in ran_rules}))
        sentences.append(_gap_sentence(summary, families, best))
    else:
        sentences.append(
            f"None of the policies that read the chain ran here; against {baseline} ({unit}), "
            + "; ".join(f"{r}: {_versus_baseline(families.loc[r], unit)}" for r in ran_rules)
            + "."
        )
    # Why the others did not run: one clause per reason (several rules often share one).
    by_reason: dict[str, list[str]] = {}
    for family, why in getattr(summary, "skipped", ()):
        owner = next((g for g in group if family == g or family.startswith(f"{g} ")), None)
        if owner is not None:
            by_reason.setdefault(_reason(owner, why), []).append(family)
    named = {f for names in by_reason.values() for f in names}
    missing = [
        f
        for f in group
        if f not in families.index and f not in named and f in _registered_families()
    ]
    tail = []
    if by_reason:
        tail.append(
            "Could not run here: "
            + "; ".join(f"{_join(names)} ({why})" for why, names in by_reason.items())
        )
    if missing:
        tail.append(f"Not in this evaluation (no reason recorded): {_join(missing)}")
    if tail:
        sentences.append(". ".join(tail) + ".")
    return sentences


def _registered_families() -> tuple[str, ...]:
    from ponder.evaluate.catalog import FAMILIES

    return FAMILIES


def _gap_sentence(summary: Summary, families: pd.DataFrame, best: str) -> str:
    """How much of the uniform-to-oracle gap the best online family recovers."""
    unit = summary.unit
    if "oracle" not in families.index:
        return "No oracle was evaluated, so the gap to it is not measured."
    oracle = families.loc["oracle"]
    row = families.loc[best]
    saved, lo, hi, note = _fig(oracle, "saved_at_iso_accuracy")
    if math.isnan(saved):
        cost_gap = f"The oracle's saving at the baseline's accuracy is undefined ({note})"
    else:
        cost_gap = (
            f"The oracle (it knows the answers; not servable) needs {_share(saved)} fewer "
            f"{unit} at the baseline's accuracy (95% CI {_share(lo)} to {_share(hi)})"
        )
        own, own_lo, _, _ = _fig(row, "saved_at_iso_accuracy")
        if math.isfinite(own) and own_lo > 0 and saved > 0:
            cost_gap += (
                f"; {best} recovers {own / saved:.0%} of that saving (ratio of the two estimates)"
            )
        else:
            cost_gap += f"; {best} recovers none of it measurably"
    gap, glo, ghi, gnote = _fig(row, "gap_recovered")
    if math.isnan(gap):
        acc_gap = f"its share of the oracle's accuracy lead is undefined ({gnote or 'no figure'})"
    else:
        acc_gap = (
            f"it recovers {gap:.0%} of the oracle's accuracy lead at the baseline's cost "
            f"(95% CI {glo:.0%} to {ghi:.0%})"
        )
    return f"{cost_gap}, and {acc_gap}."


def _online_section(summary: Summary, label: str) -> dict[str, Any] | None:
    """The sub-section on policies that read the chain vs the published rules (None when
    none of them ran): plain words and one accuracy-cost plot."""
    sentences = online_conclusion(summary)
    if not sentences:
        return None
    groups = family_groups()
    png, left_out = plots.online_curves(
        summary,
        online=groups["online"],
        published=groups["published"],
        title=f"{label}: during generation",
    )
    present = set(summary.families["family"])
    return {
        "sentences": sentences,
        "plot": _b64(png),
        "online": [f for f in groups["online"] if f in present],
        "published": [f for f in groups["published"] if f in present],
        "left_out": left_out,
    }


def _policy_section(name: str, summary: Summary, label: str = "") -> dict[str, Any]:
    """One evaluated dataset: its conclusion, accuracy-cost plot and the policies table."""
    tables = _families_table(summary)
    own = getattr(summary, "conclusion", "")
    skipped = getattr(summary, "skipped", ())
    return {
        "name": name,
        "label": label or name,
        "conclusion": own if isinstance(own, str) and own else policy_conclusion(summary),
        "skipped": [f"{family}: {why}" for family, why in skipped],
        "protocol": summary.protocol,
        "unit": summary.unit,
        "n_problems": summary.n_problems,
        "baseline": summary.baseline,
        "plot": _b64(plots.policy_curves(summary, title=label or name)),
        "table": tables[0],
        "hindsight": tables[1],
        "online": _online_section(summary, label or name),
    }
