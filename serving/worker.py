"""The buffered gunicorn worker, `instrument-id serve`'s default: sync workers' one-request-at-a-time compute, but
every connection's request is read to its end, with a deadline and a size cap, before the app sees it.

A sync worker reads the request itself, blocking: a client that announces a body and sends a byte a second holds
the worker until it finishes, and a handful of them hold every worker. This worker multiplexes reading: one
selector holds every connection it has accepted (up to max_connections_per_worker), feeds each one's bytes to
a PendingRequest (serving/request_buffer.py), and runs the app (SyncWorker.handle_request, gunicorn's own parser
over the buffered bytes) only for requests that have fully arrived. A request still incomplete at its deadline
is answered 408 with a JSON error and closed; one that declares or sends too much, 413 or 431. Each refusal is
counted (status, reason) in /metrics, as the app's own answers are, and so is a request gunicorn's parser refuses
afterwards (a malformed request line 400, a header field past its 8 kB 431). Closing lingers in the selector
(FIN, then drain until the client closes), never blocking the worker as a slow reader could.

Fast clients see what sync workers gave them: a worker only accepts when it has no complete request waiting, and
reads a new connection at once (on loopback the request is already there), so requests still go to the first
free worker. SIGTERM stops accepting; requests already accepted are read and answered, up to the graceful timeout.
"""

from __future__ import annotations

import errno
import os
import re
import selectors
import socket
import time
from collections import deque
from typing import Any, Callable

from gunicorn import http, util
from gunicorn.workers.sync import SyncWorker

from serving.request_buffer import PendingRequest, ReadLimits, Refusal, refusal_response

RECV_BYTES = 256 * 1024
RECVS_PER_TURN = 16
LINGER_SECONDS = 2.0  # how long a closed connection may take to read its answer and close its side
MAX_DRAIN_BYTES = 64 * 1024
SELECT_SECONDS = 1.0  # the longest wait between heartbeats to the master
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
CAMEL_WORD = re.compile(r"(?<!^)(?=[A-Z])")  # LimitRequestHeaders -> limit_request_headers, a refusal reason


class Connection:
    """An accepted client socket, the listener it came from, and its request as read so far."""

    def __init__(self, sock: socket.socket, addr: Any, listener: socket.socket, request: PendingRequest) -> None:
        self.sock, self.addr, self.listener, self.request = sock, addr, listener, request
        self.continued = False


class AnswerStatus:
    """A client socket that keeps the status of the answer sent through it (gunicorn's error handler writes its own)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.status = sock, None

    def sendall(self, data: bytes) -> None:
        """Send, noting the status of the first status line."""
        if self.status is None:
            fields = bytes(data[:32]).split(b" ", 2)
            self.status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None
        self.sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class BufferedWorker(SyncWorker):
    """A gunicorn worker that reads whole requests in a selector before computing one at a time."""

    limits = ReadLimits()  # buffered_worker_class() makes a subclass with the server's limits and refusal counter

    @staticmethod
    def count_refusal(status: int, reason: str) -> None:
        """Count a refused request (the default counts nothing)."""

    def run(self) -> None:
        """Accept, read and answer until stopped (SIGTERM: answer what was accepted, up to the graceful timeout)."""
        self.selector = selectors.DefaultSelector()
        self.reading: dict[socket.socket, Connection] = {}
        self.ready: deque[Connection] = deque()
        self.lingering: dict[socket.socket, float] = {}  # socket -> when to close it anyway
        self.listening = False
        self.selector.register(self.PIPE[0], selectors.EVENT_READ, "wakeup")
        for listener in self.sockets:
            listener.setblocking(False)
        stop_at = None
        try:
            while True:
                self.notify()
                now = time.monotonic()
                if not self.alive and stop_at is None:
                    stop_at = now + max(self.cfg.graceful_timeout - 1.0, 0.0)
                if stop_at is not None and (now >= stop_at or not (self.reading or self.ready)):
                    return
                self._listen(self.alive and len(self.reading) < self.limits.max_connections_per_worker)
                if self.ready:
                    self._serve(self.ready.popleft())
                    continue
                self._poll(now)
                if not self.is_parent_alive():
                    return
        finally:
            for conn in [*self.reading.values(), *self.ready]:
                conn.request.close()
                conn.sock.close()
            for sock in self.lingering:
                sock.close()
            self.selector.close()

    def _listen(self, wanted: bool) -> None:
        """Watch the listeners only while this worker may take another connection."""
        if wanted != self.listening:
            for listener in self.sockets:
                if wanted:
                    self.selector.register(listener, selectors.EVENT_READ, "listener")
                else:
                    self.selector.unregister(listener)
            self.listening = wanted

    def _poll(self, now: float) -> None:
        """Wait for bytes, connections or the next deadline; then refuse what is overdue and close what lingered."""
        deadlines = [c.request.deadline for c in self.reading.values()] + list(self.lingering.values())
        timeout = min([SELECT_SECONDS, *(d - now for d in deadlines)])
        for key, _ in self.selector.select(max(timeout, 0.0)):
            if key.data == "wakeup":
                _drain_pipe(key.fd)  # a signal arrived (gunicorn wakes its workers through this pipe)
            elif key.data == "listener":
                self._accept(key.fileobj)
            elif key.data == "linger":
                self._drain(key.fileobj)
            else:
                self._read(key.data)
        now = time.monotonic()
        for conn in [c for c in self.reading.values() if c.request.deadline <= now]:
            self._refuse(conn, conn.request.overdue(now))
        for sock in [s for s, until in self.lingering.items() if until <= now]:
            self._close(sock)

    def _accept(self, listener: socket.socket) -> None:
        try:
            sock, addr = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another worker took it
        sock.setblocking(False)
        util.close_on_exec(sock)
        conn = Connection(sock, addr, listener, PendingRequest(self.limits, time.monotonic()))
        self.reading[sock] = conn
        self.selector.register(sock, selectors.EVENT_READ, conn)
        self._read(conn)  # a fast client's request is usually here already

    def _read(self, conn: Connection) -> None:
        """Take what the connection has sent (a fast client's body arrives in several segments; a big upload yields
        to the other connections after RECVS_PER_TURN reads)."""
        for _ in range(RECVS_PER_TURN):
            try:
                data = conn.sock.recv(RECV_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:  # the client gave up before its request was whole
                self._forget(conn)
                conn.request.close()
                conn.sock.close()
                return
            try:
                conn.request.feed(data, time.monotonic())
            except Refusal as refusal:
                self._refuse(conn, refusal)
                return
            if conn.request.wants_continue and not conn.continued:
                conn.continued = True
                _send_some(conn.sock, CONTINUE)
            if conn.request.complete:
                self._forget(conn)
                self.ready.append(conn)
                return

    def _forget(self, conn: Connection) -> None:
        """Stop reading a connection (it is complete, refused or gone)."""
        self.reading.pop(conn.sock, None)
        self.selector.unregister(conn.sock)

    def _refuse(self, conn: Connection, refusal: Refusal) -> None:
        """Answer a request the app will not see, and close."""
        self._forget(conn)
        conn.request.close()
        self.log.info("refused %s %s: %s %s", conn.addr, conn.request.path or "-", refusal.status, refusal.message)
        self.count_refusal(refusal.status, refusal.reason)
        _send_some(conn.sock, refusal_response(refusal.status, refusal.message))
        self._linger(conn.sock)

    def _serve(self, conn: Connection) -> None:
        """Run the app on a complete request (as SyncWorker.handle, but parsing the buffered bytes)."""
        sock, req = conn.sock, None
        sock.settimeout(self.limits.read_timeout_seconds)  # a client that never reads its answer cannot hold us
        try:
            req = next(http.get_parser(self.cfg, conn.request.chunks(), conn.addr))
            self.handle_request(conn.listener, req, sock, conn.addr)
        except (StopIteration, http.errors.NoMoreData):
            pass
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, None):
                self.log.exception("Socket error processing request.")
        except BaseException as exc:  # noqa: BLE001 - gunicorn's own handler answers (a parse error is a 400)
            answer = AnswerStatus(sock)
            self.handle_error(req, answer, conn.addr, exc)
            if answer.status is not None and answer.status < 500:  # its parser refused the request: the app never saw it
                self.count_refusal(answer.status, CAMEL_WORD.sub("_", type(exc).__name__).lower())
        finally:
            conn.request.close()
            self._linger(sock)

    def _linger(self, sock: socket.socket) -> None:
        """Half-close (the answer is sent), then read until the client closes, so unread bytes do not reset it."""
        try:
            sock.setblocking(False)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        self.lingering[sock] = time.monotonic() + LINGER_SECONDS
        self.selector.register(sock, selectors.EVENT_READ, "linger")

    def _drain(self, sock: socket.socket) -> None:
        try:
            if len(sock.recv(MAX_DRAIN_BYTES)) > 0:
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        self.lingering.pop(sock, None)
        self.selector.unregister(sock)
        sock.close()


def _send_some(sock: socket.socket, data: bytes) -> None:
    """Send without blocking what fits in the socket buffer (a short answer always does); errors are the client's."""
    try:
        sock.send(data)
    except OSError:
        pass


def _drain_pipe(fd: int) -> None:
    try:
        os.read(fd, 4096)
    except (BlockingIOError, InterruptedError):
        pass


def buffered_worker_class(limits: ReadLimits, count_refusal: Callable[[int, str], None]) -> type[BufferedWorker]:
    """A BufferedWorker subclass with these limits, calling count_refusal(status, reason) for each request it refuses
    (gunicorn takes a worker class; its processes inherit this one)."""
    return type("BufferedWorker", (BufferedWorker,), {"limits": limits, "count_refusal": staticmethod(count_refusal),
                                                      "__doc__": BufferedWorker.__doc__})
