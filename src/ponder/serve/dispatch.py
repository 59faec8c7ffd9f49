"""Apply a fitted policy to one request: decide its plan, fit it to the caller's limits, run
it on the upstreams, and say what it cost.

The plan runs through the same executor as ``ponder run`` (``ponder.sweep.execute``), with
the same prompts, probes and escalation rules the policy was fitted and replayed under, so
the served behaviour is the one the offline numbers describe. The caller's messages are the
conversation; ponder's mode instruction goes on the last user turn, as in the sweep.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ponder.backends.base import (
    Backend,
    Capabilities,
    Chain,
    ChatRequest,
    Generation,
    Message,
    Segment,
    TextSink,
)
from ponder.backends.base import Sampling as EngineSampling
from ponder.decision import Config, Decision, Step
from ponder.policies.base import Policy
from ponder.serve.errors import ApiError
from ponder.serve.schemas import ChatCompletionRequest
from ponder.sweep.execute import (
    ProblemResult,
    Prompt,
    RunSettings,
    check_decision,
    execute_decision,
    worst_case_tokens,
)
from ponder.types import base_mode


@dataclass
class Served:
    """A policy as the server applies it."""

    name: str
    policy: Policy
    decide_as: str | None = None

    @property
    def model_id(self) -> str:
        return f"ponder/{self.name}"


# -- the conversation -------------------------------------------------------------------------


def conversation(request: ChatCompletionRequest) -> tuple[Message, ...]:
    """The caller's messages as text turns ending with the user's; 400 on what a plan
    cannot run (images, tool results, a trailing assistant turn)."""
    out: list[Message] = []
    for i, message in enumerate(request.messages):
        if message.has_non_text():
            raise ApiError(
                400,
                "ponder/ models take text only (no images or audio parts)",
                param=f"messages[{i}].content",
            )
        role = message.role
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant"):
            raise ApiError(
                400, f"ponder/ models take system, user and assistant turns, not {role!r}",
                param=f"messages[{i}].role",
            )  # fmt: skip
        out.append(Message(role, message.text()))
    if out[-1].role != "user":
        raise ApiError(400, "the last message must be the user's", param="messages")
    return tuple(out)


# -- the plan ---------------------------------------------------------------------------------


def decide(served: Served, request: ChatCompletionRequest, request_id: str) -> Decision:
    """The policy's plan for this request, from what is known before generation."""
    options = request.ponder
    text = request.messages[-1].text()
    problem = {
        "dataset": (options.dataset if options and options.dataset else None)
        or served.decide_as
        or "serve",
        "problem_id": request_id,
        "level": options.level if options else None,
        "subject": options.subject if options else None,
        "text": text,
    }
    return served.policy.decide(problem)


def _override(decision: Decision, request: ChatCompletionRequest) -> Decision:
    """The caller's `ponder` mode / budget / samples as a one-step plan on the plan's last
    (strongest) model; `reasoning_effort` picks the plan's cheapest or dearest step alone."""
    options = request.ponder
    last = decision.steps[-1]
    if options is not None and (options.mode or options.budget or options.samples):
        mode = options.mode or base_mode(last.config.mode)
        thinks = base_mode(mode) == "think"
        budget = options.budget if options.budget else last.config.budget
        if thinks and budget is None:
            raise ApiError(400, "a think request needs a budget: set ponder.budget", param="ponder")
        config = Config(last.config.model, mode, budget if thinks else None)
        samples = options.samples or 1
        return Decision((Step(config, samples=samples),), reason="request override")
    effort = request.reasoning_effort
    if effort in ("minimal", "low"):
        first = decision.steps[0]
        return Decision((replace(first, escalate="never"),), reason=f"effort {effort}")
    if effort == "high" and len(decision.steps) > 1:
        return Decision((last,), reason="effort high")
    return decision


def _shrunk(step: Step, cap: int, reserve: int) -> Step | None:
    """The step cut down to `cap` generated tokens at worst, or None when it cannot be."""
    if step.config.budget is None:
        return None
    if step.exit is not None:
        kept = [r for k, r in enumerate(step.exit.rungs, start=1) if r + k * reserve <= cap]
        if not kept or kept[-1] < reserve:
            return None
        rule = replace(step.exit, rungs=tuple(kept))
        config = Config(step.config.model, step.config.mode, kept[-1])
        return replace(step, config=config, exit=rule)
    budget = cap // step.samples - reserve
    if budget < reserve:
        return None
    return replace(step, config=Config(step.config.model, step.config.mode, budget))


def fit_to_cap(decision: Decision, cap: int | None, settings: RunSettings) -> Decision:
    """Later steps are dropped, then the last thinking budget lowered, until the plan's
    worst case fits in `cap` generated tokens; 400 when even that does not fit."""
    if cap is None or worst_case_tokens(decision, settings) <= cap:
        return decision
    steps = list(decision.steps)
    while len(steps) > 1 and worst_case_tokens(Decision(tuple(steps)), settings) > cap:
        steps.pop()
    if worst_case_tokens(Decision(tuple(steps)), settings) > cap:
        shrunk = _shrunk(steps[-1], cap, settings.reserve)
        if shrunk is None:
            need = worst_case_tokens(Decision(tuple(steps)), settings)
            raise ApiError(
                400,
                f"the token cap {cap} is below what the cheapest plan can need ({need}); "
                "raise max_tokens / ponder.max_cost",
                param="max_tokens",
            )
        steps[-1] = shrunk
    return Decision(tuple(steps), reason=f"{decision.reason} (fit to {cap} tokens)".strip())


def plan_for(own: Decision, request: ChatCompletionRequest, settings: RunSettings) -> Decision:
    """The policy's own plan `own` with the caller's overrides and caps, checked."""
    decision = _override(own, request)
    caps = [c for c in (request.token_cap, request.ponder and request.ponder.max_cost) if c]
    decision = fit_to_cap(decision, min(caps) if caps else None, settings)
    try:
        check_decision(decision, settings)
    except Exception as exc:
        raise ApiError(400, f"cannot run this plan: {exc}") from None
    return decision


# -- counting calls and seeing chains grow ---------------------------------------------------


@dataclass
class Tally:
    """Upstream calls one request made, and where the chains' text goes as it grows."""

    calls: int = 0
    sink: TextSink | None = None
    labels: list[str] = field(default_factory=list)


class _TallyChain:
    def __init__(self, chain: Chain, tally: Tally) -> None:
        self._chain = chain
        self._tally = tally
        self._thinking = True

    @property
    def text(self) -> str:
        return self._chain.text

    @property
    def tokens(self) -> int:
        return self._chain.tokens

    @property
    def finished(self) -> bool:
        return self._chain.finished

    @property
    def prompt_tokens(self) -> int:
        return self._chain.prompt_tokens

    async def extend(self, max_tokens: int, on_text: TextSink | None = None) -> Segment:
        self._tally.calls += 1
        sink = self._tally.sink if self._thinking else None
        return await self._chain.extend(max_tokens, on_text=sink)

    async def append(self, text: str) -> int:
        # An appended cue turns what follows into an answer (a sampled direct answer): only
        # a chain's own thinking is streamed as reasoning.
        self._thinking = False
        return await self._chain.append(text)

    async def fork(self, cue: str, max_tokens: int, stop: tuple[str, ...] = ()) -> Segment:
        self._tally.calls += 1
        return await self._chain.fork(cue, max_tokens, stop)

    async def aclose(self) -> None:
        await self._chain.aclose()


class TallyBackend:
    """A backend that counts its calls for one request (and streams its chains' text)."""

    def __init__(self, backend: Backend, tally: Tally) -> None:
        self._backend = backend
        self._tally = tally

    @property
    def model(self) -> str:
        return self._backend.model

    def capabilities(self) -> Capabilities:
        return self._backend.capabilities()

    async def chat(self, request: ChatRequest) -> list[Generation]:
        self._tally.calls += 1
        return await self._backend.chat(request)

    async def open_chain(
        self, messages: tuple[Message, ...], sampling: EngineSampling, *, entropy: bool = False
    ) -> Chain:
        chain = await self._backend.open_chain(messages, sampling, entropy=entropy)
        return _TallyChain(chain, self._tally)

    async def aclose(self) -> None:
        """The upstream's own backend outlives a request: nothing to close here."""


# -- running and answering --------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """A served plan: its result and what it cost."""

    decision: Decision
    result: ProblemResult
    calls: int
    seconds: float

    @property
    def escalated(self) -> bool:
        return len(self.result.steps) > 1

    @property
    def early_exit(self) -> bool:
        return any(s.stopped in ("rule", "gave_up") for s in self.result.samples)

    @property
    def reasoning_tokens(self) -> int:
        return sum(s.chain_tokens for s in self.result.samples)

    @property
    def completion_tokens(self) -> int:
        return self.result.generated_tokens

    @property
    def answer_tokens(self) -> int:
        """What the final sample generated outside its chain: a direct reply, or the forced
        answers of the chain that answered. With `reasoning_tokens` and `probe_tokens` it
        adds up to `completion_tokens`."""
        return self.result.final.probe_tokens

    @property
    def probe_tokens(self) -> int:
        """Every other sample's forced answers and direct replies (probes, votes, steps
        escalated from)."""
        return sum(s.probe_tokens for s in self.result.samples) - self.answer_tokens

    def answer_parts(self) -> tuple[str, str]:
        """(reasoning, content) of the final answer. A thinking chain is the reasoning (as
        streamed); the content is the forced answer when the budget or an exit rule stopped
        the chain, or the chain's own answer line when it ended by itself. A direct answer
        is all content. Every word is the model's."""
        final = self.result.final
        if final.reasoning:  # stopped early: the probe's forced answer
            return final.reasoning, final.text
        if final.chain_tokens > 0:  # ended on its own
            return final.text, answer_line(final.text)
        return "", final.text


def answer_line(chain: str) -> str:
    """The line of a finished chain that gives its answer: from the start of the line with
    the last ``\\boxed{`` to the end, else the last paragraph."""
    at = chain.rfind("\\boxed{")
    if at < 0:
        return chain.strip().rsplit("\n\n", 1)[-1].strip()
    return chain[chain.rfind("\n", 0, at) + 1 :].strip()


async def run_plan(
    backends: Mapping[str, Backend],
    request_id: str,
    conversation_: tuple[Message, ...],
    decision: Decision,
    settings: RunSettings,
    sink: TextSink | None = None,
) -> Outcome:
    """Execute the plan; every upstream call is counted, chain text goes to `sink`."""
    tally = Tally(sink=sink)
    counted = {name: TallyBackend(b, tally) for name, b in backends.items()}
    prompt = Prompt(conversation_, (request_id,))
    started = time.perf_counter()
    result = await execute_decision(counted, prompt, decision, settings)
    return Outcome(decision, result, tally.calls, time.perf_counter() - started)


def new_request_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(outcome: Outcome) -> dict[str, Any]:
    prompt = outcome.result.prompt_tokens
    completion = outcome.completion_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "completion_tokens_details": {"reasoning_tokens": outcome.reasoning_tokens},
    }


def ponder_summary(outcome: Outcome) -> dict[str, Any]:
    """What ponder did, in the response body (clients ignore unknown fields)."""
    return {
        "decision": outcome.decision.to_dict(),
        "steps": [s.to_dict() for s in outcome.result.steps],
        "answer": outcome.result.final.extracted,
        "calls": outcome.calls,
        "escalated": outcome.escalated,
        "early_exit": outcome.early_exit,
        "generated_tokens": outcome.completion_tokens,
    }


def headers(outcome: Outcome) -> dict[str, str]:
    """``x-ponder-*`` headers: decision, rungs used, cost, calls, escalated."""
    return {
        "x-ponder-decision": " > ".join(s.config.label for s in outcome.result.steps),
        "x-ponder-rungs": str(outcome.result.rungs),
        "x-ponder-cost": str(outcome.completion_tokens),
        "x-ponder-calls": str(outcome.calls),
        "x-ponder-escalated": "true" if outcome.escalated else "false",
    }


def completion(
    outcome: Outcome, request_id: str, model: str, created: int, reasoning_field: str
) -> dict[str, Any]:
    reasoning, content = outcome.answer_parts()
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning:
        message[reasoning_field] = reasoning
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
        "usage": usage(outcome),
        "ponder": ponder_summary(outcome),
    }


def served_settings(seed: int | None, reserve: int) -> RunSettings:
    """Run settings of one request: the plan's own decoding; the caller's seed if given."""
    return RunSettings(
        reserve=reserve,
        seed=seed if seed is not None else uuid.uuid4().int % 2**31,
        backend="openai",
    )


def check_models(decision: Decision, upstreams: Mapping[str, object]) -> None:
    """Every model of the plan has an upstream (its modes were checked by `plan_for`)."""
    missing = sorted({s.config.model for s in decision.steps} - set(upstreams))
    if missing:
        raise ApiError(
            500,
            f"the plan needs model(s) {missing} and no upstream serves them (--upstream NAME=URL)",
            code="no_upstream",
        )
