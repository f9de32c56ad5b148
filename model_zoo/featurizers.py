"""Compute a feature set's values for audio windows: one entry per named feature set, shared by every consumer.

Training's feature cache, evaluate, serving and the edge runtime all call `featurize`, so a model is always fed
the values it was trained on. `seed26` is instrument_id.features (numpy / numba); `musicnn` is the log-mel front
end (instrument_id.logmel) and the converted MTT_musicnn network (model_zoo.embedding), run by LiteRT.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np

from instrument_id.errors import InstrumentIdError
from instrument_id.feature_sets import SEED26, FeatureSetSpec
from instrument_id.features import compute_features, extractor_for
from instrument_id.params import AudioParams

MUSICNN = "musicnn"
MUSICNN_DEFAULT_OUTPUTS = ("max_pool",)


@functools.lru_cache(maxsize=4)
def _embedding(model_sha256: str) -> Any:
    """The verified converted musicnn model (loaded once per process), checked to be the one the spec names."""
    from model_zoo.embedding import load_embedding

    embedding = load_embedding()
    if embedding.version != model_sha256:
        raise InstrumentIdError(
            f"this model's musicnn feature set was made with embedding {model_sha256[:12]}, but "
            f"{embedding.path} holds {embedding.version[:12]}; re-create the model or restore that embedding"
        )
    return embedding


def musicnn_spec(outputs: tuple[str, ...] = MUSICNN_DEFAULT_OUTPUTS) -> FeatureSetSpec:
    """The musicnn feature set over the shipped converted model: the named outputs, concatenated."""
    from model_zoo.embedding import load_embedding

    embedding = load_embedding()
    unknown = [name for name in outputs if name not in embedding.widths]
    if unknown or not outputs:
        raise InstrumentIdError(f"unknown musicnn output(s) {unknown}; choose from {sorted(embedding.widths)}")
    settings = {"outputs": list(outputs), "model_sha256": embedding.version,
                "logmel": embedding.logmel_params.to_dict()}
    return FeatureSetSpec(name=MUSICNN, version=1, width=int(sum(embedding.widths[n] for n in outputs)),
                          settings_json=json.dumps(settings))


def spec_by_name(name: str) -> FeatureSetSpec:
    """The current definition of a named feature set ('seed26', 'musicnn' or 'musicnn:out1+out2')."""
    base, _, outputs = name.partition(":")
    if base == SEED26.name and not outputs:
        return SEED26
    if base == MUSICNN:
        return musicnn_spec(tuple(outputs.split("+")) if outputs else MUSICNN_DEFAULT_OUTPUTS)
    raise InstrumentIdError(f"unknown feature set {name!r}; choose seed26 or musicnn (musicnn:max_pool+mean_pool ...)")


def default_params(spec: FeatureSetSpec, **fields: Any) -> AudioParams:
    """AudioParams for a feature set: musicnn reads 16 kHz audio (its log-mel rate) and by default its models fit on
    the standardized embedding without PCA; seed26 the defaults."""
    if spec.name == MUSICNN:
        fields.setdefault("sample_rate_hz", int(spec.settings["logmel"]["sample_rate_hz"]))
        fields.setdefault("pca_components", 0)
    return AudioParams(**fields)


def check_params(spec: FeatureSetSpec, params: AudioParams) -> None:
    """Refuse audio settings the feature set cannot read (musicnn needs windows at its log-mel rate)."""
    if spec.name == MUSICNN and params.sample_rate_hz != spec.settings["logmel"]["sample_rate_hz"]:
        raise InstrumentIdError(f"feature set musicnn reads {spec.settings['logmel']['sample_rate_hz']} Hz windows, "
                                f"but the audio settings say {params.sample_rate_hz} Hz")


def _musicnn_values(windows: np.ndarray, params: AudioParams, spec: FeatureSetSpec) -> np.ndarray:
    from instrument_id.logmel import LogMelParams, log_mel

    settings = spec.settings
    embedding = _embedding(settings["model_sha256"])
    logmel_params = LogMelParams.from_dict(settings["logmel"])
    outputs = embedding.embed(log_mel(windows, logmel_params))  # (n, frames, 96) -> {name: (n, width)}
    return np.concatenate([outputs[name] for name in settings["outputs"]], axis=1).astype(np.float32)  # (n, width)


def featurize(windows: np.ndarray, params: AudioParams, spec: FeatureSetSpec, **options: Any) -> np.ndarray:
    """(n, window_samples) audio at params.sample_rate_hz -> (n, spec.width) float32 values of the feature set."""
    windows = np.asarray(windows, dtype=np.float32)
    if windows.ndim == 1:
        windows = windows[None, :]  # (1, samples)
    if spec == SEED26:
        values = compute_features(windows, params, **options)  # (n, 26)
    elif spec.name == MUSICNN:
        check_params(spec, params)
        values = _musicnn_values(windows, params, spec)  # (n, width)
    else:
        raise InstrumentIdError(f"this instrument-id cannot compute feature set {spec.label}; upgrade it")
    if values.shape != (len(windows), spec.width):
        raise InstrumentIdError(f"feature set {spec.label} gave values of shape {values.shape}")
    return values


def warm_up(params: AudioParams, spec: FeatureSetSpec) -> None:
    """Build filter banks, compile kernels and load networks now (before a server forks), not in the first request."""
    if spec == SEED26:
        extractor_for(params)
    elif spec.name == MUSICNN:
        check_params(spec, params)
        _embedding(spec.settings["model_sha256"])


