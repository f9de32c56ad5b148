"""The reference-style server that `bench serve` measures ours against: Flask's development server, librosa
features (one librosa call per feature) and Keras `model.predict`, answering POST /RNA as the reference did.

Bench-only code, started as a subprocess: `python -m bench.serve_baseline --model-dir MLP_FOLDER --port P`.
It lives in bench/ because it uses the librosa reference features (train/), which serving/ may not import.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from instrument_id.audio import frame_windows
from instrument_id.errors import InstrumentIdError
from instrument_id.instruments import column_names


def create_baseline_app(model_dir: Path) -> Any:
    """The Flask app: POST /RNA (the reference's four keys, in a one-item list) and GET /readyz."""
    import librosa
    from flask import Flask, jsonify, request

    from model_zoo.zoo import load_model
    from train.librosa_reference import librosa_features

    zoo = load_model(model_dir)
    if zoo.kind != "keras":
        raise InstrumentIdError(f"{model_dir}: the baseline serves a Keras MLP folder, this one holds a {zoo.kind} model")
    keras_model, pipeline, params = zoo.model, zoo.pipeline, zoo.params
    keras_model.predict(np.zeros((1, pipeline.n_components), dtype=np.float32), verbose=0)  # build predict_function once
    columns = column_names()
    app = Flask(__name__)

    @app.get("/readyz")
    def readyz():
        return jsonify({"status": "ready", "model": zoo.version})

    @app.post("/RNA")
    def predict():
        start = time.perf_counter()
        upload = next(iter(request.files.values()), None)
        data = upload.read() if upload is not None else request.get_data()
        try:
            y, _ = librosa.load(io.BytesIO(data), sr=params.sample_rate_hz, mono=True)  # (samples,)
        except Exception as exc:  # the reference answered any unreadable upload with a 400
            return jsonify({"error": f"cannot read the audio ({exc})"}), 400
        windows = frame_windows(y, params)  # (n_windows, window_samples)
        X = np.stack([librosa_features(window, params) for window in windows])  # (n_windows, 26)
        probabilities = keras_model.predict(pipeline.transform(X), verbose=0).max(axis=0)  # (n_windows, 11) -> (11,)
        decisions = pipeline.decide(probabilities[None, :])[0]  # (11,)
        return jsonify([{
            "All_instruments": columns,
            "instruments_predict": [c for c, d in zip(columns, decisions) if d],
            "model_prediction": [bool(d) for d in decisions],
            "time predic": round(time.perf_counter() - start, 6),
        }])

    return app


def main(argv: list[str] | None = None) -> int:
    """Load the MLP folder and serve it with app.run(threaded=True) until stopped."""
    parser = argparse.ArgumentParser(prog="python -m bench.serve_baseline", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="a Keras MLP model folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")  # as `instrument-id` does, so BLAS settings are not what differs
    except ImportError:
        pass
    try:
        app = create_baseline_app(args.model_dir)
    except InstrumentIdError as exc:
        print(f"bench.serve_baseline: error: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request: the bench reads no access log
    print(f"baseline serving {args.model_dir} on http://{args.host}:{args.port}", flush=True)
    app.run(host=args.host, port=args.port, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
