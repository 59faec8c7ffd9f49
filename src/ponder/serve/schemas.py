"""The request body of ``POST /v1/chat/completions``, validated before anything runs.

Only what ponder reads is typed; every other field (tools, response_format, ...) is kept and
passed through to an upstream model untouched. The ``ponder`` object carries per-request
overrides of a policy's plan.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ponder.backends.base import MODES
from ponder.types import GREEDY_SUFFIX

# think / no-think sampled as the plan's recorded modes are, or greedy (`think-greedy`).
REQUEST_MODES: tuple[str, ...] = (*MODES, *(m + GREEDY_SUFFIX for m in MODES))


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        """The message as plain text; a policy runs on text only."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content if part.type == "text")

    def has_non_text(self) -> bool:
        return isinstance(self.content, list) and any(p.type != "text" for p in self.content)


class PonderOptions(BaseModel):
    """Per-request overrides of a policy's plan (all optional)."""

    model_config = ConfigDict(extra="forbid")
    mode: str | None = None
    budget: int | None = Field(default=None, ge=1, le=1_000_000)
    samples: int | None = Field(default=None, ge=1, le=64)
    max_cost: int | None = Field(default=None, ge=1)
    level: int | None = None
    subject: str | None = None
    dataset: str | None = None

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, value: str | None) -> str | None:
        if value is not None and value not in REQUEST_MODES:
            raise ValueError(f"must be one of {', '.join(REQUEST_MODES)}")
        return value


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int = Field(default=1, ge=1, le=16)
    seed: int | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    ponder: PonderOptions | None = None

    @property
    def token_cap(self) -> int | None:
        """The caller's cap on generated tokens (max_completion_tokens, else max_tokens)."""
        return self.max_completion_tokens or self.max_tokens


def location(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as the caller wrote it: ``messages[0].role``."""
    out = ""
    for part in loc:
        if part == "body":
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"
