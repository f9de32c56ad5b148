"""Raw audio -> musicnn log-mel -> the converted MTT_musicnn network -> standardization -> head, as one TF graph.

The log-mel is instrument_id.logmel in TensorFlow ops that lower to TFLite builtins (tf.signal.frame to GATHER /
RESHAPE, tf.signal.rfft to RFFT2D, REAL / IMAG before any math), with that module's own filter bank and window as
constants. The network is the shipped Keras model frozen to constants (model_zoo.embedding.frozen_function); the head
is the model's Dense layers (tflite.graphs). Like the seed raw-audio graph it takes one window, (1, window_samples)
at the log-mel rate (16 kHz), and answers probabilities and decisions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from instrument_id.errors import InstrumentIdError
from instrument_id.feature_sets import FeatureSetSpec
from instrument_id.logmel import LogMelParams, frames_for, mel_filter_bank
from instrument_id.params import AudioParams
from instrument_id.pipeline import FeaturePipeline
from tflite.graphs import AUDIO_INPUT, DECISIONS, PROBABILITIES, DenseLayer, float32_thresholds, mlp_graph, pca_graph

_LOG10 = float(np.log(10.0))


def logmel_graph(audio: tf.Tensor, params: LogMelParams) -> tf.Tensor:
    """(batch, samples) audio -> (batch, 1 + samples // hop, n_mels) log10(log_scale * mel + 1), as logmel.log_mel."""
    import scipy.signal

    half = params.n_fft // 2
    padded = tf.pad(audio, [[0, 0], [half, half]])  # centre: n_fft // 2 zeros each side
    frames = tf.signal.frame(padded, params.n_fft, params.stft_hop_samples, pad_end=False, axis=-1)  # (b, T, n_fft)
    window = tf.constant(scipy.signal.get_window("hann", params.n_fft, fftbins=True).astype(np.float32))
    spectrum = tf.signal.rfft(frames * window)  # (b, T, n_bins) complex
    real, imag = tf.math.real(spectrum), tf.math.imag(spectrum)
    power = real * real + imag * imag  # |S| ** 2 (params.power is 2, checked by the caller)
    mel = tf.matmul(power, tf.constant(np.ascontiguousarray(mel_filter_bank(params).T)))  # (b, T, n_mels)
    return tf.math.log(params.log_scale * mel + 1.0) / _LOG10


def musicnn_raw_audio_function(
    network: Any, spec: FeatureSetSpec, layers: list[DenseLayer], pipeline: FeaturePipeline, params: AudioParams
) -> tf.types.experimental.PolymorphicFunction:
    """tf.function (1, window_samples) audio -> {'probabilities': (1, 11), 'decisions': (1, 11) float 0/1}."""
    from model_zoo.embedding import frozen_function

    logmel_params = LogMelParams.from_dict(spec.settings["logmel"])
    if logmel_params.power != 2.0:
        raise InstrumentIdError(f"the raw-audio musicnn graph computes |S|^2; this feature set uses power {logmel_params.power}")
    if params.sample_rate_hz != logmel_params.sample_rate_hz:
        raise InstrumentIdError(f"the model reads {params.sample_rate_hz} Hz, its log-mel {logmel_params.sample_rate_hz} Hz")
    if layers[0].kernel.shape[0] != pipeline.n_components:
        raise InstrumentIdError(f"the head reads {layers[0].kernel.shape[0]} values, the pipeline gives {pipeline.n_components}")
    outputs = list(spec.settings["outputs"])
    _, frozen = frozen_function(network, frames_for(params.window_samples, logmel_params))
    names = sorted(network.output_names)  # the frozen function's list order (tf.nest sorts dict keys)
    thresholds = tf.constant(float32_thresholds(pipeline.thresholds))  # (11,)
    audio_spec = tf.TensorSpec([1, params.window_samples], tf.float32, name=AUDIO_INPUT)

    @tf.function(input_signature=[audio_spec])
    def raw_audio_model(audio: tf.Tensor) -> dict[str, tf.Tensor]:
        embedded = dict(zip(names, frozen(logmel_graph(audio, logmel_params))))  # {output: (1, width)}
        values = tf.concat([embedded[name] for name in outputs], axis=1)  # (1, spec.width)
        probabilities = mlp_graph(pca_graph(values, pipeline), layers)  # (1, 11)
        return {PROBABILITIES: probabilities, DECISIONS: tf.cast(probabilities >= thresholds, tf.float32)}

    return raw_audio_model
