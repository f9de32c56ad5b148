"""`instrument-id bench load`: how long the verified loader takes per shipped model, against an unverified load.

Each run is a fresh Python process, so the first load is cold (files not yet parsed by this process). The process
first imports the model's framework (TensorFlow/Keras for a Keras model, scikit-learn and skops for a forest), timed
on its own, since a server pays it once whatever it loads; then it times the first verified `load_model` (sha256 of
every file, manifest, pipeline, weights), then warm repeats of it and of the bare framework call on the same weights
file (`keras.saving.load_model` / `skops.io.load`), the baseline with no verification at all.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.cli import report
from instrument_id.errors import InstrumentIdError
from model_zoo.loader import SHIPPED_MODELS, shipped_model_dir

DEFAULT_MODELS = tuple(shipped_model_dir(name) for name in SHIPPED_MODELS)
TARGET_SECONDS = 1.0
WARM_REPEATS = 3

# run in a fresh interpreter: argv[1] model folder, argv[2] warm repeats; prints one JSON line
_PROBE = r"""
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from pathlib import Path
path, repeats = Path(sys.argv[1]), int(sys.argv[2])
t0 = time.perf_counter()
from model_zoo import load_model, verify_model_dir
kind = verify_model_dir(path)["kind"]
if kind == "keras":
    import keras
else:
    import sklearn.ensemble, skops.io
t1 = time.perf_counter()
model = load_model(path)
t2 = time.perf_counter()
warm, raw = [], []
weights = path / model.manifest["weights_file"]
for _ in range(repeats):
    a = time.perf_counter(); load_model(path); b = time.perf_counter()
    if kind == "keras":
        keras.saving.load_model(weights, compile=False, safe_mode=True)
    else:
        skops.io.load(weights, trusted=skops.io.get_untrusted_types(file=weights))
    c = time.perf_counter()
    warm.append(b - a); raw.append(c - b)
print(json.dumps({"kind": kind, "import_s": t1 - t0, "cold_load_s": t2 - t1, "warm_load_s": warm, "raw_load_s": raw}))
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `instrument-id bench load`."""
    parser.add_argument("--model", nargs="+", type=Path, default=list(DEFAULT_MODELS), metavar="DIR",
                        help="model folders (default: the shipped mlp and rf)")
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per model; figures are medians (default 5)")


def probe(model_dir: Path, repeats: int = WARM_REPEATS) -> dict[str, Any]:
    """Time one fresh process loading model_dir; a folder the loader refuses raises its error."""
    done = subprocess.run([sys.executable, "-c", _PROBE, str(model_dir.resolve()), str(repeats)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise InstrumentIdError(f"{model_dir}: loading failed in a fresh process: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(model_dir: Path, runs: int) -> dict[str, Any]:
    """Medians over `runs` fresh processes of import, cold verified load, warm verified and unverified loads."""
    probes = [probe(model_dir) for _ in range(runs)]
    median = lambda key: statistics.median(p[key] for p in probes)  # noqa: E731
    warm = statistics.median(t for p in probes for t in p["warm_load_s"])
    raw = statistics.median(t for p in probes for t in p["raw_load_s"])
    return {
        "model": str(model_dir), "kind": probes[0]["kind"], "runs": runs,
        "import_seconds": median("import_s"), "cold_load_seconds": median("cold_load_s"),
        "cold_load_seconds_max": max(p["cold_load_s"] for p in probes),
        "warm_load_seconds": warm, "unverified_load_seconds": raw,
        "verification_overhead_ratio": warm / raw if raw > 0 else None,
        "under_target": max(p["cold_load_s"] for p in probes) < TARGET_SECONDS,
    }


def run(args: argparse.Namespace) -> int:
    """Measure every model folder and print a table (or one JSON object)."""
    if args.runs < 1:
        raise InstrumentIdError(f"--runs must be at least 1, got {args.runs}")
    for model_dir in args.model:
        if not model_dir.is_dir():
            raise InstrumentIdError(f"{model_dir}: no model folder here")
    rows = [measure(model_dir, args.runs) for model_dir in args.model]
    result = {"target_seconds": TARGET_SECONDS, "runs": args.runs, "models": rows}
    report(args, result, print_report)
    return 0


def print_report(result: dict[str, Any]) -> None:
    """The figures as a markdown table."""
    print(f"verified load per model, fresh process each run (median of {result['runs']}; target < {TARGET_SECONDS:g} s)")
    print("| model | kind | framework import (s) | first verified load (s) | worst of runs (s) | warm verified (s) "
          "| warm unverified (s) | verified / unverified |")
    print("|---|---|---|---|---|---|---|---|")
    for r in result["models"]:
        ratio = "n/a" if r["verification_overhead_ratio"] is None else f"{r['verification_overhead_ratio']:.2f}x"
        print(f"| {r['model']} | {r['kind']} | {r['import_seconds']:.2f} | {r['cold_load_seconds']:.3f} | "
              f"{r['cold_load_seconds_max']:.3f} | {r['warm_load_seconds']:.3f} | {r['unverified_load_seconds']:.3f} "
              f"| {ratio} |")
