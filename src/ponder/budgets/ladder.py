"""The probe ladder and two-phase budget forcing, written once over ``Chain``.

One chain grows to the largest rung. At each rung B_i it is forked: the end-of-thinking cue is
appended to a copy and the answer is generated greedily within the answer reserve, so a budget
never eats the answer. The chain then goes on from where it was, so k rungs cost about
max(B) + k x reserve tokens instead of sum(B) + k x reserve for k separate runs. When the chain
ends on its own before a rung, that rung (and every later one) gets the natural answer.

Two-phase budget forcing at one budget B is the ladder with the single rung B.

Budgets here are *thinking* budgets: tokens of reasoning before the cue. The answer reserve is
on top, as with vLLM's ``thinking_token_budget`` and SGLang's ``thinking_budget``.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ponder.backends.base import Chain

# Forces the final answer; the fork stops at the closing brace.
ANSWER_CUE = "\n\nFinal answer: \\boxed{"
ANSWER_STOP = ("}",)
# No-think: the assistant turn starts with the box, so the answer comes with no reasoning.
DIRECT_CUE = "\\boxed{"
WAIT_CUE = "\nWait,"
DEFAULT_RESERVE = 16
ENTROPY_WINDOW = 32


def check_rungs(rungs: Sequence[int], reserve: int) -> tuple[int, ...]:
    """Rungs as a strictly increasing tuple of positive ints; a ValueError says what is wrong."""
    out = tuple(int(r) for r in rungs)
    if not out:
        raise ValueError("a ladder needs at least one rung")
    if any(r < 1 for r in out):
        raise ValueError(f"ladder rungs must be >= 1 token, got {list(out)}")
    if any(b <= a for a, b in itertools.pairwise(out)):
        raise ValueError(f"ladder rungs must be strictly increasing, got {list(out)}")
    if reserve < 1:
        raise ValueError(f"the answer reserve must be >= 1 token, got {reserve}")
    return out


@dataclass(frozen=True, slots=True)
class Rung:
    """The answer the chain gives when stopped at thinking budget ``budget``.

    ``thinking_tokens`` is min(budget, the chain's natural length). ``answer_tokens`` is what
    the probe generated (0 for a natural answer: it is part of the chain). ``output_tokens`` is
    what a separate two-phase run at this budget would have cost; ``stop_cost_tokens`` is what
    stopping here costs on the ladder: the chain so far plus every probe taken up to here.
    """

    budget: int
    thinking_tokens: int
    natural: bool
    answer_text: str
    answer_tokens: int
    cue_tokens: int
    answer_prob: float | None
    entropy_tail: float | None
    stop_cost_tokens: int
    latency_s: float

    @property
    def output_tokens(self) -> int:
        return self.thinking_tokens + self.answer_tokens


@dataclass(frozen=True, slots=True)
class LadderResult:
    rungs: tuple[Rung, ...]
    chain_text: str
    chain_tokens: int
    finished: bool
    prompt_tokens: int
    probe_tokens: int
    entropies: tuple[float, ...] | None
    latency_s: float

    @property
    def generated_tokens(self) -> int:
        """Everything the ladder made the engine generate: the chain plus every probe."""
        return self.chain_tokens + self.probe_tokens


def _tail_mean(values: list[float], window: int) -> float | None:
    if not values:
        return None
    tail = values[-window:]
    return sum(tail) / len(tail)


async def run_ladder(
    chain: Chain,
    rungs: Sequence[int],
    *,
    reserve: int = DEFAULT_RESERVE,
    cue: str = ANSWER_CUE,
    stop: tuple[str, ...] = ANSWER_STOP,
    min_thinking: int | None = None,
    wait_cue: str = WAIT_CUE,
    entropy_window: int = ENTROPY_WINDOW,
    stop_when: Callable[[tuple[Rung, ...]], bool] | None = None,
) -> LadderResult:
    """Grow ``chain`` to the last rung, forking an answer at each; see the module docstring.

    ``min_thinking`` turns on the "Wait" extension: a chain that ends before that many tokens
    gets ``wait_cue`` appended and goes on (at most once per rung stretch).

    ``stop_when`` is asked after each rung with the rungs so far; when it says True the chain
    grows no further and the result holds only those rungs (early exit: a live runner stops
    paying for a chain whose answer has settled).
    """
    budgets = check_rungs(rungs, reserve)
    started = time.perf_counter()
    entropies: list[float] = []
    saw_entropy = False
    probe_tokens = 0
    out: list[Rung] = []
    for budget in budgets:
        t0 = time.perf_counter()
        while not chain.finished and chain.tokens < budget:
            segment = await chain.extend(budget - chain.tokens)
            if segment.entropies is not None:
                saw_entropy = True
                entropies.extend(segment.entropies)
            if (
                chain.finished
                and min_thinking is not None
                and chain.tokens < min(min_thinking, budget)
            ):
                await chain.append(wait_cue)
            if segment.tokens == 0 and not chain.finished:
                break  # the backend made no progress; do not spin
        tail = _tail_mean(entropies, entropy_window) if saw_entropy else None
        if chain.finished:
            out.append(
                Rung(
                    budget=budget,
                    thinking_tokens=chain.tokens,
                    natural=True,
                    answer_text=chain.text,
                    answer_tokens=0,
                    cue_tokens=0,
                    answer_prob=None,
                    entropy_tail=tail,
                    stop_cost_tokens=chain.tokens + probe_tokens,
                    latency_s=time.perf_counter() - t0,
                )
            )
            if stop_when is not None and stop_when(tuple(out)):
                break
            continue
        probe = await chain.fork(cue, reserve, stop)
        probe_tokens += probe.tokens
        prob = math.exp(sum(probe.logprobs)) if probe.logprobs else None
        out.append(
            Rung(
                budget=budget,
                thinking_tokens=chain.tokens,
                natural=False,
                answer_text=cue.lstrip() + probe.text + (stop[0] if stop else ""),
                answer_tokens=probe.tokens,
                cue_tokens=probe.prompt_tokens,
                answer_prob=prob,
                entropy_tail=tail,
                stop_cost_tokens=chain.tokens + probe_tokens,
                latency_s=time.perf_counter() - t0,
            )
        )
        if stop_when is not None and stop_when(tuple(out)):
            break
    return LadderResult(
        rungs=tuple(out),
        chain_text=chain.text,
        chain_tokens=chain.tokens,
        finished=chain.finished,
        prompt_tokens=chain.prompt_tokens,
        probe_tokens=probe_tokens,
        entropies=tuple(entropies) if saw_entropy else None,
        latency_s=time.perf_counter() - started,
    )


async def force_budget(
    chain: Chain,
    budget: int,
    *,
    reserve: int = DEFAULT_RESERVE,
    cue: str = ANSWER_CUE,
    stop: tuple[str, ...] = ANSWER_STOP,
    min_thinking: int | None = None,
) -> Rung:
    """Two-phase budget forcing: think up to ``budget`` tokens, then force the answer."""
    result = await run_ladder(
        chain, [budget], reserve=reserve, cue=cue, stop=stop, min_thinking=min_thinking
    )
    return result.rungs[0]


async def direct_answer(
    chain: Chain,
    *,
    reserve: int = DEFAULT_RESERVE,
    cue: str = DIRECT_CUE,
    stop: tuple[str, ...] = ANSWER_STOP,
) -> Rung:
    """No-think by prompting: answer at once (thinking budget 0) within the reserve."""
    t0 = time.perf_counter()
    probe = await chain.fork(cue, reserve, stop)
    return Rung(
        budget=0,
        thinking_tokens=0,
        natural=False,
        answer_text=cue + probe.text + (stop[0] if stop else ""),
        answer_tokens=probe.tokens,
        cue_tokens=probe.prompt_tokens,
        answer_prob=math.exp(sum(probe.logprobs)) if probe.logprobs else None,
        entropy_tail=None,
        stop_cost_tokens=probe.tokens,
        latency_s=time.perf_counter() - t0,
    )


async def sampled_direct_answer(chain: Chain, *, reserve: int = DEFAULT_RESERVE) -> Rung:
    """No-think at temperature > 0: the answer is *sampled* after the direct-answer cue.

    ``direct_answer`` forks, and forks decode greedily, so every no-think "sample" would be
    the same answer; here the chain itself grows (sampled) within the reserve. Without stop
    strings in ``Chain.extend`` the engine may write on after the closing brace, up to the
    reserve: those tokens are counted, since they were generated.
    """
    t0 = time.perf_counter()
    cue_tokens = await chain.append(DIRECT_CUE)
    segment = await chain.extend(reserve)
    prob = math.exp(sum(segment.logprobs)) if segment.logprobs else None
    return Rung(
        budget=0,
        thinking_tokens=0,
        natural=False,
        answer_text=DIRECT_CUE + segment.text,
        answer_tokens=segment.tokens,
        cue_tokens=cue_tokens,
        answer_prob=prob,
        entropy_tail=None,
        stop_cost_tokens=segment.tokens,
        latency_s=time.perf_counter() - t0,
    )
