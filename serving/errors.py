"""Every failure becomes a JSON answer {"error": "..."}: expected ones with their 4xx, bugs as a logged 500."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from instrument_id.errors import InstrumentIdError

LOGGER = logging.getLogger("instrument_id.serving")


class ApiError(Exception):
    """An expected failure of one request: the HTTP status and a message a person can act on."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}  # e.g. WWW-Authenticate on a 401, Retry-After on a 429


def error_response(status: int, message: str):
    """A Flask (response, status) pair with the JSON error body."""
    return jsonify({"error": message}), status


def _shown_methods(exc: HTTPException) -> list[str]:
    """The route's methods a client would call (OPTIONS and HEAD are implied)."""
    return sorted(set(getattr(exc, "valid_methods", None) or []) - {"OPTIONS", "HEAD"})


def register_error_handlers(app: Flask) -> None:
    """Turn ApiError, InstrumentIdError, HTTP errors and unexpected exceptions into JSON answers."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        response, status = error_response(exc.status, exc.message)
        response.headers.update(exc.headers)
        return response, status

    @app.errorhandler(InstrumentIdError)
    def _bad_input(exc: InstrumentIdError):
        return error_response(400, str(exc))

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge):
        limit = request.max_content_length  # the route's own limit (/v2/analyze takes larger bodies) or the app's
        return error_response(413, f"the request body is larger than the {limit:,}-byte limit" if limit else exc.description)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        messages = {
            404: "no such route; GET /openapi.json lists the API",
            405: f"method {request.method} not allowed here; allowed: {', '.join(_shown_methods(exc))}",
        }
        response, status = error_response(exc.code or 500, messages.get(exc.code, exc.description or exc.name))
        if exc.code == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
        return response, status

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        LOGGER.exception("unhandled error while serving a request")
        return error_response(500, f"internal error ({type(exc).__name__}); it has been logged")
