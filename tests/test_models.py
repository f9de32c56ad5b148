"""Training: the numpy pipeline against scikit-learn, every model on separable synthetic data, seeds, thresholds."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from instrument_id.errors import InstrumentIdError
from instrument_id.instruments import NUM_INSTRUMENTS
from instrument_id.pipeline import FeaturePipeline
from synthetic_features import make_featureset
from train.metrics import multilabel_metrics
from train.models import SKLEARN_MODELS, choose_thresholds, fit_pipeline, predict_proba, train_model

# a single multi-output tree shares its splits across 11 independent labels, so it is the weakest learner here
MIN_TEST_MACRO_F1 = {"rf": 0.8, "lr": 0.8, "knn": 0.8, "gnb": 0.8, "mlp": 0.8, "dt": 0.55}
MLP_TEST_SETTINGS = {"epochs": 8, "batch_size": 32}


def _test_macro_f1(trained, features) -> float:
    X, Y = features.subset("test")
    probabilities, decisions = trained.predict_features(X)
    return multilabel_metrics(Y, decisions, probabilities)["macro_f1"]


@pytest.fixture(scope="module")
def features():
    return make_featureset(900, separation=5.0)


@pytest.fixture(scope="module")
def small_features():
    return make_featureset(600, separation=5.0, seed=1)


@pytest.fixture(scope="module")
def trained_mlp(small_features):
    return train_model(small_features, "mlp", seed=0, **MLP_TEST_SETTINGS)


@pytest.fixture(scope="module")
def trained_sklearn(features):
    """name -> model trained with seed 0 on `features`, each trained once per module."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = train_model(features, name, seed=0)
        return cache[name]

    return get


def _raw_features(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(300, 26)) @ rng.normal(size=(26, 26)) * rng.uniform(0.1, 50, size=26) + 7.0  # correlated
    X[:, 5] = 3.25  # a constant feature: sklearn's scale_ is 1 there, not 0
    return X.astype(np.float32)


def test_feature_pipeline_reproduces_standard_scaler_then_pca():
    X_train, X_new = _raw_features(0), _raw_features(1)
    reference = make_pipeline(StandardScaler(), PCA(n_components=16, svd_solver="full")).fit(X_train)
    ours = fit_pipeline(X_train, 16)
    Z = ours.transform(X_new)
    assert Z.shape == (300, 16) and Z.dtype == np.float32
    np.testing.assert_allclose(Z, reference.transform(X_new), rtol=1e-4, atol=1e-4)
    scaler, pca = reference.named_steps["standardscaler"], reference.named_steps["pca"]
    copied = FeaturePipeline(scaler.mean_, scaler.scale_, pca.mean_, pca.components_, np.full(NUM_INSTRUMENTS, 0.5))
    np.testing.assert_allclose(copied.transform(X_new), reference.transform(X_new.astype(np.float64)), rtol=1e-5, atol=1e-4)


def test_feature_pipeline_json_round_trip_and_decisions():
    pipeline = fit_pipeline(_raw_features(), 4).with_thresholds(np.linspace(0.1, 0.9, NUM_INSTRUMENTS))
    restored = FeaturePipeline.from_dict(json.loads(json.dumps(pipeline.to_dict())))
    X = _raw_features(2)
    np.testing.assert_array_equal(restored.transform(X), pipeline.transform(X))
    probabilities = np.tile(restored.thresholds, (2, 1))  # (2, 11) exactly at the thresholds
    probabilities[1] -= 0.01
    decisions = restored.decide(probabilities)
    assert decisions.dtype == bool and decisions[0].all() and not decisions[1].any()


@pytest.mark.parametrize(
    "bad, message",
    [(np.zeros((3, 25)), "expected 26 features, got 25"), (np.full((2, 26), np.nan), "NaN")],
)
def test_feature_pipeline_refuses_bad_features(bad, message):
    with pytest.raises(InstrumentIdError, match=message):
        fit_pipeline(_raw_features(), 16).transform(bad)


def test_feature_pipeline_refuses_bad_stored_shapes():
    stored = fit_pipeline(_raw_features(), 16).to_dict()
    with pytest.raises(InstrumentIdError, match="thresholds"):
        FeaturePipeline.from_dict({**stored, "thresholds": [0.5] * 10})
    with pytest.raises(InstrumentIdError, match="pca_components"):
        FeaturePipeline.from_dict({**stored, "pca_components": [[0.0] * 25]})


def test_default_mlp_has_about_122k_parameters():
    from train.mlp import MlpArch, build_mlp

    model = build_mlp(16, MlpArch())
    assert abs(model.count_params() - 122_000) <= 0.02 * 122_000
    assert model.output_shape == (None, NUM_INSTRUMENTS)


@pytest.mark.parametrize("name", sorted(SKLEARN_MODELS))
def test_sklearn_models_learn_separable_data(features, trained_sklearn, name):
    trained = trained_sklearn(name)
    score = _test_macro_f1(trained, features)
    if name == "dummy":
        assert score < 0.6  # predicts the training prior for every window: the floor the others must beat
    else:
        assert score > MIN_TEST_MACRO_F1[name]


def test_mlp_learns_separable_data_and_uses_early_stopping_record(trained_mlp, small_features):
    assert _test_macro_f1(trained_mlp, small_features) > MIN_TEST_MACRO_F1["mlp"]
    record = trained_mlp.architecture
    assert record["n_inputs"] == 16 and record["param_count"] == trained_mlp.model.count_params()
    assert 1 <= record["best_epoch"] <= record["epochs_trained"] <= MLP_TEST_SETTINGS["epochs"]


def test_mlp_same_seed_same_predictions(small_features):
    X, _ = small_features.subset("test")
    first, again = (train_model(small_features, "mlp", seed=5, epochs=2, batch_size=128) for _ in range(2))
    np.testing.assert_array_equal(again.predict_proba_features(X), first.predict_proba_features(X))


def test_random_forest_same_seed_same_predictions_other_seed_differs(features, trained_sklearn):
    X, _ = features.subset("test")
    first = trained_sklearn("rf").predict_proba_features(X)
    np.testing.assert_array_equal(train_model(features, "rf", seed=0).predict_proba_features(X), first)
    assert not np.array_equal(train_model(features, "rf", seed=1).predict_proba_features(X), first)


def test_predict_proba_takes_the_positive_class_of_each_output(features, trained_sklearn):
    trained = trained_sklearn("rf")
    Z = trained.pipeline.transform(features.subset("test")[0])
    raw = trained.model.predict_proba(Z)  # list of 11 (n, 2) arrays
    expected = np.stack([p[:, list(trained.model.classes_[j]).index(1)] for j, p in enumerate(raw)], axis=1)
    np.testing.assert_allclose(predict_proba(trained.model, Z), expected, rtol=1e-6)


def test_thresholds_come_from_valid_never_test(features, trained_sklearn):
    baseline = trained_sklearn("lr").pipeline.thresholds
    test_rows, valid_rows = features.split == "test", features.split == "valid"
    flipped_test = features.Y.copy()
    flipped_test[test_rows] = 1 - flipped_test[test_rows]
    same = train_model(dataclasses.replace(features, Y=flipped_test), "lr", seed=0).pipeline.thresholds
    np.testing.assert_array_equal(same, baseline)
    flipped_valid = features.Y.copy()
    flipped_valid[valid_rows] = 1 - flipped_valid[valid_rows]
    changed = train_model(dataclasses.replace(features, Y=flipped_valid), "lr", seed=0).pipeline.thresholds
    assert not np.array_equal(changed, baseline)


def test_choose_thresholds_maximizes_f1_and_falls_back_without_positives():
    Y = np.zeros((6, NUM_INSTRUMENTS), dtype=np.uint8)
    Y[:3, 0] = 1
    P = np.full((6, NUM_INSTRUMENTS), 0.3)
    P[:3, 0], P[3:, 0] = 0.72, 0.68  # only thresholds in (0.68, 0.72] separate instrument 0 perfectly
    thresholds = choose_thresholds(Y, P)
    assert thresholds[0] == pytest.approx(0.7)
    assert np.all(thresholds[1:] == 0.5)


def test_label_never_positive_in_train_is_refused_by_name(features):
    Y = features.Y.copy()
    Y[features.split == "train", 7] = 0
    with pytest.raises(InstrumentIdError, match=r"no training windows contain oboe\(69\)"):
        train_model(dataclasses.replace(features, Y=Y), "rf")


def test_empty_split_and_unknown_model_are_refused(features):
    no_valid = dataclasses.replace(features, split=np.where(features.split == "valid", "train", features.split))
    with pytest.raises(InstrumentIdError, match="valid split is empty"):
        train_model(no_valid, "lr")
    with pytest.raises(InstrumentIdError, match="unknown model 'svm'; choose one of mlp, rf, dt, lr, knn, gnb, dummy"):
        train_model(features, "svm")


def test_multilabel_metrics_against_hand_counts():
    Y_true = np.array([[1, 0] + [0] * 9, [1, 1] + [0] * 9, [0, 1] + [0] * 9, [0, 0] + [0] * 9])
    Y_pred = np.array([[1, 0] + [0] * 9, [1, 0] + [0] * 9, [0, 1] + [0] * 9, [0, 1] + [0] * 9])
    Y_prob = np.where(Y_pred == 1, 0.9, 0.1)
    metrics = multilabel_metrics(Y_true, Y_pred, Y_prob)
    piano, harpsichord = metrics["per_instrument"]["piano(1)"], metrics["per_instrument"]["harpsichord(7)"]
    assert (piano["precision"], piano["recall"], piano["support"]) == (1.0, 1.0, 2)
    assert (harpsichord["precision"], harpsichord["recall"]) == (0.5, 0.5)
    assert metrics["macro_f1"] == pytest.approx((1.0 + 0.5) / 2)  # over the two instruments present
    assert metrics["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert metrics["subset_accuracy"] == pytest.approx(2 / 4)
    assert metrics["hamming_accuracy"] == pytest.approx(1 - 2 / 44)
    assert metrics["per_instrument"]["violin(41)"]["average_precision"] is None
    assert metrics["instruments_present"] == ["piano(1)", "harpsichord(7)"]
