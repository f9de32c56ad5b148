"""A/B routing and its report: sticky arms per client, latency percentiles, agreement and feedback scores.

A client's arm is the sha256 of its X-Client-Id mapped into [0, 1) and compared with the arms' cumulative
normalized weights, so the same client always lands on the same arm (while the config stays the same) and the
split over many clients follows the weights. Requests without a client id are assigned at random.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import random
from collections import defaultdict
from typing import Any, Iterable

import numpy as np

from instrument_id.errors import InstrumentIdError
from serving.config import ArmConfig

PERCENTILES = (50, 95, 99)


def client_bucket(client_id: str) -> float:
    """A stable point in [0, 1) for a client id: the first 8 bytes of its sha256 over 2**64."""
    digest = hashlib.sha256(client_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class ABRouter:
    """Arms with normalized weights; assign() picks one per request."""

    def __init__(self, arms: Iterable[ArmConfig]) -> None:
        self.arms = tuple(arms)
        if not self.arms:
            raise InstrumentIdError("A/B routing needs at least one arm")
        total = sum(arm.weight for arm in self.arms)
        self.shares = [arm.weight / total for arm in self.arms]
        self._upper = list(itertools.accumulate(self.shares))[:-1]  # upper edges; the last arm takes the rest
        self._random = random.Random()
        self.by_name = {arm.name: arm for arm in self.arms}

    def arm_for_point(self, point: float) -> ArmConfig:
        """The arm whose cumulative-weight interval holds point (in [0, 1))."""
        return self.arms[bisect.bisect_right(self._upper, point)]

    def assign(self, client_id: str | None) -> ArmConfig:
        """Sticky for a client id, random without one."""
        point = client_bucket(client_id) if client_id else self._random.random()
        return self.arm_for_point(point)

    def arm_of_model(self, model_name: str) -> str | None:
        """The first arm serving this model, or None."""
        return next((arm.name for arm in self.arms if arm.model == model_name), None)


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {f"p{q}": None for q in PERCENTILES}
    found = np.percentile(np.asarray(values, dtype=np.float64), PERCENTILES)
    return {f"p{q}": round(float(v), 3) for q, v in zip(PERCENTILES, found)}


def _micro_scores(pairs: list[tuple[set[str], set[str]]]) -> dict[str, Any]:
    """Micro precision/recall/F1 over instruments from (predicted, true) column-name sets."""
    tp = sum(len(pred & true) for pred, true in pairs)
    fp = sum(len(pred - true) for pred, true in pairs)
    fn = sum(len(true - pred) for pred, true in pairs)
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return {
        "n": len(pairs), "true_positives": tp, "false_positives": fp, "false_negatives": fn,
        "precision": precision, "recall": recall, "f1": f1,
    }


def _agreement(rows: list[dict[str, Any]], arm_names: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per arm, per other arm: clips both scored in one compare group, exact and per-instrument agreement."""
    groups: dict[str, dict[str, set[str]]] = defaultdict(dict)
    for row in rows:
        if row["compare_group"] and row["arm"]:
            groups[row["compare_group"]].setdefault(row["arm"], set(row["instruments"]))
    result: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in arm_names}
    for arm, other in itertools.permutations(arm_names, 2):
        both = [g for g in groups.values() if arm in g and other in g]
        n_labels = len(both) * 11
        differing = sum(len(g[arm] ^ g[other]) for g in both)
        result[arm][other] = {
            "clips": len(both),
            "exact_agreement": sum(g[arm] == g[other] for g in both) / len(both) if both else None,
            "instrument_agreement": 1 - differing / n_labels if both else None,
        }
    return result


def ab_report(router: ABRouter, rows: list[dict[str, Any]], feedback: dict[str, list[str]]) -> dict[str, Any]:
    """The A/B report from logged prediction rows (dicts with arm, model, latency_ms, instruments, compare_group)
    and feedback {prediction_id: true column names}."""
    names = [arm.name for arm in router.arms]
    agreement = _agreement(rows, names)
    arms = {}
    for arm, share in zip(router.arms, router.shares):
        routed = [row for row in rows if row["arm"] == arm.name and not row["compare_group"]]
        scored = [row for row in rows if row["arm"] == arm.name and row["id"] in feedback]
        arms[arm.name] = {
            "model": arm.model,
            "weight": share,
            "count": len(routed),
            "latency_ms": _percentiles([row["latency_ms"] for row in routed]),
            "agreement": agreement[arm.name],
            "feedback": _micro_scores([(set(row["instruments"]), set(feedback[row["id"]])) for row in scored]),
        }
    return {
        "arms": arms,
        "notes": "count and latency cover A/B-routed predictions (/v2/predict, /RNA); agreement comes from "
                 "/v2/compare groups; precision/recall/F1 are micro-averaged over instruments on predictions "
                 "with feedback (compare predictions included)",
    }
