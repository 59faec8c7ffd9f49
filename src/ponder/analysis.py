"""Glue between the store and the analyses: load the outcome frame and compute its curves."""

from __future__ import annotations

from collections.abc import Sequence

from ponder.curves import Curves, compute_curves
from ponder.errors import InputError
from ponder.grading import normalize_answer
from ponder.store import Store


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
