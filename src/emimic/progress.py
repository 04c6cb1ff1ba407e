"""One progress-bar style for every long loop (rich), silenced when not wanted; the console of the bar drawn now, for
lines that must not cut through it."""

from __future__ import annotations

import contextlib

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

# The bars drawn now, the latest last (a loop inside a loop draws a second one).
_DRAWN: list[Progress] = []


class _Bar(Progress):
    """A rich Progress that is known while it is drawn (see :func:`drawn_console`)."""

    def start(self) -> None:
        super().start()
        if not self.disable:
            _DRAWN.append(self)

    def stop(self) -> None:
        with contextlib.suppress(ValueError):  # a disabled bar was never drawn
            _DRAWN.remove(self)
        super().stop()


def progress_bar(enabled: bool = True) -> Progress:
    """A rich Progress to use as a context manager: ``with progress_bar() as bar: bar.add_task(...)``."""
    return _Bar(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


def drawn_console() -> Console | None:
    """The console of the progress bar drawn now, None when none is: what is printed through it appears above the
    bar, which rich then draws again below it, where a line written to stderr past it would cut through the bar."""
    drawn = _DRAWN[-1:]  # in one read: another thread may stop the bar between a test and an index
    return drawn[0].console if drawn else None
