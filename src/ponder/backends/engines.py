"""Per-engine parameter profiles for the OpenAI-compatible backend.

Every engine speaks chat completions, but each has its own knob for a thinking budget, its
own switch for thinking, its own field for the reasoning text and its own way (if any) to
continue a partial answer. A profile says, for one engine, how ponder's mode and thinking
budget become request parameters, so ``openai_compat`` stays engine-agnostic. Names and
versions, with where each was found, are in ``docs/engines.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ponder.backends.base import NO_THINK, Capabilities

PrefixMode = Literal["chat", "completions", "none"]

# Qwen3-style hybrid models read this chat-template variable (vLLM, SGLang, llama-server
# forward ``chat_template_kwargs`` to the template).
ENABLE_THINKING = "enable_thinking"


@dataclass(frozen=True, slots=True)
class EngineProfile:
    """How one engine takes ponder's mode and budget, and what it does natively.

    ``budget_key`` is the request field of the native thinking budget (inside
    ``budget_parent`` when that is set, e.g. SGLang's ``custom_params``), sent in the JSON
    body through ``extra_body``. ``no_think`` is what turns thinking off natively: merged
    into the body for no-think requests. ``prefix`` is how a partial answer is continued:
    ``chat`` (the partial assistant message last plus ``continue_final_message``),
    ``completions`` (a raw prompt rendered client-side on ``/v1/completions``) or ``none``.
    """

    engine: str
    budget_key: str | None = None
    budget_parent: str | None = None
    no_think: dict[str, Any] = field(default_factory=dict)
    no_think_label: str | None = None
    always: dict[str, Any] = field(default_factory=dict)
    reasoning_split: bool = False
    multiple_samples: bool = False
    logprobs: bool = True
    prefix: PrefixMode = "none"
    max_tokens_field: str = "max_tokens"
    notes: str = ""

    def body_for(self, mode: str, thinking_budget: int | None) -> dict[str, Any]:
        """The extra JSON body fields for a chat request in ``mode`` with this budget.

        Raises ValueError when a budget is asked of an engine without a native parameter:
        budgets there are forced by ``ponder.budgets``, never silently dropped.
        """
        body: dict[str, Any] = {k: _copy(v) for k, v in self.always.items()}
        if mode == NO_THINK:
            _merge(body, self.no_think)
        if thinking_budget is not None:
            if self.budget_key is None:
                raise ValueError(
                    f"engine {self.engine!r} has no native thinking-budget parameter; "
                    "use two-phase forcing (ponder.budgets.force_budget) instead"
                )
            if thinking_budget < 0:
                raise ValueError(f"thinking_budget must be >= 0, got {thinking_budget}")
            if self.budget_parent is None:
                body[self.budget_key] = int(thinking_budget)
            else:
                _merge(body, {self.budget_parent: {self.budget_key: int(thinking_budget)}})
        return body

    def capabilities(self, name: str, prefix: PrefixMode | None = None) -> Capabilities:
        """Capabilities of a backend on this engine (``prefix`` overrides the profile's)."""
        budget_param = None
        if self.budget_key is not None:
            budget_param = (
                self.budget_key
                if self.budget_parent is None
                else f"{self.budget_parent}.{self.budget_key}"
            )
        return Capabilities(
            name=name,
            thinking_budget_param=budget_param,
            thinking_switch=self.no_think_label,
            reasoning_split=self.reasoning_split,
            multiple_samples=self.multiple_samples,
            logprobs=self.logprobs,
            entropy=False,
            prefix_continuation=(prefix or self.prefix) != "none",
            kv_cache_reuse=False,
            notes=self.notes,
        )


def _copy(value: Any) -> Any:
    return {k: _copy(v) for k, v in value.items()} if isinstance(value, dict) else value


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    """Deep-merge ``extra`` into ``into`` (nested dicts such as chat_template_kwargs)."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = _copy(value)


_QWEN_OFF = {"chat_template_kwargs": {ENABLE_THINKING: False}}
_QWEN_OFF_LABEL = "chat_template_kwargs.enable_thinking"

PROFILES: dict[str, EngineProfile] = {
    "vllm": EngineProfile(
        engine="vllm",
        budget_key="thinking_token_budget",
        no_think=_QWEN_OFF,
        no_think_label=_QWEN_OFF_LABEL,
        reasoning_split=True,
        multiple_samples=True,
        prefix="chat",
        notes=(
            "thinking_token_budget needs a vLLM with the hard thinking limit and a server "
            "started with --reasoning-parser (or --reasoning-config)"
        ),
    ),
    "sglang": EngineProfile(
        engine="sglang",
        budget_key="thinking_budget",
        budget_parent="custom_params",
        no_think=_QWEN_OFF,
        no_think_label=_QWEN_OFF_LABEL,
        always={"separate_reasoning": True},
        reasoning_split=True,
        multiple_samples=True,
        prefix="chat",
        notes=(
            "custom_params.thinking_budget is enforced only with --enable-strict-thinking "
            "(or the custom logit processor) and a --reasoning-parser"
        ),
    ),
    "llamacpp": EngineProfile(
        engine="llamacpp",
        budget_key="thinking_budget_tokens",
        no_think=_QWEN_OFF,
        no_think_label=_QWEN_OFF_LABEL,
        reasoning_split=True,
        multiple_samples=True,
        prefix="completions",
        notes=(
            "llama.cpp's llama-server; older builds only have the server-wide "
            "--reasoning-budget, which the per-request field cannot raise"
        ),
    ),
    "llama-cpp-python": EngineProfile(
        engine="llama-cpp-python",
        multiple_samples=False,
        prefix="completions",
        notes="python -m llama_cpp.server: no budget or thinking switch; ignores n > 1",
    ),
    "ollama": EngineProfile(
        engine="ollama",
        no_think={"reasoning_effort": "none"},
        no_think_label="reasoning_effort=none",
        reasoning_split=True,
        multiple_samples=False,
        logprobs=False,
        prefix="none",
        notes="think is a native /api/chat field; on /v1 reasoning_effort='none' turns it off",
    ),
    "openai": EngineProfile(
        engine="openai",
        no_think={"reasoning_effort": "none"},
        no_think_label="reasoning_effort=none",
        reasoning_split=False,
        multiple_samples=True,
        logprobs=True,
        prefix="none",
        max_tokens_field="max_completion_tokens",
        notes="reasoning_effort is a level, not a token budget; reasoning text is hidden",
    ),
    "generic": EngineProfile(engine="generic", prefix="none"),
}

ENGINES: tuple[str, ...] = tuple(PROFILES)


def profile_for(engine: str) -> EngineProfile:
    """The profile of ``engine``; a ValueError lists the known ones."""
    try:
        return PROFILES[engine]
    except KeyError:
        raise ValueError(f"unknown engine {engine!r}; expected one of {list(ENGINES)}") from None
