"""Problem features: one-hots with unknown/other columns, numeric text features, hashed TF-IDF."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfTransformer

from ponder.policies.base import PolicyError
from ponder.policies.features import ProblemFeaturizer


def _problems() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "dataset": ["math500", "math500", "math500", "aime24"],
            "problem_id": ["a", "b", "c", "d"],
            "level": [1.0, 5.0, np.nan, 5.0],
            "subject": ["Algebra", "Algebra", "Geometry", None],
            "text": [
                "What is 2+2?",
                "Find all primes p with p^2+2 prime.",
                None,
                "Compute 12 x 34",
            ],
        }
    )


def _column(featurizer: ProblemFeaturizer, matrix: object, name: str) -> np.ndarray:
    dense = matrix.toarray()  # type: ignore[attr-defined]
    return np.asarray(dense[:, featurizer.feature_names().index(name)])


def test_one_hot_columns_cover_unknown_and_other() -> None:
    train = _problems()
    featurizer = ProblemFeaturizer(n_features=64, max_subjects=1).fit(train)
    x = featurizer.transform(train)
    assert x.shape == (4, len(featurizer.feature_names()))
    assert list(_column(featurizer, x, "level=1")) == [1, 0, 0, 0]
    assert list(_column(featurizer, x, "level=5")) == [0, 1, 0, 1]
    assert list(_column(featurizer, x, "level=unknown")) == [0, 0, 1, 0]
    # max_subjects=1 keeps the most frequent subject; the rest (and missing) is "other".
    assert list(_column(featurizer, x, "subject=Algebra")) == [1, 1, 0, 0]
    assert list(_column(featurizer, x, "subject=other")) == [0, 0, 1, 1]
    assert list(_column(featurizer, x, "dataset=aime24")) == [0, 0, 0, 1]
    # Missing text counts as empty: zero TF-IDF row, length feature at its minimum.
    hashed = x.toarray()[:, -64:]
    assert hashed[2].sum() == 0 and hashed[0].sum() > 0
    np.testing.assert_allclose(np.linalg.norm(hashed[[0, 1, 3]], axis=1), 1.0)


def test_unseen_categories_at_transform_time() -> None:
    featurizer = ProblemFeaturizer(n_features=32).fit(_problems())
    new = pd.DataFrame(
        {"dataset": ["gsm8k"], "problem_id": ["z"], "level": [3.0], "subject": ["Topology"]}
    )  # no text column at all
    x = featurizer.transform(new)
    assert _column(featurizer, x, "dataset=other")[0] == 1
    assert _column(featurizer, x, "level=unknown")[0] == 1
    assert _column(featurizer, x, "subject=other")[0] == 1


def test_tfidf_matches_sklearn_on_training_text() -> None:
    train = _problems()
    featurizer = ProblemFeaturizer(n_features=128).fit(train)
    ours = featurizer.transform(train).toarray()[:, -128:]
    counts = featurizer._hasher().transform(
        [t if isinstance(t, str) else "" for t in train["text"]]
    )
    theirs = TfidfTransformer(sublinear_tf=True).fit_transform(counts).toarray()
    np.testing.assert_allclose(ours, theirs, atol=1e-12)


def test_state_is_json_and_round_trips_exactly() -> None:
    featurizer = ProblemFeaturizer(n_features=256).fit(_problems())
    state = json.loads(json.dumps(featurizer.get_state()))
    restored = ProblemFeaturizer.from_state(state)
    other = _problems().iloc[::-1]
    assert (featurizer.transform(other) != restored.transform(other)).nnz == 0
    assert restored.feature_names() == featurizer.feature_names()


def test_bad_use_is_a_clear_error() -> None:
    with pytest.raises(PolicyError, match="zero problems"):
        ProblemFeaturizer().fit(_problems().iloc[:0])
    with pytest.raises(PolicyError, match="not fitted"):
        ProblemFeaturizer().transform(_problems())


def test_empty_frame_transforms_to_zero_rows() -> None:
    featurizer = ProblemFeaturizer(n_features=16).fit(_problems())
    assert featurizer.transform(_problems().iloc[:0]).shape == (0, len(featurizer.feature_names()))
