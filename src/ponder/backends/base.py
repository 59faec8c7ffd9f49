"""The one seam between ponder and an engine: a request, a generation, a chain, capabilities.

Two ways to ask a model, because engines differ in what they can do:

* ``Backend.chat`` sends a whole request (messages, mode, an optional native thinking budget,
  sampling, n) and returns finished generations. Native budget knobs live behind it.
* ``Backend.open_chain`` returns a ``Chain``: a generation that ponder grows a bit at a time and
  can *fork* from (ask "what is your answer now?" without changing the chain). Budget forcing,
  the "Wait" extension and the probe ladder (``ponder.budgets``) are written once over ``Chain``.
  In-process the fork reuses the KV cache; over HTTP it is prefix continuation (the engine's
  prefix cache makes it cheap).

Budgets are enforced by ``ponder.budgets``, never by a backend on its own initiative.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from ponder.errors import PonderError

THINK = "think"
NO_THINK = "no-think"
MODES: tuple[str, ...] = (THINK, NO_THINK)

FinishReason = Literal["stop", "length"]
# Where a chain's new text goes as it is generated (a server streaming it to its caller).
TextSink = Callable[[str], Awaitable[None]]


class BackendError(PonderError):
    """The engine failed: unreachable, refused the request, or answered nonsense.

    ``retryable`` is true for failures worth another attempt (timeouts, 429, 5xx); the sweep
    records a non-retryable one as an error for its work item and goes on.
    """

    def __init__(self, message: str, *, retryable: bool = False, status: int | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.status = status


@dataclass(frozen=True, slots=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class Sampling:
    """Sampling parameters. ``temperature == 0`` is greedy; ``seed`` makes a sample repeatable
    where the engine honours seeds."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat request. ``thinking_budget`` is passed to the engine's own budget parameter
    (see ``Capabilities.thinking_budget_param``); ``max_tokens`` caps everything generated."""

    messages: tuple[Message, ...]
    max_tokens: int
    mode: str = THINK
    thinking_budget: int | None = None
    sampling: Sampling = field(default_factory=Sampling)
    n: int = 1
    logprobs: bool = False

    def __post_init__(self) -> None:
        if not self.messages:
            raise ValueError("a request needs at least one message")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")


@dataclass(frozen=True, slots=True)
class Generation:
    """One finished generation, split into reasoning and answer where the engine says so.

    Token counts come from the engine (``usage``); ``reasoning_tokens`` is None when the
    engine does not report the split. ``token_logprobs`` are the chosen tokens' log
    probabilities when asked for and available.
    """

    text: str
    reasoning: str
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int | None
    finish_reason: FinishReason
    latency_s: float
    token_logprobs: tuple[float, ...] | None = None


@dataclass(frozen=True, slots=True)
class Segment:
    """What one ``Chain.extend`` or ``Chain.fork`` call generated.

    ``entropies`` are the per-token entropies (nats) of the next-token distribution where the
    backend sees full logits (in-process); None otherwise.
    """

    text: str
    tokens: int
    finished: bool
    logprobs: tuple[float, ...] | None = None
    entropies: tuple[float, ...] | None = None
    prompt_tokens: int = 0
    latency_s: float = 0.0


@runtime_checkable
class Chain(Protocol):
    """A generation grown in steps, with forks that leave it unchanged.

    ``tokens`` counts generated tokens (and appended text) after the prompt; ``finished`` is
    true once the model ended the chain on its own.
    """

    @property
    def text(self) -> str: ...

    @property
    def tokens(self) -> int: ...

    @property
    def finished(self) -> bool: ...

    @property
    def prompt_tokens(self) -> int: ...

    async def extend(self, max_tokens: int, on_text: TextSink | None = None) -> Segment:
        """Generate up to ``max_tokens`` more tokens (fewer if the model ends the chain).

        ``on_text`` receives the new text as it is generated: token by token where the
        backend streams (over HTTP), else the whole segment once it is done.
        """
        ...

    async def append(self, text: str) -> int:
        """Append text as if the model had written it (a cue such as "Wait,"); returns its
        token count. Un-finishes a finished chain."""
        ...

    async def fork(self, cue: str, max_tokens: int, stop: tuple[str, ...] = ()) -> Segment:
        """Append ``cue`` to a copy of the chain and generate greedily up to ``max_tokens``.

        The chain itself is unchanged. ``Segment.prompt_tokens`` is the cue's token count;
        ``Segment.logprobs`` the generated tokens' log probabilities where available.
        """
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend does natively, so ``ponder.budgets`` picks the strategy.

    ``thinking_budget_param`` names the engine's own budget parameter (None: budgets are
    forced by ponder); ``thinking_switch`` names how thinking is turned off natively (None:
    no-think is a direct-answer prompt).
    """

    name: str
    thinking_budget_param: str | None = None
    thinking_switch: str | None = None
    reasoning_split: bool = False
    multiple_samples: bool = False
    logprobs: bool = False
    entropy: bool = False
    prefix_continuation: bool = False
    kv_cache_reuse: bool = False
    notes: str = ""


@runtime_checkable
class Backend(Protocol):
    """An engine. One module per kind: ``openai_compat``, ``llamacpp``, ``fake``."""

    @property
    def model(self) -> str:
        """The model name as ponder records it."""
        ...

    def capabilities(self) -> Capabilities: ...

    async def chat(self, request: ChatRequest) -> list[Generation]:
        """Run a request; one Generation per sample (``request.n`` of them)."""
        ...

    async def open_chain(
        self, messages: tuple[Message, ...], sampling: Sampling, *, entropy: bool = False
    ) -> Chain:
        """Start a chain on the messages (the assistant turn is what grows).

        Raises BackendError when the backend cannot continue a prefix
        (``capabilities().prefix_continuation`` is false).
        """
        ...

    async def aclose(self) -> None: ...
