"""The real `instrument-id serve` as a subprocess, and a client that retries when a worker dies under it."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

RETRY_PAUSE_SECONDS = 0.1


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_process(process: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM, wait up to timeout_s, then SIGKILL: a test's server never outlives it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def call(url: str, body: bytes | None = None, headers: dict | None = None, timeout_s: float = 60) -> tuple[int, dict | str]:
    """(status, JSON body or text) of one request; connection failures raise (OSError, HTTPException)."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            status, raw, kind = response.status, response.read(), response.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        status, raw, kind = exc.code, exc.read(), exc.headers.get_content_type()
    return status, json.loads(raw) if kind == "application/json" else raw.decode()


def call_retrying(url: str, body: bytes | None = None, headers: dict | None = None, attempts: int = 50) -> tuple[int, dict | str, int]:
    """call(), again after a reset or refused connection (a worker killed mid-request); (status, body, failures)."""
    for failures in range(attempts):
        try:
            status, payload = call(url, body, headers)
            return status, payload, failures
        except (OSError, http.client.HTTPException):
            time.sleep(RETRY_PAUSE_SECONDS)
    raise AssertionError(f"{url}: no answer in {attempts} attempts")


def metric_total(metrics_text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples (every label set that includes labels) in Prometheus text."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{key}="{value}"' in line for key, value in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def worker_pids(master_pid: int) -> set[int]:
    """The gunicorn master's child processes (its workers)."""
    try:
        children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    except OSError:
        return set()
    return {int(pid) for pid in children}


class Server:
    """A running `instrument-id serve`: base URL, process, stderr log."""

    def __init__(self, base: str, process: subprocess.Popen, stderr_path: Path) -> None:
        self.base, self.process, self.stderr_path = base, process, stderr_path

    @property
    def port(self) -> int:
        """The port it listens on, from its base URL."""
        return int(self.base.rsplit(":", 1)[1])

    def log_tail(self) -> str:
        return self.stderr_path.read_text()[-3000:]

    def metrics(self, headers: dict | None = None) -> str:
        status, text = call(f"{self.base}/metrics", headers=headers)
        assert status == 200
        return text

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        """Poll /readyz until 200 (the models load before the workers fork)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_tail()
            try:
                if call(f"{self.base}/readyz", timeout_s=5)[0] == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.5)
        raise AssertionError(f"server not ready after {timeout_s} s: {self.log_tail()}")


@contextmanager
def running_serve(config_path: Path, log_dir: Path, workers: int = 2, name: str = "serve",
                  extra_args: tuple[str, ...] = ()) -> Iterator[Server]:
    """Start `instrument-id serve --workers N [extra_args]` on a free port, wait until ready; stop it on the way out."""
    port = free_port()
    stderr_path = log_dir / f"{name}.err"
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "instrument_id.cli", "serve", "--workers", str(workers), "--port", str(port),
             "--config", str(config_path), *extra_args],
            stdout=subprocess.DEVNULL, stderr=stderr,
        )
    server = Server(f"http://127.0.0.1:{port}", process, stderr_path)
    try:
        server.wait_ready()
        yield server
    finally:
        stop_process(process, 60)
