"""`instrument-id keys`: add a key to a key file of `serve --api-keys` (printed once, only its hash kept), or revoke one.

A running server reads the file again on SIGHUP (kill -HUP <gunicorn master pid>): rotate a client's key by
revoking it, adding a new one under the same name, and sending SIGHUP.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from serving.keys import ROLES, add_key, revoke_key


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `instrument-id keys add|revoke`."""
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="make a key, append its hash to FILE (created mode 0600) and print the key once")
    add.add_argument("file", type=Path, help="the key file")
    add.add_argument("--role", choices=ROLES, required=True,
                     help="client: predict, analyze, compare, feedback on its own predictions; admin: also the A/B "
                          "report, /metrics and /v2/models")
    add.add_argument("--name", required=True, help="the client's name (A/B arm, feedback owner, rate limits, log)")
    revoke = sub.add_parser("revoke", help="remove a client's key from FILE")
    revoke.add_argument("file", type=Path, help="the key file")
    revoke.add_argument("name", help="the client whose key to remove")


def run(args: argparse.Namespace) -> int:
    """Add or revoke one key; the new key goes to stdout alone, the note to stderr."""
    import sys

    if args.action == "add":
        key = add_key(args.file, args.role, args.name)
        print(key, flush=True)
        print(f"added {args.role} key for {args.name} to {args.file}; it is shown only now. A running server takes "
              "it on SIGHUP.", file=sys.stderr)
        return 0
    revoke_key(args.file, args.name)
    print(f"revoked the key of {args.name} in {args.file}; a running server drops it on SIGHUP.", file=sys.stderr)
    return 0
