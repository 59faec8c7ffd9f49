"""The same work items as Ray actor calls, for sweeps that outgrow one machine.

One Ray actor per model opens that model's backend where Ray places it (a node with the model
file, or any node for an HTTP upstream) and runs items there with the same retries as a local
run (``attempt_item``). The driver keeps everything else: the plan, the scheduling (each model
gets the slots its backend asks for), the grading and the one writer, so the resume
guarantees of a local run hold unchanged: an item's rows, chain and 'done' mark are still
written in one transaction on the driver, and an item lost with a dead node is simply pending
on the next run.

Ray is the optional ``distributed`` extra; the ponder package must be importable on every
node (install it there, or pass a ``runtime_env``).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from ponder.backends import Backend, open_backend
from ponder.errors import InputError
from ponder.sweep.plan import WorkItem
from ponder.sweep.runner import Attempted, attempt_item, needs_native, slots_for
from ponder.sweep.spec import SweepSpec


class ItemWorker:
    """The body of a Ray actor: one model's backend, running items sent by the driver."""

    def __init__(
        self,
        kind: str,
        options: Mapping[str, Any],
        concurrency: int,
        retries: int,
        backoff_s: float,
        entropy: bool,
    ) -> None:
        self.backend: Backend = open_backend(kind, options)
        self.concurrency = concurrency
        self.retries = retries
        self.backoff_s = backoff_s
        self.entropy = entropy

    async def check(self, native: bool = False) -> int:
        """Check the upstream (when the backend can) and that it has a native thinking
        budget when the sweep asks for one; the slots this backend takes."""
        if native and not self.backend.capabilities().thinking_budget_param:
            raise InputError(
                f"{self.backend.capabilities().name} has no native thinking budget; use "
                "budgets.forced or budgets.ladder"
            )
        check = getattr(self.backend, "check", None)
        if check is not None:
            await check()
        return slots_for(self.backend, self.concurrency)

    async def run(self, item: WorkItem) -> Attempted:
        return await attempt_item(
            self.backend,
            item,
            retries=self.retries,
            backoff_s=self.backoff_s,
            entropy=self.entropy,
        )

    async def aclose(self) -> None:
        await self.backend.aclose()


def _ray() -> Any:
    """The ray module (an optional extra, imported only here; untyped for mypy)."""
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise InputError(
            "Ray is not installed: pip install 'ponder[distributed]' (or run without --ray)"
        ) from exc


def _cause(exc: BaseException) -> str:
    """The original error's message out of Ray's wrappers."""
    cause = getattr(exc, "cause", None)
    return str(cause) if cause is not None else str(exc).strip().splitlines()[-1]


class RayExecutor:
    """Items run on Ray actors (one per model); see the module docstring."""

    def __init__(self, actors: Mapping[str, Any], slots: Mapping[str, int]) -> None:
        self.actors = dict(actors)
        self.slots = dict(slots)

    async def run(self, item: WorkItem) -> Attempted:
        try:
            result: Attempted = await self.actors[item.model.name].run.remote(item)
        except Exception as exc:  # the actor or its node died: the item is an error
            return Attempted(None, f"ray: {type(exc).__name__}: {_cause(exc)}", 1)
        return result

    async def aclose(self) -> None:
        ray = _ray()
        for actor in self.actors.values():
            try:
                await actor.aclose.remote()
            finally:
                ray.kill(actor)


def init_ray(address: str) -> None:
    """Connect to Ray: "local" starts a private local instance; "auto" or "ray://..." joins
    a running cluster."""
    ray = _ray()
    if ray.is_initialized():
        return
    if address == "local":
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    else:
        ray.init(address=address, log_to_driver=False, configure_logging=False)


async def open_ray_executor(
    spec: SweepSpec, models: Sequence[str], address: str, backoff_s: float
) -> RayExecutor:
    """One actor per model, each checked (model file, upstream) before any work starts."""
    init_ray(address)
    ray = _ray()
    remote = ray.remote(ItemWorker)
    actors: dict[str, Any] = {}
    slots: dict[str, int] = {}
    try:
        for i, model in enumerate(spec.models):
            if model.name not in models:
                continue
            actor = remote.options(max_concurrency=max(1, spec.concurrency)).remote(
                model.backend,
                dict(model.options),
                spec.concurrency,
                spec.retries,
                backoff_s,
                spec.entropy,
            )
            actors[model.name] = actor
            try:
                slots[model.name] = int(await actor.check.remote(needs_native(spec)))
            except Exception as exc:
                where = model.where or f"models[{i}]"
                raise InputError(
                    f"on Ray: {_cause(exc)}", path=spec.source, field=f"{where}.options"
                ) from exc
    except BaseException:
        for actor in actors.values():
            ray.kill(actor)
        raise
    return RayExecutor(actors, slots)
