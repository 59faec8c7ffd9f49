"""EarlyExit, ProbeEscalate, LevelExit: the plans the objective implies on hand-built ladders,
fast scoring equal to replay, no peeking at held-out outcomes, files, and the built-in sweep."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ponder.decision import Config, Decision, ExitRule, Step
from ponder.evaluate import OutcomeMatrix, replay, replay_decision
from ponder.outcomes.matrix import NO_CHAIN, Signals
from ponder.policies import PolicyError
from ponder.policies.base import Policy
from ponder.policies.early_exit import (
    SIGNAL_KINDS,
    EarlyExit,
    Ladder,
    LevelExit,
    ProbeEscalate,
    chain_families,
    direct_configs,
    direct_unit,
    ladder_unit,
    score_exit_grid,
)
from ponder.policies.serialization import load_policy, save_policy

RUNGS = (10, 20, 40)
PROBE = 2.0  # what a forced answer costs at a rung the chain goes on from

Spec = dict[str, Any]


def _col(values: Any) -> np.ndarray:
    """One recorded chain (or sample) per problem: an [n, 1] array."""
    return np.asarray(values, dtype=float)[:, None]


def _family(
    model: str,
    answers: Sequence[Any],
    probs: Sequence[Any],
    *,
    mode: str = "think",
    per_token: float = 1.0,
) -> dict[Config, Spec]:
    """A ladder over RUNGS: answers[r][p] and probs[r][p] at rung r for problem p (answer 0 is
    right); the sample at a rung costs per_token x its budget."""
    return {
        Config(model, mode, b): {
            "answer": _col(answers[r]),
            "prob": _col(probs[r]),
            "cost": per_token * b,
        }
        for r, b in enumerate(RUNGS)
    }


def _matrix(
    specs: Mapping[Config, Spec],
    *,
    levels: Sequence[float] | None = None,
    texts: Sequence[str] | None = None,
    chains: bool = True,
) -> OutcomeMatrix:
    """A matrix with live-sweep signals. Each spec has [n, s] `answer` codes (-9: not recorded)
    and `prob`; `cost`, `natural`, `entropy`, `probe` may be scalars. Budgeted configs of one
    model and mode share chain codes (a ladder) unless `chains` is False."""
    configs = tuple(specs)
    shape = np.asarray(specs[configs[0]]["answer"]).shape
    n, s = shape

    def stack(key: str, default: float) -> np.ndarray:
        return np.stack(
            [
                np.broadcast_to(np.asarray(specs[c].get(key, default), float), shape)
                for c in configs
            ],
            axis=1,
        ).copy()

    answer = stack("answer", 0).astype(np.int32)
    recorded = answer != -9
    answer[~recorded] = -1
    correct = np.where(recorded, (answer == 0).astype(float), np.nan)
    cost = np.where(recorded, stack("cost", 1.0), np.nan)
    families = {(c.model, c.mode) for c in configs if c.budget is not None}
    family_code = {key: i for i, key in enumerate(sorted(families))}
    chain = np.full(correct.shape, NO_CHAIN, dtype=np.int64)
    if chains:
        for k, c in enumerate(configs):
            owner = family_code.get((c.model, c.mode), 100 + k) if c.budget else 100 + k
            chain[:, k, :] = owner * 10**6 + np.arange(n)[:, None] * 100 + np.arange(s)[None, :]
    chain[~recorded] = NO_CHAIN
    signals = Signals(
        prob=np.where(recorded, stack("prob", np.nan), np.nan),
        entropy=np.where(recorded, stack("entropy", 0.5), np.nan),
        natural=np.where(recorded, stack("natural", 0.0), np.nan),
        probe_cost=np.where(recorded, stack("probe", PROBE), np.nan),
        chain=chain,
    )
    problems = pd.DataFrame(
        {
            "dataset": "d",
            "problem_id": [f"p{i}" for i in range(n)],
            "level": np.nan if levels is None else np.asarray(levels, dtype=float),
            "subject": None,
            "text": None if texts is None else list(texts),
        }
    )
    return OutcomeMatrix(
        problems=problems,
        configs=configs,
        correct=correct,
        cost=cost,
        tokens=cost.copy(),
        answer=answer,
        signals=signals,
    )


def _value(policy: Policy, matrix: OutcomeMatrix, price: float) -> float:
    result = replay(matrix, policy.decide_batch(matrix.problems))
    return result.accuracy - price * result.mean_cost


# -- EarlyExit ---------------------------------------------------------------------------------

# Even problems: every probe right and confident. Odd: wrong and unsure until the cap.
EASY_HARD = _family(
    "m",
    answers=[[0, 1] * 4, [0, 2] * 4, [0, 0] * 4],
    probs=[[0.99, 0.3] * 4, [0.99, 0.4] * 4, [0.99, 0.6] * 4],
)


def test_early_exit_at_price_zero_is_the_most_accurate_plan_and_the_cheapest_of_those() -> None:
    matrix = _matrix(EASY_HARD)
    policy = EarlyExit(0.0).fit(matrix)
    step = policy.step_
    assert step.exit is not None
    # Accuracy 1 three ways: the cap alone (cost 40), a probe at every rung (easy 10, hard
    # 40 + 2 probes), a probe at 10 then the cap (easy 10, hard 40 + 1 probe): the cheapest.
    assert step.exit.rungs == (10, 40)
    assert step.exit.min_prob is not None and 0.3 < step.exit.min_prob <= 0.99
    assert policy.train_accuracy_ == 1.0
    result = replay(matrix, policy.decide_batch(matrix.problems))
    assert result.cost.tolist() == [10.0, 42.0] * 4
    assert policy.train_cost_ == pytest.approx(26.0)


def test_early_exit_with_dear_compute_stops_at_the_first_rung() -> None:
    matrix = _matrix(EASY_HARD)
    policy = EarlyExit(1.0).fit(matrix)
    assert policy.step_.exit is not None and policy.step_.exit.rungs == (10,)
    assert policy.train_accuracy_ == 0.5 and policy.train_cost_ == 10.0
    # Every plan of the grid is at most as good on the training objective.
    ladder = Ladder(matrix, chain_families(matrix)[0])
    scored = score_exit_grid([ladder], SIGNAL_KINDS)
    values = scored.correct.mean(axis=1) - 1.0 * scored.cost.mean(axis=1)
    assert _value(policy, matrix, 1.0) == pytest.approx(values.max())


def test_early_exit_can_be_held_to_one_signal_and_one_family() -> None:
    both = _matrix({**EASY_HARD, **_family("other", [[0] * 8] * 3, [[0.99] * 8] * 3)})
    policy = EarlyExit(0.0, model="m", signals=["window"]).fit(both)
    rule = policy.step_.exit
    assert policy.step_.config.model == "m" and rule is not None
    assert rule.min_prob is None and rule.max_entropy is None
    # Without confidence the hard problems' answers never repeat: the cap decides them.
    assert policy.train_accuracy_ == 1.0
    with pytest.raises(ValueError, match="signals"):
        EarlyExit(0.0, signals=["vibes"])


def _random_ladder(seed: int) -> OutcomeMatrix:
    """Two families with two chains each, chains ending on their own, a missing chain."""
    rng = np.random.default_rng(seed)
    n, s = 30, 2
    specs: dict[Config, Spec] = {}
    for model, scale in (("small", 1.0), ("big", 3.0)):
        ended = np.cumsum(rng.random((len(RUNGS), n, s)) < 0.3, axis=0) > 0
        for r, b in enumerate(RUNGS):
            natural = np.zeros((n, s))
            if r:
                natural = ended[r - 1].astype(float)
            answer = rng.integers(-1, 3, size=(n, s))
            if model == "big" and r == len(RUNGS) - 1:
                answer[:3, 1] = -9  # the second chain of three problems never reached the cap
            specs[Config(model, "think", b)] = {
                "answer": answer,
                "prob": rng.random((n, s)),
                "entropy": rng.random((n, s)),
                "natural": natural,
                "cost": scale * b + rng.random((n, s)),
                "probe": np.where(natural == 1, 0.0, rng.random((n, s)) * 3),
            }
        specs[Config(model, "no-think", None)] = {
            "answer": rng.integers(-1, 3, size=(n, s)),
            "prob": rng.random((n, s)),
            "cost": scale,
        }
    return _matrix(specs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_exit_scores_equal_replay_for_every_candidate(seed: int) -> None:
    matrix = _random_ladder(seed)
    families = chain_families(matrix)
    assert [f.label for f in families] == ["big|think", "small|think"]
    scored = score_exit_grid([Ladder(matrix, f) for f in families], SIGNAL_KINDS)
    assert 100 < len(scored.steps) < 400
    rows = np.arange(matrix.n_problems)
    for i, step in enumerate(scored.steps):
        result = replay_decision(matrix, rows, Decision((step,)))
        np.testing.assert_allclose(scored.correct[i], result.correct, err_msg=str(step))
        np.testing.assert_allclose(scored.cost[i], result.cost, err_msg=str(step))


# -- ProbeEscalate -----------------------------------------------------------------------------


def _escalation_matrix(big_probe_first: bool) -> OutcomeMatrix:
    """Ten problems, five easy. One no-think model answers easy ones right and confidently
    (and hard ones wrong, unsure); the other no-think model is useless. The small ladder is
    always wrong; the big ladder (2 per token) is right at its cap, and everywhere on easy ones.
    """
    easy = np.arange(10) < 5
    helpful = {"answer": _col(np.where(easy, 0, 1)), "prob": _col(np.where(easy, 0.95, 0.3))}
    # Confidently wrong: accepting it is never good.
    useless = {"answer": _col([3] * 10), "prob": _col([0.9] * 10)}
    small_nt, big_nt = (useless, helpful) if big_probe_first else (helpful, useless)
    return _matrix(
        {
            Config("small", "no-think", None): {**small_nt, "cost": 1.0},
            Config("big", "no-think", None): {**big_nt, "cost": 2.0},
            **_family("small", [[1] * 10] * 3, [[0.2] * 10] * 3),
            **_family(
                "big",
                [np.where(easy, 0, 2), np.where(easy, 0, 4), [0] * 10],
                [[0.3] * 10, [0.3] * 10, [0.9] * 10],
                per_token=2.0,
            ),
        }
    )


@pytest.mark.parametrize("big_probe_first", [False, True])
def test_probe_escalate_accepts_confident_cheap_answers_and_escalates_the_rest(
    big_probe_first: bool,
) -> None:
    matrix = _escalation_matrix(big_probe_first)
    policy = ProbeEscalate(0.001).fit(matrix)
    first, last = policy.steps_
    probe = Config("big" if big_probe_first else "small", "no-think", None)
    assert first.config == probe and first.escalate == "unsure"
    assert first.min_prob is not None and 0.3 < first.min_prob <= 0.95
    # The big chain with no probes on the way (probes would only add cost).
    assert last.exit is not None and last.exit.rungs == (40,) and last.config.model == "big"
    probe_cost = 2.0 if big_probe_first else 1.0
    assert policy.train_accuracy_ == 1.0
    assert policy.train_cost_ == pytest.approx(probe_cost + 0.5 * 80.0)
    assert policy.reached_ == [1.0, 0.5]
    assert "no-think" in policy.describe() and " > " in policy.describe()


@pytest.mark.parametrize("seed", [0, 1])
def test_step_options_compose_into_what_replay_gives(seed: int) -> None:
    """The search's per-step arrays (accept, correct, cost on the first chain), chained by
    hand problem by problem, give replay's figures for random 2- and 3-step plans."""
    matrix = _random_ladder(seed)
    families = chain_families(matrix)
    units = [ladder_unit(Ladder(matrix, f)) for f in families]
    units += [direct_unit(matrix, c) for c in direct_configs(matrix, families)]
    assert len(units) == 4
    rng = np.random.default_rng(seed)
    rows = np.arange(matrix.n_problems)
    for _ in range(60):
        size = int(rng.integers(2, 4))
        chosen = [units[i] for i in rng.permutation(len(units))[:size]]
        stages = [u.escalating for u in chosen[:-1]] + [chosen[-1].final]
        options = [int(rng.integers(len(s.steps))) for s in stages]
        correct, cost = np.zeros(matrix.n_problems), np.zeros(matrix.n_problems)
        for p in rows:
            for k, (stage, o) in enumerate(zip(stages, options, strict=True)):
                cost[p] += stage.cost[o, p]
                if k == size - 1 or stage.accept[o, p]:
                    correct[p] = stage.correct[o, p]
                    break
        steps = tuple(s.steps[o] for s, o in zip(stages, options, strict=True))
        result = replay_decision(matrix, rows, Decision(steps))
        np.testing.assert_allclose(result.correct, correct, err_msg=str(steps))
        np.testing.assert_allclose(result.cost, cost, err_msg=str(steps))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("price", [0.0, 0.003, 0.03])
def test_probe_escalate_beats_every_hand_built_plan_on_its_training_objective(
    seed: int, price: float
) -> None:
    matrix = _random_ladder(seed)
    policy = ProbeEscalate(price).fit(matrix)
    rows = np.arange(matrix.n_problems)

    def value(steps: tuple[Step, ...]) -> float:
        result = replay_decision(matrix, rows, Decision(steps))
        return result.accuracy - price * result.mean_cost

    chosen = value(policy.steps_)
    assert chosen == pytest.approx(policy.train_accuracy_ - price * policy.train_cost_)
    probes = [
        Step(Config(m, "no-think", None), escalate="unsure", min_prob=t)
        for m in ("small", "big")
        for t in (0.5, 0.9)
    ]
    finals = [
        Step(Config(m, "think", 40), exit=ExitRule((40,), window=2)) for m in ("small", "big")
    ]
    finals += [Step(Config(m, "no-think", None)) for m in ("small", "big")]
    alternatives = [(f,) for f in finals] + [(p, f) for p, f in itertools.product(probes, finals)]
    for plan in alternatives:
        if plan[0].config != plan[-1].config:
            assert chosen >= value(plan) - 1e-9, plan


# -- LevelExit ---------------------------------------------------------------------------------


def _level_matrix(with_levels: bool) -> OutcomeMatrix:
    """40 easy problems (right at every rung), 40 hard (right only at the cap) and 5 more hard
    ones; probes are never confident, so only the cap or the first rung make sense."""
    kinds = ["easy"] * 40 + ["hard"] * 45
    easy = np.array([k == "easy" for k in kinds])
    texts = [
        f"Add {i} and {i + 1} apples." if e else f"Integrate cosh of x to the power {i} dx."
        for i, e in enumerate(easy)
    ]
    levels = [1.0] * 40 + [2.0] * 40 + [3.0] * 5
    specs = _family(
        "m",
        [np.where(easy, 0, 1), np.where(easy, 0, 2), [0] * 85],
        [[0.3] * 85] * 3,
    )
    return _matrix(specs, levels=levels if with_levels else None, texts=texts)


def test_level_exit_caps_easy_levels_low_and_keeps_the_global_plan_for_small_levels() -> None:
    matrix = _level_matrix(with_levels=True)
    price = 0.005
    policy = LevelExit(price, signals=["prob"]).fit(matrix)
    assert policy.grouping_ == "level"
    global_rule = policy.global_step_.exit
    assert global_rule is not None and global_rule.rungs == (40,)
    assert policy.groups_ == [1.0, 2.0]  # level 3 has 5 problems: fewer than min_problems
    by_level = dict(zip(policy.groups_, policy.group_steps_, strict=True))
    assert by_level[1.0].exit is not None and by_level[1.0].exit.rungs == (10,)
    assert by_level[2.0].exit is not None and by_level[2.0].exit.cap == 40
    assert policy.train_accuracy_ == 1.0
    assert policy.train_cost_ == pytest.approx((40 * 10 + 45 * 40) / 85)
    # Unknown and unseen levels get the global plan.
    fresh = pd.DataFrame({"dataset": "d", "problem_id": ["a", "b", "c"], "level": [np.nan, 9, 3]})
    batch = policy.decide_batch(fresh)
    assert all(batch[i].steps == (policy.global_step_,) for i in range(3))
    # Shrinkage towards the whole training set: with a large pull, level 1 keeps the global cap.
    pulled = LevelExit(price, signals=["prob"], shrinkage=1000.0).fit(matrix)
    assert pulled.group_steps_[0] == pulled.global_step_


def test_level_exit_predicts_difficulty_from_text_when_levels_are_missing() -> None:
    # As many easy as hard problems, so the median prediction parts them.
    matrix = _level_matrix(with_levels=False).subset(np.arange(80))
    policy = LevelExit(0.005, signals=["prob"], difficulty_bins=2).fit(matrix)
    assert policy.grouping_ == "predicted" and policy.difficulty_ is not None
    fresh = pd.DataFrame(
        {
            "dataset": "d",
            "problem_id": ["x", "y"],
            "text": ["Add 500 and 501 apples.", "Integrate cosh of x to the power 500 dx."],
        }
    )
    easy, hard = (policy.decide({str(k): v for k, v in row.items()}) for _, row in fresh.iterrows())
    assert easy.steps[0].exit is not None and easy.steps[0].exit.rungs == (10,)
    assert hard.steps[0].exit is not None and hard.steps[0].exit.cap == 40
    assert policy.train_accuracy_ == 1.0


# -- no peeking, files, errors -----------------------------------------------------------------


def _shuffled_outcomes(matrix: OutcomeMatrix, rows: np.ndarray, seed: int) -> OutcomeMatrix:
    """The matrix with the outcomes and signals of `rows` shuffled among those rows."""
    rng = np.random.default_rng(seed)
    order = np.arange(matrix.n_problems)
    order[rows] = rng.permutation(rows)
    signals = matrix.signals
    assert signals is not None
    return OutcomeMatrix(
        problems=matrix.problems,
        configs=matrix.configs,
        correct=matrix.correct[order],
        cost=matrix.cost[order],
        tokens=matrix.tokens[order],
        answer=matrix.answer[order],
        signals=signals.take(order, slice(None)),
    )


POLICIES = [
    lambda: EarlyExit(0.002),
    lambda: ProbeEscalate(0.002),
    lambda: LevelExit(0.002, min_problems=5),
    lambda: LevelExit(0.002, grouping="predicted", min_problems=5),
]


@pytest.mark.parametrize("make", POLICIES)
def test_plans_for_held_out_problems_ignore_their_outcomes(make: Any) -> None:
    matrix = _level_matrix(with_levels=True)
    rng = np.random.default_rng(3)
    test_rows = np.sort(rng.choice(matrix.n_problems, 25, replace=False))
    train_rows = np.setdiff1d(np.arange(matrix.n_problems), test_rows)
    shuffled = _shuffled_outcomes(matrix, test_rows, seed=4)
    assert not np.array_equal(shuffled.correct, matrix.correct)
    plans = []
    for data in (matrix, shuffled):
        policy = make().fit(data.subset(train_rows))
        batch = policy.decide_batch(data.subset(test_rows).problems)
        plans.append([batch[i].to_dict() for i in range(len(batch))])
    assert plans[0] == plans[1]


@pytest.mark.parametrize("make", POLICIES)
def test_fitted_policies_round_trip_through_files(make: Any, tmp_path: Path) -> None:
    matrix = _level_matrix(with_levels=True)
    policy = make().fit(matrix)
    loaded = load_policy(save_policy(policy, tmp_path / "policy.json"))
    assert type(loaded) is type(policy)
    assert loaded.get_params() == policy.get_params()
    assert loaded.describe() == policy.describe()
    problems = matrix.problems.assign(level=[*matrix.problems["level"][:-2], np.nan, 7.0])
    before = policy.decide_batch(problems)
    after = loaded.decide_batch(problems)
    assert [after[i].to_dict() for i in range(len(after))] == [
        before[i].to_dict() for i in range(len(before))
    ]
    assert "\n" not in policy.describe() and len(policy.describe()) < 200


@pytest.mark.parametrize("cls", [EarlyExit, ProbeEscalate, LevelExit])
def test_policies_without_ladder_data_refuse_clearly(cls: type[Policy]) -> None:
    ladder = _level_matrix(with_levels=True)
    imported = OutcomeMatrix(
        problems=ladder.problems,
        configs=ladder.configs,
        correct=ladder.correct,
        cost=ladder.cost,
        tokens=ladder.tokens,
        answer=ladder.answer,
    )
    with pytest.raises(PolicyError, match="needs ladder data"):
        cls(0.01).fit(imported)  # type: ignore[call-arg]
    # Signals but no chains at all (every budget a separate run, no probes).
    no_chains = _matrix(_family("m", [[0] * 12] * 3, [[0.5] * 12] * 3), chains=False)
    with pytest.raises(PolicyError, match="needs ladder data"):
        cls(0.01).fit(no_chains)  # type: ignore[call-arg]
    # Chains, but the smaller budgets are other chains than the cap's: no ladder.
    separate = _matrix(_family("m", [[0] * 12] * 3, [[0.5] * 12] * 3))
    runs = separate.signals
    assert runs is not None
    chain = runs.chain.copy()
    chain[:, 1] += 7  # rung 20 comes from other chains than the cap's
    chain[:, 0] += 9
    broken = OutcomeMatrix(
        problems=separate.problems,
        configs=separate.configs,
        correct=separate.correct,
        cost=separate.cost,
        tokens=separate.tokens,
        answer=separate.answer,
        signals=Signals(runs.prob, runs.entropy, runs.natural, runs.probe_cost, chain),
    )
    with pytest.raises(PolicyError, match="no chain family"):
        cls(0.01).fit(broken)  # type: ignore[call-arg]


def test_a_family_that_was_not_recorded_is_named() -> None:
    with pytest.raises(PolicyError, match=r"model='nope'.*recorded ladders: m\|think"):
        EarlyExit(0.0, model="nope").fit(_matrix(EASY_HARD))


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


@pytest.mark.parametrize("cls", [EarlyExit, ProbeEscalate, LevelExit])
def test_policies_fit_the_builtin_sweep(cls: Any, builtin_matrix: OutcomeMatrix) -> None:
    from ponder.evaluate.catalog import price_scale

    matrix = builtin_matrix
    assert matrix.signals is not None and len(chain_families(matrix)) >= 2
    rows = np.arange(matrix.n_problems)
    max_uniform = max(
        replay_decision(matrix, rows, Decision((Step(c),))).mean_cost for c in matrix.configs
    )
    half = rows % 2 == 0
    train, test = matrix.subset(rows[half]), matrix.subset(rows[~half])
    for multiplier in (0.0, 1.0, 30.0):
        policy = cls(multiplier * price_scale(train)).fit(train)
        assert 0.0 <= policy.train_accuracy_ <= 1.0
        assert 0.0 < policy.train_cost_ <= max_uniform
        held_out = replay(test, policy.decide_batch(test.problems))
        assert np.isfinite(held_out.accuracy) and np.isfinite(held_out.mean_cost)
        assert held_out.mean_cost > 0.0
