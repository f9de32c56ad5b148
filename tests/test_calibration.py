"""Expected calibration error and the reliability bins, against scikit-learn's calibration_curve."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import calibration_curve

from train.calibration import expected_calibration_error, reliability_bins, reliability_figure


def test_bins_match_scikit_learns_calibration_curve():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.999, 5000)
    y = (rng.uniform(size=5000) < p ** 2).astype(int)  # over-confident forecasts
    bins = reliability_bins(y, p)
    observed, forecast = calibration_curve(y, p, n_bins=10, strategy="uniform")
    filled = bins["count"] > 0
    np.testing.assert_allclose(bins["fraction_present"][filled], observed, atol=1e-12)
    np.testing.assert_allclose(bins["mean_probability"][filled], forecast, atol=1e-12)


def test_calibrated_forecasts_score_near_zero_and_wrong_ones_high():
    rng = np.random.default_rng(1)
    p = rng.uniform(size=(20000, 11))
    calibrated = (rng.uniform(size=p.shape) < p).astype(int)
    assert expected_calibration_error(calibrated, p) < 0.02
    inverted = (rng.uniform(size=p.shape) < 1 - p).astype(int)
    assert expected_calibration_error(inverted, p) == pytest.approx(0.5, abs=0.03)
    assert expected_calibration_error(np.ones(4), np.ones(4)) == 0.0  # a probability of 1.0 falls in the last bin


def test_the_reliability_figure_has_one_line_per_model_and_the_diagonal():
    rng = np.random.default_rng(2)
    Y = rng.integers(0, 2, size=(200, 11))
    fig = reliability_figure(Y, {"a": rng.uniform(size=(200, 11)), "b": Y * 0.9 + 0.05}, "test")
    top = fig.axes[0]
    assert len(top.lines) == 3 and "ECE" in top.get_legend().get_texts()[1].get_text()
