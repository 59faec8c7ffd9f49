"""Glue between the store and the analyses: curves of the outcome frame, the outcome matrix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ponder.curves import Curves, compute_curves
from ponder.errors import InputError
from ponder.grading import normalize_answer
from ponder.store import Store

if TYPE_CHECKING:
    from ponder.evaluate import OutcomeMatrix


def load_curves(
    store: Store,
    *,
    datasets: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    derive: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
) -> Curves:
    """Curves of the store's outcomes (optionally filtered), answers grouped by normalize_answer."""
    frame = store.outcomes_frame(datasets=datasets, models=models)
    if frame.empty:
        what = "the store is empty: run `ponder import` first"
        if datasets or models:
            what = f"no outcomes for datasets={list(datasets or [])} models={list(models or [])}"
        raise InputError(what)
    return compute_curves(
        frame, n_boot=n_boot, seed=seed, derive=derive, normalize=normalize_answer
    )


def load_matrix(
    store: Store,
    *,
    datasets: Sequence[str],
    models: Sequence[str] | None = None,
    exclude_models: Sequence[str] = (),
    cost: str = "tokens",
    prices: Path | None = None,
) -> OutcomeMatrix:
    """The outcome matrix of some datasets, with costs in the chosen unit."""
    from ponder.evaluate import CostModel, OutcomeMatrix, load_prices

    frame = store.outcomes_frame(datasets=datasets, models=models)
    if exclude_models:
        frame = frame[~frame["model"].isin(list(exclude_models))]
    if frame.empty:
        raise InputError(f"no outcomes for datasets={list(datasets)} models={list(models or [])}")
    cost_model = CostModel(cost, load_prices(prices) if prices else {})  # type: ignore[arg-type]
    return OutcomeMatrix.from_frame(
        frame, problems=store.problems_frame(), cost_model=cost_model, normalize=normalize_answer
    )
