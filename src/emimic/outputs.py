"""Where emimic may write what a user asks for (a run folder, a submission, a scores file).

Two rules, the same for the CLI and the library:

- nothing is written inside a dataset root, except the feature store and extracted modalities
  (which their own commands put there on purpose): a dataset is input, and a file written into it
  can be mistaken for data (``predict --out DATA/train_split.csv`` would replace the labels);
- nothing is written inside a run folder (or a folder of runs) that the command reads, except the folder's
  report (``emimic report``'s default ``RUN/report.html``): ``predict --out RUN/checkpoints/best.ckpt --overwrite``
  would replace the weights it is reading, and the run would be lost;
- an existing file is never replaced unless the user passes ``--overwrite`` (``overwrite=True``):
  a submission or a scores file from an earlier run is kept unless the user says otherwise.

A folder of results (a ``train`` run, a ``cv``, ``ablate`` or ``sweep`` folder) is written under
:func:`provisional_output`: what a new run wrote is kept only once it has saved an epoch, and a folder
it replaces (``--overwrite``) is replaced only by a result that holds such a run: it is put back if the new command
fails before that, and, as a safety net, if it ends without any run having saved an epoch (:class:`NothingSaved`
says so; ``train``, ``cv`` and ``ablate`` always have a run to train by then, a sweep may see all its trials fail). A
process killed meanwhile leaves the old content beside the folder (``.NAME.replaced-*``; never deleted, so no result is
lost): every command that writes the folder says so first (:func:`warn_leftovers`).

Whether a folder may take a new call is decided by :func:`check_folder_settings` against the settings the folder
records (its data, folds, config, ...), which must be the same. What may differ between calls (an ablation's cells,
a CV's seeds) is not pinned by the record: the caller reads what the folder's run folders actually hold, so a
cell or seed that never saved an epoch, or whose folders the user deleted, binds nothing. A setting the folder did
not record (an earlier emimic) is never reused.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import json
import os
import re
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from emimic.errors import ConfigError, EmimicWarning, NothingSaved, OutputConflict

try:
    import fcntl
except ImportError:  # Windows: no flock, so no lock (see exclusive_output)
    fcntl = None  # type: ignore[assignment]

# The hidden folders beside NAME that provisional_output makes: the old content, moved aside whole (a user may move
# it back), and the old content being deleted once the new run started (incomplete if that was interrupted).
REPLACED = "replaced"
DISCARDED = "discarded"


class LeftoverWarning(EmimicWarning):
    """Beside a folder emimic is about to write lie copies of its old content that a replacement left."""


class UnlockedWarning(EmimicWarning):
    """The folder a command writes cannot be locked, so a concurrent command into it would not be refused."""


def refuse_inside_dataset(path: str | Path, root: str | Path) -> None:
    """Raise :class:`OutputConflict` if ``path`` lies inside the dataset root ``root``."""
    if Path(path).resolve().is_relative_to(Path(root).resolve()):
        raise OutputConflict(
            f"{path} is inside the dataset root {root}, where emimic writes only feature stores and extracted"
            " features; choose a path outside it."
        )


# The one file emimic writes into a run folder, or a folder of runs, that a command reads: its report.
RUN_REPORT = "report.html"


def refuse_inside_runs(path: str | Path, runs: Iterable[str | Path], *, report: bool = False) -> None:
    """Raise :class:`OutputConflict` if ``path`` lies inside one of ``runs``, the run folders (or folders of runs)
    the command reads; with ``report``, the folder's own report (``RUN/report.html``) is allowed."""
    target = Path(path).resolve()
    for run in runs:
        folder = Path(run).resolve()
        if target.is_relative_to(folder) and not (report and target == folder / RUN_REPORT):
            raise OutputConflict(f"{path} is inside {run}, which holds the run(s) this command reads; choose a path"
                                 " outside it.")


def check_output_file(path: str | Path, *, dataset_root: str | Path | None, runs: Iterable[str | Path] = (),
                      overwrite: bool = False) -> None:
    """Refuse an output file inside ``dataset_root`` (None: the command reads none) or inside one of the run folders
    ``runs`` the command reads (even with ``overwrite``), or one that exists already unless ``overwrite``."""
    if dataset_root is not None:
        refuse_inside_dataset(path, dataset_root)
    refuse_inside_runs(path, runs)
    if Path(path).exists() and not overwrite:
        raise OutputConflict(f"{path} already exists; pass --overwrite to replace it, or choose another path.")


def check_folder_settings(out: str | Path, record: str, settings: Mapping[str, Any], *, kind: str, overwrite: bool,
                          any_order: Collection[str] = ()) -> bool:
    """Refuse to add to the results folder ``out`` (a CV, ablation or sweep folder) what other ``settings`` would make;
    return whether the call is to replace the folder (``overwrite``, under :func:`provisional_output`).

    ``record`` is the file in ``out`` that holds the settings it was made with. Each setting must equal the stored
    one; the lists named in ``any_order`` (an ablation's seeds) may hold their items in another order. A folder
    made with other settings, or one that did not record one of them (made by an earlier emimic), is refused unless
    ``overwrite``. A non-empty folder without ``record`` is never emimic's, so it is refused either way."""
    assert set(any_order) <= settings.keys(), f"any_order names no setting: {sorted(set(any_order) - settings.keys())}"
    out = Path(out)
    path = out / record
    if not path.exists():
        if out.exists() and any(out.iterdir()):
            raise ConfigError(f"{out} exists and is not an emimic {kind} folder; choose a new --out.")
        return False
    stored = json.loads(path.read_text(encoding="utf-8"))
    # a setting an earlier emimic did not record is not reused: whether it differs is unknown
    unrecorded = [key for key in sorted(settings) if key not in stored]
    differing = [key for key in sorted(settings) if key in stored
                 and _comparable(stored[key], key in any_order) != _comparable(settings[key], key in any_order)]
    if (unrecorded or differing) and overwrite:
        return True
    if unrecorded:
        raise ConfigError(f"{out} was made by an earlier emimic, which did not record its {', '.join(unrecorded)}"
                          f" (see {path}); it cannot be checked against this run, pass --overwrite to replace it, or"
                          " choose a new --out.")
    if differing:
        raise ConfigError(f"{out} was made with other {', '.join(differing)} (see {path}); rerun it with the same"
                          " options, pass --overwrite to replace it, or choose a new --out.")
    return False


def _comparable(value: Any, unordered: bool) -> Any:
    return sorted(value) if unordered else value


LOCK_SUFFIX = "lock"
# The errors that say no lock can be taken here (no flock on this file system or system, no right to write beside
# the folder, a read-only mount): the command goes on unlocked. Any other error is a real failure and is raised.
CANNOT_LOCK = frozenset({errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EACCES, errno.EPERM, errno.EROFS})
# Tries at making the lock file's parent and opening the file while other commands' clean-ups remove the parent.
LOCK_FILE_ATTEMPTS = 100
# How often a command that waits for a held folder tries its lock again: flock itself has no time limit.
LOCK_POLL_SECONDS = 0.2
# How long a command that does not wait (``Hold.wait`` 0) still tries, silently: a reader's probe of the lock
# (:func:`held_by_others`) holds it a moment, and an extract starting then would be refused for it.
PROBE_GRACE_SECONDS = 0.5
NO_FLOCK = ("this system has no flock, so emimic cannot lock the folders it writes: a concurrent emimic command"
            " writing the same folder would be neither refused nor waited for.")

# The folders this thread holds (see exclusive_outputs): a folder inside one of them is held already. Per thread, not
# per process: two threads of one process (two trainings a notebook starts in threads) are two writers, whose flocks
# on their own open files conflict as two processes' do; only a command called inside another, in its thread, is
# part of it.
_HELD: contextvars.ContextVar[tuple[Path, ...]] = contextvars.ContextVar("emimic_held_folders", default=())


class WaitingWarning(EmimicWarning):
    """The folder a command is to write is held by another command, which it waits for (a bounded time)."""


@dataclass(frozen=True)
class Hold:
    """How a command holds the folders it writes, and how its messages name the command that holds them first.

    ``wait`` 0: the second command is refused at once (within :data:`PROBE_GRACE_SECONDS`); otherwise it waits for
    the first one up to ``wait`` seconds (after one :class:`WaitingWarning`) and is refused only then. ``busy`` says
    what the other command is doing, ``advice`` what to do when refused. A ``shared`` hold is a reader's: readers
    hold a folder together (several evaluates, the ranks of one DDP train opening one store) and wait only for a
    command that writes it."""

    command: str
    wait: float = 0.0
    busy: str | None = None
    advice: str = "wait until it ends, or choose another --out"
    shared: bool = False

    def refusal(self, folder: Path) -> str:
        if self.wait <= 0:
            return f"{folder}: {self._busy} now; {self.advice}."
        return f"{folder}: {self._busy} now, still after {_duration(self.wait)} of waiting; {self.advice}."

    def notice(self, folder: Path) -> str:
        return f"{folder}: {self._busy} now; waiting for it to end, for at most {_duration(self.wait)}."

    @property
    def _busy(self) -> str:
        return self.busy or f"another emimic {self.command} is writing this folder"


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


@contextlib.contextmanager
def exclusive_output(folder: str | Path, *, command: str) -> Iterator[None]:
    """Hold ``folder`` for this process while the block writes it: a second ``command`` into the same folder at the
    same time is refused (both wrote into it and both reported success, the folder holding one run's files and
    perhaps the other's). One folder of :func:`exclusive_outputs`, which tells the rest; a :class:`Hold` there may
    wait for the first command instead, and word the messages for another command."""
    with exclusive_outputs([folder], Hold(command)):
        yield


@contextlib.contextmanager
def exclusive_outputs(folders: Iterable[str | Path], hold: Hold) -> Iterator[None]:
    """Hold each of ``folders`` as :func:`exclusive_output` does one, in sorted order (two commands that wait never
    hold one folder each while waiting for the other's). The lock is an ``flock`` on the hidden file ``.NAME.lock``
    beside each folder (a folder a replacement moves aside keeps no lock), released and removed when the block ends,
    or by the system when the process dies; the parent folders made for it are removed then too when nothing else was
    put in them. A folder inside one this thread holds already (an extraction into the folder an ``infer`` holds) is
    held: it gets no lock of its own; the same folder held twice is refused at once (:class:`OutputConflict`): the
    second holder would write what the first one, which has not ended, is writing.

    Where no lock can be taken (no ``flock`` on Windows or on a Lustre mount without ``-o flock``, a parent folder
    this user may not write) the block runs unlocked after one :class:`UnlockedWarning`: the command itself does not
    need the lock. An ``flock`` on NFS mounted with ``nolock`` holds on one machine only."""
    held = _HELD.get()
    wanted = [folder for folder in sorted({Path(f).resolve() for f in folders}) if not _inside(folder, held)]
    again = [folder for folder in wanted if folder in held]
    if again:  # waiting for its own lock, this process would wait for ever
        raise OutputConflict(f"{again[0]}: this process holds this folder already, for a command that has not ended;"
                             f" run this emimic {hold.command} after that one, not inside it.")
    with contextlib.ExitStack() as stack:
        unlocked: list[tuple[Path, OSError]] = []
        for folder in wanted:
            failure = stack.enter_context(_one_lock(folder, hold))
            if failure is not None:
                unlocked.append((folder, failure))
        if unlocked:
            warnings.warn(_unlocked_sentence(unlocked, hold.command), UnlockedWarning, stacklevel=4)
        token = _HELD.set((*held, *wanted))
        try:
            yield
        finally:
            _HELD.reset(token)


def held_by_others(folders: Iterable[str | Path]) -> list[Path]:
    """Which of ``folders`` (resolved, sorted) another command holds now: for a command that reads them (``pack``
    reads the modality folders an ``extract`` writes). Their locks are only tried, neither waited for nor kept, and a
    folder this thread holds is this command's own."""
    held = _HELD.get()
    return [folder for folder in sorted({Path(f).resolve() for f in folders})
            if folder not in held and not _inside(folder, held) and _held_elsewhere(folder)]


def _held_elsewhere(folder: Path) -> bool:
    """Whether another command (or another thread) holds ``folder`` now; a folder without a lock file is not held."""
    if fcntl is None:
        return False
    try:
        with open(_lock_path(folder), "rb") as handle:  # closing it releases the shared lock at once
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # no lock file (no holder), one this user cannot read, no flock here: nothing to go by
        return False
    return False


def flock_available() -> bool:
    """Whether this system can lock folders at all (not on Windows): a command that only reads may skip the lock,
    and the warning that it cannot be taken, where it cannot."""
    return fcntl is not None


def _inside(folder: Path, held: tuple[Path, ...]) -> bool:
    """Whether ``folder`` lies inside one of ``held`` (not one of them: a second hold of the same folder is refused)."""
    return any(folder != outer and folder.is_relative_to(outer) for outer in held)


def _unlocked_sentence(unlocked: list[tuple[Path, OSError]], command: str) -> str:
    if fcntl is None:
        return NO_FLOCK  # the same words for every folder: a command says it once
    folder, exc = unlocked[0]
    named = ", ".join(str(f) for f, _ in unlocked)
    return (f"cannot lock {_lock_path(folder)} ({exc.strerror or exc}): a concurrent emimic {command} into {named}"
            " would not be refused.")


@contextlib.contextmanager
def _one_lock(folder: Path, hold: Hold) -> Iterator[OSError | None]:
    """Hold ``folder`` for the block; yields None, or the error that says no lock can be taken there."""
    made = missing_folders(folder.parent)
    try:
        handle = _locked(folder, hold)
    except OSError as exc:
        if exc.errno not in CANNOT_LOCK:
            remove_empty(made)
            raise
        handle = exc
    except BaseException:  # refused, or Ctrl-C while waiting: nothing of this lock stays
        remove_empty(made)
        raise
    try:
        yield handle if isinstance(handle, OSError) else None
    finally:
        if not isinstance(handle, OSError):
            _release(handle)
        remove_empty(made)


def _release(handle: BinaryIO) -> None:
    """Release the lock file ``handle``, removing it when no other command holds it (a reader may, beside this one):
    one that locked the removed file would hold nothing that a later command sees.

    This lock is dropped before the exclusive one is tried: of readers ending together, each turning its shared lock
    into an exclusive one would fail for the others' where the system converts a lock atomically (flock on NFS), and
    the file would stay; dropped first, the last to try finds no holder. The file is removed only while it is the one
    at its path: one another holder removed (and a new command made anew) is not this handle's to remove."""
    try:
        fcntl.flock(handle, fcntl.LOCK_UN)
        path = Path(handle.name)
        if _try_flock(handle, fcntl.LOCK_EX) and _is_current(path, handle):
            _remove_lock_file(path)
    finally:
        handle.close()


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its parents that do not exist yet, deepest first."""
    return [path for path in (folder, *folder.parents) if not path.exists()]


def remove_empty(folders: Sequence[Path]) -> None:
    """Remove each of ``folders`` (deepest first) that is empty: what a refused or failed command made only to lock."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (a run, or another command's lock, is in it), or gone already
            return


def _remove_lock_file(path: Path) -> None:
    """Remove the lock file ``path`` where this user may (another user's file in a folder with the sticky bit stays:
    it is locked and unlocked all the same)."""
    with contextlib.suppress(FileNotFoundError, PermissionError):
        path.unlink()


def _lock_path(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.{LOCK_SUFFIX}")


def _locked(folder: Path, hold: Hold) -> BinaryIO:
    """The open lock file of ``folder``, flocked (waiting for its holder as ``hold`` says); an OSError where no lock
    can be taken there."""
    path = _lock_path(folder)
    if fcntl is None:
        raise OSError(errno.ENOSYS, "this system has no flock")
    deadline = time.monotonic() + (hold.wait if hold.wait > 0 else PROBE_GRACE_SECONDS)
    announced = hold.wait <= 0  # a command that does not wait says nothing while it tries
    while True:
        handle = _open_lock_file(path)
        try:
            while not _try_flock(handle, fcntl.LOCK_SH if hold.shared else fcntl.LOCK_EX):
                if time.monotonic() >= deadline:
                    raise OutputConflict(hold.refusal(folder))
                if not announced:
                    warnings.warn(hold.notice(folder), WaitingWarning, stacklevel=6)
                    announced = True
                time.sleep(LOCK_POLL_SECONDS)
        except OSError:  # no flock here: the file locks nothing, leave none behind
            handle.close()
            _remove_lock_file(path)
            raise
        except BaseException:  # refused, or Ctrl-C while waiting: the file is the holder's
            handle.close()
            raise
        if _is_current(path, handle):
            return handle
        handle.close()


def _is_current(path: Path, handle: BinaryIO) -> bool:
    """Whether ``handle`` is the lock file at ``path`` now: the holder before us may have removed the file after we
    opened it (and a third one made and removed another meanwhile), so the file that is there now is locked instead."""
    try:
        return os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False


def _try_flock(handle: BinaryIO, mode: int) -> bool:
    """Whether ``handle`` is now locked in ``mode`` (``LOCK_SH`` or ``LOCK_EX``), not waiting for another holder."""
    try:
        fcntl.flock(handle, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _open_lock_file(path: Path) -> BinaryIO:
    """``path`` opened for appending (for reading where it is another user's), its parent folders made first; tried
    again when another command's clean-up (:func:`remove_empty`) removed a parent between the two steps."""
    def make_and_open() -> BinaryIO:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return open(path, "a+b")
        except PermissionError:  # another user's file, left by a killed command: flock needs no right to write it
            if not path.exists():
                raise
            return open(path, "rb")

    for _ in range(LOCK_FILE_ATTEMPTS - 1):
        with contextlib.suppress(FileNotFoundError):
            return make_and_open()
    return make_and_open()  # the last try raises what it meets


@contextlib.contextmanager
def provisional_output(folder: str | Path, *, replace: bool, started: Callable[[], bool],
                       kind: str) -> Iterator[None]:
    """Keep what the block writes into ``folder`` (a ``kind``: run, CV, ablation, sweep) only once ``started()``
    says a run in it saved an epoch: if the block fails before that, remove what it added (what was in ``folder``
    before stays), so the corrected command starts afresh. With ``replace`` the folder's old content is moved aside
    meanwhile and deleted only once a run started; it is put back when the block fails before that, and when it
    ends without a run (then :class:`NothingSaved` is raised, a safety net that callers which always train something
    never reach: a new folder without a run is no result to replace a folder with, and the caller must not go on
    writing into the old one). Whatever else goes wrong (a second
    Ctrl-C during the clean-up, a file the clean-up could not remove) leaves the old content whole in the hidden
    folder ``.NAME.replaced-*`` next to ``folder``, never deleted; a deletion cut short leaves ``.NAME.discarded-*``
    (see :func:`warn_leftovers`)."""
    folder = Path(folder)
    aside = _hidden_copy(folder, REPLACED) if replace else None
    if aside is not None:
        folder.rename(aside)
    before = set(folder.iterdir()) if folder.is_dir() else None
    try:
        yield
        if aside is not None and not started():
            raise NothingSaved(folder, kind)
    except BaseException:
        if not started():
            _remove_added(folder, before)
            if aside is not None:
                aside.rename(folder)
        elif aside is not None:
            _discard(aside)
        raise
    if aside is not None:
        _discard(aside)


def _hidden_copy(folder: Path, kind: str) -> Path:
    """A new name for a copy of ``folder``'s content beside it: ``.NAME.KIND-XXXXXXXX``."""
    resolved = folder.resolve()
    return resolved.with_name(f".{resolved.name}.{kind}-{uuid.uuid4().hex[:8]}")


def _discard(aside: Path) -> None:
    """Delete the replaced content ``aside``. It is renamed first, so a deletion cut short (Ctrl-C, a file that
    cannot be removed) leaves a ``.NAME.discarded-*`` folder, which nobody would take for a whole copy; a rename
    that fails leaves the whole copy, which the next command reports."""
    try:
        name, _, suffix = aside.name.rpartition(f".{REPLACED}-")  # NAME itself may hold ".replaced-"
        doomed = aside.rename(aside.with_name(f"{name}.{DISCARDED}-{suffix}"))
    except OSError:
        return
    shutil.rmtree(doomed, ignore_errors=True)


def leftovers(folder: str | Path, kind: str) -> list[Path]:
    """The ``.NAME.KIND-*`` folders beside ``folder`` (``kind``: :data:`REPLACED` or :data:`DISCARDED`), as paths
    beside ``folder`` as it was given."""
    resolved = Path(folder).resolve()
    shown = Path(folder) if Path(folder).name not in ("", "..") else resolved  # "." and ".." name no folder
    copy = re.compile(rf"\.{re.escape(resolved.name)}\.{kind}-[0-9a-f]{{8}}")
    parent = resolved.parent
    found = (entry.name for entry in parent.iterdir() if copy.fullmatch(entry.name)) if parent.is_dir() else ()
    return sorted(shown.with_name(name) for name in found)


def leftover_message(folder: str | Path) -> str | None:
    """One sentence on the copies a replacement of ``folder`` left beside it, or None when there are none."""
    replaced, discarded = leftovers(folder, REPLACED), leftovers(folder, DISCARDED)
    parts = []
    if replaced:
        it, holds = ("them", "hold") if len(replaced) > 1 else ("it", "holds")
        parts.append(f"{_names(replaced)} {holds} the old content of {folder}, moved aside by a command that replaced"
                     f" it and was interrupted; delete {it} if you do not need {it}, or move"
                     f" {'one' if len(replaced) > 1 else 'it'} back in place of {folder}")
    if discarded:
        it, is_ = ("them", "are") if len(discarded) > 1 else ("it", "is")
        parts.append(f"{_names(discarded)} {is_} what an interrupted deletion left of an old {folder}; delete {it}")
    return "; ".join(parts) + "." if parts else None


def _names(paths: list[Path]) -> str:
    return ", ".join(str(path) for path in paths)


def warn_leftovers(folder: str | Path) -> None:
    """Warn (:class:`LeftoverWarning`, one line in the CLI) when a replacement of ``folder`` left copies beside it.
    They are never deleted here, not even by ``--overwrite``: one may be the only copy of results the user
    still wants."""
    message = leftover_message(folder)
    if message is not None:
        warnings.warn(message, LeftoverWarning, stacklevel=2)


def _remove_added(folder: Path, before: set[Path] | None) -> None:
    """Remove what appeared in ``folder`` since it held ``before`` (None: it did not exist, remove it whole)."""
    if before is None:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for entry in set(folder.iterdir()) - before if folder.is_dir() else ():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
