"""Drop the info and warning lines native libraries write straight to stderr; keep their errors.

MediaPipe's C++ graph (absl logging) and TensorFlow Lite write lines such as ``INFO: Created TensorFlow Lite
XNNPACK delegate for CPU.`` and ``W0000 00:00:17.5  13983 inference_feedback_manager.cc:114] ...`` to file
descriptor 2, where ``--quiet`` cannot reach them: the wheels read neither ``GLOG_minloglevel`` nor
``TF_CPP_MIN_LOG_LEVEL``, and no Python call sets their level. Inside :func:`quiet_native_logs`, descriptor 2 is
a pipe whose reader thread passes every other line (errors, anything it does not know) on as it comes, while
Python's own ``sys.stderr`` (warnings) keeps writing to the terminal directly. A Python exception raised inside
propagates unchanged, after descriptor 2 is restored.

Keep the window short: MediaPipe writes all its chatter while a graph is built and on its first frames (see
emimic.features.vision), and only then is it entered. The reader dies with the process, so a native fatal line
written inside (absl's ``F0000 ... Check failed: ...`` before abort()) may be lost; :mod:`faulthandler`, when enabled
on Python's stderr (``python -X faulthandler``), writes a crash's traceback to the terminal inside. Under a rich
progress bar, ``sys.stderr`` is rich's proxy, left as it is, and the bar's console writes to descriptor 2, which is
no terminal inside: the bar stands still while the window lasts, once per process (a second graph, once more).
"""

from __future__ import annotations

import contextlib
import faulthandler
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
        self._faulthandler_moved = False
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
        """Put the filter in place, or (raising, a Ctrl-C too) leave descriptor 2 and the streams as they were."""
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
        reader = threading.Thread(target=_forward, args=(pipe, self._terminal), name="emimic-native-stderr",
                                  daemon=True)
        try:
            try:
                reader.start()  # from here the reader owns the read end: it closes it when no writer is left
                self._reader = reader
                os.dup2(writer, 2)
            finally:
                os.close(writer)  # descriptor 2 is the pipe's only write end now (or, raising, none is left)
            python_stderr = getattr(sys.stderr, "rich_proxied_file", sys.stderr)  # under a progress bar, rich's proxy
            if faulthandler.is_enabled() and _writes_to_fd2(python_stderr):
                # Enabled on Python's stderr (its default): a crash's traceback would go into the pipe, whose reader
                # dies with the process before passing it on.
                faulthandler.enable(self._terminal, all_threads=True)
                self._faulthandler_moved = True
            if _writes_to_fd2(sys.stderr):
                self._python_stderr, sys.stderr = sys.stderr, self._python_stream(sys.stderr)
        except BaseException:
            try:
                self._remove()
            finally:
                if reader.ident is None:
                    os.close(pipe)
            raise

    def _python_stream(self, like: io.TextIOWrapper) -> io.TextIOWrapper:
        if self._stream is None:
            raw = io.FileIO(self._terminal, "wb", closefd=False)
            self._stream = io.TextIOWrapper(raw, encoding=like.encoding, errors=like.errors, line_buffering=True)
        return self._stream

    def _remove(self) -> None:
        """Put descriptor 2 back first, whatever raises after (a stream's flush, a Ctrl-C): left on the pipe, it
        would be taken for the terminal by the next window, and stderr lost for the rest of the process."""
        reader, self._reader = self._reader, None
        try:
            os.dup2(self._terminal, 2)  # closes the pipe's last write end here: the reader meets its end
        finally:
            try:
                if self._faulthandler_moved:
                    self._faulthandler_moved = False
                    faulthandler.enable(2, all_threads=True)
            finally:
                if self._python_stderr is not None:
                    python_stderr, self._python_stderr = self._python_stderr, None
                    try:
                        sys.stderr.flush()
                    finally:
                        sys.stderr = python_stderr
            if reader is not None:
                reader.join(_DRAIN_SECONDS)


_FILTER = _Filter()


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Inside, native info and warning lines on descriptor 2 are dropped and every other line passes at once."""
    _FILTER.enter()
    try:
        yield
    finally:
        _FILTER.leave()
