"""`instrument-id bench NAME`: a table of benchmarks, each a module with add_arguments(parser) and run(args)."""

from __future__ import annotations

import argparse
import importlib
from typing import Any, Callable

from instrument_id.output import json_only, print_json

BENCHMARKS: dict[str, tuple[str, str]] = {
    "features": ("bench.features", "ms per 2 s clip: numpy extractor vs librosa, same run"),
    "serve": ("bench.serve", "requests/s and latency under wrk: instrument-id serve vs a Flask dev server + librosa + Keras"),
    "tflite": ("bench.tflite", "Keras vs every .tflite variant: size, latency, throughput, macro-F1, raw-audio agreement"),
    "load": ("bench.load", "seconds to verify and load each shipped model in a fresh process, against an unverified load"),
    "analyze": ("bench.analyze", "streaming analyze of a long synthesized recording vs per-window naive and librosa: speed, macro-F1"),
    "report": ("bench.report_db", "/v2/ab/report on a log of 1M predictions, SQLite and PostgreSQL, vs reading every row"),
    "rate-limits": ("bench.rate_limits", "microseconds the rate limiter adds per request: memory:// vs the shared SQLite file"),
    "replicas": ("bench.replicas", "two serve replicas on one PostgreSQL log under wrk: rows logged vs answers, sticky arms, reports"),
}


def add_parser(parser: argparse.ArgumentParser) -> None:
    """One sub-parser per benchmark."""
    sub = parser.add_subparsers(dest="benchmark", required=True)
    for name, (module_name, help_text) in BENCHMARKS.items():
        bench_parser = sub.add_parser(name, help=help_text, description=help_text)
        bench_parser.add_argument("--json", action="store_true", help="print one JSON object of the figures")
        importlib.import_module(module_name).add_arguments(bench_parser)


def report(args: argparse.Namespace, figures: dict[str, Any], print_text: Callable[[dict[str, Any]], None]) -> None:
    """Print a benchmark's figures: one JSON object with --json, else its text report."""
    if args.json:
        print_json(figures)
    else:
        print_text(figures)


def run(args: argparse.Namespace) -> int:
    """Run the chosen benchmark; with --json, standard output holds only the figures' JSON object."""
    with json_only(args.json):
        return int(importlib.import_module(BENCHMARKS[args.benchmark][0]).run(args) or 0)
