"""Exploration: a share of served requests also runs every configuration of its plan in full.

A served plan shows only what it ran: a request whose direct answer was accepted never shows
what thinking would have given, so the log of served answers cannot tell whether a threshold
should move. With ``--explore P``, a share P of ``ponder/`` requests also runs, in the
background after the reply, every configuration its plan names the way ``ponder sweep``
records it (each ladder to its cap with every probe, each sample), on the same conversation
(system prompt and earlier turns included), and the outcome rows go to the request log. Once
the caller posts the gold answer (``POST /v1/ponder/feedback``), those rows are an unbiased
sample of live traffic with every counterfactual known: ``ponder recalibrate`` replays and
refits the policy on them as on a sweep.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ponder.backends.base import Backend, Message
from ponder.decision import Decision
from ponder.sweep.execute import RunSettings, decoding_for
from ponder.sweep.plan import ProblemRef, WorkItem, canonical_digest
from ponder.sweep.rows import ItemResult, chain_row, outcome_rows
from ponder.sweep.runner import execute_item
from ponder.sweep.spec import ModelSpec, SamplingSpec, Strategy

EXPLORE_FORMAT = 1


def dataset_for(policy: str) -> str:
    """The dataset explored requests of a policy are recorded under."""
    return f"serve:{policy}"


def explorable(turns: Sequence[Message]) -> tuple[tuple[Message, ...], str] | None:
    """(the turns before the question, the question) of a served conversation, or None when
    the last user message is empty. Earlier turns (a system prompt, a past exchange) are
    re-sent with the question, as the plan sent them."""
    if not turns or turns[-1].role != "user":
        return None
    text = turns[-1].content.strip()
    return (tuple(turns[:-1]), text) if text else None


def explore_items(
    policy: str,
    request_id: str,
    text: str,
    decision: Decision,
    settings: RunSettings,
    context: tuple[Message, ...] = (),
) -> list[WorkItem]:
    """Work items that record every configuration of the plan in full: an exit step's whole
    ladder, a thinking step at its budget, a direct answer; one item per sample, numbered
    per (model, mode) in plan order, so replay draws them as it draws a sweep's."""
    dataset = dataset_for(policy)
    problem = ProblemRef(
        dataset=dataset, problem_id=request_id, text=text, gold="", context=context
    )
    used: dict[tuple[str, str], int] = {}
    items: list[WorkItem] = []
    for step in decision.steps:
        config = step.config
        decoding = decoding_for(config.mode, settings)
        if decoding.base == "no-think":
            strategy = Strategy("none")
        elif step.exit is not None:
            strategy = Strategy("ladder", tuple(step.exit.rungs))
        else:
            assert config.budget is not None  # checked by check_decision
            strategy = Strategy("forced", (config.budget,))
        sampling = SamplingSpec(decoding.temperature, decoding.top_p, step.samples)
        family = (config.model, config.mode)
        for _ in range(step.samples):
            index = used.get(family, 0)
            used[family] = index + 1
            run_id = f"{dataset}/{config.model}/{config.mode}/{strategy.kind}"
            key = canonical_digest([run_id, request_id, strategy.describe(), index])
            seed = int(canonical_digest([settings.seed, request_id, family, index])[:8], 16)
            items.append(
                WorkItem(
                    sweep=dataset,
                    model=ModelSpec(config.model, "openai"),
                    problem=problem,
                    mode=decoding.base,
                    strategy=strategy,
                    sampling_index=0,
                    sampling=sampling,
                    sample_idx=index,
                    seed=seed & 0x7FFFFFFF,
                    reserve=settings.reserve,
                    mode_label=config.mode,
                    run_id=run_id,
                    key=key,
                )
            )
    return items


async def explore(backends: Mapping[str, Backend], items: Sequence[WorkItem]) -> tuple[str, int]:
    """Run the items one after another; (the log's JSON payload, tokens generated)."""
    records: list[dict[str, Any]] = []
    tokens = 0
    for item in items:
        result: ItemResult = await execute_item(backends[item.model.name], item, entropy=False)
        tokens += result.generated_tokens
        records.append(
            {
                "key": item.key,
                "run_id": item.run_id,
                "model": item.model.name,
                "budget_kind": "none" if item.strategy.kind == "none" else "forced",
                "rows": outcome_rows(item, result),
                "chain": chain_row(item, result),
            }
        )
    # The question goes with the rows (policies that read the text refit on it), and the
    # turns before it, so the explored conversation can be told from a lone question.
    text = items[0].problem.text if items else ""
    context = [
        {"role": m.role, "content": m.content} for m in (items[0].problem.context if items else ())
    ]
    payload = {"format": EXPLORE_FORMAT, "text": text, "context": context, "items": records}
    return json.dumps(payload, separators=(",", ":"), default=_plain), tokens


def _plain(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot store {type(value).__name__} in the log")
