"""TensorFlow's and LiteRT's own log lines, kept off the command line unless `instrument-id --verbose` asks for them.

TensorFlow reads TF_CPP_MIN_LOG_LEVEL (3: none of its C++ log lines) when its libraries load. A few lines come
before that or from code that reads no level: absl's "All log messages before absl::InitializeLog()" and the oneDNN
notice while TensorFlow loads, LiteRT's XNNPACK line when an interpreter starts, the int8 converter's settings.
They are written to file descriptor 2 directly, past sys.stderr, so around those moments `native_logs_filtered`
points the descriptor at a temporary file and afterwards writes back every line that is not one of them. The
import of TensorFlow is caught wherever it happens by an import hook the CLI installs before any command loads.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
import threading
from contextlib import contextmanager
from types import ModuleType
from typing import Any, Iterator

VERBOSE_VARIABLE = "INSTRUMENT_ID_VERBOSE"  # "1": native log lines pass; set by --verbose, inherited by children
TF_LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
# the lines dropped, each matched from the start of a line
NATIVE_LOG_LINES: dict[str, str] = {
    "absl / TensorFlow C++ log line": r"[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.+-]+:\d+\] ",
    "absl before its initialization": r"WARNING: All log messages before absl::InitializeLog\(\) is called",
    "cpu_feature_guard's second line": r"To enable the following instructions: .* rebuild TensorFlow",
    "LiteRT's delegate": r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.",
    "the int8 converter's settings": r"fully_quantize: \d+, inference_type: \d+, input_inference_type: ",
}
NATIVE_LOG_LINE = re.compile("|".join(f"(?:{pattern})" for pattern in NATIVE_LOG_LINES.values()).encode())
_LOCK = threading.RLock()  # one thread moves descriptor 2 at a time; nested blocks keep the outer capture
_depth = 0


def verbose() -> bool:
    """Whether native log lines are let through (--verbose, or INSTRUMENT_ID_VERBOSE=1)."""
    return os.environ.get(VERBOSE_VARIABLE) == "1"


def tf_log_level() -> str:
    """TF_CPP_MIN_LOG_LEVEL for TensorFlow: '0' (everything) when verbose, else '3' (nothing)."""
    return "0" if verbose() else "3"


def native_log_lines(text: bytes) -> list[bytes]:
    """The lines of text (ends kept) that are native log lines."""
    return [line for line in text.splitlines(keepends=True) if NATIVE_LOG_LINE.match(line)]


@contextmanager
def native_logs_filtered() -> Iterator[None]:
    """Within the block, descriptor 2 goes to a temporary file; afterwards its lines but the native ones are written
    back. Does nothing when verbose or when there is no descriptor 2."""
    global _depth
    if verbose():
        yield
        return
    with _LOCK:
        if _depth:
            yield
            return
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no descriptor 2 (a daemon) or a closed sys.stderr: nothing to filter
            yield
            return
        with tempfile.TemporaryFile() as held:
            os.dup2(held.fileno(), 2)
            _depth = 1
            try:
                yield
            finally:
                _depth = 0
                try:
                    sys.stderr.flush()
                except (OSError, ValueError):
                    pass
                os.dup2(saved, 2)
                os.close(saved)
                held.seek(0)
                kept = [line for line in held.read().splitlines(keepends=True) if not NATIVE_LOG_LINE.match(line)]
                if kept:
                    os.write(2, b"".join(kept))


class _FilteredLoader(importlib.abc.Loader):
    """A module's own loader, run inside native_logs_filtered."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = module.__spec__.loader = self.loader  # afterwards it looks as if loaded plainly
        with native_logs_filtered():
            self.loader.exec_module(module)


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: hands the first import of `tensorflow` to _FilteredLoader, then leaves sys.meta_path."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once only, and so the lookup below does not come back here
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _FilteredLoader(spec.loader)
        return spec


def configure(verbose_flag: bool) -> None:
    """Called by the CLI before any command loads: --verbose lets every native line through; otherwise TensorFlow
    logs nothing (unless TF_CPP_MIN_LOG_LEVEL says otherwise) and its import is filtered."""
    if verbose_flag:
        os.environ[VERBOSE_VARIABLE] = "1"
        os.environ[TF_LOG_LEVEL_VARIABLE] = "0"
        return
    os.environ.setdefault(TF_LOG_LEVEL_VARIABLE, tf_log_level())
    if not verbose() and "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())
