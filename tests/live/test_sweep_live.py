"""A small sweep on the real engine (SmolLM2-135M, plumbing only): every row of the ladder
is consistent with the chain it came from, and a second run resumes with nothing to do."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml

from ponder.store import Store
from ponder.sweep import load_spec, run_sweep
from ponder.sweep.rows import blob_entropies

pytestmark = pytest.mark.live


def test_ladder_sweep_on_the_real_engine(smol_path: Path, tmp_path: Path) -> None:
    spec = {
        "name": "live-smoke",
        "problems": [{"generated": {"levels": [1], "per_level": 2, "seed": 0}}],
        "models": [
            {
                "name": "smollm2-135m",
                "backend": "llamacpp",
                "options": {"path": str(smol_path), "n_threads": 1, "n_ctx": 512},
            }
        ],
        "modes": ["think", "no-think"],
        "budgets": {"ladder": [8, 16]},
        "reserve": 6,
        "sampling": [{"temperature": 0}, {"temperature": 0.8, "samples": 1}],
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    with Store(tmp_path / "s.sqlite") as store:
        summary = run_sweep(load_spec(path), store, backoff_s=0)
        assert (summary.done, summary.errors) == (8, 0), summary.error_messages
        again = run_sweep(load_spec(path), store, backoff_s=0)
        assert (again.done, again.skipped) == (0, 8)
    conn = sqlite3.connect(tmp_path / "s.sqlite")
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("SELECT * FROM outcomes ORDER BY problem_id, rung")]
    chains = {r["chain_id"]: dict(r) for r in conn.execute("SELECT * FROM chains")}
    assert len(rows) == 2 * 2 * (2 + 1) and len(chains) == 4
    for pid in {r["problem_id"] for r in rows}:
        think = [r for r in rows if r["problem_id"] == pid and r["mode"] == "think-greedy"]
        assert [r["budget"] for r in think] == [8, 16]
        chain = chains[think[0]["chain_id"]]
        probes = 0
        for r in think:
            if r["natural"]:
                assert r["answer_tokens"] == 0 and r["reasoning_tokens"] <= r["budget"]
            else:
                assert r["reasoning_tokens"] == r["budget"]
                assert 1 <= r["answer_tokens"] <= 6
                assert 0 < r["answer_prob"] <= 1
            probes += r["answer_tokens"]
            assert r["stop_cost_tokens"] == r["reasoning_tokens"] + probes
            assert r["output_tokens"] == r["reasoning_tokens"] + r["answer_tokens"]
            assert r["entropy_tail"] > 0 and r["prompt_tokens"] > 10
        entropies = blob_entropies(chain["entropies"])
        assert entropies is not None and len(entropies) == chain["tokens"]
        assert (entropies >= 0).all()
        direct = [r for r in rows if r["problem_id"] == pid and r["mode"] == "no-think-greedy"]
        assert len(direct) == 1 and direct[0]["budget"] is None
        assert 1 <= direct[0]["answer_tokens"] <= 6
    # Sampled no-think: the answer is drawn after the direct-answer cue, within the reserve.
    sampled = [r for r in rows if r["mode"] == "no-think"]
    assert len(sampled) == 2
    for r in sampled:
        assert r["response_text"].startswith("\\boxed{") and r["budget"] is None
        assert 1 <= r["answer_tokens"] <= 6 and 0 < r["answer_prob"] <= 1
    conn.close()
