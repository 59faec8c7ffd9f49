"""A deterministic fake engine, for unit tests only (never for measurements).

Its world is small and fully known, so tests can compute every expected value by hand:

* The true answer of a problem is the **sum of the integers in the user message** (write test
  problems accordingly; the instruction text of ``ponder.budgets.prompts`` has no digits).
* Each chain needs ``need`` thinking tokens to be right, ``need = tokens_per_number x (number of
  integers)`` unless ``difficulty`` names the problem (a substring of the message -> tokens).
* A chain's threshold is ``need x u`` with ``u`` in [``min_share``, 1] drawn from
  sha256(message, seed); greedy chains (temperature 0) ignore the seed. A forced answer after
  ``t`` thinking tokens is right iff ``t >= threshold``, otherwise it is the true answer plus a
  nonzero offset. So accuracy rises with the budget, and within one chain it never falls.
* The chain ends on its own after ``need + natural_extra`` tokens with ``\\boxed{answer}``
  (right iff the threshold is met, which it then always is).
* No-think (the direct-answer prompt) is right iff ``threshold <= direct_skill``; growing a
  direct-answer chain (sampled no-think) writes ``answer}`` and ends it.
* One token is one word of text; per-token entropy is ``0.1 + 2 x max(0, 1 - t / threshold)``
  (high while the chain is still unsure); the probability of a forced answer is
  ``correct_prob`` when right and ``wrong_prob`` when wrong, spread over its tokens.

Options (``from_options``): ``model``, ``tokens_per_number``, ``difficulty``, ``min_share``,
``natural_extra``, ``direct_skill``, ``delay_per_token`` (seconds, so kill tests have time
to kill), ``model_file`` (must exist, like a real engine's weights), failure injection
``fail_always`` (substrings: a non-retryable BackendError for those problems),
``fail_times`` + ``fail_retryable`` (the first N chains opened on each message fail), and
``unreachable`` (``check()`` fails, like a dead upstream), ``native_budget`` (``chat`` honours
``thinking_budget``: think up to it or the natural end, then answer, like an engine's own
budget parameter).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ponder.backends.base import (
    BackendError,
    Capabilities,
    Chain,
    ChatRequest,
    Generation,
    Message,
    Sampling,
    Segment,
    TextSink,
)
from ponder.budgets.prompts import NO_THINK_INSTRUCTION
from ponder.errors import InputError

_INTEGER = re.compile(r"-?\d+")


def _unit(*parts: object) -> float:
    """A number in [0, 1) from sha256 of the parts: deterministic across runs and machines."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2.0**64


@dataclass(frozen=True)
class FakeOptions:
    model: str = "fake"
    tokens_per_number: int = 40
    difficulty: Mapping[str, int] = field(default_factory=dict)
    min_share: float = 0.3
    natural_extra: int = 8
    direct_skill: int = 40
    correct_prob: float = 0.9
    wrong_prob: float = 0.3
    delay_per_token: float = 0.0
    fail_always: tuple[str, ...] = ()
    fail_times: int = 0
    fail_retryable: bool = True
    unreachable: bool = False
    native_budget: bool = False


def _user_text(messages: tuple[Message, ...]) -> str:
    return "\n".join(m.content for m in messages if m.role == "user")


def true_answer(text: str) -> int:
    """The fake's answer to a problem: the sum of the integers in its text."""
    return sum(int(x) for x in _INTEGER.findall(text))


class FakeChain:
    """A chain of the fake engine; see the module docstring for its rules."""

    def __init__(self, options: FakeOptions, messages: tuple[Message, ...], sampling: Sampling):
        self._o = options
        text = _user_text(messages)
        self._direct = NO_THINK_INSTRUCTION in text
        self._answer = true_answer(text)
        numbers = len(_INTEGER.findall(text))
        need = next(
            (int(v) for k, v in options.difficulty.items() if k in text),
            options.tokens_per_number * max(numbers, 1),
        )
        self.need = need
        seed = "greedy" if sampling.greedy else sampling.seed
        share = options.min_share + (1 - options.min_share) * _unit("share", text, seed)
        self.threshold = max(1, math.ceil(need * share))
        self._wrong = 1 + int(_unit("offset", text, seed) * 9)
        self._length = need + options.natural_extra
        self._prompt_tokens = len(text.split())
        self._words: list[str] = []
        self._tokens = 0
        self._finished = False

    @property
    def text(self) -> str:
        return " ".join(self._words)

    @property
    def tokens(self) -> int:
        return self._tokens

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def prompt_tokens(self) -> int:
        return self._prompt_tokens

    def _answer_at(self, thinking: int) -> tuple[int, bool]:
        right = thinking >= self.threshold and not self._direct
        if self._direct:
            right = self.threshold <= self._o.direct_skill
        return (self._answer if right else self._answer + self._wrong), right

    async def _sleep(self, tokens: int) -> None:
        if self._o.delay_per_token > 0 and tokens > 0:
            await asyncio.sleep(self._o.delay_per_token * tokens)

    async def extend(self, max_tokens: int, on_text: TextSink | None = None) -> Segment:
        segment = await self._extend(max_tokens)
        if on_text is not None and segment.text:  # word by word, as a streaming engine would
            words = segment.text.split(" ")
            for i, word in enumerate(words):
                await on_text(word if i == 0 else " " + word)
        return segment

    async def _extend(self, max_tokens: int) -> Segment:
        t0 = time.perf_counter()
        if self._finished or max_tokens < 1:
            return Segment(text="", tokens=0, finished=self._finished)
        if self._direct:
            return await self._direct_segment(max_tokens, t0)
        n = min(max_tokens, self._length - self._tokens)
        words: list[str] = []
        entropies: list[float] = []
        for _ in range(n):
            self._tokens += 1
            entropies.append(0.1 + 2.0 * max(0.0, 1.0 - self._tokens / self.threshold))
            words.append(f"w{self._tokens}")
        if self._tokens >= self._length:
            answer, _ = self._answer_at(self._tokens)
            words[-1] = f"\\boxed{{{answer}}}"
            self._finished = True
        self._words.extend(words)
        await self._sleep(n)
        return Segment(
            text=" ".join(words),
            tokens=n,
            finished=self._finished,
            entropies=tuple(entropies),
            latency_s=time.perf_counter() - t0,
        )

    async def _direct_segment(self, max_tokens: int, t0: float) -> Segment:
        answer, right = self._answer_at(self._tokens)
        full = f"{answer}}}"
        n = min(max_tokens, len(full))  # one token per character
        self._tokens += n
        self._words.append(full[:n])
        self._finished = n == len(full)
        prob = self._o.correct_prob if right else self._o.wrong_prob
        await self._sleep(n)
        return Segment(
            text=full[:n],
            tokens=n,
            finished=self._finished,
            logprobs=tuple([math.log(prob) / n] * n),
            latency_s=time.perf_counter() - t0,
        )

    def fork_answer(self) -> str:
        """The answer a fork would give now (for the native-budget path)."""
        return str(self._answer_at(self._tokens)[0])

    async def append(self, text: str) -> int:
        n = max(1, len(text.split()))
        self._words.extend(text.split() or [text])
        self._tokens += n
        if self._finished:
            self._finished = False
            self._length = self._tokens + self._o.natural_extra
        return n

    async def fork(self, cue: str, max_tokens: int, stop: tuple[str, ...] = ()) -> Segment:
        t0 = time.perf_counter()
        answer, right = self._answer_at(self._tokens)
        digits = str(answer)
        n = min(max_tokens, len(digits))  # one token per character
        out = digits[:n]
        if n == len(digits) and not stop:
            out += "}"
        prob = self._o.correct_prob if right else self._o.wrong_prob
        await self._sleep(n)
        return Segment(
            text=out,
            tokens=n,
            finished=True,
            logprobs=tuple([math.log(prob) / n] * n) if n else None,
            prompt_tokens=max(1, len(cue.split())),
            latency_s=time.perf_counter() - t0,
        )

    async def aclose(self) -> None:
        return None


class FakeBackend:
    """The fake engine (unit tests only); see the module docstring."""

    def __init__(self, options: FakeOptions | None = None) -> None:
        self.options = options or FakeOptions()
        self._opened: dict[str, int] = {}
        self.chains_opened = 0

    @property
    def model(self) -> str:
        return self.options.model

    def capabilities(self) -> Capabilities:
        return Capabilities(
            name="fake",
            logprobs=True,
            entropy=True,
            prefix_continuation=True,
            kv_cache_reuse=False,
            thinking_budget_param="thinking_budget" if self.options.native_budget else None,
            notes="deterministic test double; never a measurement",
        )

    async def check(self) -> None:
        """Fail like an unreachable upstream when asked to (``unreachable: true``)."""
        if self.options.unreachable:
            raise BackendError("fake upstream unreachable (unreachable: true)", retryable=False)

    async def open_chain(
        self, messages: tuple[Message, ...], sampling: Sampling, *, entropy: bool = False
    ) -> Chain:
        text = _user_text(messages)
        for needle in self.options.fail_always:
            if needle in text:
                raise BackendError(f"fake failure for {needle!r}", retryable=False)
        key = f"{text}\x1f{sampling.seed}\x1f{sampling.temperature}"
        count = self._opened.get(key, 0)
        self._opened[key] = count + 1
        if count < self.options.fail_times:
            raise BackendError(
                f"fake failure {count + 1} of {self.options.fail_times}",
                retryable=self.options.fail_retryable,
                status=503 if self.options.fail_retryable else 400,
            )
        self.chains_opened += 1
        return FakeChain(self.options, messages, sampling)

    async def chat(self, request: ChatRequest) -> list[Generation]:
        out: list[Generation] = []
        for i in range(request.n):
            sampling = request.sampling
            if request.n > 1 and sampling.seed is not None:
                sampling = Sampling(sampling.temperature, sampling.top_p, sampling.seed + i)
            chain = await self.open_chain(request.messages, sampling)
            t0 = time.perf_counter()
            if request.thinking_budget is not None:
                out.append(await self._native(chain, request.thinking_budget, t0))
                continue
            segment = await chain.extend(request.max_tokens)
            out.append(
                Generation(
                    text=segment.text,
                    reasoning="",
                    prompt_tokens=chain.prompt_tokens,
                    completion_tokens=segment.tokens,
                    reasoning_tokens=None,
                    finish_reason="stop" if segment.finished else "length",
                    latency_s=time.perf_counter() - t0,
                )
            )
        return out

    async def _native(self, chain: Chain, budget: int, t0: float) -> Generation:
        """The engine's own thinking budget: think up to ``budget`` (or the natural end),
        then answer ``\\boxed{N}`` (one token per character of N)."""
        if not self.options.native_budget:
            raise BackendError("the fake has no native thinking budget (native_budget: false)")
        assert isinstance(chain, FakeChain)
        segment = await chain.extend(budget)
        thinking = segment.tokens
        if chain.finished:  # the natural end already holds the answer
            return Generation(
                text=segment.text.rsplit(" ", 1)[-1],
                reasoning=segment.text,
                prompt_tokens=chain.prompt_tokens,
                completion_tokens=thinking,
                reasoning_tokens=thinking - 1,
                finish_reason="stop",
                latency_s=time.perf_counter() - t0,
            )
        answer = chain.fork_answer()
        return Generation(
            text=f"\\boxed{{{answer}}}",
            reasoning=segment.text,
            prompt_tokens=chain.prompt_tokens,
            completion_tokens=thinking + len(answer),
            reasoning_tokens=thinking,
            finish_reason="stop",
            latency_s=time.perf_counter() - t0,
        )

    async def aclose(self) -> None:
        return None


_INT_KEYS = ("tokens_per_number", "natural_extra", "direct_skill", "fail_times")
_FLOAT_KEYS = ("min_share", "correct_prob", "wrong_prob", "delay_per_token")


def from_options(options: Mapping[str, Any]) -> FakeBackend:
    """Build the fake from a spec's options; unknown keys or bad values are InputErrors."""
    known = set(FakeOptions.__dataclass_fields__) | {"model_file"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(f"unknown fake backend option(s) {unknown}; known: {sorted(known)}")
    kwargs: dict[str, Any] = {}
    for key, value in options.items():
        if key == "model_file":
            if not Path(str(value)).is_file():
                raise InputError(f"model file not found: {value}", field="model_file")
            continue
        if key in _INT_KEYS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"must be an integer >= 0, got {value!r}", field=key)
        elif key in _FLOAT_KEYS:
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise InputError(f"must be a number >= 0, got {value!r}", field=key)
            value = float(value)
        elif key == "difficulty":
            if not isinstance(value, Mapping):
                raise InputError("must map problem text to thinking tokens", field=key)
            value = {str(k): int(v) for k, v in value.items()}
        elif key == "fail_always":
            value = tuple(str(v) for v in value)
        elif key in ("fail_retryable", "unreachable", "native_budget"):
            value = bool(value)
        elif key == "model":
            value = str(value)
        kwargs[key] = value
    return FakeBackend(FakeOptions(**kwargs))
