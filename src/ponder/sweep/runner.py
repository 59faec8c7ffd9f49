"""Run a sweep's work items against real engines, resumably.

* Everything is checked before the first item runs: the spec, the problems, every model
  (``from_options`` fails on a missing model file) and every upstream (``check()``).
* Items run as asyncio tasks, at most ``spec.concurrency`` at once. The store is written from
  one place, this event loop's thread, through one connection: an item's rows, its chain and
  its 'done' mark go in ONE transaction, so a crash or ``kill -9`` at any moment loses at most
  the items in flight and never duplicates a row (the outcome key also guards).
* On start, items already done are skipped; items that failed are retried unless
  ``retry_errors`` is false. A backend error is retried (``retries`` times, with backoff)
  when the engine says it is worth it; then it is recorded as the item's error, never as an
  outcome, and the sweep goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from ponder.backends import Backend, BackendError, Sampling, open_backend
from ponder.backends.base import NO_THINK, THINK, Message
from ponder.budgets import direct_answer, run_ladder, sampled_direct_answer
from ponder.budgets.prompts import conversation_for
from ponder.errors import InputError, PonderError, StoreError
from ponder.store import Store
from ponder.sweep.plan import SweepPlan, WorkItem, build_plan
from ponder.sweep.rows import ItemResult, chain_row, outcome_rows
from ponder.sweep.spec import SweepSpec

# Decode and prompt rates (tokens/s at 2 threads) of the known local models, measured on a
# 2-core machine (docs/sweeps.md); used only for the time estimate before a sweep.
DECODE_RATES: dict[str, tuple[float, float]] = {
    "135m": (69.0, 184.0),
    "0.5b": (22.0, 95.0),
    "1.5b": (10.0, 55.0),
}
# Prompt tokens are unknown before tokenizing: about 4 characters a token plus the template.
_CHARS_PER_TOKEN = 4
_TEMPLATE_TOKENS = 40


class Reporter(Protocol):
    """Progress hooks (the CLI draws a rich bar; tests may record calls)."""

    def start(self, total: int, skipped: int) -> None: ...

    def advance(self, item: WorkItem, tokens: int, ok: bool) -> None: ...

    def finish(self) -> None: ...


class _Silent:
    def start(self, total: int, skipped: int) -> None:
        return None

    def advance(self, item: WorkItem, tokens: int, ok: bool) -> None:
        return None

    def finish(self) -> None:
        return None


@dataclass(frozen=True)
class ModelEstimate:
    model: str
    items: int
    chains: int
    probes: int
    tokens: int
    prompt_tokens: int
    seconds: float | None


@dataclass(frozen=True)
class Estimate:
    """What the pending items will cost: generated tokens = chains x largest rung + probes x
    reserve (an upper bound: chains that end early cost less), and for known models the
    engine time (``seconds``, summed over models) and the wall time with models side by side
    (``wall_seconds``)."""

    items: int
    pending: int
    chains: int
    probes: int
    tokens: int
    prompt_tokens: int
    seconds: float | None
    per_model: tuple[ModelEstimate, ...]
    wall_seconds: float | None = None


def _rates(model: str, options: Mapping[str, Any]) -> tuple[float, float] | None:
    probe = " ".join([model, str(options.get("model", "")), str(options.get("path", ""))]).lower()
    for key, (decode, prompt) in DECODE_RATES.items():
        if key in probe:
            threads = options.get("n_threads")
            scale = 0.5 if threads == 1 else 1.0
            return decode * scale, prompt * scale
    return None


def estimate(plan: SweepPlan, pending: Sequence[WorkItem] | None = None) -> Estimate:
    todo = plan.items if pending is None else pending
    per: dict[str, list[int]] = {}
    for item in todo:
        counts = per.setdefault(item.model.name, [0, 0, 0, 0, 0])
        budgets = item.strategy.budgets
        prompt = len(item.problem.text) // _CHARS_PER_TOKEN + _TEMPLATE_TOKENS
        counts[0] += 1
        if item.strategy.kind == "none":
            probes, chain = 1, 0
        else:
            probes, chain = len(budgets), max(budgets)
            counts[1] += 1
        counts[2] += probes
        counts[3] += chain + probes * item.reserve
        counts[4] += prompt
    models: list[ModelEstimate] = []
    for model in plan.spec.models:
        c = per.get(model.name, [0, 0, 0, 0, 0])
        rates = _rates(model.name, model.options)
        seconds = None if rates is None else c[3] / rates[0] + c[4] / rates[1]
        models.append(ModelEstimate(model.name, c[0], c[1], c[2], c[3], c[4], seconds))
    known = [m.seconds for m in models if m.items]
    times = [t for t in known if t is not None]
    total_seconds = None if len(times) < len(known) else sum(times)
    # Engines of different models run side by side (one item each, see slots_for) up to the
    # sweep's concurrency: the wall time is at least the slowest model's.
    wall = (
        None
        if total_seconds is None or not times
        else max(max(times), total_seconds / min(plan.spec.concurrency, len(times)))
    )
    return Estimate(
        items=len(plan.items),
        pending=len(todo),
        chains=sum(m.chains for m in models),
        probes=sum(m.probes for m in models),
        tokens=sum(m.tokens for m in models),
        prompt_tokens=sum(m.prompt_tokens for m in models),
        seconds=total_seconds,
        per_model=tuple(models),
        wall_seconds=wall,
    )


@dataclass
class SweepSummary:
    sweep: str
    items: int
    done: int = 0
    skipped: int = 0
    errors: int = 0
    skipped_errors: int = 0
    tokens: int = 0
    wall_s: float = 0.0
    error_messages: list[str] = field(default_factory=list)
    accuracy: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.wall_s if self.wall_s > 0 else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "sweep": self.sweep,
            "items": self.items,
            "done": self.done,
            "skipped": self.skipped,
            "errors": self.errors,
            "skipped_errors": self.skipped_errors,
            "tokens": self.tokens,
            "wall_s": round(self.wall_s, 3),
            "tokens_per_s": self.tokens_per_s,
            "error_messages": self.error_messages[:20],
            "accuracy": self.accuracy,
        }


def pending_items(
    plan: SweepPlan, store: Store, *, retry_errors: bool = True
) -> tuple[list[WorkItem], int, int]:
    """(items to run, items already done, errored items left alone)."""
    states = store.sweep_items(plan.spec.name)
    todo: list[WorkItem] = []
    done = skipped_errors = 0
    for item in plan.items:
        state = states.get(item.key)
        if state is None:
            todo.append(item)
        elif state.status == "done":
            done += 1
        elif retry_errors:
            todo.append(item)
        else:
            skipped_errors += 1
    return todo, done, skipped_errors


def needs_native(spec: SweepSpec) -> bool:
    """Whether some item asks the engine for its own thinking budget."""
    return THINK in spec.modes and any(s.kind == "native" for s in spec.strategies)


async def open_backends(spec: SweepSpec, models: Sequence[str] | None = None) -> dict[str, Backend]:
    """Build and check every model's backend; any failure is an InputError naming the spec
    field, raised before any work starts (backends opened so far are closed)."""
    opened: dict[str, Backend] = {}
    try:
        for i, model in enumerate(spec.models):
            if models is not None and model.name not in models:
                continue
            where = model.where or f"models[{i}]"
            try:
                backend = open_backend(model.backend, model.options)
            except PonderError as exc:
                raise InputError(str(exc), path=spec.source, field=f"{where}.options") from exc
            opened[model.name] = backend
            if needs_native(spec) and not backend.capabilities().thinking_budget_param:
                raise InputError(
                    f"backend {model.backend!r} has no native thinking budget; use "
                    "budgets.forced or budgets.ladder",
                    path=spec.source,
                    field="budgets.native",
                )
            check = getattr(backend, "check", None)
            if check is not None:
                try:
                    await check()
                except Exception as exc:  # any failure here means: not usable, say so now
                    raise InputError(
                        f"upstream not usable: {exc}", path=spec.source, field=where
                    ) from exc
    except BaseException:
        for backend in opened.values():
            await backend.aclose()
        raise
    return opened


async def execute_item(backend: Backend, item: WorkItem, *, entropy: bool = True) -> ItemResult:
    """Run one item: a ladder, a forced or native budget, or a direct answer."""
    sampling = Sampling(item.sampling.temperature, item.sampling.top_p, item.seed)
    asked = (*item.problem.context, Message("user", item.problem.text))
    if item.mode == NO_THINK:
        chain = await backend.open_chain(conversation_for(asked, NO_THINK), sampling)
        try:
            if sampling.greedy:
                rung = await direct_answer(chain, reserve=item.reserve)
            else:
                rung = await sampled_direct_answer(chain, reserve=item.reserve)
            return ItemResult(
                rungs=(rung,), prompt_tokens=chain.prompt_tokens, probe_tokens=rung.answer_tokens
            )
        finally:
            await chain.aclose()
    assert item.mode == THINK
    messages = conversation_for(asked, THINK)
    if item.strategy.kind == "native":
        from ponder.budgets.native import native_budget  # written alongside; imported lazily

        rung = await native_budget(
            backend, messages, item.strategy.budgets[0], sampling=sampling, reserve=item.reserve
        )
        return ItemResult(rungs=(rung,), prompt_tokens=None, probe_tokens=rung.output_tokens)
    # A ladder, or forced at one budget (the one-rung ladder: force_budget, keeping the chain).
    chain = await backend.open_chain(messages, sampling, entropy=entropy)
    try:
        result = await run_ladder(chain, item.strategy.budgets, reserve=item.reserve)
    finally:
        await chain.aclose()
    return ItemResult(
        rungs=result.rungs,
        prompt_tokens=result.prompt_tokens,
        chain_text=result.chain_text,
        chain_tokens=result.chain_tokens,
        finished=result.finished,
        entropies=result.entropies,
        probe_tokens=result.probe_tokens,
    )


def slots_for(backend: Backend, concurrency: int) -> int:
    """How many items may use ``backend`` at once.

    A backend may say so itself (``max_concurrency``). An in-process engine with one KV
    cache (``kv_cache_reuse``) runs one item at a time: two chains interleaved on it would
    each re-fill the cache at every switch. Others take the sweep's ``concurrency``.
    """
    explicit = getattr(backend, "max_concurrency", None)
    if isinstance(explicit, int) and not isinstance(explicit, bool) and explicit >= 1:
        return min(explicit, concurrency)
    return 1 if backend.capabilities().kv_cache_reuse else concurrency


class _Scheduler:
    """Hands out items in plan order, skipping models whose slots are all busy, so two
    in-process engines both stay busy instead of one item waiting behind the other."""

    def __init__(self, todo: Sequence[WorkItem], slots: Mapping[str, int]) -> None:
        self.queues: dict[str, deque[tuple[int, WorkItem]]] = {}
        for index, item in enumerate(todo):
            self.queues.setdefault(item.model.name, deque()).append((index, item))
        self.slots = dict(slots)
        self.busy = dict.fromkeys(self.queues, 0)
        self.changed = asyncio.Condition()

    def _take(self) -> WorkItem | None:
        free = [
            name
            for name, queue in self.queues.items()
            if queue and self.busy[name] < self.slots.get(name, 1)
        ]
        if not free:
            return None
        name = min(free, key=lambda n: self.queues[n][0][0])
        self.busy[name] += 1
        return self.queues[name].popleft()[1]

    async def next(self) -> WorkItem | None:
        """The next item to run, or None when nothing is left."""
        async with self.changed:
            while True:
                item = self._take()
                if item is not None:
                    return item
                if not any(self.queues.values()):
                    return None
                await self.changed.wait()

    async def done(self, item: WorkItem) -> None:
        async with self.changed:
            self.busy[item.model.name] -= 1
            self.changed.notify_all()


@contextmanager
def sweep_lock(store: Store, sweep: str) -> Iterator[None]:
    """One ``sweep run`` of a sweep per store at a time (an OS file lock beside the store,
    released when the process ends however it ends); a second one fails at once."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, resume still never duplicates rows
        yield
        return
    digest = hashlib.sha256(sweep.encode()).hexdigest()[:12]
    path = store.path.with_name(f"{store.path.name}.sweep-{digest}.lock")
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise StoreError(
                f"{store.path}: another `ponder sweep run` of sweep {sweep!r} is writing this "
                "store; wait for it or stop it (the next run resumes where it stopped)"
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Attempted:
    """What became of one item: its result, or the error it ended with, and the attempts."""

    result: ItemResult | None
    error: str | None
    attempts: int


async def attempt_item(
    backend: Backend, item: WorkItem, *, retries: int, backoff_s: float, entropy: bool
) -> Attempted:
    """Run an item, retrying retryable engine errors with exponential backoff.

    Any other failure (a non-retryable BackendError, an engine crash) ends the item with its
    message: a long sweep goes on, and the item is retried on the next run.
    """
    attempts = 0
    while True:
        attempts += 1
        try:
            result = await execute_item(backend, item, entropy=entropy)
        except BackendError as exc:
            if exc.retryable and attempts <= retries:
                await asyncio.sleep(backoff_s * 2 ** (attempts - 1))
                continue
            return Attempted(None, str(exc), attempts)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:  # an engine crash must not stop a long sweep
            return Attempted(None, f"{type(exc).__name__}: {exc}", attempts)
        return Attempted(result, None, attempts)


class Executor(Protocol):
    """Where items run: in this process (``LocalExecutor``) or as Ray actors
    (``ponder.sweep.distributed``). Results always come back to the one writer."""

    slots: dict[str, int]

    async def run(self, item: WorkItem) -> Attempted: ...

    async def aclose(self) -> None: ...


class LocalExecutor:
    """Items run in this process against backends opened here."""

    def __init__(
        self, spec: SweepSpec, engines: Mapping[str, Backend], backoff_s: float, own: bool
    ) -> None:
        self.spec = spec
        self.engines = dict(engines)
        self.backoff_s = backoff_s
        self.own = own
        self.slots = {n: slots_for(e, spec.concurrency) for n, e in self.engines.items()}

    async def run(self, item: WorkItem) -> Attempted:
        return await attempt_item(
            self.engines[item.model.name],
            item,
            retries=self.spec.retries,
            backoff_s=self.backoff_s,
            entropy=self.spec.entropy,
        )

    async def aclose(self) -> None:
        if self.own:
            for backend in self.engines.values():
                await backend.aclose()


async def run_plan(
    plan: SweepPlan,
    store: Store,
    *,
    retry_errors: bool = True,
    reporter: Reporter | None = None,
    backends: Mapping[str, Backend] | None = None,
    backoff_s: float = 0.5,
    ray_address: str | None = None,
) -> SweepSummary:
    """Run the pending items of ``plan`` into ``store``; see the module docstring.

    ``ray_address`` runs the items as Ray actor calls instead ("local" starts a local Ray
    instance; "auto" or "ray://host:port" joins a cluster); results are still written here.
    """
    with sweep_lock(store, plan.spec.name):
        return await _run_locked(
            plan, store, retry_errors, reporter or _Silent(), backends, backoff_s, ray_address
        )


async def _open_executor(
    spec: SweepSpec,
    models: Sequence[str],
    backends: Mapping[str, Backend] | None,
    backoff_s: float,
    ray_address: str | None,
) -> Executor:
    if ray_address is not None:
        from ponder.sweep.distributed import open_ray_executor

        return await open_ray_executor(spec, models, ray_address, backoff_s)
    if backends is not None:
        return LocalExecutor(spec, backends, backoff_s, own=False)
    return LocalExecutor(spec, await open_backends(spec, models), backoff_s, own=True)


async def _run_locked(
    plan: SweepPlan,
    store: Store,
    retry_errors: bool,
    reporter: Reporter,
    backends: Mapping[str, Backend] | None,
    backoff_s: float,
    ray_address: str | None,
) -> SweepSummary:
    spec = plan.spec
    todo, done_before, skipped_errors = pending_items(plan, store, retry_errors=retry_errors)
    summary = SweepSummary(
        sweep=spec.name, items=len(plan.items), skipped=done_before, skipped_errors=skipped_errors
    )
    needed = sorted({item.model.name for item in todo})
    executor = await _open_executor(spec, needed, backends, backoff_s, ray_address)

    def record(item: WorkItem, outcome: Attempted) -> None:
        """The one writer: every result reaches the store from here."""
        if outcome.result is None:
            message = outcome.error or "unknown error"
            store.record_sweep_error(spec.name, item.key, message, outcome.attempts)
            summary.errors += 1
            if len(summary.error_messages) < 100:
                summary.error_messages.append(
                    f"{item.model.name} {item.problem.dataset}/{item.problem.problem_id} "
                    f"{item.mode_label} {item.strategy.kind}: {message}"
                )
            reporter.advance(item, 0, False)
            return
        result = outcome.result
        rows = outcome_rows(item, result)
        store.write_sweep_item(
            spec.name, item.key, rows, chain_row(item, result), attempts=outcome.attempts
        )
        summary.done += 1
        summary.tokens += result.generated_tokens
        reporter.advance(item, result.generated_tokens, True)

    try:
        store.begin_sweep(spec.name, spec.to_json(), plan.runs, plan.problems)
        scheduler = _Scheduler(todo, executor.slots)

        async def worker() -> None:
            while (item := await scheduler.next()) is not None:
                try:
                    record(item, await executor.run(item))
                finally:
                    await scheduler.done(item)

        started = time.perf_counter()
        reporter.start(len(plan.items), done_before + skipped_errors)
        try:
            n_workers = min(spec.concurrency, len(todo))
            await asyncio.gather(*(worker() for _ in range(n_workers)))
        finally:
            reporter.finish()
        summary.wall_s = time.perf_counter() - started
    finally:
        await executor.aclose()
    summary.accuracy = accuracy_table(store, plan)
    return summary


def accuracy_table(store: Store, plan: SweepPlan) -> list[dict[str, Any]]:
    """Accuracy and mean output tokens per model x mode x budget over the sweep's rows."""
    run_ids = [r.run_id for r in plan.runs]
    if not run_ids:
        return []
    rows = store.query(
        "SELECT model, mode, budget, COUNT(*), AVG(correct), AVG(output_tokens), "
        "AVG(stop_cost_tokens) FROM outcomes "
        f"WHERE run_id IN ({', '.join('?' for _ in run_ids)}) "
        "GROUP BY model, mode, budget ORDER BY model, mode, IFNULL(budget, -1)",
        run_ids,
    )
    return [
        {
            "model": r[0],
            "mode": r[1],
            "budget": r[2],
            "rows": int(r[3]),
            "accuracy": float(r[4]),
            "output_tokens": None if r[5] is None else float(r[5]),
            "stop_cost_tokens": None if r[6] is None else float(r[6]),
        }
        for r in rows
    ]


def run_sweep(
    spec: SweepSpec,
    store: Store,
    *,
    retry_errors: bool = True,
    reporter: Reporter | None = None,
    backoff_s: float = 0.5,
) -> SweepSummary:
    """Plan and run a sweep (synchronous entry point for the CLI and scripts)."""
    plan = build_plan(spec)
    return asyncio.run(
        run_plan(plan, store, retry_errors=retry_errors, reporter=reporter, backoff_s=backoff_s)
    )
