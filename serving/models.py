"""Served models: loaded only from verified model folders, fed by features computed once per request.

An MLP folder is served through its converted .tflite file on the edge runtime (microseconds per invoke, no
TensorFlow in the server); any folder can be served through the zoo's loader (Keras or skops). Either way the
folder is first checked file by file against its manifest (model_zoo.verify_model_dir), and the .tflite file
must be one the manifest lists.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from instrument_id.audio import frame_windows
from instrument_id.errors import InstrumentIdError
from instrument_id.feature_sets import FeatureSetSpec
from instrument_id.params import AudioParams
from instrument_id.pipeline import FeaturePipeline
from model_zoo import ZooModel, load_model, verify_model_dir
from model_zoo.featurizers import featurize, warm_up
from model_zoo.zoo import manifest_feature_set
from serving.config import ModelConfig
from serving.decode import DecodedClip

try:  # one BLAS thread per request: workers already fill the cores, and oversubscribed GEMMs ran 30x slower
    from threadpoolctl import ThreadpoolController

    _BLAS = ThreadpoolController()
except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn and the serve extra
    _BLAS = None

_ZOO_CACHE: dict[tuple[str, str], ZooModel] = {}  # (folder, manifest checksum) -> loaded model; skops loads take seconds
_ZOO_CACHE_LOCK = threading.Lock()


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


@dataclass(frozen=True)
class ModelResult:
    """One model's answer on one clip: per-window and whole-clip (max over windows) probabilities and decisions."""

    window_probabilities: np.ndarray  # (n_windows, 11)
    window_decisions: np.ndarray  # (n_windows, 11) bool
    window_start_seconds: np.ndarray  # (n_windows,)
    model_ms: float

    @property
    def probabilities(self) -> np.ndarray:
        """(11,) whole-clip probabilities: each instrument's highest window."""
        return self.window_probabilities.max(axis=0)

    @property
    def decisions(self) -> np.ndarray:
        """(11,) bool: present when present in any window."""
        return self.window_decisions.any(axis=0)


@dataclass
class ServedModel:
    """A verified model folder ready to answer: its identity, settings, metrics and the runtime that runs it."""

    name: str
    runtime: str
    path: Path
    manifest: dict[str, Any]
    metrics: dict[str, Any]
    params: AudioParams
    feature_set: FeatureSetSpec
    pipeline: FeaturePipeline
    tflite_file: str | None = None
    edge: Any = None  # tflite.runtime.EdgeModel when runtime == "tflite"
    zoo: ZooModel | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # a TFLite interpreter is not thread-safe

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

    def _window_outputs(self, analysis: ClipAnalysis) -> tuple[np.ndarray, np.ndarray]:
        """((n, 11) probabilities, (n, 11) bool decisions) for every window of the clip."""
        if self.edge is not None and self.edge.kind == "raw_audio":
            rows = analysis.windows(self.params)  # (n, window_samples): the graph computes the features
        elif self.edge is not None:
            rows = self.pipeline.transform(analysis.features(self.params, self.feature_set))  # (n, 26) -> (n, k)
        else:
            features = analysis.features(self.params, self.feature_set)  # (n, 26)
            probabilities = self.zoo.predict_proba_features(features)  # (n, 11)
            return probabilities, self.pipeline.decide(probabilities)
        with self._lock:
            return self.edge.predict_rows(rows)

    @property
    def scores_features(self) -> bool:
        """True when the model takes the 26 features (the streaming timeline needs that); False for a raw-audio graph."""
        return self.edge is None or self.edge.kind != "raw_audio"

    def predict_proba_features(self, features: np.ndarray) -> np.ndarray:
        """(n, width) features -> (n, 11) probabilities: the Scorer that instrument_id.timeline.analyze_signal calls."""
        if not self.scores_features:
            raise InstrumentIdError(f"model {self.name} runs a raw-audio TFLite graph, which takes windows, not features")
        if not np.isfinite(features).all():  # finite samples of absurd amplitude overflow the power spectrum
            raise InstrumentIdError("the audio's features overflow (samples far outside -1..1?); send normalized audio")
        if self.edge is None:
            with single_blas_thread():
                return self.zoo.predict_proba_features(features)
        with self._lock:
            return self.edge.predict_rows(self.pipeline.transform(features))[0]  # (n, 26) -> (n, k) -> (n, 11)

    def predict(self, analysis: ClipAnalysis) -> ModelResult:
        """Score every window of the clip; model_ms counts the model alone (resampling and features are the analysis's)."""
        features_before, decode_before = analysis.features_ms, analysis.clip.decode_ms
        start = time.perf_counter()
        probabilities, decisions = self._window_outputs(analysis)
        if not np.isfinite(probabilities).all():
            raise InstrumentIdError(f"model {self.name} gave non-finite probabilities for this audio (samples far outside -1..1?)")
        # the first model to need a sample rate resamples the clip (counted as decoding) and featurizes it
        elapsed_ms = (1e3 * (time.perf_counter() - start) - (analysis.features_ms - features_before)
                      - (analysis.clip.decode_ms - decode_before))
        n_windows = len(probabilities)
        return ModelResult(
            window_probabilities=np.asarray(probabilities, dtype=np.float32),
            window_decisions=np.asarray(decisions, dtype=bool),
            window_start_seconds=np.arange(n_windows, dtype=np.float64) * self.params.hop_seconds,
            model_ms=max(elapsed_ms, 0.0),
        )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InstrumentIdError(f"{path}: not readable JSON ({exc})") from None


def _load_zoo(path: Path, manifest: dict[str, Any]) -> ZooModel:
    """The zoo's verified loader, cached per folder and manifest checksum (a changed folder loads afresh)."""
    key = (str(path.resolve()), manifest["content_sha256"])
    with _ZOO_CACHE_LOCK:
        if key not in _ZOO_CACHE:
            _ZOO_CACHE[key] = load_model(path)
        return _ZOO_CACHE[key]


def _load_tflite(config: ModelConfig, manifest: dict[str, Any]) -> ServedModel:
    """A verified folder's listed .tflite file on the edge runtime, checked against the folder's settings."""
    from tflite.runtime import EdgeModel, read_pipeline_json

    tflite_path = config.path / config.tflite_file
    if config.tflite_file not in manifest["files"]:
        raise InstrumentIdError(
            f"{tflite_path}: not listed in {config.path / 'manifest.json'}; create it with "
            f"`instrument-id convert --model {config.path} --quant ...` or serve the folder with runtime \"zoo\""
        )
    pipeline, params, feature_set = read_pipeline_json(config.path / "pipeline.json", tflite_path)
    if params != AudioParams.from_dict(manifest["params"]) or feature_set != manifest_feature_set(manifest):
        raise InstrumentIdError(f"{config.path / 'pipeline.json'}: audio settings or feature set differ from the manifest's")
    edge = EdgeModel(tflite_path, num_threads=1)  # one thread: µs-sized invokes, and safe to fork after loading
    if edge.params != params:
        raise InstrumentIdError(f"{tflite_path}: converted with other audio settings than its folder's")
    return ServedModel(
        name=config.name, runtime="tflite", path=config.path, manifest=manifest,
        metrics=_read_json(config.path / "metrics.json"), params=params, feature_set=feature_set, pipeline=pipeline,
        tflite_file=config.tflite_file, edge=edge,
    )


def load_served_model(config: ModelConfig) -> ServedModel:
    """Verify the folder against its manifest, then load it with the configured runtime."""
    manifest = verify_model_dir(config.path)
    if config.runtime == "tflite":
        served = _load_tflite(config, manifest)
    else:
        zoo = _load_zoo(config.path, manifest)
        served = ServedModel(
            name=config.name, runtime="zoo", path=config.path, manifest=zoo.manifest, metrics=zoo.metrics,
            params=zoo.params, feature_set=zoo.feature_set, pipeline=zoo.pipeline, zoo=zoo,
        )
    warm_up(served.params, served.feature_set)  # banks built, kernels compiled, networks loaded before gunicorn forks
    return served
