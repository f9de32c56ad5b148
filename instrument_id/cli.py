"""The `instrument-id` console script: one subcommand table, each entry a module with add_parser() and run()."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from instrument_id import native_logs
from instrument_id.errors import InstrumentIdError
from instrument_id.output import json_only

# subcommand -> (module, one-line help); modules are imported only when their command runs,
# so the edge install (no TensorFlow, no librosa) can run `predict`.
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("train.synth", "render a corpus in the MusicNet layout from soundfonts, patch sets and SFZ libraries"),
    "real-notes": ("train.real_notes", "SFZ libraries (train / held-out valid) from real note-by-note recordings, for synth"),
    "features": ("train.feature_cache", "compute (or reuse) the feature cache of a corpus"),
    "bench": ("bench.cli", "benchmarks (features, ...): measured figures and ratios against a baseline in the same run"),
    "train": ("train.train_cli", "train a model from a feature cache"),
    "tune": ("train.tune", "tune the MLP (keras-tuner) or the RandomForest (randomized search) on the validation split"),
    "sweep-window": ("train.sweep_window", "one RandomForest per window length, 1 to 12 s: macro-F1 and train time"),
    "ceiling": ("train.ceiling", "how far window-statistics models go on a corpus: shipped inputs vs richer ones"),
    "feature-study": ("train.feature_study", "musicnn outputs x heads on synthetic validation, and the leave-one-soundfont-out matrix"),
    "draw-study": ("train.draw_study", "leave-one-soundfont-out fitted on one, the other or every corpus draw, with and without augmented copies"),
    "threshold-study": ("train.threshold_study", "leave-one-soundfont-out: thresholds chosen on valid, cross-source (on unheard timbres) or at 0.5"),
    "evaluate": ("train.evaluate", "score models on a feature cache or a labelled folder of clips: report, PR curves, PCA plot"),
    "quiet-check": ("train.quiet_check", "clips of silence, noise, hum, crackle, tones and bursts: how often each model answers none of the 11"),
    "compare": ("train.compare", "two evaluate --clips reports of the same clips: each figure's change and its paired-bootstrap 95-percent interval"),
    "convert-musicnn": ("train.musicnn_convert", "convert the musicnn wheel's MTT_musicnn checkpoint into model_zoo/embeddings/musicnn"),
    "convert": ("tflite.convert", "convert an MLP model folder to .tflite files (float32, float16, dynamic, int8, raw audio)"),
    "predict": ("tflite.predict_cli", "name the instruments in audio clips with a .tflite model (edge runtime, no TensorFlow)"),
    "analyze": ("tflite.analyze_cli", "timeline of the instruments in a long recording: CSV, JSON and PNG, bounded memory"),
    "listen": ("tflite.listen_cli", "name the instruments of the last window, live, in raw PCM read from stdin"),
    "serve": ("serving.serve_cli", "serve the models over HTTP (Flask + gunicorn, A/B)"),
    "keys": ("serving.keys_cli", "API keys of `serve --api-keys FILE`: add one (printed once, its hash kept) or revoke one"),
}


# the extra that brings each package's libraries (pip install 'instrument-id[EXTRA]')
EXTRAS = {"train": "train", "serving": "serve", "bench": "train,serve", "tflite": "edge", "model_zoo": "train"}


def missing_extra_message(command: str, module_name: str, exc: ImportError) -> str:
    """One line saying which library is missing for a subcommand and which extra installs it."""
    extra = EXTRAS.get(module_name.split(".")[0], "train,serve")
    return (f"instrument-id {command}: needs {exc.name or 'a library'} that this install lacks; "
            f"pip install 'instrument-id[{extra}]'")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand's arguments."""
    parser = argparse.ArgumentParser(prog="instrument-id", description="Recognize the 11 MusicNet instruments in audio.")
    parser.add_argument("--verbose", action="store_true",
                        help="before the command: let TensorFlow's and LiteRT's own log lines through (hidden otherwise)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
            module.add_parser(argparse.ArgumentParser(add_help=False))  # some add_parser import their subcommands
        except ImportError as exc:  # e.g. the edge install has no training libraries
            sub.add_parser(name, help=f"{help_text} [unavailable here: {exc.name} is not installed; "
                                       "pip install 'instrument-id[train,serve]']")
            continue
        module.add_parser(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def limit_blas_threads() -> None:
    """One BLAS thread: our GEMMs are small, and on a busy machine OpenBLAS's spinning threads multiply
    one clip's latency tenfold. INSTRUMENT_ID_BLAS_THREADS overrides. The environment covers BLAS libraries loaded
    later (scipy ships its own OpenBLAS); threadpoolctl covers those already loaded."""
    threads = os.environ.get("INSTRUMENT_ID_BLAS_THREADS", "1")
    for variable in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=int(threads), user_api="blas")


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; expected failures print one line and exit 2. A leading --verbose lets TensorFlow's and
    LiteRT's own log lines through."""
    argv = sys.argv[1:] if argv is None else argv
    verbose = bool(argv) and argv[0] == "--verbose"
    argv = argv[1:] if verbose else argv
    native_logs.configure(verbose)  # before any command imports TensorFlow
    limit_blas_threads()
    if argv and argv[0] in COMMANDS and argv[0] not in ("-h", "--help"):
        parser = argparse.ArgumentParser(prog=f"instrument-id {argv[0]}", description=COMMANDS[argv[0]][1])
        try:
            module = importlib.import_module(COMMANDS[argv[0]][0])
            module.add_parser(parser)
        except ImportError as exc:  # the edge install runs predict/analyze; training and serving need their extras
            print(missing_extra_message(argv[0], COMMANDS[argv[0]][0], exc), file=sys.stderr)
            return 2
        args = parser.parse_args(argv[1:])
        command = argv[0]
    else:
        args = build_parser().parse_args(argv)
        command = args.command
        module = importlib.import_module(COMMANDS[command][0])
    try:
        with json_only(bool(getattr(args, "json", False))):  # with --json, stdout holds only JSON
            return int(module.run(args) or 0)
    except ImportError as exc:  # a library the command imports when it runs (e.g. scikit-learn for train)
        print(missing_extra_message(command, COMMANDS[command][0], exc), file=sys.stderr)
        return 2
    except InstrumentIdError as exc:
        print(f"instrument-id {argv[0]}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
