"""The prediction log on SQLite and on a real PostgreSQL server: writes, feedback, the report the database sums,
and the in-memory queue that keeps predictions answering while the database is locked, full or unreachable."""

from __future__ import annotations

import dataclasses
import random
import sqlite3
import time
import uuid

import numpy as np
import pytest

pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry  # noqa: E402

from instrument_id.errors import InstrumentIdError  # noqa: E402
from instrument_id.instruments import column_names  # noqa: E402
from postgres_fixture import postgres_server, postgres_url  # noqa: E402,F401
from serving.ab import ABRouter, ab_report  # noqa: E402
from serving.config import ArmConfig, parse_config  # noqa: E402
from serving.errors import ApiError  # noqa: E402
from serving.log_buffer import BufferedLog  # noqa: E402
from serving.prediction_log import open_prediction_log  # noqa: E402
from serving.store import PredictionRecord, PredictionStore  # noqa: E402

COLUMNS = column_names()
ROUTER = ABRouter([ArmConfig("A", "mlp", 1.0), ArmConfig("B", "rf", 1.0)])
ARMS = ["A", "B"]


def record(rng: random.Random, arm: str | None, group: str | None = None, record_id: str | None = None) -> PredictionRecord:
    """A prediction of random instruments and latency."""
    return PredictionRecord(
        id=record_id or uuid.uuid4().hex, ts=time.time(), route="/v2/compare" if group else "/v2/predict", arm=arm,
        model={"A": "mlp", "B": "rf", None: "other"}[arm], model_version="v1", latency_ms=rng.uniform(1, 80),
        decode_ms=0.1, features_ms=1.0, model_ms=0.5, probabilities={c: 0.5 for c in COLUMNS},
        instruments=[c for c in COLUMNS if rng.random() < 0.3], request_bytes=1000, client_id=None, compare_group=group,
    )


def random_labels(rng: random.Random) -> list[str]:
    """Random true instruments (column names)."""
    return [c for c in COLUMNS if rng.random() < 0.3]


@pytest.fixture(params=["sqlite", "postgres"])
def log_db(request, tmp_path):
    """A log_db setting for each backend (the PostgreSQL one skips where no server can be started)."""
    if request.param == "sqlite":
        return tmp_path / "log.sqlite"
    return request.getfixturevalue("postgres_url")


def open_log(log_db) -> tuple[BufferedLog, CollectorRegistry]:
    """The log of a test, with its own metrics registry."""
    registry = CollectorRegistry()
    return open_prediction_log(log_db, registry), registry


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """One metric's value in the registry (0 when never counted)."""
    return registry.get_sample_value(name, labels) or 0.0


def wait_for(condition, timeout_s: float = 30.0) -> None:
    """Poll until condition() holds (an outcome to wait for, not a speed to assert)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_the_report_the_database_sums_matches_the_rows(log_db):
    """Routed counts, exact latency percentiles (numpy's), feedback scores and compare agreement, from SQL."""
    rng = random.Random(7)
    log, _ = open_log(log_db)
    records = [record(rng, rng.choice("AB")) for _ in range(301)]
    for _ in range(25):
        group = uuid.uuid4().hex
        records += [record(rng, "A", group), record(rng, "B", group), record(rng, None, group)]
    for start in range(0, len(records), 100):
        log.log_predictions(records[start:start + 100])
    truth = {r.id: random_labels(rng) for r in rng.sample(records, 80)}
    for prediction_id, labels in truth.items():
        assert log.add_feedback(prediction_id, labels)
    report = ab_report(ROUTER, log.report_aggregates(ARMS))["arms"]

    for arm in "AB":
        routed = [r for r in records if r.arm == arm and not r.compare_group]
        assert report[arm]["count"] == len(routed)
        expected = np.percentile([r.latency_ms for r in routed], (50, 95, 99))
        assert report[arm]["latency_ms"] == {f"p{q}": round(float(v), 3) for q, v in zip((50, 95, 99), expected)}
        scored = [r for r in records if r.arm == arm and r.id in truth]
        tp = sum(len(set(r.instruments) & set(truth[r.id])) for r in scored)
        fp = sum(len(set(r.instruments) - set(truth[r.id])) for r in scored)
        fn = sum(len(set(truth[r.id]) - set(r.instruments)) for r in scored)
        scores = report[arm]["feedback"]
        assert (scores["n"], scores["true_positives"], scores["false_positives"], scores["false_negatives"]) == (len(scored), tp, fp, fn)
        assert scores["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    by_group = {}
    for r in records:
        if r.compare_group and r.arm:
            by_group.setdefault(r.compare_group, {})[r.arm] = set(r.instruments)
    differing = sum(len(g["A"] ^ g["B"]) for g in by_group.values())
    agreement = report["A"]["agreement"]["B"]
    assert agreement["clips"] == 25 and report["B"]["agreement"]["A"] == agreement
    assert agreement["exact_agreement"] == pytest.approx(sum(g["A"] == g["B"] for g in by_group.values()) / 25)
    assert agreement["instrument_agreement"] == pytest.approx(1 - differing / (25 * 11))
    log.close()


def test_an_empty_log_reports_zeros_and_a_retried_write_keeps_one_row(log_db):
    rng = random.Random(1)
    log, _ = open_log(log_db)
    empty = ab_report(ROUTER, log.report_aggregates(ARMS))["arms"]["A"]
    assert empty["count"] == 0 and empty["latency_ms"] == {"p50": None, "p95": None, "p99": None}
    assert empty["feedback"]["n"] == 0 and empty["agreement"]["B"]["clips"] == 0
    first = record(rng, "A")
    log.log_predictions([first])
    log.log_predictions([first, record(rng, "B")])  # a commit retried after it had landed
    assert len(log.prediction_ids()) == 2
    assert log.add_feedback(first.id, ["piano"]) and log.add_feedback(first.id, ["violin(41)", "cello(43)"])
    assert ab_report(ROUTER, log.report_aggregates(ARMS))["arms"]["A"]["feedback"]["n"] == 1  # replaced, not added
    assert not log.add_feedback("no-such-id", ["piano"])
    log.close()


def test_a_sqlite_log_written_before_the_masks_gains_them(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as connection:  # the schema as it was, with one prediction and its feedback
        connection.executescript("""
            CREATE TABLE predictions (id TEXT PRIMARY KEY, ts REAL NOT NULL, route TEXT NOT NULL, arm TEXT,
                model TEXT NOT NULL, model_version TEXT NOT NULL, latency_ms REAL NOT NULL, decode_ms REAL NOT NULL,
                features_ms REAL NOT NULL, model_ms REAL NOT NULL, probabilities TEXT NOT NULL,
                instruments TEXT NOT NULL, request_bytes INTEGER NOT NULL, client_id TEXT, compare_group TEXT);
            CREATE TABLE feedback (prediction_id TEXT PRIMARY KEY REFERENCES predictions (id),
                true_labels TEXT NOT NULL, ts REAL NOT NULL);
            INSERT INTO predictions VALUES ('p1', 0, '/v2/predict', 'A', 'mlp', 'v1', 12.5, 0, 0, 0, '{}',
                '["piano(1)", "violin(41)"]', 10, NULL, NULL);
            INSERT INTO feedback VALUES ('p1', '["violin(41)", "cello(43)"]', 0);
        """)
    connection.close()
    log, _ = open_log(path)
    scores = ab_report(ROUTER, log.report_aggregates(ARMS))["arms"]["A"]
    assert scores["count"] == 1 and scores["latency_ms"]["p50"] == 12.5
    assert (scores["feedback"]["true_positives"], scores["feedback"]["false_positives"],
            scores["feedback"]["false_negatives"]) == (1, 1, 1)
    log.close()


def keyed(item: PredictionRecord, key: str, fingerprint: str, **changes) -> PredictionRecord:
    """The record as a request sent with an Idempotency-Key logs it."""
    return dataclasses.replace(item, idempotency_key=key, request_fingerprint=fingerprint, **changes)


def test_a_key_logs_one_row_per_model_whatever_the_ids(log_db):
    """The unique (idempotency_key, model) index: a second row of the same key and model is ignored even under
    another id, another model's row of that key (a compare group) is kept, and rows without a key never clash."""
    rng = random.Random(8)
    log, _ = open_log(log_db)
    first = keyed(record(rng, "A"), "key-1", "f1")
    log.log_predictions([first])
    log.log_predictions([keyed(record(rng, "A"), "key-1", "f1"), keyed(record(rng, "B"), "key-1", "f1")])
    log.log_predictions([record(rng, "A"), record(rng, "A")])
    assert len(log.prediction_ids()) == 4 and first.id in log.prediction_ids()
    assert log.logged_fingerprints("key-1") == {"f1"} and log.logged_fingerprints("key-2") == set()
    log.close()


def run_sql(log_db, statements: list[str]) -> None:
    """Statements on the log's database, outside the store (as an older version of it would have run them)."""
    if isinstance(log_db, str):
        import psycopg

        with psycopg.connect(log_db, autocommit=True) as connection:
            for statement in statements:
                connection.execute(statement)
        return
    with sqlite3.connect(log_db) as connection:
        for statement in statements:
            connection.execute(statement)
    connection.close()


def test_a_log_written_before_idempotency_keys_gains_them_and_keeps_its_rows(log_db):
    run_sql(log_db, [  # the predictions table as it was (masks, no key columns), with one prediction
        """CREATE TABLE predictions (id TEXT PRIMARY KEY, ts REAL NOT NULL, route TEXT NOT NULL, arm TEXT,
            model TEXT NOT NULL, model_version TEXT NOT NULL, latency_ms REAL NOT NULL, decode_ms REAL NOT NULL,
            features_ms REAL NOT NULL, model_ms REAL NOT NULL, probabilities TEXT NOT NULL, instruments TEXT NOT NULL,
            request_bytes INTEGER NOT NULL, client_id TEXT, compare_group TEXT, instruments_mask INTEGER)""",
        "INSERT INTO predictions VALUES ('p1', 0, '/v2/predict', 'A', 'mlp', 'v1', 12.5, 0, 0, 0, '{}', '[]', 10, "
        "NULL, NULL, 0)",
    ])
    log, _ = open_log(log_db)
    retried = keyed(record(random.Random(9), "A"), "key-1", "f1")
    log.log_predictions([retried])
    log.log_predictions([retried])
    assert log.prediction_ids() == {"p1", retried.id}
    assert log.logged_fingerprints("key-1") == {"f1"}
    assert ab_report(ROUTER, log.report_aggregates(ARMS))["arms"]["A"]["count"] == 2
    log.close()
    reopened, _ = open_log(log_db)  # the migration runs once: opening again changes nothing
    assert reopened.prediction_ids() == {"p1", retried.id}
    reopened.close()


def test_a_locked_sqlite_log_still_answers_counts_the_rows_and_logs_them_later(tmp_path):
    rng = random.Random(2)
    registry = CollectorRegistry()
    log = open_prediction_log(tmp_path / "log.sqlite", registry)
    logged = record(rng, "A")
    log.log_predictions([logged])
    holder = sqlite3.connect(tmp_path / "log.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process's writer that never lets go
    waiting = [record(rng, "A"), record(rng, "B"), record(rng, "A")]
    for item in waiting:
        log.log_predictions([item])  # returns: the answer can be sent
    assert sample(registry, "instrument_id_predictions_unlogged_total", reason="locked") == 3
    assert sample(registry, "instrument_id_prediction_log_queue") == 3 and log.queued() == 3
    with pytest.raises(ApiError) as refused:
        log.add_feedback(logged.id, ["piano"])
    assert refused.value.status == 503 and "locked" in refused.value.message
    assert log.prediction_ids() == {logged.id}  # readers still see the committed log
    holder.execute("ROLLBACK")
    holder.close()
    wait_for(lambda: log.queued() == 0)
    assert log.prediction_ids() == {logged.id} | {r.id for r in waiting}
    assert sample(registry, "instrument_id_predictions_logged_late_total") == 3
    assert sample(registry, "instrument_id_prediction_log_queue") == 0
    log.close()


def test_a_full_disk_is_counted_and_the_rows_logged_once_there_is_room(tmp_path, monkeypatch):
    """SQLite's 'database or disk is full', as a page limit on every connection makes it say."""
    rng = random.Random(3)
    registry = CollectorRegistry()
    log = open_prediction_log(tmp_path / "log.sqlite", registry)
    log.log_predictions([record(rng, "A")])
    pages = sqlite3.connect(tmp_path / "log.sqlite").execute("PRAGMA page_count").fetchone()[0]
    opened, open_connection = [], PredictionStore._open

    def full_disk(store):
        connection = open_connection(store)
        connection.execute(f"PRAGMA max_page_count = {pages}")
        opened.append(connection)
        return connection

    log.close()
    monkeypatch.setattr(PredictionStore, "_open", full_disk)
    batch = [record(rng, "B") for _ in range(200)]  # more than the free room in the pages there are
    log.log_predictions(batch)
    assert sample(registry, "instrument_id_predictions_unlogged_total", reason="disk_full") == 200
    assert log.queued() == 200 and len(log.prediction_ids()) == 1
    monkeypatch.undo()
    for connection in opened:  # space freed
        connection.execute("PRAGMA max_page_count = 1073741823")
    wait_for(lambda: log.queued() == 0)
    assert len(log.prediction_ids()) == 201
    assert sample(registry, "instrument_id_predictions_logged_late_total") == 200
    log.close()


def test_the_queue_is_bounded_and_counts_what_it_drops(tmp_path):
    rng = random.Random(4)
    registry = CollectorRegistry()
    store = PredictionStore(tmp_path / "log.sqlite")
    store.init_schema()
    log = BufferedLog(store, registry, max_queued_records=2)
    holder = sqlite3.connect(tmp_path / "log.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    kept = [record(rng, "A"), record(rng, "A")]
    for item in [*kept, record(rng, "B")]:
        log.log_predictions([item])
    assert sample(registry, "instrument_id_predictions_unlogged_total", reason="locked") == 3
    assert sample(registry, "instrument_id_predictions_log_dropped_total") == 1 and log.queued() == 2
    holder.execute("ROLLBACK")
    holder.close()
    wait_for(lambda: log.queued() == 0)
    assert log.prediction_ids() == {r.id for r in kept}
    log.close()


def test_a_locked_postgres_table_defers_the_rows_until_the_lock_is_gone(postgres_url):
    import psycopg

    rng = random.Random(5)
    registry = CollectorRegistry()
    log = open_prediction_log(postgres_url, registry)
    with psycopg.connect(postgres_url) as holder:
        holder.execute("LOCK TABLE predictions IN ACCESS EXCLUSIVE MODE")  # held until this transaction ends
        waiting = [record(rng, "A"), record(rng, "B")]
        log.log_predictions(waiting)
        assert sample(registry, "instrument_id_predictions_unlogged_total", reason="locked") == 2
        holder.rollback()
    wait_for(lambda: log.queued() == 0)
    assert log.prediction_ids() == {r.id for r in waiting}
    log.close()


def test_an_unreachable_postgres_server_is_counted_and_answered_not_raised():
    pytest.importorskip("psycopg")
    import socket

    from serving.store_postgres import PostgresStore

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    registry = CollectorRegistry()
    log = BufferedLog(PostgresStore(f"postgresql://someone:secret@127.0.0.1:{port}/log"), registry)
    log.log_predictions([record(random.Random(6), "A")])
    assert sample(registry, "instrument_id_predictions_unlogged_total", reason="unreachable") == 1
    for call in (lambda: log.add_feedback("x", []), lambda: log.report_aggregates(ARMS)):
        with pytest.raises(ApiError) as refused:
            call()
        assert refused.value.status == 503
    assert "secret" not in log.describe() and "***" in log.describe()
    with pytest.raises(InstrumentIdError, match="cannot open the prediction log"):
        log.init_schema()
    log.close()


def test_log_db_takes_a_postgres_url_as_given_and_refuses_other_schemes(tmp_path):
    models = {"m": {"path": str(tmp_path), "runtime": "zoo"}}
    url = "postgresql://app@db.internal:5432/predictions"
    assert parse_config({"models": models, "log_db": url}, base_dir=tmp_path).log_db == url
    assert parse_config({"models": models, "log_db": "logs/p.sqlite"}, base_dir=tmp_path).log_db == tmp_path / "logs" / "p.sqlite"
    with pytest.raises(InstrumentIdError, match="mysql:// is not supported"):
        parse_config({"models": models, "log_db": "mysql://app@db/predictions"}, base_dir=tmp_path)
