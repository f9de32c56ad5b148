"""The musicnn embedding path, timed on one core: `bench features --feature-set musicnn` and `bench tflite` on a
musicnn model folder.

features: ours (numpy log-mel + the converted network on LiteRT) against the reference path (librosa's
melspectrogram + the same network through Keras / TensorFlow), per 2 s window, batched and one window a call, in
the same run; plus how far the two embeddings are apart. tflite: the folder's raw-audio graph (log-mel, network,
standardization and head in one LiteRT file) against the folder's zoo path (numpy log-mel, the embedding, Keras head):
ms per window, file sizes, and how often the two decide the same for every instrument of a window.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from instrument_id.errors import InstrumentIdError
from instrument_id.timing import median_ms


def one_tensorflow_thread() -> None:
    """TensorFlow's op pools limited to one thread (before its first op), so the Keras reference runs on one core."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialized in this process: it keeps its pools
        pass


def _windows(n: int, params: Any) -> np.ndarray:
    from bench.signals import music_like_clips

    return music_like_clips(n, params)  # (n, window_samples)


def measure_features(args: argparse.Namespace) -> dict[str, Any]:
    """ms per 2 s window of the musicnn feature set: ours (LiteRT) vs librosa + Keras, one core, same run."""
    import librosa

    from instrument_id.logmel import log_mel
    from model_zoo.embedding import load_embedding
    from model_zoo.featurizers import default_params, spec_by_name

    spec = spec_by_name(args.feature_set)
    params = default_params(spec)
    one_tensorflow_thread()  # the reference on one core too, as ours
    ours = load_embedding(runtime="tflite", num_threads=1)
    keras_path = load_embedding(runtime="keras")
    lp = ours.logmel_params
    clips = _windows(args.clips, params)

    def ours_embed(batch: np.ndarray) -> dict[str, np.ndarray]:
        return ours.embed(log_mel(batch, lp))  # (n, samples) -> (n, frames, 96) -> {name: (n, width)}

    def reference_embed(batch: np.ndarray) -> dict[str, np.ndarray]:
        mel = np.stack([librosa.feature.melspectrogram(y=c, sr=lp.sample_rate_hz, n_fft=lp.n_fft,
                                                        hop_length=lp.stft_hop_samples, n_mels=lp.n_mels).T
                        for c in batch])  # (n, frames, 96)
        return keras_path.embed(np.log10(lp.log_scale * mel + 1.0))

    ours_embed(clips[:2]), reference_embed(clips[:2])  # warm-up: interpreter, graph tracing, librosa caches
    batch_ms = median_ms(lambda: ours_embed(clips), args.repeats) / len(clips)
    single_ms = median_ms(lambda: ours_embed(clips[:1]), args.repeats)
    logmel_ms = median_ms(lambda: log_mel(clips, lp), args.repeats) / len(clips)
    reference_ms = median_ms(lambda: reference_embed(clips), max(3, args.repeats // 2)) / len(clips)
    a, b = ours_embed(clips), reference_embed(clips)
    worst = max(float(np.max(np.abs(a[name] - b[name]))) for name in spec.settings["outputs"])
    tflite_file = ours.folder / ours.manifest["files_by_runtime"]["tflite"]
    return {
        "feature_set": spec.label, "window_seconds": params.window_seconds, "sample_rate_hz": params.sample_rate_hz,
        "embedding_ms_per_window_batched": round(batch_ms, 3),
        "embedding_ms_per_window_single": round(single_ms, 3),
        "logmel_ms_per_window_batched": round(logmel_ms, 4),
        "reference_librosa_keras_ms_per_window_batched": round(reference_ms, 3),
        "speedup_vs_reference_batched": round(reference_ms / batch_ms, 2),
        "target_ms_per_window": 10.0,
        "max_abs_difference_vs_reference": worst,
        "embedding_tflite_bytes": tflite_file.stat().st_size,
        "batch_windows": len(clips), "repeats": args.repeats, "threads": 1,
    }


def print_features(f: dict[str, Any]) -> None:
    """The features figures as text."""
    print(f"{f['feature_set']} of a {f['window_seconds']:g} s window at {f['sample_rate_hz']} Hz, one core, median of "
          f"{f['repeats']} repeats")
    print(f"  ours (numpy log-mel + LiteRT), {f['batch_windows']} windows a call {f['embedding_ms_per_window_batched']:8.3f} "
          f"ms/window   {f['speedup_vs_reference_batched']:5.2f}x the reference (target <= {f['target_ms_per_window']:g} ms)")
    print(f"  ours, one window a call {f['embedding_ms_per_window_single']:8.3f} ms (log-mel alone "
          f"{f['logmel_ms_per_window_batched']:.3f} ms/window)")
    print(f"  reference (librosa + Keras) {f['reference_librosa_keras_ms_per_window_batched']:8.3f} ms/window")
    print(f"  largest difference to the reference: {f['max_abs_difference_vs_reference']:.2e}; LiteRT file "
          f"{f['embedding_tflite_bytes'] / 1e6:.2f} MB")


def _test_windows(data_dir: Path, params: Any, limit: int) -> np.ndarray:
    """Up to limit (n, window_samples) windows of the corpus's official test recordings at the model's settings."""
    from instrument_id.audio import frame_windows
    from train.musicnet import list_recordings, read_recording

    windows = []
    for rec in list_recordings(data_dir):
        if rec.official_split == "test" and sum(map(len, windows)) < limit:
            windows.append(frame_windows(read_recording(rec, params)[0], params))
    if not windows:
        raise InstrumentIdError(f"{data_dir}: no test recordings to cut windows from")
    return np.concatenate(windows)[:limit]


def measure_tflite(args: argparse.Namespace) -> dict[str, Any]:
    """A musicnn folder's raw-audio .tflite against its zoo path: ms per window, sizes, decision agreement."""
    from model_zoo.loader import RAW_AUDIO_TFLITE_FILE, open_model

    one_tensorflow_thread()
    zoo_model = open_model(args.model, "zoo")
    raw = open_model(args.model, "tflite", tflite_file=RAW_AUDIO_TFLITE_FILE, num_threads=1)
    params = zoo_model.params
    if args.data is not None:
        windows, source = _test_windows(args.data, params, args.windows), f"windows of the official test recordings of {args.data}"
    else:
        windows, source = _windows(args.windows, params), "generated music-like windows (pass --data for a corpus)"
    raw_ms = median_ms(lambda: raw.predict_windows(windows[:1]), args.repeats)
    raw_batch_ms = median_ms(lambda: raw.predict_windows(windows[: args.batch]), max(3, args.repeats // 5))
    keras_ms = median_ms(lambda: zoo_model.predict_windows(windows[:1]), args.repeats)
    raw_decisions = raw.predict_windows(windows)[1]
    keras_decisions = zoo_model.predict_windows(windows)[1]
    weights = Path(args.model) / zoo_model.manifest["weights_file"]
    return {
        "model_dir": str(args.model), "feature_set": zoo_model.feature_set.label,
        "raw_tflite_ms_per_window": round(raw_ms, 3),
        "raw_tflite_ms_per_window_batched": round(raw_batch_ms / min(args.batch, len(windows)), 3),
        "zoo_path_ms_per_window": round(keras_ms, 3),
        "speedup_vs_zoo_path": round(keras_ms / raw_ms, 2),
        "target_ms_per_window": 10.0,
        "raw_tflite_bytes": (Path(args.model) / RAW_AUDIO_TFLITE_FILE).stat().st_size,
        "keras_head_bytes": weights.stat().st_size,
        "decisions_equal_percent": round(100.0 * float(np.mean((raw_decisions == keras_decisions).all(axis=1))), 2),
        "agreement_windows": len(windows), "agreement_source": source, "repeats": args.repeats, "threads": 1,
    }


def print_tflite(f: dict[str, Any]) -> None:
    """The tflite figures as text."""
    print(f"{f['model_dir']} ({f['feature_set']}), one core, median of {f['repeats']} repeats")
    print(f"  raw-audio LiteRT file {f['raw_tflite_bytes'] / 1e6:.2f} MB: {f['raw_tflite_ms_per_window']:.3f} ms per window "
          f"({f['raw_tflite_ms_per_window_batched']:.3f} batched), {f['speedup_vs_zoo_path']:.2f}x the zoo path "
          f"({f['zoo_path_ms_per_window']:.3f} ms); target <= {f['target_ms_per_window']:g} ms")
    print(f"  decisions equal to the zoo path on {f['decisions_equal_percent']:.2f}% of {f['agreement_windows']} "
          f"{f['agreement_source']}")
