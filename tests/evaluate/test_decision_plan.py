"""The sequential plan as JSON: every field survives a round trip, bad plans are refused, and
the one-request rules (exit, stop) agree with what replay computes for many requests."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ponder.decision import Config, Decision, DecisionBatch, ExitRule, Step, StopRule
from ponder.outcomes.replay import ReplayError, beta_confidence, exit_mask, stop_mask

THINK = Config("big", "think", 128)
QUICK = Config("small", "no-think", None)


def _round_trip(decision: Decision) -> Decision:
    return Decision.from_dict(json.loads(json.dumps(decision.to_dict())))


PLANS = {
    "exit window": Decision((Step(THINK, exit=ExitRule((16, 64, 128), window=3)),)),
    "exit per token": Decision((Step(THINK, exit=ExitRule((128,), min_token_prob=0.5)),)),
    "exit all conditions": Decision(
        (
            Step(
                THINK,
                exit=ExitRule(
                    (32, 128), window=2, min_prob=0.85, max_entropy=0.4, min_token_prob=0.97
                ),
                escalate="unsure",
            ),
            Step(Config("bigger", "think", 512)),
        ),
        reason="early exit, then the larger tier",
        extra={"fitted_on": "abc"},
    ),
    "probe then think": Decision(
        (
            Step(QUICK, min_prob=0.9, escalate="unsure"),
            Step(THINK, exit=ExitRule((16, 32, 64, 128), max_entropy=1.5), escalate="no_answer"),
            Step(THINK, samples=5, stop=StopRule(kind="beta", confidence=0.9)),
        )
    ),
    "stop rules": Decision(
        (
            Step(QUICK, samples=4, stop=StopRule(kind="window", window=2), escalate="disagree"),
            Step(THINK, samples=3, aggregate="first", stop=StopRule(votes=3, margin=2)),
        )
    ),
}


@pytest.mark.parametrize("name", sorted(PLANS))
def test_plans_survive_a_json_round_trip(name: str) -> None:
    decision = PLANS[name]
    again = _round_trip(decision)
    assert again == decision
    assert again.to_dict() == decision.to_dict()


def test_json_says_only_what_is_set() -> None:
    """Unset exit conditions and stop parameters of other kinds stay out of the plan."""
    data = PLANS["probe then think"].to_dict()
    first, second, third = data["steps"]
    assert first["min_prob"] == 0.9 and first["escalate"] == "unsure" and "exit" not in first
    assert second["exit"] == {"rungs": [16, 32, 64, 128], "max_entropy": 1.5}
    assert "min_prob" not in second
    assert third["stop"] == {"kind": "beta", "confidence": 0.9}
    assert PLANS["stop rules"].to_dict()["steps"][0]["stop"] == {"kind": "window", "window": 2}
    # Plans written before exit rules existed still load.
    old = {"steps": [{"config": QUICK.to_dict(), "samples": 3, "stop": {"votes": 2, "margin": 1}}]}
    step = Decision.from_dict(old).steps[0]
    assert step.exit is None and step.min_prob is None and step.stop == StopRule()


@settings(max_examples=100, deadline=None)
@given(
    rungs=st.lists(st.integers(1, 4096), min_size=1, max_size=8, unique=True).map(sorted),
    window=st.none() | st.integers(1, 5),
    min_prob=st.none() | st.floats(0, 1),
    max_entropy=st.none() | st.floats(0, 20),
    min_token_prob=st.none() | st.floats(0, 1),
    escalate=st.sampled_from(["never", "no_answer", "unsure", "always"]),
)
def test_any_exit_step_survives_a_round_trip(
    rungs: list[int],
    window: int | None,
    min_prob: float | None,
    max_entropy: float | None,
    min_token_prob: float | None,
    escalate: Any,
) -> None:
    if window is None and min_prob is None and max_entropy is None and min_token_prob is None:
        window = 1
    rule = ExitRule(
        tuple(rungs),
        window=window,
        min_prob=min_prob,
        max_entropy=max_entropy,
        min_token_prob=min_token_prob,
    )
    step = Step(Config("m", "think", rungs[-1]), exit=rule, escalate=escalate)
    decision = Decision((step, Step(QUICK)))
    assert _round_trip(decision) == decision
    # Equal plans are replayed once.
    batch = DecisionBatch.from_list([decision, _round_trip(decision), Decision((Step(QUICK),))])
    assert len(batch.decisions) == 2 and list(batch.index) == [0, 0, 1]


INVALID: dict[str, tuple[Callable[[], object], str]] = {
    "unsorted rungs": (lambda: ExitRule((32, 16), window=2), "strictly increasing"),
    "repeated rung": (lambda: ExitRule((16, 16, 32), window=2), "strictly increasing"),
    "zero rung": (lambda: ExitRule((0, 16), window=2), "positive"),
    "no rungs": (lambda: ExitRule((), window=2), "at least one rung"),
    "no condition": (lambda: ExitRule((16, 32)), "an exit rule needs a window"),
    "exit window 0": (lambda: ExitRule((16,), window=0), "window must be at least 1"),
    "exit min_prob > 1": (lambda: ExitRule((16,), min_prob=1.5), r"min_prob must be in \[0, 1\]"),
    "exit min_prob < 0": (lambda: ExitRule((16,), min_prob=-0.1), r"min_prob must be in \[0, 1\]"),
    "exit min_token_prob > 1": (
        lambda: ExitRule((16,), min_token_prob=1.01),
        r"min_token_prob must be in \[0, 1\]",
    ),
    "negative entropy": (lambda: ExitRule((16,), max_entropy=-1.0), "max_entropy must be >= 0"),
    "exit with two samples": (
        lambda: Step(THINK, samples=2, exit=ExitRule((64, 128), window=2)),
        "samples=1",
    ),
    "exit with a stop rule": (
        lambda: Step(THINK, exit=ExitRule((64, 128), window=2), stop=StopRule()),
        "no stop rule",
    ),
    "budget is not the cap": (
        lambda: Step(THINK, exit=ExitRule((16, 64), window=2)),
        "budget is its last rung",
    ),
    "exit without budget": (
        lambda: Step(QUICK, exit=ExitRule((16, 64), window=2)),
        "budget is its last rung",
    ),
    "step min_prob > 1": (lambda: Step(QUICK, min_prob=1.2), r"min_prob must be in \[0, 1\]"),
    "step min_prob < 0": (lambda: Step(QUICK, min_prob=-0.5), r"min_prob must be in \[0, 1\]"),
    "min_prob with votes": (lambda: Step(QUICK, samples=3, min_prob=0.5), "one-sample steps"),
    "min_prob on an exit step": (
        lambda: Step(THINK, exit=ExitRule((128,), window=1), min_prob=0.5),
        "without an exit rule",
    ),
    "unsure without a test": (lambda: Step(THINK, escalate="unsure"), "needs an exit rule"),
    "unknown escalation": (lambda: Step(THINK, escalate="maybe"), "unknown escalation"),
    "unknown stop kind": (lambda: StopRule(kind="median"), "unknown stop rule 'median'"),
    "stop confidence 1": (lambda: StopRule(kind="beta", confidence=1.0), r"\[0.5, 1\)"),
    "stop confidence below half": (lambda: StopRule(kind="beta", confidence=0.4), r"\[0.5, 1\)"),
    "stop window 0": (lambda: StopRule(kind="window", window=0), "at least 1"),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_plans_are_refused(name: str) -> None:
    build, message = INVALID[name]
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"exit": {"rungs": [128, 64], "window": 2}}, "strictly increasing"),
        ({"stop": {"kind": "median"}}, "unknown stop rule"),
        ({"min_prob": 2}, r"\[0, 1\]"),
        ({"escalate": "unsure"}, "needs an exit rule"),
        ({"samples": 2, "exit": {"rungs": [128], "min_prob": 0.5}}, "samples=1"),
    ],
)
def test_json_plans_are_validated_on_load(step: dict[str, Any], message: str) -> None:
    data = {"steps": [{"config": THINK.to_dict(), **step}]}
    with pytest.raises(ValueError, match=message):
        Decision.from_dict(data)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_exit_rule_holds_agrees_with_exit_mask(seed: int) -> None:
    """The one-request form a live runner calls decides as replay does, rung by rung."""
    rng = np.random.default_rng(seed)
    n_rungs = int(rng.integers(1, 7))
    conditions: dict[str, Any] = {}
    while not conditions:
        if rng.random() < 0.6:
            conditions["window"] = int(rng.integers(1, 5))
        if rng.random() < 0.5:
            conditions["min_prob"] = float(rng.choice([0.0, 0.5, 1.0, rng.random()]))
        if rng.random() < 0.5:
            conditions["max_entropy"] = float(rng.choice([0.0, 1.0, rng.random() * 2]))
        if rng.random() < 0.4:
            conditions["min_token_prob"] = float(rng.choice([0.0, 0.5, 1.0, rng.random()]))
    rule = ExitRule(tuple(range(1, n_rungs + 1)), **conditions)
    shape = (20, n_rungs)
    answer = rng.integers(-1, 3, size=shape).astype(np.int32)
    # Values on the thresholds as well as between them; some unknown.
    prob = rng.choice([0.0, 0.5, 1.0, np.nan, *rng.random(4)], size=shape)
    entropy = rng.choice([0.0, 1.0, np.nan, *(rng.random(4) * 2)], size=shape)
    token_prob = rng.choice([0.0, 0.5, 1.0, np.nan, *rng.random(4)], size=shape)
    mask = exit_mask(rule, answer, prob, entropy, token_prob)
    for row in range(shape[0]):
        for i in range(n_rungs):
            seen = [None if a < 0 else int(a) for a in answer[row, : i + 1]]
            p = None if np.isnan(prob[row, i]) else float(prob[row, i])
            e = None if np.isnan(entropy[row, i]) else float(entropy[row, i])
            t = None if np.isnan(token_prob[row, i]) else float(token_prob[row, i])
            assert rule.holds(seen, p, e, t) == mask[row, i], (rule, seen, p, e, t)
            # NaN is as unknown as None.
            nan_form = rule.holds(seen, prob[row, i], entropy[row, i], token_prob[row, i])
            assert nan_form == mask[row, i]


def test_exit_rule_holds_by_hand() -> None:
    rule = ExitRule((16, 32, 64), window=2, min_prob=0.8)
    assert not rule.holds([], 0.9, None)
    assert not rule.holds(["7"], 0.9, None)  # one probe is not a window of two
    assert rule.holds(["3", "7", "7"], 0.8, None)
    assert not rule.holds(["7", "7"], 0.79, None)
    assert not rule.holds(["7", "7"], None, None)
    assert not rule.holds([None, None], 0.9, None)  # agreeing on no answer is not agreement
    calm = ExitRule((16,), max_entropy=0.5)
    assert calm.holds([None], None, 0.5) and not calm.holds(["1"], 1.0, 0.51)
    per_token = ExitRule((16,), min_token_prob=0.9)
    assert per_token.holds(["1"], None, None, 0.9)
    assert not per_token.holds(["1"], 1.0, None, 0.89)
    assert not per_token.holds(["1"], 1.0, None)  # unknown is not confident


def test_exit_mask_refuses_a_per_token_rule_without_per_token_probabilities() -> None:
    rule = ExitRule((16, 32), min_token_prob=0.5)
    answer, prob = np.zeros((2, 2), dtype=np.int32), np.ones((2, 2))
    with pytest.raises(ReplayError, match="per-token"):
        exit_mask(rule, answer, prob, prob)


# -- the beta stopping rule ------------------------------------------------------------------


def _beta_tail(top: int, second: int) -> float:
    """P(p > 1/2) for p ~ Beta(top + 1, second + 1) with integer parameters: the chance of at
    least second + 1 heads in top + second + 1 fair tosses."""
    m = top + second + 1
    return sum(math.comb(m, k) for k in range(second + 1, m + 1)) / 2**m


def test_beta_confidence_matches_the_binomial_sum() -> None:
    top, second = np.meshgrid(np.arange(0, 16), np.arange(0, 16), indexing="ij")
    got = beta_confidence(top, second)
    want = np.vectorize(_beta_tail)(top, second)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert float(beta_confidence(np.array(3), np.array(0))) == pytest.approx(1 - 0.5**4)
    assert float(beta_confidence(np.array(4), np.array(4))) == pytest.approx(0.5)
    assert float(beta_confidence(np.array(2), np.array(1))) == pytest.approx(11 / 16)


def test_beta_stop_rule_stops_once_the_leader_is_surely_the_majority() -> None:
    codes = np.array([[0, 0, 0, 1], [-1, -1, -1, -1], [2, 1, 2, 2]])
    # Votes of the leader and the runner-up after each sample.
    top = np.array([[1, 2, 3, 3], [0, 0, 0, 0], [1, 1, 2, 3]])
    second = np.array([[0, 0, 0, 1], [0, 0, 0, 0], [0, 1, 1, 1]])
    mask = stop_mask(StopRule(kind="beta", confidence=0.9), codes, top, second)
    # Row 0: confidence 0.75, 0.875, 0.9375, then 0.8125 after the dissent.
    # Row 1: no answers, no leader, never. Row 2: 0.75, 0.5, 0.6875, 0.8125.
    np.testing.assert_array_equal(mask, [[False, False, True, False], [False] * 4, [False] * 4])


def test_window_stop_rule_looks_at_whole_windows_only() -> None:
    codes = np.array([[0, 0, 1, 1, 2, -1], [3, 4, 4, 3, 3, 3], [-1, -1, -1, -1, 5, 5]])
    mask = stop_mask(StopRule(kind="window", window=2), codes, codes, codes)
    want = np.zeros(codes.shape, dtype=bool)
    want[0, [1, 3]] = True
    want[1, 5] = True  # samples 3-4 agree across the window boundary, which does not count
    want[2, 5] = True
    np.testing.assert_array_equal(mask, want)
