"""Per-client rate limits: one budget of requests and one of seconds of audio, per role, through the `limits` library.

The client is its key's name (or its address in open mode). Every request is counted before its route runs; a
request's audio is counted once it is decoded (predict, compare; /v2/analyze from the file's header), before any
feature or model work. Over either budget the answer is 429 JSON with Retry-After, and nothing is computed or logged.

    rate_limit_storage = "sqlite://"                    # default: this replica's workers share a private SQLite file;
                                                        # "redis://host:6379" (or memcached://) for replicas to share
    [rate_limits.client]
    requests = "20/second;600/minute"                   # `limits` notation: N per second|minute|hour|day, ';'-joined
    audio_seconds = "1800/minute"
    [rate_limits.admin]  ...                            # as client unless given
    [rate_limits.open]   ...                            # open mode (no key file): none unless given

The counters are `limits`' sliding-window counters (a weighted mix of the current and previous window: a bucket
that refills smoothly, with no burst of twice the limit at a window's edge). Where they are kept (RateLimiter.scope):
- sqlite:// (the default): a private SQLite file in a folder made when the app is built, in gunicorn's master
  before the fork, so all the workers of one replica count in it, atomically (serving/rate_limit_sqlite.py: why).
  Each replica has its own: a client may reach up to the number of replicas times its limit.
- sqlite:///ABSOLUTE/PATH.sqlite: that file, shared by every replica on this host that names it (local disk only).
- redis://HOST:6379 (rediss://, redis+unix://, valkey://; memcached:// parses but is untested): every process of
  every replica counts in the same Redis keys, atomically (Lua scripts).
- memory://: each process its own counters, so a client may reach up to --workers times its limit (serve warns).
A store that cannot be reached within STORE_TIMEOUT_SECONDS (a Redis that does not answer, a SQLite file locked that
long) answers 503 with Retry-After, never a 500 or a hang.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any

from instrument_id.errors import InstrumentIdError
from serving.errors import ApiError

DEFAULT_STORAGE = "sqlite://"  # serving/rate_limit_sqlite.py's PRIVATE_URI: resolved to a fresh file per app
REDIS_SCHEMES = ("redis://", "rediss://", "redis+unix://", "valkey://", "valkeys://", "valkey+unix://")
STORE_TIMEOUT_SECONDS = 2.0  # connecting to and each answer of a Redis store, or waiting for SQLite's write lock;
                             # past it the request gets a 503
STORE_RETRY_AFTER_SECONDS = 5
BUDGETS = ("requests", "audio_seconds")
LIMITED_ROLES = ("client", "admin", "open")
DEFAULT_LIMITS = {
    "client": {"requests": "20/second;600/minute", "audio_seconds": "1800/minute"},  # 30 s of audio per second
    "admin": {"requests": "20/second;600/minute", "audio_seconds": "1800/minute"},
    "open": {},  # open mode serves loopback (or a network its operator vouched for with --insecure-open)
}


@dataclass(frozen=True)
class RoleLimits:
    """One role's budgets in `limits` notation ('' for none)."""

    requests: str = ""
    audio_seconds: str = ""


def _limit_text(where: str, value: Any) -> str:
    """A `limits` string, checked by parsing it."""
    from limits import parse_many

    if not isinstance(value, str):
        raise InstrumentIdError(f"{where}: expected a rate such as \"600/minute\" or \"20/second;600/minute\", got {value!r}")
    try:
        parse_many(value)
    except ValueError:
        raise InstrumentIdError(f"{where}: {value[:60]!r} is not a rate such as \"600/minute\" or "
                                "\"20/second;600/minute\"") from None
    return value


def parse_rate_limits(data: Any, where: str) -> dict[str, RoleLimits]:
    """The per-role budgets of a config's rate_limits table over the defaults; unknown roles or keys raise."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise InstrumentIdError(f"{where}: rate_limits must be a table of role -> {{requests, audio_seconds}}")
    unknown = sorted(set(data) - set(LIMITED_ROLES))
    if unknown:
        raise InstrumentIdError(f"{where}: rate_limits.{unknown[0]}: unknown role (roles: {', '.join(LIMITED_ROLES)})")
    result = {}
    for role in LIMITED_ROLES:
        entry = data.get(role, {})
        if not isinstance(entry, dict) or set(entry) - set(BUDGETS):
            raise InstrumentIdError(f"{where}: rate_limits.{role} takes only {', '.join(BUDGETS)}")
        budgets = {**DEFAULT_LIMITS[role], **entry}
        result[role] = RoleLimits(**{name: _limit_text(f"{where}: rate_limits.{role}.{name}", value)
                                     for name, value in budgets.items()})
    return result


def open_storage(uri: str) -> Any:
    """`limits`' storage for a URI, raising limits.errors.StorageError for any failure of the store; Redis connects
    lazily, with STORE_TIMEOUT_SECONDS to connect and to answer."""
    from limits.storage import storage_from_string

    import serving.rate_limit_sqlite  # noqa: F401 (registers sqlite:// with limits)

    options: dict[str, Any] = {"wrap_exceptions": True}
    if uri.startswith(REDIS_SCHEMES):
        options.update(socket_timeout=STORE_TIMEOUT_SECONDS, socket_connect_timeout=STORE_TIMEOUT_SECONDS)
    elif uri.startswith("sqlite://"):
        options.update(timeout=STORE_TIMEOUT_SECONDS)
    return storage_from_string(uri, **options)


def check_storage_uri(uri: Any, where: str) -> str:
    """A storage URI `limits` knows (sqlite://, sqlite:///PATH, memory://, redis://, rediss://, memcached://, ...)."""
    if not isinstance(uri, str) or "://" not in uri:
        raise InstrumentIdError(f"{where}: rate_limit_storage must be a URI such as sqlite://, memory:// or "
                                "redis://host:6379")
    if uri == DEFAULT_STORAGE:
        return uri  # its file is made when the app is built
    try:
        open_storage(uri)  # checks the scheme and that its client library is installed; connects lazily
    except Exception as exc:  # limits raises ConfigurationError, or ImportError-like errors, per scheme
        raise InstrumentIdError(f"{where}: rate_limit_storage {uri.split('://')[0]}:// cannot be used ({exc})") from None
    return uri


class RateLimiter:
    """The budgets of every role over one storage, opened per process (a fork must not share a connection)."""

    def __init__(self, limits_by_role: dict[str, RoleLimits], storage_uri: str = DEFAULT_STORAGE) -> None:
        from limits import parse_many

        from serving.rate_limit_sqlite import private_database_uri

        self.private = storage_uri == DEFAULT_STORAGE
        # the private file is named here, in the process that builds the app: gunicorn's workers fork after it
        self.storage_uri = private_database_uri() if self.private else storage_uri
        self._items = {(role, budget): parse_many(getattr(entry, budget)) if getattr(entry, budget) else []
                       for role, entry in limits_by_role.items() for budget in BUDGETS}
        self._strategy: tuple[int, Any] | None = None

    def scope(self) -> str:
        """Who shares the counters: 'process' (memory://), 'replica' (the private SQLite file), 'host' (a named
        SQLite file) or 'replicas' (a server: Redis, memcached)."""
        if self.storage_uri.startswith("memory://"):
            return "process"
        if self.storage_uri.startswith("sqlite://"):
            return "replica" if self.private else "host"
        return "replicas"

    def shared(self) -> bool:
        """Whether the counters live outside this process (so the store can fail, answering 503)."""
        return self.scope() != "process"

    def limits(self, role: str) -> bool:
        """Whether the role has any budget (so its requests may get a 429)."""
        return any(self._items.get((role, budget)) for budget in BUDGETS)

    def reachable(self) -> bool:
        """Whether the store answers now (a throwaway connection, closed: the workers open their own after the
        fork); for SQLite this also makes the file and its table before any worker needs them."""
        if not self.shared():
            return True
        storage = open_storage(self.storage_uri)
        try:
            return bool(storage.check())
        finally:
            getattr(storage, "close", lambda: None)()

    def _limiter(self) -> Any:
        from limits.strategies import SlidingWindowCounterRateLimiter

        if self._strategy is None or self._strategy[0] != os.getpid():
            self._strategy = (os.getpid(), SlidingWindowCounterRateLimiter(open_storage(self.storage_uri)))
        return self._strategy[1]

    def charge(self, role: str, budget: str, identity: str, cost: int = 1) -> None:
        """Take cost from each of the role's budgets for this client; 429 with Retry-After when one is spent."""
        items = self._items.get((role, budget), [])
        if not items or cost <= 0:
            return
        from limits.errors import StorageError

        limiter = self._limiter()
        try:  # a request larger than a whole budget takes all of it (it passes only when that budget is untouched)
            spent = [item for item in items if not limiter.test(item, budget, identity, cost=min(cost, item.amount))]
            if not spent:
                spent = [item for item in items if not limiter.hit(item, budget, identity, cost=min(cost, item.amount))]
            if not spent:
                return
            retry_s = max(limiter.get_window_stats(item, budget, identity).reset_time - time.time() for item in spent)
        except (StorageError, ConnectionError, OSError) as exc:
            cause = type(getattr(exc, "storage_error", exc)).__name__
            raise ApiError(503, f"the rate-limit store cannot be reached ({cause}); retry in a few seconds",
                           {"Retry-After": str(STORE_RETRY_AFTER_SECONDS)}) from None
        what = "requests" if budget == "requests" else "seconds of audio"
        retry_after = max(1, math.ceil(retry_s))
        spent_text = "; ".join(str(item).replace(" per ", f" {what} per ") for item in spent)
        raise ApiError(429, f"over the {role} limit of {spent_text}; "
                            f"retry in {retry_after} s", {"Retry-After": str(retry_after)})
