"""The evaluation report: report.md, report.json, PR curves, reliability diagram, PCA plot, per-clip predictions.

Every file is written atomically; the figures come from train.evaluate, nothing here computes a metric that
the JSON does not hold (the curves are drawn from the same probabilities).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure  # a bare Figure renders with Agg, no pyplot state or display
from sklearn.metrics import average_precision_score, precision_recall_curve

from instrument_id.atomic import atomic_path, write_text_atomic
from instrument_id.instruments import INSTRUMENTS, column_names
from train.calibration import reliability_figure

PCA_PLOT = "pca_explained_variance.png"
RELIABILITY_PLOT = "reliability.png"


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def pr_curves_figure(Y: np.ndarray, probabilities: dict[str, np.ndarray], title: str) -> Figure:
    """One subplot per instrument, one precision-recall line per model (its AP in the legend)."""
    fig = Figure(figsize=(17, 11))
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.05, top=0.93, wspace=0.22, hspace=0.32)  # constrained layout: 2 s more
    axes = fig.subplots(3, 4).ravel()
    for j, inst in enumerate(INSTRUMENTS):
        ax, y = axes[j], Y[:, j]
        positives = int(y.sum())
        ax.set(title=f"{inst.column}: {positives} positive of {len(y)}", xlabel="recall", ylabel="precision",
               xlim=(0, 1), ylim=(0, 1.02))
        if positives == 0:
            ax.text(0.5, 0.5, "no positives: n/a", ha="center", va="center", transform=ax.transAxes)
            continue
        for label, P in probabilities.items():
            precision, recall, _ = precision_recall_curve(y, P[:, j])
            ap = average_precision_score(y, P[:, j])
            ax.step(recall, precision, where="post", label=f"{label} (AP {ap:.2f})")
        ax.axhline(positives / len(y), color="gray", linestyle=":", linewidth=1, label="chance")
        ax.legend(fontsize="x-small", loc="lower left")
    axes[-1].axis("off")
    fig.suptitle(title)
    return fig


def pca_figure(pca: dict[str, Any]) -> Figure:
    """Cumulative % of variance against the number of components, the chosen number and what it loses marked."""
    cumulative = 100.0 * np.asarray(pca["cumulative_explained_variance"])
    ratio = 100.0 * np.asarray(pca["explained_variance_ratio"])
    components = np.arange(1, len(cumulative) + 1)
    chosen = pca["chosen_components"]
    fig = Figure(figsize=(8, 5))
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.11, top=0.92)
    ax = fig.subplots()
    ax.bar(components, ratio, color="tab:gray", alpha=0.4, label="per component")
    ax.plot(components, cumulative, marker="o", label="cumulative")
    if pca["variance_kept_percent"] is not None:
        kept, lost = pca["variance_kept_percent"], pca["information_lost_percent"]
        ax.axvline(chosen, color="tab:red", linestyle="--")
        ax.axhline(kept, color="tab:red", linestyle=":")
        ax.annotate(f"{chosen} components: {kept:.1f}% kept, {lost:.1f}% lost", (chosen, kept),
                    xytext=(0.97, 0.3), textcoords="axes fraction", ha="right", color="tab:red",
                    bbox={"facecolor": "white", "edgecolor": "tab:red"}, arrowprops={"arrowstyle": "->", "color": "tab:red"})
    ax.set(xlabel="number of principal components", ylabel="% of variance", ylim=(0, 101),
           title=f"PCA of the 26 standardized features ({pca['n_windows']} train windows)")
    ax.set_xticks(components)
    ax.legend(loc="center right")
    return fig


def _save_png(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)


def _summary_features(models: dict[str, Any]) -> list[str]:
    rows = [
        [label, *(_fmt(e["splits"][s]["macro_f1"]) for s in ("train", "valid", "test")),
         _fmt(e["splits"]["test"]["micro_f1"]), _fmt(e["splits"]["test"]["mAP"]), _fmt(e["splits"]["test"].get("ece")),
         _fmt(e["predict_test_split_ms"], 2), _fmt(e["latency_ms_per_clip"], 2)]
        for label, e in models.items()
    ]
    lines = _table(["model", "macro-F1 train", "macro-F1 valid", "macro-F1 test", "micro-F1 test", "mAP test",
                    "ECE test", "predict test split (ms)", "one clip: features + model (ms)"], rows)
    accuracy = [
        [label, *(_fmt(e["splits"][s][key]) for key in ("subset_accuracy", "hamming_accuracy")
                  for s in ("train", "valid", "test"))]
        for label, e in models.items()
    ]
    baseline = next(iter(models.values()))["splits"]["test"]["hamming_accuracy_predict_nothing"]
    return lines + [
        "", "Two readings of \"accuracy\": subset accuracy counts a window right only when all 11 decisions are; "
        f"Hamming accuracy is the share of single decisions that are right, and predicting nothing already "
        f"scores {baseline:.3f} on the test split.", "",
        *_table(["model", "subset acc. train", "subset acc. valid", "subset acc. test",
                 "Hamming acc. train", "Hamming acc. valid", "Hamming acc. test"], accuracy),
    ]


def _summary_clips(models: dict[str, Any]) -> list[str]:
    rows = []
    for label, e in models.items():
        m = e["splits"]["clips"]
        rows.append([label, _fmt(m["macro_f1"]), _fmt(m["micro_f1"]), _fmt(m["mAP"]), _fmt(m.get("ece")),
                     _fmt(m["subset_accuracy"]), _fmt(m["hamming_accuracy"]),
                     _fmt(m["top1_accuracy_single_instrument_rows"]),
                     _fmt(m["no_instrument_rows"]["predicted_nothing_fraction"]), _fmt(e["latency_ms_per_clip"], 2)])
    return _table(["model", "macro-F1", "micro-F1", "mAP", "ECE", "subset acc.", "Hamming acc.",
                   "top-1 (one-instrument clips)", "no-instrument clips: predicted nothing",
                   "one clip: features + model (ms)"], rows)


def _per_instrument(models: dict[str, Any], split: str) -> list[str]:
    first = next(iter(models.values()))["splits"][split]["per_instrument"]
    rows = [[c, str(first[c]["support"]), *(_fmt(e["splits"][split]["per_instrument"][c]["f1"]) for e in models.values())]
            for c in column_names()]
    lines = ["", f"## F1 per instrument ({split})", "",
             "n/a: no positive in this split, so the instrument is left out of macro-F1 and mAP.", "",
             *_table(["instrument", "support", *models], rows)]
    for label, e in models.items():
        per = e["splits"][split]["per_instrument"]
        detail = [[c, _fmt(per[c]["precision"]), _fmt(per[c]["recall"]), _fmt(per[c]["f1"]),
                   _fmt(per[c]["average_precision"]), str(per[c]["support"]), str(per[c]["predicted_positives"]),
                   _fmt(e["thresholds"][c], 2)] for c in column_names()]
        lines += ["", f"### {label} ({e['model_kind']}, {e['kind']}, version {e['version']}, {split})", "",
                  *_table(["instrument", "precision", "recall", "F1", "AP", "support", "predicted", "threshold"], detail)]
    return lines


def markdown(figures: dict[str, Any], pr_plot: str) -> str:
    """The report as Markdown: summary tables, per-instrument tables, PCA figures and the plots."""
    source, models = figures["source"], figures["models"]
    lines = ["# Evaluation report", ""]
    if source["kind"] == "features":
        n = source["n_windows"]
        lines += [f"Feature cache `{source['features']}` (corpus {str(source['corpus_fingerprint'])[:12]}): "
                  f"train {n['train']} original windows (augmentations left out), valid {n['valid']}, test {n['test']}. "
                  "Decisions use each model's stored thresholds (chosen on valid when it was trained)."]
        other = [label for label, e in models.items() if not e["same_data_as_training"]]
        if other:
            lines += ["", f"Note: {', '.join(other)} were trained on another corpus; their 'train' column is not "
                      "their training data."]
        lines += ["", "## Summary", "", *_summary_features(models), *_per_instrument(models, "test")]
        pca = figures["pca"]
        lines += ["", "## PCA", "", f"PCA fitted on the {pca['fit_on']} ({pca['n_windows']} windows): "
                  f"{pca['chosen_components']} of 26 components keep {_fmt(pca['variance_kept_percent'], 1)}% "
                  f"of the variance, {_fmt(pca['information_lost_percent'], 1)}% is lost.", "", f"![PCA]({PCA_PLOT})"]
    else:
        lines += [f"{source['n_clips']} clips in `{source['clips']}` labelled by `{source['labels']}`; "
                  f"{source['n_clips_no_instrument']} have none of the 11 instruments. {source['clip_rule']}; "
                  "decisions use each model's stored thresholds.", "", "## Summary", "", *_summary_clips(models),
                  *_per_instrument(models, "clips")]
    lines += ["", "## Precision-recall curves", "", f"![precision-recall]({pr_plot})", "",
              "## Calibration", "", "ECE: expected calibration error of every (row, instrument) probability, 10 "
              "equal-width bins (0 = a forecast of p is right p of the time).", "",
              f"![reliability]({RELIABILITY_PLOT})", "",
              f"Timings are medians of {figures['timing_runs']} runs after a warm-up, on this machine."]
    return "\n".join(lines) + "\n"


def predictions_csv(evaluation: Any) -> str:
    """One row per clip and model: the true and predicted instruments and the 11 probabilities."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "model", "true", "predicted", *column_names()])
    names = np.array(column_names())
    for i, file in enumerate(evaluation.row_names):
        for label, P in evaluation.probabilities.items():
            writer.writerow([file, label, " ".join(names[evaluation.Y[i] == 1]),
                             " ".join(names[evaluation.decisions[label][i]]), *(f"{p:.4f}" for p in P[i])])
    return buffer.getvalue()


def write_report(out_dir: str | Path, evaluation: Any) -> list[Path]:
    """Write every report file into out_dir (each atomically); return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = evaluation.figures
    pr_plot = f"pr_curves_{evaluation.curve_split}.png"
    files = [pr_plot, RELIABILITY_PLOT, "report.md", "report.json"]
    if "pca" in figures:
        files.insert(1, PCA_PLOT)
    if evaluation.row_names is not None:
        files.append("predictions.csv")
    figures["report_files"] = files
    title = "test split" if evaluation.curve_split == "test" else f"{len(evaluation.Y)} clips"
    _save_png(pr_curves_figure(evaluation.Y, evaluation.probabilities, f"Precision-recall per instrument, {title}"),
              out_dir / pr_plot)
    _save_png(reliability_figure(evaluation.Y, evaluation.probabilities, f"Reliability, {title}"),
              out_dir / RELIABILITY_PLOT)
    if "pca" in figures:
        _save_png(pca_figure(figures["pca"]), out_dir / PCA_PLOT)
    if evaluation.row_names is not None:
        write_text_atomic(out_dir / "predictions.csv", predictions_csv(evaluation))
    write_text_atomic(out_dir / "report.md", markdown(figures, pr_plot))
    write_text_atomic(out_dir / "report.json", json.dumps(figures, indent=2) + "\n")
    return [out_dir / name for name in files]
