"""A throwaway PostgreSQL server for the tests and `bench report`: initdb in a fresh temporary folder, one free port.

Debian's postgresql package installs the server binaries under /usr/lib/postgresql/VERSION/bin (not on PATH).
PostgreSQL refuses to run as root, so as root the folder is handed to the 'postgres' user (or 'nobody') and
initdb, pg_ctl run through runuser. The server listens on 127.0.0.1 only, trusts local connections, and keeps
its socket in its own folder; it is stopped and the folder removed on exit.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

SUPERUSER = "postgres"
START_TIMEOUT_SECONDS = 60
SERVICE_USERS = ("postgres", "nobody")


class PostgresUnavailable(Exception):
    """No PostgreSQL server can be started here; the message says why and how to install one."""


def _major_version(initdb: str) -> int:
    """15 for /usr/lib/postgresql/15/bin/initdb."""
    name = Path(initdb).parent.parent.name
    return int(name) if name.isdigit() else 0


def server_bindir() -> Path:
    """The folder holding initdb and pg_ctl: on PATH, else the newest /usr/lib/postgresql/*/bin."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major_version)
    if not found:
        raise PostgresUnavailable("PostgreSQL's initdb is not installed (Debian: apt-get install postgresql; "
                                  "scripts/setup.sh installs it)")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _service_user() -> str | None:
    """None when not root; else the account the server runs as."""
    if os.geteuid() != 0:
        return None
    for name in SERVICE_USERS:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise PostgresUnavailable("running as root and neither a 'postgres' nor a 'nobody' account exists to run PostgreSQL")


def _run(command: list[str], user: str | None, log: Path) -> None:
    full = ["runuser", "-u", user, "--", *command] if user else command
    done = subprocess.run(full, capture_output=True, text=True, timeout=START_TIMEOUT_SECONDS + 30)
    if done.returncode != 0:
        tail = log.read_text()[-2000:] if log.is_file() else ""
        raise PostgresUnavailable(f"{Path(command[0]).name} failed ({done.returncode}): {done.stderr[-2000:]}{tail}")


@contextmanager
def temporary_postgres(durable: bool = False) -> Iterator[str]:
    """Start a server; yield the URL of its 'postgres' database as superuser. durable=False turns fsync off
    (the tests and the bench's loading need speed, not crash safety)."""
    bindir, user = server_bindir(), _service_user()
    root = Path(tempfile.mkdtemp(prefix="instrument-id-pg-"))
    data, log = root / "data", root / "server.log"
    if user:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    port = _free_port()
    settings = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200"
    if not durable:
        settings += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    started = False
    try:
        _run([str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync"], user, log)
        _run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", str(START_TIMEOUT_SECONDS),
              "-o", settings, "start"], user, log)
        started = True
        yield f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"
    finally:
        if started:
            _run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], user, log)
        shutil.rmtree(root, ignore_errors=True)


def create_database(server_url: str, name: str) -> str:
    """CREATE DATABASE name on the server; the URL of the new database."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"
