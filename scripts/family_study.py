"""A whole instrument family never heard as real notes: the musicnn head fitted on the soundfont corpus and on the
real-note pieces in which no instrument of the family plays, thresholds from those caches' own valid split, scored per
instrument on the held-out real notes (whose family notes no fit heard), beside the same fit with every piece.

A study, not a product command (docs/results.md has its table):

    .venv/bin/python scripts/family_study.py --family woodwinds --soundfonts data/features-musicnn.npz \
        --real data/features-musicnn-real.npz --real-corpus data/synth-real \
        --real-valid data/features-musicnn-real-valid.npz --out runs/family-study
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from instrument_id.atomic import write_text_atomic  # noqa: E402
from model_zoo.featureset import load_featureset  # noqa: E402
from train.cache_merge import MERGED_KEYS, merge_caches  # noqa: E402
from train.models import train_model  # noqa: E402
from train.real_notes import FAMILIES  # noqa: E402
from train.synth_ensembles import ENSEMBLE_BY_NAME  # noqa: E402
from library_study import score  # noqa: E402


def without_family(cache: Path, corpus: Path, family: str, out: Path) -> Path:
    """A copy of the real corpus's cache without the recordings in which an instrument of the family plays."""
    members = set(FAMILIES[family])
    with open(corpus / "musicnet_metadata.csv", newline="", encoding="utf-8") as handle:
        playing = {row["id"] for row in csv.DictReader(handle)
                   if members & ENSEMBLE_BY_NAME[row["ensemble"]].instruments}
    whole = load_featureset(cache)
    keep = ~np.isin(whole.recording, sorted(playing))
    part = dataclasses.replace(whole, **{k: getattr(whole, k)[keep] for k in MERGED_KEYS})
    part.config = {**whole.config, "corpus_fingerprint": f"{whole.config['corpus_fingerprint']}-without-{family}"}
    target = out / f"real-without-{family}.npz"
    part.save(target)
    print(f"{family}: {len(playing)} of {len(set(whole.recording))} real recordings dropped, "
          f"{int(keep.sum())} of {len(keep)} windows kept", flush=True)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=tuple(FAMILIES), default="woodwinds")
    parser.add_argument("--soundfonts", type=Path, required=True)
    parser.add_argument("--real", type=Path, required=True)
    parser.add_argument("--real-corpus", type=Path, required=True)
    parser.add_argument("--real-valid", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    held_out = load_featureset(args.real_valid)
    fits = {"every real piece": [args.soundfonts, args.real],
            f"no real {args.family}": [args.soundfonts, without_family(args.real, args.real_corpus, args.family,
                                                                        args.out)]}
    rows = {}
    for label, caches in fits.items():
        trained = train_model(merge_caches(caches), "mlp", seed=0)
        rows[label] = score(trained, held_out.X, held_out.Y, skip_harpsichord=True)
        print(label, json.dumps(rows[label]), flush=True)
    write_text_atomic(args.out / "family_study.json", json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
