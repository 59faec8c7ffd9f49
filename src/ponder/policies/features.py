"""Features of a problem known before generation, for policies that predict per request.

Difficulty level, subject, dataset, text length and digit count, and a hashed TF-IDF of the
problem text. Everything learned (category lists, idf weights, scaling) is plain JSON, so a
fitted policy file never needs pickle; hashing keeps the vocabulary out of the state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.preprocessing import normalize

from ponder.policies.base import PolicyError

TOKEN_PATTERN = r"(?u)\b\w+\b"  # keep one-character tokens: variables and digits matter in math
UNKNOWN = "unknown"
OTHER = "other"


def _column(problems: pd.DataFrame, name: str) -> pd.Series:
    if name in problems.columns:
        return problems[name].reset_index(drop=True)
    return pd.Series([None] * len(problems), dtype=object)


def _texts(problems: pd.DataFrame) -> list[str]:
    return [v if isinstance(v, str) else "" for v in _column(problems, "text")]


def problem_levels(problems: pd.DataFrame) -> np.ndarray:
    values: np.ndarray = pd.to_numeric(_column(problems, "level"), errors="coerce").to_numpy(
        dtype=float
    )
    return values


def _strings(problems: pd.DataFrame, name: str) -> np.ndarray:
    values = _column(problems, name)
    out: np.ndarray = np.where(values.isna(), "", values.astype(str)).astype(object)
    return out


def _one_hot(codes: np.ndarray, width: int) -> sp.csr_matrix:
    n = len(codes)
    data = np.ones(n)
    return sp.csr_matrix((data, (np.arange(n), codes)), shape=(n, width))


class ProblemFeaturizer:
    """Fit on training problems only; transform any problems frame to a sparse matrix.

    Columns: dataset one-hot (+ "other"), level one-hot (+ "unknown" for NaN or unseen
    levels), subject one-hot of the `max_subjects` most frequent (+ "other"), standardized
    log text length and log digit count, then `n_features` hashed word 1-2-gram TF-IDF.
    """

    def __init__(self, n_features: int = 2**12, max_subjects: int = 20) -> None:
        if n_features < 1 or max_subjects < 0:
            raise PolicyError("n_features must be positive and max_subjects non-negative")
        self.n_features = n_features
        self.max_subjects = max_subjects

    # -- fitting -----------------------------------------------------------------------------

    def _hasher(self) -> HashingVectorizer:
        return HashingVectorizer(
            n_features=self.n_features,
            ngram_range=(1, 2),
            alternate_sign=False,
            norm=None,
            token_pattern=TOKEN_PATTERN,
        )

    def fit(self, problems: pd.DataFrame) -> ProblemFeaturizer:
        if len(problems) == 0:
            raise PolicyError("cannot fit problem features on zero problems")
        self.datasets_ = sorted({str(d) for d in _strings(problems, "dataset") if d})
        levels = problem_levels(problems)
        self.levels_ = sorted({float(v) for v in levels[~np.isnan(levels)]})
        subjects = pd.Series(_strings(problems, "subject"))
        counts = subjects[subjects != ""].value_counts()
        # Most frequent first, ties by name, so the choice does not depend on row order.
        ranked = sorted(counts.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
        self.subjects_ = [str(k) for k, _ in ranked[: self.max_subjects]]
        numeric = self._numeric_raw(problems)
        self.numeric_mean_ = [float(v) for v in numeric.mean(axis=0)]
        scale = numeric.std(axis=0)
        self.numeric_scale_ = [float(v) if v > 0 else 1.0 for v in scale]
        tfidf = TfidfTransformer(sublinear_tf=True).fit(self._hasher().transform(_texts(problems)))
        self.idf_ = [float(v) for v in tfidf.idf_]
        return self

    # -- transforming ------------------------------------------------------------------------

    @staticmethod
    def _numeric_raw(problems: pd.DataFrame) -> np.ndarray:
        texts = pd.Series(_texts(problems), dtype=object).astype(str)
        length = texts.str.len().to_numpy(dtype=float)
        digits = texts.str.count(r"\d").to_numpy(dtype=float)
        return np.column_stack([np.log1p(length), np.log1p(digits)])

    def _check(self) -> None:
        if not hasattr(self, "idf_"):
            raise PolicyError("problem features are not fitted")

    def feature_names(self) -> list[str]:
        self._check()
        return (
            [f"dataset={d}" for d in self.datasets_]
            + [f"dataset={OTHER}"]
            + [f"level={v:g}" for v in self.levels_]
            + [f"level={UNKNOWN}"]
            + [f"subject={s}" for s in self.subjects_]
            + [f"subject={OTHER}"]
            + ["log_text_chars", "log_digits"]
            + [f"text_hash_{i}" for i in range(self.n_features)]
        )

    def transform(self, problems: pd.DataFrame) -> sp.csr_matrix:
        """Features of any problems frame (missing columns and text count as unknown)."""
        self._check()
        if len(problems) == 0:
            return sp.csr_matrix((0, len(self.feature_names())))
        dataset = pd.Index(self.datasets_).get_indexer(pd.Index(_strings(problems, "dataset")))
        dataset = np.where(dataset < 0, len(self.datasets_), dataset)
        levels = problem_levels(problems)
        level = pd.Index(self.levels_, dtype=float).get_indexer(pd.Index(levels))
        level = np.where(level < 0, len(self.levels_), level)
        subject = pd.Index(self.subjects_, dtype=object).get_indexer(
            pd.Index(_strings(problems, "subject"))
        )
        subject = np.where(subject < 0, len(self.subjects_), subject)
        numeric = (self._numeric_raw(problems) - np.array(self.numeric_mean_)) / np.array(
            self.numeric_scale_
        )
        # TF-IDF applied by hand with the stored idf: the formula of TfidfTransformer
        # (sublinear tf, idf weights, l2 rows), independent of sklearn's fitted internals.
        counts = self._hasher().transform(_texts(problems)).tocsr().astype(float)
        counts.data = 1.0 + np.log(counts.data)
        tfidf = normalize(counts @ sp.diags(np.asarray(self.idf_)), norm="l2")
        blocks = [
            _one_hot(dataset, len(self.datasets_) + 1),
            _one_hot(level, len(self.levels_) + 1),
            _one_hot(subject, len(self.subjects_) + 1),
            sp.csr_matrix(numeric),
            tfidf,
        ]
        out: sp.csr_matrix = sp.hstack(blocks, format="csr")
        return out

    def fit_transform(self, problems: pd.DataFrame) -> sp.csr_matrix:
        return self.fit(problems).transform(problems)

    # -- JSON state --------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        self._check()
        return {
            "n_features": self.n_features,
            "max_subjects": self.max_subjects,
            "datasets": list(self.datasets_),
            "levels": list(self.levels_),
            "subjects": list(self.subjects_),
            "numeric_mean": list(self.numeric_mean_),
            "numeric_scale": list(self.numeric_scale_),
            "idf": list(self.idf_),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ProblemFeaturizer:
        featurizer = cls(int(state["n_features"]), int(state["max_subjects"]))
        featurizer.datasets_ = [str(d) for d in state["datasets"]]
        featurizer.levels_ = [float(v) for v in state["levels"]]
        featurizer.subjects_ = [str(s) for s in state["subjects"]]
        featurizer.numeric_mean_ = [float(v) for v in state["numeric_mean"]]
        featurizer.numeric_scale_ = [float(v) for v in state["numeric_scale"]]
        featurizer.idf_ = [float(v) for v in state["idf"]]
        if len(featurizer.idf_) != featurizer.n_features:
            raise ValueError(
                f"idf has {len(featurizer.idf_)} weights for {featurizer.n_features} features"
            )
        return featurizer
