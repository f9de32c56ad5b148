"""Benchmark: what the rate limiter adds to each request, per storage, with serve's worker processes charging at once.

Each request is charged as serve charges a client's prediction with the default budgets: two request limits
(per second, per minute) and one audio limit, each tested then hit (serving/rate_limits.py). The budgets are made so
large that nothing is refused, so every request takes the full path. One RateLimiter is built, then --processes
processes are forked from it (as gunicorn forks its workers) and charge one client together; each request's time is
recorded. Storages: memory:// (each process alone: nothing shared) against sqlite:// (serve's default: one file for
all), and any other URI given with --storage (e.g. redis://127.0.0.1:6379).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from typing import Any

import numpy as np

from bench.cli import report
from instrument_id.errors import InstrumentIdError
from serving.rate_limits import RateLimiter, RoleLimits, check_storage_uri

DEFAULT_STORAGES = ("memory://", "sqlite://")
NEVER_REFUSED = RoleLimits(requests="1000000000/second;1000000000/minute", audio_seconds="1000000000/minute")
AUDIO_SECONDS_PER_REQUEST = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `bench rate-limits`."""
    parser.add_argument("--requests", type=int, default=2000, help="requests charged per process (default 2000)")
    parser.add_argument("--processes", type=int, default=2, help="processes charging at once, as serve's --workers (default 2)")
    parser.add_argument("--storage", action="append", metavar="URI",
                        help=f"a storage to measure (repeatable; default {' and '.join(DEFAULT_STORAGES)})")


def _charge_loop(limiter: RateLimiter, requests: int, start: Any, results: Any) -> None:
    """One forked process: charge `requests` requests of one client; put their times in microseconds."""
    start.wait()
    times_us = np.empty(requests)
    for n in range(requests):
        began = time.perf_counter()
        limiter.charge("client", "requests", "bench-client")
        limiter.charge("client", "audio_seconds", "bench-client", AUDIO_SECONDS_PER_REQUEST)
        times_us[n] = 1e6 * (time.perf_counter() - began)
    results.put(times_us.tolist())


def measure_storage(uri: str, requests: int, processes: int) -> dict[str, Any]:
    """Median, p90 and p99 microseconds per request's charges, and requests/s of all processes together."""
    limiter = RateLimiter({"client": NEVER_REFUSED}, uri)
    if limiter.shared() and not limiter.reachable():
        raise InstrumentIdError(f"{uri}: the store does not answer")
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(processes + 1), context.SimpleQueue()
    workers = [context.Process(target=_charge_loop, args=(limiter, requests, start, results)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    times_us = np.concatenate([results.get() for _ in workers])  # (processes * requests,)
    wall_seconds = time.perf_counter() - began
    for worker in workers:
        worker.join()
        if worker.exitcode != 0:
            raise InstrumentIdError(f"{uri}: a charging process failed (exit {worker.exitcode})")
    return {
        "storage": uri, "scope": limiter.scope(), "requests": int(times_us.size),
        "median_us": round(float(np.median(times_us)), 1), "p90_us": round(float(np.percentile(times_us, 90)), 1),
        "p99_us": round(float(np.percentile(times_us, 99)), 1),
        "requests_per_second": round(times_us.size / wall_seconds, 1),
    }


def run(args: argparse.Namespace) -> int:
    """Measure each storage in turn; print the table (or JSON)."""
    if args.requests < 1 or args.processes < 1:
        raise InstrumentIdError(f"--requests and --processes must be at least 1, got {args.requests} and {args.processes}")
    storages = [check_storage_uri(uri, "--storage") for uri in args.storage or DEFAULT_STORAGES]
    load_before = os.getloadavg()[0]
    rows = [measure_storage(uri, args.requests, args.processes) for uri in storages]
    figures = {"processes": args.processes, "requests_per_process": args.requests, "cpu_count": os.cpu_count(),
               "load_average_1min_before": round(load_before, 2), "storages": rows}
    report(args, figures, print_report)
    return 0


def print_report(figures: dict[str, Any]) -> None:
    """One line per storage: microseconds per request's charges, and the throughput of all processes together."""
    print(f"rate-limit charges of one request (2 request limits + 1 audio limit, each tested then hit), "
          f"{figures['processes']} processes x {figures['requests_per_process']} requests, one client, "
          f"{figures['cpu_count']} CPUs, load average {figures['load_average_1min_before']} before")
    print(f"{'storage':40s} {'scope':8s} {'median us':>10s} {'p90 us':>8s} {'p99 us':>8s} {'requests/s':>11s}")
    for row in figures["storages"]:
        print(f"{row['storage'][:40]:40s} {row['scope']:8s} {row['median_us']:10.1f} {row['p90_us']:8.1f} "
              f"{row['p99_us']:8.1f} {row['requests_per_second']:11.1f}")
