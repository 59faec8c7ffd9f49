"""A matrix that keeps only the first samples of each cell (``OutcomeMatrix.head``, or
``matrix_from_parquet(max_slots=)`` straight from the segments) keeps every figure an
evaluation reports: one-sample scores and fits come from the sums over all samples, and no
candidate draws more samples of a cell than ``SEQUENTIAL_SLOTS``. Memory then grows with
problems x configurations, not with the samples of each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_columnar_matrix import (
    assert_same_matrix,
    assert_same_summary,
    awkward_frame,
    problems_of,
)

import ponder.columnar.matrix as columnar_matrix
from ponder.columnar import write_segments
from ponder.columnar.matrix import matrix_from_parquet
from ponder.decision import Config, Decision, Step
from ponder.evaluate.catalog import FAMILIES, SEQUENTIAL_SLOTS, candidates, vote_grid
from ponder.evaluate.metrics import summarize
from ponder.evaluate.protocol import cross_validate
from ponder.grading import normalize_answer
from ponder.outcomes.matrix import CellStats, OutcomeMatrix
from ponder.outcomes.replay import ReplayError, replay_decision

STAT_FIELDS = ("recorded", "correct", "hits", "cost", "answered", "unknown")


def assert_same_stats(got: CellStats, want: CellStats) -> None:
    for name in STAT_FIELDS:
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name


def test_cut_scan_equals_head_of_the_whole_matrix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = awkward_frame()  # alpha: 8 slots (a repeated run), lone answers, unknown answers
    half = len(frame) // 2
    write_segments(tmp_path, frame.iloc[:half], segment_id="a")
    write_segments(tmp_path, frame.iloc[half:], segment_id="b")
    problems = problems_of(frame)
    rows = frame[frame["dataset"] == "alpha"]
    whole = OutcomeMatrix.from_frame(rows, problems=problems, normalize=normalize_answer)
    assert whole.n_slots == 8
    # Blocks of 3 problems: the sums are taken over several blocks and a short last one.
    monkeypatch.setattr(columnar_matrix, "BLOCK_SLOTS", 3 * len(whole.configs) * 8)
    for keep in (1, 3, 7):
        want = whole.head(keep)
        got = matrix_from_parquet(tmp_path, "alpha", problems=problems, max_slots=keep)
        assert got.n_slots == keep and got.is_cut
        assert_same_matrix(got, want)
        assert_same_stats(got.stats, whole.stats)
        assert got.fingerprint() == want.fingerprint() != whole.fingerprint()
    for cut in (lambda: whole.head(0), lambda: matrix_from_parquet(tmp_path, "alpha", max_slots=0)):
        with pytest.raises(ValueError, match="at least 1"):
            cut()
    # As many slots as recorded, or more: the whole matrix, sums from its arrays.
    for keep in (8, 100):
        got = matrix_from_parquet(tmp_path, "alpha", problems=problems, max_slots=keep)
        assert not got.is_cut
        assert_same_matrix(got, whole)
        assert_same_stats(got.stats, whole.stats)


def deep_matrix(n_problems: int = 40, n_samples: int = 80, seed: int = 3) -> OutcomeMatrix:
    """Two models, think at two caps and no-think, `n_samples` samples a cell, answers for
    votes. Sample costs repeat every 16 slots, so the median sample cost of any whole number
    of periods (the price scale) is the same kept or not."""
    rng = np.random.default_rng(seed)
    configs = tuple(
        Config(model, mode, budget)
        for model in ("big", "small")
        for mode, budget in (("think", 256), ("think", 1024), ("no-think", None))
    )
    n_c = len(configs)
    shape = (n_problems, n_c, n_samples)
    skill = rng.uniform(0.1, 0.9, size=(n_problems, n_c, 1))
    correct = (rng.random(shape) < skill).astype(float)
    wrong = rng.integers(1, 4, size=shape)
    answer = np.where(correct == 1, 0, wrong).astype(np.int32)
    answer[rng.random(shape) < 0.05] = -1  # no answer
    correct[answer == -1] = 0.0
    base = rng.integers(50, 900, size=(n_problems, n_c, 1))
    tokens = (base + 7 * (np.arange(n_samples) % 16)[None, None, :]).astype(float)
    problems = pd.DataFrame(
        {
            "dataset": "deep",
            "problem_id": [f"p{i:03d}" for i in range(n_problems)],
            "level": rng.integers(1, 6, n_problems).astype(float),
            "subject": None,
            "text": [f"problem {i} about {'abc'[i % 3]}" for i in range(n_problems)],
        }
    )
    return OutcomeMatrix(problems, configs, correct, tokens.copy(), tokens, answer)


def test_head_keeps_every_evaluation_figure() -> None:
    whole = deep_matrix()
    cut = whole.head(SEQUENTIAL_SLOTS)
    assert cut.is_cut and cut.n_slots == SEQUENTIAL_SLOTS < whole.n_slots
    assert_same_stats(cut.stats, whole.stats)
    # RouteLLM's duels pair the strong and weak model's samples slot by slot, so on a cut
    # matrix they are the first SEQUENTIAL_SLOTS pairs (docs/scale.md): left out here.
    families = [f for f in FAMILIES if f != "routellm_threshold"]
    summaries = []
    for matrix in (whole, cut):
        cands = candidates(matrix, families)
        evaluation = cross_validate(matrix, cands, folds=4, seed=0)
        summaries.append(summarize(evaluation, n_boot=100, seed=0))
    assert_same_summary(summaries[1], summaries[0])
    families = set(summaries[0].families["family"])
    # One-sample fits, the vote sizes up to the slots kept, escalation and the published
    # adaptive-sampling rules all ran.
    assert {"router", "cascade", "adaptive_consistency", "adaptive", "sweet_spot"} <= families
    assert {"esc", "adaptive_consistency_beta"} <= families
    labels = set(summaries[0].points["label"])
    assert f"adaptive_consistency votes={SEQUENTIAL_SLOTS}" in labels


def test_a_decision_past_the_kept_slots_is_an_error() -> None:
    cut = deep_matrix(n_problems=4, n_samples=10).head(3)
    config = cut.configs[0]
    rows = np.arange(4)
    three = replay_decision(cut, rows, Decision((Step(config, samples=3),)))
    assert (three.samples == 3).all()
    with pytest.raises(ReplayError, match="keeps only the first 3"):
        replay_decision(cut, rows, Decision((Step(config, samples=4),)))
    # One sample is scored over all 10 recorded, not the 3 kept.
    one = replay_decision(cut, rows, Decision((Step(config),)))
    whole = deep_matrix(n_problems=4, n_samples=10)
    assert np.array_equal(one.correct, np.nanmean(whole.correct[:, 0], axis=1))


def test_vote_sizes_are_every_one_then_a_grid() -> None:
    assert vote_grid(2) == [2]
    assert vote_grid(9) == list(range(2, 10))
    assert vote_grid(40) == [*range(2, 17), 24, 32, 40]
    assert vote_grid(SEQUENTIAL_SLOTS) == [*range(2, 17), 24, 32, 48, 64]
