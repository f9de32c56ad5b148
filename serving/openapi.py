"""The OpenAPI 3 document of the whole API, as data, and the route that serves it.

Who may call each operation comes from the app's own routes and serving/auth.py's table, so the document cannot
drift from what is enforced: with API keys on, every operation that needs a key names the two ways to send one
(securitySchemes: bearer, and an X-API-Key header) and documents its 401 (and 403 where it needs an admin key);
an operation a rate-limited role may call documents its 429 with Retry-After, and a 503 when the limits count in a
shared store that may not answer."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, current_app, jsonify

from instrument_id.instruments import INSTRUMENTS, column_names
from serving.decode import MAX_CHANNELS, MAX_RATE_HZ, MIN_RATE_HZ, PCM_FORMATS
from serving.idempotency import HEADER as IDEMPOTENCY_HEADER
from serving.idempotency import KEY_CHAR, MAX_KEY_CHARS
from serving.auth import ADMIN, OPEN, endpoint_role
from serving.keys import ROLE_RANK, ROLES
from serving.routes_analyze import DEFAULT_HOP_SECONDS, MAX_HOP_SECONDS, MIN_HOP_SECONDS

bp = Blueprint("openapi", __name__)
AUDIO_TYPES = ("audio/wav", "audio/flac", "audio/ogg", "audio/mpeg", "application/octet-stream")
NAMES = [inst.name for inst in INSTRUMENTS]
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "Authorization: Bearer KEY, a key made by `instrument-id keys add`"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "the same key in X-API-Key"},
}
ACCESS_ANSWERS = {
    401: ("no API key, or an unknown one", {"WWW-Authenticate": {"schema": {"type": "string"}}}),
    403: ("the key's role may not call this operation: it needs an admin key", {}),
    429: ("over the client's rate limit (requests or seconds of audio); nothing was computed or logged",
          {"Retry-After": {"schema": {"type": "integer", "minimum": 1}, "description": "seconds to wait"}}),
    503: ("the rate-limit store cannot be reached",
          {"Retry-After": {"schema": {"type": "integer", "minimum": 1}, "description": "seconds to wait"}}),
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    reasons = {
        400: "bad input (unreadable audio, malformed JSON, wrong fields)", 404: "unknown model, arm or prediction id",
        413: "body or decoded audio over the size limit", 415: "unsupported Content-Type",
        422: "the Idempotency-Key was already used for a different request",
        501: "plot=1 on a server without matplotlib", 503: "not ready: models not loaded",
    }
    return {str(code): _json(_ref("Error"), reasons[code]) for code in codes}


def _number(minimum: float | None = None, maximum: float | None = None, nullable: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "number"}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    if nullable:
        schema["nullable"] = True
    return schema


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties) if required is None else required}


def _schemas() -> dict[str, Any]:
    names = {"type": "array", "items": {"type": "string", "enum": NAMES}}
    probabilities = {"type": "object", "additionalProperties": _number(0, 1)}
    result = _object({
        "instrument": {"type": "string", "enum": NAMES}, "program": {"type": "integer"},
        "probability": _number(0, 1), "decision": {"type": "boolean"},
    })
    results = {"type": "array", "items": _ref("InstrumentResult"), "minItems": len(NAMES), "maxItems": len(NAMES)}
    window = _object({
        "start_seconds": _number(0), "end_seconds": _number(0), "instruments": names, "probabilities": probabilities,
    })
    latency = {"type": "object", "additionalProperties": _number(0)}
    predict = _object({
        "prediction_id": {"type": "string"}, "model": {"type": "string"}, "model_version": {"type": "string"},
        "arm": {"type": "string", "nullable": True}, "instruments": names, "results": results,
        "clip_seconds": _number(0), "n_windows": {"type": "integer", "minimum": 1},
        "windows": {"type": "array", "items": _ref("Window")}, "warnings": {"type": "array", "items": {"type": "string"}},
        "latency_ms": latency,
    })
    compared = _object({
        "prediction_id": {"type": "string"}, "model": {"type": "string"}, "model_version": {"type": "string"},
        "arm": {"type": "string", "nullable": True}, "instruments": names, "results": results,
        "n_windows": {"type": "integer", "minimum": 1}, "latency_ms": latency,
    })
    compare = _object({
        "compare_group": {"type": "string"}, "clip_seconds": _number(0),
        "models": {"type": "array", "items": compared},
        "agreement": _object({
            "all_agree": {"type": "boolean"}, "disagreeing": names,
            "per_instrument": {"type": "array", "items": {"type": "object"}},
        }),
        "warnings": {"type": "array", "items": {"type": "string"}}, "latency_ms": latency,
    })
    nullable_seconds = _number(0, nullable=True)
    instrument_summary = _object({
        "present": {"type": "boolean"}, "seconds": _number(0), "first_seconds": nullable_seconds,
        "last_seconds": nullable_seconds, "windows": {"type": "integer", "minimum": 0},
        "max_probability": _number(0, 1), "segments": {"type": "array", "items": {"type": "array", "items": _number(0)}},
    })
    analyze = _object({
        "model": {"type": "string"}, "model_version": {"type": "string"}, "runtime": {"type": "string"},
        "arm": {"type": "string", "nullable": True}, "sample_rate_hz": {"type": "integer"},
        "channels": {"type": "integer", "minimum": 1}, "hop_seconds_requested": _number(0), "instruments": names,
        "duration_seconds": _number(0), "hop_seconds": _number(0), "window_seconds": _number(0),
        "n_windows": {"type": "integer", "minimum": 1}, "padded": {"type": "boolean"},
        "labels": {"type": "array", "items": {"type": "string", "enum": column_names()}},
        "summary": {"type": "object", "additionalProperties": instrument_summary},
        "windows": _object({
            "start_seconds": {"type": "array", "items": _number(0)}, "end_seconds": {"type": "array", "items": _number(0)},
            "probabilities": {"type": "array", "items": {"type": "array", "items": _number(0, 1)}},
            "decisions": {"type": "array", "items": {"type": "array", "items": {"type": "integer", "enum": [0, 1]}}},
        }),
        "warnings": {"type": "array", "items": {"type": "string"}}, "latency_ms": latency,
        "real_time_factor": _number(0),
        "plot_png_base64": {"type": "string", "format": "byte", "description": "the timeline figure (with plot=1)"},
    }, required=["model", "model_version", "runtime", "arm", "hop_seconds", "n_windows", "summary", "windows",
                 "warnings", "latency_ms"])
    pcm = {
        "type": "object", "additionalProperties": False, "required": ["pcm_base64", "sample_rate"],
        "properties": {
            "pcm_base64": {"type": "string", "format": "byte", "description": "interleaved little-endian PCM, base64"},
            "sample_rate": {"type": "integer", "minimum": MIN_RATE_HZ, "maximum": MAX_RATE_HZ},
            "channels": {"type": "integer", "minimum": 1, "maximum": MAX_CHANNELS, "default": 1},
            "format": {"type": "string", "enum": sorted(PCM_FORMATS), "default": "s16le"},
        },
    }
    feedback_request = {
        "type": "object", "additionalProperties": False, "required": ["prediction_id", "instruments"],
        "properties": {
            "prediction_id": {"type": "string", "minLength": 1},
            "instruments": {"type": "array", "items": {"type": "string", "enum": NAMES + column_names()}},
        },
    }
    scores = _object({
        "n": {"type": "integer"}, "true_positives": {"type": "integer"}, "false_positives": {"type": "integer"},
        "false_negatives": {"type": "integer"}, "precision": _number(0, 1, True), "recall": _number(0, 1, True),
        "f1": _number(0, 1, True),
    })
    arm_report = _object({
        "model": {"type": "string"}, "weight": _number(0, 1), "count": {"type": "integer", "minimum": 0},
        "latency_ms": {"type": "object", "additionalProperties": _number(0, nullable=True)},
        "agreement": {"type": "object"}, "feedback": scores,
    })
    return {
        "Error": _object({"error": {"type": "string"}}),
        "InstrumentResult": result,
        "Window": window,
        "PredictResponse": predict,
        "CompareResponse": compare,
        "AnalyzeResponse": analyze,
        "PcmRequest": pcm,
        "FeedbackRequest": feedback_request,
        "FeedbackResponse": _object({"prediction_id": {"type": "string"}, "instruments": {"type": "array", "items": {"type": "string"}},
                                     "recorded": {"type": "boolean"}}),
        "ModelsResponse": _object({"models": {"type": "array", "items": {"type": "object"}}, "ab": {"type": "object"}}),
        "ReportResponse": _object({"arms": {"type": "object", "additionalProperties": arm_report}, "notes": {"type": "string"}}),
        "CompatAnswer": {
            "type": "array", "minItems": 1, "maxItems": 1,
            "items": _object({
                "All_instruments": {"type": "array", "items": {"type": "string", "enum": column_names()}},
                "instruments_predict": {"type": "array", "items": {"type": "string", "enum": column_names()}},
                "model_prediction": {"type": "array", "items": {"type": "boolean"}, "minItems": 11, "maxItems": 11},
                "time predic": _number(0),
            }),
        },
    }


def _audio_body(field_name: str = "audio") -> dict[str, Any]:
    binary = {"type": "string", "format": "binary"}
    content: dict[str, Any] = {
        "multipart/form-data": {"schema": {"type": "object", "required": [field_name], "properties": {field_name: binary}}},
    }
    content.update({media: {"schema": binary} for media in AUDIO_TYPES})
    content["application/json"] = {"schema": _ref("PcmRequest")}
    return {"required": True, "content": content,
            "description": "a clip: WAV, FLAC, OGG or MP3 file (multipart or raw body), or base64 PCM in JSON"}


def _access_answer(code: int) -> dict[str, Any]:
    description, headers = ACCESS_ANSWERS[code]
    answer = _json(_ref("Error"), description)
    if headers:
        answer["headers"] = headers
    return answer


def route_roles(app: Flask) -> dict[tuple[str, str], str]:
    """(path, lower-case method) -> the least role that may call it, from the app's routes and serving/auth.py."""
    return {(rule.rule, method.lower()): endpoint_role(rule.endpoint) for rule in app.url_map.iter_rules()
            for method in rule.methods - {"HEAD", "OPTIONS"}}


def add_access(paths: dict[str, Any], roles: dict[tuple[str, str], str], keys_on: bool, limited_roles: set[str],
               shared_store: bool) -> None:
    """Mark every operation that needs a key: security and 401 with keys on (403 too where it needs an admin); 429
    where a role that may call it has a budget; 503 where its budget lives in a shared store."""
    for path, item in paths.items():
        for method, operation in item.items():
            needed = roles.get((path, method), ADMIN)  # as serving/auth.py: a route missing there needs an admin
            if needed == OPEN:
                continue
            responses = operation["responses"]
            callers = {role for role in ROLES if ROLE_RANK[role] >= ROLE_RANK[needed]} if keys_on else {OPEN}
            if keys_on:
                operation["security"] = [{"bearer": []}, {"apiKey": []}]
                responses["401"] = _access_answer(401)
                if needed == ADMIN:
                    responses["403"] = _access_answer(403)
            if callers & limited_roles:
                responses["429"] = _access_answer(429)
                if shared_store:
                    responses["503"] = _access_answer(503)


def openapi_document(model_names: list[str], arm_names: list[str], max_upload_bytes: int,
                     max_analyze_upload_bytes: int) -> dict[str, Any]:
    """The OpenAPI 3.0 document for a server with these models and A/B arms (access as in open mode: add_access
    marks what keys and limits add)."""
    client = {"name": "X-Client-Id", "in": "header", "required": False, "schema": {"type": "string"},
              "description": "sticky A/B assignment: the same id always gets the same arm"}
    model_param = {"name": "model", "in": "query", "required": False,
                   "schema": {"type": "string", "enum": ["ab", *model_names], "default": "ab"},
                   "description": "a loaded model, or 'ab' to let the A/B router choose"}
    key_chars = f"{KEY_CHAR}{{1,{MAX_KEY_CHARS}}}"
    idempotency = {"name": IDEMPOTENCY_HEADER, "in": "header", "required": False,
                   "schema": {"type": "string", "pattern": f'^({key_chars}|"{key_chars}")$'},
                   "description": "one key per logical prediction (e.g. a UUID), bare or as a quoted string; a retry "
                                  "with the same key logs no second row and answers the same prediction_id. Keys are "
                                  "scoped to the client (its API key, or X-Client-Id in open mode)"}
    arm_param = {"name": "arm", "in": "query", "required": False, "schema": {"type": "string", "enum": arm_names},
                 "description": "force an A/B arm (only with model=ab)"}
    audio_errors = (400, 413, 415)
    logged_errors = (*audio_errors, 422)
    hop_param = {"name": "hop", "in": "query", "required": False,
                 "schema": {"type": "number", "minimum": MIN_HOP_SECONDS, "maximum": MAX_HOP_SECONDS,
                            "default": DEFAULT_HOP_SECONDS},
                 "description": "seconds between window starts (rounded to whole STFT frames; the answer says the hop used)"}
    plot_param = {"name": "plot", "in": "query", "required": False, "schema": {"type": "boolean", "default": False},
                  "description": "also answer the timeline figure as a base64 PNG"}
    paths = {
        "/RNA": {
            "get": {"summary": "usage of the reference API", "responses": {"200": _json({"type": "object"}, "usage")}},
            "post": {"summary": "the reference API: a list with one object of four keys",
                     "parameters": [idempotency], "requestBody": _audio_body("file1"),
                     "responses": {"200": _json(_ref("CompatAnswer"), "the reference answer"), **_errors(*logged_errors)}},
        },
        "/v2/predict": {"post": {
            "summary": "instruments in one clip, from one model or the A/B router", "parameters": [model_param, arm_param, client, idempotency],
            "requestBody": _audio_body(),
            "responses": {"200": _json(_ref("PredictResponse"), "the prediction"), **_errors(400, 404, 413, 415, 422)},
        }},
        "/v2/compare": {"post": {
            "summary": "every loaded model on the same clip", "parameters": [client, idempotency], "requestBody": _audio_body(),
            "responses": {"200": _json(_ref("CompareResponse"), "side-by-side predictions"), **_errors(*logged_errors)},
        }},
        "/v2/analyze": {"post": {
            "summary": "the per-window timeline of a recording of any length (not logged as a prediction)",
            "description": f"Bodies up to {max_analyze_upload_bytes:,} bytes; files are decoded as a stream.",
            "parameters": [model_param, arm_param, client, hop_param, plot_param], "requestBody": _audio_body(),
            "responses": {"200": _json(_ref("AnalyzeResponse"), "the timeline"), **_errors(400, 404, 413, 415, 501)},
        }},
        "/v2/models": {"get": {"summary": "the loaded models", "responses": {"200": _json(_ref("ModelsResponse"), "models")}}},
        "/v2/feedback": {"post": {
            "summary": "the true instruments of a logged prediction",
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("FeedbackRequest")}}},
            "responses": {"200": _json(_ref("FeedbackResponse"), "recorded"), **_errors(400, 404, 413, 415)},
        }},
        "/v2/ab/report": {"get": {"summary": "A/B arms: counts, latency, agreement, feedback scores",
                                  "responses": {"200": _json(_ref("ReportResponse"), "the report")}}},
        "/openapi.json": {"get": {"summary": "this document", "responses": {"200": _json({"type": "object"}, "OpenAPI 3")}}},
        "/": {"get": {"summary": "the web page: upload or record a clip, compare the arms, send feedback", "responses": {
            "200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/healthz": {"get": {"summary": "alive", "responses": {"200": _json({"type": "object"}, "alive")}}},
        "/readyz": {"get": {"summary": "models loaded", "responses": {"200": _json({"type": "object"}, "ready"), **_errors(503)}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
            "200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "instrument-id", "version": "2",
            "description": "Which of the 11 MusicNet instruments play in a clip. Uploads up to "
                           f"{max_upload_bytes:,} bytes; every error is JSON {{\"error\": \"...\"}}.",
        },
        "paths": paths,
        "components": {"schemas": _schemas()},
    }


@bp.get("/openapi.json")
def openapi_json():
    """The document for this server's models, arms, keys and limits."""
    current = current_app.extensions["instrument_id"]
    document = openapi_document(list(current.models), list(current.router.by_name), current.config.max_upload_bytes,
                                current.config.max_analyze_upload_bytes)
    limiter = current.limiter
    limited = {role for role in (OPEN, *ROLES) if limiter is not None and limiter.limits(role)}
    add_access(document["paths"], route_roles(current_app), current.keys is not None, limited,
               limiter is not None and limiter.shared())
    if current.keys is not None:
        document["components"]["securitySchemes"] = SECURITY_SCHEMES
    return jsonify(document)
