"""A `limits` storage in one SQLite file, so that every gunicorn worker of a replica counts in the same rate limits.

Registered under the scheme sqlite:// (importing this module registers it with `limits`' storage registry):

    sqlite://                     the default: a private file that the process building the app (gunicorn's master,
                                  before it forks the workers) makes in a fresh 0700 temporary folder, removed when
                                  that process exits; the counters start empty at every start, as memory://'s did
    sqlite:///var/lib/x.sqlite    that file: every replica on this host naming it shares it, and it outlives restarts

Why this design: the workers are separate processes, so the counters must live outside them, and a Redis server is
one more service to run for a single replica. SQLite is in the standard library, its file locks make one write
transaction at a time across processes, and `BEGIN IMMEDIATE` takes the write lock before the counts are read, so
reading the two windows, deciding and adding the cost is one atomic step: N workers grant exactly the limit, never
N times it (memory:// keeps counters per process; a shared-memory table would need its own locking and hashing;
a counter server in gunicorn's master would need a thread there and a socket protocol). WAL mode lets the reads
(`test`, Retry-After) run beside a writer; synchronous=NORMAL cannot corrupt the file on a crash and skips the fsync
per commit. A writer that waits longer than the store timeout raises sqlite3.OperationalError ('database is locked'),
which `limits` wraps as StorageError, so the request gets the same 503 as an unreachable Redis. The file must be on
a local disk (SQLite's locks are unreliable over NFS); replicas on other hosts share limits through Redis.
A process killed inside a transaction loses its lock with it, and WAL rolls the unfinished transaction back.

Cost (`instrument-id bench rate-limits`, README): about 0.07 ms per request over memory://, median. When workers
collide, SQLite's busy handler sleeps 1 ms and more before trying again; a retry loop of shorter pauses measured no
better (the tail there came from lock holders descheduled on busy CPUs), so the simpler busy handler stays.

The rows are `limits`' sliding-window counters as its memory storage keeps them: one count per key and window
(TimestampedSlidingWindow's "key/window-number"), each expiring two windows after it was first counted; expired
rows are ignored when read and deleted once a minute by a writer.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sqlite3
import tempfile
import threading
import time
import urllib.parse
from contextlib import contextmanager
from math import floor
from typing import Any, Iterator

from limits.errors import ConfigurationError
from limits.storage.base import SlidingWindowCounterSupport, Storage, TimestampedSlidingWindow

SCHEME = "sqlite"
PRIVATE_URI = "sqlite://"  # no path: a private file per app (serving/rate_limits.py resolves it before the fork)
PRIVATE_FILE_NAME = "rate_limits.sqlite"
PURGE_INTERVAL_SECONDS = 60.0
DEFAULT_TIMEOUT_SECONDS = 2.0
SCHEMA = "CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, count INTEGER NOT NULL, expires_at REAL NOT NULL)"


def database_path(uri: str) -> str:
    """The absolute file path of a sqlite:///PATH URI; ConfigurationError for any other form."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme != SCHEME or parsed.netloc or not parsed.path.startswith("/") or parsed.query:
        raise ConfigurationError(f"{uri!r}: give sqlite:// (a private file) or sqlite:///ABSOLUTE/PATH.sqlite")
    return urllib.parse.unquote(parsed.path)


def private_database_uri() -> str:
    """A sqlite:/// URI in a fresh private temporary folder, removed when this process (not a fork of it) exits."""
    folder = tempfile.mkdtemp(prefix="instrument-id-limits-")  # mode 0700
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:  # forked workers run the atexit hooks too: only the maker removes the folder
            shutil.rmtree(folder, ignore_errors=True)

    atexit.register(remove)
    return f"{SCHEME}://{urllib.parse.quote(os.path.join(folder, PRIVATE_FILE_NAME))}"


class SQLiteStorage(Storage, SlidingWindowCounterSupport, TimestampedSlidingWindow):
    """Sliding-window counters in a SQLite file, one write transaction at a time across processes and threads."""

    STORAGE_SCHEME = [SCHEME]

    def __init__(self, uri: str, wrap_exceptions: bool = False, timeout: float = DEFAULT_TIMEOUT_SECONDS,
                 **options: Any) -> None:
        self.path = database_path(uri)
        self.timeout_seconds = float(timeout)
        self._lock = threading.Lock()  # one connection per process, shared by its threads (gthread workers)
        self._connection: tuple[int, sqlite3.Connection] | None = None
        self._purged_at = 0.0
        super().__init__(uri, wrap_exceptions=wrap_exceptions)

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        """What a failing store raises (wrapped as limits.errors.StorageError)."""
        return sqlite3.Error, OSError

    def _db(self) -> sqlite3.Connection:
        """This process's connection (a fork never uses its parent's), opened and set up on first use."""
        if self._connection is None or self._connection[0] != os.getpid():
            connection = sqlite3.connect(self.path, timeout=self.timeout_seconds, isolation_level=None,
                                         check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(SCHEMA)
            self._connection = (os.getpid(), connection)
        return self._connection[1]

    def close(self) -> None:
        """Close this process's connection (before a fork, so that no child inherits an open one)."""
        with self._lock:
            if self._connection is not None and self._connection[0] == os.getpid():
                self._connection[1].close()
            self._connection = None

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A transaction holding the file's write lock from its first read (BEGIN IMMEDIATE) to its commit."""
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                now = time.time()
                if now - self._purged_at > PURGE_INTERVAL_SECONDS:
                    db.execute("DELETE FROM counters WHERE expires_at <= ?", (now,))
                    self._purged_at = now
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @staticmethod
    def _counts(db: sqlite3.Connection, keys: tuple[str, ...], now: float) -> dict[str, int]:
        """The live counts of keys (one statement, so one snapshot); absent or expired keys count 0."""
        marks = ",".join("?" * len(keys))
        rows = db.execute(f"SELECT key, count FROM counters WHERE key IN ({marks}) AND expires_at > ?", (*keys, now))
        return {key: 0 for key in keys} | dict(rows.fetchall())

    @staticmethod
    def _add(db: sqlite3.Connection, key: str, amount: int, expiry: float, now: float) -> int:
        """Add amount to key's count (a fresh count, expiring `expiry` seconds from now, if it had expired)."""
        db.execute("INSERT INTO counters (key, count, expires_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                   "count = CASE WHEN expires_at <= ? THEN excluded.count ELSE count + excluded.count END, "
                   "expires_at = CASE WHEN expires_at <= ? THEN excluded.expires_at ELSE expires_at END",
                   (key, amount, now + expiry, now, now))
        return db.execute("SELECT count FROM counters WHERE key = ?", (key,)).fetchone()[0]

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add amount to a key's counter, which expires `expiry` seconds after it was first counted; the new count."""
        with self._write() as db:
            return self._add(db, key, amount, expiry, time.time())

    def get(self, key: str) -> int:
        """A key's live count."""
        with self._read() as db:
            return self._counts(db, (key,), time.time())[key]

    def get_expiry(self, key: str) -> float:
        """When a key's counter expires (now if it has none)."""
        now = time.time()
        with self._read() as db:
            row = db.execute("SELECT expires_at FROM counters WHERE key = ? AND expires_at > ?", (key, now)).fetchone()
        return row[0] if row else now

    def check(self) -> bool:
        """Whether the file can be opened, set up and read."""
        try:
            with self._read() as db:
                db.execute("SELECT COUNT(*) FROM counters").fetchone()
            return True
        except (sqlite3.Error, OSError):
            return False

    def reset(self) -> int | None:
        """Delete every counter; how many there were."""
        with self._write() as db:
            return db.execute("DELETE FROM counters").rowcount

    def clear(self, key: str) -> None:
        """Delete one key's counter."""
        with self._write() as db:
            db.execute("DELETE FROM counters WHERE key = ?", (key,))

    def _window(self, db: sqlite3.Connection, key: str, expiry: int, now: float) -> tuple[int, float, int, float]:
        """(previous count, previous TTL, current count, current TTL) of key's sliding window at now."""
        previous_key, current_key = self.sliding_window_keys(key, expiry, now)
        counts = self._counts(db, (previous_key, current_key), now)
        previous_ttl = (1 - (((now - expiry) / expiry) % 1)) * expiry if counts[previous_key] else 0.0
        current_ttl = (1 - ((now / expiry) % 1)) * expiry + expiry
        return counts[previous_key], previous_ttl, counts[current_key], current_ttl

    def acquire_sliding_window_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        """Count amount in the current window if the weighted count stays within limit; whether it was counted."""
        if amount > limit:
            return False
        with self._write() as db:
            now = time.time()  # taken under the write lock: no other process counts between the read and the add
            previous_count, previous_ttl, current_count, _ = self._window(db, key, expiry, now)
            if floor(previous_count * previous_ttl / expiry + current_count) + amount > limit:
                return False
            self._add(db, self.sliding_window_keys(key, expiry, now)[1], amount, 2 * expiry, now)
            return True

    def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        """(previous count, previous TTL, current count, current TTL) of key's sliding window now."""
        with self._read() as db:
            return self._window(db, key, expiry, time.time())

    def clear_sliding_window(self, key: str, expiry: int) -> None:
        """Delete key's current and previous window counters."""
        now = time.time()
        with self._write() as db:
            db.executemany("DELETE FROM counters WHERE key = ?", [(k,) for k in self.sliding_window_keys(key, expiry, now)])
