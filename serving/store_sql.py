"""The prediction log's SQL, one text for SQLite and PostgreSQL: the schema, the writes, and the A/B report's aggregates.

The instruments a prediction found, and the true ones its feedback gave, are also kept as an 11-bit mask (bit j:
column j of column_names()), so the report's true positives and the arms' agreement are integer sums that the
database computes with GROUP BY, instead of every logged row being read into Python on each report.

Statements use '?' placeholders; a backend whose driver wants another style rewrites them (no statement holds a
literal '?' or '%').
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

from instrument_id.instruments import column_names

PERCENTILES = (50, 95, 99)
N_INSTRUMENTS = len(column_names())
COLUMN_BIT = {name: 1 << j for j, name in enumerate(column_names())}

# {real}: SQLite's REAL is 8 bytes, PostgreSQL's only 4, so the PostgreSQL schema says DOUBLE PRECISION
SCHEMA_TEMPLATE = """
CREATE TABLE IF NOT EXISTS predictions (
    id TEXT PRIMARY KEY,
    ts {real} NOT NULL,
    route TEXT NOT NULL,
    arm TEXT,
    model TEXT NOT NULL,
    model_version TEXT NOT NULL,
    latency_ms {real} NOT NULL,
    decode_ms {real} NOT NULL,
    features_ms {real} NOT NULL,
    model_ms {real} NOT NULL,
    probabilities TEXT NOT NULL,
    instruments TEXT NOT NULL,
    request_bytes INTEGER NOT NULL,
    client_id TEXT,
    compare_group TEXT,
    instruments_mask INTEGER
);
CREATE INDEX IF NOT EXISTS predictions_arm ON predictions (arm);
CREATE INDEX IF NOT EXISTS predictions_group ON predictions (compare_group);
CREATE INDEX IF NOT EXISTS predictions_routed_latency ON predictions (arm, latency_ms) WHERE compare_group IS NULL;
CREATE TABLE IF NOT EXISTS feedback (
    prediction_id TEXT PRIMARY KEY REFERENCES predictions (id),
    true_labels TEXT NOT NULL,
    ts {real} NOT NULL,
    true_mask INTEGER
);
"""
# columns a log written before the masks existed lacks: (table, column, JSON column it is computed from)
ADDED_COLUMNS = (("predictions", "instruments_mask", "instruments"), ("feedback", "true_mask", "true_labels"))


def schema_statements(real_type: str) -> list[str]:
    """The CREATE statements, one string each, with the backend's 8-byte float type."""
    return [s.strip() for s in SCHEMA_TEMPLATE.format(real=real_type).split(";") if s.strip()]


def instrument_mask(columns: Iterable[str]) -> int:
    """The 11-bit mask of instrument column names ('violin(41)'); unknown names are ignored."""
    return sum(COLUMN_BIT.get(name, 0) for name in set(columns))


def insert_predictions_sql(columns: list[str]) -> str:
    """INSERT of one prediction row; a row already logged (a retried commit that had landed) is left as it is."""
    return (f"INSERT INTO predictions ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
            "ON CONFLICT (id) DO NOTHING")


PREDICTION_KNOWN_SQL = "SELECT 1 FROM predictions WHERE id = ?"
UPSERT_FEEDBACK_SQL = (
    "INSERT INTO feedback (prediction_id, true_labels, ts, true_mask) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (prediction_id) DO UPDATE SET true_labels = excluded.true_labels, ts = excluded.ts, "
    "true_mask = excluded.true_mask"
)


def _popcount(expression: str) -> str:
    """SQL for the number of set bits of an 11-bit integer expression (neither database has one function for it)."""
    return "(" + " + ".join(f"(({expression} >> {j}) & 1)" for j in range(N_INSTRUMENTS)) + ")"


ROUTED_COUNTS_SQL = (
    "SELECT arm, COUNT(*) FROM predictions WHERE compare_group IS NULL AND arm IS NOT NULL GROUP BY arm"
)
# two neighbouring latencies of one arm's routed predictions, from whichever end is nearer (the partial index
# predictions_routed_latency walks only the rows it skips)
LATENCY_AT_SQL = {
    "ASC": "SELECT latency_ms FROM predictions WHERE arm = ? AND compare_group IS NULL "
           "ORDER BY latency_ms ASC LIMIT ? OFFSET ?",
    "DESC": "SELECT latency_ms FROM predictions WHERE arm = ? AND compare_group IS NULL "
            "ORDER BY latency_ms DESC LIMIT ? OFFSET ?",
}
FEEDBACK_SUMS_SQL = (
    "SELECT p.arm, COUNT(*), "
    f"SUM({_popcount('(p.instruments_mask & f.true_mask)')}), SUM({_popcount('p.instruments_mask')}), "
    f"SUM({_popcount('f.true_mask')}) "
    "FROM feedback f JOIN predictions p ON p.id = f.prediction_id WHERE p.arm IS NOT NULL GROUP BY p.arm"
)
# per compare group and arm the first model's answer (two arms on one model answer alike, so MIN picks it);
# a XOR b is (a | b) - (a & b): SQLite has no XOR operator
AGREEMENT_SQL = (
    "WITH g AS (SELECT compare_group, arm, MIN(instruments_mask) AS mask FROM predictions "
    "WHERE compare_group IS NOT NULL AND arm IS NOT NULL GROUP BY compare_group, arm) "
    "SELECT a.arm, b.arm, COUNT(*), SUM(CASE WHEN a.mask = b.mask THEN 1 ELSE 0 END), "
    f"SUM({_popcount('((a.mask | b.mask) - (a.mask & b.mask))')}) "
    "FROM g a JOIN g b ON a.compare_group = b.compare_group AND a.arm <> b.arm GROUP BY a.arm, b.arm"
)

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


def _lerp(low: float, high: float, t: float) -> float:
    """numpy.percentile's linear interpolation, its rounding included (from the nearer end)."""
    return high - (high - low) * (1 - t) if t >= 0.5 else low + (high - low) * t


def _percentile(fetch: Fetch, arm: str, n: int, q: float) -> float:
    """The q-th percentile of an arm's n routed latencies, as numpy.percentile's default (linear) computes it."""
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


def report_aggregates(fetch: Fetch) -> ReportAggregates:
    """Counts, exact latency percentiles, feedback and agreement sums per arm; fetch(sql, args) runs one query."""
    counts = {arm: int(n) for arm, n in fetch(ROUTED_COUNTS_SQL, ())}
    latency = {
        arm: {f"p{q}": round(_percentile(fetch, arm, n, q), 3) for q in PERCENTILES} for arm, n in counts.items()
    }
    feedback = {arm: FeedbackSums(int(n), int(hits or 0), int(predicted or 0), int(true or 0))
                for arm, n, hits, predicted, true in fetch(FEEDBACK_SUMS_SQL, ())}
    agreement = {(arm, other): AgreementSums(int(clips), int(exact or 0), int(differing or 0))
                 for arm, other, clips, exact, differing in fetch(AGREEMENT_SQL, ())}
    return ReportAggregates(counts, latency, feedback, agreement)
