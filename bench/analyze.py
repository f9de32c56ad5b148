"""Benchmark: `analyze` on a long synthesized recording with known labels, against the naive and librosa ways.

A corpus is synthesized (FluidSynth) and joined into one long WAV with its notes, so the timeline's per-window
macro-F1 is measured against real labels. Timed in the same run, on one BLAS thread:
(a) the streaming analysis end to end (decode, streaming resample, frame-once features, batched model);
(b) the naive way: decode and resample the whole file, cut every window, compute its features from scratch one
    window at a time (as the reference system did), then the model on all windows in one batch;
(c) the reference way: as (b) with librosa's feature functions per window, timed on a subset and extrapolated.
Without --model, an RF is trained by `instrument-id features` + `train` on a second corpus synthesized with
another seed (other pieces, same synthesizer): the F1 is then in-domain synthetic, an upper bound for real music.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.cli import report
from instrument_id.audio import frame_windows, load_mono
from instrument_id.errors import InstrumentIdError
from instrument_id.features import extractor_for
from instrument_id.params import ANALYSIS_HOP_SECONDS

TARGET_REAL_TIME = 1000.0
TARGET_SPEEDUP_VS_NAIVE = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `bench analyze`."""
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of music to synthesize and analyze (default 10)")
    parser.add_argument("--hop", type=float, default=ANALYSIS_HOP_SECONDS, help="analysis hop in seconds (default %(default)s)")
    parser.add_argument("--model", type=Path, default=None,
                        help="model folder to use; default: train an RF on a separately synthesized corpus")
    parser.add_argument("--runtime", choices=("auto", "tflite", "zoo"), default="auto", help="as for `analyze`")
    parser.add_argument("--train-minutes", type=float, default=10.0, help="minutes of the training corpus (default 10)")
    parser.add_argument("--librosa-windows", type=int, default=60, help="windows timed with librosa (default 60)")
    parser.add_argument("--seed", type=int, default=101,
                        help="synthesis seed of the analyzed recording (default 101; `synth` defaults to 0, and a "
                             "model trained on the same seed would have heard these very pieces)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the corpora, WAV and model here (default: a temp dir)")


def _train_rf(work: Path, minutes: float, seed: int) -> Path:
    """Synthesize a training corpus and train an RF on its features with the real CLI; return the model folder."""
    from instrument_id.cli import main
    from train.synth import synthesize_corpus

    synthesize_corpus(work / "train_corpus", minutes, seed)
    commands = [
        ["features", "--data", str(work / "train_corpus"), "--out", str(work / "train_features.npz"), "--augment", "0"],
        ["train", "--features", str(work / "train_features.npz"), "--model", "rf", "--out", str(work / "models"), "--quiet"],
    ]
    for command in commands:
        if main(command) != 0:
            raise InstrumentIdError(f"`instrument-id {' '.join(command)}` failed while preparing the benchmark model")
    return work / "models" / "rf"


def _naive(wav: Path, scorer: Any, grid: Any, backend: str | None = None) -> tuple[np.ndarray, dict[str, float]]:
    """(b): whole-file decode and resample, per-window features one window at a time, model in one batch."""
    extractor = extractor_for(grid, backend)
    started, started_cpu = time.perf_counter(), time.process_time()
    y = load_mono(wav, scorer.params)  # (samples,) the whole file in memory
    decoded = time.perf_counter()
    windows = frame_windows(y, grid)  # (n, window_samples) view
    X = np.concatenate([extractor(window[None, :]) for window in windows])  # (n, 26), one at a time
    featured = time.perf_counter()
    probabilities = scorer.predict_proba_features(X)  # (n, 11)
    done = time.perf_counter()
    return probabilities, {"seconds": done - started, "cpu_seconds": time.process_time() - started_cpu,
                           "decode_resample_seconds": decoded - started,
                           "features_seconds": featured - decoded, "model_seconds": done - featured,
                           "n_windows": len(windows)}


def _librosa_extrapolated(wav: Path, scorer: Any, grid: Any, n_subset: int, naive: dict[str, float]) -> dict[str, Any]:
    """(c): librosa features on n_subset evenly spaced windows, extrapolated to all; decode and model as in (b)."""
    from train.librosa_reference import librosa_features

    y = load_mono(wav, scorer.params)
    windows = frame_windows(y, grid)
    picks = np.unique(np.linspace(0, len(windows) - 1, min(n_subset, len(windows))).astype(int))
    librosa_features(windows[picks[0]], grid)  # warm-up: librosa's filter caches
    started = time.perf_counter()
    for index in picks:
        librosa_features(windows[index], grid)
    per_window = (time.perf_counter() - started) / len(picks)
    seconds = naive["decode_resample_seconds"] + per_window * len(windows) + naive["model_seconds"]
    return {"seconds": seconds, "librosa_ms_per_window": 1e3 * per_window, "windows_timed": int(len(picks)),
            "extrapolated": True}


def _figures(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from tflite.analyze_cli import run_analysis
    from model_zoo.loader import open_model
    from train.long_recording import join_corpus
    from train.metrics import multilabel_metrics
    from train.synth import synthesize_corpus
    from train.windows import window_labels

    model_dir = args.model
    if model_dir is None:
        model_dir = _train_rf(work, args.train_minutes, args.seed + 1)
    scorer = open_model(model_dir, args.runtime)
    synthesize_corpus(work / "test_corpus", args.minutes, args.seed)
    wav = work / "long.wav"
    labels, seconds = join_corpus(work / "test_corpus", wav)
    extractor_for(scorer.params)  # filter banks built before any timing

    timeline, _envelope, facts = run_analysis(wav, scorer, args.hop, show_progress=False)
    grid = dataclasses.replace(scorer.params, hop_seconds=timeline.hop_seconds)  # labels on the analysis windows
    Y = window_labels(labels, len(timeline), grid)  # (n, 11)
    metrics = multilabel_metrics(Y, timeline.decisions, timeline.probabilities)
    naive_probabilities, naive = _naive(wav, scorer, grid)
    if naive["n_windows"] != len(timeline):
        raise InstrumentIdError(f"naive path cut {naive['n_windows']} windows, the stream {len(timeline)}")
    _, naive_numpy = _naive(wav, scorer, grid, "numpy")  # the same, with the numpy extractor (the edge install's)
    reference = _librosa_extrapolated(wav, scorer, grid, args.librosa_windows, naive)
    naive_decisions = scorer.pipeline.decide(naive_probabilities)
    stream_seconds = facts["analysis_seconds"]
    return {
        "audio_seconds": round(seconds, 2), "n_windows": len(timeline), "hop_seconds": timeline.hop_seconds,
        "model": scorer.describe(), "model_trained_here": args.model is None,
        "streaming": {"seconds": stream_seconds, "real_time_factor": facts["real_time_factor"],
                      "cpu_seconds": facts["cpu_seconds"], "decode_seconds": facts["decode_seconds"],
                      "real_time_factor_per_cpu_second": round(seconds / facts["cpu_seconds"], 1)},
        "naive": {**{k: round(v, 4) for k, v in naive.items()}, "real_time_factor": round(seconds / naive["seconds"], 1),
                  "real_time_factor_per_cpu_second": round(seconds / naive["cpu_seconds"], 1)},
        "naive_numpy_path": {**{k: round(v, 4) for k, v in naive_numpy.items()},
                             "real_time_factor": round(seconds / naive_numpy["seconds"], 1)},
        "librosa": {**{k: round(v, 4) if isinstance(v, float) else v for k, v in reference.items()},
                    "real_time_factor": round(seconds / reference["seconds"], 1)},
        "speedup_vs_naive": round(naive["seconds"] / stream_seconds, 2),
        "windows_per_frame": round(timeline.window_seconds / timeline.hop_seconds, 2),
        "speedup_vs_naive_numpy_path": round(naive_numpy["seconds"] / stream_seconds, 2),
        "cpu_speedup_vs_naive": round(naive["cpu_seconds"] / facts["cpu_seconds"], 2),
        "speedup_vs_librosa": round(reference["seconds"] / stream_seconds, 2),
        "decision_agreement_with_naive": round(float((naive_decisions == timeline.decisions).mean()), 4),
        "max_probability_difference_vs_naive": round(float(np.abs(naive_probabilities - timeline.probabilities).max()), 4),
        "window_macro_f1": metrics["macro_f1"], "window_micro_f1": metrics["micro_f1"], "window_mAP": metrics["mAP"],
        "instruments_present": metrics["instruments_present"],
        "targets": {"real_time_factor": TARGET_REAL_TIME, "speedup_vs_naive": TARGET_SPEEDUP_VS_NAIVE,
                    "real_time_met": facts["real_time_factor"] >= TARGET_REAL_TIME,
                    "speedup_met": naive["seconds"] / stream_seconds >= TARGET_SPEEDUP_VS_NAIVE},
        "load_average_1min": round(os.getloadavg()[0], 2), "cpu_count": os.cpu_count(),
    }


def _print(f: dict[str, Any]) -> None:
    s, n, r = f["streaming"], f["naive"], f["librosa"]
    model = f["model"]
    print(f"analyze on {f['audio_seconds']:.0f} s of synthesized music, {f['n_windows']} windows at a "
          f"{f['hop_seconds']:.3f} s hop; model {model['name']} ({model['runtime']}, version {model['version']}"
          f"{', trained here on another synthesized corpus' if f['model_trained_here'] else ''})")
    print(f"  (a) streaming, end to end   {s['seconds']:8.2f} s  {s['real_time_factor']:8.1f}x real time "
          f"(decoding {s['decode_seconds']:.2f} s; {s['cpu_seconds']:.2f} CPU s: "
          f"{s['real_time_factor_per_cpu_second']:.0f}x per CPU second)")
    print(f"  (b) naive, window by window {n['seconds']:8.2f} s  {n['real_time_factor']:8.1f}x real time "
          f"(decode+resample {n['decode_resample_seconds']:.2f} s, features {n['features_seconds']:.2f} s, "
          f"model {n['model_seconds']:.2f} s; {n['cpu_seconds']:.2f} CPU s)")
    m = f["naive_numpy_path"]
    print(f"  (b') as (b), numpy extractor {m['seconds']:8.2f} s  {m['real_time_factor']:8.1f}x real time "
          f"(features {m['features_seconds']:.2f} s)")
    print(f"  (c) librosa per window      {r['seconds']:8.2f} s  {r['real_time_factor']:8.1f}x real time "
          f"(extrapolated from {r['windows_timed']} windows, {r['librosa_ms_per_window']:.1f} ms each)")
    print(f"  streaming is {f['speedup_vs_naive']:.1f}x faster than (b) ({f['cpu_speedup_vs_naive']:.1f}x in CPU time), "
          f"{f['speedup_vs_naive_numpy_path']:.1f}x faster than (b') and {f['speedup_vs_librosa']:.1f}x faster than (c); "
          f"decisions agree with (b) on {100 * f['decision_agreement_with_naive']:.2f}% of window-instrument pairs")
    t = f["targets"]
    print(f"  targets: >= {t['real_time_factor']:g}x real time {'met' if t['real_time_met'] else 'NOT met'}; "
          f">= {t['speedup_vs_naive']:g}x vs naive (b) {'met' if t['speedup_met'] else 'NOT met'}: (b) computes each frame "
          f"for {f['windows_per_frame']:.1f} windows, the stream once, so on features it can gain at most that "
          f"(load average {f['load_average_1min']}, {f['cpu_count']} CPUs, 1 BLAS thread)")
    print(f"  per-window macro-F1 against the known labels: {f['window_macro_f1']:.3f} "
          f"(micro-F1 {f['window_micro_f1']:.3f}, mAP {f['window_mAP']:.3f}; {len(f['instruments_present'])} instruments present)")


def run(args: argparse.Namespace) -> int:
    """Synthesize, (train,) analyze, time the three ways and print the figures."""
    if not args.minutes > 0 or not args.hop > 0 or args.librosa_windows < 1:
        raise InstrumentIdError("--minutes and --hop must be positive and --librosa-windows at least 1")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        figures = _figures(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-analyze-") as tmp:
            figures = _figures(args, Path(tmp))
    report(args, figures, _print)
    return 0
