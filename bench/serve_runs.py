"""The wrk runs of `bench serve` against a server already running: a warm-up of every worker, one measured run per
route and load level with its log check, and the run with slow connections open.

Every answered prediction must be a row in the server's prediction log: after each run the rows added must be the
200 answers wrk received, plus at most the requests still in flight when wrk stopped (which the server may finish
and log after wrk has gone). The rows are counted in the log's SQLite file, so the check holds for every route,
the A/B router's and each named model's alike.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, Callable

from bench.slow_clients import SlowClients
from bench.wrk import TIMEOUT_SECONDS, WrkResult, run_wrk
from instrument_id.errors import InstrumentIdError

WARMUP_SECONDS = 2  # per route, at the most clients: every worker computes many requests before anything counts
SLOW_SETTLE_SECONDS = 1.0  # the slow connections are all accepted before wrk starts


def log_rows(log_db: Path) -> int:
    """Rows in a SQLite prediction log (read-only; the server writes it meanwhile)."""
    connection = sqlite3.connect(f"file:{log_db}?mode=ro", uri=True)
    try:
        return int(connection.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])
    finally:
        connection.close()


def settled_count(count: Callable[[], int], at_least: int, at_most: int, quiet_seconds: float = 1.0,
                  timeout_seconds: float = 20.0) -> int:
    """count() once the server has finished what wrk left in flight: at its upper bound, or at least at its lower
    bound and unchanged for quiet_seconds (so no late prediction lands in the next run's count)."""
    deadline, previous, unchanged_since = time.monotonic() + timeout_seconds, None, time.monotonic()
    while True:
        value, now = count(), time.monotonic()
        if value != previous:
            previous, unchanged_since = value, now
        if value >= at_most or (value >= at_least and now - unchanged_since >= quiet_seconds) or now > deadline:
            return value
        time.sleep(0.25)


def log_check(before: int, after: int, result: WrkResult) -> dict[str, Any]:
    """Logged = 200 answers, up to the requests wrk abandoned in flight at its stop."""
    logged = after - before
    return {
        "logged_predictions": logged, "wrk_ok_200": result.ok, "unanswered_at_stop": result.unanswered,
        "passed": result.ok <= logged <= result.ok + result.unanswered,
    }


def checked_run(base_url: str, route: str, clip: Path, lua: Path, clients: int, seconds: int,
                log_db: Path | None) -> tuple[WrkResult, dict[str, Any] | None]:
    """One wrk run, and its log check when log_db is given; either way it returns once the server has finished
    the requests wrk left in flight (the log says so; without one, after the time they take at the rate measured),
    so that none of them competes with the next run."""
    before = log_rows(log_db) if log_db else 0
    result, _ = run_wrk(base_url, route, clip, lua, clients, seconds)
    if log_db is None:
        time.sleep(min(result.unanswered / max(result.requests_per_second, 1.0), TIMEOUT_SECONDS))
        return result, None
    after = settled_count(lambda: log_rows(log_db), before + result.ok, before + result.ok + result.unanswered)
    return result, log_check(before, after, result)


def wrk_figures(result: WrkResult) -> dict[str, Any]:
    """Throughput and latency of one run; None latencies when nothing came back (wrk then says 0)."""
    answered = result.requests > 0
    return {"requests_per_second": round(result.requests_per_second, 2),
            "latency_p50_ms": round(result.latency_p50_ms, 2) if answered else None,
            "latency_p99_ms": round(result.latency_p99_ms, 2) if answered else None}


def warm_up(base_url: str, route: str, clip: Path, lua: Path, clients: int, log_db: Path | None) -> dict[str, Any]:
    """wrk at `clients` connections for WARMUP_SECONDS, discarded: each worker's first requests (lazy compiles and
    allocations after the fork) land here, not in the first measured run."""
    result, _ = checked_run(base_url, route, clip, lua, clients, WARMUP_SECONDS, log_db)
    if not result.ok:
        statuses = ", ".join(f"{n} x {status}" for status, n in sorted(result.statuses.items())) or "no answer"
        raise InstrumentIdError(f"warm-up of {base_url}{route}: no 200 answer in {WARMUP_SECONDS} s ({statuses})")
    return {"route": route, "seconds": WARMUP_SECONDS, "clients": clients, "requests": result.requests,
            "ok_200": result.ok, **wrk_figures(result)}


def route_model(route: str) -> str | None:
    """The model a /v2/predict?model=NAME route asks for ('ab': the A/B router's pick); None for other routes."""
    path, _, query = route.partition("?model=")
    return query if path == "/v2/predict" and query else None


def load_runs(server: str, base_url: str, routes: tuple[str, ...], clip: Path, lua: Path, args: argparse.Namespace,
              log_db: Path | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(runs, warm-ups): per route, a warm-up at the most clients, then one wrk run per level; with log_db, each
    run's log check too."""
    runs, warmups = [], []
    for route in routes:
        warmups.append({"server": server, **warm_up(base_url, route, clip, lua, max(args.levels), log_db)})
        for clients in args.levels:
            result, check = checked_run(base_url, route, clip, lua, clients, args.seconds, log_db)
            run = {
                "server": server, "route": route, "model": route_model(route), "clients": clients,
                **wrk_figures(result), "requests": result.requests, "ok_200": result.ok, "errors": result.errors,
                "socket_errors": result.socket_errors, "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
            }
            if check is not None:
                run["log_check"] = check
            runs.append(run)
            print(f"  {server:8s} {route:26s} {clients:3d} clients: {run['requests_per_second']:8.1f} req/s", file=sys.stderr)
    return runs, warmups


def slow_client_comparison(base_url: str, route: str, clip: Path, lua: Path, args: argparse.Namespace, log_db: Path,
                           p99_target_ms: float) -> dict[str, Any]:
    """wrk on `route` at the most clients twice in a row: without slow connections, then with args.slow_clients
    of them open (the same server, one run after the other)."""
    clients, n = max(args.levels), args.slow_clients
    plain, _ = checked_run(base_url, route, clip, lua, clients, args.seconds, log_db)  # its late answers settle too
    without = wrk_figures(plain)
    with SlowClients("127.0.0.1", int(base_url.rsplit(":", 1)[1]), route, clip.read_bytes(), n) as slow:
        time.sleep(SLOW_SETTLE_SECONDS)
        before = log_rows(log_db)
        result, _ = run_wrk(base_url, route, clip, lua, clients, args.seconds)
        slow_figures = slow.figures()
    after = settled_count(lambda: log_rows(log_db), before + result.ok, before + result.ok + result.unanswered)
    with_slow = wrk_figures(result)
    p99, rps = with_slow["latency_p99_ms"], with_slow["requests_per_second"]
    return {
        "slow_connections": n, "route": route, "clients": clients,
        "requests_per_second_without_slow": without["requests_per_second"],
        "p50_ms_without_slow": without["latency_p50_ms"], "p99_ms_without_slow": without["latency_p99_ms"],
        f"requests_per_second_with_{n}_slow": rps, f"p50_ms_with_{n}_slow": with_slow["latency_p50_ms"],
        f"p99_ms_with_{n}_slow": p99,
        "p99_with_vs_without_slow_ratio": round(p99 / without["latency_p99_ms"], 3) if p99 and without["latency_p99_ms"] else None,
        "throughput_with_vs_without_slow_ratio":
            round(rps / without["requests_per_second"], 3) if without["requests_per_second"] else None,
        "ok_200_with_slow": result.ok, "unanswered_with_slow": result.unanswered, "errors_with_slow": result.errors,
        "socket_errors_with_slow": result.socket_errors,
        **{f"slow_{key}": value for key, value in slow_figures.items()},
        "log_check": log_check(before, after, result),
        "met": {"p99_ms_at_max_clients": result.ok > 0 and result.errors == 0 and p99 is not None and p99 < p99_target_ms},
    }
