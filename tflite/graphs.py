"""The TensorFlow graphs that become .tflite files: the MLP on PCA values, and raw audio -> features -> PCA -> MLP.

The MLP is rebuilt from the Keras model's Dense weights as constants: a Keras 3 model called inside a
tf.function converts to resource-variable ops (VAR_HANDLE/READ_VARIABLE) that the interpreter leaves
uninitialized, while constants fold into FULLY_CONNECTED ops with fused activations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from model_zoo.backends import quiet_tensorflow

quiet_tensorflow()
import tensorflow as tf  # noqa: E402

from instrument_id.errors import InstrumentIdError  # noqa: E402
from instrument_id.instruments import NUM_INSTRUMENTS  # noqa: E402
from instrument_id.params import AudioParams  # noqa: E402
from instrument_id.pipeline import FeaturePipeline  # noqa: E402
from tflite.tf_features import features_graph  # noqa: E402

FEATURE_INPUT = "pca_values"
AUDIO_INPUT = "audio"
PROBABILITIES = "probabilities"
DECISIONS = "decisions"

ACTIVATIONS: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "relu": tf.nn.relu,
    "sigmoid": tf.sigmoid,
    "linear": tf.identity,
}
# layers that are the identity at inference and are left out of the graph
INFERENCE_IDENTITY_LAYERS = ("InputLayer", "Dropout")


@dataclass(frozen=True)
class DenseLayer:
    """One Dense layer's weights as float32 arrays and its activation's name."""

    kernel: np.ndarray  # (n_in, n_out)
    bias: np.ndarray  # (n_out,)
    activation: str


def dense_layers(model: Any) -> list[DenseLayer]:
    """A Keras MLP's Dense layers in order; any other layer kind, or an output that is not 11 sigmoids, is refused."""
    layers = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in INFERENCE_IDENTITY_LAYERS:
            continue
        if kind != "Dense":
            raise InstrumentIdError(f"layer {layer.name!r} is a {kind}; only Dense/Dropout MLPs convert to TFLite")
        activation = layer.get_config()["activation"]
        if activation not in ACTIVATIONS:
            raise InstrumentIdError(f"layer {layer.name!r}: activation {activation!r} is not one of {sorted(ACTIVATIONS)}")
        kernel, bias = (np.asarray(w, dtype=np.float32) for w in layer.get_weights())
        layers.append(DenseLayer(kernel, bias, activation))
    if not layers or layers[-1].kernel.shape[1] != NUM_INSTRUMENTS or layers[-1].activation != "sigmoid":
        raise InstrumentIdError(f"the MLP must end in a Dense layer of {NUM_INSTRUMENTS} sigmoid units")
    return layers


def mlp_graph(z: tf.Tensor, layers: list[DenseLayer]) -> tf.Tensor:
    """(batch, k) PCA values -> (batch, 11) probabilities through the Dense layers."""
    for layer in layers:
        z = ACTIVATIONS[layer.activation](tf.matmul(z, tf.constant(layer.kernel)) + tf.constant(layer.bias))
    return z


def pca_graph(features: tf.Tensor, pipeline: FeaturePipeline) -> tf.Tensor:
    """(batch, width) features -> (batch, k) model inputs, as FeaturePipeline.transform in float32 (PCA optional)."""
    standardized = (features - pipeline.scaler_mean.astype(np.float32)) / pipeline.scaler_scale.astype(np.float32)
    if not pipeline.has_pca:
        return standardized  # (batch, width)
    centered = standardized - pipeline.pca_mean.astype(np.float32)  # (batch, width)
    return tf.matmul(centered, tf.constant(pipeline.pca_components.T.astype(np.float32)))  # (batch, k)


def float32_thresholds(thresholds: np.ndarray) -> np.ndarray:
    """(11,) float64 thresholds -> the smallest float32 values t32 >= t, so p >= t32 exactly when p >= t for float32 p."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    rounded = thresholds.astype(np.float32)
    return np.where(rounded < thresholds, np.nextafter(rounded, np.float32(np.inf)), rounded).astype(np.float32)


def feature_model_function(layers: list[DenseLayer]) -> tf.types.experimental.PolymorphicFunction:
    """tf.function (batch, k) PCA values -> {'probabilities': (batch, 11)}; the batch size is left open."""
    spec = tf.TensorSpec([None, layers[0].kernel.shape[0]], tf.float32, name=FEATURE_INPUT)

    @tf.function(input_signature=[spec])
    def feature_model(pca_values: tf.Tensor) -> dict[str, tf.Tensor]:
        return {PROBABILITIES: mlp_graph(pca_values, layers)}

    return feature_model


def raw_audio_function(
    layers: list[DenseLayer], pipeline: FeaturePipeline, params: AudioParams
) -> tf.types.experimental.PolymorphicFunction:
    """tf.function (1, window_samples) audio -> {'probabilities': (1, 11), 'decisions': (1, 11) float 0/1}."""
    if layers[0].kernel.shape[0] != pipeline.n_components:
        raise InstrumentIdError(f"the MLP reads {layers[0].kernel.shape[0]} values, the pipeline gives {pipeline.n_components}")
    spec = tf.TensorSpec([1, params.window_samples], tf.float32, name=AUDIO_INPUT)
    thresholds = tf.constant(float32_thresholds(pipeline.thresholds))  # (11,)

    @tf.function(input_signature=[spec])
    def raw_audio_model(audio: tf.Tensor) -> dict[str, tf.Tensor]:
        features = features_graph(audio, params)  # (1, samples) -> (1, 26)
        probabilities = mlp_graph(pca_graph(features, pipeline), layers)  # (1, k) -> (1, 11)
        return {PROBABILITIES: probabilities, DECISIONS: tf.cast(probabilities >= thresholds, tf.float32)}

    return raw_audio_model
