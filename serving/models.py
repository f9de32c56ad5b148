"""Served models: opened only through model_zoo's one loader, fed by features computed once per request.

A folder is served through one of its listed .tflite files on the edge runtime (microseconds per invoke, no
TensorFlow in the server) or through its Keras / skops weights; either way model_zoo.open_model checks every file
against the folder's manifest first.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import numpy as np

from instrument_id.audio import frame_windows
from instrument_id.errors import InstrumentIdError
from instrument_id.feature_sets import FeatureSetSpec
from instrument_id.params import AudioParams
from model_zoo import ClipPrediction, Model, open_model
from model_zoo.featurizers import featurize
from serving.config import ModelConfig
from serving.decode import DecodedClip

try:  # one BLAS thread per request: workers already fill the cores, and oversubscribed GEMMs ran 30x slower
    from threadpoolctl import ThreadpoolController

    _BLAS = ThreadpoolController()
except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn and the serve extra
    _BLAS = None



def single_blas_thread() -> Any:
    """A context limiting BLAS to one thread (a no-op without threadpoolctl)."""
    return _BLAS.limit(limits=1, user_api="blas") if _BLAS is not None else contextlib.nullcontext()


def use_one_blas_thread() -> None:
    """Limit BLAS to one thread for the rest of this process (the server's: one thread per request)."""
    if _BLAS is not None:
        _BLAS.limit(limits=1, user_api="blas")


class ClipAnalysis:
    """One request's clip, windowed once per AudioParams and featurized once per feature set, shared by every model."""

    def __init__(self, clip: DecodedClip) -> None:
        self.clip = clip
        self.features_ms = 0.0
        self._windows: dict[AudioParams, np.ndarray] = {}
        self._features: dict[tuple[AudioParams, FeatureSetSpec], np.ndarray] = {}
        self.padded_rates: set[int] = set()

    def windows(self, params: AudioParams) -> np.ndarray:
        """(n_windows, window_samples) float32 at params' rate and hop; a short clip is zero-padded to one window."""
        if params not in self._windows:
            y = self.clip.at_rate(params.sample_rate_hz)  # (samples,)
            start = time.perf_counter()
            if len(y) < params.window_samples:
                self.padded_rates.add(params.sample_rate_hz)
            self._windows[params] = frame_windows(y, params)
            self.features_ms += 1e3 * (time.perf_counter() - start)
        return self._windows[params]

    def features(self, params: AudioParams, feature_set: FeatureSetSpec) -> np.ndarray:
        """(n_windows, width) float32 values of the feature set for windows(params)."""
        key = (params, feature_set)
        if key not in self._features:
            windows = self.windows(params)
            start = time.perf_counter()
            with np.errstate(over="ignore", invalid="ignore"), single_blas_thread():  # overflow is checked below
                features = featurize(windows, params, feature_set)  # (n, samples) -> (n, width)
            self.features_ms += 1e3 * (time.perf_counter() - start)
            if not np.isfinite(features).all():  # finite samples of absurd amplitude overflow the power spectrum
                raise InstrumentIdError("the audio's features overflow (samples far outside -1..1?); send normalized audio")
            self._features[key] = features
        return self._features[key]

    def warnings(self, params: AudioParams) -> list[str]:
        """Human-readable notes on how the clip was analyzed."""
        if params.sample_rate_hz in self.padded_rates:
            return [
                f"the clip is {self.clip.seconds:.3f} s long, shorter than the {params.window_seconds:g} s window; "
                "it was zero-padded to one window"
            ]
        return []


class ServedModel:
    """A verified model under its serving name: the one Model interface, a lock (a TFLite interpreter is not
    thread-safe), and what GET /v2/models tells about it."""

    def __init__(self, name: str, model: Model) -> None:
        self.name, self.model = name, model
        self._lock = threading.Lock()

    runtime = property(lambda self: self.model.runtime, doc="'tflite' or 'zoo'")
    params = property(lambda self: self.model.params, doc="the model's AudioParams")
    feature_set = property(lambda self: self.model.feature_set, doc="the model's feature set")
    pipeline = property(lambda self: self.model.pipeline, doc="the model's FeaturePipeline (thresholds)")
    manifest = property(lambda self: self.model.manifest, doc="the verified folder's manifest")
    metrics = property(lambda self: self.model.metrics, doc="the folder's metrics.json")
    tflite_file = property(lambda self: getattr(self.model, "tflite_file", None), doc="the .tflite file it runs")

    @property
    def version(self) -> str:
        """The weights' short sha256, as the zoo names versions."""
        return self.manifest["version"]

    def describe(self) -> dict[str, Any]:
        """JSON-ready identity, training fingerprint and test metrics for GET /v2/models."""
        test = self.metrics.get("splits", {}).get("test", {}) if isinstance(self.metrics, dict) else {}
        return {
            "name": self.name,
            "zoo_name": self.manifest["name"],
            "kind": self.manifest["kind"],
            "runtime": self.runtime,
            "tflite_file": self.tflite_file,
            "takes_audio": self.model.takes_audio,
            "version": self.version,
            "created_utc": self.manifest["created_utc"],
            "training_fingerprint": self.manifest["training_data"].get("corpus_fingerprint"),
            "training_data": self.manifest["training_data"],
            "params": self.params.to_dict(),
            "feature_set": self.feature_set.to_dict(),
            "thresholds": dict(zip(self.manifest["labels"], self.pipeline.thresholds.tolist())),
            "test_metrics": {key: value for key, value in test.items() if key != "per_instrument"},
            "test_per_instrument": test.get("per_instrument", {}),
        }

    def predict_proba_features(self, features: np.ndarray) -> np.ndarray:
        """(n, width) features -> (n, 11) probabilities: the Scorer that instrument_id.timeline.analyze_signal calls."""
        with self._lock, single_blas_thread():
            return self.model.predict_proba_features(features)

    def predict_windows(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, window_samples) audio -> ((n, 11) probabilities, (n, 11) bool decisions), for the timeline too."""
        with self._lock, single_blas_thread():
            return self.model.predict_windows(windows)

    @property
    def takes_audio(self) -> bool:
        """Whether the model reads audio windows (a raw-audio graph) rather than feature values."""
        return self.model.takes_audio

    def predict(self, analysis: ClipAnalysis) -> ClipPrediction:
        """Score every window of the clip; model_ms counts the model alone (resampling and features are the
        analysis's, shared by every model of the request)."""
        features_before, decode_before = analysis.features_ms, analysis.clip.decode_ms
        start = time.perf_counter()
        with self._lock, single_blas_thread():
            if self.model.takes_audio:
                probabilities, decisions = self.model.predict_windows(analysis.windows(self.params))
            else:
                probabilities, decisions = self.model.predict_features(analysis.features(self.params, self.feature_set))
        if not np.isfinite(probabilities).all():
            raise InstrumentIdError(f"model {self.name} gave non-finite probabilities for this audio (samples far outside -1..1?)")
        # the first model to need a sample rate resamples the clip (counted as decoding) and featurizes it
        elapsed_ms = (1e3 * (time.perf_counter() - start) - (analysis.features_ms - features_before)
                      - (analysis.clip.decode_ms - decode_before))
        return ClipPrediction(window_probabilities=np.asarray(probabilities, dtype=np.float32),
                              window_decisions=np.asarray(decisions, dtype=bool), hop_seconds=self.params.hop_seconds,
                              padded=self.params.sample_rate_hz in analysis.padded_rates, model_ms=max(elapsed_ms, 0.0))


def load_served_model(config: ModelConfig) -> ServedModel:
    """Open the configured folder through the zoo's one loader (verified against its manifest, warmed up)."""
    runtime = "tflite" if config.runtime == "tflite" else "zoo"
    return ServedModel(config.name, open_model(config.path, runtime, tflite_file=config.tflite_file))
