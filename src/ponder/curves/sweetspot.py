"""Sweet spot (best budget) and overthinking test per (model, dataset, mode).

Everything uses the replicate matrix of the cell bootstrap: all budgets of a group are cells
of one dataset, so resample b evaluates every budget on the same multiset of problems and
differences between budgets are paired (their noise from "which problems" cancels).

* ``sweet_spot``: the budget with the best accuracy (smallest on ties).
* ``argmax_share``: for each budget, the share of resamples where it is the best; a low
  ``sweet_spot_share`` means the location of the peak is not well determined.
* ``sweet_spot_min``: the smallest budget whose paired CI of (best - it) contains 0, i.e. the
  cheapest budget that is not distinguishable from the best.
* ``drop``: accuracy at the peak minus accuracy at the largest budget beyond it, with a
  paired percentile CI; ``overthinking`` is True only when the CI's lower bound is > 0.

Caveat (winner's curse): the peak is selected on the same data that then measures the drop,
which biases ``drop`` upwards; a "True" is evidence only when reported with this caveat, and
ideally confirmed on fresh samples. A flat curve is not flagged because its drop CI covers 0.

Derived cells reuse the samples of a larger cap, so they are excluded unless
``include_derived=True`` (then a derived budget and its source share samples, which makes
their comparison exact rather than noisy, not independent).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ponder.curves.aggregate import CellBootstrap, cell_bootstrap
from ponder.curves.bootstrap import ProblemResampler, percentile_interval

SWEET_SPOT_COLUMNS: list[str] = [
    "model",
    "dataset",
    "mode",
    "n_budgets",
    "budgets",
    "accuracies",
    "sweet_spot",
    "sweet_spot_accuracy",
    "sweet_spot_share",
    "argmax_share",
    "sweet_spot_min",
    "sweet_spot_min_accuracy",
    "largest_budget",
    "largest_accuracy",
    "drop",
    "drop_ci_low",
    "drop_ci_high",
    "overthinking",
    "n_resamples",
]

# One display name per column, used by every view of the table (`ponder curves --table
# sweet-spots`, `ponder demo`, the HTML report) so a number has the same name everywhere.
# Keys are `SWEET_SPOT_COLUMNS`; the tuple/mapping columns (budgets, accuracies,
# argmax_share) and n_resamples are for scripts and have no display name.
SWEET_SPOT_LABELS: dict[str, str] = {
    "model": "model",
    "dataset": "dataset",
    "mode": "mode",
    "n_budgets": "budgets",
    "sweet_spot": "best budget",
    "sweet_spot_accuracy": "best accuracy",
    "sweet_spot_share": "best share",
    "sweet_spot_min": "cheapest within noise",
    "sweet_spot_min_accuracy": "cheapest accuracy",
    "largest_budget": "largest budget",
    "largest_accuracy": "largest accuracy",
    "drop": "drop to largest",
    "drop_ci_low": "drop 95% low",
    "drop_ci_high": "drop 95% high",
    "overthinking": "overthinking",
}


def sweet_spot_table(
    frame: pd.DataFrame | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    include_derived: bool = False,
    cells: CellBootstrap | None = None,
    resampler: ProblemResampler | None = None,
) -> pd.DataFrame:
    """One row per (model, dataset, mode) with at least two (non-NaN) budgets.

    Pass ``cells`` (from :func:`cell_bootstrap`) to reuse its resamples; otherwise the cell
    bootstrap is run on ``frame``. Columns: see ``SWEET_SPOT_COLUMNS``; ``budgets`` and
    ``accuracies`` are tuples in budget order, ``argmax_share`` maps budget -> share.
    """
    if cells is None:
        if frame is None:
            raise ValueError("pass a frame or precomputed cells")
        cells = cell_bootstrap(frame, n_boot=n_boot, seed=seed, ci=ci, resampler=resampler)
    table = cells.table
    budget = table["budget"].to_numpy(dtype=np.float64)
    keep = ~np.isnan(budget)
    if not include_derived:
        keep &= ~table["derived"].to_numpy(dtype=bool)
    candidates = table.loc[keep]
    rows: list[dict[str, object]] = []
    # One iteration per (model, dataset, mode) group; the work inside is vectorized.
    for (model, dataset, mode), group in candidates.groupby(
        ["model", "dataset", "mode"], sort=True
    ):
        if len(group) < 2:
            continue
        group = group.sort_values("budget")
        idx = group.index.to_numpy()
        budgets = group["budget"].to_numpy(dtype=np.float64)
        acc = group["accuracy"].to_numpy(dtype=np.float64)
        reps = cells.replicates[:, idx]
        rows.append(_one_group(str(model), str(dataset), str(mode), budgets, acc, reps, ci))
    return pd.DataFrame(rows, columns=SWEET_SPOT_COLUMNS)


def _one_group(
    model: str,
    dataset: str,
    mode: str,
    budgets: np.ndarray,
    acc: np.ndarray,
    reps: np.ndarray,
    ci: float,
) -> dict[str, object]:
    best = int(np.nanargmax(acc)) if np.isfinite(acc).any() else 0
    complete = np.isfinite(reps).all(axis=1)
    winners = np.argmax(reps[complete], axis=1)
    n_valid = int(complete.sum())
    shares = np.bincount(winners, minlength=len(budgets)) / max(n_valid, 1)

    diffs = reps[:, [best]] - reps  # paired: same resample in every column
    low, high = percentile_interval(diffs, ci)
    within = (low <= 0.0) & (high >= 0.0)
    within[best] = True
    cheapest = int(np.flatnonzero(within)[0])

    last = len(budgets) - 1
    if best < last:
        drop = float(acc[best] - acc[last])
        drop_low, drop_high = float(low[last]), float(high[last])
        overthinking = bool(drop_low > 0.0)
    else:
        drop, drop_low, drop_high, overthinking = np.nan, np.nan, np.nan, False
    return {
        "model": model,
        "dataset": dataset,
        "mode": mode,
        "n_budgets": len(budgets),
        "budgets": tuple(float(b) for b in budgets),
        "accuracies": tuple(float(a) for a in acc),
        "sweet_spot": float(budgets[best]),
        "sweet_spot_accuracy": float(acc[best]),
        "sweet_spot_share": float(shares[best]),
        "argmax_share": {float(b): float(s) for b, s in zip(budgets, shares, strict=True)},
        "sweet_spot_min": float(budgets[cheapest]),
        "sweet_spot_min_accuracy": float(acc[cheapest]),
        "largest_budget": float(budgets[last]),
        "largest_accuracy": float(acc[last]),
        "drop": drop,
        "drop_ci_low": drop_low,
        "drop_ci_high": drop_high,
        "overthinking": overthinking,
        "n_resamples": n_valid,
    }
