"""The runner on the fake backend: rows against hand-worked figures, errors, retries, resume."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from _sweep_toy import LADDER, OPTIONS, write_spec

from ponder.backends.fake import FakeBackend, FakeOptions
from ponder.store import Store
from ponder.sweep import build_plan, load_spec, run_plan, run_sweep

# Hand-worked from the fake's rules (see _sweep_toy): per problem, the chain's natural length
# and the thinking tokens it needs to be right.
NATURAL = {"a": 48, "b": 68, "c": 108}
NEED = {"a": 40, "b": 60, "c": 100}
GOLD = {"a": "70", "b": "35", "c": "15"}


def expected_think(pid: str) -> list[dict[str, Any]]:
    """The ladder's rows for one greedy chain, worked out by hand."""
    rows = []
    probes = 0
    for index, budget in enumerate(LADDER):
        natural = NATURAL[pid] <= budget
        thinking = NATURAL[pid] if natural else budget
        answer = 0 if natural else 2
        probes += answer
        rows.append(
            {
                "rung": index,
                "budget": budget,
                "natural": int(natural),
                "reasoning_tokens": thinking,
                "answer_tokens": answer,
                "output_tokens": thinking + answer,
                "stop_cost_tokens": thinking + probes,
                "correct": 1.0 if natural or budget >= NEED[pid] else 0.0,
            }
        )
    return rows


def rows_of(store: Store, sql_where: str = "1") -> list[dict[str, Any]]:
    conn = sqlite3.connect(store.path)
    conn.row_factory = sqlite3.Row
    out = [dict(r) for r in conn.execute(f"SELECT * FROM outcomes WHERE {sql_where}")]
    conn.close()
    return out


def test_ladder_rows_match_hand_worked_figures(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path))
    with Store(tmp_path / "s.sqlite") as store:
        summary = run_sweep(spec, store, backoff_s=0)
        assert (summary.done, summary.errors, summary.skipped) == (6, 0, 0)  # 3 problems x 2 modes
        for pid in "abc":
            got = sorted(
                rows_of(store, f"problem_id = '{pid}' AND mode = 'think-greedy'"),
                key=lambda r: r["rung"],
            )
            keys = list(expected_think(pid)[0])
            assert [{k: r[k] for k in keys} for r in got] == expected_think(pid)
            assert {r["budget_kind"] for r in store.outcomes_frame().to_dict("records")} == {
                "forced",
                "none",
            }
            assert len({r["chain_id"] for r in got}) == 1
            assert all(r["truncated"] == 0 and r["sample_idx"] == 0 for r in got)
            for r in got:
                if r["natural"]:
                    assert r["answer_prob"] is None
                    assert r["extracted_answer"] == GOLD[pid]
                else:
                    # The fake's forced answer probability: 0.9 when right, 0.3 when wrong.
                    assert r["answer_prob"] == pytest.approx(0.9 if r["correct"] else 0.3)
                    assert r["response_text"].startswith("Final answer: \\boxed{")
        # No-think: right iff the need (40 / 60 / 100) is within the direct skill (40).
        direct = {r["problem_id"]: r for r in rows_of(store, "mode = 'no-think-greedy'")}
        assert {p: direct[p]["correct"] for p in "abc"} == {"a": 1.0, "b": 0.0, "c": 0.0}
        assert all(r["budget"] is None and r["reasoning_tokens"] == 0 for r in direct.values())
        assert all(r["answer_tokens"] == 2 == r["output_tokens"] for r in direct.values())
        # The chain table holds the whole chain, ending on its own for every problem here.
        chains = store.query("SELECT problem_id, tokens, finished, length(entropies) FROM chains")
        assert sorted(chains) == [(p, NATURAL[p], 1, 2 * NATURAL[p]) for p in "abc"]


def test_entropy_tail_is_mean_of_last_32_thinking_tokens(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path))
    with Store(tmp_path / "s.sqlite") as store:
        run_sweep(spec, store, backoff_s=0)
        got = {
            r["budget"]: r["entropy_tail"]
            for r in rows_of(store, "problem_id = 'c' AND mode = 'think-greedy'")
        }

    # The fake's entropy at token t: 0.1 + 2 max(0, 1 - t / threshold), threshold = 100 here.
    def entropy(t: int) -> float:
        return 0.1 + 2 * max(0.0, 1 - t / 100)

    for budget, length in ((8, 8), (32, 32), (64, 64), (128, 108)):
        tail = [entropy(t) for t in range(max(1, length - 31), length + 1)]
        assert got[budget] == pytest.approx(sum(tail) / len(tail))


def test_accuracy_rises_with_budget_over_samples(tmp_path: Path) -> None:
    spec = load_spec(
        write_spec(
            tmp_path,
            sampling=[{"temperature": 0.8, "samples": 6}],
            modes=["think"],
            budgets={"ladder": [16, 32, 64, 128, 256]},
            models=[{"name": "f", "backend": "fake", "options": {}}],  # default: 40 per number
        )
    )
    with Store(tmp_path / "s.sqlite") as store:
        summary = run_sweep(spec, store, backoff_s=0)
    accuracy = [row["accuracy"] for row in summary.accuracy]
    assert [row["budget"] for row in summary.accuracy] == [16, 32, 64, 128, 256]
    # Thresholds are spread over [0.3, 1] x need; the longest chain (need 200) ends by 256.
    assert accuracy == sorted(accuracy) and accuracy[0] < accuracy[2] < accuracy[-1] == 1.0


def test_errors_are_recorded_never_outcomes_and_retried_next_run(tmp_path: Path) -> None:
    failing = {**OPTIONS, "fail_always": ["Add 10, 20"]}  # problem b fails, not retryable
    path = write_spec(tmp_path, models=[{"name": "fake-m", "backend": "fake", "options": failing}])
    store_path = tmp_path / "s.sqlite"
    with Store(store_path) as store:
        summary = run_sweep(load_spec(path), store, backoff_s=0)
        assert (summary.done, summary.errors) == (4, 2)
        assert rows_of(store, "problem_id = 'b'") == []
        errors = store.query("SELECT status, attempts, error FROM work_items WHERE status='error'")
        assert len(errors) == 2
        assert all(a == 1 and "fake failure" in e for _, a, e in errors)
    # Left alone on request ...
    with Store(store_path) as store:
        again = run_sweep(load_spec(path), store, retry_errors=False, backoff_s=0)
        assert (again.done, again.skipped, again.skipped_errors) == (0, 4, 2)
    # ... and retried by default once the upstream works.
    write_spec(tmp_path)
    with Store(store_path) as store:
        fixed = run_sweep(load_spec(path), store, backoff_s=0)
        assert (fixed.done, fixed.skipped, fixed.errors) == (2, 4, 0)
        assert len(rows_of(store, "problem_id = 'b'")) == len(LADDER) + 1
        assert store.query("SELECT DISTINCT status FROM work_items") == [("done",)]
        # Attempts add up over runs: the 2 items of b failed once, then succeeded.
        attempts = store.query("SELECT attempts, COUNT(*) FROM work_items GROUP BY attempts")
        assert sorted(attempts) == [(1, 4), (2, 2)]


@pytest.mark.parametrize(
    ("fail_times", "retryable", "done", "attempts"),
    [
        (2, True, 6, 3),  # two retryable failures, then success on the 3rd attempt (retries=2)
        (3, True, 0, 3),  # still failing after the retries: an error after 3 attempts
        (1, False, 0, 1),  # not worth retrying: an error at once
    ],
)
def test_retries(
    tmp_path: Path, fail_times: int, retryable: bool, done: int, attempts: int
) -> None:
    options = {**OPTIONS, "fail_times": fail_times, "fail_retryable": retryable}
    path = write_spec(tmp_path, models=[{"name": "m", "backend": "fake", "options": options}])
    with Store(tmp_path / "s.sqlite") as store:
        summary = run_sweep(load_spec(path), store, backoff_s=0)
        assert (summary.done, summary.errors) == (done, 6 - done)
        assert {a for (a,) in store.query("SELECT attempts FROM work_items")} == {attempts}
        assert len(rows_of(store)) == done // 2 * (len(LADDER) + 1)


def test_resume_skips_done_items_and_adds_nothing(tmp_path: Path) -> None:
    path = write_spec(tmp_path)
    with Store(tmp_path / "s.sqlite") as store:
        first = run_sweep(load_spec(path), store, backoff_s=0)
        before = rows_of(store)
        second = run_sweep(load_spec(path), store, backoff_s=0)
        assert (second.done, second.skipped) == (0, first.done)
        assert rows_of(store) == before


def test_forced_budgets_are_one_item_each(tmp_path: Path) -> None:
    path = write_spec(tmp_path, budgets={"forced": [32, 64]}, modes=["think"])
    plan = build_plan(load_spec(path))
    assert len(plan.items) == 3 * 2
    with Store(tmp_path / "s.sqlite") as store:
        asyncio.run(run_plan(plan, store, backoff_s=0))
        got = {(r["problem_id"], r["budget"]): r for r in rows_of(store)}
    # Each forced budget is its own chain (rung 0), with the same figures as the ladder's rung.
    for pid in "abc":
        for row in expected_think(pid):
            if row["budget"] in (32, 64):
                r = got[(pid, row["budget"])]
                assert r["rung"] == 0 and r["correct"] == row["correct"]
                assert r["output_tokens"] == row["output_tokens"]
                assert r["stop_cost_tokens"] == row["output_tokens"]
    assert len({r["chain_id"] for r in got.values()}) == 6


def test_item_keys_are_stable_and_seeds_reproducible(tmp_path: Path) -> None:
    path = write_spec(tmp_path, sampling=[{"temperature": 0.7, "samples": 3}])
    one, two = build_plan(load_spec(path)), build_plan(load_spec(path))
    assert [i.key for i in one.items] == [i.key for i in two.items]
    assert len({i.key for i in one.items}) == len(one.items)
    assert len({(i.problem.problem_id, i.seed) for i in one.items}) == 9  # 3 problems x 3 samples
    # Adding a problem keeps every existing item's key and seed.
    from _sweep_toy import PROBLEMS, write_problems

    write_problems(tmp_path, [*PROBLEMS, ("d", "Add 5 and 6.", "11")])
    three = build_plan(load_spec(path))
    assert {(i.key, i.seed) for i in one.items} < {(i.key, i.seed) for i in three.items}


def test_model_file_missing_and_unreachable_fail_before_any_work(tmp_path: Path) -> None:
    from ponder.errors import InputError

    for options, message in (
        ({"model_file": str(tmp_path / "nope.gguf")}, "model file not found"),
        ({"unreachable": True}, "upstream not usable"),
    ):
        path = write_spec(tmp_path, models=[{"name": "m", "backend": "fake", "options": options}])
        with Store(tmp_path / "s.sqlite") as store, pytest.raises(InputError, match=message):
            run_sweep(load_spec(path), store, backoff_s=0)
        with Store(tmp_path / "s.sqlite") as store:
            assert store.query("SELECT COUNT(*) FROM work_items") == [(0,)]
            assert store.counts()["outcomes"] == 0


class _Counting(FakeBackend):
    """The fake, counting the chains open at once (one chain per item here)."""

    def __init__(
        self,
        options: FakeOptions,
        live: dict[str, int],
        peak: dict[str, int],
        max_concurrency: int | None,
    ) -> None:
        super().__init__(options)
        self.live, self.peak = live, peak
        if max_concurrency is not None:
            self.max_concurrency = max_concurrency

    async def open_chain(self, messages, sampling, *, entropy=False):  # type: ignore[no-untyped-def]
        chain = await super().open_chain(messages, sampling, entropy=entropy)
        name = self.options.model
        self.live[name] += 1
        self.live["all"] += 1
        for key in (name, "all"):
            self.peak[key] = max(self.peak[key], self.live[key])
        close = chain.aclose

        async def aclose() -> None:
            self.live[name] -= 1
            self.live["all"] -= 1
            await close()

        chain.aclose = aclose  # type: ignore[method-assign]
        return chain


@pytest.mark.parametrize("max_concurrency", [1, None])
def test_items_share_engines_by_their_slots(tmp_path: Path, max_concurrency: int | None) -> None:
    models = [
        {"name": "x", "backend": "fake", "options": {}},
        {"name": "y", "backend": "fake", "options": {}},
    ]
    path = write_spec(
        tmp_path,
        models=models,
        concurrency=3,
        modes=["think"],
        sampling=[{"temperature": 0.5, "samples": 4}],
    )
    plan = build_plan(load_spec(path))
    live = {"x": 0, "y": 0, "all": 0}
    peak = dict(live)
    engines = {
        name: _Counting(
            FakeOptions(model=name, delay_per_token=0.0005), live, peak, max_concurrency
        )
        for name in ("x", "y")
    }
    with Store(tmp_path / "s.sqlite") as store:
        summary = asyncio.run(run_plan(plan, store, backends=engines, backoff_s=0))
    assert summary.done == len(plan.items) == 2 * 3 * 4
    if max_concurrency == 1:  # one item per engine, both engines busy at once
        assert (peak["x"], peak["y"], peak["all"]) == (1, 1, 2)
    else:  # the sweep's concurrency (3) is the only bound
        assert peak["all"] == 3 and max(peak["x"], peak["y"]) >= 2


def test_a_second_run_of_the_same_sweep_is_refused(tmp_path: Path) -> None:
    from ponder.errors import StoreError
    from ponder.sweep.runner import sweep_lock

    path = write_spec(tmp_path)
    with Store(tmp_path / "s.sqlite") as store, sweep_lock(store, "toy"):
        with (
            Store(tmp_path / "s.sqlite") as other,
            pytest.raises(StoreError, match="another `ponder sweep run` of sweep 'toy'"),
        ):
            run_sweep(load_spec(path), other, backoff_s=0)
        assert store.counts()["outcomes"] == 0


def test_native_budgets_use_the_engines_own_parameter(tmp_path: Path) -> None:
    options = {**OPTIONS, "native_budget": True}
    path = write_spec(
        tmp_path,
        models=[{"name": "n", "backend": "fake", "options": options}],
        budgets={"native": [32, 64]},
        modes=["think"],
    )
    with Store(tmp_path / "s.sqlite") as store:
        summary = run_sweep(load_spec(path), store, backoff_s=0)
        assert (summary.done, summary.errors) == (6, 0)
        got = {
            (r["problem_id"], r["budget"]): (
                r["reasoning_tokens"],
                r["answer_tokens"],
                r["natural"],
                r["correct"],
                r["stop_cost_tokens"],
            )
            for r in rows_of(store)
        }
        assert set(store.outcomes_frame()["budget_kind"]) == {"forced"}
    # Hand-worked: a needs 40 and ends at 48 (47 thinking + the answer word); b needs 60 and
    # ends at 68; c needs 100. Forced answers are two characters (two tokens).
    assert got == {
        ("a", 32): (32, 2, 0, 0.0, 34),
        ("a", 64): (47, 1, 1, 1.0, 48),
        ("b", 32): (32, 2, 0, 0.0, 34),
        ("b", 64): (64, 2, 0, 1.0, 66),
        ("c", 32): (32, 2, 0, 0.0, 34),
        ("c", 64): (64, 2, 0, 0.0, 66),
    }


def test_native_budgets_on_a_backend_without_one_fail_up_front(tmp_path: Path) -> None:
    from ponder.errors import InputError

    path = write_spec(tmp_path, budgets={"native": [32]}, modes=["think"])
    with Store(tmp_path / "s.sqlite") as store:
        with pytest.raises(InputError, match="no native thinking budget"):
            run_sweep(load_spec(path), store, backoff_s=0)
        assert store.counts()["outcomes"] == 0


def test_estimate_for_known_local_models(tmp_path: Path) -> None:
    from ponder.sweep import estimate

    models = [
        {"name": "m-0.5b", "backend": "fake", "options": {}},
        {"name": "m-1.5b", "backend": "fake", "options": {}},
    ]
    plan = build_plan(load_spec(write_spec(tmp_path, models=models, concurrency=2)))
    est = estimate(plan)
    # Per model: 3 ladders of 128 + 5 probes x 8, and 3 no-think answers of 8 tokens.
    generated = 3 * (128 + 5 * 8) + 3 * 8
    # Prompts: len(text) // 4 + 40 per item, texts of 14, 17 and 21 characters, 2 modes.
    prompt = 2 * ((14 // 4 + 40) + (17 // 4 + 40) + (21 // 4 + 40))
    assert [(m.tokens, m.prompt_tokens) for m in est.per_model] == [(generated, prompt)] * 2
    small = generated / 22 + prompt / 95  # decode / prompt tokens per second at 2 threads
    large = generated / 10 + prompt / 55
    assert est.seconds == pytest.approx(small + large)
    assert est.wall_seconds == pytest.approx(large)  # side by side: the slower model's time
