"""With --json, standard output holds only JSON: whatever else a command prints meanwhile goes to stderr."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any, Iterator, TextIO

from instrument_id.atomic import write_text_atomic

_json_stream: TextIO | None = None  # the real stdout while json_only() is active


@contextlib.contextmanager
def json_only(enabled: bool) -> Iterator[None]:
    """While enabled, print() goes to stderr and only print_json() reaches stdout."""
    global _json_stream
    if not enabled or _json_stream is not None:  # off, or already on (stdout is stderr by now: keep the real one)
        yield
        return
    _json_stream = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _json_stream = None


def data_stream() -> TextIO:
    """Where a command's results go: standard output (the real one, inside json_only)."""
    return _json_stream or sys.stdout


def print_json(value: Any) -> None:
    """One JSON document on its own line on standard output (the real one, inside json_only)."""
    stream = data_stream()
    stream.write(json.dumps(value) + "\n")
    stream.flush()


def publish(result: dict[str, Any], markdown_text: str, out_dir: Any, stem: str, as_json: bool) -> None:
    """A study's figures: written as out_dir/stem.json and stem.md (atomically) when out_dir is given, then printed
    as the JSON object (as_json) or the Markdown."""
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / f"{stem}.json", json.dumps(result, indent=2) + "\n")
        write_text_atomic(out / f"{stem}.md", markdown_text)
    print_json(result) if as_json else print(markdown_text)
