"""How a problem is put to a model in each mode.

None of the small local models has a native thinking mode, so think / no-think is prompting:
step by step, or the answer alone. Engines with a native switch (``enable_thinking``, Ollama's
``think``) get it on top of these prompts, by the backend.
"""

from __future__ import annotations

from ponder.backends.base import NO_THINK, THINK, Message

THINK_INSTRUCTION = (
    "Solve the problem step by step. "
    "End with the final answer, a number, in the form \\boxed{ANSWER}."
)
NO_THINK_INSTRUCTION = (
    "Give only the final answer, a number, in the form \\boxed{ANSWER}, with no explanation."
)


def messages_for(problem_text: str, mode: str) -> tuple[Message, ...]:
    """The chat messages that ask ``problem_text`` in ``mode``."""
    if mode == THINK:
        instruction = THINK_INSTRUCTION
    elif mode == NO_THINK:
        instruction = NO_THINK_INSTRUCTION
    else:
        raise ValueError(f"unknown mode {mode!r}; expected {THINK!r} or {NO_THINK!r}")
    return (Message("user", f"{problem_text.strip()}\n\n{instruction}"),)
