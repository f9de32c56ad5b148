"""Benchmark: `instrument-id serve` (gunicorn) under wrk, by default against a reference-style Flask development server.

Ours serves the models of --model-dir the way `serve` serves the shipped ones (musicnn, mlp and rf, A/B 50:25:25;
mlp and rf 50:50 where there is no musicnn/). By default the A/B route and /RNA are measured against the
baseline's /RNA; with --model NAME (musicnn, mlp, rf or ab; repeatable) only /v2/predict?model=NAME, model by
model, without the baseline. Each server runs as a subprocess on a free loopback port. Before its measured runs
every route is warmed up at the most clients (bench/serve_runs.py; discarded), so that no worker's first
predictions fall in them; then wrk drives it at each load level, and each run's rows in the prediction log must
match the 200 answers wrk received.
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
from bench.flood import flood_comparison, make_keys, print_flood
from bench.serve_runs import WARMUP_SECONDS, load_runs, log_rows, slow_client_comparison
from bench.signals import harmonic_clip
from bench.wrk import POST_FILE_LUA, TIMEOUT_SECONDS, find_wrk
from instrument_id.errors import InstrumentIdError
from serving.config import default_config_data
from serving.serve_cli import WORKER_CLASSES

AB = "ab"
OUR_ROUTES = (f"/v2/predict?model={AB}", "/RNA")
BASELINE_ROUTE = "/RNA"
BASELINE = "Flask dev server + librosa + Keras"
CLIP_SECONDS, CLIP_RATE_HZ = 2.0, 44100
STARTUP_SECONDS = 180
TARGETS = {"throughput_vs_baseline": 20.0, "p99_ms_at_max_clients": 100.0, "p50_ms_single_client": 10.0}
PER_MODEL_KEYS = ("clients", "requests_per_second", "latency_p50_ms", "latency_p99_ms")


class CommaSeparated(argparse.Action):
    """An option's values as separate words or comma-separated ('1 8 32' or '1,8,32'); repeating the option adds
    to them, and its first use replaces the default."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        words = values if isinstance(values, list) else [values]
        given = getattr(namespace, self.dest)
        items = [] if given is self.default or given is None else list(given)
        setattr(namespace, self.dest, items + [part.strip() for word in words for part in word.split(",") if part.strip()])


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


def _under(value_ms: float | None, target_ms: float) -> bool:
    """A latency below its target (none at all, when nothing was answered, is not)."""
    return value_ms is not None and value_ms < target_ms


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
                "p99_ms_at_max_clients": _under(ours_most["latency_p99_ms"], TARGETS["p99_ms_at_max_clients"]),
                "p50_ms_single_client": _under(ours_fewest["latency_p50_ms"], TARGETS["p50_ms_single_client"]),
            },
        })
    return out


def per_model(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Our /v2/predict?model=NAME runs by model: requests/s and latency percentiles at each level."""
    out: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        if run["server"] == "ours" and run["model"]:
            out.setdefault(run["model"], []).append({key: run[key] for key in PER_MODEL_KEYS})
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `bench serve`."""
    parser.add_argument("--model-dir", type=Path, default=Path("model_zoo/models"),
                        help="folder holding the mlp/, rf/ and (served when there) musicnn/ model folders "
                             "(default model_zoo/models)")
    parser.add_argument("--model", action=CommaSeparated, default=None, metavar="NAME",
                        help="measure /v2/predict?model=NAME alone, for each NAME given (musicnn, mlp, rf, or ab for "
                             "the A/B router; repeat the option or separate names by commas), without the baseline "
                             "(default: the A/B route and /RNA against the baseline)")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers of our server (default: serve's)")
    parser.add_argument("--worker-class", choices=WORKER_CLASSES, default=None, help="default: serve's")
    parser.add_argument("--threads", type=int, default=None, help="threads per gthread worker (default: serve's)")
    parser.add_argument("--keepalive", type=int, default=None, help="gthread keep-alive seconds (default: serve's)")
    parser.add_argument("--rate-limit-storage", default=None, metavar="URI",
                        help="serve's --rate-limit-storage (default: serve's, a SQLite file its workers share); the "
                             "limits apply to keyed clients, i.e. with --flood")
    parser.add_argument("--seconds", type=int, default=10, help="seconds of load per level (default 10)")
    parser.add_argument("--levels", nargs="+", action=CommaSeparated, default=["1", "8", "32"],
                        help="concurrent connections, e.g. 1 8 32 or 1,8,32 (default 1 8 32)")
    parser.add_argument("--clip", type=Path, help="WAV file to POST (default: a generated 2 s clip of harmonic tones)")
    parser.add_argument("--flood", type=int, default=0, metavar="N",
                        help="instead of the load levels: one client (a client key) floods with N connections while a "
                             "second sends --flood-steady-rate requests/s; the second's p50/p99 without and with the "
                             "flood, and what the flood was answered (429 and Retry-After at its limit)")
    parser.add_argument("--flood-steady-rate", type=float, default=10.0, metavar="R",
                        help="requests per second of the steady client beside the flood (default 10, under the limit)")
    parser.add_argument("--slow-clients", type=int, default=0, metavar="N",
                        help="after the runs, the first route at the most clients twice more: without, then with N "
                             "slow connections open (half trickle a clip's body a byte a second, half stop part-way; "
                             "each reopened when the server closes it) (default 0: skipped)")


def _served_models(model_dir: Path) -> dict[str, Any]:
    """serve's config of the model folders in model_dir: models and A/B arms."""
    return default_config_data(model_dir.resolve())


def _check_args(args: argparse.Namespace) -> None:
    """Validate, and turn --levels into whole numbers (each once, in the order given)."""
    find_wrk()
    for name in ("mlp", "rf"):
        if not (args.model_dir / name).is_dir():
            raise InstrumentIdError(f"{args.model_dir / name}: no model folder (--model-dir must hold mlp/ and rf/)")
    try:
        args.levels = list(dict.fromkeys(int(level) for level in args.levels))
    except ValueError:
        raise InstrumentIdError(f"--levels takes whole numbers of connections, e.g. 1,8,32; got {','.join(args.levels)}") from None
    served = [AB, *_served_models(args.model_dir)["models"]]
    unknown = [name for name in args.model or [] if name not in served]
    if unknown:
        raise InstrumentIdError(f"--model {unknown[0]}: not served from {args.model_dir}; choose from {', '.join(served)}")
    if args.flood < 0 or args.flood_steady_rate <= 0:
        raise InstrumentIdError(f"--flood must be 0 or more and --flood-steady-rate positive, got {args.flood} and {args.flood_steady_rate}")
    if args.slow_clients < 0:
        raise InstrumentIdError(f"--slow-clients must be 0 or more, got {args.slow_clients}")
    if args.seconds < 1 or min(args.levels) < 1 or any(v is not None and v < 1 for v in (args.workers, args.threads)):
        raise InstrumentIdError("--seconds, --workers, --threads and every --levels value must be at least 1")
    if args.clip is not None and not args.clip.is_file():
        raise InstrumentIdError(f"{args.clip}: no such clip")


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Run our server (and without --model the baseline) under every load level; the figures as one dict."""
    clip = work / "clip.wav"
    if args.clip is None:
        sf.write(clip, harmonic_clip(CLIP_SECONDS, CLIP_RATE_HZ), CLIP_RATE_HZ, subtype="PCM_16")
    else:
        clip.write_bytes(args.clip.read_bytes())
    lua = work / "post_file.lua"
    lua.write_text(POST_FILE_LUA)
    log_db = work / "predictions.sqlite"  # fresh: its rows are this benchmark's predictions
    config = {**_served_models(args.model_dir), "log_db": str(log_db)}
    (work / "serve.json").write_text(json.dumps(config))
    routes = tuple(f"/v2/predict?model={name}" for name in args.model) if args.model else OUR_ROUTES
    load_before = os.getloadavg()[0]
    port = free_port()
    server_args = [item for flag, value in (("--workers", args.workers), ("--worker-class", args.worker_class),
                                            ("--threads", args.threads), ("--keepalive", args.keepalive),
                                            ("--rate-limit-storage", args.rate_limit_storage))
                   if value is not None for item in (flag, str(value))]
    ours = [sys.executable, "-m", "instrument_id.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--config", str(work / "serve.json"), *server_args]
    if args.flood:
        keys = make_keys(work / "keys.txt")
        with running_server("our", [*ours, "--api-keys", str(work / "keys.txt")], port, work / "serve.log") as base_url:
            flood = flood_comparison(base_url, routes[0], clip, lua, keys, args, log_db)
        return {"clip_seconds": round(sf.info(clip).duration, 3), "server_args": " ".join(server_args) or "(serve's defaults)",
                "cpu_count": os.cpu_count(), "flood": flood, "log_check": flood["log_check"]}
    with running_server("our", ours, port, work / "serve.log") as base_url:
        runs, warmups = load_runs("ours", base_url, routes, clip, lua, args, log_db)
        slow = (slow_client_comparison(base_url, routes[0], clip, lua, args, log_db, TARGETS["p99_ms_at_max_clients"])
                if args.slow_clients else None)
        total_logged = log_rows(log_db)
    if not args.model:
        port = free_port()
        baseline = [sys.executable, "-m", "bench.serve_baseline", "--model-dir", str(args.model_dir.resolve() / "mlp"),
                    "--port", str(port)]
        with running_server("baseline", baseline, port, work / "baseline.log") as base_url:
            baseline_runs, baseline_warmups = load_runs("baseline", base_url, (BASELINE_ROUTE,), clip, lua, args, None)
        runs, warmups = runs + baseline_runs, warmups + baseline_warmups
    checks = [run["log_check"] for run in runs if "log_check" in run] + ([slow["log_check"]] if slow else [])
    return {
        "clip_seconds": round(sf.info(clip).duration, 3), "clip_bytes": clip.stat().st_size, "seconds_per_level": args.seconds,
        "server_args": " ".join(server_args) or "(serve's defaults)", "levels_clients": sorted(args.levels), "cpu_count": os.cpu_count(),
        "load_average_1min_before": round(load_before, 2), "load_average_1min_after": round(os.getloadavg()[0], 2),
        "served_models": list(config["models"]), "ab_arms": config["ab"]["arms"],
        "warmups": warmups, "runs": runs, "per_model": per_model(runs),
        "ratios": None if args.model else ratios(runs, args.levels), "targets": TARGETS, "slow_clients": slow,
        "log_check": {
            "passed": all(check["passed"] for check in checks),
            "logged_predictions": sum(check["logged_predictions"] for check in checks),
            "wrk_ok_200": sum(check["wrk_ok_200"] for check in checks),
            "unanswered_at_stop": sum(check["unanswered_at_stop"] for check in checks),
            "warmup_predictions": total_logged - sum(check["logged_predictions"] for check in checks),
        },
    }


def _ms(value: float | None) -> str:
    return "n/a (no answer)" if value is None else f"{value:.1f} ms"


def print_report(figures: dict[str, Any]) -> None:
    """The warm-up, the table of runs, the ratios against the targets, and the log check (or the flood's figures)."""
    if "flood" in figures:
        print(f"{figures['clip_seconds']:.0f} s WAV clip; ours: instrument-id serve, {figures['server_args']}, "
              f"{figures['cpu_count']} CPUs")
        print_flood(figures["flood"])
        return
    arms = ", ".join(f"{name} {arm['model']} {arm['weight']:g}" for name, arm in figures["ab_arms"].items())
    print(f"{figures['clip_seconds']:.0f} s WAV clip ({figures['clip_bytes']} bytes), {figures['seconds_per_level']} s per level; "
          f"ours: instrument-id serve, {figures['server_args']}, models {', '.join(figures['served_models'])} "
          f"(A/B arms {arms}); baseline: {'none (--model)' if figures['ratios'] is None else BASELINE}; "
          f"{figures['cpu_count']} CPUs, load average {figures['load_average_1min_before']} before, {figures['load_average_1min_after']} after")
    for warmup in figures["warmups"]:
        print(f"warm-up (discarded): {warmup['server']} {warmup['route']} at {warmup['clients']} "
              f"clients for {warmup['seconds']} s, {warmup['ok_200']} answered 200, p99 {_ms(warmup['latency_p99_ms'])}")
    print(f"{'server':9s} {'route':26s} {'clients':>7s} {'requests/s':>10s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>6s}  log")
    for run in figures["runs"]:
        check = run.get("log_check")
        note = (f"{check['logged_predictions']} logged / {check['wrk_ok_200']} ok (+{check['unanswered_at_stop']} in flight) "
                f"{'ok' if check['passed'] else 'MISMATCH'}") if check else ""
        if run["socket_errors"]["timeout"]:
            note += f" {run['socket_errors']['timeout']} past the {TIMEOUT_SECONDS} s timeout (not in the percentiles)"
        print(f"{run['server']:9s} {run['route']:26s} {run['clients']:7d} {run['requests_per_second']:10.1f} "
              f"{run['latency_p50_ms'] or 0:8.1f} {run['latency_p99_ms'] or 0:8.1f} {run['errors']:6d}  {note}")
    targets = figures["targets"]
    for ratio in figures["ratios"] or []:
        print_ratio(ratio, targets)
    if figures["slow_clients"]:
        print_slow_clients(figures["slow_clients"], targets)
    check = figures["log_check"]
    print(f"log check: {check['logged_predictions']} predictions logged during the measured runs, wrk received "
          f"{check['wrk_ok_200']} 200 answers, {check['unanswered_at_stop']} requests in flight when wrk stopped: "
          f"{'passed' if check['passed'] else 'FAILED'} (plus {check['warmup_predictions']} warm-up predictions)")


def print_ratio(ratio: dict[str, Any], targets: dict[str, float]) -> None:
    """One route of ours against the baseline, target by target."""
    mark = {key: "met" if met else "MISSED" for key, met in ratio["met"].items()}
    print(f"ours {ratio['route']} vs baseline {BASELINE_ROUTE}:")
    speedup = "n/a (the baseline answered nothing)" if ratio["throughput_vs_baseline"] is None else f"{ratio['throughput_vs_baseline']:.1f}x"
    print(f"  requests/s at {ratio['max_clients']} clients: {speedup} baseline "
          f"(target >= {targets['throughput_vs_baseline']:.0f}x) {mark['throughput_vs_baseline']}")
    print(f"  p99 at {ratio['max_clients']} clients: {_ms(ratio['p99_ms_at_max_clients'])}, baseline "
          f"{_ms(ratio['baseline_p99_ms_at_max_clients'])} (target < {targets['p99_ms_at_max_clients']:.0f} ms) {mark['p99_ms_at_max_clients']}")
    print(f"  p50 at {ratio['min_clients']} client(s): {_ms(ratio['p50_ms_single_client'])}, baseline "
          f"{_ms(ratio['baseline_p50_ms_single_client'])} (target < {targets['p50_ms_single_client']:.0f} ms) {mark['p50_ms_single_client']}")


def print_slow_clients(slow: dict[str, Any], targets: dict[str, float]) -> None:
    """Normal clients' latency with the slow connections open against without, and what the slow ones were told."""
    n = slow["slow_connections"]
    print(f"ours {slow['route']} at {slow['clients']} clients, without / with {n} slow connections open:")
    print(f"  requests/s {slow['requests_per_second_without_slow']:.1f} / {slow[f'requests_per_second_with_{n}_slow']:.1f}, "
          f"p50 {_ms(slow['p50_ms_without_slow'])} / {_ms(slow[f'p50_ms_with_{n}_slow'])}, "
          f"p99 {_ms(slow['p99_ms_without_slow'])} / {_ms(slow[f'p99_ms_with_{n}_slow'])} "
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
    return 0 if figures["log_check"]["passed"] else 1
