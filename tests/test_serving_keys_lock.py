"""Two `instrument-id keys` processes editing one key file at once: each holds the file's lock from reading it to
replacing it, so no added line is lost and no revoked one comes back."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from serving.keys import KeyRing, add_key

KEYS_PER_PROCESS = 40
# each process waits for the go file, then runs `instrument-id keys add` (and, for b, revoke every other key it
# added) in a loop through the CLI's main(); the keys it prints are its stdout, one a line
EDITOR = """
import sys, time
from pathlib import Path
from instrument_id.cli import main

file, prefix, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
while not go.exists():
    time.sleep(0.001)
for i in range({n}):
    assert main(["keys", "add", file, "--role", "client", "--name", f"{{prefix}}{{i}}"]) == 0
    if prefix == "b" and i % 2 == 0:
        assert main(["keys", "revoke", file, f"{{prefix}}{{i}}"]) == 0
""".format(n=KEYS_PER_PROCESS)


def test_two_processes_adding_and_revoking_at_once_lose_no_line(tmp_path):
    path, go = tmp_path / "keys.txt", tmp_path / "go"
    first_key = add_key(path, "admin", "ops")
    editors = [subprocess.Popen([sys.executable, "-c", EDITOR, str(path), prefix, str(go)], text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).parent.parent)
               for prefix in ("a", "b")]
    time.sleep(1.0)  # both have imported the CLI and wait
    go.touch()
    outputs = [editor.communicate(timeout=120) for editor in editors]
    assert [editor.returncode for editor in editors] == [0, 0], [err[-2000:] for _, err in outputs]
    printed = {prefix: out.split() for prefix, (out, _) in zip("ab", outputs)}
    assert [len(keys) for keys in printed.values()] == [KEYS_PER_PROCESS, KEYS_PER_PROCESS]
    ring = KeyRing(path)
    names = {prefix: [ring.identify(key).name if ring.identify(key) else None for key in keys]
             for prefix, keys in printed.items()}
    assert names["a"] == [f"a{i}" for i in range(KEYS_PER_PROCESS)]  # every line a added is there
    assert names["b"] == [None if i % 2 == 0 else f"b{i}" for i in range(KEYS_PER_PROCESS)]  # revoked stay revoked
    assert ring.identify(first_key).name == "ops" and len(ring) == 1 + KEYS_PER_PROCESS + KEYS_PER_PROCESS // 2
    assert path.stat().st_mode & 0o777 == 0o600 and (tmp_path / "keys.txt.lock").stat().st_mode & 0o777 == 0o600
