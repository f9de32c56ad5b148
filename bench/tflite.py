"""Benchmark: Keras against every .tflite variant of one MLP folder: size, latency, throughput, test macro-F1.

Latency is per 2 s clip, median of repeats, split into features (numpy features + PCA; for the raw-audio model the
features-only TFLite graph) and model. Throughput runs batches of clips end to end: numpy features for the whole
batch, then one call (Keras) or one invoke resized to the batch (feature .tflite files, whose batch size is open);
the raw-audio model takes one clip per invoke and loops. Macro-F1 is on the feature file's test split at the
pipeline's thresholds. The raw-audio model reads audio, so its agreement with
numpy features -> Keras is measured on the test recordings re-cut from --data (else on generated clips).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench.cli import report
from instrument_id.audio import frame_windows
from instrument_id.errors import InstrumentIdError
from instrument_id.features import compute_features
from instrument_id.timing import median_ms
from tflite.convert import ALL_VARIANTS, VARIANT_FILES

# the files `convert --quant all` writes for a 26-feature MLP, the kind this benchmark measures
TFLITE_VARIANTS = {"tflite_" + ("float32" if quant == "none" else quant): VARIANT_FILES[quant] for quant in ALL_VARIANTS["seed26"]}
RAW_VARIANT = "tflite_raw"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `bench tflite`."""
    parser.add_argument("--model", required=True, type=Path,
                        help="MLP model folder converted with --quant all, or a musicnn folder converted with --quant raw")
    parser.add_argument("--features", type=Path, help="the feature file the model was trained on (seed26 models)")
    parser.add_argument("--windows", type=int, default=200,
                        help="musicnn models: windows for the decision agreement (default 200)")
    parser.add_argument("--data", type=Path, help="its corpus: raw-audio agreement on the re-cut test recordings")
    parser.add_argument("--repeats", type=int, default=30, help="repeats per latency; medians reported (default 30)")
    parser.add_argument("--batch", type=int, default=64, help="clips per throughput batch (default 64)")


def _test_windows(data_dir: Path, features: Any, params: Any) -> tuple[np.ndarray, np.ndarray]:
    """(n, window_samples) audio and (n, 11) labels of the test recordings, cut as the feature file cut them."""
    from train.musicnet import corpus_fingerprint, list_recordings, read_recording
    from train.windows import window_labels

    recordings = list_recordings(data_dir)
    if corpus_fingerprint(data_dir, recordings) != features.config.get("corpus_fingerprint"):
        raise InstrumentIdError(f"{data_dir}: not the corpus the feature file was computed from (fingerprints differ)")
    test_ids = set(features.recording[features.split == "test"].tolist())
    windows, labels = [], []
    for rec in recordings:
        if rec.id in test_ids:
            y, notes = read_recording(rec, params)
            cut = frame_windows(y, params)  # (n_windows, window_samples)
            windows.append(cut)
            labels.append(window_labels(notes, len(cut), params))
    return np.concatenate(windows), np.concatenate(labels)


def _raw_split_ms(raw: Any, params: Any, clip: np.ndarray, repeats: int) -> tuple[float, float]:
    """(features ms, model ms) of the raw-audio model on one clip: the features-only TFLite graph's time, and the
    rest of the whole model's time; the two are timed alternately so load on the machine hits both alike."""
    from model_zoo.tflite_model import interpreter_class
    from tflite.tf_features import convert_features_to_tflite

    features_only = interpreter_class()[0](model_content=convert_features_to_tflite(params))
    features_only.allocate_tensors()
    index = features_only.get_input_details()[0]["index"]

    def invoke_features() -> None:
        features_only.set_tensor(index, clip[None, :])
        features_only.invoke()

    features_ms, total_ms = [], []
    for _ in range(repeats):
        features_ms.append(median_ms(invoke_features, 1))
        total_ms.append(median_ms(lambda: raw.predict_rows(clip[None, :]), 1))
    features = statistics.median(features_ms)
    return features, max(statistics.median(total_ms) - features, 0.0)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of the benchmark as one JSON-ready dict."""
    from bench.signals import music_like_clips
    from model_zoo import load_model
    from model_zoo.backends import keras_proba
    from model_zoo.featureset import load_featureset
    from model_zoo.tflite_model import EdgeModel
    from train.metrics import multilabel_metrics

    if args.repeats < 1 or args.batch < 1:
        raise InstrumentIdError("--repeats and --batch must be at least 1")
    zoo = load_model(args.model)
    if zoo.kind != "keras":
        raise InstrumentIdError(f"{args.model}: holds a {zoo.kind} model; bench tflite needs an MLP folder")
    features = load_featureset(args.features)
    if features.params != zoo.params:
        raise InstrumentIdError(f"{args.features}: computed with other audio settings than {args.model}")
    params, pipeline = zoo.params, zoo.pipeline
    X_test, Y_test = features.subset("test")
    Z_test = pipeline.transform(X_test)  # (n_test, k)
    clips = music_like_clips(args.batch, params)  # (batch, window_samples)

    def pca(windows: np.ndarray) -> np.ndarray:
        return pipeline.transform(compute_features(windows, params))  # (n, 26) -> (n, k)

    features_ms = median_ms(lambda: pca(clips[:1]), args.repeats)
    batch_features_ms = median_ms(lambda: pca(clips), max(3, args.repeats // 5))
    Z_one, Z_batch = pca(clips[:1]), pca(clips)

    def macro_f1(probabilities: np.ndarray, Y: np.ndarray = Y_test) -> float:
        return float(multilabel_metrics(Y, pipeline.decide(probabilities), probabilities)["macro_f1"])

    def row(size_bytes: int, predict: Callable[[np.ndarray], np.ndarray]) -> dict[str, Any]:
        model_ms = median_ms(lambda: predict(Z_one), args.repeats)
        batch_model_ms = median_ms(lambda: predict(Z_batch), max(3, args.repeats // 5))
        return {
            "size_bytes": size_bytes, "latency_ms_features": features_ms, "latency_ms_model": model_ms,
            "throughput_clips_per_s": args.batch / (1e-3 * (batch_features_ms + batch_model_ms)),
            "model_throughput_clips_per_s": args.batch / (1e-3 * batch_model_ms),
            "macro_f1": macro_f1(predict(Z_test)),
        }

    keras_size = (args.model / zoo.manifest["weights_file"]).stat().st_size
    variants = {
        "keras_predict": row(keras_size, lambda Z: zoo.model.predict(Z, verbose=0, batch_size=len(Z))),
        "keras_call": row(keras_size, lambda Z: keras_proba(zoo.model, Z)),
    }
    missing = []
    for name, filename in TFLITE_VARIANTS.items():
        path = args.model / filename
        if name == RAW_VARIANT:
            continue
        if not path.is_file():
            missing.append(filename)
            continue
        edge = EdgeModel(path)
        variants[name] = row(path.stat().st_size, lambda Z, edge=edge: edge.predict_rows(Z)[0])

    figures: dict[str, Any] = {
        "variants": variants, "batch_clips": args.batch, "repeats": args.repeats, "missing": missing,
        "model_dir": str(args.model), "features_file": str(args.features),
        # False when the test split comes from another corpus than the one the model was trained on
        "features_match_training_data": features.config.get("corpus_fingerprint")
        == zoo.manifest["training_data"].get("corpus_fingerprint"),
    }
    raw_path = args.model / TFLITE_VARIANTS[RAW_VARIANT]
    if raw_path.is_file():
        raw = EdgeModel(raw_path)
        in_graph_features_ms, in_graph_model_ms = _raw_split_ms(raw, params, clips[0], args.repeats)
        batch_ms = median_ms(lambda: raw.predict_rows(clips), max(3, args.repeats // 5))
        if args.data is not None:
            windows, Y_windows = _test_windows(args.data, features, params)
            source = f"{len(windows)} test windows re-cut from {args.data}"
        else:
            windows, Y_windows = clips, None
            source = f"{len(windows)} generated music-like clips (pass --data for the test recordings)"
        raw_probabilities, raw_decisions = raw.predict_rows(windows)
        reference = pipeline.decide(keras_proba(zoo.model, pca(windows)))  # numpy features -> Keras, (n, 11)
        variants[RAW_VARIANT] = {
            "size_bytes": raw_path.stat().st_size,
            "latency_ms_features": in_graph_features_ms,
            "latency_ms_model": in_graph_model_ms,
            "throughput_clips_per_s": args.batch / (1e-3 * batch_ms),
            "model_throughput_clips_per_s": args.batch / (1e-3 * batch_ms),
            "macro_f1": macro_f1(raw_probabilities, Y_windows) if Y_windows is not None else None,
        }
        figures["raw_audio_agreement_percent"] = 100.0 * float(np.mean((raw_decisions == reference).all(axis=1)))
        figures["raw_audio_agreement_source"] = source
        if Y_windows is not None:
            figures["raw_audio_keras_macro_f1_same_windows"] = macro_f1(keras_proba(zoo.model, pca(windows)), Y_windows)
    else:
        missing.append(raw_path.name)
    reference_f1 = variants["keras_call"]["macro_f1"]
    for name, values in variants.items():
        values["macro_f1_drop"] = None if values["macro_f1"] is None else reference_f1 - values["macro_f1"]
    if "tflite_int8" in variants:
        figures["int8_size_ratio_vs_float32"] = variants["tflite_int8"]["size_bytes"] / variants["tflite_float32"]["size_bytes"]
    return figures


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def run(args: argparse.Namespace) -> int:
    """Measure and print a table (or one JSON object)."""
    from model_zoo.zoo import manifest_feature_set, verify_model_dir

    if manifest_feature_set(verify_model_dir(args.model)).name != "seed26":
        from bench.embedding import measure_tflite, print_tflite

        report(args, measure_tflite(args), print_tflite)
        return 0
    if args.features is None:
        raise InstrumentIdError("--features: a seed26 model's benchmark needs the feature file it was trained on")
    report(args, measure(args), print_report)
    return 0


def print_report(figures: dict[str, Any]) -> None:
    """The figures as a text table."""
    print(f"per 2 s clip, median of {figures['repeats']}; throughput end to end in batches of {figures['batch_clips']}; "
          "macro-F1 on the feature file's test split")
    print(f"{'variant':15s} {'size KB':>9s} {'features ms':>12s} {'model ms':>9s} {'clips/s':>9s} {'macro-F1':>9s} {'drop':>8s}")
    for name, v in figures["variants"].items():
        print(
            f"{name:15s} {v['size_bytes'] / 1024:9.1f} {v['latency_ms_features']:12.3f} {v['latency_ms_model']:9.3f} "
            f"{v['throughput_clips_per_s']:9.1f} {_fmt(v['macro_f1'], '9.4f')} {_fmt(v['macro_f1_drop'], '+8.4f')}"
        )
    if "int8_size_ratio_vs_float32" in figures:
        print(f"int8 file is {figures['int8_size_ratio_vs_float32']:.3f} of float32")
    if "raw_audio_agreement_percent" in figures:
        print(f"raw-audio decisions equal numpy features -> Keras on {figures['raw_audio_agreement_percent']:.2f}% "
              f"of {figures['raw_audio_agreement_source']}")
    if not figures["features_match_training_data"]:
        print(f"note: {figures['features_file']} is not the feature file {figures['model_dir']} was trained on; its test split may differ")
    if figures["missing"]:
        print(f"not found (run `instrument-id convert --quant all`): {', '.join(figures['missing'])}")
