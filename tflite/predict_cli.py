"""`instrument-id predict`: name the instruments in audio clips with a .tflite model, on the edge runtime alone."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from instrument_id.errors import InstrumentIdError
from instrument_id.output import print_json
from model_zoo.loader import default_raw_audio_model

if TYPE_CHECKING:
    from model_zoo.tflite_model import EdgeModel

# the shipped MLP's one-file edge artefact, installed with the package (model_zoo/models is package data)
DEFAULT_RAW_AUDIO_MODEL = default_raw_audio_model()

EPILOG = (
    "Clips may be any file soundfile reads, at any sample rate and channel count; they are mixed to mono and "
    "resampled to the model's rate. A clip longer than the model's window (2 s by default) is cut into windows "
    "and each instrument scores its highest window. A clip shorter than the window is zero-padded and a warning "
    "is printed to stderr. A feature-level .tflite needs the pipeline.json of its model folder beside it; "
    "model_raw_audio.tflite needs nothing else. Exit status 2 when any clip or the model cannot be used."
)


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `instrument-id predict`."""
    parser.epilog = EPILOG
    parser.add_argument("clips", nargs="+", type=Path, metavar="CLIP", help="audio files")
    parser.add_argument("--model", type=Path, default=DEFAULT_RAW_AUDIO_MODEL,
                        help="a .tflite file from `instrument-id convert`, or a model folder (its raw-audio .tflite, else "
                             "its float32 one, checked against its manifest; e.g. model_zoo/models/musicnn) "
                             "(default: the shipped raw-audio MLP, %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per clip")
    parser.add_argument("--threads", type=int, default=None, help="interpreter threads (default: the runtime's)")


def _print_text(clip: Path, result: dict) -> None:
    found = ", ".join(result["instruments"]) or "none of the 11 (no instrument above its threshold)"
    print(f"{clip}: {found}")
    for name, probability in result["probabilities"].items():
        print(f"  {name:16s} {probability:.3f}")
    print(
        f"  {result['n_windows']} window(s); load {result['load_ms']:.1f} ms, features {result['features_ms']:.1f} ms, "
        f"model {result['model_ms']:.1f} ms, total {result['total_ms']:.1f} ms"
    )


def _open(path: Path, num_threads: int | None) -> EdgeModel:
    """The edge model of a .tflite file, or of a folder's raw-audio (else float32) .tflite after its manifest check
    (open_model's: a file present but unlisted, or listed and altered, is refused there)."""
    from model_zoo.loader import FLOAT_TFLITE_FILE, RAW_AUDIO_TFLITE_FILE, open_model
    from model_zoo.tflite_model import EdgeModel

    if not path.is_dir():
        return EdgeModel(path, num_threads=num_threads)
    chosen = next((name for name in (RAW_AUDIO_TFLITE_FILE, FLOAT_TFLITE_FILE) if (path / name).is_file()), None)
    if chosen is None:
        raise InstrumentIdError(f"{path}: the folder lists no {RAW_AUDIO_TFLITE_FILE} or {FLOAT_TFLITE_FILE} (an MLP "
                                "folder gets them from `instrument-id convert --quant raw`; any model folder runs "
                                "through `instrument-id analyze --model DIR`)")
    return open_model(path, runtime="tflite", tflite_file=chosen, num_threads=num_threads)


def run(args: argparse.Namespace) -> int:
    """Score every clip; a bad clip prints one error line and the others still run; exit 2 if any failed."""
    from instrument_id.audio import load_mono

    if args.threads is not None and args.threads < 1:
        raise InstrumentIdError(f"--threads must be at least 1, got {args.threads}")
    model = _open(args.model, args.threads)
    failed = 0
    for clip in args.clips:
        start = time.perf_counter()
        try:
            y = load_mono(clip, model.params)  # (samples,) mono at the model's rate
            loaded = time.perf_counter()
            prediction = model.predict_clip(y, name=str(clip))
        except InstrumentIdError as exc:
            print(f"instrument-id predict: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        result = {
            "clip": str(clip), "model": str(args.model), "model_kind": model.input_kind, "runtime": model.interpreter_package,
            **prediction.to_dict(),
            "load_ms": round(1e3 * (loaded - start), 3),
            "total_ms": round(1e3 * (time.perf_counter() - start), 3),
        }
        if args.json:
            print_json(result)
        else:
            _print_text(clip, result)
    return 2 if failed else 0
