"""Whether this process has changed any file since a command began: what the CLI may say of a bare Ctrl-C.

A Ctrl-C that emimic's resumable work explains (:class:`~emimic.errors.Interrupted`) says what it kept; any other
one may land anywhere: in the imports of start-up, or between two writes. "Nothing was written" is said only when it
is so, which a Python audit hook (PEP 578) sees: every file opened for writing, and every folder made, file renamed
or removed, is an audited event, whoever does it (emimic, a library, the standard library). What the process made
and removed again (a library's probe of the temporary folder) and a folder that existed already
(``mkdir(exist_ok=True)``) change nothing; a process started (which may write anything) counts as a change.
"""

from __future__ import annotations

import os
import sys
from typing import Any

# open() and os.open() flags that change a file (open()'s audit event gives the flags its mode makes).
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
# Events that change a file, or may (another process), whose paths are not followed. shutil's copies, moves and
# removals are not among them: each of their steps is an audited open, mkdir, rename or removal.
OTHER_CHANGES = frozenset({"os.symlink", "os.link", "os.truncate", "subprocess.Popen", "os.posix_spawn", "os.fork",
                           "os.forkpty", "os.system", "os.exec", "os.spawn"})
# Every event the hook reads: it sees every audited event of the process (imports, frames, reads), so it returns at
# once from the rest.
WATCHED = frozenset({"open", "os.mkdir", "os.remove", "os.rmdir", "os.rename", *OTHER_CHANGES})
# The dir_fd of an audited call made without one.
NO_DIR_FD = (None, -1)


class FileChanges:
    """The files this process made or changed since :meth:`reset`, as an audit hook (:func:`sys.addaudithook`)."""

    def __init__(self) -> None:
        self.made: set[str] = set()  # made or changed since reset, and still there
        self.other = False  # a change no path of ``made`` names (a file that existed removed, a process started)

    def reset(self) -> None:
        self.made.clear()
        self.other = False

    @property
    def any(self) -> bool:
        return self.other or bool(self.made)

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if event not in WATCHED:
            return
        if event == "open":
            path, _, flags = args
            # a folder "opened for writing" is an anonymous temporary file in it (O_TMPFILE), gone once closed
            if isinstance(path, str | bytes | os.PathLike) and flags and flags & WRITE_FLAGS and not os.path.isdir(
                    path):
                self.made.add(_where(path))
        elif event == "os.mkdir":
            made = _where(args[0], args[2])
            if not os.path.isdir(made):
                self.made.add(made)
        elif event in ("os.remove", "os.rmdir"):
            self._gone(_where(args[0], args[1]))
        elif event == "os.rename":
            self._gone(_where(args[0], args[2]))
            self.made.add(_where(args[1], args[3]))
        elif event in OTHER_CHANGES:
            self.other = True

    def _gone(self, path: str) -> None:
        """``path`` is being removed (or renamed away; the event comes first): a change only if it existed before."""
        if path in self.made:
            self.made.discard(path)
        elif os.path.lexists(path):
            self.other = True


def _where(path: str | bytes | os.PathLike, dir_fd: int | None = None) -> str:
    """The absolute path of an audited call's ``path``, relative to the folder open as ``dir_fd`` if given (as
    shutil.rmtree removes), found through /proc; elsewhere a path no made file has, so its removal counts."""
    name = os.fsdecode(path)
    if dir_fd not in NO_DIR_FD:
        try:
            return os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), name)
        except OSError:
            return os.path.join(f"<folder {dir_fd}>", name)
    return os.path.abspath(name)


_CHANGES: FileChanges | None = None


def watch_file_changes() -> FileChanges:
    """The process's one :class:`FileChanges`, reset: the hook is added once (an audit hook cannot be removed)."""
    global _CHANGES
    if _CHANGES is None:
        _CHANGES = FileChanges()
        sys.addaudithook(_CHANGES)
    _CHANGES.reset()
    return _CHANGES
