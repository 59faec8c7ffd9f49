"""A thinking budget enforced by the engine itself, through ``Backend.chat``.

Engines with a native budget (vLLM ``thinking_token_budget``, SGLang ``thinking_budget``,
llama-server ``thinking_budget_tokens``) end the thinking at B tokens and go on with the
answer, so one request does what two-phase forcing does in two. The answer reserve is on
top: ``max_tokens = budget + reserve``. The result is a ``Rung`` like the ladder's, so a sweep
records native and forced budgets the same way.
"""

from __future__ import annotations

from ponder.backends.base import THINK, Backend, BackendError, ChatRequest, Message, Sampling
from ponder.budgets.ladder import DEFAULT_RESERVE, Rung


def split_tokens(
    completion_tokens: int, reasoning_tokens: int | None, reasoning: str, text: str
) -> int:
    """Thinking tokens of a generation: the engine's count, else a character-share estimate.

    Engines that split the reasoning text but do not count its tokens get the reasoning's
    share of the characters, rounded; no reasoning text means no thinking tokens.
    """
    if reasoning_tokens is not None:
        return max(0, min(int(reasoning_tokens), completion_tokens))
    if not reasoning:
        return 0
    total = len(reasoning) + len(text)
    return min(completion_tokens, round(completion_tokens * len(reasoning) / total))


async def native_budget(
    backend: Backend,
    messages: tuple[Message, ...],
    budget: int,
    reserve: int = DEFAULT_RESERVE,
    sampling: Sampling | None = None,
) -> Rung:
    """One chat call with the engine's own thinking budget, as a ``Rung``.

    ``natural`` is true when the model finished on its own before the budget was spent.
    Raises BackendError when the backend has no native budget parameter (use
    ``force_budget`` there) and ValueError for a budget below 0 or a reserve below 1.
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0 thinking tokens, got {budget}")
    if reserve < 1:
        raise ValueError(f"the answer reserve must be >= 1 token, got {reserve}")
    caps = backend.capabilities()
    if caps.thinking_budget_param is None:
        raise BackendError(
            f"{caps.name} has no native thinking-budget parameter; "
            "use two-phase forcing (ponder.budgets.force_budget) instead"
        )
    request = ChatRequest(
        messages=messages,
        max_tokens=budget + reserve,
        mode=THINK,
        thinking_budget=budget,
        sampling=sampling or Sampling(),
    )
    (gen,) = await backend.chat(request)
    thinking = split_tokens(gen.completion_tokens, gen.reasoning_tokens, gen.reasoning, gen.text)
    answer_tokens = gen.completion_tokens - thinking
    return Rung(
        budget=budget,
        thinking_tokens=thinking,
        natural=gen.finish_reason == "stop" and thinking < budget,
        answer_text=gen.text,
        answer_tokens=answer_tokens,
        cue_tokens=0,
        answer_prob=None,  # a free-text answer: no single answer token to score
        entropy_tail=None,
        stop_cost_tokens=gen.completion_tokens,
        latency_s=gen.latency_s,
    )
