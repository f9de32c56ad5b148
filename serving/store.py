"""The prediction log on SQLite (the embedded default): WAL mode, one connection per process and thread.

Every answered prediction is committed before its response is sent, so a client that got a prediction id can
always give feedback on it, and a worker stopped or killed loses nothing it answered. A write the database
cannot take now (locked past the busy timeout, disk full, I/O error) raises LogUnavailableError, which
serving/log_buffer.py turns into an answer that is still sent and a row logged later.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from instrument_id.errors import InstrumentIdError
from serving.report_sql import ReportAggregates, report_aggregates
from serving.store_sql import (ADDED_COLUMNS, LOGGED_FINGERPRINTS_SQL, UPSERT_FEEDBACK_SQL, feedback_args, insert_predictions_sql,
                               instrument_mask, schema_statements)

BUSY_TIMEOUT_MS = 1000  # another process's commit takes well under a millisecond; a lock held longer is a fault
T = TypeVar("T")
# SQLite result codes (extended codes reduced to their first two words) that mean "not now", not "a bug"
UNAVAILABLE_CODES = {
    "SQLITE_BUSY": "locked", "SQLITE_LOCKED": "locked", "SQLITE_PROTOCOL": "locked",
    "SQLITE_FULL": "disk_full", "SQLITE_IOERR": "io_error", "SQLITE_CANTOPEN": "io_error", "SQLITE_READONLY": "io_error",
}
UNAVAILABLE_MESSAGES = (("locked", "locked"), ("busy", "locked"), ("full", "disk_full"), ("disk i/o", "io_error"),
                        ("unable to open", "io_error"), ("readonly", "io_error"))


class LogUnavailableError(Exception):
    """The log cannot take a write now; reason is one of locked, disk_full, io_error, unreachable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PredictionRecord:
    """One logged prediction; probabilities {column: p} and instruments [columns] are stored as JSON. A request sent
    with an Idempotency-Key also stores the key and its request's fingerprint (serving/idempotency.py)."""

    id: str
    ts: float
    route: str
    arm: str | None
    model: str
    model_version: str
    latency_ms: float
    decode_ms: float
    features_ms: float
    model_ms: float
    probabilities: dict[str, float]
    instruments: list[str]
    request_bytes: int
    client_id: str | None
    compare_group: str | None
    idempotency_key: str | None = None
    request_fingerprint: str | None = None

    def row(self) -> tuple:
        """The values in INSERT_COLUMNS order: JSON fields encoded, the instruments' mask last (getattr per column:
        astuple deep-copies, 0.4 ms a row)."""
        values = (json.dumps(getattr(self, name)) if name in JSON_COLUMNS else getattr(self, name) for name in COLUMNS)
        return (*values, instrument_mask(self.instruments))


COLUMNS = [f.name for f in fields(PredictionRecord)]
INSERT_COLUMNS = [*COLUMNS, "instruments_mask"]
JSON_COLUMNS = frozenset({"probabilities", "instruments"})


def unavailable_reason(exc: sqlite3.Error) -> str | None:
    """'locked', 'disk_full' or 'io_error' when exc says the database cannot write now; None for anything else."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    reason = UNAVAILABLE_CODES.get("_".join(name.split("_")[:2]))
    if reason or name:
        return reason
    message = str(exc).lower()  # Python before 3.11 names no error code
    return next((reason for word, reason in UNAVAILABLE_MESSAGES if word in message), None)


class PredictionStore:
    """The SQLite prediction and feedback log at one path."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        # one writer at a time in this process: SQLite's busy handler sleeps whole milliseconds (1, 2, 5, 10 ...)
        # when a thread finds the write lock taken, which under load turned 0.1 ms commits into latency spikes;
        # threads now queue here and only the other worker processes can still hold the lock
        self._write_lock = threading.Lock()

    def describe(self) -> str:
        """Where the log is, for the startup line."""
        return str(self.path)

    def init_schema(self) -> None:
        """Create the folder, the tables and WAL mode, and add the report's columns to a log written before them;
        the connection is closed so no fork inherits it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = self._open()
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                self._add_mask_columns(connection)
                for statement in schema_statements("REAL"):
                    connection.execute(statement)
            finally:
                connection.close()
        except (OSError, sqlite3.Error) as exc:
            raise InstrumentIdError(f"{self.path}: cannot open the prediction log ({exc})") from None

    @staticmethod
    def _add_mask_columns(connection: sqlite3.Connection) -> None:
        """Older logs: add the masks (and feedback's copied arm) and fill them from the rows, and the idempotency
        columns (NULL: no key), in one transaction."""
        connection.create_function("instrument_mask", 1, lambda text: instrument_mask(json.loads(text)), deterministic=True)
        connection.execute("BEGIN IMMEDIATE")
        try:
            for table, column, value_sql in ADDED_COLUMNS:
                present = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
                if present and column not in present:
                    connection.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
                    if value_sql is not None:
                        connection.execute(f"UPDATE {table} SET {column} = {value_sql}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def _open(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        connection.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a crash of the process
        connection.execute("PRAGMA foreign_keys=ON")
        return connection

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection in this process (a forked worker opens its own)."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.connection, local.pid = self._open(), os.getpid()
        return local.connection

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run work in one committed transaction; LogUnavailableError when the database cannot take it now."""
        if not self._write_lock.acquire(timeout=BUSY_TIMEOUT_MS / 1000):
            raise LogUnavailableError("locked", f"{self.path}: this process's writers are stuck behind a locked log")
        try:
            connection = self._connection()
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = work(connection)
                connection.execute("COMMIT")
                return result
            except BaseException:
                if connection.in_transaction:  # a failed COMMIT may have rolled back already
                    connection.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            reason = unavailable_reason(exc)
            if reason is None:
                raise
            raise LogUnavailableError(reason, f"{self.path}: {exc}") from exc
        finally:
            self._write_lock.release()

    def log_predictions(self, records: Iterable[PredictionRecord]) -> None:
        """Insert the records in one committed transaction (a record already logged is kept as it is)."""
        rows = [record.row() for record in records]
        sql = insert_predictions_sql(INSERT_COLUMNS)
        self._write(lambda connection: connection.executemany(sql, rows))

    def add_feedback(self, prediction_id: str, true_labels: list[str], owner: str | None = None,
                     since_ts: float = 0.0) -> int | None:
        """Record (or replace) the true instruments of a prediction logged since since_ts (by owner, unless None);
        how many feedbacks it has had, this one included (2 or more: replaced), or None when no such prediction."""
        args = feedback_args(prediction_id, json.dumps(true_labels), time.time(), instrument_mask(true_labels),
                             since_ts, owner)
        rows = self._write(lambda connection: connection.execute(UPSERT_FEEDBACK_SQL, args).fetchall())
        return int(rows[0][0]) + 1 if rows else None

    def _fetch(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._connection().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            reason = unavailable_reason(exc)
            if reason is None:
                raise
            raise LogUnavailableError(reason, f"{self.path}: {exc}") from exc

    def logged_fingerprints(self, idempotency_key: str) -> set[str]:
        """The request fingerprints logged under an Idempotency-Key (empty when the key is new)."""
        return {row[0] for row in self._fetch(LOGGED_FINGERPRINTS_SQL, (idempotency_key,))}

    def report_aggregates(self, arm_names: list[str]) -> ReportAggregates:
        """The A/B report's counts, percentiles and sums of the named arms, computed by SQLite."""
        return report_aggregates(self._fetch, arm_names)

    def _query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        connection = self._connection()
        connection.row_factory = sqlite3.Row
        try:
            return connection.execute(sql, args).fetchall()
        finally:
            connection.row_factory = None

    def prediction_rows(self) -> list[dict[str, Any]]:
        """Every logged prediction as a dict (instruments decoded)."""
        rows = self._query("SELECT id, arm, model, latency_ms, instruments, compare_group FROM predictions")
        return [{**dict(row), "instruments": json.loads(row["instruments"])} for row in rows]

    def feedback(self) -> dict[str, list[str]]:
        """{prediction_id: true column names}."""
        return {row["prediction_id"]: json.loads(row["true_labels"]) for row in self._query("SELECT * FROM feedback")}

    def prediction_ids(self) -> set[str]:
        """Ids of every logged prediction."""
        return {row["id"] for row in self._query("SELECT id FROM predictions")}

    def close(self) -> None:
        """Close this thread's connection (other threads keep theirs)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None and getattr(self._local, "pid", None) == os.getpid():
            connection.close()
        self._local.__dict__.clear()  # this thread's attributes only
