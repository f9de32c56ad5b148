"""The prediction log: SQLite in WAL mode, one connection per process and thread, commits retried when busy.

Every answered prediction is committed before its response is sent, so a client that got a prediction id can
always give feedback on it, and a worker stopped gracefully loses nothing it answered.
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

BUSY_TIMEOUT_MS = 5000
RETRIES = 5
RETRY_BASE_SECONDS = 0.05
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    route TEXT NOT NULL,
    arm TEXT,
    model TEXT NOT NULL,
    model_version TEXT NOT NULL,
    latency_ms REAL NOT NULL,
    decode_ms REAL NOT NULL,
    features_ms REAL NOT NULL,
    model_ms REAL NOT NULL,
    probabilities TEXT NOT NULL,
    instruments TEXT NOT NULL,
    request_bytes INTEGER NOT NULL,
    client_id TEXT,
    compare_group TEXT
);
CREATE INDEX IF NOT EXISTS predictions_arm ON predictions (arm);
CREATE INDEX IF NOT EXISTS predictions_group ON predictions (compare_group);
CREATE TABLE IF NOT EXISTS feedback (
    prediction_id TEXT PRIMARY KEY REFERENCES predictions (id),
    true_labels TEXT NOT NULL,
    ts REAL NOT NULL
);
"""


@dataclass(frozen=True)
class PredictionRecord:
    """One logged prediction; probabilities {column: p} and instruments [columns] are stored as JSON."""

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

    def row(self) -> tuple:
        """The values in column order, JSON fields encoded (getattr per column: astuple deep-copies, 0.4 ms a row)."""
        return tuple(json.dumps(getattr(self, name)) if name in JSON_COLUMNS else getattr(self, name) for name in COLUMNS)


COLUMNS = [f.name for f in fields(PredictionRecord)]
JSON_COLUMNS = frozenset({"probabilities", "instruments"})


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


class PredictionStore:
    """The SQLite prediction and feedback log at one path."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        # one writer at a time in this process: SQLite's busy handler sleeps whole milliseconds (1, 2, 5, 10 ...)
        # when a thread finds the write lock taken, which under load turned 0.1 ms commits into latency spikes;
        # threads now queue here and only the other worker processes can still hold the lock
        self._write_lock = threading.Lock()

    def init_schema(self) -> None:
        """Create the folder, the tables and WAL mode; the connection is closed so no fork inherits it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = self._open()
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.executescript(SCHEMA)
            finally:
                connection.close()
        except (OSError, sqlite3.Error) as exc:
            raise InstrumentIdError(f"{self.path}: cannot open the prediction log ({exc})") from None

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

    def _retry(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run work in one transaction, retrying with backoff while another process's writer holds the lock."""
        with self._write_lock:
            return self._retry_locked(work)

    def _retry_locked(self, work: Callable[[sqlite3.Connection], T]) -> T:
        for attempt in range(RETRIES + 1):
            connection = self._connection()
            try:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    result = work(connection)
                    connection.execute("COMMIT")
                    return result
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or attempt == RETRIES:
                    raise
                time.sleep(RETRY_BASE_SECONDS * 2**attempt)
        raise AssertionError("unreachable")

    def log_predictions(self, records: Iterable[PredictionRecord]) -> None:
        """Insert the records in one committed transaction."""
        rows = [record.row() for record in records]
        placeholders = ", ".join("?" for _ in COLUMNS)
        sql = f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES ({placeholders})"
        self._retry(lambda connection: connection.executemany(sql, rows))

    def add_feedback(self, prediction_id: str, true_labels: list[str]) -> bool:
        """Record (or replace) the true instruments of a logged prediction; False when the id is unknown."""

        def work(connection: sqlite3.Connection) -> bool:
            known = connection.execute("SELECT 1 FROM predictions WHERE id = ?", (prediction_id,)).fetchone()
            if known is None:
                return False
            connection.execute(
                "INSERT OR REPLACE INTO feedback (prediction_id, true_labels, ts) VALUES (?, ?, ?)",
                (prediction_id, json.dumps(true_labels), time.time()),
            )
            return True

        return self._retry(work)

    def _query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        connection = self._connection()
        connection.row_factory = sqlite3.Row
        try:
            return connection.execute(sql, args).fetchall()
        finally:
            connection.row_factory = None

    def prediction_rows(self) -> list[dict[str, Any]]:
        """Every logged prediction as a dict (instruments decoded), for the A/B report."""
        rows = self._query("SELECT id, arm, model, latency_ms, instruments, compare_group FROM predictions")
        return [{**dict(row), "instruments": json.loads(row["instruments"])} for row in rows]

    def feedback(self) -> dict[str, list[str]]:
        """{prediction_id: true column names}."""
        return {row["prediction_id"]: json.loads(row["true_labels"]) for row in self._query("SELECT * FROM feedback")}

    def prediction_ids(self) -> set[str]:
        """Ids of every logged prediction."""
        return {row["id"] for row in self._query("SELECT id FROM predictions")}

    def close(self) -> None:
        """Close this thread's connection."""
        connection = getattr(self._local, "connection", None)
        if connection is not None and getattr(self._local, "pid", None) == os.getpid():
            connection.close()
        self._local = threading.local()
