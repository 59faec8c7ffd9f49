"""How a problem is put to a model in each mode.

None of the small local models has a native thinking mode, so think / no-think is prompting:
step by step, or the answer alone. Engines with a native switch (``enable_thinking``, Ollama's
``think``) get it on top of these prompts, by the backend.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from ponder.backends.base import NO_THINK, THINK, Message

# The prompt Qwen's math models are evaluated with. An earlier wording ("in the form
# \\boxed{ANSWER}") made the small models copy the placeholder when probed early.
THINK_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
NO_THINK_INSTRUCTION = (
    "Answer with only the final number within \\boxed{}, without any explanation."
)


def prompt_version() -> str:
    """A short digest of every text ponder adds to a problem (instructions and cues), so
    rows produced under other prompts never share a run or a work item with these."""
    from ponder.budgets.ladder import ANSWER_CUE, DIRECT_CUE

    texts = [THINK_INSTRUCTION, NO_THINK_INSTRUCTION, ANSWER_CUE, DIRECT_CUE]
    return hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:12]


def conversation_for(messages: Sequence[Message], mode: str) -> tuple[Message, ...]:
    """The conversation that asks its last user message in ``mode``: the mode's instruction
    is appended to that message (earlier turns are kept as they are)."""
    if mode == THINK:
        instruction = THINK_INSTRUCTION
    elif mode == NO_THINK:
        instruction = NO_THINK_INSTRUCTION
    else:
        raise ValueError(f"unknown mode {mode!r}; expected {THINK!r} or {NO_THINK!r}")
    if not messages or messages[-1].role != "user":
        raise ValueError("the conversation must end with a user message")
    last = messages[-1]
    return (*messages[:-1], Message("user", f"{last.content.strip()}\n\n{instruction}"))


def messages_for(problem_text: str, mode: str) -> tuple[Message, ...]:
    """The chat messages that ask ``problem_text`` in ``mode``."""
    return conversation_for((Message("user", problem_text),), mode)
