"""`instrument-id convert-musicnn`: the musicnn wheel's MTT_musicnn checkpoint -> model_zoo/embeddings/musicnn.

Source: Pons & Serra, "musicnn: pre-trained convolutional neural networks for music audio tagging" (2019), the PyPI
wheel musicnn 0.1.0 (ISC licence, copied into the folder). The folder holds musicnn.keras (built-in layers only, any
frame count), musicnn_embedding.tflite (float32, builtin ops, (batch, 126, 96): one 2 s window at 16 kHz), LICENSE and
manifest.json (sha256 and size of each file, a checksum of the manifest itself, the LogMelParams, the outputs and
their widths, the wheel it came from, and the differences measured when it was written).

What the network does in time, read from musicnn/models.py and the checkpoint's graph (all strides 1, so every frame
count works and 2 s windows need no change): the input batch norm is one scalar affine; the timbral convs (7 x 38 and
7 x 67 over time x mel) run 'valid' on the input zero-padded by 3 frames each side, i.e. 'same' in time and valid in
frequency; the temporal convs (128, 64, 32 frames x 1 mel) use TF 'same' padding: zeros, 63/64, 31/32 and 15/16 frames
before/after, so on a 126-frame window the 128-frame kernel sees mostly padding at both ends, as it did at the ends of
the 187-frame training patches; every front-end block then takes the max over all frequencies. The mid-end convs are
7 frames over the whole feature axis on 3-frame zero padding ('same' Conv1D here). The back end pools max and mean
over all frames, so its outputs have fixed widths whatever the length. Zero padding is applied after the batch
norms, i.e. it is 0 in normalised units, not silence (silence's log-mel is 0 before the input norm).

Measured (this converter's check, run on every conversion and stored in manifest.json; the tests repeat it) on
silence, seeded noise, a 440 Hz sine and a music-like signal, error absolute within [-1, 1] and relative above:
Keras vs the original TF1 graph 4.0e-5 over every output incl. the per-frame ones (taggram 4.8e-7, max_pool 2.6e-5)
at both 187 and 126 frames; TFLite vs Keras at 126 frames 2.3e-5 (taggram 8.9e-7).
The original extractor rounds the mel power to float16 before the log; instrument_id.logmel does not (float32).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from instrument_id.errors import InstrumentIdError
from instrument_id.logmel import LogMelParams, frames_for, log_mel

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "model_zoo" / "embeddings" / "musicnn"
KERAS_FILE, TFLITE_FILE, LICENSE_FILE, MANIFEST_FILE = "musicnn.keras", "musicnn_embedding.tflite", "LICENSE", "manifest.json"
WINDOW_SECONDS = 2.0
TRAINED_SECONDS = 3.0
CITATION = ('Jordi Pons and Xavier Serra, "musicnn: pre-trained convolutional neural networks for music audio '
            'tagging", Late-Breaking/Demo session, ISMIR 2019; https://github.com/jordipons/musicnn')
MAX_ERROR = 1e-4  # every output, Keras vs the original graph and TFLite vs Keras: absolute up to magnitude 1, relative above


def check_signals(samples: int, sample_rate_hz: int) -> dict[str, np.ndarray]:
    """Silence, seeded noise, a 440 Hz sine and a music-like signal (harmonic notes with envelopes), (samples,) float32."""
    t = np.arange(samples) / sample_rate_hz  # (samples,) seconds
    music = np.zeros(samples)
    for start_s, midi in ((0.0, 60), (0.4, 64), (0.8, 67), (1.2, 72), (1.9, 55), (2.4, 62)):
        local = t - start_s
        envelope = np.where(local >= 0, np.minimum(local / 0.01, 1.0) * np.exp(-3.0 * np.maximum(local, 0)), 0.0)
        f0_hz = 440.0 * 2 ** ((midi - 69) / 12)
        music += envelope * sum(np.sin(2 * np.pi * k * f0_hz * t) / k for k in range(1, 7))
    signals = {
        "silence": np.zeros(samples),
        "noise": np.random.default_rng(0).normal(0.0, 0.1, samples),
        "sine_440": 0.5 * np.sin(2 * np.pi * 440.0 * t),
        "music": 0.2 * music,
    }
    return {name: signal.astype(np.float32) for name, signal in signals.items()}


def check_logmel(params: LogMelParams, seconds: float) -> np.ndarray:
    """(4, frames, 96) log-mel of check_signals at `seconds`; 3 s gives 188 frames, of which musicnn takes 187."""
    samples = int(round(seconds * params.sample_rate_hz))
    return log_mel(np.stack(list(check_signals(samples, params.sample_rate_hz).values())), params)


def max_error(a: dict[str, np.ndarray], b: dict[str, Any], names: list[str]) -> dict[str, float]:
    """{name: max |a - b| / max(1, |b|)}: the absolute difference where values are within [-1, 1], relative beyond.

    float32 keeps about 7 digits, so max_pool values near 40 differ by ~5e-5 between two correct implementations
    that only sum in another order; scaling by the magnitude above 1 holds every output to the same 1e-4.
    """
    errors = {}
    for name in names:
        reference = np.asarray(b[name], dtype=np.float64)
        errors[name] = float(np.max(np.abs(np.asarray(a[name], dtype=np.float64) - reference) / np.maximum(1.0, np.abs(reference))))
    return errors


def tflite_bytes(model, frames: int) -> bytes:
    """The model as a builtin-ops float32 .tflite with input (batch, frames, 96), batch free, outputs by name."""
    import tensorflow as tf

    from model_zoo.embedding import frozen_function

    function, _ = frozen_function(model, frames)
    # a tf.Module as the trackable makes the converter write the serving_default signature (names kept)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], tf.Module())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex: the edge runtime runs it
    return converter.convert()


def run_tflite(path: Path, logmel: np.ndarray) -> dict[str, np.ndarray]:
    """{output: (n, width)} of a .tflite embedding file on (n, frames, 96) log-mel, one thread."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path), num_threads=1).get_signature_runner()
    return runner(logmel=np.ascontiguousarray(logmel, np.float32))


def convert(wheel: Path, out: Path) -> dict[str, Any]:
    """Convert, check against the original graph, write the folder atomically; returns the manifest."""
    from instrument_id.atomic import atomic_dir
    from model_zoo.embedding import write_manifest
    from train.musicnn_keras import FRAME_OUTPUTS, OUTPUTS, build_model, copy_weights
    from train.musicnn_wheel import OriginalGraph, read_checkpoint, read_wheel

    params = LogMelParams()
    window_frames = frames_for(int(WINDOW_SECONDS * params.sample_rate_hz), params)  # 126
    with tempfile.TemporaryDirectory(prefix="musicnn-checkpoint-") as scratch:
        info, prefix = read_wheel(wheel, Path(scratch))
        check_model = build_model(with_frames=True)
        copy_weights(check_model, read_checkpoint(prefix))
        graph = OriginalGraph(prefix)
        inputs = {"187_frames": check_logmel(params, TRAINED_SECONDS)[:, :187], "126_frames": check_logmel(params, WINDOW_SECONDS)}
        every = list(OUTPUTS + FRAME_OUTPUTS)
        vs_original = {k: max_error(graph.run(x), check_model(x, training=False), every) for k, x in inputs.items()}
        graph.close()
    worst = max(max(d.values()) for d in vs_original.values())
    if not worst <= MAX_ERROR:  # NaN fails too
        raise InstrumentIdError(f"the Keras model is {worst:.2e} (max error) from the original graph: {vs_original}")
    import keras

    shipped = {name: check_model.get_layer(name).output for name in OUTPUTS}  # the same layers, per-window outputs
    model = keras.Model(check_model.input, shipped, name="MTT_musicnn")
    with atomic_dir(out) as folder:
        model.save(folder / KERAS_FILE)
        (folder / TFLITE_FILE).write_bytes(tflite_bytes(model, window_frames))
        window = inputs["126_frames"]
        vs_keras = max_error(run_tflite(folder / TFLITE_FILE, window), model(window, training=False), list(OUTPUTS))
        if not max(vs_keras.values()) <= MAX_ERROR:  # NaN (uninitialised weights) fails too
            raise InstrumentIdError(f"the TFLite file is {max(vs_keras.values()):.2e} (max error) from Keras: {vs_keras}")
        (folder / LICENSE_FILE).write_text(
            f"The converted weights in this folder come from musicnn {info.version} (MTT_musicnn).\n"
            f"Please cite: {CITATION}\n\n{info.licence_text.strip()}\n", encoding="utf-8"
        )
        manifest = write_manifest(folder, {
            "format": "instrument-id musicnn embedding 1",
            "logmel_params": params.to_dict(),
            "outputs": {name: int(tensor.shape[-1]) for name, tensor in shipped.items()},
            "files_by_runtime": {"keras": KERAS_FILE, "tflite": TFLITE_FILE},
            "tflite_input_frames": window_frames,
            "tflite_window_seconds": WINDOW_SECONDS,
            "taggram_labels": list(info.taggram_labels),
            "source": {**info.to_dict(), "model": "MTT_musicnn", "licence": "ISC", "citation": CITATION},
            "measured_max_error": {"keras_vs_original_graph": vs_original, "tflite_vs_keras_126_frames": vs_keras},
        })
    return manifest


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `instrument-id convert-musicnn`."""
    parser.add_argument("--wheel", required=True, type=Path,
                        help="musicnn-0.1.0 wheel or sdist (`pip download musicnn==0.1.0 --no-deps -d .cache/musicnn`)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")


def run(args: argparse.Namespace) -> int:
    """Convert and print where the folder went and what was measured."""
    if args.out.exists() and not args.out.is_dir():
        raise InstrumentIdError(f"{args.out}: exists and is not a folder")
    manifest = convert(args.wheel, args.out)
    measured = manifest["measured_max_error"]
    worst_original = max(max(d.values()) for d in measured["keras_vs_original_graph"].values())
    print(
        f"convert-musicnn: {args.out} ({', '.join(f'{k} {v}' for k, v in manifest['outputs'].items())}); "
        f"max error: Keras vs original {worst_original:.1e}, TFLite vs Keras {max(measured['tflite_vs_keras_126_frames'].values()):.1e}"
    )
    return 0
