"""Any OpenAI-compatible server (vLLM, SGLang, llama.cpp, Ollama, hosted APIs) as a Backend.

Requests go through the official ``openai`` client (``AsyncOpenAI``); how ponder's mode and
thinking budget map onto each engine's own parameters lives in ``ponder.backends.engines``.
Retries (429, 5xx, timeouts, lost connections) are ponder's own, with exponential backoff and
jitter and an injectable sleep so they are testable; the client's retries are off. Every
HTTP call waits on one semaphore, so ``concurrency`` bounds what is in flight.

A ``Chain`` over HTTP is prefix continuation: the text so far is sent again, either as a
partial assistant message with ``continue_final_message`` (vLLM, SGLang) or as a raw prompt
on ``/v1/completions`` rendered client-side in ChatML (llama.cpp servers). Engines with a
prefix cache make the resend cheap. There is no entropy over HTTP.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from ponder.backends.base import (
    THINK,
    BackendError,
    Capabilities,
    ChatRequest,
    FinishReason,
    Generation,
    Message,
    Sampling,
    Segment,
    TextSink,
)
from ponder.backends.engines import ENGINES, EngineProfile, PrefixMode, profile_for
from ponder.errors import InputError

try:  # the optional extra; imported here so a missing client fails with one clear line
    import openai
except ImportError:  # pragma: no cover - exercised only without the extra
    openai = None  # type: ignore[assignment]

Sleep = Callable[[float], Awaitable[None]]

KNOWN_OPTIONS = frozenset(
    {
        "base_url",
        "model",
        "engine",
        "api_key",
        "api_key_env",
        "timeout_s",
        "max_retries",
        "concurrency",
        "name",
        "prefix",
        "reasoning_effort",
        "backoff_s",
        "max_backoff_s",
    }
)
# ChatML, the chat template of Qwen2.5 and SmolLM2: used to render raw prompts for
# /v1/completions, where the engine applies no template.
CHATML_END = "<|im_end|>"
CHATML_STOP: tuple[str, ...] = (CHATML_END, "<|endoftext|>")
THINK_RE = re.compile(r"^\s*(?:<think>)?(.*?)</think>\s*(.*)$", re.DOTALL)
RETRYABLE_STATUS = frozenset({408, 409, 429})


def render_chatml(messages: Sequence[Message]) -> str:
    """Messages in ChatML with the assistant turn opened, as the completions prompt."""
    parts = [f"<|im_start|>{m.role}\n{m.content}{CHATML_END}\n" for m in messages]
    return "".join(parts) + "<|im_start|>assistant\n"


def split_reasoning(content: str) -> tuple[str, str]:
    """(reasoning, answer) from text that may keep ``<think>...</think>`` inline.

    A closing tag without an opening one counts too: some templates open the block in the
    prompt, so only ``</think>`` reaches the content.
    """
    match = THINK_RE.match(content)
    if match is None:
        return "", content
    return match.group(1).strip(), match.group(2)


@dataclass(frozen=True, slots=True)
class _Reply:
    """One completion choice reduced to what ponder reads (token counts -1: a stream that
    reported no usage)."""

    text: str
    reasoning: str
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int | None
    finish_reason: FinishReason
    latency_s: float
    logprobs: tuple[float, ...] | None


def _finish(reason: object) -> FinishReason:
    return "length" if reason == "length" else "stop"


def _field(obj: object, name: str) -> Any:
    """An attribute, or an extra field the engine added (pydantic keeps those aside)."""
    value = getattr(obj, name, None)
    if value is None:
        extra = getattr(obj, "model_extra", None) or {}
        value = extra.get(name)
    return value


def _usage(response: object) -> tuple[int, int, int | None]:
    usage = getattr(response, "usage", None)
    if usage is None:
        raise BackendError("the engine's response has no usage (token counts)")
    details = getattr(usage, "completion_tokens_details", None)
    reasoning = getattr(details, "reasoning_tokens", None) if details is not None else None
    return int(usage.prompt_tokens), int(usage.completion_tokens), reasoning


def _chat_logprobs(choice: object) -> tuple[float, ...] | None:
    logprobs = getattr(choice, "logprobs", None)
    content = getattr(logprobs, "content", None) if logprobs is not None else None
    if not content:
        return None
    return tuple(float(item.logprob) for item in content)


def _completion_logprobs(choice: object) -> tuple[float, ...] | None:
    logprobs = getattr(choice, "logprobs", None)
    values = getattr(logprobs, "token_logprobs", None) if logprobs is not None else None
    if not values:
        return None
    return tuple(float(v) for v in values if v is not None)


class OpenAICompatBackend:
    """A Backend over an OpenAI-compatible HTTP server; see the module docstring."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        engine: str = "generic",
        api_key: str = "EMPTY",
        timeout_s: float = 600.0,
        max_retries: int = 4,
        concurrency: int = 8,
        name: str | None = None,
        prefix: PrefixMode | None = None,
        reasoning_effort: str | None = None,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        http_client: Any = None,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if openai is None:
            raise BackendError(
                "the OpenAI-compatible backend needs the openai client: "
                "pip install 'ponder[openai]'"
            )
        self._profile: EngineProfile = profile_for(engine)
        self.base_url = base_url.rstrip("/")
        self._model = model
        self._name = name or model
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.prefix: PrefixMode = prefix or self._profile.prefix
        self.reasoning_effort = reasoning_effort
        self._semaphore = asyncio.Semaphore(int(concurrency))
        self._sleep: Sleep = sleep or asyncio.sleep
        self._rng = rng or random.Random()
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=self.base_url,
            timeout=self.timeout_s,
            max_retries=0,
            http_client=http_client,
        )

    @property
    def model(self) -> str:
        return self._name

    @property
    def engine(self) -> str:
        return self._profile.engine

    def capabilities(self) -> Capabilities:
        return self._profile.capabilities(f"openai:{self.engine}", self.prefix)

    async def aclose(self) -> None:
        await self._client.close()

    # -- errors and retries -------------------------------------------------------------

    def _where(self) -> str:
        return f"{self.base_url} (model {self._model!r})"

    def _translate(self, exc: Exception) -> BackendError:
        """An openai exception as a BackendError naming the URL and model."""
        assert openai is not None
        if isinstance(exc, openai.APITimeoutError):
            return BackendError(
                f"{self._where()}: no answer within {self.timeout_s:g} s", retryable=True
            )
        if isinstance(exc, openai.APIConnectionError):
            return BackendError(f"cannot reach {self._where()}: {exc}", retryable=True)
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            retryable = status in RETRYABLE_STATUS or status >= 500
            detail = " ".join(str(getattr(exc, "message", "") or exc).split())  # one line
            if status == 401:
                hint = "unauthorized: check api_key / api_key_env"
            elif status == 404:
                hint = (
                    "not found: wrong base_url (missing /v1?) or a model the engine does not have"
                )
            else:
                hint = detail
            return BackendError(
                f"{self._where()}: HTTP {status}: {hint}", retryable=retryable, status=status
            )
        return BackendError(f"{self._where()}: {type(exc).__name__}: {exc}")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter, at least the server's Retry-After."""
        cap = min(self.max_backoff_s, self.backoff_s * (2**attempt))
        delay = self._rng.uniform(0, cap)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_backoff_s))
        return delay

    @staticmethod
    def _retry_after(exc: Exception) -> float | None:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
        if headers is None:
            return None
        value = headers.get("retry-after")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None

    async def _call(self, send: Callable[[], Awaitable[Any]]) -> tuple[Any, float]:
        """Run one HTTP call under the semaphore, retrying what is worth retrying."""
        assert openai is not None
        attempt = 0
        while True:
            async with self._semaphore:
                t0 = time.perf_counter()
                try:
                    response = await send()
                    return response, time.perf_counter() - t0
                except openai.OpenAIError as exc:
                    error = self._translate(exc)
                    retry_after = self._retry_after(exc)
            if not error.retryable or attempt >= self.max_retries:
                if error.retryable and self.max_retries:
                    raise BackendError(
                        f"{error} (gave up after {attempt + 1} attempts)",
                        retryable=True,
                        status=error.status,
                    ) from None
                raise error from None
            await self._sleep(self._delay(attempt, retry_after))
            attempt += 1

    def _first_choice(self, response: Any) -> Any:
        if not getattr(response, "choices", None):
            raise BackendError(f"{self._where()}: the response has no choices")
        return response.choices[0]

    # -- checks -------------------------------------------------------------------------

    async def check(self) -> None:
        """Fail fast, before any work: the server answers and serves this model."""
        response, _ = await self._call(lambda: self._client.models.list())
        served = [str(m.id) for m in getattr(response, "data", [])]
        if self._model not in served:
            shown = ", ".join(served[:10]) + (" ..." if len(served) > 10 else "")
            raise BackendError(
                f"{self.base_url} does not serve model {self._model!r}; it serves: "
                f"{shown or 'nothing'}"
            )

    # -- chat ---------------------------------------------------------------------------

    def chat_body(self, request: ChatRequest, sample: int = 0) -> dict[str, Any]:
        """The keyword arguments of one chat call (one sample): mode, budget, sampling."""
        profile = self._profile
        try:
            extra = profile.body_for(request.mode, request.thinking_budget)
        except ValueError as exc:
            raise BackendError(f"{self._where()}: {exc}") from None
        if request.mode == THINK and self.reasoning_effort is not None:
            extra["reasoning_effort"] = self.reasoning_effort
        kwargs: dict[str, Any] = {
            "model": self._model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            profile.max_tokens_field: request.max_tokens,
            "temperature": request.sampling.temperature,
            "top_p": request.sampling.top_p,
        }
        if request.sampling.seed is not None:
            kwargs["seed"] = request.sampling.seed + sample
        if request.logprobs:
            kwargs["logprobs"] = True
        if "reasoning_effort" in extra:  # a first-class field of the client
            kwargs["reasoning_effort"] = extra.pop("reasoning_effort")
        if extra:
            kwargs["extra_body"] = extra
        return kwargs

    async def _chat_once(self, kwargs: dict[str, Any]) -> _Reply:
        response, latency = await self._call(lambda: self._client.chat.completions.create(**kwargs))
        choice = self._first_choice(response)
        message = choice.message
        content = message.content or ""
        reasoning = _field(message, "reasoning_content") or _field(message, "reasoning") or ""
        if not reasoning and "</think>" in content:
            reasoning, content = split_reasoning(content)
        prompt_tokens, completion_tokens, reasoning_tokens = _usage(response)
        return _Reply(
            text=content,
            reasoning=str(reasoning),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            reasoning_tokens=reasoning_tokens,
            finish_reason=_finish(choice.finish_reason),
            latency_s=latency,
            logprobs=_chat_logprobs(choice),
        )

    async def chat(self, request: ChatRequest) -> list[Generation]:
        """One Generation per sample.

        n > 1 is sent as n requests of one sample each (seeds ``seed + i``): usage is then
        exact per sample on every engine, including those that ignore ``n``; engines with a
        prefix cache share the prompt's work anyway.
        """
        bodies = [self.chat_body(request, i) for i in range(request.n)]
        outcomes = await asyncio.gather(
            *(self._chat_once(body) for body in bodies), return_exceptions=True
        )
        for outcome in outcomes:  # every sample has finished: nothing is left running
            if isinstance(outcome, BaseException):
                raise outcome
        replies = [o for o in outcomes if isinstance(o, _Reply)]
        return [
            Generation(
                text=r.text,
                reasoning=r.reasoning,
                prompt_tokens=r.prompt_tokens,
                completion_tokens=r.completion_tokens,
                reasoning_tokens=r.reasoning_tokens,
                finish_reason=r.finish_reason,
                latency_s=r.latency_s,
                token_logprobs=r.logprobs if request.logprobs else None,
            )
            for r in replies
        ]

    # -- chains -------------------------------------------------------------------------

    async def open_chain(
        self, messages: tuple[Message, ...], sampling: Sampling, *, entropy: bool = False
    ) -> HTTPChain:
        """A Chain by prefix continuation; ``entropy`` is not available over HTTP."""
        if self.prefix == "none":
            raise BackendError(
                f"engine {self.engine!r} cannot continue a prefix over HTTP; "
                "use an engine with prefix continuation (vllm, sglang, llamacpp) "
                "or the in-process llama.cpp backend"
            )
        if not messages:
            raise BackendError("a chain needs at least one message")
        return HTTPChain(self, messages, sampling)

    async def _continue(
        self,
        messages: tuple[Message, ...],
        partial: str,
        *,
        max_tokens: int,
        sampling: Sampling,
        seed: int | None,
        stop: tuple[str, ...],
        logprobs: bool,
        on_text: TextSink | None = None,
    ) -> _Reply:
        """Generate after ``partial`` (the assistant's text so far); with ``on_text`` the
        reply is streamed and each piece of text is handed to it as it arrives."""
        common: dict[str, Any] = {
            "model": self._model,
            "max_tokens": max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
        if seed is not None:
            common["seed"] = seed
        if self.prefix == "completions":
            stops = list(dict.fromkeys((*stop, *CHATML_STOP)))[:4]
            kwargs = {
                **common,
                "prompt": render_chatml(messages) + partial,
                "stop": stops,
            }
            if logprobs:
                kwargs["logprobs"] = 1
            if on_text is not None:
                return await self._streamed(self._client.completions.create, kwargs, on_text)
            response, latency = await self._call(lambda: self._client.completions.create(**kwargs))
            choice = self._first_choice(response)
            text = choice.text or ""
            lps = _completion_logprobs(choice) if logprobs else None
        else:
            chat = [{"role": m.role, "content": m.content} for m in messages]
            chat.append({"role": "assistant", "content": partial})
            kwargs = {
                **common,
                "messages": chat,
                "extra_body": {"continue_final_message": True, "add_generation_prompt": False},
            }
            if stop:
                kwargs["stop"] = list(stop)
            if logprobs:
                kwargs["logprobs"] = True
            if on_text is not None:
                return await self._streamed(self._client.chat.completions.create, kwargs, on_text)
            response, latency = await self._call(
                lambda: self._client.chat.completions.create(**kwargs)
            )
            choice = self._first_choice(response)
            text = choice.message.content or ""
            lps = _chat_logprobs(choice) if logprobs else None
        prompt_tokens, completion_tokens, _ = _usage(response)
        return _Reply(
            text=text,
            reasoning="",
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            reasoning_tokens=None,
            finish_reason=_finish(choice.finish_reason),
            latency_s=latency,
            logprobs=lps,
        )

    async def _streamed(
        self, create: Callable[..., Awaitable[Any]], kwargs: dict[str, Any], on_text: TextSink
    ) -> _Reply:
        """One streamed continuation, consumed under the semaphore. Retried like any call
        until its first piece of text went out; after that a failure is final. Token counts
        are the engine's usage when it streams one, else None (the chain measures them)."""
        assert openai is not None
        body = {**kwargs, "stream": True, "stream_options": {"include_usage": True}}
        attempt = 0
        while True:
            sent = False
            async with self._semaphore:
                t0 = time.perf_counter()
                try:
                    stream = await create(**body)
                    parts: list[str] = []
                    finish: object = None
                    usage: Any = None
                    async for chunk in stream:
                        usage = getattr(chunk, "usage", None) or usage
                        for choice in getattr(chunk, "choices", None) or []:
                            delta = getattr(choice, "delta", None)
                            piece = getattr(delta, "content", None) if delta is not None else None
                            if piece is None:
                                piece = getattr(choice, "text", None)
                            if piece:
                                parts.append(piece)
                                sent = True
                                await on_text(piece)
                            finish = getattr(choice, "finish_reason", None) or finish
                    return _Reply(
                        text="".join(parts),
                        reasoning="",
                        prompt_tokens=int(usage.prompt_tokens) if usage is not None else -1,
                        completion_tokens=int(usage.completion_tokens) if usage else -1,
                        reasoning_tokens=None,
                        finish_reason=_finish(finish),
                        latency_s=time.perf_counter() - t0,
                        logprobs=None,
                    )
                except openai.OpenAIError as exc:
                    error = self._translate(exc)
                    retry_after = self._retry_after(exc)
            if sent or not error.retryable or attempt >= self.max_retries:
                raise error from None
            await self._sleep(self._delay(attempt, retry_after))
            attempt += 1


class HTTPChain:
    """A generation grown by prefix continuation; forks are requests that are not kept.

    Token counts come from the engine's usage. The engine re-tokenizes the text at each
    request, so a count measured from prompt sizes (an appended cue) can differ by a token
    at the seam from what the model would have generated.
    """

    def __init__(
        self, backend: OpenAICompatBackend, messages: tuple[Message, ...], sampling: Sampling
    ) -> None:
        self._backend = backend
        self._messages = messages
        self._sampling = sampling
        self._text = ""
        self._tokens = 0
        self._finished = False
        self._prompt_tokens: int | None = None
        # prompt + chain as the engine counts it, known after any request
        self._context_tokens: int | None = None
        self._steps = 0

    @property
    def text(self) -> str:
        return self._text

    @property
    def tokens(self) -> int:
        return self._tokens

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def prompt_tokens(self) -> int:
        return self._prompt_tokens or 0

    def _seed(self) -> int | None:
        seed = self._sampling.seed
        return None if seed is None else seed + self._steps

    async def extend(self, max_tokens: int, on_text: TextSink | None = None) -> Segment:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if self._finished:
            return Segment(text="", tokens=0, finished=True)
        reply = await self._backend._continue(
            self._messages,
            self._text,
            max_tokens=max_tokens,
            sampling=self._sampling,
            seed=self._seed(),
            stop=(),
            logprobs=False,
            on_text=on_text,
        )
        if reply.completion_tokens < 0:  # streamed without usage: measure the new text
            before = await self._context()
            after = await self._measure(self._text + reply.text)
            prompt = self._prompt_tokens if self._prompt_tokens is not None else before
            reply = replace(reply, prompt_tokens=prompt, completion_tokens=max(0, after - before))
        self._steps += 1
        if self._prompt_tokens is None:
            self._prompt_tokens = reply.prompt_tokens
        self._text += reply.text
        self._tokens += reply.completion_tokens
        self._context_tokens = reply.prompt_tokens + reply.completion_tokens
        self._finished = reply.finish_reason == "stop"
        return Segment(
            text=reply.text,
            tokens=reply.completion_tokens,
            finished=self._finished,
            prompt_tokens=reply.prompt_tokens,
            latency_s=reply.latency_s,
        )

    async def _measure(self, partial: str) -> int:
        """Prompt tokens of the chain prompt with ``partial`` as the assistant text."""
        reply = await self._backend._continue(
            self._messages,
            partial,
            max_tokens=1,
            sampling=Sampling(),
            seed=None,
            stop=(),
            logprobs=False,
        )
        if self._prompt_tokens is None and partial == "":
            self._prompt_tokens = reply.prompt_tokens
        return reply.prompt_tokens

    async def _context(self) -> int:
        if self._context_tokens is None:
            self._context_tokens = await self._measure(self._text)
            if self._prompt_tokens is None:
                self._prompt_tokens = self._context_tokens - self._tokens
        return self._context_tokens

    async def append(self, text: str) -> int:
        """Append text as if generated; its token count is measured from prompt sizes."""
        before = await self._context()
        after = await self._measure(self._text + text)
        added = max(0, after - before)
        self._text += text
        self._tokens += added
        self._context_tokens = after
        self._finished = False
        return added

    async def fork(self, cue: str, max_tokens: int, stop: tuple[str, ...] = ()) -> Segment:
        """Greedy continuation after ``cue`` on a copy; the chain is unchanged."""
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        before = await self._context()
        reply = await self._backend._continue(
            self._messages,
            self._text + cue,
            max_tokens=max_tokens,
            sampling=Sampling(temperature=0.0, top_p=1.0),
            seed=None,
            stop=stop,
            logprobs=True,
        )
        return Segment(
            text=reply.text,
            tokens=reply.completion_tokens,
            finished=reply.finish_reason == "stop",
            logprobs=reply.logprobs,
            prompt_tokens=max(0, reply.prompt_tokens - before),
            latency_s=reply.latency_s,
        )

    async def aclose(self) -> None:
        """Nothing to free: the chain lives in this object, the engine keeps no state."""


# -- options ------------------------------------------------------------------------------


def _number(options: Mapping[str, Any], key: str, default: float, *, minimum: float) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise InputError(f"must be a number, got {value!r}", field=key)
    if value < minimum:
        raise InputError(f"must be >= {minimum:g}, got {value!r}", field=key)
    return float(value)


def _integer(options: Mapping[str, Any], key: str, default: int, *, minimum: int) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"must be an integer, got {value!r}", field=key)
    if value < minimum:
        raise InputError(f"must be >= {minimum}, got {value!r}", field=key)
    return value


def _text(options: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = options.get(key)
    if value is None:
        if required:
            raise InputError("is required", field=key)
        return None
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"must be a non-empty string, got {value!r}", field=key)
    return value.strip()


def from_options(
    options: Mapping[str, Any],
    *,
    http_client: Any = None,
    sleep: Sleep | None = None,
    rng: random.Random | None = None,
) -> OpenAICompatBackend:
    """Build the backend from a mapping (a sweep spec's backend section).

    Keys: base_url, model (required); engine (one of ``ENGINES``, default generic); api_key
    or api_key_env (the name of an environment variable); timeout_s, max_retries,
    concurrency, backoff_s, max_backoff_s; name (the model name ponder records, default
    model); prefix (chat | completions | none, default per engine); reasoning_effort (sent
    in think mode, for engines that take a level).
    """
    unknown = sorted(set(options) - KNOWN_OPTIONS)
    if unknown:
        raise InputError(
            f"unknown option(s) {unknown}; expected some of {sorted(KNOWN_OPTIONS)}",
            field=unknown[0],
        )
    base_url = _text(options, "base_url", required=True)
    assert base_url is not None
    if not re.match(r"^https?://[^/\s]+", base_url):
        raise InputError(f"must be an http(s) URL, got {base_url!r}", field="base_url")
    model = _text(options, "model", required=True)
    assert model is not None
    engine = _text(options, "engine") or "generic"
    if engine not in ENGINES:
        raise InputError(
            f"unknown engine {engine!r}; expected one of {list(ENGINES)}", field="engine"
        )
    api_key = _text(options, "api_key")
    env = _text(options, "api_key_env")
    if api_key is not None and env is not None:
        raise InputError("give api_key or api_key_env, not both", field="api_key_env")
    if env is not None:
        api_key = os.environ.get(env)
        if not api_key:
            raise InputError(f"environment variable {env} is not set", field="api_key_env")
    prefix = _text(options, "prefix")
    if prefix is not None and prefix not in ("chat", "completions", "none"):
        raise InputError(f"must be chat, completions or none, got {prefix!r}", field="prefix")
    return OpenAICompatBackend(
        base_url=base_url,
        model=model,
        engine=engine,
        api_key=api_key or "EMPTY",
        timeout_s=_number(options, "timeout_s", 600.0, minimum=0.001),
        max_retries=_integer(options, "max_retries", 4, minimum=0),
        concurrency=_integer(options, "concurrency", 8, minimum=1),
        name=_text(options, "name"),
        prefix=cast(PrefixMode | None, prefix),
        reasoning_effort=_text(options, "reasoning_effort"),
        backoff_s=_number(options, "backoff_s", 0.5, minimum=0.0),
        max_backoff_s=_number(options, "max_backoff_s", 30.0, minimum=0.0),
        http_client=http_client,
        sleep=sleep,
        rng=rng,
    )
