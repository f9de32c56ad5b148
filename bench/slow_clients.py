"""Slow clients for `bench serve --slow-clients N`: connections that announce a clip-sized body and then trickle it
a byte a second (half of them) or stop after a few bytes (the other half), each reopened as soon as the server
closes it, so N stay open however the server treats them. What the server answered them is counted.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from typing import Any

TRICKLE_SECONDS = 1.0  # one body byte per connection per second
STALL_AFTER_BYTES = 100  # a stalling connection sends this much body, then nothing
CONNECT_TIMEOUT_SECONDS = 5.0


class SlowClients:
    """`count` slow connections to host:port POSTing to `route`, kept open in a thread while the context lasts."""

    def __init__(self, host: str, port: int, route: str, body: bytes, count: int) -> None:
        self.host, self.port, self.route, self.body, self.count = host, port, route, body, count
        self.selector = selectors.DefaultSelector()
        self.sent: dict[socket.socket, int] = {}  # body bytes sent on each open connection
        self.trickling: set[socket.socket] = set()  # the others have stalled
        self.answers: dict[socket.socket, bytes] = {}
        self.counts = {"opened": 0, "answered_408": 0, "answered_other": 0, "closed_without_answer": 0, "reopen_failed": 0}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="slow-clients", daemon=True)

    def _head(self) -> bytes:
        return (f"POST {self.route} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: audio/wav\r\n"
                f"Content-Length: {len(self.body)}\r\n\r\n").encode()

    def _open(self, index: int) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT_SECONDS)
        sock.sendall(self._head() + (self.body[:STALL_AFTER_BYTES] if index % 2 else b""))
        sock.setblocking(False)
        self.sent[sock] = STALL_AFTER_BYTES if index % 2 else 0
        if index % 2 == 0:
            self.trickling.add(sock)
        self.answers[sock] = b""
        self.selector.register(sock, selectors.EVENT_READ, index)
        self.counts["opened"] += 1

    def _closed(self, sock: socket.socket, index: int) -> None:
        """Count what the server answered before closing, and open a replacement."""
        answer = self.answers.pop(sock)
        key = "closed_without_answer" if not answer else "answered_408" if answer.startswith(b"HTTP/1.1 408") else "answered_other"
        self.counts[key] += 1
        self.selector.unregister(sock)
        self.sent.pop(sock)
        self.trickling.discard(sock)
        sock.close()
        if not self.stop.is_set():
            try:
                self._open(index)
            except OSError:
                self.counts["reopen_failed"] += 1

    def _run(self) -> None:
        next_trickle = time.monotonic()
        while not self.stop.is_set():
            for key, _ in self.selector.select(max(next_trickle - time.monotonic(), 0.0)):
                try:
                    data = key.fileobj.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    self.answers[key.fileobj] += data
                else:
                    self._closed(key.fileobj, key.data)
            if time.monotonic() >= next_trickle:
                next_trickle += TRICKLE_SECONDS
                for sock in self.trickling:
                    try:
                        self.sent[sock] += sock.send(self.body[self.sent[sock]:self.sent[sock] + 1])
                    except OSError:
                        pass  # a full buffer, or the server closed it (the selector sees that next)

    def __enter__(self) -> "SlowClients":
        for index in range(self.count):
            self._open(index)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()
        for sock in list(self.sent):
            self.selector.unregister(sock)
            sock.close()
        self.selector.close()

    def figures(self) -> dict[str, int]:
        """Connections opened, and how the server ended those it closed."""
        return {**self.counts, "open_now": len(self.sent)}
