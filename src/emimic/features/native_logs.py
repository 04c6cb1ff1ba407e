"""Drop the info and warning lines native libraries write straight to stderr; keep their errors.

MediaPipe's C++ graph (absl logging) and TensorFlow Lite write lines such as ``INFO: Created TensorFlow Lite
XNNPACK delegate for CPU.`` and ``W0000 00:00:17.5  13983 inference_feedback_manager.cc:114] ...`` to file
descriptor 2, where ``--quiet`` cannot reach them: the wheels read neither ``GLOG_minloglevel`` nor
``TF_CPP_MIN_LOG_LEVEL``, and no Python call sets their level. Inside :func:`quiet_native_logs`, descriptor 2 is a
temporary file; on leaving, descriptor 2 is put back and every line written meanwhile that is not such chatter
(errors, Python's own output through descriptor 2) is passed on, in order: to descriptor 2, or through the console of
the progress bar drawn now if one is (emimic.progress), which draws the bar again below them rather than have them
cut through it. A Python exception raised inside propagates unchanged, after that.

Keep the window short (MediaPipe chatters only while a graph is built and until its first face, see
emimic.features.vision): what is written inside appears only when it ends, and is lost if the process dies inside
(a native abort, a segfault's traceback). A progress bar stands still meanwhile, as its console is no terminal then.
A Python log line formatted ``INFO: ...`` or ``WARNING: ...`` through descriptor 2 inside is taken for chatter.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import BinaryIO

from emimic.features.ledger import write_all
from emimic.progress import drawn_console

# TFLite's minimal logger (``INFO: ``, ``WARNING: ``, absl's ``WARNING: All log messages before
# absl::InitializeLog() ...``) and absl/glog info and warning lines (``W0000 00:00:1795719504.73  13983 file.cc:114]
# ``, glog's ``W20231107 20:04:23.74 377746 file.cc:168] ``). Their error and fatal lines do not match.
_CHATTER = re.compile(rb"(?:INFO|WARNING): |[IW]\d{4,8} [\d:.]+ +\d+ \S+:\d+\] ")


class _Capture:
    """Descriptor 2 into a temporary file while at least one thread is inside: the first in captures it, the last
    out puts it back (descriptor 2 belongs to the process, so two threads each saving and restoring it would leave
    it captured). Whether it is captured is the state itself, not the count, so a Ctrl-C anywhere never makes a
    window take the capture file for the terminal, and every enter, even one a Ctrl-C cut short, is left."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inside = 0
        self._terminal: int | None = None  # a duplicate of what descriptor 2 was, while it is captured
        self._file: BinaryIO | None = None

    def enter(self) -> None:
        with self._lock:
            self._inside += 1  # counted first: a leave always follows, even after a Ctrl-C here
            if self._terminal is None:
                self._capture()

    def leave(self) -> None:
        with self._lock:
            self._inside = max(self._inside - 1, 0)
            if self._inside == 0 and self._terminal is not None:
                self._release()

    def _capture(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            if sys.stderr is not None:
                sys.stderr.flush()  # what Python wrote so far goes out before what follows
        file = tempfile.TemporaryFile()  # noqa: SIM115 - held across the window, closed by _replay
        try:
            terminal = os.dup(2)
        except OSError:  # no descriptor 2 (a daemon): nothing to capture
            file.close()
            return
        self._file, self._terminal = file, terminal
        try:
            os.dup2(file.fileno(), 2)
        except BaseException:  # a Ctrl-C too: descriptor 2 is put back at once
            self._release()
            raise

    def _release(self) -> None:
        """Put descriptor 2 back first, whatever raises after, then pass on what was not chatter."""
        terminal, file = self._terminal, self._file
        assert terminal is not None
        try:
            with contextlib.suppress(OSError, ValueError):
                if sys.stderr is not None:
                    sys.stderr.flush()  # Python's lines written inside go into the file, in their order
        finally:
            try:
                os.dup2(terminal, 2)
            finally:
                self._terminal = self._file = None
                os.close(terminal)
                if file is not None:
                    _replay(file)


def _replay(file: BinaryIO) -> None:
    """Pass on the lines of ``file`` that are not chatter, and close it: through the console of the progress bar drawn
    now, to descriptor 2 when none is."""
    with file:
        file.seek(0)
        kept = [line for line in file if not _CHATTER.match(line)]
    console = drawn_console()
    if console is None:
        with io.FileIO(2, "wb", closefd=False) as out:
            for line in kept:
                write_all(out, line)
    elif kept:  # as they are: no markup, highlighting or wrapping
        console.out(b"".join(kept).decode(errors="replace").removesuffix("\n"), highlight=False)


_CAPTURE = _Capture()


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Inside, native info and warning lines on descriptor 2 are dropped; every other line appears on leaving."""
    try:
        _CAPTURE.enter()
        yield
    finally:
        _CAPTURE.leave()
