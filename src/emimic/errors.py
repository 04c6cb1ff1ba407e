"""Exceptions that the CLI turns into one clear sentence and a non-zero exit status."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path


class EmimicError(Exception):
    """Base class of errors caused by the user's input rather than by a bug."""


class EmimicWarning(UserWarning):
    """Something a user should know that stops nothing; the CLI prints it as one line."""


class DataError(EmimicError):
    """A dataset file, column or value is missing, unreadable or invalid."""


class EmptyFeatures(DataError):
    """A per-clip file that holds zero frames (an extractor found no face, no speech): masked, not fatal."""


class ConfigError(EmimicError):
    """A configuration file or option is invalid."""


class NothingSaved(ConfigError):
    """A command that was to replace a results folder ended without any run of it saving an epoch, so the old
    folder is kept as it was (see :func:`emimic.outputs.provisional_output`). A sweep whose trials all failed says
    so with its own ``detail`` and ``advice``; for other commands it is a safety net that their checks keep out of
    reach, hence the default advice."""

    def __init__(self, folder: str | Path, kind: str, *, detail: str = "",
                 advice: str = "emimic does not expect this of a command that ended without an error; please report"
                               " it") -> None:
        super().__init__(f"the new {kind} in {folder} saved no epoch{detail}, so the {kind} it was to replace is"
                         f" kept as it was; {advice}.")


class ModelNotFoundError(EmimicError):
    """A pretrained model directory is missing; the message says how to provide it."""


class OutputPathError(EmimicError):
    """An output path the user gave cannot be written (missing or read-only folder, a folder where a file goes)."""


class OutputConflict(EmimicError):
    """An output path holds something emimic must not silently reuse or replace (another run, a user's file)."""


class IncompatibleRun(EmimicError):
    """A run folder this emimic must not use as it is: made by a newer emimic, or by one older than a change that
    alters its predictions (see :mod:`emimic.models.formats`). ``reason`` is what is wrong with the run, which a
    caller that offers another way out (a sweep of such runs) words its own sentence with."""

    def __init__(self, reason: str, remedy: str) -> None:
        super().__init__(f"{reason}; {remedy}.")
        self.reason = reason


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, carrying one sentence on what was kept and how to resume; the CLI prints it and exits with 130.

    A KeyboardInterrupt still, so callers that catch Ctrl-C keep working."""


@contextlib.contextmanager
def explain_interrupt(kept: Callable[[], str]) -> Iterator[None]:
    """Turn Ctrl-C inside the block into :class:`Interrupted` whose message is ``kept()``, called then.

    Example::

        with explain_interrupt(lambda: f"kept {done} clips; run the same command to resume"):
            work()
    """
    try:
        yield
    except Interrupted:
        raise
    except KeyboardInterrupt:
        raise Interrupted(kept()) from None


@contextlib.contextmanager
def emimic_warnings_to(handle: Callable[[EmimicWarning], None]) -> Iterator[None]:
    """Within the block, hand every :class:`EmimicWarning` raised to ``handle``, each time it is raised (Python shows
    one once per place, in two lines with a file and line number); other warnings are shown as before.

    The CLI prints them as ``warning:`` lines; a worker process collects them for the command to print (see
    :mod:`emimic.training.jobs`).

    Example::

        caught = []
        with emimic_warnings_to(caught.append):
            work()
    """
    with warnings.catch_warnings():
        shown_before = warnings.showwarning

        def show(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
            if isinstance(message, EmimicWarning):
                handle(message)
            else:
                shown_before(message, category, *args, **kwargs)  # type: ignore[arg-type]

        warnings.showwarning = show
        warnings.simplefilter("always", EmimicWarning)
        yield
