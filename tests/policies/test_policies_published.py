"""The published rules as baselines: each plan is its paper's rule, replayed on ponder's data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _matrices import answer_matrix

from ponder.analysis import load_matrix
from ponder.builtin import builtin_folder
from ponder.decision import ExitRule, StopRule
from ponder.evaluate import OutcomeMatrix, replay
from ponder.evaluate.protocol import complete
from ponder.importers import import_paths
from ponder.outcomes.matrix import Signals
from ponder.outcomes.replay import beta_confidence
from ponder.policies import Config, DecisionBatch, Policy, PolicyError, load_policy, save_policy
from ponder.policies.published import (
    DEER,
    ESC,
    PUBLISHED_BASELINES,
    PUBLISHED_DEFAULTS,
    AdaptiveConsistencyBeta,
    AutoThinkBudget,
    DynasorCoT,
    RouteLLMThreshold,
    ladder_families,
)
from ponder.store import Store

RUNGS = (10, 20, 40, 80, 160)


def _problems(texts: list[str], levels: list[float] | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "dataset": "d",
            "problem_id": [f"p{i}" for i in range(len(texts))],
            "level": np.nan if levels is None else levels,
            "subject": None,
            "text": texts,
        }
    )


def ladder_matrix(
    answers: dict[str, np.ndarray],
    prob: dict[str, np.ndarray] | None = None,
    natural: dict[str, np.ndarray] | None = None,
    texts: list[str] | None = None,
    shared_chains: bool = True,
) -> OutcomeMatrix:
    """Per model, answer codes [problem, rung, chain] along RUNGS of mode "think" (code 0 is
    right, -1 no answer), plus a "no-think" config whose samples are the chains' last answers.

    A rung costs its budget; every probe costs 1 (0 after the chain ended on its own).
    """
    configs, cost, answer = [], [], []
    probs, naturals, probe_cost, chain = [], [], [], []
    for m, (model, codes) in enumerate(answers.items()):
        n, r, s = codes.shape
        assert r == len(RUNGS)
        p = np.full(codes.shape, 0.5) if prob is None else prob[model]
        nat = np.zeros(codes.shape) if natural is None else natural[model]
        ids = 1000 * m + np.arange(n * s).reshape(n, 1, s) + np.zeros((1, r, 1), dtype=np.int64)
        if not shared_chains:
            ids = ids + 100_000 * np.arange(r).reshape(1, r, 1)
        for k, budget in enumerate(RUNGS):
            configs.append(Config(model, "think", budget))
            answer.append(codes[:, k])
            cost.append(np.full((n, s), float(budget)))
            probs.append(p[:, k])
            naturals.append(nat[:, k])
            probe_cost.append(np.where(nat[:, k] == 1, 0.0, 1.0))
            chain.append(ids[:, k])
        configs.append(Config(model, "no-think", None))
        answer.append(codes[:, -1])
        cost.append(np.full((n, s), 2.0))
        probs.append(np.full((n, s), np.nan))
        naturals.append(np.full((n, s), np.nan))
        probe_cost.append(np.full((n, s), np.nan))
        chain.append(np.full((n, s), 999_999 - m, dtype=np.int64))
    codes_all = np.stack(answer, axis=1).astype(np.int32)
    correct_all = (codes_all == 0).astype(float)
    n = codes_all.shape[0]
    signals = Signals(
        prob=np.stack(probs, axis=1),
        token_prob=np.stack(probs, axis=1),  # one-token answers: the same number
        entropy=np.full(codes_all.shape, np.nan),
        natural=np.stack(naturals, axis=1),
        probe_cost=np.stack(probe_cost, axis=1),
        chain=np.stack(chain, axis=1),
    )
    cost_all = np.stack(cost, axis=1)
    return OutcomeMatrix(
        problems=_problems(texts or [f"problem {i}" for i in range(n)]),
        configs=tuple(configs),
        correct=correct_all,
        cost=cost_all,
        tokens=cost_all.copy(),
        answer=codes_all,
        signals=signals,
    )


def rich_matrix(n: int = 40, chains: int = 3, seed: int = 0) -> OutcomeMatrix:
    """Two models with ladders and several chains: data every baseline can run on."""
    rng = np.random.default_rng(seed)
    easy = np.arange(n) % 2 == 0
    texts = [
        f"{'easy short sum' if e else 'hard long multi step puzzle'} {i}"
        for i, e in enumerate(easy)
    ]
    answers, prob = {}, {}
    for model, skill in (("small", 0.3), ("large", 0.7)):
        right = rng.random((n, 1, chains)) < np.where(easy, skill + 0.2, skill - 0.2)[:, None, None]
        settle = rng.integers(0, len(RUNGS), size=(n, 1, chains))
        late = np.arange(len(RUNGS))[None, :, None] >= settle
        noise = rng.integers(1, 4, size=(n, len(RUNGS), chains))
        answers[model] = np.where(late, np.where(right, 0, 7), noise)
        prob[model] = rng.uniform(0.5, 1.0, size=(n, len(RUNGS), chains))
    return ladder_matrix(answers, prob=prob, texts=texts)


def _row(codes: list[int], chains: int = 1) -> np.ndarray:
    return np.asarray(codes).reshape(1, len(RUNGS), 1).repeat(chains, axis=2)


# -- the defaults -------------------------------------------------------------------------------


def test_constructor_defaults_are_the_published_table() -> None:
    assert DynasorCoT().window == PUBLISHED_DEFAULTS["dynasor_cot"]["window"] == 3
    assert DEER().threshold == PUBLISHED_DEFAULTS["deer"]["threshold"] == 0.95
    beta = AdaptiveConsistencyBeta()
    assert (beta.confidence, beta.max_samples) == (0.95, 40)
    assert (ESC().window, ESC().max_samples) == (5, 40)
    assert AutoThinkBudget().threshold == 0.5
    assert RouteLLMThreshold().strong_share == 0.5
    assert {cls.name for cls in PUBLISHED_BASELINES} == set(PUBLISHED_DEFAULTS)
    assert all(PUBLISHED_DEFAULTS[name]["source"] for name in PUBLISHED_DEFAULTS)


# -- Dynasor-CoT and DEER on a ladder -------------------------------------------------------------


def test_dynasor_stops_at_the_first_rung_closing_three_equal_answers() -> None:
    codes = np.concatenate(
        [
            _row([0, 0, 0, 0, 0]),  # three equal answers at rung 40
            _row([1, 0, 0, 0, 0]),  # ... at rung 80
            _row([1, 1, -1, 1, 1]),  # a missing answer breaks every window: the cap
            _row([2, 2, 2, 0, 0]),  # agrees on a wrong answer: stops wrong at 40
            _row([3, 0, 0, 0, 0]),  # ends on its own after rung 10: stops at 20
        ]
    )
    natural = np.zeros(codes.shape)
    natural[4, 1:] = 1
    matrix = ladder_matrix({"m": codes}, natural={"m": natural})
    policy = DynasorCoT().fit(matrix)
    (step,) = policy.decide_batch(matrix.problems)[0].steps
    assert step.exit == ExitRule(RUNGS, window=3)
    assert step.config == Config("m", "think", 160) and step.samples == 1
    result = replay(matrix, policy.decide_batch(matrix.problems))
    # Stopping at rung i costs its budget plus one probe at every earlier rung.
    assert result.cost.tolist() == [40 + 2, 80 + 3, 160 + 4, 40 + 2, 20 + 1]
    assert result.correct.tolist() == [1, 1, 0, 0, 1]
    # Window 2 (the servers' default) stops where two answers in a row agree, even wrong ones.
    two = replay(matrix, DynasorCoT(window=2).fit(matrix).decide_batch(matrix.problems))
    assert two.cost.tolist() == [20 + 1, 40 + 2, 20 + 1, 20 + 1, 20 + 1]
    assert two.correct.tolist() == [1, 1, 0, 0, 1]


def test_deer_stops_at_the_first_rung_whose_answer_is_confident() -> None:
    codes = np.concatenate([_row([1, 0, 0, 0, 0]), _row([5, 5, 0, 0, 0]), _row([0] * 5)])
    prob = np.array(
        [
            [0.5, 0.96, 0.99, 0.99, 0.99],  # first >= 0.95 at rung 20
            [0.95, 0.2, 0.99, 0.99, 0.99],  # exactly 0.95 at rung 10: stops there, wrong
            [0.9, 0.94, 0.949, 0.5, 0.0],  # never confident: the cap
        ]
    )[:, :, None]
    matrix = ladder_matrix({"m": codes}, prob={"m": prob})
    policy = DEER().fit(matrix)
    (step,) = policy.decide_batch(matrix.problems)[0].steps
    assert step.exit == ExitRule(RUNGS, min_token_prob=0.95)
    result = replay(matrix, policy.decide_batch(matrix.problems))
    assert result.cost.tolist() == [20 + 1, 10, 160 + 4]
    assert result.correct.tolist() == [1, 0, 1]


def test_ladder_family_is_the_one_most_accurate_at_its_largest_rung() -> None:
    right = np.zeros((4, len(RUNGS), 1), dtype=int)
    wrong = np.full((4, len(RUNGS), 1), 3)
    wrong[:3, -1] = 0  # "b" is right on 3 of 4 at the cap, "a" on 4 of 4
    matrix = ladder_matrix({"a": right, "b": wrong})
    assert [f.label for f in ladder_families(matrix)] == ["a|think", "b|think"]
    assert DynasorCoT().fit(matrix).model_ == "a"
    chosen = DEER(model="b", rungs=(20, 80, 160)).fit(matrix)
    assert (chosen.model_, chosen.rungs_) == ("b", (20, 80, 160))
    with pytest.raises(PolicyError, match="not recorded rungs"):
        DEER(rungs=(20, 30)).fit(matrix)
    with pytest.raises(PolicyError, match="no usable family"):
        DynasorCoT(model="c").fit(matrix)


def test_exit_rules_refuse_data_without_a_ladder() -> None:
    codes = np.zeros((3, len(RUNGS), 1), dtype=int)
    laddered = ladder_matrix({"m": codes})
    imported = dataclasses.replace(laddered, signals=None)
    separate = ladder_matrix({"m": codes}, shared_chains=False)  # one run per budget
    for data in (imported, separate):
        for policy in (DynasorCoT(), DEER()):
            with pytest.raises(PolicyError, match="needs ladder data"):
                policy.fit(data)


# -- Adaptive-Consistency and ESC ----------------------------------------------------------------


def test_beta_rule_needs_four_equal_votes_at_095() -> None:
    # The paper's criterion by hand: n equal votes give 1 - 0.5 ** (n + 1).
    assert beta_confidence(np.array([3.0]), np.array([0.0]))[0] == pytest.approx(0.9375)
    assert beta_confidence(np.array([4.0]), np.array([0.0]))[0] == pytest.approx(0.96875)
    config = Config("m", "think", 100)
    matrix = answer_matrix(
        {
            config: [
                [0, 0, 0, 0, 0],  # 4 equal answers: stop after 4
                [0, 0, 0, 1, 0],  # 3-1 (0.8125), then 4-1 (0.89): all 5, majority right
                [1, 1, 1, 1, 0],  # 4 equal wrong answers: stop after 4, wrong
            ]
        }
    )
    policy = AdaptiveConsistencyBeta().fit(matrix)
    (step,) = policy.decide_batch(matrix.problems)[0].steps
    assert step.stop == StopRule(kind="beta", confidence=0.95)
    assert step.samples == policy.max_samples_ == 5  # min(40, recorded)
    result = replay(matrix, policy.decide_batch(matrix.problems))
    assert result.samples.tolist() == [4, 5, 4]
    assert result.correct.tolist() == [1, 1, 0]
    # A sample costs 1 + 0.1 x slot, so four cost 4.6 and five 6.0.
    np.testing.assert_allclose(result.cost, [4.6, 6.0, 4.6])


def test_beta_rule_never_stops_early_with_three_samples() -> None:
    config = Config("m", "think", 100)
    matrix = answer_matrix({config: [[0, 0, 0], [1, 0, 0], [2, 2, 2]]})
    result = replay(matrix, AdaptiveConsistencyBeta().fit(matrix).decide_batch(matrix.problems))
    assert result.samples.tolist() == [3, 3, 3]


@pytest.mark.parametrize(("recorded", "window"), [(2, 2), (3, 2), (5, 2), (8, 4), (9, 4), (12, 5)])
def test_esc_window_fits_two_windows_into_what_is_recorded(recorded: int, window: int) -> None:
    config = Config("m", "think", 100)
    matrix = answer_matrix({config: [[0] * recorded, [1] * recorded]})
    policy = ESC().fit(matrix)
    (step,) = policy.decide_batch(matrix.problems)[0].steps
    assert step.stop == StopRule(kind="window", window=window)
    assert step.samples == recorded
    # The lowered settings are labelled, never passed off as the paper's.
    assert "paper window=5 <=40" in policy.describe()
    assert "paper" not in ESC().fit(answer_matrix({config: [[0] * 40]})).describe()


def test_esc_stops_after_the_first_unanimous_window() -> None:
    config = Config("m", "think", 100)
    matrix = answer_matrix({config: [[0, 0, 1], [0, 1, 1], [-1, -1, 0]]})
    result = replay(matrix, ESC().fit(matrix).decide_batch(matrix.problems))
    assert result.samples.tolist() == [2, 3, 3]
    # Majority of everything drawn: 0 0 -> right; 0 1 1 -> wrong; no answers do not vote.
    assert result.correct.tolist() == [1, 0, 1]


def test_sampling_rules_pick_the_most_accurate_config_and_refuse_one_sample() -> None:
    good, bad = Config("m", "think", 100), Config("m", "no-think", None)
    matrix = answer_matrix({good: [[0, 0], [0, 1]], bad: [[1, 1], [0, 1]]}, {bad: 0.5})
    assert ESC().fit(matrix).config_ == good
    assert AdaptiveConsistencyBeta(config=bad).fit(matrix).config_ == bad
    single = answer_matrix({good: [[0], [1]]})
    for policy in (AdaptiveConsistencyBeta(), ESC()):
        with pytest.raises(PolicyError, match="at least 2 recorded samples"):
            policy.fit(single)


# -- AutoThink and RouteLLM --------------------------------------------------------------------


def _budget_matrix(easy: np.ndarray, levels: list[float] | None = None, texts: bool = True):
    """One model and mode at budgets 128 and 512: the low budget solves the easy problems only."""
    low, high = Config("m", "think", 128), Config("m", "think", 512)
    matrix = answer_matrix(
        {low: [[0] if e else [1] for e in easy], high: [[0] for _ in easy]},
        {low: 128.0, high: 512.0},
    )
    words = [("add two small numbers" if e else "prove a long chain of steps") for e in easy]
    problems = _problems([f"{w} {i}" if texts else "same" for i, w in enumerate(words)], levels)
    return dataclasses.replace(matrix, problems=problems)


def test_autothink_sends_easy_requests_to_the_low_budget() -> None:
    easy = np.arange(40) % 2 == 0
    matrix = _budget_matrix(easy)
    train, test = matrix.subset(np.arange(30)), matrix.subset(np.arange(30, 40))
    policy = AutoThinkBudget().fit(train)
    assert (policy.low_config_.budget, policy.high_config_.budget) == (128, 512)
    batch = policy.decide_batch(test.problems)
    budgets = [batch[i].steps[0].config.budget for i in range(len(test.problems))]
    assert budgets == [128 if e else 512 for e in easy[30:]]
    result = replay(test, batch)
    assert result.accuracy == 1.0 and result.mean_cost == (128 * 5 + 512 * 5) / 10


def test_autothink_without_level_ignores_it() -> None:
    easy = np.arange(40) % 2 == 0
    levels = [1.0 if e else 4.0 for e in easy]
    matrix = _budget_matrix(easy, levels=levels, texts=False)
    with_level = AutoThinkBudget().fit(matrix).decide_batch(matrix.problems)
    assert len(with_level.decisions) == 2  # the level alone separates them
    blind = AutoThinkBudget(use_level=False).fit(matrix).decide_batch(matrix.problems)
    assert len(blind.decisions) == 1  # nothing else tells the problems apart


def test_autothink_on_budgets_above_the_papers_high_takes_the_second_as_high() -> None:
    # MATH-500's sweep records 4096, 8192 and 16384: nothing lies below the paper's HIGH (4096),
    # so HIGH is the second budget and LOW the one below it.
    configs = {Config("m", "think", b): [[0], [1], [0], [1]] for b in (4096, 8192, 16384)}
    policy = AutoThinkBudget().fit(answer_matrix(configs))
    assert (policy.low_config_.budget, policy.high_config_.budget) == (4096, 8192)


def test_autothink_needs_two_budgets() -> None:
    only = answer_matrix({Config("m", "think", 512): [[0], [1]]})
    with pytest.raises(PolicyError, match="two or more token budgets"):
        AutoThinkBudget().fit(only)


def _duel_matrix(hard: np.ndarray) -> OutcomeMatrix:
    """Two models, one configuration each: strong wins exactly on the hard problems."""
    weak, strong = Config("weak", "think", 256), Config("strong", "think", 256)
    matrix = answer_matrix(
        {weak: [[1] if h else [0] for h in hard], strong: [[0] for _ in hard]},
        {weak: 1.0, strong: 1.0},
    )
    words = [("prove a long chain of steps" if h else "add two small numbers") for h in hard]
    return dataclasses.replace(
        matrix, problems=_problems([f"{w} {i}" for i, w in enumerate(words)])
    )


def test_routellm_routes_predicted_wins_to_the_strong_model() -> None:
    hard = np.arange(40) % 4 == 0  # a quarter of the problems
    matrix = _duel_matrix(hard)
    train, test = matrix.subset(np.arange(32)), matrix.subset(np.arange(32, 40))
    policy = RouteLLMThreshold(strong_share=0.25).fit(train)
    assert (policy.weak_.model, policy.strong_.model) == ("weak", "strong")
    assert policy.train_strong_share_ == pytest.approx(0.25)
    batch = policy.decide_batch(test.problems)
    chosen = [batch[i].steps[0].config.model for i in range(len(test.problems))]
    assert chosen == ["strong" if h else "weak" for h in hard[32:]]
    assert replay(test, batch).accuracy == 1.0
    # The threshold is a quantile of training predictions: a larger share routes more.
    wide = RouteLLMThreshold(strong_share=0.75).fit(train)
    assert wide.threshold_ < policy.threshold_
    assert wide.train_strong_share_ >= 0.75


def test_routellm_default_pair_is_the_same_configuration_on_two_models() -> None:
    matrix = rich_matrix()
    policy = RouteLLMThreshold().fit(matrix)
    strong, weak = policy.strong_, policy.weak_
    index = [matrix.config_index(c) for c in matrix.configs]
    accuracy = np.nanmean(matrix.correct[:, index], axis=(0, 2))
    assert accuracy[matrix.config_index(strong)] == accuracy.max()
    assert weak.model != strong.model and (weak.mode, weak.budget) == (strong.mode, strong.budget)


def test_routellm_needs_two_models() -> None:
    one = answer_matrix({Config("m", "think", 1): [[0], [1]], Config("m", "think", 2): [[0], [0]]})
    with pytest.raises(PolicyError, match="needs two models"):
        RouteLLMThreshold().fit(one)


# -- every baseline: no peeking, round trips ---------------------------------------------------


def _all() -> list[Policy]:
    return [cls() for cls in PUBLISHED_BASELINES]


def _plans(batch: DecisionBatch) -> list[dict[str, object]]:
    return [batch[i].to_dict() for i in range(len(batch))]


@pytest.mark.parametrize("policy", _all(), ids=lambda p: p.name)
def test_decisions_do_not_depend_on_held_out_outcomes(policy: Policy) -> None:
    matrix = rich_matrix()
    train, test = np.arange(30), np.arange(30, 40)
    # The same training problems, with every held-out outcome and signal replaced.
    other = rich_matrix(seed=7)
    mixed = dataclasses.replace(
        matrix,
        correct=np.concatenate([matrix.correct[train], other.correct[test]]),
        answer=np.concatenate([matrix.answer[train], other.answer[test]]),
        signals=Signals(
            *(
                np.concatenate([getattr(matrix.signals, f)[train], getattr(other.signals, f)[test]])
                for f in ("prob", "entropy", "natural", "probe_cost", "chain", "token_prob")
            )
        ),
    )
    first = type(policy)().fit(matrix.subset(train))
    second = type(policy)().fit(mixed.subset(train))
    problems = matrix.subset(test).problems
    assert _plans(first.decide_batch(problems)) == _plans(second.decide_batch(problems))
    assert first.get_state() == second.get_state()
    result = replay(matrix.subset(test), first.decide_batch(problems))
    assert np.isfinite(result.accuracy) and np.isfinite(result.mean_cost)


@pytest.mark.parametrize("policy", _all(), ids=lambda p: p.name)
def test_save_and_load_give_identical_decisions(policy: Policy, tmp_path: Path) -> None:
    matrix = rich_matrix()
    policy.fit(matrix.subset(np.arange(30)))
    loaded = load_policy(save_policy(policy, tmp_path / f"{policy.name}.json"))
    assert type(loaded) is type(policy)
    assert loaded.get_params() == policy.get_params()
    assert loaded.describe() == policy.describe()
    problems = matrix.subset(np.arange(30, 40)).problems
    before, after = policy.decide_batch(problems), loaded.decide_batch(problems)
    assert _plans(before) == _plans(after)
    assert policy.name in policy.describe()


# -- the built-in snapshot ---------------------------------------------------------------------


def test_every_runnable_baseline_runs_on_the_builtin_sweep(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        import_paths(store, [builtin_folder()])
        matrix = complete(load_matrix(store, datasets=["arith"]))
    order = np.random.default_rng(0).permutation(matrix.n_problems)
    half = matrix.n_problems // 2
    train, test = matrix.subset(order[:half]), matrix.subset(order[half:])
    most_samples = int(train.n_samples.min(axis=0).max())
    ran = []
    for policy in _all():
        needs_samples = isinstance(policy, (AdaptiveConsistencyBeta, ESC))
        if needs_samples and most_samples < 2:
            with pytest.raises(PolicyError, match="at least 2 recorded samples"):
                policy.fit(train)
            continue
        policy.fit(train)
        result = replay(test, policy.decide_batch(test.problems))
        assert 0 <= result.accuracy <= 1 and np.isfinite(result.mean_cost)
        assert result.mean_cost > 0
        ran.append(policy.name)
    # The snapshot has ladders of two models: these four always run there.
    assert {"dynasor_cot", "deer", "autothink", "routellm_threshold"} <= set(ran)
