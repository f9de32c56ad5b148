"""open_prediction_log(): the configured log_db (a SQLite file, or a postgresql:// URL) behind the in-memory buffer."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from serving.config import is_postgres_url
from serving.log_buffer import BufferedLog


def open_prediction_log(log_db: Path | str, registry: CollectorRegistry) -> BufferedLog:
    """The log with its tables created: PostgreSQL for a postgresql:// URL, SQLite for a file path."""
    if isinstance(log_db, str) and is_postgres_url(log_db):
        from serving.store_postgres import PostgresStore

        store = PostgresStore(log_db)
    else:
        from serving.store import PredictionStore

        store = PredictionStore(Path(log_db))
    log = BufferedLog(store, registry)
    log.init_schema()
    return log
