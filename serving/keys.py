"""API keys: a file of hashed keys with a role and a client name each, read at start and reloaded on SIGHUP.

One key per line, fields separated by spaces; blank lines and lines starting with '#' are skipped:

    # role   client name   sha256 of the key
    client   studio-a      sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    admin    ops           sha256:...

Only the sha256 of a key is stored, so the file gives no key away; `instrument-id keys add` makes a key, appends
its line and prints the key once. `keys add` and `keys revoke` hold an exclusive fcntl lock on FILE.lock (a file
beside the key file that, unlike it, is never replaced) from reading the file to replacing it, so two at once never
lose a line. A presented key is hashed and compared with every stored hash in constant time
(hmac.compare_digest, no early exit), so the time of an answer says nothing about how close a guess was.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from instrument_id.errors import InstrumentIdError
from serving.errors import LOGGER

ROLES = ("client", "admin")  # admin may do all a client may, and read the report, the metrics and the models
ROLE_RANK = {"open": 0, "client": 1, "admin": 2}
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
HASH_PREFIX = "sha256:"
KEY_PREFIX = "iid_"
KEY_BYTES = 32  # 256 random bits
HEADER_COMMENT = "# instrument-id API keys: role, client name, sha256 of the key (instrument-id keys add/revoke)\n"


@dataclass(frozen=True)
class ApiKey:
    """One key's entry: who holds it (the client name), what it may do (role), and the sha256 of the key."""

    role: str
    name: str
    digest: bytes  # 32 bytes


def hash_key(key: str) -> bytes:
    """The sha256 digest of a presented key."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def _parse_line(path: Path, number: int, line: str) -> ApiKey | None:
    """The entry of one line (None for blank and comment lines); anything else malformed raises, naming the line."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    where = f"{path}:{number}"
    fields = text.split()
    if len(fields) != 3:
        raise InstrumentIdError(f"{where}: expected 'ROLE NAME sha256:HEX', got {len(fields)} field(s)")
    role, name, hashed = fields
    if role not in ROLES:
        raise InstrumentIdError(f"{where}: unknown role {role[:20]!r} (roles: {', '.join(ROLES)})")
    if not NAME_PATTERN.fullmatch(name):
        raise InstrumentIdError(f"{where}: client name {name[:70]!r} must be 1-64 letters, digits or ._@- "
                                "(starting with a letter or digit)")
    hex_digest = hashed[len(HASH_PREFIX):] if hashed.startswith(HASH_PREFIX) else ""
    if not re.fullmatch(r"[0-9a-f]{64}", hex_digest):
        raise InstrumentIdError(f"{where}: the third field must be sha256: and 64 lowercase hex digits "
                                "(a key's hash, as `instrument-id keys add` writes it)")
    return ApiKey(role=role, name=name, digest=bytes.fromhex(hex_digest))


def parse_key_text(path: Path, text: str) -> list[ApiKey]:
    """The entries of a key file's text; malformed lines, unknown roles and duplicate names raise, naming the line."""
    keys: list[ApiKey] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        key = _parse_line(path, number, line)
        if key is None:
            continue
        if key.name in first_line:
            raise InstrumentIdError(f"{path}:{number}: client name {key.name!r} is already used on line "
                                    f"{first_line[key.name]}; one name per key, so feedback and limits know the client")
        first_line[key.name] = number
        keys.append(key)
    return keys


def read_key_file(path: str | Path, allow_world_readable: bool = False) -> list[ApiKey]:
    """The entries of a key file; a missing, unreadable, world-readable (unless allowed) or malformed file raises."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InstrumentIdError(f"{path}: key file not found (create one with `instrument-id keys add`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InstrumentIdError(f"{path}: cannot read the key file ({exc})") from None
    if mode & stat.S_IROTH and not allow_world_readable:
        raise InstrumentIdError(f"{path}: the key file is readable by every user (mode {stat.filemode(mode)}); "
                                f"chmod o-r {path}, or pass --allow-world-readable-keys")
    return parse_key_text(path, text)


class KeyRing:
    """The keys of one file, looked up in constant time; reload() swaps in the file's current keys."""

    def __init__(self, path: str | Path, allow_world_readable: bool = False) -> None:
        self.path = Path(path)
        self.allow_world_readable = allow_world_readable
        self._keys = tuple(read_key_file(self.path, allow_world_readable))
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._keys)

    def identify(self, presented: str) -> ApiKey | None:
        """The entry whose hash matches the presented key, or None; every entry is compared, match or not."""
        digest = hash_key(presented)
        found = None
        for key in self._keys:
            if hmac.compare_digest(key.digest, digest):
                found = key
        return found

    def reload(self) -> bool:
        """Read the file again; a file that no longer reads or parses keeps the current keys (logged), False."""
        with self._lock:
            try:
                keys = tuple(read_key_file(self.path, self.allow_world_readable))
            except InstrumentIdError as exc:
                LOGGER.error(json.dumps({"event": "keys_reload_failed", "error": str(exc), "kept_keys": len(self._keys)}))
                return False
            self._keys = keys
        LOGGER.info(json.dumps({"event": "keys_reloaded", "path": str(self.path), "keys": len(keys)}))
        return True


def _write_private(path: Path, text: str) -> None:
    """Replace path with text atomically, readable by its owner only (0600), keeping no half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


@contextmanager
def locked_for_edit(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on PATH.lock (mode 0600) while the key file is read and replaced; waits for a holder."""
    import fcntl  # POSIX only: `instrument-id keys` edits key files of servers run by gunicorn

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def add_key(path: str | Path, role: str, name: str) -> str:
    """Make a new key for client `name` with `role`, append its hash to the file (created 0600) and return the key."""
    path = Path(path)
    if role not in ROLES:
        raise InstrumentIdError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
    if not NAME_PATTERN.fullmatch(name):
        raise InstrumentIdError(f"client name {name[:70]!r} must be 1-64 letters, digits or ._@- (starting with a letter or digit)")
    with locked_for_edit(path):
        text = path.read_text(encoding="utf-8") if path.exists() else HEADER_COMMENT
        if any(key.name == name for key in parse_key_text(path, text)):
            raise InstrumentIdError(f"{path}: client {name!r} already has a key; revoke it first to rotate")
        key = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
        line = f"{role} {name} {HASH_PREFIX}{hash_key(key).hex()}\n"
        _write_private(path, text + ("" if not text or text.endswith("\n") else "\n") + line)
    return key


def revoke_key(path: str | Path, name: str) -> None:
    """Remove client `name`'s key line from the file (atomically; the file keeps mode 0600)."""
    path = Path(path)
    if not path.is_file():
        raise InstrumentIdError(f"{path}: key file not found")
    with locked_for_edit(path):
        try:
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        except FileNotFoundError:
            raise InstrumentIdError(f"{path}: key file not found") from None
        parse_key_text(path, "".join(lines))  # refuse to rewrite a file that is already broken
        kept = [line for number, line in enumerate(lines, start=1)
                if (key := _parse_line(path, number, line)) is None or key.name != name]
        if len(kept) == len(lines):
            raise InstrumentIdError(f"{path}: no key for client {name!r}")
        _write_private(path, "".join(kept))
