"""`instrument-id serve`: the models over HTTP with gunicorn (models loaded once, before the workers fork).

The default workers are buffered ones (serving/worker.py): each reads whole requests, with a deadline and a size
cap, before computing any, so clients that upload slowly or never finish are answered 408 and hold no worker.

Without gunicorn (e.g. on Windows) Flask's own threaded server runs instead. Under gunicorn the Prometheus
values of every worker go to a fresh temporary folder (PROMETHEUS_MULTIPROC_DIR), which /metrics aggregates.
SIGTERM stops gracefully: workers finish the requests they hold (up to --graceful-timeout seconds), and each
prediction is committed to the log before its response leaves.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import ipaddress
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from instrument_id.errors import InstrumentIdError
from serving.errors import LOGGER
from serving.request_buffer import ReadLimits

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
WORKER_CLASSES = ("buffered", "sync", "gthread")


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `instrument-id serve`."""
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1); another one needs --api-keys or --insecure-open")
    parser.add_argument("--api-keys", type=Path,
                        help="file of hashed API keys with roles (`instrument-id keys add`), read at start and again on "
                             "SIGHUP; overrides the config's api_keys. Without one the service is open to all callers")
    parser.add_argument("--allow-world-readable-keys", action="store_true",
                        help="accept a key file that every user of the machine can read")
    parser.add_argument("--rate-limit-storage",
                        help="where the per-client rate limits count (overrides the config's rate_limit_storage): "
                             "sqlite:// (default: a private SQLite file that this replica's workers share), "
                             "sqlite:///ABSOLUTE/PATH (a file every replica on this host naming it shares), "
                             "redis://HOST:6379 for replicas on any host to share, or memory:// (each worker its own "
                             "counters)")
    parser.add_argument("--insecure-open", action="store_true",
                        help="serve without keys on an address other than loopback: anyone who reaches the port may "
                             "predict, give feedback and read the report and metrics (warned on every start)")
    parser.add_argument("--port", type=int, default=52000, help="port (default 52000, the reference API's)")
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1),
                        help="worker processes (default two per CPU: one computes while another reads or writes)")
    parser.add_argument("--config", type=Path, help="JSON or TOML config (default: the shipped musicnn, mlp and rf; A/B 50:25:25)")
    parser.add_argument("--worker-class", choices=WORKER_CLASSES, default="buffered",
                        help="gunicorn worker type (default buffered: one request per process at a time, as sync, but "
                             "each worker reads every connection it accepts in a selector and computes only requests "
                             "that have fully arrived, so clients that send slowly or never finish hold no worker; "
                             "sync: gunicorn's own, which a few slow uploads stall (put a buffering proxy in front); "
                             "gthread: threads per process, which wait on each other for the GIL and widened the "
                             "latency tail in `bench serve`)")
    parser.add_argument("--read-timeout", type=float, default=ReadLimits.read_timeout_seconds,
                        help="buffered workers: seconds a client may take to send its request headers, and its body "
                             "beyond the time --min-upload-rate allows for the bytes sent; a request still incomplete "
                             f"then is answered 408 (default {ReadLimits.read_timeout_seconds:g})")
    parser.add_argument("--min-upload-rate", type=float, default=ReadLimits.min_upload_bytes_per_second,
                        help="buffered workers: bytes per second of body that earn an uploading client another second "
                             f"(default {ReadLimits.min_upload_bytes_per_second:,.0f})")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker with --worker-class gthread (default 4)")
    parser.add_argument("--keepalive", type=int, default=2,
                        help="seconds a gthread worker keeps an idle connection open (default 2, gunicorn's); 0 closes "
                             "it after each answer, so every request queues at the shared socket and goes to the "
                             "first free worker")
    parser.add_argument("--graceful-timeout", type=int, default=30, help="seconds a stopping worker may finish requests")
    parser.add_argument("--server", choices=("auto", "gunicorn", "flask"), default="auto",
                        help="auto: gunicorn when installed, else Flask's threaded server")


def is_loopback(host: str) -> bool:
    """Whether an address to listen on is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(args: argparse.Namespace) -> None:
    """Refuse --insecure-open with keys (the two contradict each other)."""
    if args.insecure_open and args.api_keys is not None:
        raise InstrumentIdError("--insecure-open and --api-keys contradict each other: give one")


def _warn_open(host: str) -> None:
    """Say on every start that anyone who reaches the port may do everything."""
    where = "this machine" if is_loopback(host) else f"anyone who can reach {host}"
    LOGGER.warning(json.dumps({"event": "open_mode", "host": host, "warning":
                               f"no API keys: {where} may predict, give feedback on any prediction and read the A/B "
                               "report and /metrics (serve --api-keys FILE to require keys)"}))


def _note_limit_scope(limiter: Any, workers: int) -> None:
    """Say at start who shares the rate limits: a warning where each worker counts alone, a note where replicas do."""
    scope = limiter.scope()
    if scope == "process" and workers > 1:
        LOGGER.warning(json.dumps({"event": "rate_limits_per_worker", "warning":
                                   f"rate limits count in each of the {workers} workers (memory://): a client may "
                                   "reach up to that many times its limit; sqlite:// (the default) shares them in "
                                   "this replica, redis://HOST:6379 across replicas"}))
    elif scope == "replica":
        from serving.rate_limit_sqlite import database_path

        LOGGER.info(json.dumps({"event": "rate_limits_per_replica", "file": database_path(limiter.storage_uri),
                                "note": f"rate limits are shared by this replica's {workers} worker(s); other replicas "
                                        "count on their own unless all give --rate-limit-storage redis://HOST:6379"}))


def _log_to_stderr() -> None:
    """One JSON line per request on stderr, from the 'instrument_id.serving' logger."""
    logger = logging.getLogger("instrument_id.serving")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _child_exit(server: Any, worker: Any) -> None:
    """Let Prometheus drop a dead worker's live values (its counters stay summed)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _worker_class(app: Any, args: argparse.Namespace) -> Any:
    """gunicorn's worker_class: a name, or the buffered worker class with the app's body limits, ours on time, and
    the app's metrics counting what it refuses."""
    if args.worker_class != "buffered":
        return args.worker_class
    from serving.worker import buffered_worker_class

    state = app.extensions["instrument_id"]
    limits = ReadLimits(
        read_timeout_seconds=args.read_timeout, min_upload_bytes_per_second=args.min_upload_rate,
        max_body_bytes=state.config.max_upload_bytes,
        large_body_routes=(("/v2/analyze", state.config.max_analyze_upload_bytes),),
    )
    return buffered_worker_class(limits, count_refusal=state.metrics.count_refusal)


def _reload_keys(app: Any) -> None:
    """Read the app's key file again (gunicorn's on_reload hook, in the master, before it forks the new workers)."""
    keys = app.extensions["instrument_id"].keys
    if keys is not None:
        keys.reload()


def _serve_gunicorn(app: Any, args: argparse.Namespace) -> int:
    from gunicorn.app.base import BaseApplication

    class _Server(BaseApplication):
        """gunicorn around an app that is already built (preload: models are shared by the forked workers)."""

        def __init__(self, options: dict[str, Any]) -> None:
            self.options = options
            super().__init__()

        def load_config(self) -> None:
            """Our options into gunicorn's settings."""
            for key, value in self.options.items():
                if key in self.cfg.settings:  # e.g. control_socket_disable exists from gunicorn 25.1 on
                    self.cfg.set(key, value)

        def load(self) -> Any:
            """The WSGI app, built before the fork."""
            return app

    options = {
        "bind": f"{args.host}:{args.port}", "workers": args.workers, "worker_class": _worker_class(app, args),
        # gunicorn turns sync workers with threads > 1 into gthread ones, so sync gets exactly one thread
        "threads": args.threads if args.worker_class == "gthread" else 1, "preload_app": True, "graceful_timeout": args.graceful_timeout, "timeout": 120,
        "keepalive": args.keepalive,
        "accesslog": None, "errorlog": "-", "loglevel": "info", "child_exit": _child_exit,
        "proc_name": "instrument-id-serve",
        # SIGHUP: the master reads the key file again, forks new workers with it and stops the old ones gracefully
        # (each finishes the requests it holds), so rotating a key drops no request
        "on_reload": lambda arbiter: _reload_keys(app),
        "control_socket_disable": True,  # one fixed socket path per user: a second server would take it over
    }
    master_pid = os.getpid()
    try:
        _Server(options).run()
    except SystemExit as exc:
        if os.getpid() != master_pid:  # a forked worker leaving: let it exit as gunicorn intends
            raise
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def run(args: argparse.Namespace) -> int:
    """Load and verify the models, then serve until stopped."""
    if args.workers < 1:
        raise InstrumentIdError(f"--workers must be at least 1, got {args.workers}")
    if args.threads < 1:
        raise InstrumentIdError(f"--threads must be at least 1, got {args.threads}")
    if not (args.read_timeout > 0 and args.min_upload_rate > 0):
        raise InstrumentIdError(f"--read-timeout and --min-upload-rate must be positive, got {args.read_timeout} and {args.min_upload_rate}")
    if not args.keepalive >= 0:
        raise InstrumentIdError(f"--keepalive must be 0 or more seconds, got {args.keepalive}")
    if not 0 <= args.port <= 65535:
        raise InstrumentIdError(f"--port must be 0..65535, got {args.port}")
    check_bind(args)
    use_gunicorn = args.server == "gunicorn" or (args.server == "auto" and importlib.util.find_spec("gunicorn") is not None)
    if args.server == "gunicorn" and importlib.util.find_spec("gunicorn") is None:
        raise InstrumentIdError("gunicorn is not installed: pip install 'instrument-id[serve]'")
    metrics_dir, master_pid = None, os.getpid()
    if use_gunicorn:
        if "prometheus_client" in sys.modules:
            raise InstrumentIdError("prometheus_client was imported before `serve` could set up multiprocess metrics")
        metrics_dir = tempfile.mkdtemp(prefix="instrument-id-metrics-")
        os.environ[MULTIPROC_ENV] = metrics_dir  # read by prometheus_client at import, i.e. by create_app below
    try:
        from serving.app import create_app
        from serving.config import load_config
        from serving.models import use_one_blas_thread
        from serving.rate_limits import check_storage_uri

        _log_to_stderr()
        config = load_config(args.config)
        if args.api_keys is not None or args.allow_world_readable_keys:
            config = dataclasses.replace(config, api_keys=args.api_keys or config.api_keys,
                                         allow_world_readable_keys=args.allow_world_readable_keys)
        if args.rate_limit_storage is not None:
            config = dataclasses.replace(config, rate_limit_storage=check_storage_uri(args.rate_limit_storage,
                                                                                      "--rate-limit-storage"))
        if config.api_keys is None and not is_loopback(args.host) and not args.insecure_open:
            raise InstrumentIdError(f"--host {args.host} without keys would let anyone on the network use the service; "
                                    "give --api-keys FILE (instrument-id keys add), or --insecure-open to accept that")
        app = create_app(config)
        use_one_blas_thread()  # every worker thread computes features; the workers already fill the cores
        state = app.extensions["instrument_id"]
        loaded = ", ".join(f"{name} ({m.runtime}, {m.version})" for name, m in state.models.items())
        server = f"gunicorn, {args.workers} {args.worker_class} worker(s)" if use_gunicorn else "Flask threaded server"
        print(f"serving {loaded} on http://{args.host}:{args.port} ({server}); log {state.store.describe()}", flush=True)
        if state.keys is None:
            _warn_open(args.host)
        _note_limit_scope(state.limiter, args.workers if use_gunicorn else 1)
        if state.limiter.shared() and not state.limiter.reachable():
            LOGGER.warning(json.dumps({"event": "rate_limit_store_unreachable", "warning":
                                       f"the rate-limit store {state.limiter.storage_uri.split('://')[0]}:// does not "
                                       "answer: limited routes answer 503 until it does"}))
        if use_gunicorn:
            return _serve_gunicorn(app, args)
        signal.signal(signal.SIGHUP, lambda signum, frame: _reload_keys(app))
        app.run(host=args.host, port=args.port, threaded=True)
        return 0
    finally:
        if metrics_dir is not None and os.getpid() == master_pid:  # workers run this too when they exit
            shutil.rmtree(metrics_dir, ignore_errors=True)
