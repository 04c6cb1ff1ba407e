"""Lines printed while a progress bar is drawn (a warning sent back by a worker, stderr held during MediaPipe's
window) appear above it, the bar drawn again below them, rather than cut through it."""

from __future__ import annotations

import io
import os
import re

import pytest
from rich.console import Console

from emimic import progress
from emimic.cli.registry import print_warning
from emimic.errors import EmimicWarning
from emimic.features.native_logs import quiet_native_logs
from test_native_logs import CHATTER, NATIVE_ERROR

ERASE_LINE = "\x1b[2K"


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What a terminal would show of the progress bars drawn in the test."""
    shown = io.StringIO()
    monkeypatch.setattr(progress, "Console", lambda stderr: Console(file=shown, force_terminal=True, width=60))
    return shown


def printed_above_the_bar(shown: str, lines: str) -> bool:
    """Whether ``lines`` are in ``shown`` (colours left out) where the bar was erased, the bar drawn again right after
    them."""
    before, found, after = re.sub(r"\x1b\[[\d;]*m", "", shown).rpartition(lines)
    return bool(found) and before.endswith(ERASE_LINE) and after.startswith("extract")


def test_lines_held_while_a_progress_bar_is_drawn_are_printed_above_it(terminal: io.StringIO,
                                                                      capfd: pytest.CaptureFixture) -> None:
    """Without --workers, a window ends while extract's bar is drawn: its lines go through the bar's console (as they
    are, no markup); with no bar drawn, to descriptor 2."""
    with progress.progress_bar() as bar:
        bar.add_task("extract face", total=2)
        with quiet_native_logs():
            os.write(2, CHATTER + NATIVE_ERROR + b"[bold]not markup\n")
        assert printed_above_the_bar(terminal.getvalue(), f"{NATIVE_ERROR.decode()}[bold]not markup\n")
    assert capfd.readouterr().err == ""
    with quiet_native_logs():
        os.write(2, NATIVE_ERROR)
    assert capfd.readouterr().err == NATIVE_ERROR.decode()


def test_a_warning_raised_while_a_progress_bar_is_drawn_is_printed_above_it(terminal: io.StringIO,
                                                                            capfd: pytest.CaptureFixture) -> None:
    with progress.progress_bar() as bar:
        bar.add_task("extract egemaps", total=2)
        print_warning(EmimicWarning("audio/00001.mp3: is damaged: ..."))
        assert printed_above_the_bar(terminal.getvalue(), "warning: audio/00001.mp3: is damaged: ...\n")
    assert capfd.readouterr().err == ""


class _StoppedOnTest(list):
    """The bars drawn, the last stopped by another thread as soon as it is asked whether any is."""

    def __bool__(self) -> bool:
        drawn = len(self) > 0
        self.clear()
        return drawn


def test_the_drawn_console_is_read_safely_while_another_thread_stops_its_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    bar = progress.progress_bar()
    monkeypatch.setattr(progress, "_DRAWN", _StoppedOnTest([bar]))
    assert progress.drawn_console() in (bar.console, None)
