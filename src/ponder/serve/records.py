"""One request-log row per served request, from what the route knows when it ends."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ponder.serve.dispatch import Outcome
from ponder.serve.limits import KeyPolicy
from ponder.serve.requestlog import RequestRecord
from ponder.serve.schemas import ChatCompletionRequest


def _prompt(body: ChatCompletionRequest, keep: bool) -> tuple[str, str | None]:
    """(sha256 of the messages, the messages as JSON when the server keeps prompts)."""
    text = json.dumps([m.model_dump(exclude_unset=True) for m in body.messages], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest(), text if keep else None


def record_for(
    *,
    request_id: str,
    body: ChatCompletionRequest,
    key_name: str | None,
    policy: str,
    outcome: Outcome | None,
    status: int,
    seconds: float,
    error: str | None,
    log_prompt: bool,
) -> RequestRecord:
    digest, text = _prompt(body, log_prompt)
    common: dict[str, Any] = {
        "request_id": request_id,
        "key_name": key_name,
        "model": body.model,
        "policy": policy,
        "status": status,
        "stream": body.stream,
        "latency_s": max(0.0, seconds),
        "prompt_sha256": digest,
        "prompt_text": text,
        "error": error,
    }
    if outcome is None:
        return RequestRecord(**common)
    return RequestRecord(
        **common,
        decision_json=json.dumps(outcome.decision.to_dict(), sort_keys=True),
        config=outcome.result.steps[-1].config.label,
        prompt_tokens=outcome.result.prompt_tokens,
        reasoning_tokens=outcome.reasoning_tokens,
        answer_tokens=outcome.answer_tokens,
        probe_tokens=outcome.probe_tokens,
        calls=outcome.calls,
        rungs=outcome.result.rungs,
        escalated=outcome.escalated,
        early_exit=outcome.early_exit,
        answer=outcome.result.final.extracted,
    )


def upstream_record(
    *,
    request_id: str,
    body: ChatCompletionRequest,
    key_name: str | None,
    status: int,
    seconds: float,
    usage: Mapping[str, Any] | None,
    error: str | None,
    log_prompt: bool,
) -> RequestRecord:
    digest, text = _prompt(body, log_prompt)
    usage = usage or {}
    details = usage.get("completion_tokens_details") or {}
    reasoning = details.get("reasoning_tokens") if isinstance(details, Mapping) else None
    completion = usage.get("completion_tokens")
    answer = None
    if isinstance(completion, int):
        answer = completion - (reasoning if isinstance(reasoning, int) else 0)
    prompt_tokens = usage.get("prompt_tokens")
    return RequestRecord(
        request_id=request_id,
        key_name=key_name,
        model=body.model,
        config=body.model,
        status=status,
        stream=body.stream,
        prompt_tokens=prompt_tokens if isinstance(prompt_tokens, int) else None,
        reasoning_tokens=reasoning if isinstance(reasoning, int) else None,
        answer_tokens=answer,
        calls=1,
        latency_s=max(0.0, seconds),
        prompt_sha256=digest,
        prompt_text=text,
        error=error,
    )


def used_tokens(store_path: Path, keys: Sequence[KeyPolicy]) -> dict[str, int]:
    """Tokens each key spent within its budget period before now (from the request log), so a
    restart does not hand out a fresh budget. A store without a log yet: nothing spent."""
    if not store_path.is_file():
        return {}
    from ponder.serve.requestlog import read_requests

    budgeted = [key for key in keys if key.token_budget is not None]
    if not budgeted:
        return {}
    now = dt.datetime.now(dt.UTC)
    longest = max(key.budget_period_s for key in budgeted)
    try:  # one read of the log, from the start of the longest period
        frame = read_requests(store_path, since=(now - dt.timedelta(seconds=longest)).isoformat())
    except Exception:
        return {}  # an older store without the log: nothing recorded yet
    created = pd.to_datetime(frame["created_at"], utc=True, format="ISO8601")
    columns = ["prompt_tokens", "reasoning_tokens", "answer_tokens", "probe_tokens"]
    spent = frame[columns].fillna(0).to_numpy().sum(axis=1)
    out: dict[str, int] = {}
    for key in budgeted:
        since = now - dt.timedelta(seconds=key.budget_period_s)
        mine = ((frame["key_name"] == key.name) & (created >= since)).to_numpy()
        out[key.name] = int(spent[mine].sum())
    return out
