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
    from ponder.evaluate import CostModel, OutcomeMatrix
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
    A store with Parquet segments (bulk imports) is computed out of core by DuckDB, a batch
    of models at a time, with the same tables (docs/design/0009-columnar-analysis.md); but
    with a model filter or hard-cap runs to derive from, which need the rows in memory.
    """
    if frame is None and models is None:
        columnar = _columnar_curves(store, datasets, derive=derive, n_boot=n_boot, seed=seed)
        if columnar is not None:
            return columnar
    if frame is None:
        frame = store.outcomes_frame(datasets=datasets, models=models)
    if frame.empty:
        raise InputError(_no_outcomes(datasets, models))
    return compute_curves(
        frame, n_boot=n_boot, seed=seed, derive=derive, normalize=normalize_answer
    )


def _no_outcomes(datasets: Sequence[str] | None, models: Sequence[str] | None) -> str:
    if datasets or models:
        return f"no outcomes for datasets={list(datasets or [])} models={list(models or [])}"
    return "the store is empty: run `ponder import` first"


def _columnar_curves(
    store: Store, datasets: Sequence[str] | None, *, derive: bool, n_boot: int, seed: int
) -> Curves | None:
    """The curves of a store with segments, out of core; None for the frame path (no
    segments, or hard-cap rows whose smaller caps are derived from every row's length)."""
    from ponder.columnar.batched import curves_from_parquet
    from ponder.columnar.segments import list_segments
    from ponder.columnar.snapshot import store_snapshot
    from ponder.columnar.stats import connect, run_query
    from ponder.curves.derived import PLAN_COLUMNS

    if not store.has_segments():
        return None
    with store_snapshot(store.path, datasets) as root:
        files = [str(p) for p in list_segments(root)]
        if not files:
            raise InputError(_no_outcomes(datasets, None))
        if derive:
            con = connect()
            try:
                capped = (
                    run_query(
                        con,
                        "SELECT count(*) AS n FROM read_parquet($files) "
                        "WHERE budget_kind = 'hard_cap' AND budget IS NOT NULL",
                        {"files": files},
                        store.path,
                    )
                    .column("n")[0]
                    .as_py()
                )
            finally:
                con.close()
            if capped:
                return None
        levels = _problem_levels(store)
        got = curves_from_parquet(root, levels, n_boot=n_boot, seed=seed)
    return Curves(
        cells=got.cells,
        pass_at_k=got.pass_at_k,
        maj_at_k=got.maj_at_k,
        difficulty=got.difficulty,
        sweet_spots=got.sweet_spots,
        derivations=pd.DataFrame(columns=PLAN_COLUMNS),
    )


def _problem_levels(store: Store) -> pd.DataFrame:
    """Each stored problem's level as a number (NaN when unknown), as the frame carries it."""
    from ponder.store.frame import to_float

    problems = store.problems_frame()[["dataset", "problem_id", "level"]]
    return problems.assign(level=to_float(problems["level"].to_numpy(dtype=object)))


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
    max_slots: int | None = None,
) -> OutcomeMatrix:
    """The outcome matrix of some datasets, with costs in the chosen unit.

    `levels` keeps only problems of those difficulty levels (e.g. MATH-500 1-3 to fit, 4-5 to
    test); `exclude_contaminated` drops problems flagged as seen in training data (RouteLLM's
    GSM8K protocol). `max_slots` keeps only the first samples of each cell in the arrays
    (`OutcomeMatrix.head`; the statistics still cover all): what evaluations need, in memory
    bounded by problems x configurations.
    """
    from ponder.evaluate import CostModel, OutcomeMatrix, load_prices

    cost_model = CostModel(cost, load_prices(prices) if prices else {})  # type: ignore[arg-type]
    problems = store.problems_frame()
    if len(set(datasets)) == 1 and not levels and not exclude_contaminated:
        columnar = _columnar_matrix(
            store, datasets[0], models, exclude_models, cost_model, problems, max_slots
        )
        if columnar is not None:
            return columnar
    frame = store.outcomes_frame(datasets=datasets, models=models, signals=True)
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
    matrix = OutcomeMatrix.from_frame(
        frame, problems=problems, cost_model=cost_model, normalize=normalize_answer
    )
    return matrix if max_slots is None else matrix.head(max_slots)


def _columnar_matrix(
    store: Store,
    dataset: str,
    models: Sequence[str] | None,
    exclude_models: Sequence[str],
    cost_model: CostModel,
    problems: pd.DataFrame,
    max_slots: int | None,
) -> OutcomeMatrix | None:
    """One dataset's matrix straight from the segments by an ordered DuckDB scan (None: the
    store has no segments, the frame path). Level and contamination filters and several
    datasets at once stay on the frame path."""
    from ponder.columnar.matrix import matrix_from_parquet
    from ponder.columnar.segments import list_segments
    from ponder.columnar.snapshot import store_snapshot

    if not store.has_segments():
        return None
    with store_snapshot(store.path, [dataset]) as root:
        if not list_segments(root):
            raise InputError(f"no outcomes for datasets={[dataset]} models={list(models or [])}")
        return matrix_from_parquet(
            root,
            dataset,
            problems=problems,
            models=models,
            exclude_models=exclude_models,
            cost_model=cost_model,
            normalize=normalize_answer,
            max_slots=max_slots,
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
    from ponder.evaluate.catalog import FAMILIES, SEQUENTIAL_SLOTS, Skipped, candidates
    from ponder.evaluate.metrics import summarize
    from ponder.evaluate.protocol import complete, cross_validate
    from ponder.policies.base import PolicyError

    counts = store.outcome_counts(["dataset", "n_runs", "output_tokens"], experiments=False)
    wanted = None if datasets is None else set(datasets)
    with_samples = {d for d, n_runs, _, _ in counts if n_runs == 1}
    without_tokens = {d for d, n_runs, tokens, _ in counts if n_runs == 1 and tokens is None}
    out = []
    for name in sorted(d for d in with_samples - without_tokens if wanted is None or d in wanted):
        try:
            matrix = complete(load_matrix(store, datasets=[name], max_slots=SEQUENTIAL_SLOTS))
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
