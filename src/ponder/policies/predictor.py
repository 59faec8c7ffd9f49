"""P(correct | problem, config) and expected cost, from features known before generation.

One L2 logistic regression per configuration, trained on the recorded samples of the training
problems (a problem with k correct out of n samples is two weighted rows, which is the same
likelihood as n sample rows), with C chosen by cross-validation over training problems only
(over a seeded subsample of at most `max_cv_problems` of them on large data: choosing one
regularization value needs far fewer problems than the final fit, which uses all).
A configuration whose training samples are all right or all wrong has nothing to learn and
predicts its base rate. The state is plain JSON: coefficients, intercepts, featurizer state.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

from ponder.decision import Config
from ponder.policies.base import PolicyError
from ponder.policies.features import ProblemFeaturizer, problem_levels

if TYPE_CHECKING:
    from ponder.outcomes.matrix import CellStats, OutcomeMatrix

DEFAULT_C_GRID: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
FALLBACK_C = 1.0  # when no inner fold has both classes to score a C on
_EPS = 1e-12


def calibration_error(p: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error: |mean predicted - mean observed| per equal-width bin of p,
    weighted by the bin's share of rows. NaN in p or y drops the row; NaN when none is left."""
    p = np.asarray(p, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    keep = ~(np.isnan(p) | np.isnan(y))
    p, y = p[keep], y[keep]
    if len(p) == 0:
        return float("nan")
    bins = np.clip((p * n_bins).astype(np.int64), 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins).astype(float)
    gap = np.bincount(bins, weights=p, minlength=n_bins) - np.bincount(
        bins, weights=y, minlength=n_bins
    )
    return float(np.abs(gap).sum() / count.sum())


def _weighted_log_loss(p: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-(w * (y * np.log(p) + (1 - y) * np.log(1 - p))).sum())


def _rows(
    features: sp.csr_matrix, hits: np.ndarray, misses: np.ndarray, rows: np.ndarray
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Weighted design: each problem once as a success (weight hits), once as a failure."""
    x = features[rows]
    design = sp.vstack([x, x], format="csr")
    y = np.concatenate([np.ones(len(rows)), np.zeros(len(rows))])
    w = np.concatenate([hits[rows], misses[rows]]).astype(float)
    keep = w > 0
    return design[keep], y[keep], w[keep]


def _logistic(c: float) -> LogisticRegression:
    # liblinear's primal Newton solver: deterministic and ~4x faster than lbfgs on these small
    # sparse designs; its intercept is a penalized column, scaled up so the penalty on it is
    # negligible (the base rate should not be shrunk towards 1/2).
    return LogisticRegression(
        C=c, solver="liblinear", intercept_scaling=100.0, max_iter=1000, random_state=0
    )


class CorrectnessPredictor:
    """Per-config P(correct) and expected cost per problem, fitted on training problems only.

    `per_level_cost`: expected cost is the config's training mean cost among problems of the
    same difficulty level when at least `min_level_problems` of them were recorded, else the
    config's overall training mean cost (also for unknown or unseen levels).
    """

    def __init__(
        self,
        *,
        c_grid: Sequence[float] = DEFAULT_C_GRID,
        n_folds: int = 3,
        per_level_cost: bool = True,
        min_level_problems: int = 3,
        n_features: int = 2**12,
        shared_c: bool = True,
        seed: int = 0,
        max_cv_problems: int = 2000,
    ) -> None:
        if not c_grid or any(c <= 0 for c in c_grid):
            raise PolicyError("c_grid needs at least one positive regularization value")
        if n_folds < 2:
            raise PolicyError(f"inner cross-validation needs at least 2 folds, got {n_folds}")
        self.c_grid = tuple(float(c) for c in c_grid)
        self.n_folds = n_folds
        self.per_level_cost = per_level_cost
        self.min_level_problems = min_level_problems
        self.n_features = n_features
        self.shared_c = shared_c
        self.seed = seed
        if max_cv_problems < 2 * n_folds:
            raise PolicyError(f"max_cv_problems must be at least {2 * n_folds}")
        self.max_cv_problems = max_cv_problems

    def settings(self) -> dict[str, Any]:
        return {
            "c_grid": list(self.c_grid),
            "n_folds": self.n_folds,
            "per_level_cost": self.per_level_cost,
            "min_level_problems": self.min_level_problems,
            "n_features": self.n_features,
            "shared_c": self.shared_c,
            "seed": self.seed,
            "max_cv_problems": self.max_cv_problems,
        }

    # -- fitting -----------------------------------------------------------------------------

    def fit(
        self, outcomes: OutcomeMatrix, configs: Sequence[Config] | None = None
    ) -> CorrectnessPredictor:
        configs = tuple(outcomes.configs if configs is None else configs)
        if not configs:
            raise PolicyError("no configurations to predict for")
        if outcomes.n_problems < 2:
            raise PolicyError(
                f"training data has {outcomes.n_problems} problem(s): a predictor needs at "
                "least 2 to learn from"
            )
        index = [outcomes.config_index(c) for c in configs]
        stats = outcomes.stats.take(slice(None), index)
        n_rec, hits = stats.recorded, stats.hits
        misses = n_rec - hits
        for k, config in enumerate(configs):
            if n_rec[:, k].sum() == 0:
                raise PolicyError(f"configuration {config.label} has no training samples")
            if np.isnan(stats.cost[:, k]).any():
                raise PolicyError(
                    f"cost in {outcomes.unit} is unknown for configuration {config.label} "
                    "(no token counts recorded): use --cost calls or a price table"
                )

        self.configs_ = configs
        problems_key = (_problems_digest(outcomes.problems), self.n_features)
        self.featurizer_, features = _featurize(outcomes.problems, problems_key)
        n_problems, n_columns = features.shape
        order = np.random.default_rng(self.seed).permutation(n_problems)
        folds = order % self.n_folds
        # Problems beyond the first max_cv_problems of the shuffled order sit out the inner CV.
        folds[order >= self.max_cv_problems] = -1
        coef = np.zeros((len(configs), n_columns))
        intercept = np.zeros(len(configs))
        constant = np.full(len(configs), np.nan)
        chosen_c = np.full(len(configs), np.nan)
        self.base_rate_ = hits.sum(axis=0) / n_rec.sum(axis=0)
        learn = (hits.sum(axis=0) > 0) & (misses.sum(axis=0) > 0)
        constant[~learn] = self.base_rate_[~learn]  # a single class: nothing to learn
        losses = np.full((len(configs), len(self.c_grid)), np.nan)
        # Each configuration's inner-CV losses and final model depend only on the problems'
        # features and that configuration's hits and misses, so they are cached per
        # configuration and shared by every policy (family, price) fitted on the same data.
        keys = {
            k: (
                *problems_key,
                self.seed,
                self.n_folds,
                self.c_grid,
                self.max_cv_problems,
                hashlib.sha256(hits[:, k].tobytes() + misses[:, k].tobytes()).hexdigest(),
            )
            for k in np.flatnonzero(learn).tolist()
        }
        for k, key in keys.items():
            if key not in _LOSSES:
                rows = np.flatnonzero(n_rec[:, k] > 0)
                _remember(
                    _LOSSES,
                    key,
                    self._cv_losses(features, hits[:, k], misses[:, k], rows, folds[rows]),
                )
            losses[k] = _LOSSES[key]
        chosen_c[learn] = self._choose_c(losses[learn])
        for k, key in keys.items():
            model_key = (*key, float(chosen_c[k]))
            if model_key not in _MODELS:
                rows = np.flatnonzero(n_rec[:, k] > 0)
                x, y, w = _rows(features, hits[:, k], misses[:, k], rows)
                model = _logistic(chosen_c[k]).fit(x, y, sample_weight=w)
                _remember(_MODELS, model_key, (model.coef_[0].copy(), float(model.intercept_[0])))
            coef[k], intercept[k] = _MODELS[model_key]
        self.coef_, self.intercept_ = coef, intercept
        self.constant_, self.c_ = constant, chosen_c
        self._fit_costs(outcomes, stats)
        return self

    def _cv_losses(
        self,
        features: sp.csr_matrix,
        hits: np.ndarray,
        misses: np.ndarray,
        rows: np.ndarray,
        folds: np.ndarray,
    ) -> np.ndarray:
        """Held-out log loss summed over inner folds, per C of the grid (NaN: no fold scored)."""
        loss = np.zeros(len(self.c_grid))
        scored = False
        if len(self.c_grid) > 1:
            rows, folds = rows[folds >= 0], folds[folds >= 0]
            for f in np.unique(folds):
                train, test = rows[folds != f], rows[folds == f]
                if hits[train].sum() == 0 or misses[train].sum() == 0 or len(test) == 0:
                    continue  # this fold's training part has one class: cannot fit
                x, y, w = _rows(features, hits, misses, train)
                xt, yt, wt = _rows(features, hits, misses, test)
                for g, c in enumerate(self.c_grid):
                    model = _logistic(c).fit(x, y, sample_weight=w)
                    loss[g] += _weighted_log_loss(model.predict_proba(xt)[:, 1], yt, wt)
                scored = True
        return loss if scored else np.full(len(self.c_grid), np.nan)

    def _choose_c(self, losses: np.ndarray) -> np.ndarray:
        """C per config ([K, G] losses): its own argmin, or one C for all (`shared_c`)."""
        grid = np.asarray(self.c_grid)
        out = np.full(len(losses), FALLBACK_C)
        if len(grid) == 1:
            return np.full(len(losses), grid[0])
        if self.shared_c:
            scored = ~np.isnan(losses).any(axis=1)
            if scored.any():
                out[:] = grid[np.argmin(losses[scored].sum(axis=0))]
            return out
        for k in np.flatnonzero(~np.isnan(losses).any(axis=1)).tolist():
            out[k] = grid[np.argmin(losses[k])]  # first (most regularized) on ties
        return out

    def _fit_costs(self, outcomes: OutcomeMatrix, stats: CellStats) -> None:
        total, count = stats.cost, stats.recorded  # [P, K]
        self.cost_mean_ = total.sum(axis=0) / count.sum(axis=0)
        levels = problem_levels(outcomes.problems)
        self.cost_levels_ = (
            [float(v) for v in np.unique(levels[~np.isnan(levels)])] if self.per_level_cost else []
        )
        by_level = np.tile(self.cost_mean_, (len(self.cost_levels_), 1))
        for i, level in enumerate(self.cost_levels_):
            at = levels == level
            enough = (count[at] > 0).sum(axis=0) >= self.min_level_problems
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = total[at].sum(axis=0) / count[at].sum(axis=0)
            by_level[i] = np.where(enough, mean, self.cost_mean_)
        self.cost_by_level_ = by_level

    # -- predicting --------------------------------------------------------------------------

    def _check(self) -> None:
        if not hasattr(self, "coef_"):
            raise PolicyError("the correctness predictor is not fitted")

    def predict_proba(self, problems: pd.DataFrame) -> np.ndarray:
        """[P, C]: predicted probability that one sample of config c solves problem p."""
        self._check()
        features = self.featurizer_.transform(problems)
        proba: np.ndarray = expit(features @ self.coef_.T + self.intercept_)
        fixed = ~np.isnan(self.constant_)
        proba[:, fixed] = self.constant_[fixed]
        return proba

    def expected_cost(self, problems: pd.DataFrame) -> np.ndarray:
        """[P, C]: expected cost of one sample (training mean, per level when known)."""
        self._check()
        levels = problem_levels(problems)
        out = np.tile(self.cost_mean_, (len(problems), 1))
        if self.cost_levels_:
            at = pd.Index(self.cost_levels_, dtype=float).get_indexer(pd.Index(levels))
            known = at >= 0
            out[known] = self.cost_by_level_[at[known]]
        return out

    # -- JSON state --------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        self._check()
        used = np.flatnonzero((self.coef_ != 0).any(axis=0))  # coefficients stored sparsely
        return {
            "settings": self.settings(),
            "configs": [c.to_dict() for c in self.configs_],
            "featurizer": self.featurizer_.get_state(),
            "n_columns": int(self.coef_.shape[1]),
            "coef_columns": [int(i) for i in used],
            "coef_values": [[float(v) for v in row[used]] for row in self.coef_],
            "intercept": [float(v) for v in self.intercept_],
            "constant": [None if math.isnan(v) else float(v) for v in self.constant_],
            "c": [None if math.isnan(v) else float(v) for v in self.c_],
            "base_rate": [float(v) for v in self.base_rate_],
            "cost_mean": [float(v) for v in self.cost_mean_],
            "cost_levels": list(self.cost_levels_),
            "cost_by_level": [[float(v) for v in row] for row in self.cost_by_level_],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> CorrectnessPredictor:
        settings = dict(state["settings"])
        predictor = cls(**settings)
        predictor.configs_ = tuple(Config.from_dict(c) for c in state["configs"])
        predictor.featurizer_ = ProblemFeaturizer.from_state(state["featurizer"])
        n_configs = len(predictor.configs_)
        coef = np.zeros((n_configs, int(state["n_columns"])))
        columns = np.asarray(state["coef_columns"], dtype=np.int64)
        values = np.asarray(state["coef_values"], dtype=float).reshape(n_configs, len(columns))
        coef[:, columns] = values
        predictor.coef_ = coef
        predictor.intercept_ = np.asarray(state["intercept"], dtype=float)
        predictor.constant_ = np.array(
            [np.nan if v is None else float(v) for v in state["constant"]]
        )
        predictor.c_ = np.array([np.nan if v is None else float(v) for v in state["c"]])
        predictor.base_rate_ = np.asarray(state["base_rate"], dtype=float)
        predictor.cost_mean_ = np.asarray(state["cost_mean"], dtype=float)
        predictor.cost_levels_ = [float(v) for v in state["cost_levels"]]
        predictor.cost_by_level_ = np.asarray(state["cost_by_level"], dtype=float).reshape(
            len(predictor.cost_levels_), n_configs
        )
        expected = len(predictor.featurizer_.feature_names())
        if coef.shape[1] != expected:
            raise ValueError(f"coefficients have {coef.shape[1]} columns, features {expected}")
        return predictor


# -- caches: a price sweep refits the same predictor on the same fold many times, and the
# families of one evaluation fit predictors over overlapping configurations on the same folds.

_CACHE: OrderedDict[tuple[str, ...], CorrectnessPredictor] = OrderedDict()
_CACHE_SIZE = 8
_LOSSES: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
_MODELS: OrderedDict[tuple[Any, ...], tuple[np.ndarray, float]] = OrderedDict()
_FEATURES: OrderedDict[tuple[Any, ...], tuple[ProblemFeaturizer, sp.csr_matrix]] = OrderedDict()
_PER_CONFIG_SIZE = 1024  # entries: a few MB of coefficients at most
_FEATURES_SIZE = 8


def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any, size: int = 0) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > (size or _PER_CONFIG_SIZE):
        cache.popitem(last=False)


def _featurize(
    problems: pd.DataFrame, key: tuple[Any, ...]
) -> tuple[ProblemFeaturizer, sp.csr_matrix]:
    """The featurizer fitted on these problems and their features (deterministic, cached)."""
    if key not in _FEATURES:
        featurizer = ProblemFeaturizer(int(key[1])).fit(problems)
        _remember(_FEATURES, key, (featurizer, featurizer.transform(problems)), _FEATURES_SIZE)
    _FEATURES.move_to_end(key)
    return _FEATURES[key]


def clear_caches() -> None:
    """Forget every cached fit (tests compare cached and fresh fits)."""
    for cache in (_CACHE, _LOSSES, _MODELS, _FEATURES):
        cache.clear()


def _problems_digest(problems: pd.DataFrame) -> str:
    hashed = pd.util.hash_pandas_object(problems.astype(object), index=False)
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()


def fit_predictor(
    outcomes: OutcomeMatrix, configs: Sequence[Config], **settings: Any
) -> CorrectnessPredictor:
    """A fitted predictor, reused when the same data, configs and settings were just fitted.

    Fitting is deterministic (seeded inner folds), so reuse returns exactly what a refit
    would; the key covers outcomes, costs, problem information, configs and settings.
    """
    predictor = CorrectnessPredictor(**settings)
    key = (
        outcomes.fingerprint(),
        _problems_digest(outcomes.problems),
        outcomes.unit,
        repr([c.label for c in configs]),
        repr(sorted(predictor.settings().items())),
    )
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    predictor.fit(outcomes, configs)
    _CACHE[key] = predictor
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return predictor
