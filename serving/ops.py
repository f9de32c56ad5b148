"""Operations: /healthz, /readyz, Prometheus /metrics, and one structured JSON log line per request.

prometheus_client decides at import whether values live in this process or in files shared by gunicorn's
workers (PROMETHEUS_MULTIPROC_DIR set, as serve_cli does); /metrics then aggregates every worker's files. So the
requests a buffered worker refuses before the app sees them (serving/worker.py: 408, 413, 431, 400) are counted
there too, by the worker process that refused them.
"""

from __future__ import annotations

import json
import logging
import os
import time

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from serving.errors import LOGGER
from serving.request_buffer import REFUSAL_STATUS

bp = Blueprint("ops", __name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DENIED_STATUSES = (401, 403, 429)
UNMATCHED_ROUTE = "<unmatched>"  # every unknown path counts under one label, so random URLs cannot flood the metrics


class ServingMetrics:
    """Requests, errors and latency per route and per arm, in this app's own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "instrument_id_http_requests", "HTTP requests answered", ["route", "method", "status", "arm", "model"],
            registry=self.registry,
        )
        self.errors = Counter(
            "instrument_id_http_errors", "HTTP requests answered with a 4xx or 5xx status", ["route", "status", "arm"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "instrument_id_http_request_duration_seconds", "Time from request start to response", ["route", "arm", "model"],
            buckets=LATENCY_BUCKETS_SECONDS, registry=self.registry,
        )
        self.analyzed_audio = Counter(
            "instrument_id_analyzed_audio_seconds", "Seconds of audio analyzed by /v2/analyze", ["model"],
            registry=self.registry,
        )
        self.replayed = Counter(
            "instrument_id_predictions_replayed",
            "Requests whose Idempotency-Key was already logged for the same request (a retry after a lost answer): "
            "answered with the logged prediction id, not logged again", ["route"], registry=self.registry,
        )

        self.denied = Counter(
            "instrument_id_http_denied",
            "Requests refused for their caller: no or an unknown key (401), a role too low (403), over a rate "
            "limit (429); role 'none' for no valid key, 'open' without a key file", ["route", "role", "status"],
            registry=self.registry,
        )
        self.refused = Counter(
            "instrument_id_http_refused",
            "Requests a buffered worker answered before the app saw them: late (408), too large (413, 431), with a "
            "malformed chunked body, or refused by gunicorn's parser (400, 414, 431, ...)", ["status", "reason"],
            registry=self.registry,
        )
        for reason, status in REFUSAL_STATUS.items():  # every series exists from the start, at 0
            self.refused.labels(str(status), reason)

    def count_refusal(self, status: int, reason: str) -> None:
        """Count one request refused before the app (the worker's hook)."""
        self.refused.labels(str(status), reason).inc()

    def observe(self, route: str, method: str, status: int, arm: str, model: str, seconds: float,
                role: str = "none") -> None:
        """Count one answered request."""
        self.requests.labels(route, method, str(status), arm, model).inc()
        if status in DENIED_STATUSES:
            self.denied.labels(route, role, str(status)).inc()
        if status >= 400:
            self.errors.labels(route, str(status), arm).inc()
        self.latency.labels(route, arm, model).observe(seconds)

    def exposition(self) -> bytes:
        """Prometheus text: every worker's values under gunicorn, this process's otherwise."""
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


def _state():
    return current_app.extensions["instrument_id"]


@bp.get("/healthz")
def healthz():
    """Alive: the process answers."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Ready when every configured model is loaded; 503 otherwise."""
    state = _state()
    missing = [name for name in state.config.model_names() if name not in state.models]
    if missing:
        return jsonify({"error": f"models not loaded: {', '.join(missing)}"}), 503
    return jsonify({"status": "ready", "models": {name: m.version for name, m in state.models.items()}})


@bp.get("/metrics")
def metrics():
    """Prometheus exposition format."""
    return Response(_state().metrics.exposition(), content_type=CONTENT_TYPE_LATEST)


def install_request_hooks(app: Flask) -> None:
    """Time every request; count it in the metrics and log one JSON line to the 'instrument_id.serving' logger."""

    @app.before_request
    def _start_timer() -> Response | None:
        g.start = time.perf_counter()
        if request.method == "OPTIONS" and request.url_rule is not None:  # JSON instead of Flask's empty answer
            allowed = sorted(request.url_rule.methods - {"OPTIONS", "HEAD"})
            return Response(json.dumps({"methods": allowed}), mimetype="application/json",
                            headers={"Allow": ", ".join([*allowed, "HEAD", "OPTIONS"])})
        return None

    @app.after_request
    def _observe(response: Response) -> Response:
        seconds = time.perf_counter() - g.get("start", time.perf_counter())
        route = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE
        arm, model = g.get("arm") or "none", g.get("model") or "none"
        app.extensions["instrument_id"].metrics.observe(route, request.method, response.status_code, arm, model, seconds,
                                                        g.get("role") or "none")
        if LOGGER.isEnabledFor(logging.INFO):
            LOGGER.info(json.dumps({
                "event": "request", "route": route, "method": request.method, "status": response.status_code,
                "latency_ms": round(1e3 * seconds, 3), "arm": g.get("arm"), "model": g.get("model"),
                "prediction_id": g.get("prediction_id"), "request_bytes": request.content_length,
                "client": g.get("client"), "role": g.get("role"),
            }))
        return response
