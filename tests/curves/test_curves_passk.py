"""pass@k and maj@k against brute-force enumeration over subsets."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from ponder.curves import maj_at_k_table, pass_at_k, pass_at_k_table
from ponder.curves.passk import k_grid


def brute_pass(n: int, c: int, k: int) -> float:
    subsets = list(combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


def brute_maj(answers: list[str | None], correct: set[str], k: int) -> float:
    scores = []
    for subset in combinations(range(len(answers)), k):
        votes: dict[str, int] = {}
        for i in subset:
            a = answers[i]
            if a is not None:
                votes[a] = votes.get(a, 0) + 1
        if not votes:
            scores.append(0.0)
            continue
        top = max(votes.values())
        tied = [a for a, v in votes.items() if v == top]
        scores.append(sum(a in correct for a in tied) / len(tied))
    return float(np.mean(scores))


def frame_from_problems(make_outcomes, problems: list[list[str | None]]) -> pd.DataFrame:
    """One cell; answer "A" is right, everything else wrong."""
    rows = [(f"p{i}", j, a) for i, answers in enumerate(problems) for j, a in enumerate(answers)]
    return make_outcomes(
        problem_id=[r[0] for r in rows],
        sample_idx=[r[1] for r in rows],
        extracted_answer=[r[2] for r in rows],
        correct=[1.0 if r[2] is not None and r[2].strip() == "A" else 0.0 for r in rows],
        answered=[r[2] is not None for r in rows],
    )


@given(st.integers(1, 12).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))))
def test_pass_at_k_matches_enumeration(nc: tuple[int, int]) -> None:
    n, c = nc
    ks = np.arange(1, n + 1)
    got = pass_at_k(n, c, ks)
    want = [brute_pass(n, c, int(k)) for k in ks]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert np.isnan(pass_at_k(n, c, n + 1))


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(["A", "B", "C", " A", None]), min_size=1, max_size=6),
        min_size=1,
        max_size=5,
    )
)
def test_tables_match_brute_force(make_outcomes, problems: list[list[str | None]]) -> None:
    frame = frame_from_problems(make_outcomes, problems)
    passk = pass_at_k_table(frame, n_boot=20)
    majk = maj_at_k_table(frame, n_boot=20)
    k_max = max(len(p) for p in problems)
    assert passk["k"].tolist() == list(range(1, k_max + 1))
    assert majk["k"].tolist() == list(range(1, k_max + 1))
    assert majk["exact"].all()
    for k in range(1, k_max + 1):
        eligible = [p for p in problems if len(p) >= k]
        normalized = [[a.strip() if a is not None else None for a in p] for p in eligible]
        want_pass = np.mean([brute_pass(len(p), sum(a == "A" for a in p), k) for p in normalized])
        want_maj = np.mean([brute_maj(p, {"A"}, k) for p in normalized])
        row_p = passk[passk["k"] == k].iloc[0]
        row_m = majk[majk["k"] == k].iloc[0]
        assert row_p["n_problems"] == len(eligible) == row_m["n_problems"]
        assert abs(row_p["value"] - want_pass) < 1e-12
        assert abs(row_m["value"] - want_maj) < 1e-12
        assert row_p["ci_low"] <= row_p["value"] <= row_p["ci_high"]
        assert row_m["ci_low"] <= row_m["value"] <= row_m["ci_high"]


def test_majority_tie_scores_the_correct_share(make_outcomes) -> None:
    frame = frame_from_problems(make_outcomes, [["A", "B"]])
    majk = maj_at_k_table(frame, n_boot=20).set_index("k")["value"]
    assert majk[1] == 0.5
    assert majk[2] == 0.5  # one vote each: tie between a right and a wrong answer


def test_unanswered_do_not_vote(make_outcomes) -> None:
    frame = frame_from_problems(make_outcomes, [[None, None, "A"], ["B", None, None]])
    majk = maj_at_k_table(frame, n_boot=20).set_index("k")["value"]
    # Problem 1: subsets containing "A" score 1, others (no votes) 0. Problem 2: always 0.
    assert majk[1] == (1 / 3 + 0) / 2
    assert majk[3] == (1 + 0) / 2


def test_normalizer_merges_answers(make_outcomes) -> None:
    frame = frame_from_problems(make_outcomes, [["x", "X ", "B"]])
    frame["correct"] = [1.0, 0.0, 0.0]  # "x" graded right; "X " ungraded variant
    lower = maj_at_k_table(frame, n_boot=20, normalize=lambda s: s.strip().lower())
    plain = maj_at_k_table(frame, n_boot=20, normalize=str.strip)
    assert lower.set_index("k")["value"][3] == 1.0  # x, x vs B: right by majority
    assert plain.set_index("k")["value"][3] == 1 / 3  # three-way tie, one right


def test_monte_carlo_beyond_the_enumeration_limit(make_outcomes) -> None:
    rng = np.random.default_rng(5)
    problems = [
        list(
            rng.choice(np.array(["A", "B", "C", None], dtype=object), 14, p=[0.35, 0.3, 0.2, 0.15])
        )
        for _ in range(3)
    ]
    frame = frame_from_problems(make_outcomes, problems)
    majk = maj_at_k_table(frame, n_boot=20).set_index("k")
    assert not majk.loc[7, "exact"]  # C(14, 7) = 3432 > 2000
    assert majk.loc[2, "exact"]
    want = np.mean([brute_maj(p, {"A"}, 7) for p in problems])
    assert abs(majk.loc[7, "value"] - want) < 0.03
    again = maj_at_k_table(frame, n_boot=20).set_index("k")
    assert majk.loc[7, "value"] == again.loc[7, "value"]  # seeded


def test_pass_at_k_per_cell_and_bootstrap(make_grid) -> None:
    frame = make_grid(n_problems=30, n_seeds=5, budgets=(1024.0, 2048.0), models=("a", "b"))
    table = pass_at_k_table(frame, n_boot=100)
    assert len(table) == 4 * 5
    one = table[table["k"] == 1].set_index(["model", "budget"])["value"]
    acc = frame.groupby(["model", "budget"])["correct"].mean()
    np.testing.assert_allclose(one.sort_index().to_numpy(), acc.sort_index().to_numpy())
    # pass@k is non-decreasing in k within a cell.
    for _, cell in table.groupby(["model", "budget"]):
        assert np.all(np.diff(cell["value"].to_numpy()) >= -1e-12)


def test_maj_at_1_equals_pass_at_1_despite_other_sources() -> None:
    """Answer correctness is decided within the cell: another source's grading never leaks in."""
    import pandas as pd

    from ponder.curves import maj_at_k_table, pass_at_k_table

    rows = []
    for model, correct in (("a", 0.0), ("b", 1.0)):  # same answer "5", graded differently
        rows.append(
            {
                "model": model,
                "dataset": "d",
                "mode": "m",
                "budget": float("nan"),
                "problem_id": "p",
                "sample_idx": 0,
                "correct": correct,
                "extracted_answer": "5",
                "n_runs": 1,
                "budget_kind": "none",
                "output_tokens": float("nan"),
            }
        )
    frame = pd.DataFrame(rows)
    maj = maj_at_k_table(frame, n_boot=50).set_index("model")["value"]
    passk = pass_at_k_table(frame, n_boot=50).set_index("model")["value"]
    assert maj["a"] == passk["a"] == 0.0
    assert maj["b"] == passk["b"] == 1.0


def test_deep_data_is_reported_on_the_k_grid(make_outcomes) -> None:
    """40 samples a problem (one with 30): every k up to 16, then 24, 32 and the most, 40;
    each value the same as the estimator's at that k, each k counting the problems that
    have that many samples."""
    assert k_grid(40).tolist() == [*range(1, 17), 24, 32, 40]
    assert k_grid(3).tolist() == [1, 2, 3]
    rng = np.random.default_rng(2)
    choices = np.array(["A", "B", "C", None], dtype=object)
    problems = [list(rng.choice(choices, n, p=[0.4, 0.3, 0.2, 0.1])) for n in (40, 40, 30)]
    frame = frame_from_problems(make_outcomes, problems)
    passk = pass_at_k_table(frame, n_boot=20).set_index("k")
    majk = maj_at_k_table(frame, n_boot=20).set_index("k")
    assert passk.index.tolist() == majk.index.tolist() == k_grid(40).tolist()
    assert passk.loc[24, "n_problems"] == 3 and passk.loc[32, "n_problems"] == 2
    for k in (1, 16, 24, 40):
        n = np.array([len(p) for p in problems])
        c = np.array([sum(a == "A" for a in p) for p in problems])
        keep = n >= k
        assert passk.loc[k, "value"] == pass_at_k(n[keep], c[keep], k).mean()
    assert majk.loc[1, "value"] == passk.loc[1, "value"]
    want = np.mean([brute_maj(p, {"A"}, 40) for p in problems[:2]])  # one subset: all
    assert majk.loc[40, "value"] == want and majk.loc[40, "exact"]
