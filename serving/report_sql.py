"""The A/B report's aggregates, summed by the log's database (SQLite or PostgreSQL) over every replica's rows.

Per arm: routed counts and exact latency percentiles (as numpy.percentile's default computes them), feedback
sums over the feedback table alone, and agreement sums over the compare groups in one pass. SQLite walks the
partial index predictions_routed_latency to the two latencies around each percentile (LIMIT/OFFSET from the
nearer end); PostgreSQL, whose index walks cost more, sorts once with percentile_cont.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

from serving.store_sql import N_INSTRUMENTS

PERCENTILES = (50, 95, 99)
Fetch = Callable[[str, tuple], list[tuple]]


@dataclass(frozen=True)
class FeedbackSums:
    """One arm's predictions with feedback: how many, and instruments found, predicted and truly playing."""

    n: int
    hits: int
    predicted: int
    true: int


@dataclass(frozen=True)
class AgreementSums:
    """Compare groups two arms both scored: how many, how many alike in every instrument, instruments differing."""

    clips: int
    exact: int
    differing: int


@dataclass(frozen=True)
class ReportAggregates:
    """What the A/B report needs, as the database summed it."""

    routed_counts: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, dict[str, float | None]] = field(default_factory=dict)
    feedback: dict[str, FeedbackSums] = field(default_factory=dict)
    agreement: dict[tuple[str, str], AgreementSums] = field(default_factory=dict)


def _popcount(expression: str) -> str:
    """SQL for the number of set bits of an 11-bit integer expression (neither database has one function for it)."""
    return "(" + " + ".join(f"(({expression} >> {j}) & 1)" for j in range(N_INSTRUMENTS)) + ")"


def _in(n: int) -> str:
    return "(" + ", ".join("?" for _ in range(n)) + ")"


ROUTED_COUNT_SQL = "SELECT COUNT(*) FROM predictions WHERE arm = ? AND compare_group IS NULL"
LATENCY_AT_SQL = {
    order: f"SELECT latency_ms FROM predictions WHERE arm = ? AND compare_group IS NULL "
           f"ORDER BY latency_ms {order} LIMIT ? OFFSET ?"
    for order in ("ASC", "DESC")
}


def percentile_cont_sql(n_arms: int) -> str:
    """PostgreSQL: (arm, count, [p50, p95, p99]) per arm in one sort; percentile_cont interpolates as numpy does."""
    fractions = ", ".join(str(q / 100) for q in PERCENTILES)
    return (f"SELECT arm, COUNT(*), percentile_cont(ARRAY[{fractions}]) WITHIN GROUP (ORDER BY latency_ms) "
            f"FROM predictions WHERE compare_group IS NULL AND arm IN {_in(n_arms)} GROUP BY arm")


def feedback_sums_sql(n_arms: int) -> str:
    """(arm, n, hits, predicted, true) per arm from the feedback table's copied arm and masks."""
    return (f"SELECT arm, COUNT(*), SUM({_popcount('(predicted_mask & true_mask)')}), "
            f"SUM({_popcount('predicted_mask')}), SUM({_popcount('true_mask')}) "
            f"FROM feedback WHERE arm IN {_in(n_arms)} GROUP BY arm")


def agreement_sql(n_arms: int) -> str:
    """One pass over the compare groups: each arm's answer (mask) pivoted into a column, then per pair of arms
    (i < j) the groups both scored, those alike in every instrument, and the instruments that differ. Two arms
    on one model answer alike, so MIN picks either; a XOR b is (a | b) - (a & b), as SQLite has no XOR."""
    pivot = ", ".join(f"MIN(CASE WHEN arm = ? THEN instruments_mask END) AS m{i}" for i in range(n_arms))
    sums = []
    for i, j in itertools.combinations(range(n_arms), 2):
        a, b = f"m{i}", f"m{j}"
        sums += [f"SUM(CASE WHEN {a} IS NOT NULL AND {b} IS NOT NULL THEN 1 ELSE 0 END)",
                 f"SUM(CASE WHEN {a} = {b} THEN 1 ELSE 0 END)",
                 f"SUM({_popcount(f'(({a} | {b}) - ({a} & {b}))')})"]
    return (f"WITH g AS (SELECT {pivot} FROM predictions WHERE compare_group IS NOT NULL GROUP BY compare_group) "
            f"SELECT {', '.join(sums)} FROM g")


def _lerp(low: float, high: float, t: float) -> float:
    """numpy.percentile's linear interpolation, its rounding included (from the nearer end)."""
    return high - (high - low) * (1 - t) if t >= 0.5 else low + (high - low) * t


def _percentile_by_offset(fetch: Fetch, arm: str, n: int, q: float) -> float:
    """The q-th percentile of an arm's n routed latencies from the two rows around it (SQLite)."""
    quantile = q / 100
    virtual = n * quantile + (1 - quantile) - 1  # numpy's virtual index (alpha = beta = 1), same float steps
    low = min(max(int(math.floor(virtual)), 0), n - 1)
    high = min(low + 1, n - 1)
    count = high - low + 1
    if low <= n - 1 - high:
        values = [row[0] for row in fetch(LATENCY_AT_SQL["ASC"], (arm, count, low))]
    else:
        values = [row[0] for row in fetch(LATENCY_AT_SQL["DESC"], (arm, count, n - 1 - high))][::-1]
    return _lerp(float(values[0]), float(values[-1]), virtual - math.floor(virtual))


def _routed(fetch: Fetch, arms: Sequence[str], sort_in_sql: bool) -> tuple[dict[str, int], dict[str, dict[str, float]]]:
    if sort_in_sql:
        rows = fetch(percentile_cont_sql(len(arms)), tuple(arms))
        counts = {arm: int(n) for arm, n, _ in rows}
        latency = {arm: {f"p{q}": round(float(v), 3) for q, v in zip(PERCENTILES, values)} for arm, _, values in rows}
        return counts, latency
    counts = {arm: int(fetch(ROUTED_COUNT_SQL, (arm,))[0][0]) for arm in arms}
    counts = {arm: n for arm, n in counts.items() if n}
    latency = {arm: {f"p{q}": round(_percentile_by_offset(fetch, arm, n, q), 3) for q in PERCENTILES}
               for arm, n in counts.items()}
    return counts, latency


def _agreement(fetch: Fetch, arms: Sequence[str]) -> dict[tuple[str, str], AgreementSums]:
    """{(arm, other): sums}, both ways round, for every pair of the arms."""
    pairs = list(itertools.combinations(arms, 2))
    if not pairs:
        return {}
    [values] = fetch(agreement_sql(len(arms)), tuple(arms))
    agreement = {}
    for k, (arm, other) in enumerate(pairs):
        clips, exact, differing = (int(v or 0) for v in values[3 * k:3 * k + 3])
        agreement[(arm, other)] = agreement[(other, arm)] = AgreementSums(clips, exact, differing)
    return agreement


def report_aggregates(fetch: Fetch, arm_names: Sequence[str], sort_in_sql: bool = False) -> ReportAggregates:
    """Counts, latency percentiles, feedback and agreement sums of the named arms; fetch(sql, args) runs one
    query; sort_in_sql: percentiles by percentile_cont (PostgreSQL) instead of index offsets (SQLite)."""
    arms = list(dict.fromkeys(arm_names))
    if not arms:
        return ReportAggregates()
    counts, latency = _routed(fetch, arms, sort_in_sql)
    feedback = {arm: FeedbackSums(int(n), int(hits or 0), int(predicted or 0), int(true or 0))
                for arm, n, hits, predicted, true in fetch(feedback_sums_sql(len(arms)), tuple(arms))}
    return ReportAggregates(counts, latency, feedback, _agreement(fetch, arms))
