"""Feature sets as stored definitions, and a pipeline whose width comes from its arrays (PCA optional)."""

import json

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from instrument_id.errors import InstrumentIdError
from instrument_id.feature_sets import SEED26, FeatureSetSpec, replace_settings
from instrument_id.params import FEATURE_NAMES, AudioParams
from instrument_id.pipeline import FeaturePipeline


def test_spec_round_trips_through_json_and_compares_by_content():
    spec = FeatureSetSpec("musicnn", 1, 753, json.dumps({"outputs": ["max_pool"], "logmel": {"n_mels": 96}}))
    again = FeatureSetSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and hash(again) == hash(spec)
    assert SEED26.columns == list(FEATURE_NAMES) and spec.columns[:2] == ["musicnn0", "musicnn1"]
    assert replace_settings(spec, outputs=["mean_pool"]) != spec


@pytest.mark.parametrize("stored, message", [
    ({"name": "seed26", "version": 1, "width": 26}, "exactly the keys"),
    ({"name": "seed26", "version": 1, "width": 26, "settings": {}, "extra": 1}, "exactly the keys"),
    ({"name": "seed26", "version": 1, "width": 0, "settings": {}}, "width must be a positive integer"),
])
def test_spec_refuses_missing_unknown_or_bad_fields(stored, message):
    with pytest.raises(InstrumentIdError, match=message):
        FeatureSetSpec.from_dict(stored)


def test_check_same_names_both_feature_sets():
    other = FeatureSetSpec("musicnn", 1, 753)
    with pytest.raises(InstrumentIdError, match="seed26 v1 \\(26 values\\).*musicnn v1 \\(753 values\\)"):
        SEED26.check_same(other, "the model", "the feature cache")


def test_pipeline_without_pca_standardizes_any_width():
    X = np.random.default_rng(0).normal(3.0, 2.0, size=(200, 40))  # (n, 40)
    scaler = StandardScaler().fit(X)
    pipeline = FeaturePipeline(scaler.mean_, scaler.scale_, np.zeros(0), np.zeros((0, 40)), np.full(11, 0.5))
    assert pipeline.width == 40 and not pipeline.has_pca and pipeline.n_components == 40
    np.testing.assert_allclose(pipeline.transform(X), scaler.transform(X), rtol=1e-5, atol=1e-5)
    again = FeaturePipeline.from_dict(json.loads(json.dumps(pipeline.to_dict())))
    np.testing.assert_array_equal(again.transform(X), pipeline.transform(X))
    with pytest.raises(InstrumentIdError, match="expected 40 features, got 26"):
        pipeline.transform(X[:, :26])


def test_params_allow_no_pca_and_refuse_negative():
    assert AudioParams(pca_components=0).pca_components == 0
    with pytest.raises(InstrumentIdError, match="pca_components"):
        AudioParams(pca_components=-1)


def test_fit_pipeline_without_pca_and_refusing_more_components_than_width():
    from train.models import fit_pipeline

    X = np.random.default_rng(1).normal(size=(100, 30))  # (n, 30)
    assert not fit_pipeline(X, 0).has_pca and fit_pipeline(X, 8).n_components == 8
    with pytest.raises(InstrumentIdError, match="0 \\(no PCA\\) .. 30"):
        fit_pipeline(X, 31)


def test_audio_params_from_dict_refuses_missing_and_unknown_fields():
    from instrument_id.params import AudioParams

    stored = AudioParams().to_dict()
    assert AudioParams.from_dict(stored) == AudioParams()
    partial = {k: v for k, v in stored.items() if k != "hop_seconds"}
    with pytest.raises(InstrumentIdError, match=r"\['hop_seconds'\] are missing"):
        AudioParams.from_dict(partial)
    with pytest.raises(InstrumentIdError, match="unknown audio settings"):
        AudioParams.from_dict({**stored, "gain": 2})
