"""create_app(): the Flask application factory. Models load (and are verified) here, before any request or fork."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask

from serving.ab import ABRouter
from serving.auth import install_auth
from serving.config import ServingConfig, parse_config
from serving.decode import ServingRequest
from serving.errors import LOGGER, register_error_handlers
from serving.keys import KeyRing
from serving.log_buffer import BufferedLog
from serving.models import ServedModel, load_served_model
from serving.ops import ServingMetrics, install_request_hooks
from serving.prediction_log import open_prediction_log
from serving.rate_limits import RateLimiter

EXTENSION = "instrument_id"


@dataclass
class ServingState:
    """What every request needs: the config, the loaded models, the A/B router, the log and the metrics."""

    config: ServingConfig
    models: dict[str, ServedModel]
    router: ABRouter
    store: BufferedLog
    metrics: ServingMetrics
    keys: KeyRing | None = None  # None: open mode
    limiter: RateLimiter | None = None


def create_app(config: dict[str, Any] | ServingConfig | None = None) -> Flask:
    """The serving app for a config (dict as in a config file, a parsed ServingConfig, or None for the shipped models).

    A model folder that fails verification or loading raises InstrumentIdError here, so a server never starts
    with a model it cannot trust.
    """
    from serving import openapi, ops, routes_analyze, routes_compat, routes_v2, web

    serving_config = config if isinstance(config, ServingConfig) else parse_config(config)
    keys = None
    if serving_config.api_keys is not None:
        keys = KeyRing(serving_config.api_keys, serving_config.allow_world_readable_keys)
        LOGGER.info("read %d API key(s) from %s", len(keys), serving_config.api_keys)
    models = {}
    for model_config in serving_config.models:
        models[model_config.name] = load_served_model(model_config)
        LOGGER.info("loaded model %s (%s runtime, version %s) from %s", model_config.name, model_config.runtime,
                    models[model_config.name].version, model_config.path)
    metrics = ServingMetrics()
    store = open_prediction_log(serving_config.log_db, metrics.registry)

    app = Flask(__name__)
    app.request_class = ServingRequest  # closes the buffers of cut multipart uploads
    app.config["MAX_CONTENT_LENGTH"] = serving_config.max_upload_bytes
    app.json.sort_keys = False  # instruments stay in class order
    app.url_map.merge_slashes = False  # '//v2//predict' is a 404, not a redirect
    app.extensions[EXTENSION] = ServingState(
        config=serving_config, models=models, router=ABRouter(serving_config.arms), store=store, metrics=metrics,
        keys=keys, limiter=RateLimiter(serving_config.rate_limits, serving_config.rate_limit_storage),
    )
    register_error_handlers(app)
    install_request_hooks(app)
    install_auth(app, keys, app.extensions[EXTENSION].limiter)
    for blueprint in (routes_compat.bp, routes_v2.bp, routes_analyze.bp, ops.bp, openapi.bp, web.bp):
        app.register_blueprint(blueprint)
    return app
