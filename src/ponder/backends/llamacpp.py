"""In-process llama.cpp (llama-cpp-python, the ``local`` extra) with token-level control.

ponder drives the decode loop itself instead of calling llama-cpp-python's ``generate``:

* It reads the last position's logits after each decode (``llama_get_logits_ith``), so every
  token's log probability and the entropy of its next-token distribution cost one softmax over
  the vocabulary (a few percent), not ``logits_all=True`` (about 6x slower).
* It samples with its own seeded NumPy generator that lives as long as the chain, so a chain's
  tokens do not depend on where the ladder stopped to probe it: the chain at rung B is exactly
  the chain a separate two-phase run at B with the same seed would have thought.
* The KV cache holds one token sequence at a time; each operation keeps the longest common
  prefix and decodes only the rest, so a probe costs its cue and answer tokens and the chain
  resumes without re-reading its prefix.

Entropies and log probabilities are those of the model's own distribution (temperature 1),
whatever temperature the chain samples at.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt

from ponder.backends.base import (
    NO_THINK,
    BackendError,
    Capabilities,
    ChatRequest,
    Generation,
    Message,
    Sampling,
    Segment,
    TextSink,
)

P = ParamSpec("P")
T = TypeVar("T")

# Nucleus sampling looks only at the most likely tokens: at the temperatures sweeps use, the
# mass beyond the top 256 is negligible, and sorting the whole vocabulary per token is not.
TOP_K_CAP = 256


def _softmax_stats(logits: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float64], float]:
    """Log probabilities (temperature 1) and the entropy in nats."""
    z = logits.astype(np.float64)
    z -= z.max()
    log_norm = np.log(np.exp(z).sum())
    logp = z - log_norm
    entropy = float(-(np.exp(logp) * logp).sum())
    return logp, entropy


def sample_token(
    logits: npt.NDArray[np.float32], sampling: Sampling, rng: np.random.Generator
) -> int:
    """Greedy at temperature 0; otherwise temperature + top-p over the top ``TOP_K_CAP``."""
    if sampling.greedy:
        return int(np.argmax(logits))
    k = min(TOP_K_CAP, logits.shape[0])
    top = np.argpartition(logits, -k)[-k:]
    top = top[np.argsort(logits[top])[::-1]]
    z = logits[top].astype(np.float64) / sampling.temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    if sampling.top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(p), sampling.top_p) + 1)
        p = p[:keep] / p[:keep].sum()
        top = top[:keep]
    return int(top[rng.choice(len(p), p=p)])


class _Engine:
    """One llama.cpp context and the token sequence its KV cache holds.

    Not thread-safe on its own: ``LlamaCppBackend`` serializes calls with a lock.
    """

    def __init__(self, path: Path, n_ctx: int, n_threads: int | None, n_batch: int) -> None:
        try:
            import llama_cpp
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise BackendError(
                "the in-process engine needs llama-cpp-python: run `make local` "
                "(builds it with portable CPU flags; see docs/models.md)"
            ) from exc
        self._lib = llama_cpp
        try:
            self.llama = llama_cpp.Llama(
                str(path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_batch=n_batch,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"cannot load model {path}: {exc}") from exc
        self.n_vocab = self.llama.n_vocab()
        self.n_ctx = n_ctx
        self._vocab = self.llama._model.vocab
        self.cached: list[int] = []  # the tokens the KV cache holds, in order
        self.logits: npt.NDArray[np.float32] | None = None  # after the last cached token
        template = self.llama.metadata.get("tokenizer.chat_template")
        self.template = template if isinstance(template, str) and template else None

    def is_end(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self._vocab, token))

    def tokenize(self, text: str, *, special: bool) -> list[int]:
        return list(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self.llama.detokenize(list(tokens)).decode("utf-8", errors="replace")

    def render(self, messages: Sequence[Message]) -> str:
        """The prompt text for ``messages`` with the model's own chat template."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if self.template is None:
            raise BackendError("the model file has no chat template (tokenizer.chat_template)")
        formatter = Jinja2ChatFormatter(
            template=self.template,
            eos_token=self.detokenize([self.llama.token_eos()]),
            bos_token=self.detokenize([self.llama.token_bos()]),
        )
        chat: list[Any] = [{"role": m.role, "content": m.content} for m in messages]
        rendered = formatter(messages=chat)
        return str(rendered.prompt)

    def ensure(
        self, tokens: Sequence[int], known: npt.NDArray[np.float32] | None = None
    ) -> npt.NDArray[np.float32]:
        """Make the KV cache hold exactly ``tokens``; the logits after the last one.

        ``known`` are the logits after ``tokens`` if the caller kept them (a chain resuming
        after a probe), which saves re-reading the last token.
        """
        if len(tokens) >= self.n_ctx:
            raise BackendError(
                f"the sequence needs {len(tokens)} tokens but the context holds {self.n_ctx}; "
                "raise n_ctx in the backend options"
            )
        common = 0
        for a, b in zip(self.cached, tokens, strict=False):
            if a != b:
                break
            common += 1
        if common == len(tokens) == len(self.cached) and self.logits is not None:
            return self.logits
        if common == len(tokens) and known is not None:
            self.llama._ctx.kv_cache_seq_rm(-1, common, -1)
            self.llama.n_tokens = common
            del self.cached[common:]
            self.logits = known
            return known
        if common == len(tokens):
            common -= 1  # re-read the last token to get its logits
        self.llama._ctx.kv_cache_seq_rm(-1, common, -1)
        self.llama.n_tokens = common
        del self.cached[common:]
        self.llama.eval(list(tokens[common:]))
        self.cached.extend(tokens[common:])
        return self._read_logits()

    def step(self, token: int) -> npt.NDArray[np.float32]:
        """Append one token to the cached sequence; the logits after it."""
        if len(self.cached) + 1 >= self.n_ctx:
            raise BackendError(
                f"the chain reached the context size ({self.n_ctx} tokens); raise n_ctx"
            )
        self.llama.eval([token])
        self.cached.append(token)
        return self._read_logits()

    def _read_logits(self) -> npt.NDArray[np.float32]:
        pointer = self._lib.llama_get_logits_ith(self.llama._ctx.ctx, -1)
        array = np.ctypeslib.as_array(
            ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,)
        )
        self.logits = array.copy()
        return self.logits


class LlamaCppChain:
    """A chain on the in-process engine; see ``ponder.backends.base.Chain``."""

    def __init__(
        self,
        backend: LlamaCppBackend,
        prompt_tokens: list[int],
        sampling: Sampling,
        entropy: bool,
    ) -> None:
        self._backend = backend
        self._prompt = prompt_tokens
        self._generated: list[int] = []
        self._sampling = sampling
        self._rng = np.random.default_rng(sampling.seed)
        self._entropy = entropy
        self._finished = False
        self._logits: npt.NDArray[np.float32] | None = None  # after the chain's last token

    @property
    def text(self) -> str:
        return self._backend._engine.detokenize(self._generated)

    @property
    def tokens(self) -> int:
        return len(self._generated)

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def prompt_tokens(self) -> int:
        return len(self._prompt)

    def _extend(self, max_tokens: int) -> Segment:
        engine = self._backend._engine
        t0 = time.perf_counter()
        logits = engine.ensure(self._prompt + self._generated, self._logits)
        new: list[int] = []
        logprobs: list[float] = []
        entropies: list[float] = []
        while len(new) < max_tokens:
            logp, ent = _softmax_stats(logits)
            token = sample_token(logits, self._sampling, self._rng)
            if engine.is_end(token):
                self._finished = True
                break
            new.append(token)
            logprobs.append(float(logp[token]))
            entropies.append(ent)
            self._generated.append(token)
            logits = engine.step(token)
        self._logits = logits
        return Segment(
            text=engine.detokenize(new),
            tokens=len(new),
            finished=self._finished,
            logprobs=tuple(logprobs),
            entropies=tuple(entropies) if self._entropy else None,
            latency_s=time.perf_counter() - t0,
        )

    def _append(self, text: str) -> int:
        tokens = self._backend._engine.tokenize(text, special=False)
        self._generated.extend(tokens)
        self._finished = False
        self._logits = None
        return len(tokens)

    def _fork(self, cue: str, max_tokens: int, stop: tuple[str, ...]) -> Segment:
        engine = self._backend._engine
        t0 = time.perf_counter()
        cue_tokens = engine.tokenize(cue, special=False)
        logits = engine.ensure(self._prompt + self._generated + cue_tokens)
        new: list[int] = []
        logprobs: list[float] = []
        text = ""
        finished = False
        while len(new) < max_tokens:
            logp, _ = _softmax_stats(logits)
            token = int(np.argmax(logits))
            if engine.is_end(token):
                finished = True
                break
            new.append(token)
            logprobs.append(float(logp[token]))
            text = engine.detokenize(new)
            cut = min((text.find(s) for s in stop if s in text), default=-1)
            if cut >= 0:
                text = text[:cut]
                finished = True
                break
            logits = engine.step(token)
        return Segment(
            text=text,
            tokens=len(new),
            finished=finished,
            logprobs=tuple(logprobs),
            prompt_tokens=len(cue_tokens),
            latency_s=time.perf_counter() - t0,
        )

    async def extend(self, max_tokens: int, on_text: TextSink | None = None) -> Segment:
        """In-process the segment is generated in a worker thread: `on_text` gets it whole."""
        segment: Segment = await self._backend._run(self._extend, max_tokens)
        if on_text is not None and segment.text:
            await on_text(segment.text)
        return segment

    async def append(self, text: str) -> int:
        return self._append(text)

    async def fork(self, cue: str, max_tokens: int, stop: tuple[str, ...] = ()) -> Segment:
        return await self._backend._run(self._fork, cue, max_tokens, stop)

    async def aclose(self) -> None:
        return None


class LlamaCppBackend:
    """A GGUF model run in this process; one operation at a time (it uses every core)."""

    def __init__(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_batch: int = 512,
    ) -> None:
        path = Path(path)
        if not path.is_file():
            raise BackendError(f"model file not found: {path} (ponder models pull NAME)")
        self._path = path
        self._name = name or path.stem
        self._engine = _Engine(path, n_ctx, n_threads, n_batch)
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return self._name

    def capabilities(self) -> Capabilities:
        return Capabilities(
            name="llamacpp",
            thinking_budget_param=None,
            thinking_switch=None,
            reasoning_split=False,
            multiple_samples=False,
            logprobs=True,
            entropy=True,
            prefix_continuation=True,
            kv_cache_reuse=True,
            notes="token-level control: budgets are forced by ponder; no native thinking mode",
        )

    async def _run(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking engine call in a thread, one at a time, so the event loop (and
        the progress bar) stays responsive."""

        def locked() -> T:
            with self._lock:
                return func(*args, **kwargs)

        return await asyncio.to_thread(locked)

    def prompt_tokens(self, messages: Sequence[Message]) -> list[int]:
        return self._engine.tokenize(self._engine.render(messages), special=True)

    async def open_chain(
        self, messages: tuple[Message, ...], sampling: Sampling, *, entropy: bool = False
    ) -> LlamaCppChain:
        prompt = await self._run(self.prompt_tokens, messages)
        return LlamaCppChain(self, prompt, sampling, entropy)

    async def chat(self, request: ChatRequest) -> list[Generation]:
        """Plain generation, one chain per sample; budgets here are only ``max_tokens``."""
        if request.thinking_budget is not None:
            raise BackendError(
                "llama.cpp in-process has no native thinking budget; use forced budgets"
            )
        out: list[Generation] = []
        for i in range(request.n):
            seed = None if request.sampling.seed is None else request.sampling.seed + i
            sampling = Sampling(request.sampling.temperature, request.sampling.top_p, seed)
            t0 = time.perf_counter()
            chain = await self.open_chain(request.messages, sampling)
            segment = await chain.extend(request.max_tokens)
            out.append(
                Generation(
                    text=segment.text,
                    reasoning="",
                    prompt_tokens=chain.prompt_tokens,
                    completion_tokens=segment.tokens,
                    reasoning_tokens=None if request.mode == NO_THINK else segment.tokens,
                    finish_reason="stop" if segment.finished else "length",
                    latency_s=time.perf_counter() - t0,
                    token_logprobs=segment.logprobs if request.logprobs else None,
                )
            )
        return out

    async def aclose(self) -> None:
        return None


def from_options(options: Mapping[str, Any]) -> LlamaCppBackend:
    """Options: ``path`` (a GGUF file) or ``model`` (a pulled model's name), ``name``,
    ``n_ctx``, ``n_threads``, ``n_batch``."""
    from ponder import paths

    known = {"path", "model", "name", "n_ctx", "n_threads", "n_batch"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise BackendError(f"unknown llamacpp option(s) {unknown}; expected {sorted(known)}")
    if "path" in options:
        path = Path(str(options["path"]))
    elif "model" in options:
        path = paths.models_dir() / f"{options['model']}.gguf"
    else:
        raise BackendError("llamacpp needs `path` (a GGUF file) or `model` (a pulled model)")
    name = options.get("name") or options.get("model") or None
    return LlamaCppBackend(
        path,
        name=None if name is None else str(name),
        n_ctx=int(options.get("n_ctx", 2048)),
        n_threads=None if options.get("n_threads") is None else int(options["n_threads"]),
        n_batch=int(options.get("n_batch", 512)),
    )
