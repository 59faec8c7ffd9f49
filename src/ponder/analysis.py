"""Glue between the store and the analyses: curves of the outcome frame, the outcome matrix."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ponder.curves import Curves, compute_curves
from ponder.errors import InputError
from ponder.grading import normalize_answer
from ponder.store import Store

if TYPE_CHECKING:
    from ponder.evaluate import OutcomeMatrix
    from ponder.evaluate.metrics import Summary
    from ponder.evaluate.protocol import Evaluation


def load_curves(
    store: Store,
    *,
    datasets: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    derive: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
    frame: pd.DataFrame | None = None,
) -> Curves:
    """Curves of the store's outcomes (optionally filtered), answers grouped by normalize_answer.

    Pass `frame` when the caller already read `store.outcomes_frame(...)` for the same filter.
    """
    if frame is None:
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
    levels: Sequence[int] | None = None,
    exclude_contaminated: bool = False,
    cost: str = "tokens",
    prices: Path | None = None,
) -> OutcomeMatrix:
    """The outcome matrix of some datasets, with costs in the chosen unit.

    `levels` keeps only problems of those difficulty levels (e.g. MATH-500 1-3 to fit, 4-5 to
    test); `exclude_contaminated` drops problems flagged as seen in training data (RouteLLM's
    GSM8K protocol).
    """
    from ponder.evaluate import CostModel, OutcomeMatrix, load_prices

    frame = store.outcomes_frame(datasets=datasets, models=models, signals=True)
    problems = store.problems_frame()
    if exclude_models:
        frame = frame[~frame["model"].isin(list(exclude_models))]
    if levels:
        frame = frame[frame["level"].isin([float(v) for v in levels])]
    if exclude_contaminated:
        flagged = problems[problems["metadata_json"].str.contains('"contaminated": true')]
        keys = set(zip(flagged["dataset"], flagged["problem_id"], strict=True))
        keep = [k not in keys for k in zip(frame["dataset"], frame["problem_id"], strict=True)]
        frame = frame[keep]
    if frame.empty:
        raise InputError(
            f"no outcomes for datasets={list(datasets)} models={list(models or [])}"
            + (f" levels={list(levels)}" if levels else "")
        )
    cost_model = CostModel(cost, load_prices(prices) if prices else {})  # type: ignore[arg-type]
    return OutcomeMatrix.from_frame(
        frame, problems=problems, cost_model=cost_model, normalize=normalize_answer
    )


def evaluate_policies(
    store: Store,
    *,
    datasets: Sequence[str] | None = None,
    families: Sequence[str] | None = None,
    folds: int = 5,
    seed: int = 0,
    n_boot: int = 1000,
    on_dataset: Callable[[str], None] | None = None,
    keep: dict[str, tuple[Evaluation, Summary]] | None = None,
) -> list[tuple[str, Summary]]:
    """Cross-validate the policy families on every dataset whose samples carry token counts.

    Datasets without token counts (their cost needs a price table) or with fewer problems than
    folds are skipped; run `ponder evaluate --cost calls --prices ...` for those. `keep`
    receives each dataset's evaluation and summary (the claims suite reuses them).
    """
    from ponder.evaluate.catalog import FAMILIES, Skipped, candidates
    from ponder.evaluate.metrics import summarize
    from ponder.evaluate.protocol import complete, cross_validate
    from ponder.policies.base import PolicyError

    frame = store.outcomes_frame(datasets=datasets)
    samples = frame[frame["n_runs"] == 1]
    with_tokens = samples.groupby("dataset")["output_tokens"].apply(lambda s: s.notna().all())
    out = []
    for name in sorted(with_tokens[with_tokens].index):
        try:
            matrix = complete(load_matrix(store, datasets=[name]))
            if matrix.n_problems < 2 * folds or len(matrix.configs) < 2:
                continue
            skipped: list[Skipped] = []
            cands = candidates(matrix, families or FAMILIES, skipped=skipped)
            evaluation = cross_validate(matrix, cands, folds=folds, seed=seed)
        except PolicyError:
            continue  # nothing complete to compare against: not evaluable this way
        summary = summarize(evaluation, n_boot=n_boot, seed=seed)
        # Families the data rules out before fitting (e.g. no ladder) are reported with why.
        summary = dataclasses.replace(
            summary, skipped=tuple((s.family, s.reason) for s in skipped) + summary.skipped
        )
        out.append((str(name), summary))
        if keep is not None:
            keep[str(name)] = (evaluation, summary)
        if on_dataset is not None:
            on_dataset(str(name))
    return out
