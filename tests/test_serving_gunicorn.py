"""`instrument-id serve` for real: gunicorn workers, concurrent clients, a graceful stop, nothing lost in the log."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("gunicorn")
pytest.importorskip("ai_edge_litert.interpreter")

from serving_fixture import app_config, encode, folders, music_clip, needs_training, pcm_json  # noqa: E402,F401 (fixtures)

pytestmark = needs_training


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _post(url: str, body: bytes, headers: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _wait_ready(base: str, process: subprocess.Popen, stderr_path, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, stderr_path.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"server not ready after {timeout_s} s: {stderr_path.read_text()[-3000:]}")


def test_gunicorn_loses_no_prediction_under_concurrency_or_a_graceful_stop(folders, tmp_path):
    """`instrument-id serve --workers 2`: 200 concurrent predictions, then SIGTERM while more are in flight; the
    log holds exactly the ids that were answered 200, /metrics sums both workers, and the server exits 0."""
    config_path = tmp_path / "serve.json"
    config_path.write_text(json.dumps(app_config(folders, tmp_path / "log.sqlite")))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    stderr_path = tmp_path / "serve.err"
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "instrument_id.cli", "serve", "--workers", "2", "--port", str(port), "--config", str(config_path)],
            stdout=subprocess.DEVNULL, stderr=stderr,
        )
    try:
        _wait_ready(base, process, stderr_path)
        clips = [encode(music_clip(seconds, seed=i), 44100, "WAV", "PCM_16") for i, seconds in enumerate((0.5, 1.0, 2.5))]
        pcm = json.dumps(pcm_json(music_clip(0.7, rate_hz=16000, channels=2), 16000, "s16le")).encode()

        def one(i: int) -> tuple[int, dict]:
            if i % 4 == 3:
                return _post(f"{base}/v2/predict?model=rf", pcm, {"Content-Type": "application/json"})
            return _post(f"{base}/v2/predict", clips[i % 3], {"Content-Type": "audio/wav", "X-Client-Id": f"c{i % 50}"})

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            burst = list(pool.map(one, range(200)))
        assert [status for status, _ in burst] == [200] * 200
        answered = {body["prediction_id"] for _, body in burst}
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        counted = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                      if line.startswith("instrument_id_http_requests_total{") and 'route="/v2/predict"' in line and 'status="200"' in line)
        assert counted == 200  # both workers' counters, through the multiprocess collector

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(one, i) for i in range(48)]
            next(concurrent.futures.as_completed(futures))
            process.send_signal(signal.SIGTERM)
            late = []
            for future in futures:
                try:
                    late.append(future.result())
                except OSError:  # refused or reset once the server stopped listening
                    pass
        assert process.wait(timeout=60) == 0
        answered |= {body["prediction_id"] for status, body in late if status == 200}
        assert len(answered) > 200
        with sqlite3.connect(tmp_path / "log.sqlite") as connection:
            assert {row[0] for row in connection.execute("SELECT id FROM predictions")} == answered
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
