"""The prediction log on PostgreSQL (log_db = "postgresql://..."): one log, A/B report and feedback for many replicas.

The same tables, writes and report queries as the SQLite log (serving/store_sql.py), through psycopg 3: one
connection per process and thread, opened after the fork; every write is one transaction committed before the
answer leaves. A server that cannot take a write now (unreachable, a lock held past LOCK_TIMEOUT_MS, disk full,
shutting down) raises LogUnavailableError like SQLite's locked or full database; a connection it broke is
reopened on the next write.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Callable, Iterable, TypeVar
from urllib.parse import urlsplit, urlunsplit

from instrument_id.errors import InstrumentIdError
from serving.store import INSERT_COLUMNS, LogUnavailableError, PredictionRecord
from serving.report_sql import ReportAggregates, report_aggregates
from serving.store_sql import (LOGGED_FINGERPRINTS_SQL, UPSERT_FEEDBACK_SQL, feedback_args, insert_predictions_sql, instrument_mask,
                               schema_statements)

CONNECT_TIMEOUT_SECONDS = 2
LOCK_TIMEOUT_MS = 1000
WRITE_TIMEOUT_MS = 2000  # a write still running after this is cancelled, its rows kept to log later
SCHEMA_LOCK_KEY = 0x1D5C4E3A  # advisory lock: replicas starting together create the tables one at a time
T = TypeVar("T")


def redacted(url: str) -> str:
    """The URL with its password replaced by ***, for logs and startup lines."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise InstrumentIdError("log_db is a PostgreSQL URL but psycopg is not installed: pip install 'instrument-id[serve]'") from None
    return psycopg


def _unavailable_reason(exc: Exception) -> str:
    errors = _psycopg().errors
    if isinstance(exc, errors.DiskFull):
        return "disk_full"
    if isinstance(exc, (errors.LockNotAvailable, errors.QueryCanceled)):
        return "locked"
    return "unreachable"


def _dialect(sql: str) -> str:
    """store_sql's '?' placeholders as psycopg's '%s'."""
    return sql.replace("?", "%s")


class PostgresStore:
    """The PostgreSQL prediction and feedback log at one URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._psycopg = _psycopg()
        self._local = threading.local()

    def describe(self) -> str:
        """Where the log is, password hidden."""
        return redacted(self.url)

    def _open(self):
        return self._psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS,
                                     options=f"-c lock_timeout={LOCK_TIMEOUT_MS}")

    def init_schema(self) -> None:
        """Create the tables and indexes (idempotent, safe with replicas starting at once), adding the idempotency
        columns to a log made before them; the connection is closed so no fork inherits it."""
        try:
            with self._open() as connection, connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
                for statement in schema_statements("DOUBLE PRECISION", add_key_columns=True):
                    connection.execute(statement)
        except self._psycopg.Error as exc:
            raise InstrumentIdError(f"{self.describe()}: cannot open the prediction log ({str(exc).strip()})") from None

    def _connection(self):
        """This thread's connection in this process, reopened when the last one broke."""
        local = self._local
        connection = getattr(local, "connection", None)
        if getattr(local, "pid", None) != os.getpid() or connection is None or connection.closed or connection.broken:
            local.connection, local.pid = None, os.getpid()
            local.connection = self._open()
        return local.connection

    def _call(self, work: Callable[[object], T]) -> T:
        """Run work on this thread's connection; a server that cannot answer now raises LogUnavailableError."""
        try:
            return work(self._connection())
        except self._psycopg.OperationalError as exc:
            raise LogUnavailableError(_unavailable_reason(exc), f"{self.describe()}: {str(exc).strip()}") from exc

    def _write(self, work: Callable[[object], T]) -> T:
        def transaction(connection) -> T:
            with connection.transaction():
                connection.execute(f"SET LOCAL statement_timeout = {WRITE_TIMEOUT_MS}")
                return work(connection)

        return self._call(transaction)

    def log_predictions(self, records: Iterable[PredictionRecord]) -> None:
        """Insert the records in one committed transaction (a record already logged is kept as it is)."""
        rows = [record.row() for record in records]
        sql = _dialect(insert_predictions_sql(INSERT_COLUMNS))
        self._write(lambda connection: connection.cursor().executemany(sql, rows))

    def add_feedback(self, prediction_id: str, true_labels: list[str], owner: str | None = None,
                     since_ts: float = 0.0) -> int | None:
        """Record (or replace) the true instruments of a prediction logged since since_ts (by owner, unless None);
        how many feedbacks it has had, this one included (2 or more: replaced), or None when no such prediction."""
        args = feedback_args(prediction_id, json.dumps(true_labels), time.time(), instrument_mask(true_labels),
                             since_ts, owner)
        rows = self._write(lambda connection: connection.execute(_dialect(UPSERT_FEEDBACK_SQL), args).fetchall())
        return int(rows[0][0]) + 1 if rows else None

    def _fetch(self, sql: str, args: tuple = ()) -> list[tuple]:
        return self._call(lambda connection: connection.execute(_dialect(sql), args).fetchall())

    def logged_fingerprints(self, idempotency_key: str) -> set[str]:
        """The request fingerprints logged under an Idempotency-Key by any replica (empty when the key is new)."""
        return {row[0] for row in self._fetch(LOGGED_FINGERPRINTS_SQL, (idempotency_key,))}

    def report_aggregates(self, arm_names: list[str]) -> ReportAggregates:
        """The A/B report's counts, percentiles and sums of the named arms, computed by PostgreSQL over every
        replica's rows."""
        return report_aggregates(self._fetch, arm_names, sort_in_sql=True)

    def prediction_ids(self) -> set[str]:
        """Ids of every logged prediction."""
        return {row[0] for row in self._fetch("SELECT id FROM predictions")}

    def close(self) -> None:
        """Close this thread's connection (other threads keep theirs)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None and getattr(self._local, "pid", None) == os.getpid():
            connection.close()
        self._local.__dict__.clear()  # this thread's attributes only
