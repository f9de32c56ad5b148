"""Benchmark: the numpy 26-feature extractor against the librosa reference on the same clips, in one run."""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from bench.cli import report
from bench.signals import music_like_clips
from instrument_id.features import compute_features, extractor_for
from instrument_id.params import AudioParams
from instrument_id.timing import median_ms
from train.librosa_reference import librosa_features


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `bench features`."""
    parser.add_argument("--clips", type=int, default=64, help="clips per batch (default 64)")
    parser.add_argument("--librosa-clips", type=int, default=20, help="clips timed with librosa (default 20)")
    parser.add_argument("--repeats", type=int, default=7, help="repeats; medians are reported (default 7)")
    parser.add_argument("--feature-set", default="seed26", metavar="NAME",
                        help="seed26 (default: numpy/numba vs librosa) or musicnn[:out+out] (numpy log-mel + LiteRT "
                             "network vs librosa + Keras, ms per window on one core)")


def run(args: argparse.Namespace) -> int:
    """Print ms per clip for ours (one clip a call; batched on one core and on all cores) and librosa (one core), and the ratios."""
    if args.feature_set != "seed26":
        from bench.embedding import measure_features, print_features

        report(args, measure_features(args), print_features)
        return 0
    params = AudioParams()
    clips = music_like_clips(args.clips, params)
    extractor = extractor_for(params)
    extractor(clips[:2])  # warm-up: filter banks, FFT plans
    batch_ms = median_ms(lambda: compute_features(clips, params), args.repeats) / len(clips)
    numpy_path = extractor_for(params, "numpy")  # the path an install without numba takes (the edge install)
    numpy_ms = median_ms(lambda: numpy_path(clips), args.repeats) / len(clips)
    cores = os.cpu_count() or 1
    parallel_ms = median_ms(lambda: compute_features(clips, params, workers=cores), args.repeats) / len(clips)
    single = clips[: args.librosa_clips]
    single_ms = median_ms(lambda: [extractor(c[None, :]) for c in single], args.repeats) / len(single)
    librosa_features(single[0], params)  # warm-up: librosa's caches
    librosa_ms = median_ms(lambda: [librosa_features(c, params) for c in single], max(3, args.repeats // 2)) / len(single)
    worst_rel = max(
        float(np.max(np.abs(extractor(c[None, :])[0] - librosa_features(c, params))
                     / np.maximum(np.abs(librosa_features(c, params)), 1e-6)))
        for c in single[:5]
    )
    figures = {
        "clip_seconds": params.window_seconds,
        "sample_rate_hz": params.sample_rate_hz,
        "features_ms_per_clip_batched": round(batch_ms, 4),
        "features_ms_per_clip_batched_all_cores": round(parallel_ms, 4),
        "cores": cores,
        "features_ms_per_clip_single": round(single_ms, 4),
        "features_backend": extractor.backend,
        "numpy_path_ms_per_clip_batched": round(numpy_ms, 4),
        "librosa_ms_per_clip": round(librosa_ms, 3),
        "speedup_vs_librosa_batched": round(librosa_ms / batch_ms, 2),
        "speedup_vs_librosa_batched_all_cores": round(librosa_ms / parallel_ms, 2),
        "speedup_vs_librosa_single": round(librosa_ms / single_ms, 2),
        "max_relative_difference_vs_librosa": worst_rel,
        "batch_clips": len(clips),
        "repeats": args.repeats,
    }
    report(args, figures, print_report)
    return 0


def print_report(f: dict[str, Any]) -> None:
    """The figures as a short text table."""
    print(f"26 features of a {f['clip_seconds']:.0f} s clip at {f['sample_rate_hz']} Hz (median of {f['repeats']} repeats; "
          f"ours = the {f['features_backend']} path)")
    print(f"  ours, {f['batch_clips']} clips, 1 core  {f['features_ms_per_clip_batched']:8.3f} ms/clip   {f['speedup_vs_librosa_batched']:6.1f}x librosa")
    print(f"  ours, {f['batch_clips']} clips, {f['cores']} cores {f['features_ms_per_clip_batched_all_cores']:8.3f} ms/clip   {f['speedup_vs_librosa_batched_all_cores']:6.1f}x librosa")
    print(f"  ours, one clip a call   {f['features_ms_per_clip_single']:8.3f} ms/clip   {f['speedup_vs_librosa_single']:6.1f}x librosa")
    print(f"  numpy path (no numba), {f['batch_clips']} clips, 1 core {f['numpy_path_ms_per_clip_batched']:8.3f} ms/clip   {f['librosa_ms_per_clip'] / f['numpy_path_ms_per_clip_batched']:6.1f}x librosa")
    print(f"  librosa, one call per feature {f['librosa_ms_per_clip']:8.3f} ms/clip")
    print(f"  largest relative difference to librosa on 5 clips: {f['max_relative_difference_vs_librosa']:.2e}")
