"""One self-contained HTML report (inline PNG plots) from the outcome store's curves."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import pandas as pd
from markupsafe import Markup, escape

from ponder import __version__
from ponder.curves import Curves
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


def _fmt(value: object, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def html_table(frame: pd.DataFrame, columns: dict[str, str]) -> Markup:
    """A plain HTML table of `frame[columns]`, headers renamed, numbers formatted."""
    head = "".join(
        f'<th class="{"l" if frame[c].dtype == object else ""}">{escape(h)}</th>'
        for c, h in columns.items()
    )
    body = []
    for _, row in frame.iterrows():
        cells = []
        for c in columns:
            value = row[c]
            cls = "l" if frame[c].dtype == object else ""
            if c == "overthinking" and value is True:
                cls += " yes"
            cells.append(f'<td class="{cls}">{escape(_fmt(value))}</td>')
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
) -> Path:
    """Render the report to `out` (written atomically) and return its path.

    `on_dataset(name)` is called as each dataset's plots are done (for progress bars).
    """
    cells = curves.cells
    budget_sections = []
    flat_sections = []
    notes: list[str] = []
    for dataset in sorted(cells["dataset"].unique()):
        ds_cells = cells[cells["dataset"] == dataset]
        budgeted = ds_cells[ds_cells["budget"].notna()]
        ds_frame = frame[frame["dataset"] == dataset]
        if budgeted["budget"].nunique() >= 2:
            has_tokens = budgeted["mean_tokens"].notna().any()
            diff = curves.difficulty
            has_diff = not diff.empty and (diff["dataset"] == dataset).any()
            budget_sections.append(
                {
                    "name": dataset,
                    "n_models": budgeted["model"].nunique(),
                    "n_problems": ds_frame["problem_id"].nunique(),
                    "budgets": ", ".join(str(int(b)) for b in sorted(budgeted["budget"].unique())),
                    "curve_budget": _b64(plots.accuracy_curves(cells, dataset)),
                    "curve_tokens": _b64(plots.accuracy_curves(cells, dataset, x="mean_tokens"))
                    if has_tokens
                    else None,
                    "difficulty": _b64(plots.difficulty_panels(diff, dataset))
                    if has_diff
                    else None,
                    "histograms": _b64(plots.token_histograms(ds_frame, dataset))
                    if ds_frame["output_tokens"].notna().any()
                    else None,
                }
            )
        flat = ds_cells[ds_cells["budget"].isna()]
        if len(flat):
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
            flat_sections.append(
                {
                    "name": dataset,
                    "caption": caption,
                    "bars": _b64(plots.model_accuracy_bars(flat, dataset)),
                    "points": _b64(
                        plots.accuracy_vs_tokens_points(
                            points, f"{dataset}: accuracy vs mean output tokens"
                        )
                    )
                    if len(points) >= 2
                    else None,
                }
            )
        if on_dataset is not None:
            on_dataset(dataset)
    sweet = curves.sweet_spots
    sweet_table = (
        html_table(sweet, _present(sweet, _SWEET_COLUMNS))
        if not sweet.empty
        else Markup("<p>No model has two or more budgets on one dataset.</p>")
    )
    passk_table = _passk_table(curves)
    cells_table = html_table(cells, _present(cells, _CELL_COLUMNS))
    policy_sections = [_policy_section(name, summary) for name, summary in evaluations]
    sources = sorted(set(runs["source"])) if "source" in runs else []
    attributions = [ATTRIBUTIONS.get(s, s) for s in sources]
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
        passk_table=passk_table,
        cells_table=cells_table,
        policy_sections=policy_sections,
        n_cells=len(cells),
        notes=notes,
        attributions=attributions,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out)
    return out


_CELL_COLUMNS = {
    "model": "model",
    "dataset": "dataset",
    "mode": "mode",
    "budget": "budget",
    "derived": "derived",
    "n_problems": "problems",
    "n_samples": "samples",
    "accuracy": "accuracy",
    "ci_low": "95% low",
    "ci_high": "95% high",
    "mean_tokens": "mean tokens",
    "p90_tokens": "p90 tokens",
    "truncation_rate": "truncated",
    "answer_rate": "answered",
}

_SWEET_COLUMNS = {
    "model": "model",
    "dataset": "dataset",
    "mode": "mode",
    "n_budgets": "budgets",
    "sweet_spot": "sweet spot",
    "sweet_spot_accuracy": "accuracy",
    "sweet_spot_share": "share",
    "sweet_spot_min": "smallest within noise",
    "largest_budget": "largest budget",
    "drop": "drop to largest",
    "drop_ci_low": "drop 95% low",
    "drop_ci_high": "drop 95% high",
    "overthinking": "overthinking",
}


def _present(frame: pd.DataFrame, columns: dict[str, str]) -> dict[str, str]:
    return {c: h for c, h in columns.items() if c in frame.columns}


def _passk_table(curves: Curves) -> Markup | None:
    """pass@k and maj@k side by side, for recorded cells with repeated samples."""
    keys = ["model", "dataset", "mode", "budget"]
    passk, majk = curves.pass_at_k, curves.maj_at_k
    if passk.empty:
        return None
    passk = passk[~passk["derived"]]
    repeated = passk[passk["k"] >= 2][keys].drop_duplicates()
    if repeated.empty:
        return None
    passk = passk.merge(repeated, on=keys)
    majk = majk[~majk["derived"]].merge(repeated, on=keys) if not majk.empty else majk
    wide = passk.pivot_table(index=keys, columns="k", values="value")
    wide.columns = [f"pass@{int(k)}" for k in wide.columns]
    if not majk.empty:
        maj = majk.pivot_table(index=keys, columns="k", values="value")
        maj.columns = [f"maj@{int(k)}" for k in maj.columns]
        wide = wide.join(maj)
    wide = wide.reset_index()
    columns = {c: c for c in wide.columns}
    return html_table(wide, columns)


def _pct_ci(row: Any, key: str) -> str:
    def pct(value: Any) -> str:
        return "–" if value is None or pd.isna(value) else f"{value:+.1%}"

    return f"{pct(row[key])} [{pct(row[key + '_ci_low'])}, {pct(row[key + '_ci_high'])}]"


def _families_table(summary: Summary) -> Markup:
    """Families with each metric and its 95% CI in one cell, so the table fits a page."""
    points = summary.points.set_index("label")
    rows = []
    for _, row in summary.families.iterrows():
        best = points.loc[row["best_label"]]
        rows.append(
            {
                "family": row["family"],
                "best point": str(row["best_label"]).removeprefix(f"{row['family']} "),
                "accuracy": f"{best['accuracy']:.3f} [{best['accuracy_ci_low']:.3f}, "
                f"{best['accuracy_ci_high']:.3f}]",
                "cost": _fmt(float(best["mean_cost"])),
                "saved at iso-accuracy": _pct_ci(row, "saved_at_iso_accuracy"),
                "gain at iso-cost": _pct_ci(row, "gain_at_iso_cost"),
                "best gain vs uniform hull": _pct_ci(row, "frontier_gain"),
                "best saving vs uniform hull": _pct_ci(row, "frontier_saving"),
                "cost to 95% (uniform hull)": f"{_fmt(row['cost_to_95pct'])} "
                f"({_fmt(row['uniform_cost_to_95pct'])})",
                "calibration error": _fmt(row["calibration_error"]),
            }
        )
    table = pd.DataFrame(rows)
    return html_table(table, {c: c for c in table.columns})


def _policy_section(name: str, summary: Summary) -> dict[str, Any]:
    """One evaluated dataset: its accuracy-cost plot and the families table."""
    return {
        "name": name,
        "protocol": summary.protocol,
        "unit": summary.unit,
        "n_problems": summary.n_problems,
        "baseline": summary.baseline,
        "plot": _b64(plots.policy_curves(summary, title=name)),
        "table": _families_table(summary),
    }
