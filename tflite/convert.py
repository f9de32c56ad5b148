"""`instrument-id convert`: turn a verified MLP model folder into .tflite files and list them in its manifest.

Variants: float32; float16 weights; dynamic-range int8 weights; full-integer int8 (weights and activations,
calibrated on PCA values of the feature file's train split and of generated silence, noise and tones); and the raw-audio model, 2 s of audio in and
the 11 probabilities plus decisions out. The int8 model keeps float32 input and output: the converter puts a
QUANTIZE op after the input and a DEQUANTIZE op before the output, so callers never handle scales.
Every file carries an `instrument_id` metadata entry (variant, AudioParams, labels) read by model_zoo.tflite_model,
and is run against the Keras model on generated clips (tflite.export_check) before it enters the folder: a file
that differs beyond its variant's tolerance is not written, and convert fails naming it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from instrument_id.atomic import write_bytes_atomic
from instrument_id.errors import InstrumentIdError
from instrument_id.feature_sets import SEED26, FeatureSetSpec
from instrument_id.instruments import column_names
from instrument_id.native_logs import native_logs_filtered
from instrument_id.params import AudioParams
from instrument_id.pipeline import FeaturePipeline
from model_zoo.tflite_file import METADATA_NAME

# --quant name -> file written into the model folder
VARIANT_FILES: dict[str, str] = {
    "none": "model_float32.tflite",
    "float16": "model_float16.tflite",
    "dynamic": "model_dynamic.tflite",
    "int8": "model_int8.tflite",
    "raw": "model_raw_audio.tflite",
}
QUANT_CHOICES = (*VARIANT_FILES, "all")
# what --quant all writes for each feature set; a musicnn model's feature-level files read the embedding values.
# No int8-weight raw musicnn graph: measured, dynamic-range quantization of the network changed the decisions of
# 97% of 451 windows and ran 2x slower than float32 (59 vs 27 ms per window on one core)
ALL_VARIANTS: dict[str, tuple[str, ...]] = {
    "seed26": ("none", "float16", "dynamic", "int8", "raw"),
    "musicnn": ("none", "dynamic", "int8", "raw"),
}
RAW_VARIANTS = ("raw",)
REPRESENTATIVE_ROWS = 1000  # calibration rows: enough for stable activation ranges, seconds to run
METADATA_FORMAT = 1


def representative_pca_values(
    features_path: str | Path, pipeline: FeaturePipeline, params: AudioParams, n_rows: int = REPRESENTATIVE_ROWS,
    seed: int = 0, feature_set: FeatureSetSpec = SEED26,
) -> np.ndarray:
    """(n, k) pipeline values of up to n_rows seeded training windows of a feature file computed with the model's
    params, plus those of the generated calibration clips (silence, noise, tones: tflite.signals)."""
    from instrument_id.audio import frame_windows
    from model_zoo.featureset import load_featureset
    from model_zoo.featurizers import featurize
    from tflite.signals import calibration_clips

    features = load_featureset(features_path)
    if features.params != params:
        raise InstrumentIdError(f"{features_path}: computed with other audio settings than the model ({features.params})")
    X_train, _ = features.subset("train")  # (n_train, width)
    rows = np.random.default_rng(seed).permutation(len(X_train))[:n_rows]
    # measured on the shipped mlp: calibrated on training windows alone, int8 clipped loud noise (max |Δp| 0.33
    # against Keras; 0.22 on a test split); with these clips as well, 0.03 and 0.08
    windows = np.concatenate([frame_windows(clip, params) for clip in calibration_clips(params)])  # (m, samples)
    generated = featurize(windows, params, feature_set)  # (m, width)
    return pipeline.transform(np.concatenate([X_train[np.sort(rows)], generated]))  # (n + m, k)


def _calibration(values: np.ndarray) -> Iterator[list[np.ndarray]]:
    for row in values:  # one (1, k) batch per step, as the interpreter will see them
        yield [row[None, :].astype(np.float32)]


def _convert(function: Any, quant: str, representative: np.ndarray | None) -> bytes:
    """Convert a tf.function with builtin ops only, quantized as the variant asks (none/raw: float32)."""
    import tensorflow as tf

    # A tf.Module as the trackable makes the converter emit the serving_default SignatureDef, so inputs and
    # outputs keep their names ('audio', 'probabilities', 'decisions'); tf_features.convert_builtins_only passes
    # the function itself and its files have no signature, only tensors named Identity, Identity_1.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], tf.Module())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex ops
    if quant in ("float16", "dynamic", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quant == "int8":
        converter.representative_dataset = lambda: _calibration(representative)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with warnings.catch_warnings(), native_logs_filtered():  # int8 conversion prints its settings on fd 2
        # TF warns that float inputs carry no quantization statistics: intended, the QUANTIZE op uses calibrated ones
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected", category=UserWarning)
        return converter.convert()


def with_metadata(model: bytes, meta: dict[str, Any]) -> bytes:
    """The model with an `instrument_id` metadata entry holding meta as JSON (re-serialized by TF's flatbuffer tools)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model_object = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    model_object.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model_object.buffers) - 1
    model_object.metadata = [*(model_object.metadata or []), entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model_object))


def convert_variant(
    quant: str, keras_model: Any, pipeline: FeaturePipeline, params: AudioParams, representative: np.ndarray | None = None,
    feature_set: FeatureSetSpec = SEED26,
) -> bytes:
    """One variant's .tflite bytes, builtin ops only, with its metadata."""
    from tflite.graphs import dense_layers, feature_model_function, raw_audio_function

    if quant not in VARIANT_FILES:
        raise InstrumentIdError(f"unknown --quant {quant!r}; choose one of {', '.join(QUANT_CHOICES)}")
    if quant == "int8" and representative is None:
        raise InstrumentIdError("full-integer int8 needs a representative dataset: pass --features FILE")
    layers = dense_layers(keras_model)
    if quant in RAW_VARIANTS and feature_set.name not in ALL_VARIANTS:
        raise InstrumentIdError(f"no raw-audio graph for feature set {feature_set.label}; convert its feature-level variants")
    if quant in RAW_VARIANTS and feature_set.name == "musicnn":
        from model_zoo.embedding import load_keras_network
        from tflite.musicnn_graph import musicnn_raw_audio_function

        network, _ = load_keras_network()
        function = musicnn_raw_audio_function(network, feature_set, layers, pipeline, params)
    elif quant == "raw":
        function = raw_audio_function(layers, pipeline, params)
    else:
        function = feature_model_function(layers)
    model = _convert(function, quant, representative)
    meta = {
        "format": METADATA_FORMAT, "variant": quant, "input": "audio" if quant in RAW_VARIANTS else "pca_values",
        "params": params.to_dict(), "feature_set": feature_set.to_dict(), "labels": column_names(),
        # informational for raw models (the decisions output applies them); feature models use pipeline.json
        "thresholds": pipeline.thresholds.tolist(),
    }
    return with_metadata(model, meta)


def _register(model_dir: Path, filename: str, data: bytes, listed: dict[str, Any]) -> str:
    """Write one file and list it in the manifest; 'unchanged' when the manifest already lists these very bytes."""
    from model_zoo import add_file_to_manifest

    target = model_dir / filename
    if filename in listed:
        if listed[filename]["sha256"] == hashlib.sha256(data).hexdigest():
            return "unchanged"
        # add_file_to_manifest only adds; replacing a listed file would need a zoo function that re-lists it
        raise InstrumentIdError(
            f"{target}: already listed in the manifest with other content (e.g. converted with another --features); "
            "convert into a fresh copy of the model folder"
        )
    write_bytes_atomic(target, data)
    try:
        add_file_to_manifest(model_dir, filename)
    except BaseException:
        target.unlink(missing_ok=True)  # an unlisted file would make the folder fail verification
        raise
    return "wrote"


def convert_model_dir(model_dir: str | Path, quant: str, features_path: str | Path | None = None) -> list[Path]:
    """Convert a verified MLP folder to the chosen variant(s) ('all' for every one), check each file against the
    Keras model and list those that pass in the manifest; return their paths. Refused files are named in the error."""
    from model_zoo import load_model, verify_model_dir
    from model_zoo.zoo import manifest_feature_set
    from tflite.export_check import check_candidate

    if quant not in QUANT_CHOICES:
        raise InstrumentIdError(f"unknown --quant {quant!r}; choose one of {', '.join(QUANT_CHOICES)}")
    model_dir = Path(model_dir)
    manifest = verify_model_dir(model_dir)
    feature_set = manifest_feature_set(manifest)
    quants = list(ALL_VARIANTS.get(feature_set.name, ("none", "float16", "dynamic", "int8"))) if quant == "all" else [quant]
    if manifest["kind"] != "keras":
        raise InstrumentIdError(
            f"{model_dir}: holds a {manifest['kind']} model ({manifest['name']}); only MLP (Keras) folders convert to TFLite"
        )
    if "int8" in quants and features_path is None:
        raise InstrumentIdError("--quant int8 (and all) needs --features FILE: int8 is calibrated on its train split")
    zoo_model = load_model(model_dir)
    representative = None
    if "int8" in quants:
        representative = representative_pca_values(features_path, zoo_model.pipeline, zoo_model.params,
                                                   feature_set=zoo_model.feature_set)
    written, refused = [], []
    for name in quants:
        start = time.perf_counter()
        filename = VARIANT_FILES[name]
        data = convert_variant(name, zoo_model.model, zoo_model.pipeline, zoo_model.params, representative,
                               zoo_model.feature_set)
        check = check_candidate(data, filename, name, zoo_model)  # on the edge runtime, before the folder sees it
        print(check.line())
        listed = verify_model_dir(model_dir)["files"]
        if not check.passed:
            fate = "listed before this check, left as it was" if filename in listed else "not written"
            refused.append(f"{model_dir / filename}: {fate}; it {check.reason()}")
            continue
        status = _register(model_dir, filename, data, listed)
        print(f"{status} {model_dir / filename}: {len(data):,} bytes ({time.perf_counter() - start:.1f} s)")
        written.append(model_dir / filename)
    if refused:
        raise InstrumentIdError("; ".join(refused))
    return written


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `instrument-id convert`."""
    parser.add_argument("--model", required=True, type=Path, help="MLP model folder from `instrument-id train`")
    parser.add_argument(
        "--quant", required=True, choices=QUANT_CHOICES,
        help="none (float32), float16, dynamic (int8 weights), int8 (full integer, float32 in/out), "
             "raw (audio in, probabilities and decisions out), "
             "or all (every variant of the model's feature set)",
    )
    parser.add_argument("--features", type=Path, help="feature file whose train split calibrates int8 (needed for int8/all)")


def run(args: argparse.Namespace) -> int:
    """Convert and register the files."""
    convert_model_dir(args.model, args.quant, args.features)
    return 0
