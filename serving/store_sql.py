"""The prediction log's tables and writes, one SQL text for SQLite and PostgreSQL.

The instruments a prediction found, and the true ones its feedback gave, are also kept as an 11-bit mask (bit j:
column j of column_names()), so that the A/B report (serving/report_sql.py) sums integers in the database
instead of reading every logged row into Python. A feedback row copies its prediction's arm and mask when it is
written (neither ever changes), so the report's feedback sums read the feedback table alone.

A prediction sent with an Idempotency-Key (serving/idempotency.py) stores the key and a fingerprint of its request;
the unique index on (idempotency_key, model) and the id derived from the key make a retried request's insert a
no-op, so a retry never logs a second row.

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
    idempotency_key TEXT,
    request_fingerprint TEXT,
    instruments_mask INTEGER
);
DROP INDEX IF EXISTS predictions_arm;
DROP INDEX IF EXISTS predictions_group;
CREATE INDEX IF NOT EXISTS predictions_routed_latency ON predictions (arm, latency_ms) WHERE compare_group IS NULL;
CREATE INDEX IF NOT EXISTS predictions_compared ON predictions (compare_group, arm, instruments_mask)
    WHERE compare_group IS NOT NULL;
{add_key_columns}
CREATE UNIQUE INDEX IF NOT EXISTS predictions_idempotency ON predictions (idempotency_key, model)
    WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS feedback (
    prediction_id TEXT PRIMARY KEY REFERENCES predictions (id),
    true_labels TEXT NOT NULL,
    ts {real} NOT NULL,
    true_mask INTEGER,
    arm TEXT,
    predicted_mask INTEGER,
    changed_count INTEGER NOT NULL DEFAULT 0
);
"""
# what a log written before the masks lacks: (table, column, SQL filling it; instrument_mask() is a Python function)
ADDED_COLUMNS = (
    ("predictions", "instruments_mask", "instrument_mask(instruments)"),
    ("feedback", "true_mask", "instrument_mask(true_labels)"),
    ("feedback", "arm", "(SELECT arm FROM predictions WHERE id = prediction_id)"),
    ("feedback", "predicted_mask", "(SELECT instruments_mask FROM predictions WHERE id = prediction_id)"),
    # rows logged before Idempotency-Key had none: NULL, which the unique index leaves out
    ("predictions", "idempotency_key", None),
    ("predictions", "request_fingerprint", None),
    ("feedback", "changed_count", "0"),  # logs from before feedback could be replaced had changed none
)
KEY_COLUMNS = [column for _, column, fill_sql in ADDED_COLUMNS if fill_sql is None]
POSTGRES_ADDED = ("ALTER TABLE feedback ADD COLUMN IF NOT EXISTS changed_count INTEGER NOT NULL DEFAULT 0",)


def schema_statements(real_type: str, add_key_columns: bool = False) -> list[str]:
    """The CREATE statements, one string each, with the backend's 8-byte float type; add_key_columns: also ALTER a
    predictions table made before the idempotency columns (PostgreSQL's ADD COLUMN IF NOT EXISTS; SQLite, which
    lacks it, adds them in PredictionStore's migration before these run)."""
    alters = ";".join(f"ALTER TABLE predictions ADD COLUMN IF NOT EXISTS {column} TEXT" for column in KEY_COLUMNS)
    text = SCHEMA_TEMPLATE.format(real=real_type, add_key_columns=alters + ";" if add_key_columns else "")
    statements = [s.strip() for s in text.split(";") if s.strip()]
    return [*statements, *POSTGRES_ADDED] if add_key_columns else statements


def instrument_mask(columns: Iterable[str]) -> int:
    """The 11-bit mask of instrument column names ('violin(41)'); unknown names are ignored."""
    return sum(COLUMN_BIT.get(name, 0) for name in set(columns))


def insert_predictions_sql(columns: list[str]) -> str:
    """INSERT of one prediction row; a row already logged is left as it is: a retried commit that had landed (same
    id), or a retried request of the same Idempotency-Key (same key and model; no conflict target, so both count)."""
    return (f"INSERT INTO predictions ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
            "ON CONFLICT DO NOTHING")


LOGGED_FINGERPRINTS_SQL = "SELECT DISTINCT request_fingerprint FROM predictions WHERE idempotency_key = ?"


# args: feedback_args(); no row is written for an unknown id, a prediction older than the window, or one another
# client asked for (owner NULL: open mode, anyone's); a second feedback replaces the first and counts the change.
# Answers the prediction's changed_count (0: first feedback), or no row.
UPSERT_FEEDBACK_SQL = (
    "INSERT INTO feedback (prediction_id, true_labels, ts, true_mask, arm, predicted_mask, changed_count) "
    "SELECT ?, ?, ?, ?, arm, instruments_mask, 0 FROM predictions "
    "WHERE id = ? AND ts >= ? AND (CAST(? AS TEXT) IS NULL OR client_id = ?) "
    "ON CONFLICT (prediction_id) DO UPDATE SET true_labels = excluded.true_labels, ts = excluded.ts, "
    "true_mask = excluded.true_mask, changed_count = feedback.changed_count + 1 "
    "RETURNING changed_count"
)


def feedback_args(prediction_id: str, labels_json: str, now: float, true_mask: int, since_ts: float,
                  owner: str | None) -> tuple:
    """UPSERT_FEEDBACK_SQL's arguments in placeholder order."""
    return (prediction_id, labels_json, now, true_mask, prediction_id, since_ts, owner, owner)
