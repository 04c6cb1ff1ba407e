"""Drop the info and warning lines native libraries write straight to stderr; keep their errors.

MediaPipe's C++ graph (absl logging) and TensorFlow Lite write lines such as ``INFO: Created TensorFlow Lite
XNNPACK delegate for CPU.`` and ``W0000 00:00:17.5  13983 inference_feedback_manager.cc:114] ...`` to file
descriptor 2, where ``--quiet`` cannot reach them: the wheels read neither ``GLOG_minloglevel`` nor
``TF_CPP_MIN_LOG_LEVEL``, and no Python call sets their level. Inside :func:`quiet_native_logs`, descriptor 2 is
a pipe whose reader passes every other line (errors, fatal checks, anything it does not know) on at once, while
Python's own ``sys.stderr`` (progress bars, warnings) keeps writing to the terminal directly. A Python exception
raised inside propagates unchanged, after descriptor 2 is restored.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

from emimic.features.ledger import write_all

# TFLite's minimal logger (``INFO: ``, ``WARNING: ``, absl's ``WARNING: All log messages before
# absl::InitializeLog() ...``) and absl/glog info and warning lines (``W0000 00:00:1795719504.73  13983 file.cc:114]
# ``, glog's ``W20231107 20:04:23.74 377746 file.cc:168] ``). Their error and fatal lines do not match.
_CHATTER = re.compile(rb"(?:INFO|WARNING): |[IW]\d{4,8} [\d:.]+ +\d+ \S+:\d+\] ")
# How long leaving waits for the reader to pass on the last lines; longer only when a process started inside
# still holds the pipe (the reader then forwards its lines until it exits).
_DRAIN_SECONDS = 5.0


def _forward(pipe: int, terminal: int) -> None:
    """Copy the lines arriving on ``pipe`` to ``terminal`` as they come, less the chatter, until no writer is left."""
    with open(pipe, "rb", closefd=True) as lines, io.FileIO(terminal, "wb", closefd=False) as out:
        for line in lines:
            if not _CHATTER.match(line):
                write_all(out, line)


def _writes_to_fd2(stream: TextIO | None) -> bool:
    """Whether ``stream`` is a plain text file on descriptor 2 (not pytest's capture, not a notebook's stream)."""
    try:
        return type(stream) is io.TextIOWrapper and stream.fileno() == 2
    except (OSError, ValueError):
        return False


class _Filter:
    """Descriptor 2 through the chatter filter while at least one thread is inside: the first in installs it, the
    last out removes it (two threads each saving and restoring descriptor 2 would leave it on a dead pipe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inside = 0
        # A lasting duplicate of what descriptor 2 was: never closed, so a thread still holding the Python stream
        # over it (a progress bar refreshing) never writes to a closed or reused descriptor.
        self._terminal: int | None = None
        self._stream: io.TextIOWrapper | None = None
        self._python_stderr: TextIO | None = None
        self._reader: threading.Thread | None = None

    def enter(self) -> None:
        with self._lock:
            if self._inside == 0:
                self._install()  # counted only once in place: one that raised leaves nothing to remove
            self._inside += 1

    def leave(self) -> None:
        with self._lock:
            self._inside -= 1
            if self._inside == 0 and self._reader is not None:
                self._remove()

    def _install(self) -> None:
        if sys.stderr is not None:
            sys.stderr.flush()  # what Python wrote so far goes out before native lines that follow it
        try:
            if self._terminal is None:
                self._terminal = os.dup(2)
            else:
                os.dup2(2, self._terminal)  # descriptor 2 may point elsewhere since the last time
        except OSError:  # no descriptor 2 (a daemon): nothing to filter
            return
        pipe, writer = os.pipe()
        self._reader = threading.Thread(target=_forward, args=(pipe, self._terminal), name="emimic-native-stderr",
                                        daemon=True)
        self._reader.start()
        os.dup2(writer, 2)
        os.close(writer)
        if _writes_to_fd2(sys.stderr):
            self._python_stderr, sys.stderr = sys.stderr, self._python_stream(sys.stderr)

    def _python_stream(self, like: io.TextIOWrapper) -> io.TextIOWrapper:
        if self._stream is None:
            raw = io.FileIO(self._terminal, "wb", closefd=False)
            self._stream = io.TextIOWrapper(raw, encoding=like.encoding, errors=like.errors, line_buffering=True)
        return self._stream

    def _remove(self) -> None:
        if self._python_stderr is not None:
            sys.stderr.flush()
            sys.stderr, self._python_stderr = self._python_stderr, None
        os.dup2(self._terminal, 2)  # closes the pipe's last write end here: the reader meets its end
        self._reader.join(_DRAIN_SECONDS)
        self._reader = None


_FILTER = _Filter()


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Inside, native info and warning lines on descriptor 2 are dropped and every other line passes at once."""
    _FILTER.enter()
    try:
        yield
    finally:
        _FILTER.leave()
