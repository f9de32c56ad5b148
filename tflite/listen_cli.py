"""`instrument-id listen -`: name the instruments of the last window, live, from raw PCM on stdin.

stdin is read in small chunks with os.read, which returns as soon as any bytes are there, so a window is scored
and its line flushed as soon as the audio completing it arrives. A window's last STFT frames are centred near its
end and reach n_fft / 2 samples past it (46 ms at 22050 Hz), and a resampler (when --rate differs from the model's)
holds back a few ms more: the line follows the window's last sample by that look-ahead plus the processing time,
which --json reports per line as latency_ms (from reading the completing chunk to flushing the line).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from instrument_id.errors import InstrumentIdError
from instrument_id.output import data_stream
from instrument_id.instruments import column_names

FORMATS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
MAX_RATE_HZ = 384000


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `instrument-id listen`."""
    from instrument_id.params import ANALYSIS_HOP_SECONDS, AudioParams
    from model_zoo.loader import RUNTIMES, shipped_model_dir

    parser.epilog = ("Example: arecord -q -f S16_LE -r 22050 -c 1 -t raw | instrument-id listen -. One line per hop "
                     "with the instruments of the last window (2 s by default); EOF scores what is left. A partial "
                     "sample at the end of the stream is dropped, and NaN, infinite or out-of-range float samples "
                     "are replaced (silence, or clipped to -1..1), each with a note on stderr.")
    parser.add_argument("source", metavar="-", help="'-': raw interleaved PCM on stdin")
    parser.add_argument("--rate", type=int, default=AudioParams().sample_rate_hz,
                        help="sample rate of the stream in Hz (default %(default)s)")
    parser.add_argument("--channels", type=int, default=1, help="interleaved channels (default 1), mixed to mono")
    parser.add_argument("--format", choices=sorted(FORMATS), default="s16le", help="sample format (default s16le)")
    parser.add_argument("--model", type=Path, default=shipped_model_dir(), help="model folder (default: %(default)s)")
    parser.add_argument("--runtime", choices=RUNTIMES, default="auto", help="as for `analyze` (default auto)")
    parser.add_argument("--hop", type=float, default=ANALYSIS_HOP_SECONDS, help="seconds between lines (default %(default)s)")
    parser.add_argument("--chunk-frames", type=int, default=1024, help="frames read per chunk (default 1024)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line, with probabilities and latency_ms")


class GarbageReport:
    """Coalesces runs of replaced samples into one stderr note per run."""

    def __init__(self, rate_hz: int) -> None:
        self.rate_hz = rate_hz
        self.run: dict[str, Any] | None = None

    def note(self, at_frame: int, n_frames: int, non_finite: int, out_of_range: int) -> None:
        """Record a chunk (starting at at_frame, n_frames long) and what was replaced in it."""
        if non_finite or out_of_range:
            if self.run is None:
                self.run = {"from": at_frame, "non_finite": 0, "out_of_range": 0}
            self.run["to"] = at_frame + n_frames
            self.run["non_finite"] += non_finite
            self.run["out_of_range"] += out_of_range
        elif self.run is not None:
            self.flush()

    def flush(self) -> None:
        """Print the pending run, if any."""
        if self.run is None:
            return
        run, self.run = self.run, None
        what = []
        if run["non_finite"]:
            what.append(f"skipped {run['non_finite']} NaN/infinite sample(s) (replaced with silence)")
        if run["out_of_range"]:
            what.append(f"clipped {run['out_of_range']} sample(s) outside -1..1")
        print(f"listen: garbage in the stream between {run['from'] / self.rate_hz:.3f} s and "
              f"{run['to'] / self.rate_hz:.3f} s: {'; '.join(what)}; going on", file=sys.stderr, flush=True)


def decode_chunk(data: bytes, fmt: str, channels: int) -> tuple[np.ndarray, int, int]:
    """Whole frames of raw PCM -> ((frames,) float32 mono, NaN/inf samples replaced, out-of-range samples clipped)."""
    samples = np.frombuffer(data, dtype=FORMATS[fmt]).reshape(-1, channels)  # (frames, channels)
    if fmt == "s16le":
        return samples.mean(axis=1, dtype=np.float32) / np.float32(32768.0), 0, 0
    bad = ~np.isfinite(samples)
    loud = ~bad & (np.abs(samples) > 1.0)
    clean = np.clip(np.where(bad, np.float32(0.0), samples), -1.0, 1.0)
    return clean.mean(axis=1, dtype=np.float32), int(bad.sum()), int(loud.sum())


def format_line(start: float, window_seconds: float, probabilities: np.ndarray, decisions: np.ndarray,
                latency_ms: float, as_json: bool) -> str:
    """One window's line: its end time and the instruments decided present (JSON: with every probability)."""
    names = [name for name, present in zip(column_names(), decisions) if present]
    end = start + window_seconds
    if as_json:
        return json.dumps({
            "time_seconds": round(end, 4), "window_start_seconds": round(start, 4), "instruments": names,
            "probabilities": {name: round(float(p), 4) for name, p in zip(column_names(), probabilities)},
            "latency_ms": round(latency_ms, 3),
        })
    found = ", ".join(f"{name} {p:.2f}" for name, p, present in zip(column_names(), probabilities, decisions) if present)
    return f"{end:9.2f} s  last {window_seconds:g} s: {found or '-'}"


def _check(args: argparse.Namespace) -> None:
    if args.source != "-":
        raise InstrumentIdError(f"listen reads raw PCM from stdin only: pass '-', not {args.source!r} "
                                "(use `instrument-id analyze` for files)")
    if not 0 < args.rate <= MAX_RATE_HZ:
        raise InstrumentIdError(f"--rate must be between 1 and {MAX_RATE_HZ} Hz, got {args.rate}")
    if not 1 <= args.channels <= 64:
        raise InstrumentIdError(f"--channels must be between 1 and 64, got {args.channels}")
    if args.chunk_frames < 1:
        raise InstrumentIdError(f"--chunk-frames must be at least 1, got {args.chunk_frames}")
    if not args.hop > 0:
        raise InstrumentIdError(f"--hop must be positive, got {args.hop}")


def run(args: argparse.Namespace) -> int:
    """Read stdin until EOF, printing one flushed line per completed window."""
    from instrument_id.timeline import StreamAnalyzer
    from model_zoo.loader import open_model

    _check(args)
    scorer = open_model(args.model, args.runtime)
    warm_up = StreamAnalyzer(scorer, scorer.params, args.rate, args.hop)  # FFT plans, model: not in the first line's time
    warm_up.push(np.zeros(scorer.params.window_samples, np.float32))
    warm_up.finish()
    analyzer = StreamAnalyzer(scorer, scorer.params, args.rate, args.hop, batch_windows=1)  # score each window at once
    window_seconds = scorer.params.window_seconds
    frame_bytes = FORMATS[args.format].itemsize * args.channels
    garbage = GarbageReport(args.rate)
    fd = sys.stdin.buffer.fileno()
    print(f"listening: {args.format}, {args.rate} Hz, {args.channels} channel(s); model {scorer.label} "
          f"[{scorer.feature_set.name}] ({scorer.runtime}, version {scorer.version}); a line every {analyzer.hop_seconds:.3f} s once "
          f"{window_seconds:g} s have arrived", file=sys.stderr, flush=True)

    def emit(scored: Any, read_at: float) -> None:
        for start, probabilities, decisions in zip(scored.starts, scored.probabilities, scored.decisions):
            latency_ms = 1e3 * (time.perf_counter() - read_at)
            out = data_stream()
            out.write(format_line(start, window_seconds, probabilities, decisions, latency_ms, args.json) + "\n")
            out.flush()

    leftover = b""
    n_lines = 0
    try:
        while True:
            data = os.read(fd, args.chunk_frames * frame_bytes)  # returns as soon as any bytes are there
            read_at = time.perf_counter()
            if not data:
                break
            data = leftover + data
            whole = len(data) // frame_bytes * frame_bytes  # a read may end inside a sample: keep the rest
            leftover = data[whole:]
            if not whole:
                continue
            mono, non_finite, out_of_range = decode_chunk(data[:whole], args.format, args.channels)
            garbage.note(analyzer.samples_in, len(mono), non_finite, out_of_range)
            scored = analyzer.push(mono)
            emit(scored, read_at)
            n_lines += len(scored)
        garbage.flush()
        if leftover:
            print(f"listen: skipped {len(leftover)} trailing byte(s) at {analyzer.seconds_in:.3f} s: the stream ended "
                  f"inside a sample frame ({frame_bytes} bytes each)", file=sys.stderr, flush=True)
        if analyzer.samples_in == 0:
            raise InstrumentIdError("stdin: no audio received (no whole sample frame before end of stream)")
        if analyzer.seconds_in < window_seconds:
            print(f"warning: the stream held {analyzer.seconds_in:.3f} s, shorter than the {window_seconds:g} s window; "
                  "zero-padded to one window", file=sys.stderr, flush=True)
        scored = analyzer.finish()
        emit(scored, time.perf_counter())
        n_lines += len(scored)
    except BrokenPipeError:  # the reader went away (e.g. `| head`): nothing left to say, nor to flush at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), data_stream().fileno())
        return 0
    print(f"end of stream: {analyzer.seconds_in:.2f} s of audio, {n_lines} line(s)", file=sys.stderr, flush=True)
    return 0
