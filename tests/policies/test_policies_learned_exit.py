"""LearnedExit: fitted confident / hopeless scores learn to stop on the first agreeing probe and
to give up on answers that keep changing; the fast grid equals replay, the fitted plan's
replay equals the step-by-step reference, no peeking, files, and the built-in sweep."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ponder.decision import PROBE_FEATURES, Config, Decision
from ponder.evaluate import OutcomeMatrix, replay, replay_decision
from ponder.outcomes.matrix import NO_CHAIN, Signals
from ponder.outcomes.reference import replay_reference
from ponder.outcomes.replay import probe_feature_arrays, score_probability
from ponder.policies import PolicyError
from ponder.policies.early_exit import Ladder, chain_families, direct_configs, direct_unit
from ponder.policies.learned_exit import (
    LearnedEscalate,
    LearnedExit,
    ScoredLadder,
    fit_score,
    learned_unit,
    sequences,
)
from ponder.policies.serialization import load_policy, registered, save_policy

RUNGS = (10, 20, 40, 80)
PROBE = 2.0  # what a forced answer costs at a rung the chain goes on from

Ladders = Mapping[tuple[str, str], Mapping[str, np.ndarray]]


def _ladder_matrix(
    ladders: Ladders, plain: Mapping[Config, np.ndarray] | None = None
) -> OutcomeMatrix:
    """A matrix with live-sweep signals. Each ladder has [problem, chain, rung] `answer` codes
    (0 is right, -1 no answer, -9 not recorded) and `prob`; optional `natural` (1 where the
    chain had ended before the rung), `cost` (default: the rung's budget) and `probe`
    (default PROBE, 0 once ended). `plain` configurations (no budget) give [problem, sample]
    answers, prob 0.5, cost 1."""
    configs: list[Config] = []
    columns: dict[str, list[np.ndarray]] = {
        k: [] for k in ("answer", "prob", "natural", "cost", "probe", "chain")
    }
    first = next(iter(ladders.values()))["answer"]
    n, s, _ = first.shape
    for f, ((model, mode), spec) in enumerate(sorted(ladders.items())):
        natural = spec.get("natural", np.zeros(first.shape))
        for r, budget in enumerate(RUNGS):
            configs.append(Config(model, mode, budget))
            columns["answer"].append(spec["answer"][:, :, r])
            columns["prob"].append(spec["prob"][:, :, r])
            columns["natural"].append(natural[:, :, r])
            cost = spec.get("cost", np.full(first.shape, float(budget)))
            columns["cost"].append(np.broadcast_to(cost, first.shape)[:, :, r])
            probe = spec.get("probe", np.where(natural == 1, 0.0, PROBE))
            columns["probe"].append(np.broadcast_to(probe, first.shape)[:, :, r])
            chain = f * 10**6 + np.arange(n)[:, None] * 100 + np.arange(s)[None, :]
            columns["chain"].append(chain)
    for k, (config, answers) in enumerate((plain or {}).items()):
        configs.append(config)
        columns["answer"].append(answers)
        columns["prob"].append(np.full((n, s), 0.5))
        columns["natural"].append(np.zeros((n, s)))
        columns["cost"].append(np.ones((n, s)))
        columns["probe"].append(np.zeros((n, s)))
        columns["chain"].append(np.full((n, s), 9 * 10**6 + k))
    arrays = {k: np.stack(v, axis=1) for k, v in columns.items()}
    answer = arrays["answer"].astype(np.int32)
    recorded = answer != -9
    answer[~recorded] = -1

    def known(values: np.ndarray) -> np.ndarray:
        return np.where(recorded, values.astype(float), np.nan)

    chain = np.where(recorded, arrays["chain"], NO_CHAIN).astype(np.int64)
    signals = Signals(
        prob=known(arrays["prob"]),
        entropy=known(np.full(answer.shape, 0.5)),
        natural=known(arrays["natural"]),
        probe_cost=known(arrays["probe"]),
        chain=chain,
    )
    problems = pd.DataFrame(
        {
            "dataset": "d",
            "problem_id": [f"p{i}" for i in range(n)],
            "level": np.nan,
            "subject": None,
            "text": None,
        }
    )
    cost = known(arrays["cost"])
    return OutcomeMatrix(
        problems=problems,
        configs=tuple(configs),
        correct=np.where(recorded, (answer == 0).astype(float), np.nan),
        cost=cost,
        tokens=cost.copy(),
        answer=answer,
        signals=signals,
    )


def _random_ladders(seed: int, n: int = 40, s: int = 3) -> OutcomeMatrix:
    """Two families with three chains per problem: chains that end on their own (later rungs
    repeat the ending answer at the same cost, probes free), answers that settle with some
    chance, missing chains at the cap, and a plain no-think configuration."""
    rng = np.random.default_rng(seed)
    k = len(RUNGS)
    ladders: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for model, scale in (("small", 1.0), ("big", 3.0)):
        answer = rng.integers(-1, 4, size=(n, s, k))
        settle = rng.random((n, s, k)) < 0.4
        for r in range(1, k):
            answer[:, :, r] = np.where(settle[:, :, r], answer[:, :, r - 1], answer[:, :, r])
        ends = rng.integers(1, k + 2, size=(n, s))  # rung index after which the chain ended
        natural = (np.arange(k)[None, None, :] >= ends[:, :, None]).astype(float)
        cost = scale * np.asarray(RUNGS, float)[None, None, :] + rng.random((n, s, k))
        prob = rng.random((n, s, k))
        for r in range(1, k):
            ended = natural[:, :, r] == 1
            answer[:, :, r] = np.where(ended, answer[:, :, r - 1], answer[:, :, r])
            cost[:, :, r] = np.where(ended, cost[:, :, r - 1], cost[:, :, r])
            prob[:, :, r] = np.where(ended, prob[:, :, r - 1], prob[:, :, r])
        if model == "big":
            answer[:5, 2, k - 1] = -9  # the third chain of five problems never reached the cap
        probe = np.where(natural == 1, 0.0, rng.random((n, s, k)) * 3)
        ladders[(model, "think")] = {
            "answer": answer,
            "prob": prob,
            "natural": natural,
            "cost": cost,
            "probe": probe,
        }
    plain = {Config("small", "no-think", None): rng.integers(-1, 3, size=(n, s))}
    return _ladder_matrix(ladders, plain)


# -- what the scores learn -----------------------------------------------------------------------


def _hopeless_matrix(n: int = 40) -> OutcomeMatrix:
    """Half the problems are solvable: one answer from the start, wrong until the cap, right at
    the cap. The others are hopeless: the answer changes at every rung and is never right.
    Confidence says nothing (the same everywhere)."""
    k = len(RUNGS)
    answer = np.zeros((n, 1, k), dtype=int)
    hopeless = np.arange(n) % 2 == 1
    answer[~hopeless, 0, :] = [5, 5, 5, 0]
    answer[hopeless, 0, :] = [1, 2, 1, 2]
    ladder = {"answer": answer, "prob": np.full((n, 1, k), 0.6)}
    return _ladder_matrix({("m", "think"): ladder})


def test_changing_answers_teach_the_policy_to_give_up_early_when_compute_is_dear() -> None:
    matrix = _hopeless_matrix()
    hopeless = np.arange(matrix.n_problems) % 2 == 1
    price = 0.005  # dear enough that the hopeless problems' tokens matter, cheap enough to solve
    policy = LearnedExit(price).fit(matrix)
    rule = policy.step_.exit
    assert rule is not None and rule.hopeless is not None
    assert rule.cap == 80 and rule.rungs[:2] == (10, 20)
    result = replay(matrix, policy.decide_batch(matrix.problems))
    # Every solvable problem is solved at the cap; every hopeless one is dropped at rung 20,
    # the first probe that shows its answer changing (cost 20 + the probe at 10).
    assert result.correct[~hopeless].tolist() == [1.0] * int((~hopeless).sum())
    assert result.cost[hopeless].tolist() == [20.0 + PROBE] * int(hopeless.sum())
    assert policy.train_accuracy_ == 0.5
    uniform_cost = 80.0
    assert policy.train_cost_ < 0.75 * uniform_cost
    # With free compute nothing is lost by giving up either: same accuracy, fewer tokens.
    free = LearnedExit(0.0).fit(matrix)
    assert free.train_accuracy_ == 0.5 and free.train_cost_ <= policy.train_cost_
    # Dearer still, no answer is worth its tokens: the cheapest plain chain.
    dear = LearnedExit(1.0).fit(matrix)
    assert dear.step_.exit is None and dear.step_.config.budget == 10


def _first_agreement_matrix(seed: int, n: int = 60) -> tuple[OutcomeMatrix, np.ndarray]:
    """The first probe that repeats the previous one is always right (and stays right); before
    it, the answers are wrong and all different. Confidence is noise. Returns the matrix and
    each problem's rung index of the first agreement."""
    rng = np.random.default_rng(seed)
    k = len(RUNGS)
    settle = rng.integers(0, k - 1, size=n)  # the rung where the right answer first shows
    answer = np.zeros((n, 1, k), dtype=int)
    for p in range(n):
        before = rng.permutation(np.arange(1, 10))[: settle[p]]
        answer[p, 0, : settle[p]] = before
    prob = rng.random((n, 1, k))
    matrix = _ladder_matrix({("m", "think"): {"answer": answer, "prob": prob}})
    return matrix, settle + 1


@pytest.mark.parametrize("seed", [0, 1])
def test_the_policy_stops_at_the_first_probe_that_agrees(seed: int) -> None:
    matrix, agree_at = _first_agreement_matrix(seed)
    policy = LearnedExit(0.001).fit(matrix)
    rule = policy.step_.exit
    # Every answer is right by rung 40: no need to grow a chain further.
    assert rule is not None and rule.rungs == RUNGS[:3] and rule.confident is not None
    assert {name for name, _ in rule.confident.weights} <= set(PROBE_FEATURES)
    result = replay(matrix, policy.decide_batch(matrix.problems))
    assert result.accuracy == 1.0
    # Stopping at rung i costs that rung's budget plus a probe at every earlier rung; the
    # chains that first agree at 80 stop at the cap, 40, already right.
    stop = np.minimum(agree_at, 2)
    expected = np.asarray(RUNGS, float)[stop] + PROBE * stop
    np.testing.assert_allclose(result.cost, expected)


# -- the scores themselves -----------------------------------------------------------------------


def test_scores_on_the_raw_scale_equal_the_standardised_regression() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(5)
    features = rng.normal(size=(300, len(PROBE_FEATURES))) * rng.uniform(0.1, 10, size=8)
    features[:, 3] = 1.0  # a constant feature gets no weight
    logit = features[:, 0] - 0.5 * features[:, 4] + rng.normal(size=300)
    labels = (logit > 0).astype(float)
    score = fit_score(features, labels, C=0.7)
    assert "answered" not in dict(score.weights)
    varying = [i for i in range(8) if i != 3]
    pipeline = make_pipeline(
        StandardScaler(), LogisticRegression(C=0.7, solver="newton-cholesky")
    ).fit(features[:, varying], labels)
    named = {n: features[:, i] for i, n in enumerate(PROBE_FEATURES)}
    np.testing.assert_allclose(
        score_probability(score, named),
        pipeline.predict_proba(features[:, varying])[:, 1],
        atol=1e-5,
    )


def test_labels_that_are_all_one_or_all_zero_give_constant_scores() -> None:
    features = np.random.default_rng(0).normal(size=(20, len(PROBE_FEATURES)))
    named = {n: features[:, i] for i, n in enumerate(PROBE_FEATURES)}
    always = fit_score(features, np.ones(20), C=1.0)
    never = fit_score(features, np.zeros(20), C=1.0)
    assert always.weights == () and never.weights == ()
    assert (score_probability(always, named) > 0.99).all()
    assert (score_probability(never, named) < 0.01).all()
    # A family whose chains are always right: the policy still fits (accept at once).
    n, k = 12, len(RUNGS)
    right = _ladder_matrix(
        {("m", "think"): {"answer": np.zeros((n, 1, k)), "prob": np.ones((n, 1, k))}}
    )
    policy = LearnedExit(0.01).fit(right)
    assert policy.train_accuracy_ == 1.0 and policy.train_cost_ == 10.0


def test_rung_subsets_cover_every_cap_with_all_and_every_other_rung() -> None:
    assert sequences(6) == [(0, 1, 2, 3, 4, 5), (1, 3, 5), (0, 2, 4)]
    assert sequences(2) == [(0, 1)]


# -- the fast grid equals replay; the fitted plan equals the reference -------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_fast_grid_scores_equal_replay_for_sampled_candidates(seed: int) -> None:
    matrix = _random_ladders(seed)
    families = chain_families(matrix)
    assert [f.label for f in families] == ["big|think", "small|think"]
    rows = np.arange(matrix.n_problems)
    rng = np.random.default_rng(seed)
    for i, family in enumerate(families):
        scored = ScoredLadder(Ladder(matrix, family), C=1.0)
        candidates, correct, cost = scored.score_grid(i)
        assert len(candidates) == len(correct) == len(cost) > 200
        for c in rng.choice(len(candidates), 60, replace=False):
            step = scored.step(candidates[c])
            result = replay_decision(matrix, rows, Decision((step,)))
            np.testing.assert_allclose(correct[c], result.correct, err_msg=str(step))
            np.testing.assert_allclose(cost[c], result.cost, err_msg=str(step))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("price", [0.0, 0.003, 0.03])
def test_fitted_plans_replay_as_the_reference_and_beat_every_grid_point(
    seed: int, price: float
) -> None:
    matrix = _random_ladders(seed)
    policy = LearnedExit(price).fit(matrix)
    batch = policy.decide_batch(matrix.problems)
    fast, slow = replay(matrix, batch), replay_reference(matrix, batch)
    np.testing.assert_allclose(fast.correct, slow.correct)
    np.testing.assert_allclose(fast.cost, slow.cost)
    assert policy.train_accuracy_ == pytest.approx(fast.accuracy)
    assert policy.train_cost_ == pytest.approx(fast.mean_cost)
    chosen = fast.accuracy - price * fast.mean_cost
    for i, family in enumerate(chain_families(matrix)):
        _, correct, cost = ScoredLadder(Ladder(matrix, family), C=1.0).score_grid(i)
        values = correct.mean(axis=1) - price * cost.mean(axis=1)
        assert chosen >= values.max() - 1e-9


def test_the_scores_read_only_probes_up_to_each_rung() -> None:
    """Changing what a chain shows at later rungs leaves its features at earlier rungs alone."""
    matrix = _random_ladders(3)
    ladder = Ladder(matrix, chain_families(matrix)[0])
    n, s, k = ladder.correct.shape

    def features(answer: np.ndarray, prob: np.ndarray) -> np.ndarray:
        named = probe_feature_arrays(
            answer.reshape(n * s, k),
            prob.reshape(n * s, k),
            None,
            ladder.entropy.reshape(n * s, k),
            ladder.family.rungs,
        )
        return np.stack([named[f] for f in PROBE_FEATURES], axis=2)

    before = features(ladder.answer, ladder.prob)
    answer, prob = ladder.answer.copy(), ladder.prob.copy()
    answer[:, :, 2:] = 7
    prob[:, :, 2:] = 0.01
    after = features(answer, prob)
    np.testing.assert_array_equal(before[:, :2], after[:, :2])
    assert not np.array_equal(before[:, 2:], after[:, 2:])


# -- LearnedEscalate -----------------------------------------------------------------------------


def _escalation_matrix(n: int = 40) -> OutcomeMatrix:
    """Half the problems are easy: the small model's chain answers right from the start. The
    others are hard: its answers change at every rung and are never right. The big model (3
    per token) is right at its cap on every problem, wrong before."""
    k = len(RUNGS)
    hard = np.arange(n) % 2 == 1
    small = np.zeros((n, 1, k), dtype=int)
    small[hard, 0, :] = [1, 2, 1, 2]
    big = np.tile(np.array([3, 3, 3, 0]), (n, 1))[:, None, :]
    budgets = np.asarray(RUNGS, float)[None, None, :]
    flat = np.full((n, 1, k), 0.6)
    return _ladder_matrix(
        {
            ("small", "think"): {"answer": small, "prob": flat},
            ("big", "think"): {"answer": big, "prob": flat, "cost": 3 * budgets},
        }
    )


def test_learned_escalate_stops_the_small_chain_when_sure_and_escalates_the_rest() -> None:
    matrix = _escalation_matrix()
    hard = np.arange(matrix.n_problems) % 2 == 1
    policy = LearnedEscalate(0.001).fit(matrix)
    first, last = policy.steps_
    assert first.config.model == "small" and first.escalate == "unsure"
    assert first.exit is not None and first.exit.rungs == (10, 20)
    assert first.exit.confident is not None
    assert last.config == Config("big", "think", 80)
    result = replay(matrix, policy.decide_batch(matrix.problems))
    assert result.accuracy == 1.0
    # Easy: accepted at rung 20, where the answer first repeats (20 + the probe at 10). Hard:
    # the same, then the big chain at its cap without probes.
    easy_cost, big_cost = 20.0 + PROBE, 3 * 80.0
    np.testing.assert_allclose(result.cost, np.where(hard, easy_cost + big_cost, easy_cost))
    assert policy.reached_ == [1.0, 0.5]
    assert " > " in policy.describe() and "confident>=" in policy.describe()
    # The big chain alone is as accurate and dearer: the single-ladder policy must take it.
    alone = LearnedExit(0.001).fit(matrix)
    assert alone.train_accuracy_ == 1.0 and alone.train_cost_ > policy.train_cost_


@pytest.mark.parametrize("seed", [0, 1])
def test_first_chain_options_compose_into_what_replay_gives(seed: int) -> None:
    """The search's per-step arrays, chained by hand problem by problem, give replay's
    figures for random 2- and 3-step plans over the learned ladders and a probe."""
    matrix = _random_ladders(seed)
    families = chain_families(matrix)
    units = [
        learned_unit(ScoredLadder(Ladder(matrix, f), 1.0), i, 0.0) for i, f in enumerate(families)
    ]
    units += [direct_unit(matrix, c) for c in direct_configs(matrix, families)]
    assert len(units) == 3
    rng = np.random.default_rng(seed)
    rows = np.arange(matrix.n_problems)
    for _ in range(40):
        size = int(rng.integers(2, 4))
        chosen = [units[i] for i in rng.permutation(len(units))[:size]]
        stages = [u.escalating for u in chosen[:-1]] + [chosen[-1].final]
        options = [int(rng.integers(len(stage.steps))) for stage in stages]
        correct, cost = np.zeros(matrix.n_problems), np.zeros(matrix.n_problems)
        for p in rows:
            for k, (stage, o) in enumerate(zip(stages, options, strict=True)):
                cost[p] += stage.cost[o, p]
                if k == size - 1 or stage.accept[o, p]:
                    correct[p] = stage.correct[o, p]
                    break
        steps = tuple(stage.steps[o] for stage, o in zip(stages, options, strict=True))
        result = replay_decision(matrix, rows, Decision(steps))
        np.testing.assert_allclose(result.correct, correct, err_msg=str(steps))
        np.testing.assert_allclose(result.cost, cost, err_msg=str(steps))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("price", [0.0, 0.01])
def test_learned_escalate_replays_as_the_reference_and_is_no_worse_than_one_ladder(
    seed: int, price: float
) -> None:
    matrix = _random_ladders(seed)
    policy = LearnedEscalate(price).fit(matrix)
    batch = policy.decide_batch(matrix.problems)
    fast, slow = replay(matrix, batch), replay_reference(matrix, batch)
    np.testing.assert_allclose(fast.correct, slow.correct)
    np.testing.assert_allclose(fast.cost, slow.cost)
    value = fast.accuracy - price * fast.mean_cost
    assert policy.train_accuracy_ - price * policy.train_cost_ == pytest.approx(value)
    single = LearnedExit(price).fit(matrix)
    assert value >= single.train_accuracy_ - price * single.train_cost_ - 1e-9


# -- no peeking, files, errors -------------------------------------------------------------------


def _shuffled_outcomes(matrix: OutcomeMatrix, rows: np.ndarray, seed: int) -> OutcomeMatrix:
    """The matrix with the outcomes and signals of `rows` shuffled among those rows."""
    rng = np.random.default_rng(seed)
    order = np.arange(matrix.n_problems)
    order[rows] = rng.permutation(rows)
    assert matrix.signals is not None
    return OutcomeMatrix(
        problems=matrix.problems,
        configs=matrix.configs,
        correct=matrix.correct[order],
        cost=matrix.cost[order],
        tokens=matrix.tokens[order],
        answer=matrix.answer[order],
        signals=matrix.signals.take(order, slice(None)),
    )


POLICIES = [LearnedExit, LearnedEscalate]


@pytest.mark.parametrize("cls", POLICIES)
@pytest.mark.parametrize("price", [0.0, 0.003])
def test_plans_for_held_out_problems_ignore_their_outcomes(cls: Any, price: float) -> None:
    matrix = _random_ladders(4)
    test_rows = np.arange(0, matrix.n_problems, 3)
    train_rows = np.setdiff1d(np.arange(matrix.n_problems), test_rows)
    shuffled = _shuffled_outcomes(matrix, test_rows, seed=5)
    assert not np.array_equal(shuffled.correct, matrix.correct)
    plans = []
    for data in (matrix, shuffled):
        policy = cls(price).fit(data.subset(train_rows))
        batch = policy.decide_batch(data.subset(test_rows).problems)
        plans.append([batch[i].to_dict() for i in range(len(batch))])
    assert plans[0] == plans[1]


def test_fitted_policy_round_trips_through_a_file_with_its_scores(tmp_path: Path) -> None:
    assert registered()["learned_exit"] is LearnedExit
    matrix = _hopeless_matrix()
    policy = LearnedExit(0.005, C=0.5).fit(matrix)
    path = save_policy(policy, tmp_path / "policy.json")
    saved = json.loads(path.read_text())
    rule = saved["state"]["step"]["exit"]
    assert rule["hopeless"]["weights"] and set(rule["hopeless"]["weights"]) <= set(PROBE_FEATURES)
    loaded = load_policy(path)
    assert isinstance(loaded, LearnedExit)
    assert (
        loaded.get_params()
        == policy.get_params()
        == {
            "price_per_unit": 0.005,
            "model": None,
            "mode": None,
            "C": 0.5,
        }
    )
    assert loaded.step_ == policy.step_ and loaded.describe() == policy.describe()
    assert "hopeless<=" in policy.describe() and len(policy.describe()) < 200
    before, after = policy.decide_batch(matrix.problems), loaded.decide_batch(matrix.problems)
    assert [after[i].to_dict() for i in range(len(after))] == [
        before[i].to_dict() for i in range(len(before))
    ]
    # The loaded plan replays as the step-by-step reference replays the fitted one.
    np.testing.assert_allclose(replay(matrix, after).cost, replay_reference(matrix, before).cost)


def test_learned_escalate_round_trips_through_a_file(tmp_path: Path) -> None:
    assert registered()["learned_escalate"] is LearnedEscalate
    matrix = _escalation_matrix()
    policy = LearnedEscalate(0.001, max_steps=2, C=2.0).fit(matrix)
    path = save_policy(policy, tmp_path / "policy.json")
    first = json.loads(path.read_text())["state"]["steps"][0]
    assert set(first["exit"]["confident"]["weights"]) <= set(PROBE_FEATURES)
    loaded = load_policy(path)
    assert isinstance(loaded, LearnedEscalate)
    assert loaded.get_params() == policy.get_params()
    assert loaded.steps_ == policy.steps_ and loaded.describe() == policy.describe()
    assert loaded.reached_ == policy.reached_
    before, after = policy.decide_batch(matrix.problems), loaded.decide_batch(matrix.problems)
    np.testing.assert_allclose(replay(matrix, after).cost, replay_reference(matrix, before).cost)


def test_bad_parameters_and_data_without_ladders_are_refused() -> None:
    for bad in ({"max_steps": 4}, {"pool": 0}, {"C": -1.0}):
        with pytest.raises(ValueError):
            LearnedEscalate(0.0, **bad)
    with pytest.raises(ValueError, match="price_per_unit"):
        LearnedExit(-1.0)
    with pytest.raises(ValueError, match="C must"):
        LearnedExit(0.0, C=0.0)
    ladder = _hopeless_matrix()
    imported = OutcomeMatrix(
        problems=ladder.problems,
        configs=ladder.configs,
        correct=ladder.correct,
        cost=ladder.cost,
        tokens=ladder.tokens,
        answer=ladder.answer,
    )
    for cls in POLICIES:
        with pytest.raises(PolicyError, match="needs ladder data"):
            cls(0.01).fit(imported)
    with pytest.raises(PolicyError, match=r"model='nope'"):
        LearnedExit(0.01, model="nope").fit(ladder)


# -- the built-in sweep --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def builtin_matrix(tmp_path_factory: pytest.TempPathFactory) -> OutcomeMatrix:
    from ponder.analysis import load_matrix
    from ponder.builtin import builtin_folder
    from ponder.evaluate.protocol import complete
    from ponder.importers import import_paths
    from ponder.store import Store

    path = tmp_path_factory.mktemp("builtin") / "store.sqlite"
    with Store(path) as store:
        import_paths(store, [builtin_folder()])
    with Store(path, readonly=True) as store:
        return complete(load_matrix(store, datasets=["arith"]))


@pytest.mark.parametrize("cls", POLICIES)
def test_policies_fit_the_builtin_sweep(cls: Any, builtin_matrix: OutcomeMatrix) -> None:
    from ponder.evaluate.catalog import price_scale

    matrix = builtin_matrix
    rows = np.arange(matrix.n_problems)
    half = rows % 2 == 0
    train, test = matrix.subset(rows[half]), matrix.subset(rows[~half])
    costs = []
    for multiplier in (0.0, 1.0, 30.0):
        policy = cls(multiplier * price_scale(train)).fit(train)
        assert 0.0 <= policy.train_accuracy_ <= 1.0 and policy.train_cost_ > 0.0
        held_out = replay(test, policy.decide_batch(test.problems))
        reference = replay_reference(test, policy.decide_batch(test.problems))
        np.testing.assert_allclose(held_out.cost, reference.cost)
        assert held_out.mean_cost > 0.0
        costs.append(policy.train_cost_)
    assert costs[0] >= costs[1] >= costs[2]  # dearer compute, cheaper plans
