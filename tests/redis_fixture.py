"""A private Redis server for the tests: `redis-server` on a free 127.0.0.1 port, its files in the test's tmp_path.

Skipped, saying why, only where redis-server or the redis client cannot be had (scripts/setup.sh installs the
server, the serve extra `limits[redis]` the client). Nothing is saved to disk; the server is stopped after the test.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from serve_process import free_port, stop_process

START_TIMEOUT_SECONDS = 20.0
START_ATTEMPTS = 5  # a free port can be taken by another process before redis-server binds it


def redis_answers(port: int) -> bool:
    """Whether a Redis server on 127.0.0.1:port answers PING (RESP inline command)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def private_redis(folder: Path) -> Iterator[str]:
    """Start redis-server with its log in folder; yield its redis:// URL; stop it on the way out."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server; scripts/setup.sh installs it)")
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "redis.log"
    for _ in range(START_ATTEMPTS):
        port = free_port()
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", "",
             "--appendonly", "no", "--logfile", str(log), "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while process.poll() is None and not redis_answers(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process.poll() is None and redis_answers(port):
            break
        process.kill()
        process.wait()
    else:
        tail = log.read_text()[-2000:] if log.is_file() else ""
        raise AssertionError(f"redis-server did not start in {START_ATTEMPTS} attempts: {tail}")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(process, 10)


@pytest.fixture
def redis_url(tmp_path):
    """The URL of a Redis server of this test's own, with nothing in it."""
    pytest.importorskip("redis", reason="the redis client is not installed (pip install 'instrument-id[serve]')")
    with private_redis(tmp_path / "redis") as url:
        yield url
