"""The numpy forest walker against scikit-learn's own predict_proba."""

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from model_zoo.backends import sklearn_positive_proba
from model_zoo.fast_forest import FastForest


def _forest(seed: int, **params) -> tuple[RandomForestClassifier, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((600, 16)).astype(np.float32)
    Y = (X[:, :11] + 0.5 * rng.standard_normal((600, 11)) > 0.3).astype(int)  # (600, 11) multi-label
    forest = RandomForestClassifier(random_state=seed, n_jobs=1, **params).fit(X, Y)
    return forest, rng.standard_normal((200, 16)).astype(np.float32) * 1.5


def sklearn_reference(forest, X):
    return np.stack([p[:, 1] for p in forest.predict_proba(X)], axis=1)


def test_matches_sklearn_on_capped_and_deep_forests():
    for params in ({"n_estimators": 30, "max_leaf_nodes": 64, "min_samples_leaf": 3}, {"n_estimators": 20}):
        forest, X = _forest(1, **params)
        np.testing.assert_allclose(FastForest(forest).predict_positive(X), sklearn_reference(forest, X), atol=1e-6)


def test_inputs_exactly_on_a_threshold_go_left_like_sklearn():
    forest, X = _forest(2, n_estimators=10, max_leaf_nodes=32)
    fast = FastForest(forest)
    internal = fast.left != np.arange(len(fast.left))
    on_edge = np.zeros((50, 16), np.float32)
    for i, node in enumerate(np.flatnonzero(internal)[:50]):
        on_edge[i, fast.feature[node]] = np.float32(fast.threshold[node])
    np.testing.assert_allclose(fast.predict_positive(on_edge), sklearn_reference(forest, on_edge), atol=1e-6)


def test_backend_uses_it_and_agrees():
    forest, X = _forest(3, n_estimators=15, max_leaf_nodes=64)
    assert FastForest.supports(forest)
    np.testing.assert_allclose(sklearn_positive_proba(forest, X), sklearn_reference(forest, X), atol=1e-6)
