"""Shared by the serve tests: a hand-made fitted policy and a scripted upstream."""

from __future__ import annotations

import json

import httpx

from ponder.decision import Config, ExitRule, Step
from ponder.policies.early_exit import ProbeEscalate


def probe_escalate_policy(model: str = "small") -> ProbeEscalate:
    policy = ProbeEscalate(1e-3)
    steps = [
        Step(Config(model, "no-think-greedy", None), escalate="unsure", min_prob=0.95),
        Step(Config(model, "think-greedy", 128), exit=ExitRule((32, 64, 128), window=2)),
    ]
    policy.set_state(
        {
            "steps": [s.to_dict() for s in steps],
            "units": [],
            "train_accuracy": 0.5,
            "train_cost": 50.0,
            "reached": [1.0, 0.5],
        }
    )
    policy.fingerprint_ = "test"
    policy.n_problems_fitted_ = 0
    return policy


def upstream_reply(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    if body.get("stream"):
        events = [
            {"id": "u1", "object": "chat.completion.chunk", "model": body["model"],
             "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
            for word in ("forty", " two")
        ]  # fmt: skip
        events.append({"id": "u1", "object": "chat.completion.chunk", "model": body["model"],
                       "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2,
                                                "total_tokens": 7}})  # fmt: skip
        text = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})
    return httpx.Response(
        200,
        json={
            "id": "u1",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "42"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
            "echo": body,
        },
    )
