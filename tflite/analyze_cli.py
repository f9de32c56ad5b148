"""`instrument-id analyze`: a timeline of the instruments in a recording of any length, in bounded memory.

The file is decoded block by block, resampled as a stream and featurized with each STFT frame analysed once;
windows are scored in batches. Writes PREFIX.csv (one row per window), PREFIX.json (the same, the per-instrument
summary, the settings and the model's version) and PREFIX.png (waveform over a piano-roll of the 11 instruments).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from instrument_id.errors import InstrumentIdError
from instrument_id.instruments import column_names

EPILOG = (
    "FILE may be any format soundfile reads (WAV, FLAC, OGG, MP3 with libsndfile >= 1.1), at any sample rate and "
    "channel count. --model is a model folder: its model_float32.tflite runs on the edge runtime when the folder "
    "has one (no TensorFlow needed), else the folder's own weights load through the model zoo. A file shorter "
    "than one window is zero-padded to one window with a warning. Exit status 2 on a missing, empty or unreadable "
    "file or model."
)


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `instrument-id analyze`."""
    from instrument_id.params import ANALYSIS_HOP_SECONDS
    from model_zoo.loader import RUNTIMES, shipped_model_dir

    parser.epilog = EPILOG
    parser.add_argument("file", type=Path, metavar="FILE", help="the recording to analyze")
    parser.add_argument("--model", type=Path, default=shipped_model_dir(), help="model folder (default: %(default)s)")
    parser.add_argument("--runtime", choices=RUNTIMES, default="auto",
                        help="tflite: the folder's model_float32.tflite; zoo: its Keras/skops weights; auto (default): "
                             "tflite when the folder has it")
    parser.add_argument("--hop", type=float, default=ANALYSIS_HOP_SECONDS,
                        help="seconds between window starts (default %(default)s; rounded to whole STFT frames)")
    parser.add_argument("--out", type=Path, default=None, metavar="PREFIX",
                        help="output prefix: writes PREFIX.csv, PREFIX.json, PREFIX.png (default: FILE without suffix)")
    parser.add_argument("--no-plot", action="store_true", help="skip PREFIX.png")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def progress_bar(total_seconds: float, enabled: bool, desc: str) -> Any:
    """A tqdm bar over seconds of audio, or a do-nothing stand-in (--quiet, or tqdm not installed: the edge install)."""
    if enabled:
        try:
            from tqdm import tqdm

            return tqdm(total=total_seconds, desc=desc, leave=False, dynamic_ncols=True,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s of audio [{elapsed}<{remaining}]")
        except ImportError:
            pass

    class _Silent:
        def update(self, _n: float) -> None:
            pass

        def close(self) -> None:
            pass

    return _Silent()


def csv_text(timeline: Any) -> str:
    """One row per window: start, end, then each instrument's probability and 0/1 decision."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["start_seconds", "end_seconds"]
    for name in column_names():
        header += [f"{name}_probability", f"{name}_present"]
    writer.writerow(header)
    for start, end, probabilities, decisions in zip(timeline.starts, timeline.ends, timeline.probabilities,
                                                    timeline.decisions):
        row = [f"{start:.6f}", f"{end:.6f}"]
        for probability, present in zip(probabilities, decisions):
            row += [f"{probability:.6f}", int(present)]
        writer.writerow(row)
    return buffer.getvalue()


def summary_lines(timeline: Any) -> list[str]:
    """The whole-file summary as printed: each instrument present, for how long, first and last second."""
    present = [(name, item) for name, item in timeline.summary().items() if item["present"]]
    if not present:
        return ["none of the 11 anywhere (no instrument above its threshold)"]
    lines = ["instruments present:"]
    for name, item in sorted(present, key=lambda pair: -pair[1]["seconds"]):
        share = 100.0 * item["seconds"] / max(timeline.duration_seconds, 1e-9)
        lines.append(f"  {name:16s} {item['seconds']:9.1f} s ({share:5.1f}%)  from {item['first_seconds']:.1f} s "
                     f"to {item['last_seconds']:.1f} s, {len(item['segments'])} span(s), peak p={item['max_probability']:.2f}")
    return lines


def _timed_blocks(blocks: Any, clock: dict[str, float]) -> Any:
    """Yield the file's blocks, adding the time spent decoding them to clock['decode']."""
    iterator = iter(blocks)
    while True:
        start = time.perf_counter()
        try:
            block = next(iterator)
        except StopIteration:
            return
        finally:
            clock["decode"] += time.perf_counter() - start
        yield block


def run_analysis(path: Path, scorer: Any, hop_seconds: float, show_progress: bool,
                 envelope_columns: int = 1400) -> tuple[Any, Any, dict[str, Any]]:
    """Stream one file through the scorer -> (Timeline, envelope (edges, mins, maxs), facts about the file and timing)."""
    from instrument_id.timeline import WaveformEnvelope, analyze_signal, open_audio_blocks

    if not hop_seconds > 0:
        raise InstrumentIdError(f"--hop must be positive, got {hop_seconds}")
    blocks = open_audio_blocks(path)
    envelope = WaveformEnvelope(blocks.rate_hz, max_columns=envelope_columns)
    bar = progress_bar(blocks.duration_seconds, show_progress, path.name)
    clock = {"decode": 0.0}

    def on_block(mono: np.ndarray) -> None:
        envelope.add(mono)
        bar.update(len(mono) / blocks.rate_hz)

    start, start_cpu = time.perf_counter(), time.process_time()
    try:
        timeline = analyze_signal(_timed_blocks(blocks, clock), blocks.rate_hz, scorer, scorer.params, hop_seconds,
                                  on_block=on_block)
    except InstrumentIdError as exc:
        message = str(exc)
        raise InstrumentIdError(message if str(path) in message else f"{path}: {message}") from None
    finally:
        bar.close()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    facts = {"file": str(path), "format": blocks.format, "sample_rate_hz": blocks.rate_hz,
             "channels": blocks.channels, "analysis_seconds": round(seconds, 4),
             "cpu_seconds": round(cpu_seconds, 4), "decode_seconds": round(clock["decode"], 4),
             "real_time_factor": round(timeline.duration_seconds / max(seconds, 1e-9), 1)}
    return timeline, envelope.result(), facts


def write_outputs(prefix: Path, timeline: Any, envelope: Any, report: dict[str, Any], plot: bool,
                  warn: Callable[[str], None]) -> list[Path]:
    """PREFIX.csv, PREFIX.json and (unless plot is False or matplotlib is missing) PREFIX.png, each atomically."""
    from instrument_id.atomic import write_text_atomic

    written = [prefix.with_name(prefix.name + ".csv"), prefix.with_name(prefix.name + ".json")]
    write_text_atomic(written[0], csv_text(timeline))
    write_text_atomic(written[1], json.dumps({**report, **timeline.to_dict()}, indent=1) + "\n")
    if plot:
        try:
            import matplotlib  # noqa: F401  (in the train extra, not the edge install)
        except ImportError:
            warn("matplotlib is not installed: no PNG written (pip install matplotlib)")
            return written
        from tflite.analyze_plot import plot_timeline

        png = prefix.with_name(prefix.name + ".png")
        model = report["model"]
        plot_timeline(png, timeline, envelope, f"{Path(report['file']).name}: {model['label']} "
                                               f"({model['runtime']}, version {model['version']})")
        written.append(png)
    return written


def run(args: argparse.Namespace) -> int:
    """Analyze the file, write the three outputs, print the summary and the speed."""
    from model_zoo.loader import open_model

    def warn(message: str) -> None:
        print(f"warning: {message}", file=sys.stderr)

    started = time.perf_counter()
    scorer = open_model(args.model, args.runtime)
    load_seconds = time.perf_counter() - started
    timeline, envelope, facts = run_analysis(args.file, scorer, args.hop, show_progress=not args.quiet)
    if timeline.padded:
        warn(f"{args.file} is {timeline.duration_seconds:.3f} s long, shorter than the {timeline.window_seconds:g} s "
             "window; zero-padded to one window")
    report = {
        **facts,
        "model": scorer.describe(),
        "settings": {"hop_seconds_requested": args.hop, "hop_seconds": timeline.hop_seconds,
                     "window_seconds": timeline.window_seconds, "params": scorer.params.to_dict()},
    }
    prefix = args.out if args.out is not None else args.file.with_suffix("")
    written = write_outputs(prefix, timeline, envelope, report, plot=not args.no_plot, warn=warn)
    print(f"{args.file}: {timeline.duration_seconds:.1f} s, {facts['sample_rate_hz']} Hz, {facts['channels']} channel(s); "
          f"model {scorer.label} [{scorer.feature_set.name}] ({scorer.runtime}, version {scorer.version})")
    for line in summary_lines(timeline):
        print(line)
    print(f"analyzed in {facts['analysis_seconds']:.2f} s ({facts['real_time_factor']:g}x real time; decoding "
          f"{facts['decode_seconds']:.2f} s), {len(timeline)} windows at a {timeline.hop_seconds:.3f} s hop; "
          f"model load {load_seconds:.2f} s")
    print("wrote " + ", ".join(str(path) for path in written))
    return 0
