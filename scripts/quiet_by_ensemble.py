"""Which windows of none of the 11 a model answers with nothing, by the ensemble of their recording.

A study, not a product command (docs/results.md quotes it for the held-out real-note corpus):

    .venv/bin/python scripts/quiet_by_ensemble.py --model model_zoo/models/musicnn \
        --features data/features-musicnn-real-valid.npz --corpus data/synth-real-valid
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from instrument_id.instruments import column_names  # noqa: E402
from model_zoo import load_model  # noqa: E402
from model_zoo.featureset import load_featureset  # noqa: E402
from train.musicnet import METADATA_FILE  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True, help="the corpus the cache was made from")
    args = parser.parse_args()
    features = load_featureset(args.features)
    _P, D = load_model(args.model).predict_features(features.X)  # (n, 11) decisions
    with open(args.corpus / METADATA_FILE, newline="", encoding="utf-8") as handle:
        ensemble_of = {row["id"]: row["ensemble"] for row in csv.DictReader(handle)}
    none = features.Y.sum(axis=1) == 0  # (n,) windows of none of the 11
    ensembles = np.array([ensemble_of[r] for r in features.recording])[none]
    named = D[none]
    print(f"windows of none of the 11: {int(none.sum())}, answered with nothing {1 - named.any(axis=1).mean():.2f}")
    for ensemble in sorted(set(ensembles)):
        rows = named[ensembles == ensemble]
        counts = {column_names()[j]: int(rows[:, j].sum()) for j in np.flatnonzero(rows.sum(axis=0))}
        print(f"{ensemble}: {len(rows)} windows, answered with nothing {1 - rows.any(axis=1).mean():.2f}, named {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
