"""The prediction log's tables and writes, one SQL text for SQLite and PostgreSQL.

The instruments a prediction found, and the true ones its feedback gave, are also kept as an 11-bit mask (bit j:
column j of column_names()), so that the A/B report (serving/report_sql.py) sums integers in the database
instead of reading every logged row into Python. A feedback row copies its prediction's arm and mask when it is
written (neither ever changes), so the report's feedback sums read the feedback table alone.

Statements use '?' placeholders; a backend whose driver wants another style rewrites them (no statement holds a
literal '?' or '%').
"""

from __future__ import annotations

from typing import Iterable

from instrument_id.instruments import column_names

N_INSTRUMENTS = len(column_names())
COLUMN_BIT = {name: 1 << j for j, name in enumerate(column_names())}

# {real}: SQLite's REAL is 8 bytes, PostgreSQL's only 4, so the PostgreSQL schema says DOUBLE PRECISION.
# The two partial indexes cover the report's scans (routed latencies per arm; compare groups); the older indexes
# on arm and on compare_group alone are dropped, as the planners preferred them to the covering ones.
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
DROP INDEX IF EXISTS predictions_arm;
DROP INDEX IF EXISTS predictions_group;
CREATE INDEX IF NOT EXISTS predictions_routed_latency ON predictions (arm, latency_ms) WHERE compare_group IS NULL;
CREATE INDEX IF NOT EXISTS predictions_compared ON predictions (compare_group, arm, instruments_mask)
    WHERE compare_group IS NOT NULL;
CREATE TABLE IF NOT EXISTS feedback (
    prediction_id TEXT PRIMARY KEY REFERENCES predictions (id),
    true_labels TEXT NOT NULL,
    ts {real} NOT NULL,
    true_mask INTEGER,
    arm TEXT,
    predicted_mask INTEGER
);
"""
# what a log written before the masks lacks: (table, column, SQL filling it; instrument_mask() is a Python function)
ADDED_COLUMNS = (
    ("predictions", "instruments_mask", "instrument_mask(instruments)"),
    ("feedback", "true_mask", "instrument_mask(true_labels)"),
    ("feedback", "arm", "(SELECT arm FROM predictions WHERE id = prediction_id)"),
    ("feedback", "predicted_mask", "(SELECT instruments_mask FROM predictions WHERE id = prediction_id)"),
)


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


# args (prediction_id, true_labels JSON, ts, true_mask, prediction_id); no row is written for an unknown id
UPSERT_FEEDBACK_SQL = (
    "INSERT INTO feedback (prediction_id, true_labels, ts, true_mask, arm, predicted_mask) "
    "SELECT ?, ?, ?, ?, arm, instruments_mask FROM predictions WHERE id = ? "
    "ON CONFLICT (prediction_id) DO UPDATE SET true_labels = excluded.true_labels, ts = excluded.ts, "
    "true_mask = excluded.true_mask"
)
