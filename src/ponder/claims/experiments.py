"""Claims that generate with a model: run an experiment's items on a backend, store, resume.

A live claim (``Claim.live``) splits in two: an :class:`Experiment` that generates outcome rows
with a model (slow, run once by the user), and the claim's ``check`` that reads those rows from
the store like any other data (fast, no model). This module runs the first half the same way
for every live claim, reusing the sweep's store machinery:

* Everything is checked before anything is written: the experiment has items for the model
  (a model with no usable data fails here), the backend suits the experiment, and the
  backend's upstream answers (``check()``, as ``ponder sweep`` does).
* Each item (e.g. one chain) is one work item of the run: its rows and its 'done' mark are
  written in ONE transaction (``Store.write_sweep_item``), so an interrupted run loses at
  most the item in flight. A failed item gets an error mark and no rows.
* Running again skips the items already done and retries the failed ones, in the same seeded
  order, until ``limit`` items are done.

The run id is ``claims/<claim>/<model>/<digest of the settings>``: rows made under other
settings never mix with these, and a check can tell experiment rows from recorded ones.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from ponder.errors import InputError
from ponder.store.frame import EXPERIMENT_RUN_PREFIX

if TYPE_CHECKING:
    from ponder.backends import Backend
    from ponder.claims.data import ClaimData
    from ponder.store import Store

# Every experiment's run id starts with this, so analyses can set experiment rows apart
# (`Store.outcomes_frame` leaves them out unless asked).
RUN_PREFIX = EXPERIMENT_RUN_PREFIX
Row = dict[str, Any]


class ExperimentItem(Protocol):
    """One unit of work: ``key`` is stable across runs (resume), ``problem_id`` its problem."""

    @property
    def key(self) -> str: ...

    @property
    def problem_id(self) -> str: ...


ItemT = TypeVar("ItemT", bound=ExperimentItem)


class Experiment(Protocol[ItemT]):
    """What a live claim generates. ``settings`` are recorded with the run and digested into
    its id; ``items`` are in the order to run them (seeded), and raise InputError when the
    data hold nothing usable for ``model``; ``run_item`` returns the item's outcome rows (the
    store's outcome columns; ``run_id`` is filled in by the runner)."""

    @property
    def claim_id(self) -> str: ...

    @property
    def settings(self) -> Mapping[str, Any]: ...

    def items(self, data: ClaimData, model: str) -> Sequence[ItemT]: ...

    def check_backend(self, backend: Backend) -> None: ...

    async def run_item(self, backend: Backend, item: ItemT) -> list[Row]: ...


def experiment_run_id(claim_id: str, model: str, settings: Mapping[str, Any]) -> str:
    """``claims/<claim>/<model>/<first 8 hex of the settings' digest>``."""
    from ponder.sweep.plan import canonical_digest

    return f"{RUN_PREFIX}{claim_id}/{model}/{canonical_digest(dict(settings))[:8]}"


def is_experiment_run(run_id: object, claim_id: str) -> bool:
    """Whether a row's run id belongs to ``claim_id``'s experiment."""
    return isinstance(run_id, str) and run_id.startswith(f"{RUN_PREFIX}{claim_id}/")


@dataclass
class ExperimentSummary:
    """What a run did: items done now, done before (skipped), failed, and their messages."""

    run_id: str
    model: str
    limit: int
    done: int = 0
    skipped: int = 0
    errors: int = 0
    rows: int = 0
    wall_s: float = 0.0
    error_messages: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.done + self.skipped >= self.limit


# on_item(item, ok, message): progress after each item that ran (message: the error, or "").
OnItem = Callable[[Any, bool, str], None]


async def check_backend_reachable(backend: Backend) -> None:
    """Fail with an InputError when the backend's upstream does not answer (as the sweep)."""
    check = getattr(backend, "check", None)
    if check is None:
        return
    try:
        await check()
    except Exception as exc:  # any failure here means: not usable, say so before writing
        raise InputError(f"backend for model {backend.model!r} is not usable: {exc}") from exc


async def run_experiment(
    experiment: Experiment[ItemT],
    backend: Backend,
    store: Store,
    data: ClaimData,
    *,
    limit: int,
    on_item: OnItem | None = None,
    retries: int = 2,
    backoff_s: float = 0.5,
) -> ExperimentSummary:
    """Run ``experiment``'s items for ``backend.model`` until ``limit`` are done; see the
    module docstring. Retryable backend errors are retried with exponential backoff."""
    from ponder.backends import BackendError
    from ponder.sweep.runner import sweep_lock
    from ponder.types import Run

    if limit < 1:
        raise InputError(f"limit must be >= 1, got {limit}")
    model = backend.model
    items = list(experiment.items(data, model))
    if not items:
        raise InputError(f"{experiment.claim_id}: nothing to run for model {model!r}")
    experiment.check_backend(backend)
    await check_backend_reachable(backend)
    settings = dict(experiment.settings)
    run_id = experiment_run_id(experiment.claim_id, model, settings)
    summary = ExperimentSummary(run_id, model, limit)
    run = Run(
        run_id=run_id,
        model=model,
        backend=backend.capabilities().name,
        source=f"claims:{experiment.claim_id}",
        budget_kind="none",
        settings={"claim": experiment.claim_id, **settings},
    )
    wanted = {item.problem_id for item in items}
    problems = data.problems[data.problems["problem_id"].isin(wanted)]
    started = time.perf_counter()
    with sweep_lock(store, run_id):
        store.begin_sweep(run_id, json.dumps(run.settings, sort_keys=True), [run], problems)
        states = store.sweep_items(run_id)
        for item in items:
            if summary.done + summary.skipped >= limit:
                break
            state = states.get(item.key)
            if state is not None and state.status == "done":
                summary.skipped += 1
                continue
            rows, error, attempts = None, "", 0
            while rows is None:
                attempts += 1
                try:
                    rows = await experiment.run_item(backend, item)
                except BackendError as exc:
                    if exc.retryable and attempts <= retries:
                        await asyncio.sleep(backoff_s * 2 ** (attempts - 1))
                        continue
                    error = str(exc)
                    break
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except Exception as exc:  # one bad item must not end a long run
                    error = f"{type(exc).__name__}: {exc}"
                    break
            if rows is None:
                store.record_sweep_error(run_id, item.key, error, attempts)
                summary.errors += 1
                summary.error_messages.append(f"{item.problem_id}: {error}")
            else:
                stamped = [{**row, "run_id": run_id, "model": model} for row in rows]
                summary.rows += store.write_sweep_item(
                    run_id, item.key, stamped, None, attempts=attempts
                )
                summary.done += 1
            if on_item is not None:
                on_item(item, rows is not None, error)
    summary.wall_s = time.perf_counter() - started
    return summary


def require_prefix_continuation(backend: Backend, needs: str) -> None:
    """Fail with an InputError when ``backend`` cannot continue a prefix (``needs`` says
    what the experiment needs it for)."""
    if not backend.capabilities().prefix_continuation:
        raise InputError(
            f"backend {backend.capabilities().name!r} cannot continue a prefix; {needs} "
            "(in-process llamacpp, or a server with prefix continuation)"
        )


def seed_of(*parts: object) -> int:
    """A 31-bit seed from the parts (the sweep's canonical digest)."""
    from ponder.sweep.plan import canonical_digest

    return int(canonical_digest([str(p) for p in parts])[:8], 16) & 0x7FFFFFFF


def outcome_row(
    *,
    dataset: str,
    problem_id: str,
    chain_id: str,
    mode: str,
    budget: int,
    extracted: str | None,
    correct: float,
    extra: Mapping[str, Any],
    answered: int | None = None,
    sample_idx: int = 0,
    prompt_tokens: int | None = None,
    reasoning_tokens: int | None = None,
    answer_tokens: int | None = None,
    output_tokens: int | None = None,
    latency_s: float | None = None,
    response_text: str | None = None,
    rung: int | None = None,
    natural: int | None = None,
    answer_prob: float | None = None,
    entropy_tail: float | None = None,
) -> Row:
    """One experiment row in the store's outcome columns (``run_id`` and ``model`` are the
    runner's). ``answered`` defaults to whether an answer was extracted; ``extra`` is
    stored as sorted JSON."""
    return {
        "dataset": dataset,
        "problem_id": problem_id,
        "mode": mode,
        "budget": budget,
        "sample_idx": sample_idx,
        "prompt_tokens": prompt_tokens,
        "reasoning_tokens": reasoning_tokens,
        "answer_tokens": answer_tokens,
        "output_tokens": output_tokens,
        "latency_s": latency_s,
        "truncated": 0,
        "answered": int(extracted is not None) if answered is None else answered,
        "extracted_answer": extracted,
        "correct": correct,
        "n_runs": 1,
        "response_text": response_text,
        "extra_json": json.dumps(extra, sort_keys=True),
        "chain_id": chain_id,
        "rung": rung,
        "natural": natural,
        "answer_prob": answer_prob,
        "entropy_tail": entropy_tail,
        "stop_cost_tokens": None,
    }


def open_model_backend(
    model: str,
    *,
    backend: str = "llamacpp",
    options: Mapping[str, Any] | None = None,
    threads: int | None = None,
) -> Backend:
    """A backend for ``model`` opened as ``ponder run`` opens a plan's models (a local model
    must be pulled); any failure is an InputError, raised before anything runs."""
    from ponder.backends import open_backend
    from ponder.errors import PonderError
    from ponder.sweep.execute import model_options

    try:
        return open_backend(backend, model_options(model, backend, options or {}, threads))
    except InputError:
        raise
    except PonderError as exc:
        raise InputError(f"cannot open model {model!r} on backend {backend!r}: {exc}") from exc


def interleaved_by_band(
    data: ClaimData, items: Mapping[str, ItemT], rng: np.random.Generator
) -> list[ItemT]:
    """Items (by problem) shuffled within each difficulty band, then taken a band at a time,
    so a partial run covers every band."""
    from ponder.claims.data import difficulty

    bands, _ = difficulty(data)
    by_band: dict[float, list[ItemT]] = {}
    for problem in sorted(items):
        by_band.setdefault(float(bands.get(problem, 0.0)), []).append(items[problem])
    queues = [[g[i] for i in rng.permutation(len(g))] for _, g in sorted(by_band.items())]
    out: list[ItemT] = []
    for depth in range(max((len(q) for q in queues), default=0)):
        out.extend(q[depth] for q in queues if depth < len(q))
    return out
