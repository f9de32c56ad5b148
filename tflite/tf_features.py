"""The 26 features as TensorFlow ops that convert to TFLite builtins only, mirroring instrument_id.features.

The filter banks, window and bin frequencies are the numpy extractor's own arrays, embedded as constants,
so the two paths share one definition of every bank. Ops are chosen for TFLite: tf.signal.frame lowers to
GATHER/RESHAPE, tf.signal.rfft to RFFT2D, and the complex spectrum is split with REAL/IMAG before any math.
Unlike the numpy path, the graph cannot reject NaN input; callers validate audio before invoking it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from instrument_id.errors import InstrumentIdError
from instrument_id.features import FeatureExtractor
from instrument_id.params import AudioParams

_AMIN_POWER = 1e-10  # librosa.power_to_db amin, as instrument_id.features
_ZCR_THRESHOLD = np.float32(1e-10)  # librosa.zero_crossings threshold, compared in float32 as numpy does
_TINY = float(np.finfo(np.float32).tiny)


class _Banks:
    """The numpy extractor's arrays as float32 tf constants."""

    def __init__(self, params: AudioParams):
        extractor = FeatureExtractor(params)
        self.window = tf.constant(extractor.window)  # (n_fft,)
        self.freqs_hz = tf.constant(extractor.freqs_hz)  # (n_bins,)
        self.power_bank = tf.constant(extractor.power_bank)  # (n_bins, n_mels + n_chroma)
        self.dct = tf.constant(extractor.dct)  # (n_mels, n_mfcc)


def _frames(signal: tf.Tensor, params: AudioParams) -> tf.Tensor:
    """(batch, samples + n_fft) padded signal -> (batch, n_frames, n_fft) frames every stft_hop_samples."""
    return tf.signal.frame(signal, params.n_fft, params.stft_hop_samples, pad_end=False, axis=-1)


def _edge_pad(audio: tf.Tensor, half: int) -> tf.Tensor:
    """np.pad(mode='edge') by half samples each side, built from tiled end samples."""
    first = tf.tile(audio[:, :1], [1, half])
    last = tf.tile(audio[:, -1:], [1, half])
    return tf.concat([first, audio, last], axis=1)  # (batch, samples + 2 * half)


def _spectra(frames: tf.Tensor, banks: _Banks, n_fft: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Windowed frames -> magnitude and power spectra, each (batch, n_frames, n_bins)."""
    spectrum = tf.signal.rfft(frames * banks.window, fft_length=[n_fft])  # complex64
    real, imag = tf.math.real(spectrum), tf.math.imag(spectrum)
    power = real * real + imag * imag
    return tf.sqrt(power), power


def _chroma_mean(chroma: tf.Tensor) -> tf.Tensor:
    """(batch, n_frames, n_chroma) -> (batch,) mean of per-frame max-normalized chroma."""
    chroma_max = tf.reduce_max(chroma, axis=-1, keepdims=True)
    chroma_max = tf.where(chroma_max < _TINY, tf.ones_like(chroma_max), chroma_max)
    return tf.reduce_mean(chroma / chroma_max, axis=[1, 2])


def _centroid_bandwidth(mag: tf.Tensor, freqs_hz: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(batch, n_frames, n_bins) magnitude -> frame means of centroid and bandwidth, each (batch,)."""
    total = tf.reduce_sum(mag, axis=-1)  # (batch, n_frames)
    safe = tf.where(total < _TINY, tf.ones_like(total), total)
    centroid = tf.reduce_sum(mag * freqs_hz, axis=-1) / safe
    # the explicit deviation avoids the cancellation of E[f^2] - E[f]^2 in float32
    deviation = freqs_hz - centroid[..., None]  # (batch, n_frames, n_bins)
    spread = tf.reduce_sum(mag * deviation * deviation, axis=-1) / safe
    return tf.reduce_mean(centroid, axis=1), tf.reduce_mean(tf.sqrt(spread), axis=1)


def _rolloff(mag: tf.Tensor, freqs_hz: tf.Tensor, rolloff_percent: float) -> tf.Tensor:
    """(batch, n_frames, n_bins) magnitude -> (batch,) frame mean of the rolloff frequency."""
    cumulative = tf.cumsum(mag, axis=-1)
    threshold = rolloff_percent * cumulative[..., -1:]
    # the cumulative sum never decreases, so the first bin reaching the threshold is the count of bins below it
    index = tf.reduce_sum(tf.cast(cumulative < threshold, tf.int32), axis=-1)  # (batch, n_frames)
    return tf.reduce_mean(tf.gather(freqs_hz, index), axis=1)


def _mfcc_means(mel_power: tf.Tensor, dct: tf.Tensor, top_db: float) -> tf.Tensor:
    """(batch, n_frames, n_mels) mel power -> (batch, n_mfcc) DCT of the frame-mean log-mel dB."""
    log_mel = (10.0 / np.log(10.0)) * tf.math.log(tf.maximum(mel_power, _AMIN_POWER))
    floor = tf.reduce_max(log_mel, axis=[1, 2], keepdims=True) - top_db
    log_mel = tf.maximum(log_mel, floor)
    return tf.matmul(tf.reduce_mean(log_mel, axis=1), dct)


def _zcr(audio: tf.Tensor, params: AudioParams) -> tf.Tensor:
    """(batch, samples) -> (batch,) frame mean of sign changes at frame positions 1..n_fft-1, over n_fft."""
    padded = _edge_pad(audio, params.n_fft // 2)
    # values within the threshold count as +0, so only clearly negative samples have the sign bit
    negative = tf.cast(padded < -_ZCR_THRESHOLD, tf.float32)
    frames = _frames(negative, params)  # (batch, n_frames, n_fft)
    changes = tf.abs(frames[..., 1:] - frames[..., :-1])
    return tf.reduce_mean(tf.reduce_sum(changes, axis=-1) / params.n_fft, axis=1)


def _features(audio: tf.Tensor, params: AudioParams, banks: _Banks) -> tf.Tensor:
    """(batch, samples) float32 -> (batch, 26) float32 with banks already built."""
    half = params.n_fft // 2
    padded = tf.pad(audio, [[0, 0], [half, half]])  # (batch, samples + n_fft)
    frames = _frames(padded, params)  # (batch, n_frames, n_fft)
    mag, power = _spectra(frames, banks, params.n_fft)
    n_bins = params.n_fft // 2 + 1
    n_frames = frames.shape[1]
    banked = tf.matmul(tf.reshape(power, [-1, n_bins]), banks.power_bank)  # (batch * n_frames, n_mels + n_chroma)
    banked = tf.reshape(banked, [-1, n_frames, params.n_mels + params.n_chroma])
    mel, chroma = banked[..., : params.n_mels], banked[..., params.n_mels :]

    rms = tf.reduce_mean(tf.sqrt(tf.reduce_mean(frames * frames, axis=-1)), axis=1)
    centroid, bandwidth = _centroid_bandwidth(mag, banks.freqs_hz)
    scalars = tf.stack(
        [
            _chroma_mean(chroma), rms, centroid, bandwidth,
            _rolloff(mag, banks.freqs_hz, params.rolloff_percent), _zcr(audio, params),
        ],
        axis=1,
    )  # (batch, 6)
    return tf.concat([scalars, _mfcc_means(mel, banks.dct, params.top_db)], axis=1)


def features_graph(audio: tf.Tensor, params: AudioParams) -> tf.Tensor:
    """(batch, samples) float32 audio with a static sample count -> (batch, 26) float32 features."""
    samples = audio.shape[-1] if audio.shape.rank == 2 else None
    if samples is None or samples < 2:
        raise InstrumentIdError(f"features_graph needs audio (batch, samples) with static samples, got {audio.shape}")
    return _features(tf.cast(audio, tf.float32), params, _Banks(params))


def features_function(params: AudioParams, batch_size: int = 1) -> tf.types.experimental.PolymorphicFunction:
    """A tf.function of features_graph on a fixed (batch_size, window_samples) float32 input."""
    banks = _Banks(params)
    spec = tf.TensorSpec([batch_size, params.window_samples], tf.float32, name="audio")

    @tf.function(input_signature=[spec])
    def features(audio: tf.Tensor) -> tf.Tensor:
        return _features(audio, params, banks)

    return features


def convert_builtins_only(function: tf.types.experimental.PolymorphicFunction) -> bytes:
    """Convert a tf.function with one input signature to a .tflite flatbuffer using TFLite builtin ops only."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], function)
    # no SELECT_TF_OPS: a graph needing a Flex op fails here instead of shipping a model the edge runtime cannot run
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def convert_features_to_tflite(params: AudioParams, batch_size: int = 1) -> bytes:
    """The features alone as a builtin-only .tflite: (batch_size, window_samples) audio -> (batch_size, 26)."""
    return convert_builtins_only(features_function(params, batch_size))
