"""The fake engine follows its documented rules (worked out by hand here)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ponder.backends import BackendError, ChatRequest, Message, Sampling, open_backend
from ponder.backends.fake import FakeBackend, FakeOptions, from_options
from ponder.budgets import force_budget, messages_for, run_ladder
from ponder.errors import InputError

THINK = messages_for("Add 12, 30 and 5.", "think")  # answer 47, 3 numbers


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_forced_answer_is_right_from_the_need_on() -> None:
    backend = FakeBackend(FakeOptions(tokens_per_number=10, min_share=1.0, natural_extra=5))

    async def go() -> list[tuple[str, bool, int]]:
        out = []
        for budget in (29, 30):
            chain = await backend.open_chain(THINK, Sampling())
            rung = await force_budget(chain, budget, reserve=8)
            out.append((rung.answer_text, rung.natural, rung.thinking_tokens))
        return out

    wrong, right = _run(go())
    assert right == ("Final answer: \\boxed{47}", False, 30)  # need = 10 x 3 = 30
    assert wrong[0] != right[0] and wrong[0].startswith("Final answer: \\boxed{")
    offset = int(wrong[0][len("Final answer: \\boxed{") : -1]) - 47
    assert 1 <= offset <= 9


def test_chain_ends_on_its_own_with_the_boxed_answer() -> None:
    backend = FakeBackend(FakeOptions(tokens_per_number=10, min_share=1.0, natural_extra=5))

    async def go():  # type: ignore[no-untyped-def]
        chain = await backend.open_chain(THINK, Sampling(), entropy=True)
        return await run_ladder(chain, [20, 100], reserve=8)

    result = _run(go())
    assert result.finished and result.chain_tokens == 35  # need 30 + natural_extra 5
    assert result.chain_text.endswith("\\boxed{47}")
    assert [r.natural for r in result.rungs] == [False, True]
    assert result.entropies is not None and len(result.entropies) == 35
    # entropy at token t: 0.1 + 2 max(0, 1 - t / 30)
    assert result.entropies[0] == pytest.approx(0.1 + 2 * (1 - 1 / 30))
    assert result.entropies[-1] == pytest.approx(0.1)


def test_greedy_ignores_the_seed_and_sampling_does_not() -> None:
    backend = FakeBackend()

    async def thresholds(temperature: float) -> set[int]:
        out = set()
        for seed in range(20):
            chain = await backend.open_chain(THINK, Sampling(temperature, 1.0, seed))
            out.add(chain.threshold)  # type: ignore[attr-defined]
        return out

    assert len(_run(thresholds(0.0))) == 1
    sampled = _run(thresholds(0.7))
    assert len(sampled) > 5 and all(36 <= t <= 120 for t in sampled)  # [0.3, 1] x need 120


def test_failure_injection_and_checks(tmp_path: Path) -> None:
    flaky = from_options({"fail_times": 2, "fail_retryable": True})

    async def open_three() -> list[str]:
        out = []
        for _ in range(3):
            try:
                await flaky.open_chain(THINK, Sampling())
                out.append("ok")
            except BackendError as exc:
                out.append(f"retryable={exc.retryable}")
        return out

    assert _run(open_three()) == ["retryable=True", "retryable=True", "ok"]
    dead = from_options({"fail_always": ["12, 30"]})
    with pytest.raises(BackendError, match="fake failure") as info:
        _run(dead.open_chain(THINK, Sampling()))
    assert not info.value.retryable
    with pytest.raises(BackendError, match="unreachable"):
        _run(from_options({"unreachable": True}).check())
    with pytest.raises(InputError, match="model file not found"):
        from_options({"model_file": str(tmp_path / "none.gguf")})
    with pytest.raises(InputError, match="unknown fake backend option"):
        open_backend("fake", {"colour": 1})
    with pytest.raises(InputError, match="integer"):
        from_options({"fail_times": -1})


def test_chat_generates_to_the_natural_end() -> None:
    backend = from_options({"tokens_per_number": 2, "natural_extra": 1, "min_share": 1.0})
    request = ChatRequest(messages=(Message("user", "Add 2 and 3."),), max_tokens=50, n=2)
    generations = _run(backend.chat(request))
    assert [g.completion_tokens for g in generations] == [5, 5]  # need 4 + 1
    assert all(g.text.endswith("\\boxed{5}") and g.finish_reason == "stop" for g in generations)
