"""`instrument-id quiet-check`: does a model answer "none of the 11" when no instrument plays?

Renders clips of every kind of non-music that `synth --no-instrument` writes (silence, white / pink / brown noise,
mains hum, crackle, test tones and sweeps, noise bursts), each kind at levels spread evenly over its range, and
scores them with each model as `predict` does (a window names an instrument above its threshold; a clip names the
instruments any of its windows names). Per model and kind: the share of clips answered with nothing, and the
instruments most often named instead. Generated with its own seed, not taken from any corpus; a model trained with
no-instrument recordings has seen these kinds (not these clips), so this checks the answer, not generalization:
real recordings (`evaluate --clips`) judge that.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from instrument_id.audio import resample
from instrument_id.errors import InstrumentIdError
from instrument_id.instruments import column_names
from instrument_id.output import publish
from train.synth_nonmusic import KINDS, _segment
from train.synth_perform import SAMPLE_RATE_HZ


def quiet_clips(kind: str, n_clips: int, seconds: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """((n_clips, samples) float32 clips of one kind at SAMPLE_RATE_HZ, (n_clips,) their levels in dBFS RMS, evenly
    spaced over the kind's range)."""
    if kind not in KINDS:
        raise InstrumentIdError(f"unknown non-music kind {kind!r}; kinds: {', '.join(KINDS)}")
    rng = np.random.default_rng([seed, list(KINDS).index(kind)])
    levels_db = np.linspace(*KINDS[kind][1], n_clips)  # (n_clips,)
    n = int(round(seconds * SAMPLE_RATE_HZ))
    clips = np.stack([_segment(rng, kind, n) * 10.0 ** (level / 20.0) for level in levels_db])  # (n_clips, n)
    return np.clip(clips, -1.0, 1.0).astype(np.float32), levels_db


def check_model(model: Any, n_clips: int, seconds: float, seed: int) -> dict[str, Any]:
    """Per kind: clips, share answered with nothing, the quietest level answered with something, and the
    instruments named (count of clips naming each); and the share over every clip."""
    names = column_names()
    kinds, answered_nothing = {}, []
    for kind in tqdm(KINDS, desc="quiet-check", unit="kind", leave=False, disable=None):
        clips, levels_db = quiet_clips(kind, n_clips, seconds, seed)
        named = Counter()
        quiet = []
        for clip in clips:
            y = resample(clip, SAMPLE_RATE_HZ, model.params.sample_rate_hz)  # (samples at the model's rate,)
            decisions = model.predict_clip(y, name=kind).window_decisions.any(axis=0)  # (11,)
            quiet.append(not decisions.any())
            named.update(names[j] for j in np.flatnonzero(decisions))
        quiet_array = np.array(quiet)
        loud_answered = levels_db[~quiet_array]
        kinds[kind] = {"clips": n_clips, "quiet_share": float(quiet_array.mean()),
                       "quietest_level_answered_db": float(loud_answered.min()) if len(loud_answered) else None,
                       "named": dict(named.most_common())}
        answered_nothing += quiet
    return {"quiet_share": float(np.mean(answered_nothing)), "kinds": kinds}


def markdown(result: dict[str, Any]) -> str:
    """One row per kind, one column per model: the quiet share and what was named instead."""
    models = list(result["models"])
    lines = [f"# Quiet check: {result['clips_per_kind']} clips of {result['seconds']:g} s per kind, seed {result['seed']}", "",
             "| kind | levels dBFS | " + " | ".join(models) + " |", "|---|---|" + "---|" * len(models)]
    for kind, (_, (low, high)) in KINDS.items():
        cells = []
        for label in models:
            entry = result["models"][label]["kinds"][kind]
            top = ", ".join(f"{name} {count}" for name, count in list(entry["named"].items())[:2])
            cells.append(f"{entry['quiet_share']:.0%}" + (f" ({top})" if top else ""))
        lines.append(f"| {kind} | {low:g}..{high:g} | " + " | ".join(cells) + " |")
    lines.append("| **all** | | " + " | ".join(f"**{result['models'][m]['quiet_share']:.0%}**" for m in models) + " |")
    return "\n".join(lines + ["", "(share of clips answered with nothing; in brackets the instruments named most, "
                              "with the number of clips naming each)", ""])


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `instrument-id quiet-check`."""
    parser.add_argument("--model", nargs="+", required=True, type=Path, metavar="DIR", help="model folders or .tflite files")
    parser.add_argument("--clips-per-kind", type=int, default=16, help="clips of each kind (default 16)")
    parser.add_argument("--seconds", type=float, default=2.0, help="clip length (default 2 s: one window)")
    parser.add_argument("--seed", type=int, default=101)
    parser.add_argument("--out", type=Path, help="also write quiet_check.json and quiet_check.md into this folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object of the figures")


def run(args: argparse.Namespace) -> int:
    """Check every model, print the table (or the JSON), write it where --out says."""
    from model_zoo.loader import open_model

    if args.clips_per_kind < 1 or not 0.1 <= args.seconds <= 60:
        raise InstrumentIdError(f"--clips-per-kind {args.clips_per_kind} / --seconds {args.seconds:g}: "
                                "need at least 1 clip of 0.1 to 60 s")
    result = {"clips_per_kind": args.clips_per_kind, "seconds": args.seconds, "seed": args.seed,
              "models": {str(path): check_model(open_model(path), args.clips_per_kind, args.seconds, args.seed)
                         for path in args.model}}
    publish(result, markdown(result), args.out, "quiet_check", args.json)
    return 0
