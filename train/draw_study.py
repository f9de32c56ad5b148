"""Corpus draws x leave-one-soundfont-out: is a model better on an unseen timbre source when it is fitted on more
independently rendered corpora (draws: other seeds, other pieces), and do augmented copies of one draw's windows
stand in for new audio?

For every soundfont used alone in every draw and every draw d, the held-out recordings of d (that soundfont alone,
original windows) are scored by four fits, none of which sees the held-out soundfont:
- own: the other soundfonts' recordings of d (the usual leave-one-soundfont-out cell);
- others: those of every draw except d (no recording, piece or render of d is seen);
- all: those of every draw;
- all_originals: the same without the augmented variants (each draw's windows once, as a cache of --augment 0 holds).

Feature caches of one feature set, each beside the corpus it was made from (musicnet_metadata.csv names the
soundfonts). Synthetic audio only: real recordings take no part.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from instrument_id.errors import InstrumentIdError
from instrument_id.output import publish
from model_zoo.featureset import FeatureSet, load_featureset
from train.feature_study import _restrict, held_out_masks, held_out_scores, recording_fonts, without_source

FITS = ("own", "others", "all", "all_originals")


def join_draws(draws: list[tuple[FeatureSet, dict[str, frozenset[str]]]]) -> tuple[FeatureSet, list[frozenset[str]], np.ndarray]:
    """One FeatureSet of every draw's windows (recording ids prefixed with the draw's index, so equal ids of two
    corpora stay apart), the soundfonts of each window, and each window's draw index; caches of another feature
    set or other audio settings than the first are refused, naming both."""
    first = draws[0][0]
    for index, (features, fonts) in enumerate(draws):
        first.feature_set.check_same(features.feature_set, "draw 0's cache", f"draw {index}'s cache")
        if features.params != first.params:
            raise InstrumentIdError(f"draw {index}'s cache was made with other audio settings than draw 0's: "
                                    f"{features.params} vs {first.params}")
        unknown = sorted(str(r) for r in set(features.recording) - set(fonts))
        if unknown:
            raise InstrumentIdError(f"draw {index}: recordings {unknown[:5]} of the cache are not in its corpus's metadata")
    draw = np.concatenate([np.full(len(f.X), i, dtype=np.int16) for i, (f, _) in enumerate(draws)])  # (n,)
    joined = FeatureSet(
        X=np.concatenate([f.X for f, _ in draws]), Y=np.concatenate([f.Y for f, _ in draws]),
        split=np.concatenate([f.split for f, _ in draws]),
        recording=np.concatenate([np.char.add(f"{i}:", f.recording.astype(str)) for i, (f, _) in enumerate(draws)]),
        variant=np.concatenate([f.variant for f, _ in draws]),
        start_seconds=np.concatenate([f.start_seconds for f, _ in draws]), config=first.config)
    font_sets = [fonts[r] for f, fonts in draws for r in f.recording]  # per window
    return joined, font_sets, draw


def alone_in_every_draw(font_sets: list[frozenset[str]], draw: np.ndarray, n_draws: int) -> list[str]:
    """The soundfonts that some recording of every draw uses alone, sorted (font_sets and draw: one per window)."""
    return [font for font in sorted(set().union(*font_sets))
            if all(any(fonts == {font} for fonts, d in zip(font_sets, draw) if d == i) for i in range(n_draws))]


def fit_masks(fit: np.ndarray, draw: np.ndarray, variant: np.ndarray, n_draws: int) -> dict[tuple[str, int | None], np.ndarray]:
    """{(fit kind, draw or None): windows to fit on}, from the held-out fold's fit mask; 'others' of one of two draws
    is the other draw's 'own' and is not fitted twice."""
    masks: dict[tuple[str, int | None], np.ndarray] = {("own", d): fit & (draw == d) for d in range(n_draws)}
    if n_draws > 2:
        masks.update({("others", d): fit & (draw != d) for d in range(n_draws)})
    masks[("all", None)] = fit
    masks[("all_originals", None)] = fit & (variant == 0)
    return masks


def _fit_for(kind: str, test_draw: int, n_draws: int) -> tuple[str, int | None]:
    if kind == "own":
        return "own", test_draw
    if kind == "others":
        return ("own", 1 - test_draw) if n_draws == 2 else ("others", test_draw)
    return kind, None


def draw_study(draws: list[tuple[FeatureSet, dict[str, frozenset[str]]]], heads: list[str], seed: int) -> list[dict[str, Any]]:
    """One row per (held-out soundfont, head, test draw, fit kind): macro-F1, mAP and the share of no-instrument
    windows answered with nothing, on the test draw's original windows rendered with that soundfont alone."""
    from train.models import train_model

    if len(draws) < 2:
        raise InstrumentIdError(f"a draw study needs at least 2 corpora, got {len(draws)}")
    features, font_sets, draw = join_draws(draws)
    alone_in_every = alone_in_every_draw(font_sets, draw, len(draws))
    if not alone_in_every:
        raise InstrumentIdError("no soundfont is used alone in every draw: nothing to hold out")
    rows = []
    for held_out in tqdm(alone_in_every, desc="held-out soundfont", unit="font"):
        fit, score = held_out_masks(font_sets, held_out)
        masks = fit_masks(fit, draw, features.variant, len(draws))
        for head in heads:
            models = {key: train_model(_restrict(features, mask), head, seed=seed)
                      for key, mask in tqdm(masks.items(), desc=f"fits without {held_out}", unit="fit", leave=False)}
            for test_draw in range(len(draws)):
                target = score & (features.variant == 0) & (draw == test_draw)
                for kind in FITS:
                    key = _fit_for(kind, test_draw, len(draws))
                    rows.append({"held_out": held_out, "head": head, "test_draw": test_draw, "fit": kind,
                                 "n_fit_windows": int(masks[key].sum()), "n_windows": int(target.sum()),
                                 **held_out_scores(models[key], features, target)})
    return rows


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (head, fit kind): the mean macro-F1 and mAP over every (held-out soundfont, test draw) cell, and in how
    many cells the fit beats 'own'."""
    out = []
    for head in sorted({r["head"] for r in rows}):
        own = {(r["held_out"], r["test_draw"]): r["macro_f1"] for r in rows if r["head"] == head and r["fit"] == "own"}
        for kind in FITS:
            cells = [r for r in rows if r["head"] == head and r["fit"] == kind]
            out.append({"head": head, "fit": kind, "cells": len(cells),
                        "mean_macro_f1": float(np.mean([r["macro_f1"] for r in cells])),
                        "mean_mAP": float(np.mean([r["mAP"] for r in cells])),
                        "cells_above_own": sum(r["macro_f1"] > own[(r["held_out"], r["test_draw"])] for r in cells)})
    return out


def markdown(result: dict[str, Any]) -> str:
    """The study's tables as Markdown: the mean per fit kind, then every cell."""
    lines = [f"# Draw study: {result['feature_set']}", ""]
    lines += [f"draw {i}: {c} ({d})" for i, (c, d) in enumerate(zip(result["features"], result["data"]))] + [""]
    lines += ["| head | fit | mean macro-F1 | mean mAP | cells above own |", "|---|---|---|---|---|"]
    lines += [f"| {s['head']} | {s['fit']} | {s['mean_macro_f1']:.3f} | {s['mean_mAP']:.3f} | {s['cells_above_own']} of {s['cells']} |"
              for s in result["summary"]]
    lines += ["", "| held-out | head | test draw | " + " | ".join(FITS) + " |", "|---|---|---|" + "---|" * len(FITS)]
    cells: dict[tuple, dict[str, dict]] = {}
    for r in result["rows"]:
        cells.setdefault((r["held_out"], r["head"], r["test_draw"]), {})[r["fit"]] = r
    for (held_out, head, test_draw), by_fit in cells.items():
        lines.append(f"| {held_out} | {head} | {test_draw} | " + " | ".join(
            f"{by_fit[k]['macro_f1']:.3f} / {by_fit[k]['mAP']:.3f}" for k in FITS) + " |")
    return "\n".join(lines + ["", "(macro-F1 / mAP on the test draw's recordings of the held-out soundfont alone)", ""])


def add_draw_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every study over corpus draws takes (draw-study, threshold-study)."""
    parser.add_argument("--features", type=Path, nargs="+", required=True, help="one feature cache per corpus draw")
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="the corpus of each cache, in the same order")
    parser.add_argument("--out", type=Path, required=True, help="folder for study.json and study.md (not model_zoo/)")
    parser.add_argument("--heads", default="mlp", help="comma-separated model names (lr,mlp,rf,...)")
    parser.add_argument("--without", metavar="SOURCE", help="drop every recording that uses this timbre source (e.g. "
                        "freepats.cfg) from every draw that has one, so that the draws hold the same sources")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object of the figures")


def load_draws(args: argparse.Namespace) -> list[tuple[FeatureSet, dict[str, frozenset[str]]]]:
    """Each (cache, corpus) pair of the arguments as (features, {recording: sources}), without --without's source;
    an --out inside model_zoo/ or unpaired lists are refused before anything is read."""
    from model_zoo.zoo import refuse_model_zoo_path

    refuse_model_zoo_path(args.out)
    if len(args.features) != len(args.data):
        raise InstrumentIdError(f"--features names {len(args.features)} caches but --data {len(args.data)} corpora; "
                                "give one corpus per cache, in the same order")
    draws = []
    for cache, data in zip(args.features, args.data):
        features, fonts = load_featureset(cache), recording_fonts(data)
        if args.without and any(args.without in used for used in fonts.values()):
            features = without_source(features, fonts, args.without)
        draws.append((features, fonts))
    return draws


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `instrument-id draw-study`."""
    add_draw_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Load the draws, run the study, write study.json and study.md, print the tables (or the JSON)."""
    draws = load_draws(args)
    heads = [h for h in args.heads.split(",") if h]
    rows = draw_study(draws, heads, args.seed)
    result = {"features": [str(p) for p in args.features], "data": [str(p) for p in args.data],
              "feature_set": draws[0][0].feature_set.label, "without": args.without, "seed": args.seed,
              "summary": summary(rows), "rows": rows}
    publish(result, markdown(result), args.out, "study", args.json)
    return 0
