"""The reference API, unchanged for its clients: POST /RNA with an audio file answers its four keys.

The reference service answered a JSON list holding one object (its clients read `r.json()[0]`) and took the
upload in any single file field (its stress test sends `file1`), so both are kept. The model is the A/B router's
pick, and the prediction is logged like any other.
"""

from __future__ import annotations

import time

from flask import Blueprint, g, jsonify

from instrument_id.instruments import column_names
from serving.routes_v2 import predict_request

bp = Blueprint("compat", __name__)
KEYS = ("All_instruments", "instruments_predict", "model_prediction", "time predic")


@bp.get("/RNA")
def usage():
    """A short usage note."""
    return jsonify({
        "usage": "POST /RNA with an audio file (multipart file field, e.g. 'file1' or 'audio', or a raw audio/* body)",
        "answer": "a list with one object: " + ", ".join(repr(key) for key in KEYS),
        "All_instruments": column_names(),
        "v2": "POST /v2/predict gives probabilities, per-window results and timings; see GET /openapi.json",
    })


@bp.post("/RNA")
def predict():
    """The reference answer for one clip."""
    _, _, result, _, _ = predict_request("/RNA", None, None, any_file_field=True)
    columns = column_names()
    answer = {
        "All_instruments": columns,
        "instruments_predict": [c for c, d in zip(columns, result.decisions) if d],
        "model_prediction": [bool(d) for d in result.decisions],
        "time predic": round(time.perf_counter() - g.start, 6),
    }
    return jsonify([answer])
