"""Leave-one-library-out: the musicnn (or seed26) head fitted on soundfont corpora, on real-note corpora, or on both,
each scored on the held-out real notes, the soundfont corpus's test split and the real corpus's test split.

A study, not a product command (it decides the recipe of scripts/main.sh --full; docs/results.md has its table):

    .venv/bin/python scripts/library_study.py --soundfonts data/features-musicnn.npz \
        --real data/features-musicnn-real.npz --real-valid data/features-musicnn-real-valid.npz --out runs/library-study

Each fit takes its thresholds and early stopping from its own training caches' valid split ("own"), so a library never
heard in training is never used to select either; the row "both, selected on held-out real notes" is the main.sh
recipe (`train --valid`), whose held-out figures are then optimistic (it chose its thresholds there).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from instrument_id.instruments import column_names  # noqa: E402
from instrument_id.atomic import write_text_atomic  # noqa: E402
from model_zoo.featureset import load_featureset  # noqa: E402
from train.cache_merge import merge_caches  # noqa: E402
from train.evaluate import scored_metrics  # noqa: E402
from train.models import train_model  # noqa: E402

HARPSICHORD = column_names().index("harpsichord(7)")  # no real harpsichord: its held-out windows are a soundfont's


def score(model, X: np.ndarray, Y: np.ndarray, skip_harpsichord: bool) -> dict[str, float | None]:
    """macro-F1 and mAP over the instruments present (without harpsichord where asked), and the quiet share."""
    P, D = model.predict_features(X)
    keep = [j for j in range(Y.shape[1]) if not (skip_harpsichord and j == HARPSICHORD)]
    m = scored_metrics(Y, D, P)
    per = m["per_instrument"]
    f1 = [per[c]["f1"] for j, c in enumerate(column_names()) if j in keep and per[c]["support"] > 0]
    ap = [per[c]["average_precision"] for j, c in enumerate(column_names()) if j in keep and per[c]["support"] > 0]
    return {"macro_f1": float(np.mean(f1)), "mAP": float(np.mean(ap)),
            "quiet": m["no_instrument_rows"]["predicted_nothing_fraction"],
            "per_instrument_f1": {c: round(per[c]["f1"], 3) for j, c in enumerate(column_names())
                                  if j in keep and per[c]["support"] > 0}}


def plot_per_instrument(rows: dict, path: Path, test: str = "held-out real notes") -> None:
    """Grouped bars: each fit's F1 per instrument on one test set (a PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(rows)
    columns = list(rows[labels[0]][test]["per_instrument_f1"])
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(11, 4))
    for k, label in enumerate(labels):
        values = [rows[label][test]["per_instrument_f1"][c] for c in columns]
        ax.bar(np.arange(len(columns)) + (k - (len(labels) - 1) / 2) * width, values, width, label=label)
    ax.set_xticks(np.arange(len(columns)), [c.split("(")[0] for c in columns])
    ax.set_ylabel(f"F1 on {test}")
    ax.set_ylim(0, 1.15)
    ax.legend(fontsize=8, loc="upper center", ncol=len(labels))
    ax.set_title("musicnn head by training library, F1 per instrument on held-out real notes")
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--soundfonts", type=Path, required=True)
    parser.add_argument("--real", type=Path, required=True)
    parser.add_argument("--real-valid", type=Path, required=True)
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    held_out = load_featureset(args.real_valid)
    tests = {"held-out real notes": (held_out.X, held_out.Y, True)}
    for name, path in (("soundfont test split", args.soundfonts), ("real-corpus test split", args.real)):
        tests[name] = (*load_featureset(path).subset("test"), name.startswith("real"))
    fits = {"soundfonts only": ([args.soundfonts], None), "real notes only": ([args.real], None),
            "both": ([args.soundfonts, args.real], None),
            "both, selected on held-out real notes": ([args.soundfonts, args.real], args.real_valid)}
    rows = {}
    for label, (caches, valid) in fits.items():
        features = merge_caches(caches, valid)
        trained = train_model(features, args.model, seed=args.seed)
        rows[label] = {test: score(trained, X, Y, skip) for test, (X, Y, skip) in tests.items()}
        print(label, json.dumps({t: {k: v for k, v in r.items() if k != "per_instrument_f1"} for t, r in rows[label].items()}),
              flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "library_study.json", json.dumps(rows, indent=1) + "\n")
    lines = ["| fitted on | " + " | ".join(f"{t}: macro-F1 / mAP / quiet" for t in tests) + " |",
             "|---|" + "---|" * len(tests)]
    for label, row in rows.items():
        cells = [f"{r['macro_f1']:.3f} / {r['mAP']:.3f} / {r['quiet'] if r['quiet'] is None else round(r['quiet'], 2)}"
                 for r in row.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    write_text_atomic(args.out / "library_study.md", "\n".join(lines) + "\n")
    plot_per_instrument(rows, args.out / "library_study.png")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
