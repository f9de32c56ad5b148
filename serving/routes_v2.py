"""The v2 API: predict (one model or the A/B router), compare (every model on one clip), models, feedback, report.

Predict, compare (and /RNA) take an Idempotency-Key header: a retry with the same key logs no second row and
answers the logged prediction id (serving/idempotency.py).
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np
from flask import Blueprint, current_app, g, jsonify, request

from instrument_id.instruments import INSTRUMENTS, NAME_TO_INDEX, column_names
from model_zoo import ClipPrediction
from serving.ab import ab_report
from serving.auth import charge_audio
from serving.decode import check_json_object, decode_request, read_json_body
from serving.errors import ApiError
from serving.idempotency import KeyedRequest, idempotency_key, keyed_request
from serving.models import ClipAnalysis, ServedModel
from serving.store import PredictionRecord

if TYPE_CHECKING:
    from serving.app import ServingState

bp = Blueprint("v2", __name__, url_prefix="/v2")
AB = "ab"
COLUMN_TO_INDEX = {name: i for i, name in enumerate(column_names())}
FEEDBACK_KEYS = {"prediction_id", "instruments"}


def state() -> "ServingState":
    """The app's loaded models, router, store and metrics."""
    return current_app.extensions["instrument_id"]


def client_id() -> str | None:
    """The client (A/B stickiness, owner of its predictions): the key's client name with keys on, else the
    X-Client-Id header, or None (serving/auth.py sets it)."""
    return g.get("client")


def choose_model(current: "ServingState", model_name: str | None, arm_name: str | None,
                 key: str | None = None) -> tuple[ServedModel, str | None]:
    """(model, arm): a named model (no arm), a named arm, or the A/B router's pick for this client (for a request
    without X-Client-Id, by its Idempotency-Key, so that its retries land on the same arm)."""
    model_name = model_name or AB
    if model_name != AB and arm_name:
        raise ApiError(400, f"ask for either model={model_name} or arm={arm_name}, not both")
    if model_name != AB:
        if model_name not in current.models:
            raise ApiError(404, f"unknown model {model_name!r}; loaded: {', '.join(current.models)} (or 'ab')")
        return current.models[model_name], None
    if arm_name:
        if arm_name not in current.router.by_name:
            raise ApiError(404, f"unknown A/B arm {arm_name!r}; arms: {', '.join(current.router.by_name)}")
        arm = current.router.by_name[arm_name]
    else:
        arm = current.router.assign(client_id() or key)
    return current.models[arm.model], arm.name


def results_list(probabilities: np.ndarray, decisions: np.ndarray) -> list[dict[str, Any]]:
    """One entry per instrument in class order."""
    return [
        {"instrument": inst.name, "program": inst.program, "probability": round(float(p), 6), "decision": bool(d)}
        for inst, p, d in zip(INSTRUMENTS, probabilities, decisions)
    ]


def present(decisions: np.ndarray) -> list[str]:
    """Names of the instruments judged present."""
    return [inst.name for inst, d in zip(INSTRUMENTS, decisions) if d]


def windows_list(result: ClipPrediction, window_seconds: float) -> list[dict[str, Any]]:
    """Per-window results (only worth sending when the clip spans more than one window)."""
    return [
        {
            "start_seconds": round(float(start), 3), "end_seconds": round(float(start) + window_seconds, 3),
            "instruments": present(decisions),
            "probabilities": {inst.name: round(float(p), 6) for inst, p in zip(INSTRUMENTS, probabilities)},
        }
        for start, probabilities, decisions in zip(result.window_start_seconds, result.window_probabilities, result.window_decisions)
    ]


def make_record(model: ServedModel, result: ClipPrediction, analysis: ClipAnalysis, route: str, arm: str | None,
                total_ms: float, keyed: KeyedRequest | None, compare_group: str | None = None) -> PredictionRecord:
    """The log row of one model's prediction (its id derived from the Idempotency-Key when there is one)."""
    return PredictionRecord(
        id=keyed.prediction_id(model.name) if keyed else uuid.uuid4().hex, ts=time.time(), route=route, arm=arm,
        model=model.name, model_version=model.version,
        latency_ms=total_ms, decode_ms=analysis.clip.decode_ms, features_ms=analysis.features_ms, model_ms=result.model_ms,
        probabilities={c: round(float(p), 6) for c, p in zip(column_names(), result.probabilities)},
        instruments=[c for c, d in zip(column_names(), result.decisions) if d],
        request_bytes=analysis.clip.request_bytes, client_id=client_id(), compare_group=compare_group,
        idempotency_key=keyed.key if keyed else None, request_fingerprint=keyed.fingerprint if keyed else None,
    )


def elapsed_ms() -> float:
    """Milliseconds since the request started."""
    return 1e3 * (time.perf_counter() - g.start)


def predict_request(route: str, model_name: str | None, arm_name: str | None, any_file_field: bool = False
                    ) -> tuple[ServedModel, str | None, ClipPrediction, ClipAnalysis, PredictionRecord]:
    """Decode, route, score and log one clip; the log is committed before this returns."""
    current = state()
    key = idempotency_key(request.headers)
    model, arm = choose_model(current, model_name, arm_name, key)
    g.arm, g.model = arm, model.name
    analysis = ClipAnalysis(decode_request(request, current.config.max_analyze_bytes, any_file_field))
    charge_audio(analysis.clip.seconds)
    keyed = keyed_request(current, key, client_id(), route, (model_name, arm_name), analysis.clip)
    result = model.predict(analysis)
    record = make_record(model, result, analysis, route, arm, elapsed_ms(), keyed)
    current.store.log_predictions([record])
    g.prediction_id = record.id
    return model, arm, result, analysis, record


@bp.post("/predict")
def predict():
    """One clip through one model (?model=NAME) or the A/B router (?model=ab, default; ?arm=NAME forces an arm)."""
    model, arm, result, analysis, record = predict_request("/v2/predict", request.args.get("model"), request.args.get("arm"))
    body = {
        "prediction_id": record.id, "model": model.name, "model_version": model.version, "arm": arm,
        "instruments": present(result.decisions), "results": results_list(result.probabilities, result.decisions),
        "clip_seconds": round(analysis.clip.seconds, 3), "n_windows": len(result.window_probabilities),
        "windows": windows_list(result, model.params.window_seconds) if len(result.window_probabilities) > 1 else [],
        "warnings": analysis.warnings(model.params),
        "latency_ms": {
            "decode": round(record.decode_ms, 3), "features": round(record.features_ms, 3),
            "model": round(record.model_ms, 3), "total": round(elapsed_ms(), 3),
        },
    }
    return jsonify(body)


@bp.post("/compare")
def compare():
    """Every loaded model on the same clip (features computed once), side by side, logged under one compare group."""
    current = state()
    key = idempotency_key(request.headers)
    analysis = ClipAnalysis(decode_request(request, current.config.max_analyze_bytes))
    charge_audio(analysis.clip.seconds)
    keyed = keyed_request(current, key, client_id(), "/v2/compare", (), analysis.clip)
    group = keyed.compare_group() if keyed else uuid.uuid4().hex
    scored = [(model, model.predict(analysis)) for model in current.models.values()]
    total_ms = elapsed_ms()
    records = [
        make_record(model, result, analysis, "/v2/compare", current.router.arm_of_model(model.name), total_ms, keyed, group)
        for model, result in scored
    ]
    current.store.log_predictions(records)
    decisions = {model.name: result.decisions for model, result in scored}
    agree = [len({bool(d[j]) for d in decisions.values()}) == 1 for j in range(len(INSTRUMENTS))]
    warnings = sorted({w for model, _ in scored for w in analysis.warnings(model.params)})
    return jsonify({
        "compare_group": group,
        "clip_seconds": round(analysis.clip.seconds, 3),
        "models": [
            {
                "prediction_id": record.id, "model": model.name, "model_version": model.version, "arm": record.arm,
                "instruments": present(result.decisions), "results": results_list(result.probabilities, result.decisions),
                "n_windows": len(result.window_probabilities), "latency_ms": {"model": round(result.model_ms, 3)},
            }
            for (model, result), record in zip(scored, records)
        ],
        "agreement": {
            "all_agree": all(agree),
            "disagreeing": [inst.name for inst, same in zip(INSTRUMENTS, agree) if not same],
            "per_instrument": [
                {"instrument": inst.name, "program": inst.program, "agree": same,
                 "decisions": {name: bool(d[j]) for name, d in decisions.items()}}
                for j, (inst, same) in enumerate(zip(INSTRUMENTS, agree))
            ],
        },
        "warnings": warnings,
        "latency_ms": {
            "decode": round(analysis.clip.decode_ms, 3), "features": round(analysis.features_ms, 3),
            "models": round(sum(result.model_ms for _, result in scored), 3), "total": round(elapsed_ms(), 3),
        },
    })


@bp.get("/models")
def models():
    """The loaded models: version, training fingerprint, test metrics; and the A/B arms."""
    current = state()
    return jsonify({
        "models": [model.describe() for model in current.models.values()],
        "ab": {"arms": [
            {"name": arm.name, "model": arm.model, "weight": share}
            for arm, share in zip(current.router.arms, current.router.shares)
        ]},
    })


def parse_instruments(value: Any) -> list[str]:
    """Names ('violin') or columns ('violin(41)') -> column names in class order; anything else is a 400."""
    if not isinstance(value, list):
        raise ApiError(400, "'instruments' must be a list of instrument names, e.g. [\"violin\", \"cello(43)\"]")
    indices = set()
    for item in value:
        index = COLUMN_TO_INDEX.get(item, NAME_TO_INDEX.get(item)) if isinstance(item, str) else None
        if index is None:
            raise ApiError(400, f"unknown instrument {str(item)[:60]!r}; known: {', '.join(column_names())}")
        indices.add(index)
    return [column_names()[i] for i in sorted(indices)]


@bp.post("/feedback")
def feedback():
    """Record the true instruments of a logged prediction."""
    payload = read_json_body(request)
    check_json_object(payload, FEEDBACK_KEYS, "expected a JSON object", "unknown key")
    prediction_id = payload.get("prediction_id")
    if not isinstance(prediction_id, str) or not prediction_id:
        raise ApiError(400, "'prediction_id' must be the id a prediction answered with")
    if "instruments" not in payload:
        raise ApiError(400, "'instruments' is required: the instruments truly playing ([] for none)")
    labels = parse_instruments(payload["instruments"])
    current = state()
    owner = client_id() if current.keys is not None else None  # open mode: anyone's (bound to 127.0.0.1 by default)
    since_ts = time.time() - current.config.feedback_window_seconds
    given = current.store.add_feedback(prediction_id, labels, owner, since_ts)
    if given is None:  # unknown, too old, or another client's: one answer, so ids cannot be probed
        raise ApiError(404, f"no prediction with id {prediction_id[:80]!r} that this client may give feedback on "
                            f"(feedback is taken for {current.config.feedback_window_seconds / 86400:g} days)")
    return jsonify({"prediction_id": prediction_id, "instruments": labels, "recorded": True, "changes": given - 1})


@bp.get("/ab/report")
def report():
    """Per arm: count, latency percentiles, agreement with the other arms, precision/recall/F1 on feedback (summed
    by the log's database, over every replica that writes to it)."""
    current = state()
    arm_names = [arm.name for arm in current.router.arms]
    return jsonify(ab_report(current.router, current.store.report_aggregates(arm_names)))
