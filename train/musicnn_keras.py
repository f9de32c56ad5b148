"""MTT_musicnn rebuilt as a Keras 3 functional model of built-in layers, and the copy of the TF1 checkpoint into it.

The layer tables follow musicnn/models.py's build_musicnn (front end '7774timbraltemporal', 64-filter dense mid end,
200-unit 'globalpool_dense' back end); each row names the checkpoint variables it takes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from instrument_id.errors import InstrumentIdError

N_MELS = 96
BN_EPSILON = 1e-3  # tf.compat.v1.layers.batch_normalization's default, read from the graph's FusedBatchNorm nodes
OUTPUTS = ("taggram", "penultimate", "mean_pool", "max_pool")  # per window: the shipped model's outputs
FRAME_OUTPUTS = ("timbral", "temporal", "cnn1", "cnn2", "cnn3")  # per frame: only the check model has them


@dataclass(frozen=True)
class FrontBlock:
    """A conv -> relu -> batch norm -> max over all frequencies block of the front end."""

    name: str
    filters: int
    kernel_frames: int
    kernel_mels: int
    family: str  # "timbral" (zero-padded 3 frames each side, valid) or "temporal" (TF 'same')
    conv: str  # checkpoint scope of the conv kernel and bias
    norm: str  # checkpoint scope of the batch norm


# int(1.6 * 128) = 204 timbral and int(1.6 * 32) = 51 temporal filters; kernels 7 x int(0.4 * 96), 7 x int(0.7 * 96)
FRONT_END = (
    FrontBlock("timbral_7x38", 204, 7, 38, "timbral", "conv2d", "batch_normalization_1"),
    FrontBlock("timbral_7x67", 204, 7, 67, "timbral", "conv2d_1", "batch_normalization_2"),
    FrontBlock("temporal_128", 51, 128, 1, "temporal", "conv2d_2", "batch_normalization_3"),
    FrontBlock("temporal_64", 51, 64, 1, "temporal", "conv2d_3", "batch_normalization_4"),
    FrontBlock("temporal_32", 51, 32, 1, "temporal", "conv2d_4", "batch_normalization_5"),
)
# mid end: (layer name, conv scope, batch norm scope); 64 filters, 7 frames, the whole feature axis, residual after 1
MID_END = (("cnn1", "conv2d_5", "batch_normalization_6"), ("cnn2", "conv2d_6", "batch_normalization_7"),
           ("cnn3", "conv2d_7", "batch_normalization_8"))
MID_FILTERS, MID_KERNEL_FRAMES = 64, 7
BACKEND_UNITS = 200
NORMS = {"input_norm": "batch_normalization", "pool_norm": "batch_normalization_9",
         "penultimate": "batch_normalization_10"}  # the other batch norms: keras layer name -> checkpoint scope
DENSES = {"penultimate_dense": "dense", "taggram": "dense_1"}


def _norm(name: str):
    import keras

    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=name)


def build_model(with_frames: bool = False):
    """(batch, frames, 96) log-mel -> {taggram 50, penultimate 200, mean_pool 753, max_pool 753} (+ frame outputs)."""
    import keras
    from keras import layers

    logmel = keras.Input((None, N_MELS), name="logmel")  # frames free: the network is convolutional in time
    image = layers.Reshape((-1, N_MELS, 1), name="as_image")(logmel)  # (b, T, 96, 1)
    normed = _norm("input_norm")(image)  # one channel: a scalar affine
    padded = layers.ZeroPadding2D(((3, 3), (0, 0)), name="pad_3_frames")(normed)  # (b, T + 6, 96, 1)
    front = {}
    for block in FRONT_END:
        source, padding = (padded, "valid") if block.family == "timbral" else (normed, "same")
        x = layers.Conv2D(block.filters, (block.kernel_frames, block.kernel_mels), padding=padding,
                          activation="relu", name=f"{block.name}_conv")(source)  # (b, T, F', filters)
        x = _norm(f"{block.name}_norm")(x)
        x = layers.MaxPooling2D((1, N_MELS - block.kernel_mels + 1), name=f"{block.name}_pool")(x)  # (b, T, 1, f)
        front[block.name] = layers.Reshape((-1, block.filters), name=f"{block.name}_frames")(x)  # (b, T, f)
    front_end = layers.Concatenate(name="front_end")(list(front.values()))  # (b, T, 561)
    mid, previous = [], front_end
    for index, (name, _, _) in enumerate(MID_END):
        # TF's [7, width] valid conv over a 3-frame zero-padded (b, T, width, 1) is a 'same' Conv1D over (b, T, width)
        x = layers.Conv1D(MID_FILTERS, MID_KERNEL_FRAMES, padding="same", activation="relu", name=f"{name}_conv")(previous)
        x = _norm(f"{name}_norm")(x)
        previous = x if index == 0 else layers.Add(name=name)([x, previous])  # (b, T, 64)
        mid.append(previous)
    features = layers.Concatenate(name="mid_end")([front_end, *mid])  # (b, T, 753)
    max_pool = layers.GlobalMaxPooling1D(name="max_pool")(features)  # (b, 753)
    mean_pool = layers.GlobalAveragePooling1D(name="mean_pool")(features)  # (b, 753)
    # the graph concatenates (b, 753, 1) max and mean on the last axis, then flattens: max and mean interleave
    pair = layers.Concatenate(name="max_mean")(
        [layers.Reshape((-1, 1), name="max_column")(max_pool), layers.Reshape((-1, 1), name="mean_column")(mean_pool)]
    )  # (b, 753, 2)
    flat = layers.Flatten(name="pooled")(pair)  # (b, 1506)
    x = _norm("pool_norm")(flat)
    x = layers.Dense(BACKEND_UNITS, activation="relu", name="penultimate_dense")(x)  # dropout: training only
    penultimate = _norm("penultimate")(x)
    taggram = layers.Dense(50, activation="sigmoid", name="taggram")(penultimate)
    outputs = {"taggram": taggram, "penultimate": penultimate, "mean_pool": mean_pool, "max_pool": max_pool}
    if with_frames:
        outputs["timbral"] = layers.Concatenate(name="timbral")([front["timbral_7x38"], front["timbral_7x67"]])
        outputs["temporal"] = layers.Concatenate(name="temporal")([front[b.name] for b in FRONT_END[2:]])
        outputs.update({name: tensor for (name, _, _), tensor in zip(MID_END, mid)})
    return keras.Model(logmel, outputs, name="MTT_musicnn")


def _take(variables: dict[str, np.ndarray], name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """One checkpoint variable, reshaped to the Keras layout when shape is given."""
    if name not in variables:
        raise InstrumentIdError(f"the checkpoint has no variable {name}; is it MTT_musicnn?")
    value = variables[name]
    return value.reshape(shape) if shape is not None else value


def _set(layer, weights: list[np.ndarray]) -> None:
    """Set a layer's weights, naming it when a shape does not match."""
    expected = [tuple(w.shape) for w in layer.get_weights()]
    if [tuple(w.shape) for w in weights] != expected:
        raise InstrumentIdError(f"checkpoint shapes {[w.shape for w in weights]} do not fit {layer.name} {expected}")
    layer.set_weights(weights)


def copy_weights(model, variables: dict[str, np.ndarray]) -> int:
    """Copy every checkpoint variable into the model's layers; returns how many arrays were set (all must be used)."""
    used: set[str] = set()

    def take(name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        used.add(name)
        return _take(variables, name, shape)

    def norm(layer_name: str, scope: str) -> None:
        _set(model.get_layer(layer_name), [take(f"{scope}/{v}") for v in ("gamma", "beta", "moving_mean", "moving_variance")])

    for layer_name, scope in NORMS.items():
        norm(layer_name, scope)
    for block in FRONT_END:
        _set(model.get_layer(f"{block.name}_conv"), [take(f"{block.conv}/kernel"), take(f"{block.conv}/bias")])
        norm(f"{block.name}_norm", block.norm)
    for name, conv, scope in MID_END:
        kernel = variables.get(f"{conv}/kernel")
        shape = None if kernel is None else (kernel.shape[0], kernel.shape[1], kernel.shape[3])  # drop in-channel 1
        _set(model.get_layer(f"{name}_conv"), [take(f"{conv}/kernel", shape), take(f"{conv}/bias")])
        norm(f"{name}_norm", scope)
    for layer_name, scope in DENSES.items():
        _set(model.get_layer(layer_name), [take(f"{scope}/kernel"), take(f"{scope}/bias")])
    unused = sorted(set(variables) - used)
    if unused:
        raise InstrumentIdError(f"checkpoint variables {unused} have no place in the Keras model")
    return len(used)
