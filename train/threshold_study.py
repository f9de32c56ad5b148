"""`instrument-id threshold-study`: on a soundfont the model never heard, do decisions get better when the
thresholds are chosen cross-source (on predictions for timbres left out of the fit, train/source_thresholds.py)
rather than on the valid split, or left at 0.5? And does averaging the cross-source models (each fitted without one
more source) beat the one model fitted on everything?

Leave-one-soundfont-out over one or more corpus draws joined (as draw-study's `all` fit): for each soundfont used
alone in every draw, the fit set is every recording that never uses it. On it are fitted the model (thresholds on
its valid windows, as `train` does) and, for the cross-source thresholds, one model per remaining soundfont
(nested: the held-out soundfont takes no part in choosing them). Each draw's original windows of the held-out
soundfont alone are then scored under every policy:
- valid: the model at its valid thresholds (what ships today);
- cross-source: the same model at the cross-source thresholds;
- fixed-0.5: the same model at 0.5;
- ensemble-valid / ensemble-cross-source: the mean probability of the nested models, at thresholds chosen on the
  fit set's valid windows from that mean, or at the cross-source thresholds.
Synthetic audio only: real recordings take no part.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from tqdm import tqdm

from instrument_id.errors import InstrumentIdError
from instrument_id.instruments import INSTRUMENTS
from instrument_id.output import publish
from train.draw_study import add_draw_arguments, alone_in_every_draw, join_draws, load_draws
from train.feature_study import _restrict, decision_scores, held_out_masks
from train.source_thresholds import out_of_source_predictions

POLICIES = ("valid", "cross-source", "fixed-0.5", "ensemble-valid", "ensemble-cross-source")


def threshold_study(draws: list, heads: list[str], seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(cells, thresholds): one cell per (held-out soundfont, head, test draw, policy) with macro-F1, mAP and quiet
    share; one thresholds row per (held-out soundfont, head, policy) with the 11 thresholds."""
    from train.models import choose_thresholds, train_model

    features, font_sets, draw = join_draws(draws)
    alone_in_every = alone_in_every_draw(font_sets, draw, len(draws))
    if len(alone_in_every) < 3:
        raise InstrumentIdError("a threshold study needs at least 3 soundfonts each used alone in every draw (one held "
                                f"out, two for the nested cross-source fits); these draws have {alone_in_every or 'none'}")
    cells, threshold_rows = [], []
    for held_out in tqdm(alone_in_every, desc="held-out soundfont", unit="font"):
        fit, score = held_out_masks(font_sets, held_out)
        fit_set = _restrict(features, fit)
        fit_fonts = [fonts for fonts, keep in zip(font_sets, fit) if keep]
        target = score & (features.variant == 0)
        for head in heads:
            model = train_model(fit_set, head, seed=seed)
            nested = out_of_source_predictions(fit_set, fit_fonts, head, seed)
            X_valid, Y_valid = fit_set.subset("valid")
            P_valid_ensemble = np.mean([m.predict_features(X_valid)[0] for m in nested.models], axis=0)
            P = model.predict_features(features.X[target])[0]  # (n, 11)
            P_ensemble = np.mean([m.predict_features(features.X[target])[0] for m in nested.models], axis=0)
            cross = nested.thresholds()
            policies = {"valid": (P, model.pipeline.thresholds), "cross-source": (P, cross),
                        "fixed-0.5": (P, np.full(len(INSTRUMENTS), 0.5)),
                        "ensemble-valid": (P_ensemble, choose_thresholds(Y_valid, P_valid_ensemble)),
                        "ensemble-cross-source": (P_ensemble, cross)}
            for policy, (probabilities, thresholds) in policies.items():
                threshold_rows.append({"held_out": held_out, "head": head, "policy": policy,
                                       "thresholds": [float(t) for t in thresholds]})
                for test_draw in range(len(draws)):
                    in_draw = draw[target] == test_draw
                    cells.append({"held_out": held_out, "head": head, "test_draw": test_draw, "policy": policy,
                                  "n_windows": int(in_draw.sum()),
                                  **decision_scores(features.Y[target][in_draw], probabilities[in_draw],
                                                    probabilities[in_draw] >= thresholds)})
    return cells, threshold_rows


def summary(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (head, policy): mean macro-F1, mAP and quiet share over the cells, and in how many cells its macro-F1
    beats the valid thresholds'."""
    out = []
    for head in sorted({c["head"] for c in cells}):
        valid = {(c["held_out"], c["test_draw"]): c["macro_f1"] for c in cells if c["head"] == head and c["policy"] == "valid"}
        for policy in POLICIES:
            rows = [c for c in cells if c["head"] == head and c["policy"] == policy]
            quiet = [c["quiet_share_no_instrument"] for c in rows if c["quiet_share_no_instrument"] is not None]
            out.append({"head": head, "policy": policy, "cells": len(rows),
                        "mean_macro_f1": float(np.mean([c["macro_f1"] for c in rows])),
                        "mean_mAP": float(np.mean([c["mAP"] for c in rows])),
                        "mean_quiet_share_no_instrument": float(np.mean(quiet)) if quiet else None,
                        "cells_above_valid": sum(c["macro_f1"] > valid[(c["held_out"], c["test_draw"])] for c in rows)})
    return out


def markdown(result: dict[str, Any]) -> str:
    """The mean per policy, every cell, and the thresholds of each policy."""
    lines = [f"# Threshold study: {result['feature_set']}", ""]
    lines += [f"draw {i}: {c} ({d})" for i, (c, d) in enumerate(zip(result["features"], result["data"]))] + [""]
    lines += ["| head | policy | mean macro-F1 | mean mAP | cells above valid |", "|---|---|---|---|---|"]
    lines += [f"| {s['head']} | {s['policy']} | {s['mean_macro_f1']:.3f} | {s['mean_mAP']:.3f} | "
              f"{s['cells_above_valid']} of {s['cells']} |" for s in result["summary"]]
    lines += ["", "| held-out | head | test draw | " + " | ".join(POLICIES) + " |", "|---|---|---|" + "---|" * len(POLICIES)]
    by: dict[tuple, dict[str, dict]] = {}
    for c in result["cells"]:
        by.setdefault((c["held_out"], c["head"], c["test_draw"]), {})[c["policy"]] = c
    for (held_out, head, test_draw), policies in by.items():
        lines.append(f"| {held_out} | {head} | {test_draw} | " + " | ".join(
            f"{policies[p]['macro_f1']:.3f}" for p in POLICIES) + " |")
    lines += ["", "(macro-F1 on the test draw's recordings of the held-out soundfont alone)", "",
              "| held-out | head | policy | " + " | ".join(i.column for i in INSTRUMENTS) + " |",
              "|---|---|---|" + "---|" * len(INSTRUMENTS)]
    lines += [f"| {t['held_out']} | {t['head']} | {t['policy']} | " + " | ".join(f"{v:.2f}" for v in t["thresholds"]) + " |"
              for t in result["thresholds"] if t["policy"] in ("valid", "cross-source", "ensemble-valid")]
    return "\n".join(lines + [""])


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `instrument-id threshold-study`."""
    add_draw_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Load the draws, run the study, write study.json and study.md, print the tables (or the JSON)."""
    draws = load_draws(args)
    heads = [h for h in args.heads.split(",") if h]
    cells, thresholds = threshold_study(draws, heads, args.seed)
    result = {"features": [str(p) for p in args.features], "data": [str(p) for p in args.data],
              "feature_set": draws[0][0].feature_set.label, "without": args.without, "seed": args.seed,
              "summary": summary(cells), "cells": cells, "thresholds": thresholds}
    publish(result, markdown(result), args.out, "study", args.json)
    return 0
