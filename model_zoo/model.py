"""The one model interface: whatever runs a model (Keras, scikit-learn, a .tflite file), it answers the same calls.

`predict_features` takes feature-set values, `predict_windows` audio windows, `predict_clip` a whole clip; each
returns probabilities and decisions at the stored thresholds. A clip's answer is `clip_scores` of its windows:
each instrument's highest window probability, present when present in any window. Subclasses only say how their
inputs (pipeline values, or audio windows for a raw-audio graph) become (n, 11) probabilities and decisions.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from instrument_id.audio import frame_windows
from instrument_id.errors import InstrumentIdError
from instrument_id.feature_sets import FeatureSetSpec
from instrument_id.instruments import NUM_INSTRUMENTS, column_names
from instrument_id.params import AudioParams
from instrument_id.pipeline import FeaturePipeline
from model_zoo.featurizers import featurize


def clip_scores(window_probabilities: np.ndarray, window_decisions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 11) per-window probabilities and decisions -> (11,) clip probabilities (max) and decisions (any)."""
    return np.max(window_probabilities, axis=0), np.any(window_decisions, axis=0)


@dataclass(frozen=True)
class ClipPrediction:
    """One clip's answer: per-window scores, the clip's (clip_scores), and where the time went."""

    window_probabilities: np.ndarray  # (n_windows, 11) float32
    window_decisions: np.ndarray  # (n_windows, 11) bool
    hop_seconds: float
    padded: bool = False
    features_ms: float = 0.0  # windowing and features (raw-audio graphs: windowing only)
    model_ms: float = 0.0  # the model (raw-audio graphs: the features computed inside included)

    @property
    def probabilities(self) -> np.ndarray:
        """(11,) each instrument's highest window probability."""
        return clip_scores(self.window_probabilities, self.window_decisions)[0]

    @property
    def decisions(self) -> np.ndarray:
        """(11,) bool: present in any window."""
        return clip_scores(self.window_probabilities, self.window_decisions)[1]

    @property
    def n_windows(self) -> int:
        """How many windows were scored."""
        return len(self.window_probabilities)

    @property
    def window_start_seconds(self) -> np.ndarray:
        """(n_windows,) float64 start of each window in the clip."""
        return np.arange(self.n_windows, dtype=np.float64) * self.hop_seconds

    @property
    def instruments(self) -> list[str]:
        """Column names of the instruments judged present."""
        return [name for name, present in zip(column_names(), self.decisions) if present]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready result."""
        return {
            "instruments": self.instruments,
            "probabilities": {name: round(float(p), 6) for name, p in zip(column_names(), self.probabilities)},
            "n_windows": self.n_windows,
            "padded": self.padded,
            "features_ms": round(self.features_ms, 3),
            "model_ms": round(self.model_ms, 3),
        }


def check_clip(y: Any, name: str) -> np.ndarray:
    """(samples,) float32 mono audio, or InstrumentIdError naming the clip: not mono, empty, or not finite."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise InstrumentIdError(f"{name}: expected mono samples of shape (n,), got {y.shape}")
    if y.size == 0:
        raise InstrumentIdError(f"{name}: empty clip, no samples")
    if not np.isfinite(y).all():
        raise InstrumentIdError(f"{name}: audio contains NaN or infinite samples")
    return y


class Model:
    """A loaded model with its settings. Subclasses set the attributes below and implement `_score_inputs`."""

    path: Path | None
    name: str
    version: str
    kind: str  # "keras", "sklearn" or "tflite"
    runtime: str  # "zoo" (Keras / scikit-learn), "tflite" (an interpreter), or "trained" (in memory, not saved)
    params: AudioParams
    feature_set: FeatureSetSpec
    pipeline: FeaturePipeline | None  # a raw-audio graph standardizes and decides inside: None, or its folder's copy
    takes_audio: bool = False  # True: inputs are (n, window_samples) audio windows, not pipeline values
    manifest: dict[str, Any]  # the verified folder's manifest ({} for a lone .tflite file or an unsaved model)
    metrics: dict[str, Any]

    def _score_inputs(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, k) pipeline values, or (n, window_samples) audio when takes_audio -> ((n, 11) float32, (n, 11) bool)."""
        raise NotImplementedError

    def predict_features(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, width) feature-set values -> ((n, 11) probabilities, (n, 11) bool decisions)."""
        if self.takes_audio:
            raise InstrumentIdError(f"model {self.name} is a raw-audio graph: it takes audio windows, not features")
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.feature_set.width:
            raise InstrumentIdError(f"model {self.name} reads (n, {self.feature_set.width}) values of "
                                    f"{self.feature_set.label}, got shape {X.shape}")
        if len(X) == 0:
            return np.zeros((0, NUM_INSTRUMENTS), np.float32), np.zeros((0, NUM_INSTRUMENTS), bool)
        if not np.isfinite(X).all():  # finite samples of absurd amplitude overflow the power spectrum
            raise InstrumentIdError("the audio's features overflow (samples far outside -1..1?); send normalized audio")
        return self._score_inputs(self.pipeline.transform(X))  # (n, width) -> (n, k) -> (n, 11)

    def predict_proba_features(self, X: np.ndarray) -> np.ndarray:
        """(n, width) feature-set values -> (n, 11) probabilities."""
        return self.predict_features(X)[0]

    def predict_windows(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, window_samples) audio at params.sample_rate_hz -> ((n, 11) probabilities, (n, 11) bool decisions)."""
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim != 2 or windows.shape[1] != self.params.window_samples:
            raise InstrumentIdError(f"model {self.name} reads windows of {self.params.window_samples} samples, "
                                    f"got shape {windows.shape}")
        if self.takes_audio:
            if len(windows) == 0:
                return np.zeros((0, NUM_INSTRUMENTS), np.float32), np.zeros((0, NUM_INSTRUMENTS), bool)
            return self._score_inputs(windows)
        return self.predict_features(featurize(windows, self.params, self.feature_set))  # (n, samples) -> (n, width)

    def predict_clip(self, y: np.ndarray, name: str = "clip") -> ClipPrediction:
        """(samples,) mono audio at params.sample_rate_hz -> ClipPrediction; a clip shorter than the window is
        zero-padded with a warning on stderr; empty or non-finite audio raises InstrumentIdError."""
        y = check_clip(y, name)
        padded = len(y) < self.params.window_samples
        if padded:
            print(f"warning: {name} is {len(y) / self.params.sample_rate_hz:.3f} s long, shorter than the "
                  f"{self.params.window_seconds:g} s window; zero-padded to score it", file=sys.stderr)
        start = time.perf_counter()
        windows = frame_windows(y, self.params)  # (n_windows, window_samples)
        rows = windows if self.takes_audio else featurize(windows, self.params, self.feature_set)
        features_done = time.perf_counter()
        probabilities, decisions = self._score_inputs_checked(rows)
        end = time.perf_counter()
        return ClipPrediction(window_probabilities=probabilities, window_decisions=decisions,
                              hop_seconds=self.params.hop_seconds, padded=padded,
                              features_ms=1e3 * (features_done - start), model_ms=1e3 * (end - features_done))

    def _score_inputs_checked(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Audio windows or feature values (whichever the model takes) -> scores, checked finite."""
        probabilities, decisions = (self._score_inputs(rows) if self.takes_audio else self.predict_features(rows))
        if not np.isfinite(probabilities).all():
            raise InstrumentIdError(f"model {self.name} gave non-finite probabilities for this audio "
                                    "(samples far outside -1..1?)")
        return np.asarray(probabilities, np.float32), np.asarray(decisions, bool)

    @property
    def label(self) -> str:
        """The name reports give the model: its folder's name, whatever it was trained as (a lone .tflite file: its
        stem; an unsaved model: its name)."""
        if self.path is None or not self.manifest:
            return self.name
        return (self.path.parent if self.path.suffix == ".tflite" else self.path).name

    def describe(self) -> dict[str, Any]:
        """JSON-ready identity of the model."""
        return {"path": None if self.path is None else str(self.path), "label": self.label, "name": self.name,
                "version": self.version, "kind": self.kind, "runtime": self.runtime, "feature_set": self.feature_set.label,
                "takes_audio": self.takes_audio, "tflite_file": getattr(self, "tflite_file", None)}
