"""Multi-label metrics over the 11 instruments, per instrument and averaged, as a JSON-ready dict."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, hamming_loss, precision_recall_fscore_support

from instrument_id.errors import InstrumentIdError
from instrument_id.instruments import INSTRUMENTS, NUM_INSTRUMENTS
from train.calibration import expected_calibration_error


def multilabel_metrics(Y_true: np.ndarray, Y_pred: np.ndarray, Y_prob: np.ndarray) -> dict[str, Any]:
    """Per-instrument precision/recall/F1/AP/support/ECE; macro F1 and mAP over instruments present; micro F1;
    subset and Hamming accuracy; expected calibration error of all forecasts. Y_true, Y_pred (n, 11) 0/1, Y_prob (n, 11) probabilities."""
    Y_true = np.asarray(Y_true).astype(np.int64)
    Y_pred = np.asarray(Y_pred).astype(np.int64)
    Y_prob = np.asarray(Y_prob, dtype=np.float64)
    shape = (len(Y_true), NUM_INSTRUMENTS)
    if len(Y_true) == 0 or any(a.shape != shape for a in (Y_true, Y_pred, Y_prob)):
        raise InstrumentIdError(
            f"metrics need equal non-empty (n, {NUM_INSTRUMENTS}) arrays, "
            f"got {Y_true.shape}, {Y_pred.shape}, {Y_prob.shape}"
        )
    precision, recall, f1, support = precision_recall_fscore_support(Y_true, Y_pred, average=None, zero_division=0)
    present = np.flatnonzero(support > 0)  # AP and macro F1 are undefined for an instrument never present
    average_precision = {int(j): float(average_precision_score(Y_true[:, j], Y_prob[:, j])) for j in present}
    per_instrument = {
        inst.column: {
            "precision": float(precision[j]),
            "recall": float(recall[j]),
            "f1": float(f1[j]),
            "average_precision": average_precision.get(j),
            "support": int(support[j]),
            "ece": expected_calibration_error(Y_true[:, j], Y_prob[:, j]),
        }
        for j, inst in enumerate(INSTRUMENTS)
    }
    has_present = len(present) > 0
    macro_f1 = f1_score(Y_true, Y_pred, labels=present, average="macro", zero_division=0) if has_present else None
    return {
        "n_windows": int(len(Y_true)),
        "macro_f1": None if macro_f1 is None else float(macro_f1),
        "micro_f1": float(f1_score(Y_true, Y_pred, average="micro", zero_division=0)),
        "mAP": float(np.mean(list(average_precision.values()))) if has_present else None,
        "subset_accuracy": float(accuracy_score(Y_true, Y_pred)),
        "hamming_accuracy": float(1.0 - hamming_loss(Y_true, Y_pred)),
        "ece": expected_calibration_error(Y_true, Y_prob),  # every (row, instrument) forecast pooled
        "instruments_present": [INSTRUMENTS[j].column for j in present],
        "per_instrument": per_instrument,
    }
