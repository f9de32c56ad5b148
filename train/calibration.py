"""Calibration: do the probabilities mean what they say? Expected calibration error and the reliability diagram.

Every (window or clip, instrument) cell is one forecast: among cells given about 0.8, about 80% should hold the
instrument. ECE bins the forecasts by probability (equal-width bins) and averages |mean forecast - share
present| over the bins, weighted by their counts; 0 is perfectly calibrated, and always answering the base rate
scores 0 too, so read it beside mAP.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

N_BINS = 10


def reliability_bins(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = N_BINS) -> dict[str, np.ndarray]:
    """Flattened 0/1 truths and probabilities -> per bin: mean forecast, share present, count (empty bins: NaN, 0)."""
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_prob = np.clip(np.asarray(y_prob, dtype=np.float64).ravel(), 0.0, 1.0)
    which = np.minimum((y_prob * n_bins).astype(np.int64), n_bins - 1)  # (cells,) bin index; 1.0 joins the last bin
    count = np.bincount(which, minlength=n_bins).astype(np.float64)  # (n_bins,)
    with np.errstate(invalid="ignore", divide="ignore"):
        forecast = np.bincount(which, weights=y_prob, minlength=n_bins) / count
        observed = np.bincount(which, weights=y_true, minlength=n_bins) / count
    return {"mean_probability": forecast, "fraction_present": observed, "count": count}


def expected_calibration_error(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = N_BINS) -> float:
    """Count-weighted mean |mean forecast - share present| over the probability bins, all cells pooled."""
    bins = reliability_bins(y_true, y_prob, n_bins)
    filled = bins["count"] > 0
    gaps = np.abs(bins["mean_probability"][filled] - bins["fraction_present"][filled])
    return float(np.sum(gaps * bins["count"][filled]) / np.sum(bins["count"][filled]))


def reliability_figure(Y: np.ndarray, probabilities: dict[str, np.ndarray], title: str) -> Figure:
    """Share present against mean forecast per bin, one line per model (ECE in the legend), the diagonal for
    perfect calibration, and how many forecasts fall in each bin underneath."""
    fig = Figure(figsize=(8, 7))
    top, bottom = fig.subplots(2, 1, gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    top.plot([0, 1], [0, 1], color="gray", linestyle=":", label="perfectly calibrated")
    edges = np.linspace(0, 1, N_BINS + 1)
    for label, P in probabilities.items():
        bins = reliability_bins(Y, P)
        filled = bins["count"] > 0
        top.plot(bins["mean_probability"][filled], bins["fraction_present"][filled], marker="o",
                 label=f"{label} (ECE {expected_calibration_error(Y, P):.3f})")
        bottom.step(edges[:-1], bins["count"], where="post", label=label)
    top.set(ylabel="share of forecasts where the instrument is present", xlim=(0, 1), ylim=(0, 1), title=title)
    top.legend(loc="upper left", fontsize="small")
    bottom.set(xlabel="forecast probability", ylabel="forecasts", yscale="log")
    fig.subplots_adjust(left=0.11, right=0.98, bottom=0.08, top=0.94, hspace=0.08)
    return fig
