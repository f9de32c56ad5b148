"""Benchmark: `instrument-id serve` (gunicorn) against a reference-style Flask development server, both under wrk.

Each server runs as a subprocess on a free loopback port; wrk drives it at each load level. After every run
against ours, the A/B report's prediction count must have grown by the 200 answers wrk received (plus at most the
requests still in flight when wrk stopped, which the server may finish and log after wrk has gone).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import soundfile as sf

from bench.cli import report
from bench.signals import harmonic_clip
from bench.slow_clients import SlowClients
from bench.wrk import POST_FILE_LUA, TIMEOUT_SECONDS, WrkResult, find_wrk, run_wrk
from instrument_id.errors import InstrumentIdError
from serving.serve_cli import WORKER_CLASSES

OUR_ROUTES = ("/v2/predict?model=ab", "/RNA")
BASELINE_ROUTE = "/RNA"
CLIP_SECONDS, CLIP_RATE_HZ = 2.0, 44100
STARTUP_SECONDS = 180
WARMUP_REQUESTS = 4
TARGETS = {"throughput_vs_baseline": 20.0, "p99_ms_at_max_clients": 100.0, "p50_ms_single_client": 10.0}
SLOW_SETTLE_SECONDS = 1.0  # the slow connections are all accepted before wrk starts


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_json(url: str, body: bytes | None = None, timeout_seconds: float = 10.0) -> tuple[int, Any]:
    """(status, parsed JSON or None) of a GET, or of a POST of an audio/wav body."""
    headers = {"Content-Type": "audio/wav"} if body is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=timeout_seconds) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (urllib.error.URLError, OSError, json.JSONDecodeError):
        return 0, None


def _log_tail(path: Path, n_lines: int = 8) -> str:
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-n_lines:])


@contextmanager
def running_server(name: str, command: list[str], port: int, log_path: Path) -> Iterator[str]:
    """Start a server subprocess (its own session), yield its base URL once /readyz answers 200, then stop it."""
    base_url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while http_json(base_url + "/readyz", timeout_seconds=2)[0] != 200:
                if process.poll() is not None:
                    raise InstrumentIdError(f"{name} server exited ({process.returncode}) before ready: {_log_tail(log_path)}")
                if time.monotonic() > deadline:
                    raise InstrumentIdError(f"{name} server not ready after {STARTUP_SECONDS} s: {_log_tail(log_path)}")
                time.sleep(0.25)
            yield base_url
        finally:
            process.send_signal(signal.SIGTERM)  # gunicorn: graceful stop of master and workers
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(process.pid, signal.SIGKILL)  # whatever of that session is still left
            except ProcessLookupError:
                pass
            process.wait()


def logged_predictions(base_url: str) -> int:
    """Predictions the A/B report counts over all arms."""
    status, report = http_json(base_url + "/v2/ab/report")
    if status != 200:
        raise InstrumentIdError(f"GET {base_url}/v2/ab/report answered {status}")
    return sum(arm["count"] for arm in report["arms"].values())


def settled_count(base_url: str, at_least: int, at_most: int, quiet_seconds: float = 1.0, timeout_seconds: float = 20.0) -> int:
    """The report's count once the server has finished what wrk left in flight: at its upper bound, or at least
    at its lower bound and unchanged for quiet_seconds (so no late prediction lands in the next run's count)."""
    deadline, previous, unchanged_since = time.monotonic() + timeout_seconds, None, time.monotonic()
    while True:
        count, now = logged_predictions(base_url), time.monotonic()
        if count != previous:
            previous, unchanged_since = count, now
        if count >= at_most or (count >= at_least and now - unchanged_since >= quiet_seconds) or now > deadline:
            return count
        time.sleep(0.25)


def ab_check(before: int, after: int, result: WrkResult) -> dict[str, Any]:
    """Logged = 200 answers, up to the requests wrk abandoned in flight at its stop."""
    logged = after - before
    return {
        "logged_predictions": logged, "wrk_ok_200": result.ok, "unanswered_at_stop": result.unanswered,
        "passed": result.ok <= logged <= result.ok + result.unanswered,
    }


def load_runs(server: str, base_url: str, routes: tuple[str, ...], clip: Path, lua: Path, args: argparse.Namespace,
              check_log: bool) -> list[dict[str, Any]]:
    """Warm up, then one wrk run per route and level; with check_log, each run's A/B count check too."""
    body = clip.read_bytes()
    runs = []
    for route in routes:
        for _ in range(WARMUP_REQUESTS):
            status, _ = http_json(base_url + route, body, timeout_seconds=60)
            if status != 200:
                raise InstrumentIdError(f"warm-up POST {base_url}{route} answered {status}")
        for clients in args.levels:
            before = logged_predictions(base_url) if check_log else 0
            result, _ = run_wrk(base_url, route, clip, lua, clients, args.seconds)
            run = {
                "server": server, "route": route, "clients": clients,
                "requests_per_second": round(result.requests_per_second, 2),
                "latency_p50_ms": round(result.latency_p50_ms, 2), "latency_p99_ms": round(result.latency_p99_ms, 2),
                "requests": result.requests, "ok_200": result.ok, "errors": result.errors,
                "socket_errors": result.socket_errors, "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
            }
            if check_log:
                after = settled_count(base_url, before + result.ok, before + result.ok + result.unanswered)
                run["ab_report_check"] = ab_check(before, after, result)
            runs.append(run)
            print(f"  {server:8s} {route:22s} {clients:3d} clients: {run['requests_per_second']:8.1f} req/s", file=sys.stderr)
    return runs


def ratios(runs: list[dict[str, Any]], levels: list[int]) -> list[dict[str, Any]]:
    """Per route of ours: requests/s against the baseline's and p99 at the most clients, p50 at the fewest."""
    most, fewest = max(levels), min(levels)
    find = {(r["server"], r["route"], r["clients"]): r for r in runs}
    baseline = find[("baseline", BASELINE_ROUTE, most)]
    out = []
    for route in OUR_ROUTES:
        ours_most, ours_fewest = find[("ours", route, most)], find[("ours", route, fewest)]
        # a baseline that answered nothing at all has no ratio; any answer of ours then beats it
        speedup = ours_most["requests_per_second"] / baseline["requests_per_second"] if baseline["requests_per_second"] else None
        out.append({
            "route": route, "max_clients": most, "min_clients": fewest,
            "throughput_vs_baseline": None if speedup is None else round(speedup, 2),
            "p99_ms_at_max_clients": ours_most["latency_p99_ms"],
            "p50_ms_single_client": ours_fewest["latency_p50_ms"],
            "baseline_p99_ms_at_max_clients": baseline["latency_p99_ms"],
            "baseline_p50_ms_single_client": find[("baseline", BASELINE_ROUTE, fewest)]["latency_p50_ms"],
            "met": {
                "throughput_vs_baseline": ours_most["ok_200"] > 0 if speedup is None else speedup >= TARGETS["throughput_vs_baseline"],
                "p99_ms_at_max_clients": ours_most["latency_p99_ms"] < TARGETS["p99_ms_at_max_clients"],
                "p50_ms_single_client": ours_fewest["latency_p50_ms"] < TARGETS["p50_ms_single_client"],
            },
        })
    return out


def _wrk_figures(result: WrkResult) -> dict[str, Any]:
    return {"requests_per_second": round(result.requests_per_second, 2), "latency_p50_ms": round(result.latency_p50_ms, 2),
            "latency_p99_ms": round(result.latency_p99_ms, 2)}


def slow_client_comparison(base_url: str, clip: Path, lua: Path, args: argparse.Namespace) -> dict[str, Any]:
    """wrk on the A/B route at the most clients twice in a row: without slow connections, then with
    args.slow_clients of them open (the same server, one run after the other)."""
    route, clients, n = OUR_ROUTES[0], max(args.levels), args.slow_clients
    start = logged_predictions(base_url)
    plain, _ = run_wrk(base_url, route, clip, lua, clients, args.seconds)
    without = _wrk_figures(plain)
    before = settled_count(base_url, start + plain.ok, start + plain.ok + plain.unanswered)  # its late answers too
    with SlowClients("127.0.0.1", int(base_url.rsplit(":", 1)[1]), route, clip.read_bytes(), n) as slow:
        time.sleep(SLOW_SETTLE_SECONDS)
        result, _ = run_wrk(base_url, route, clip, lua, clients, args.seconds)
        slow_figures = slow.figures()
    check = ab_check(before, settled_count(base_url, before + result.ok, before + result.ok + result.unanswered), result)
    answered = result.requests > 0  # wrk's percentiles are 0 when nothing came back
    p50 = round(result.latency_p50_ms, 2) if answered else None
    p99, rps = (round(result.latency_p99_ms, 2) if answered else None), round(result.requests_per_second, 2)
    return {
        "slow_connections": n, "route": route, "clients": clients,
        "requests_per_second_without_slow": without["requests_per_second"],
        "p50_ms_without_slow": without["latency_p50_ms"], "p99_ms_without_slow": without["latency_p99_ms"],
        f"requests_per_second_with_{n}_slow": rps, f"p50_ms_with_{n}_slow": p50,
        f"p99_ms_with_{n}_slow": p99,
        "p99_with_vs_without_slow_ratio": round(p99 / without["latency_p99_ms"], 3) if p99 and without["latency_p99_ms"] else None,
        "throughput_with_vs_without_slow_ratio":
            round(rps / without["requests_per_second"], 3) if without["requests_per_second"] else None,
        "ok_200_with_slow": result.ok, "unanswered_with_slow": result.unanswered, "errors_with_slow": result.errors, "socket_errors_with_slow": result.socket_errors,
        **{f"slow_{key}": value for key, value in slow_figures.items()},
        "ab_report_check": check,
        "met": {"p99_ms_at_max_clients": result.ok > 0 and result.errors == 0 and p99 is not None
                                          and p99 < TARGETS["p99_ms_at_max_clients"]},
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `bench serve`."""
    parser.add_argument("--model-dir", type=Path, default=Path("model_zoo/models"),
                        help="folder holding the mlp/ and rf/ model folders (default model_zoo/models)")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers of our server (default: serve's)")
    parser.add_argument("--worker-class", choices=WORKER_CLASSES, default=None, help="default: serve's")
    parser.add_argument("--threads", type=int, default=None, help="threads per gthread worker (default: serve's)")
    parser.add_argument("--keepalive", type=int, default=None, help="gthread keep-alive seconds (default: serve's)")
    parser.add_argument("--seconds", type=int, default=10, help="seconds of load per level (default 10)")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32], help="concurrent connections (default 1 8 32)")
    parser.add_argument("--clip", type=Path, help="WAV file to POST (default: a generated 2 s clip of harmonic tones)")
    parser.add_argument("--slow-clients", type=int, default=0, metavar="N",
                        help="after the runs, the A/B route at the most clients twice more: without, then with N slow "
                             "connections open (half trickle a clip's body a byte a second, half stop part-way; each "
                             "reopened when the server closes it) (default 0: skipped)")


def _check_args(args: argparse.Namespace) -> None:
    find_wrk()
    for name in ("mlp", "rf"):
        if not (args.model_dir / name).is_dir():
            raise InstrumentIdError(f"{args.model_dir / name}: no model folder (--model-dir must hold mlp/ and rf/)")
    if args.slow_clients < 0:
        raise InstrumentIdError(f"--slow-clients must be 0 or more, got {args.slow_clients}")
    if args.seconds < 1 or min(args.levels) < 1 or any(v is not None and v < 1 for v in (args.workers, args.threads)):
        raise InstrumentIdError("--seconds, --workers, --threads and every --levels value must be at least 1")
    if args.clip is not None and not args.clip.is_file():
        raise InstrumentIdError(f"{args.clip}: no such clip")


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Run both servers under every load level; the figures as one dict."""
    clip = work / "clip.wav"
    if args.clip is None:
        sf.write(clip, harmonic_clip(CLIP_SECONDS, CLIP_RATE_HZ), CLIP_RATE_HZ, subtype="PCM_16")
    else:
        clip.write_bytes(args.clip.read_bytes())
    lua = work / "post_file.lua"
    lua.write_text(POST_FILE_LUA)
    models = args.model_dir.resolve()
    config = {
        "models": {"mlp": {"path": str(models / "mlp"), "runtime": "tflite"}, "rf": {"path": str(models / "rf"), "runtime": "zoo"}},
        "ab": {"arms": {"A": {"model": "mlp", "weight": 0.5}, "B": {"model": "rf", "weight": 0.5}}},
        "log_db": str(work / "predictions.sqlite"),  # fresh: the A/B counts start at zero
    }
    (work / "serve.json").write_text(json.dumps(config))
    load_before = os.getloadavg()[0]
    port = free_port()
    server_args = [item for flag, value in (("--workers", args.workers), ("--worker-class", args.worker_class),
                                            ("--threads", args.threads), ("--keepalive", args.keepalive))
                   if value is not None for item in (flag, str(value))]
    ours = [sys.executable, "-m", "instrument_id.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--config", str(work / "serve.json"), *server_args]
    with running_server("our", ours, port, work / "serve.log") as base_url:
        runs = load_runs("ours", base_url, OUR_ROUTES, clip, lua, args, check_log=True)
        slow = slow_client_comparison(base_url, clip, lua, args) if args.slow_clients else None
        total_logged = logged_predictions(base_url)
    port = free_port()
    baseline = [sys.executable, "-m", "bench.serve_baseline", "--model-dir", str(models / "mlp"), "--port", str(port)]
    with running_server("baseline", baseline, port, work / "baseline.log") as base_url:
        runs += load_runs("baseline", base_url, (BASELINE_ROUTE,), clip, lua, args, check_log=False)
    checks = [run["ab_report_check"] for run in runs if "ab_report_check" in run] + ([slow["ab_report_check"]] if slow else [])
    return {
        "clip_seconds": round(sf.info(clip).duration, 3), "clip_bytes": clip.stat().st_size, "seconds_per_level": args.seconds,
        "server_args": " ".join(server_args) or "(serve's defaults)", "levels_clients": sorted(args.levels), "cpu_count": os.cpu_count(),
        "load_average_1min_before": round(load_before, 2), "load_average_1min_after": round(os.getloadavg()[0], 2), "runs": runs,
        "ratios": ratios(runs, args.levels), "targets": TARGETS, "slow_clients": slow,
        "ab_report_check": {
            "passed": all(check["passed"] for check in checks),
            "logged_predictions": sum(check["logged_predictions"] for check in checks),
            "wrk_ok_200": sum(check["wrk_ok_200"] for check in checks),
            "unanswered_at_stop": sum(check["unanswered_at_stop"] for check in checks),
            "warmup_predictions": total_logged - sum(check["logged_predictions"] for check in checks),
        },
    }


def print_report(figures: dict[str, Any]) -> None:
    """The table of runs, the ratios against the targets, and the A/B log check."""
    print(f"{figures['clip_seconds']:.0f} s WAV clip ({figures['clip_bytes']} bytes), {figures['seconds_per_level']} s per level; "
          f"ours: instrument-id serve, {figures['server_args']}; baseline: Flask dev server + librosa + Keras; "
          f"{figures['cpu_count']} CPUs, load average {figures['load_average_1min_before']} before, {figures['load_average_1min_after']} after")
    print(f"{'server':9s} {'route':22s} {'clients':>7s} {'requests/s':>10s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>6s}  A/B log")
    for run in figures["runs"]:
        check = run.get("ab_report_check")
        note = (f"{check['logged_predictions']} logged / {check['wrk_ok_200']} ok (+{check['unanswered_at_stop']} in flight) "
                f"{'ok' if check['passed'] else 'MISMATCH'}") if check else ""
        if run["socket_errors"]["timeout"]:
            note += f" {run['socket_errors']['timeout']} past the {TIMEOUT_SECONDS} s timeout (not in the percentiles)"
        print(f"{run['server']:9s} {run['route']:22s} {run['clients']:7d} {run['requests_per_second']:10.1f} "
              f"{run['latency_p50_ms']:8.1f} {run['latency_p99_ms']:8.1f} {run['errors']:6d}  {note}")
    targets = figures["targets"]
    for ratio in figures["ratios"]:
        mark = {key: "met" if met else "MISSED" for key, met in ratio["met"].items()}
        print(f"ours {ratio['route']} vs baseline {BASELINE_ROUTE}:")
        speedup = "n/a (the baseline answered nothing)" if ratio["throughput_vs_baseline"] is None else f"{ratio['throughput_vs_baseline']:.1f}x"
        print(f"  requests/s at {ratio['max_clients']} clients: {speedup} baseline "
              f"(target >= {targets['throughput_vs_baseline']:.0f}x) {mark['throughput_vs_baseline']}")
        print(f"  p99 at {ratio['max_clients']} clients: {ratio['p99_ms_at_max_clients']:.1f} ms, baseline "
              f"{ratio['baseline_p99_ms_at_max_clients']:.1f} ms (target < {targets['p99_ms_at_max_clients']:.0f} ms) {mark['p99_ms_at_max_clients']}")
        print(f"  p50 at {ratio['min_clients']} client(s): {ratio['p50_ms_single_client']:.1f} ms, baseline "
              f"{ratio['baseline_p50_ms_single_client']:.1f} ms (target < {targets['p50_ms_single_client']:.0f} ms) {mark['p50_ms_single_client']}")
    if figures["slow_clients"]:
        print_slow_clients(figures["slow_clients"], targets)
    check = figures["ab_report_check"]
    print(f"A/B report check: {check['logged_predictions']} predictions logged during the wrk runs, wrk received "
          f"{check['wrk_ok_200']} 200 answers, {check['unanswered_at_stop']} requests in flight when wrk stopped: "
          f"{'passed' if check['passed'] else 'FAILED'} (plus {check['warmup_predictions']} warm-up predictions)")


def _ms(value: float | None) -> str:
    return "n/a (no answer)" if value is None else f"{value:.1f} ms"


def print_slow_clients(slow: dict[str, Any], targets: dict[str, float]) -> None:
    """Normal clients' latency with the slow connections open against without, and what the slow ones were told."""
    n = slow["slow_connections"]
    print(f"ours {slow['route']} at {slow['clients']} clients, without / with {n} slow connections open:")
    print(f"  requests/s {slow['requests_per_second_without_slow']:.1f} / {slow[f'requests_per_second_with_{n}_slow']:.1f}, "
          f"p50 {slow['p50_ms_without_slow']:.1f} / {_ms(slow[f'p50_ms_with_{n}_slow'])}, "
          f"p99 {slow['p99_ms_without_slow']:.1f} / {_ms(slow[f'p99_ms_with_{n}_slow'])} "
          f"(target < {targets['p99_ms_at_max_clients']:.0f} ms with them) "
          f"{'met' if slow['met']['p99_ms_at_max_clients'] else 'MISSED'}; {slow['ok_200_with_slow']} answered 200, "
          f"{slow['unanswered_with_slow']} unanswered when wrk stopped, "
          f"{slow['errors_with_slow']} errors ({slow['socket_errors_with_slow']['timeout']} timeouts) with them")
    print(f"  slow connections: {slow['slow_opened']} opened, {slow['slow_answered_408']} answered 408, "
          f"{slow['slow_answered_other']} another status, {slow['slow_closed_without_answer']} closed without an answer, "
          f"{slow['slow_open_now']} still open at the end")


def run(args: argparse.Namespace) -> int:
    """Measure, print the table (or JSON); exit 1 when the prediction log disagrees with wrk's answers."""
    _check_args(args)
    with tempfile.TemporaryDirectory(prefix="instrument-id-bench-serve-") as work:
        figures = measure(args, Path(work))
    report(args, figures, print_report)
    return 0 if figures["ab_report_check"]["passed"] else 1
