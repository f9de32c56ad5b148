"""The prediction log behind a bounded in-memory queue: predictions still answer while the database cannot write.

A healthy log commits each prediction before its answer is sent (nothing answered is lost, even to SIGKILL). When
the store raises LogUnavailableError (SQLite locked past its busy timeout, disk full, I/O error; PostgreSQL
unreachable or timed out), the answer is sent all the same and its record waits here; while records wait, new
ones join them at once instead of each request waiting out the timeout again. A background thread per process
retries every FLUSH_INTERVAL_SECONDS (backing off to MAX_FLUSH_INTERVAL_SECONDS) and commits them in order.
A full queue drops the newest. /metrics counts all of it:

    instrument_id_predictions_unlogged_total{reason}   answered before their row could be committed
    instrument_id_predictions_logged_late_total        of those, committed later
    instrument_id_predictions_log_dropped_total        of those, never logged (queue full)
    instrument_id_prediction_log_queue                 waiting now (summed over live workers)

Records still queued when a worker is killed are lost; those are the unlogged ones not logged late nor dropped.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import threading
import time
from collections import deque
from typing import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

from serving.errors import LOGGER, ApiError
from serving.store import LogUnavailableError, PredictionRecord
from serving.report_sql import ReportAggregates

MAX_QUEUED_RECORDS = 10_000  # ~2 kB each: a bounded 20 MB per worker however long the outage
FLUSH_INTERVAL_SECONDS = 0.25
MAX_FLUSH_INTERVAL_SECONDS = 5.0
FLUSH_BATCH_RECORDS = 500


class LogMetrics:
    """The log's health in the app's Prometheus registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.unlogged = Counter(
            "instrument_id_predictions_unlogged",
            "Predictions answered before their log row could be committed (log locked, full or unreachable)",
            ["reason"], registry=registry,
        )
        self.logged_late = Counter("instrument_id_predictions_logged_late",
                                   "Unlogged predictions committed to the log later, from the in-memory queue",
                                   registry=registry)
        self.dropped = Counter("instrument_id_predictions_log_dropped",
                               "Unlogged predictions never logged: the in-memory queue was full", registry=registry)
        self.queued = Gauge("instrument_id_prediction_log_queue", "Predictions waiting in memory for the log",
                            registry=registry, multiprocess_mode="livesum")


class BufferedLog:
    """A PredictionStore or PostgresStore whose prediction writes never fail the request."""

    def __init__(self, store, registry: CollectorRegistry, max_queued_records: int = MAX_QUEUED_RECORDS) -> None:
        self.store = store
        self.metrics = LogMetrics(registry)
        self.max_queued_records = max_queued_records
        self._queue: deque[PredictionRecord] = deque()
        self._lock = threading.Lock()  # guards the queue; held only for list work, never across a write
        self._flush_lock = threading.Lock()  # one flush at a time (the flusher thread, or the exit handler)
        self._flusher: tuple[int, threading.Thread] | None = None  # (pid, thread): a forked worker starts its own
        self._last_reason = "locked"
        atexit.register(self._flush_at_exit)

    def describe(self) -> str:
        """Where the log is."""
        return self.store.describe()

    def init_schema(self) -> None:
        """Create the store's tables."""
        self.store.init_schema()

    def queued(self) -> int:
        """Records of this process waiting for the log."""
        return len(self._queue)

    def log_predictions(self, records: Iterable[PredictionRecord]) -> None:
        """Commit the records, or queue them when the log cannot take them now (never raises for that)."""
        records = list(records)
        with self._lock:
            if self._queue:  # the log is known to be down: do not make this request wait out the timeout too
                self._enqueue(records, self._last_reason)
                return
        try:
            self.store.log_predictions(records)
        except LogUnavailableError as exc:
            LOGGER.warning(json.dumps({"event": "log_unavailable", "reason": exc.reason, "error": str(exc),
                                       "queued_records": len(records)}))
            with self._lock:
                self._last_reason = exc.reason
                self._enqueue(records, exc.reason)

    def _enqueue(self, records: list[PredictionRecord], reason: str) -> None:
        """Queue records (caller holds the lock), dropping what does not fit, and make sure a flusher runs."""
        self.metrics.unlogged.labels(reason).inc(len(records))
        room = max(0, self.max_queued_records - len(self._queue))
        self._queue.extend(records[:room])
        if len(records) > room:
            self.metrics.dropped.inc(len(records) - room)
        self.metrics.queued.set(len(self._queue))
        if self._flusher is None or self._flusher[0] != os.getpid():
            thread = threading.Thread(target=self._flush_loop, name="prediction-log-flusher", daemon=True)
            self._flusher = (os.getpid(), thread)
            thread.start()

    def flush(self) -> bool:
        """Try to commit the oldest queued batch; True when the queue is empty afterwards."""
        with self._flush_lock:
            return self._flush_batch()

    def _flush_batch(self) -> bool:
        with self._lock:
            batch = list(itertools.islice(self._queue, FLUSH_BATCH_RECORDS))
        if not batch:
            return True
        try:
            self.store.log_predictions(batch)
        except LogUnavailableError as exc:
            self._last_reason = exc.reason
            return False
        with self._lock:
            for _ in batch:  # only this thread takes from the left; requests append on the right
                self._queue.popleft()
            self.metrics.logged_late.inc(len(batch))
            self.metrics.queued.set(len(self._queue))
            return not self._queue

    def _flush_loop(self) -> None:
        """Retry until the queue is empty, backing off while the log stays down; then stop."""
        interval = FLUSH_INTERVAL_SECONDS
        try:
            while True:
                time.sleep(interval)
                try:
                    emptied = self.flush()
                except Exception:  # a bug in the log (e.g. a dropped table): say so, keep the rows, keep trying
                    LOGGER.exception("the prediction log refused queued records")
                    emptied = False
                if emptied:
                    with self._lock:
                        if not self._queue:
                            self._flusher = None
                            LOGGER.info(json.dumps({"event": "log_recovered"}))
                            return
                interval = FLUSH_INTERVAL_SECONDS if emptied else min(2 * interval, MAX_FLUSH_INTERVAL_SECONDS)
        finally:
            self.store.close()  # this thread's connection

    def _flush_at_exit(self) -> None:
        """A worker leaving gracefully makes one last try (the store's own timeout bounds it)."""
        while self._queue and self._flusher is not None and self._flusher[0] == os.getpid():
            try:
                if not self.flush():
                    return
            except Exception:
                return

    def add_feedback(self, prediction_id: str, true_labels: list[str], owner: str | None = None,
                     since_ts: float = 0.0) -> int | None:
        """The store's add_feedback (feedbacks so far, or None); 503 while the log cannot write or the prediction
        still waits to be logged."""
        try:
            known = self.store.add_feedback(prediction_id, true_labels, owner, since_ts)
        except LogUnavailableError as exc:
            raise ApiError(503, f"the prediction log cannot take feedback now ({exc.reason}); retry in a few seconds") from None
        if known is None and any(record.id == prediction_id and (owner is None or record.client_id == owner)
                                 for record in list(self._queue)):
            raise ApiError(503, "that prediction is not logged yet (the log was unavailable); retry in a few seconds")
        return known

    def report_aggregates(self, arm_names: list[str]) -> ReportAggregates:
        """The store's report aggregates of the named arms; 503 while the database cannot answer."""
        try:
            return self.store.report_aggregates(arm_names)
        except LogUnavailableError as exc:
            raise ApiError(503, f"the prediction log cannot be read now ({exc.reason}); retry in a few seconds") from None

    def logged_fingerprints(self, idempotency_key: str) -> set[str]:
        """The request fingerprints of an Idempotency-Key, logged or queued; while the log cannot be read, only the
        queued ones (a retry is still logged once: its id comes from its key)."""
        with self._lock:
            queued = {r.request_fingerprint for r in self._queue if r.idempotency_key == idempotency_key}
            if self._queue:  # the log is known to be down: do not make this request wait out the timeout
                return queued
        try:
            return self.store.logged_fingerprints(idempotency_key)
        except LogUnavailableError:
            return queued

    def prediction_ids(self) -> set[str]:
        """Ids of every logged prediction (not those still queued)."""
        return self.store.prediction_ids()

    def close(self) -> None:
        """Close the store's connection of this thread."""
        self.store.close()
