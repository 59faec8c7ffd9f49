"""Derived hard caps: accuracy at a smaller max_new_tokens computed from a run at a larger one.

Why this is exact: decoding is left to right and a hard cap only stops it, so a run capped at
B' produces exactly the first B' tokens of the run capped at B > B' with the same prompt,
seed and sampler. A sample that finished within B' tokens is therefore unchanged, and a
sample that needed more than B' tokens would have been cut off at B': it has no answer
(correct=0, answered=False, truncated=True, output_tokens=B'). The derived cell has the same
distribution as a recorded run at B' would have (identical samples, if seeds match).

Assumptions, stated so they can be checked: the cut-off sample has no extractable answer
(answer extraction after a forced stop is not modelled), a sample with exactly B' tokens
that stopped on its own is unchanged, and latency of a cut sample is unknown (NaN). Where a
grader does recover answers from truncated text, derived accuracy is a lower bound: in the
recorded reasoning-budget sweep 3.7% of capped samples were still graded correct, and
4096-from-8192 gives 0.104 against a recorded 0.156 while truncation rates agree.

Only samples (n_runs == 1) with known output_tokens can be cut; a target whose source cell
has unknown token counts or aggregated rows is skipped, with the reason in
:func:`derivation_plan`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ponder.curves._frame import CELL_KEYS, as_float, derived_mask, require_columns

GROUP_KEYS: list[str] = ["model", "dataset", "mode"]
PLAN_COLUMNS: list[str] = [*CELL_KEYS, "source_budget", "status", "reason"]
_REQUIRED = [*CELL_KEYS, "problem_id", "correct", "output_tokens", "budget_kind"]


def default_grid(caps: list[float]) -> list[float]:
    """Recorded caps of a dataset plus the powers of two between its smallest and largest.

    Nothing below the smallest recorded cap: budgets nobody measured on a dataset say little
    (on AIME they are all zero) and their Wilson intervals only clutter the curves.
    """
    if not caps:
        return []
    smallest, largest = min(caps), max(caps)
    powers = [float(2**e) for e in range(0, 64) if smallest <= 2**e <= largest]
    return sorted(set(caps) | set(powers))


def derivation_plan(frame: pd.DataFrame, budgets: list[float] | None = None) -> pd.DataFrame:
    """Which (model, dataset, mode, budget) cells can be derived, from which cap, or why not.

    Targets: the given ``budgets`` or, per dataset, :func:`default_grid` of its recorded
    hard caps. A target is considered for a (model, dataset, mode) only if it is below one of
    its recorded hard caps and that group has no recorded cell at that budget (of any kind),
    so a derived cell never shadows a measured one. The source is the smallest recorded
    hard cap above the target. Columns: model, dataset, mode, budget, source_budget,
    status ("derive" or "skip"), reason.
    """
    require_columns(frame, _REQUIRED, "derived caps")
    recorded = frame.loc[~derived_mask(frame)]
    if recorded.empty:
        return pd.DataFrame(columns=PLAN_COLUMNS)
    kind = recorded["budget_kind"].astype(str).to_numpy()
    budget = as_float(recorded["budget"])
    caps = recorded.loc[(kind == "hard_cap") & ~np.isnan(budget)]
    if caps.empty:
        return pd.DataFrame(columns=PLAN_COLUMNS)

    cell_stats = (
        caps.assign(
            _unknown=np.isnan(as_float(caps["output_tokens"])),
            _aggregate=_n_runs(caps) > 1,
        )
        .groupby(CELL_KEYS, sort=True, observed=True)
        .agg(
            _n_unknown=("_unknown", "sum"),
            _n_aggregate=("_aggregate", "sum"),
        )
        .reset_index()
    )
    all_cells = recorded[CELL_KEYS].drop_duplicates()
    taken = set(
        zip(
            all_cells["model"].astype(str),
            all_cells["dataset"].astype(str),
            all_cells["mode"].astype(str),
            as_float(all_cells["budget"]).tolist(),
            strict=True,
        )
    )
    dataset_caps = cell_stats.groupby("dataset")["budget"].agg(lambda s: sorted(set(s.tolist())))

    rows: list[dict[str, object]] = []
    # Loop over (model, dataset, mode) groups and grid points: a few hundred at most.
    for (model, dataset, mode), group in cell_stats.groupby(GROUP_KEYS, sort=True):
        group_caps = group["budget"].to_numpy(dtype=np.float64)
        grid = budgets if budgets is not None else default_grid(list(dataset_caps[dataset]))
        for target in sorted(float(b) for b in grid):
            if target >= group_caps.max() or target <= 0:
                continue
            if (str(model), str(dataset), str(mode), target) in taken:
                continue
            source_pos = int(np.searchsorted(group_caps, target, side="right"))
            source = group.iloc[source_pos]
            status, reason = (
                "derive",
                f"first {target:g} tokens of the cap-{source['budget']:g} run",
            )
            if source["_n_aggregate"] > 0:
                status = "skip"
                reason = f"source cap {source['budget']:g} has aggregated rows (n_runs > 1)"
            elif source["_n_unknown"] > 0:
                status = "skip"
                reason = (
                    f"source cap {source['budget']:g} has {int(source['_n_unknown'])} rows with "
                    "unknown output_tokens"
                )
            rows.append(
                {
                    "model": model,
                    "dataset": dataset,
                    "mode": mode,
                    "budget": target,
                    "source_budget": float(source["budget"]),
                    "status": status,
                    "reason": reason,
                }
            )
    return pd.DataFrame(rows, columns=PLAN_COLUMNS)


def derive_caps(
    frame: pd.DataFrame, budgets: list[float] | None = None, *, plan: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The derived rows (``derived`` True, ``source_budget`` set) for every planned target.

    Same columns as the input plus ``derived`` and ``source_budget``; a row that needed more
    than the target cap becomes correct=0, answered=False, truncated=True,
    output_tokens=target, extracted_answer=None, latency NaN, reasoning/answer tokens clipped.
    Every other row is truncated=False, and a row counted correct is answered, so a cell's
    accuracy never exceeds its answer rate or one minus its truncation rate. ``answered`` is
    unknown for the whole cell when the source cell does not record it for every row.
    """
    if plan is None:  # (compute_curves passes the plan it reports, not to build it twice)
        plan = derivation_plan(frame, budgets)
    plan = plan.loc[plan["status"] == "derive", [*GROUP_KEYS, "budget", "source_budget"]]
    columns = [*frame.columns.drop(["derived", "source_budget"], errors="ignore")]
    if plan.empty:
        return _empty_like(frame, columns)
    recorded = frame.loc[~derived_mask(frame) & (frame["budget_kind"].astype(str) == "hard_cap")]
    recorded = recorded[columns]
    plan = plan.rename(columns={"budget": "_target", "source_budget": "budget"})
    out = recorded.merge(plan, on=[*GROUP_KEYS, "budget"], how="inner", sort=False)
    target = out["_target"].to_numpy(dtype=np.float64)
    tokens = as_float(out["output_tokens"])
    cut = tokens > target

    out["source_budget"] = out["budget"].astype("float64")
    out["budget"] = target
    out["output_tokens"] = np.where(cut, target, tokens)
    correct = np.where(cut, 0.0, as_float(out["correct"]))
    out["correct"] = correct
    # A response that stopped within the target stopped on its own (it is shorter than the
    # source cap), so truncation is known for every derived row: exactly the cut ones.
    out["truncated"] = cut * 1.0
    out["answered"] = _derived_answered(out, cut, correct)
    if "extracted_answer" in out.columns:
        answers = out["extracted_answer"].astype(object).to_numpy(copy=True)
        answers[cut] = None
        out["extracted_answer"] = answers
    if "latency_s" in out.columns:
        out["latency_s"] = np.where(cut, np.nan, as_float(out["latency_s"]))
    if "reasoning_tokens" in out.columns:
        reasoning = as_float(out["reasoning_tokens"])
        clipped = np.minimum(reasoning, target)
        out["reasoning_tokens"] = np.where(cut, clipped, reasoning)
        if "answer_tokens" in out.columns:
            answer = as_float(out["answer_tokens"])
            out["answer_tokens"] = np.where(cut, target - clipped, answer)
    elif "answer_tokens" in out.columns:
        out["answer_tokens"] = np.where(cut, np.nan, as_float(out["answer_tokens"]))
    out["derived"] = True
    return out[[*columns, "derived", "source_budget"]].reset_index(drop=True)


def with_derived_caps(
    frame: pd.DataFrame, budgets: list[float] | None = None, *, plan: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Recorded rows (derived=False) followed by the derived rows."""
    recorded = frame.loc[~derived_mask(frame)].copy()
    recorded["derived"] = False
    if "source_budget" not in recorded.columns:
        recorded["source_budget"] = np.nan
    derived = derive_caps(frame, budgets, plan=plan)
    if derived.empty:
        return recorded.reset_index(drop=True)
    return pd.concat([recorded, derived[recorded.columns]], ignore_index=True)


def _derived_answered(out: pd.DataFrame, cut: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """``answered`` of the derived rows: unknown for a whole derived cell when any of its source
    rows has it unknown, else 0 for cut rows and 1 for rows counted correct.

    Averaging over the known rows only would give the cut rows alone (answer rate 0 next to
    a positive accuracy) on a user's file without an answer column.
    """
    recorded = as_float(out["answered"]) if "answered" in out.columns else np.full(len(out), np.nan)
    answered = np.where(cut, 0.0, np.where(correct > 0, 1.0, recorded))
    cell = out.groupby([*GROUP_KEYS, "budget"], sort=False, observed=True).ngroup().to_numpy()
    unknown_cells = np.unique(cell[np.isnan(recorded)])
    answered[np.isin(cell, unknown_cells)] = np.nan
    return answered


def _n_runs(frame: pd.DataFrame) -> np.ndarray:
    if "n_runs" not in frame.columns:
        return np.ones(len(frame))
    return np.nan_to_num(as_float(frame["n_runs"]), nan=1.0)


def _empty_like(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    out = frame.iloc[0:0][columns].copy()
    out["derived"] = pd.Series(dtype=bool)
    out["source_budget"] = pd.Series(dtype="float64")
    return out.reset_index(drop=True)
