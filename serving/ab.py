"""A/B routing and its report: sticky arms per client, latency percentiles, agreement and feedback scores.

A client's arm is the sha256 of its X-Client-Id mapped into [0, 1) and compared with the arms' cumulative
normalized weights, so the same client always lands on the same arm (while the config stays the same), on every
replica alike without asking the database, and the split over many clients follows the weights. Requests
without a client id are assigned at random. The report's sums come from the log's database (serving/report_sql.py).
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import random
from typing import Any, Iterable

from instrument_id.errors import InstrumentIdError
from serving.config import ArmConfig
from serving.report_sql import PERCENTILES, AgreementSums, FeedbackSums, ReportAggregates
from serving.store_sql import N_INSTRUMENTS


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


def _micro_scores(sums: FeedbackSums | None) -> dict[str, Any]:
    """Micro precision/recall/F1 over instruments from an arm's summed feedback (None: no feedback yet)."""
    n, tp, predicted, true = (sums.n, sums.hits, sums.predicted, sums.true) if sums else (0, 0, 0, 0)
    fp, fn = predicted - tp, true - tp
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return {
        "n": n, "true_positives": tp, "false_positives": fp, "false_negatives": fn,
        "precision": precision, "recall": recall, "f1": f1,
    }


def _agreement(aggregates: ReportAggregates, arm_names: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per arm, per other arm: clips both scored in one compare group, exact and per-instrument agreement."""
    result: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in arm_names}
    for arm, other in itertools.permutations(arm_names, 2):
        sums = aggregates.agreement.get((arm, other), AgreementSums(0, 0, 0))
        result[arm][other] = {
            "clips": sums.clips,
            "exact_agreement": sums.exact / sums.clips if sums.clips else None,
            "instrument_agreement": 1 - sums.differing / (sums.clips * N_INSTRUMENTS) if sums.clips else None,
        }
    return result


def ab_report(router: ABRouter, aggregates: ReportAggregates) -> dict[str, Any]:
    """The A/B report from the log's aggregates (counts, latency percentiles, feedback and agreement sums)."""
    names = [arm.name for arm in router.arms]
    agreement = _agreement(aggregates, names)
    arms = {}
    for arm, share in zip(router.arms, router.shares):
        arms[arm.name] = {
            "model": arm.model,
            "weight": share,
            "count": aggregates.routed_counts.get(arm.name, 0),
            "latency_ms": aggregates.latency_ms.get(arm.name, {f"p{q}": None for q in PERCENTILES}),
            "agreement": agreement[arm.name],
            "feedback": _micro_scores(aggregates.feedback.get(arm.name)),
        }
    return {
        "arms": arms,
        "notes": "count and latency cover A/B-routed predictions (/v2/predict, /RNA); agreement comes from "
                 "/v2/compare groups; precision/recall/F1 are micro-averaged over instruments on predictions "
                 "with feedback (compare predictions included); all are summed by the log's database over "
                 "every replica writing to it",
    }
