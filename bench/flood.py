"""`bench serve --flood N`: one client floods the server with N connections while a second, well-behaved client
beside it sends a steady paced stream; the steady client's latency with the flood against without it.

Both clients hold keys of the client role (serve --api-keys), so serve's default rate limits apply: the flood is
held at its limit with 429 and Retry-After, and its refused requests are neither computed nor logged. The steady
client sends --flood-steady-rate requests a second, under its limit, one connection per request; its p99 with the
flood beside it should stay within FLOOD_P99_RATIO of its p99 without. The prediction log must hold exactly the
200 answers of both clients.
"""

from __future__ import annotations

import argparse
import http.client
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from bench.serve_runs import log_rows, settled_count
from bench.wrk import run_wrk
from serving.keys import add_key

FLOOD_P99_RATIO = 2.0
WARMUP_SECONDS = 2.0


def steady_stream(url: str, body: bytes, key: str, rate_per_second: float, seconds: float) -> dict[str, Any]:
    """POST body every 1/rate seconds for `seconds` (sequentially); latencies of its answers and their statuses."""
    latencies_ms: list[float] = []  # of the 200 answers
    statuses: dict[str, int] = {}
    headers = {"Content-Type": "audio/wav", "X-API-Key": key}
    start = time.monotonic()
    for n in range(int(rate_per_second * seconds)):
        time.sleep(max(0.0, start + n / rate_per_second - time.monotonic()))
        sent = time.perf_counter()
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=30) as answer:
                answer.read()
                status = str(answer.status)
        except urllib.error.HTTPError as exc:
            status = str(exc.code)
        except (OSError, http.client.HTTPException) as exc:
            status = type(exc).__name__
        if status == "200":
            latencies_ms.append(1e3 * (time.perf_counter() - sent))
        statuses[status] = statuses.get(status, 0) + 1
    ok = latencies_ms
    return {
        "requests": sum(statuses.values()), "statuses": statuses,
        "latency_p50_ms": round(float(np.percentile(ok, 50)), 1) if ok else None,
        "latency_p99_ms": round(float(np.percentile(ok, 99)), 1) if ok else None,
    }


def probe_retry_after(url: str, body: bytes, key: str) -> dict[str, Any]:
    """One more request of the flooding client in the last moments of its flood (after it, a per-second budget may
    already have refilled, so the answer would depend on timing): its status and Retry-After."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "audio/wav", "X-API-Key": key})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return {"status": answer.status, "retry_after": answer.headers.get("Retry-After")}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "retry_after": exc.headers.get("Retry-After")}


def make_keys(path: Path) -> dict[str, str]:
    """A key file with the two clients' keys: {'flooder': key, 'steady': key}."""
    return {name: add_key(path, "client", name) for name in ("flooder", "steady")}


def flood_comparison(base_url: str, route: str, clip: Path, lua: Path, keys: dict[str, str], args: argparse.Namespace,
                     log_db: Path) -> dict[str, Any]:
    """The steady client alone, then beside a wrk flood of args.flood connections (same server, one after the other)."""
    url, body = base_url + route, clip.read_bytes()
    steady_stream(url, body, keys["steady"], args.flood_steady_rate, WARMUP_SECONDS)  # every worker warm
    before = log_rows(log_db)
    alone = steady_stream(url, body, keys["steady"], args.flood_steady_rate, args.seconds)
    flood: dict[str, Any] = {}
    flooding = threading.Thread(target=lambda: flood.update(result=run_wrk(
        base_url, route, clip, lua, args.flood, args.seconds + 1, api_key=keys["flooder"])[0]))
    flooding.start()
    time.sleep(0.5)  # the flood is under way before the steady client starts
    beside = steady_stream(url, body, keys["steady"], args.flood_steady_rate, args.seconds)
    probe = probe_retry_after(url, body, keys["flooder"])  # wrk still runs for about half a second
    flooding.join()
    result = flood["result"]
    ok = int(alone["statuses"].get("200", 0) + beside["statuses"].get("200", 0) + result.ok + (probe["status"] == 200))
    after = settled_count(lambda: log_rows(log_db), before + ok, before + ok + result.unanswered)
    ratio = (beside["latency_p99_ms"] / alone["latency_p99_ms"]
             if beside["latency_p99_ms"] and alone["latency_p99_ms"] else None)
    return {
        "route": route, "flood_connections": args.flood, "steady_rate_per_second": args.flood_steady_rate,
        "seconds": args.seconds, "steady_alone": alone, "steady_beside_flood": beside,
        "p99_beside_vs_alone_ratio": round(ratio, 3) if ratio is not None else None,
        "flood": {"requests_per_second": round(result.requests_per_second, 1),
                  "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
                  "socket_errors": result.socket_errors, "unanswered_at_stop": result.unanswered},
        "flooder_probe_after": probe,
        "log_check": {"passed": ok <= after - before <= ok + result.unanswered, "logged_predictions": after - before,
                      "answered_200": ok, "unanswered_at_stop": result.unanswered},
        "met": {"p99_within_ratio": ratio is not None and ratio <= FLOOD_P99_RATIO
                and set(beside["statuses"]) == {"200"}, "flood_held_with_429": result.statuses.get(429, 0) > 0},
    }


def print_flood(flood: dict[str, Any]) -> None:
    """The steady client's latency without and with the flood, and what the flood was answered."""
    alone, beside = flood["steady_alone"], flood["steady_beside_flood"]
    print(f"flood: {flood['flood_connections']} connections of one client on {flood['route']} for {flood['seconds']} s, "
          f"beside a steady client at {flood['steady_rate_per_second']:g} requests/s (both client keys, serve's limits)")
    print(f"  steady client alone:        p50 {alone['latency_p50_ms']} ms, p99 {alone['latency_p99_ms']} ms, "
          f"statuses {alone['statuses']}")
    print(f"  steady client beside flood: p50 {beside['latency_p50_ms']} ms, p99 {beside['latency_p99_ms']} ms, "
          f"statuses {beside['statuses']}")
    ratio = flood["p99_beside_vs_alone_ratio"]
    print(f"  p99 beside / alone: {'n/a' if ratio is None else f'{ratio:.2f}x'} (target <= {FLOOD_P99_RATIO:g}x) "
          f"{'met' if flood['met']['p99_within_ratio'] else 'MISSED'}")
    print(f"  flood answered: {flood['flood']['statuses']} at {flood['flood']['requests_per_second']} requests/s, "
          f"socket errors {flood['flood']['socket_errors']}; the flooder's next request: "
          f"{flood['flooder_probe_after']['status']}, Retry-After {flood['flooder_probe_after']['retry_after']}")
    check = flood["log_check"]
    print(f"  log check: {check['logged_predictions']} predictions logged, {check['answered_200']} answered 200 "
          f"(+{check['unanswered_at_stop']} in flight): {'passed' if check['passed'] else 'FAILED'}")
