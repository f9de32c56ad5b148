"""`instrument-id bench replicas`: two `serve` replicas sharing one PostgreSQL log, both under wrk at once.

A throwaway PostgreSQL server (bench/pg_server.py) holds the log; each replica runs its own gunicorn workers
and gets --clients wrk connections POSTing a 2 s clip to /v2/predict?model=ab for --seconds. Afterwards: rows in
the database against the 200 answers wrk received (plus at most the requests still in flight when it stopped),
each client id's arm on both replicas, both replicas' reports, and the time each report took.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import soundfile as sf

from bench.cli import report
from bench.serve import CLIP_RATE_HZ, CLIP_SECONDS, free_port, http_json, running_server
from bench.serve_runs import settled_count
from bench.signals import harmonic_clip
from bench.wrk import POST_FILE_LUA, find_wrk, run_wrk
from instrument_id.errors import InstrumentIdError

ROUTE = "/v2/predict?model=ab"
STICKY_CLIENTS = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `bench replicas`."""
    parser.add_argument("--model-dir", type=Path, default=Path("model_zoo/models"),
                        help="folder holding the mlp/ and rf/ model folders (default model_zoo/models)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per replica (default 2)")
    parser.add_argument("--clients", type=int, default=16, help="wrk connections per replica (default 16)")
    parser.add_argument("--seconds", type=int, default=10, help="seconds of load (default 10)")


def _rows_logged(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as connection:
        return int(connection.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])


def _sticky(bases: list[str], clip: bytes) -> bool:
    """Each of STICKY_CLIENTS client ids gets one arm from both replicas."""
    import urllib.request

    for i in range(STICKY_CLIENTS):
        arms = set()
        for base in bases:
            request = urllib.request.Request(base + ROUTE, data=clip, method="POST",
                                             headers={"Content-Type": "audio/wav", "X-Client-Id": f"listener-{i}"})
            with urllib.request.urlopen(request, timeout=30) as response:
                arms.add(json.loads(response.read())["arm"])
        if len(arms) != 1:
            return False
    return True


def measure(args: argparse.Namespace, work: Path, url: str) -> dict[str, Any]:
    """Start both replicas on the log at url, load them, and check the log; the figures."""
    clip, lua = work / "clip.wav", work / "post_file.lua"
    sf.write(clip, harmonic_clip(CLIP_SECONDS, CLIP_RATE_HZ), CLIP_RATE_HZ, subtype="PCM_16")
    lua.write_text(POST_FILE_LUA)
    models = args.model_dir.resolve()
    config = {
        "models": {"mlp": {"path": str(models / "mlp"), "runtime": "tflite"}, "rf": {"path": str(models / "rf"), "runtime": "zoo"}},
        "ab": {"arms": {"A": {"model": "mlp", "weight": 0.5}, "B": {"model": "rf", "weight": 0.5}}},
        "log_db": url,
    }
    (work / "serve.json").write_text(json.dumps(config))
    ports = [free_port(), free_port()]
    commands = [[sys.executable, "-m", "instrument_id.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                 "--config", str(work / "serve.json"), "--workers", str(args.workers)] for port in ports]
    with running_server("replica 1", commands[0], ports[0], work / "replica1.log") as first, \
            running_server("replica 2", commands[1], ports[1], work / "replica2.log") as second:
        bases = [first, second]
        sticky = _sticky(bases, clip.read_bytes())
        before = _rows_logged(url)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda base: run_wrk(base, ROUTE, clip, lua, args.clients, args.seconds)[0], bases))
        answered = sum(result.ok for result in results)
        in_flight = sum(result.unanswered for result in results)
        rows = settled_count(lambda: _rows_logged(url), before + answered, before + answered + in_flight) - before
        reports, report_ms = [], []
        for base in bases:
            start = time.perf_counter()
            status, body = http_json(base + "/v2/ab/report")
            report_ms.append(round(1e3 * (time.perf_counter() - start), 1))
            if status != 200:
                raise InstrumentIdError(f"GET {base}/v2/ab/report answered {status}")
            reports.append(body["arms"])
    return {
        "replicas": 2, "workers_per_replica": args.workers, "clients_per_replica": args.clients, "seconds": args.seconds,
        "requests_per_second": round(sum(result.requests_per_second for result in results), 1),
        "p99_ms": [round(result.latency_p99_ms, 1) for result in results],
        "answers_200": answered, "in_flight_at_stop": in_flight, "rows_logged": rows,
        "errors": sum(result.errors for result in results),
        "rows_match_answers": answered <= rows <= answered + in_flight,
        "sticky_across_replicas": sticky, "reports_identical": reports[0] == reports[1],
        "report_counts": {arm: reports[0][arm]["count"] for arm in reports[0]}, "report_ms": report_ms,
    }


def print_report(figures: dict[str, Any]) -> None:
    """The figures as a few lines."""
    print(f"2 replicas x {figures['workers_per_replica']} workers on one PostgreSQL log, "
          f"{figures['clients_per_replica']} wrk clients each for {figures['seconds']} s: "
          f"{figures['requests_per_second']} requests/s, p99 {figures['p99_ms']} ms, {figures['errors']} errors")
    print(f"  answers sent (200) {figures['answers_200']:,}, rows logged {figures['rows_logged']:,} "
          f"(in flight at wrk's stop {figures['in_flight_at_stop']}): "
          f"{'match' if figures['rows_match_answers'] else 'MISMATCH'}")
    print(f"  sticky across replicas: {figures['sticky_across_replicas']}; reports identical: "
          f"{figures['reports_identical']} (counts {figures['report_counts']}, {figures['report_ms']} ms)")


def run(args: argparse.Namespace) -> int:
    """Two replicas on a throwaway PostgreSQL under wrk; non-zero when the log or the reports disagree."""
    from bench.pg_server import PostgresUnavailable, temporary_postgres

    find_wrk()
    for name in ("mlp", "rf"):
        if not (args.model_dir / name).is_dir():
            raise InstrumentIdError(f"{args.model_dir / name}: no model folder (--model-dir must hold mlp/ and rf/)")
    if min(args.workers, args.clients, args.seconds) < 1:
        raise InstrumentIdError("--workers, --clients and --seconds must be at least 1")
    try:
        with tempfile.TemporaryDirectory(prefix="instrument-id-bench-replicas-") as work, temporary_postgres() as url:
            figures = measure(args, Path(work), url)
    except PostgresUnavailable as exc:
        raise InstrumentIdError(f"bench replicas: {exc}") from None
    report(args, figures, print_report)
    passed = figures["rows_match_answers"] and figures["sticky_across_replicas"] and figures["reports_identical"]
    return 0 if passed else 1
