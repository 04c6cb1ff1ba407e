"""Where emimic may write what a user asks for (a run folder, a submission, a scores file).

Two rules, the same for the CLI and the library:

- nothing is written inside a dataset root, except the feature store and extracted modalities
  (which their own commands put there on purpose): a dataset is input, and a file written into it
  can be mistaken for data (``predict --out DATA/train_split.csv`` would replace the labels);
- an existing file is never replaced unless the user passes ``--overwrite`` (``overwrite=True``):
  a submission or a scores file from an earlier run is kept unless the user says otherwise.

A folder of results (a ``train`` run, a ``cv``, ``ablate`` or ``sweep`` folder) is written under
:func:`provisional_output`: what a new run wrote is kept only once it has saved an epoch, and a folder
it replaces (``--overwrite``) is replaced only by a result that holds such a run: it is put back if the new command
fails before that, and, as a safety net, if it ends without any run having saved an epoch (:class:`NothingSaved`
says so; ``train``, ``cv`` and ``ablate`` always have a run to train by then, a sweep may see all its trials fail). A
process
killed meanwhile leaves the old content beside the folder (``.NAME.replaced-*``; never deleted, so no result is
lost): every command that writes the folder says so first (:func:`warn_leftovers`).

Whether a folder may take a new call is decided by :func:`check_folder_settings` against the settings the folder
records, each compared by a :class:`SettingRule`: equal by default, equal in any order (:class:`SameItems`), or one
that lets it grow (:class:`MayAdd`, :class:`MayGainOrDrop`), declared by the caller per setting. The folder then
records what the rule merges: every item and entry it was ever given, so that what its run folders hold stays
recorded when a later call drops it. A setting the folder did not record (an earlier emimic) is never reused.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from emimic.errors import ConfigError, EmimicWarning, NothingSaved, OutputConflict

# The hidden folders beside NAME that provisional_output makes: the old content, moved aside whole (a user may move
# it back), and the old content being deleted once the new run started (incomplete if that was interrupted).
REPLACED = "replaced"
DISCARDED = "discarded"


class LeftoverWarning(EmimicWarning):
    """Beside a folder emimic is about to write lie copies of its old content that a replacement left."""


def refuse_inside_dataset(path: str | Path, root: str | Path) -> None:
    """Raise :class:`OutputConflict` if ``path`` lies inside the dataset root ``root``."""
    if Path(path).resolve().is_relative_to(Path(root).resolve()):
        raise OutputConflict(
            f"{path} is inside the dataset root {root}, where emimic writes only feature stores and extracted"
            " features; choose a path outside it."
        )


def check_output_file(path: str | Path, *, dataset_root: str | Path, overwrite: bool = False) -> None:
    """Refuse an output file inside ``dataset_root``, or one that exists already unless ``overwrite``."""
    refuse_inside_dataset(path, dataset_root)
    if Path(path).exists() and not overwrite:
        raise OutputConflict(f"{path} already exists; pass --overwrite to replace it, or choose another path.")


@dataclass(frozen=True)
class Conflict:
    """Why a results folder cannot take a setting's new value: ``detail``, a clause for the refusal (may be empty),
    and ``rerun``, the options that would fit (None: the ones the folder was made with)."""

    detail: str = ""
    rerun: str | None = None


class SettingRule(Protocol):
    """How :func:`check_folder_settings` compares one recorded setting with the one a new call wants, and what the
    folder records once it took the call."""

    def conflict(self, stored: Any, wanted: Any) -> Conflict | None:
        """What keeps a folder made with ``stored`` from taking ``wanted``; None: nothing does."""

    def recorded(self, stored: Any, wanted: Any) -> Any:
        """What the folder records after a call with ``wanted`` that it took."""


class Same:
    """The default rule: the folder takes only the value it was made with."""

    def conflict(self, stored: Any, wanted: Any) -> Conflict | None:
        return None if stored == wanted else Conflict()

    def recorded(self, stored: Any, wanted: Any) -> Any:
        return wanted


class SameItems:
    """A list the folder takes only with the items it was made with, in any order (an ablation's seeds)."""

    def conflict(self, stored: Any, wanted: Any) -> Conflict | None:
        return None if sorted(stored) == sorted(wanted) else Conflict()

    def recorded(self, stored: Any, wanted: Any) -> Any:
        return sorted(wanted)


@dataclass(frozen=True)
class MayAdd:
    """A list the folder may gain items of, never lose one, because what it holds for an item stays in use:
    ``holds`` says what, with ``{items}`` for the dropped ones (e.g. a CV's seeds, whose models ``predict --run``
    averages). ``option`` gives the list on the command line. The folder records every item, sorted."""

    option: str
    holds: str

    def conflict(self, stored: Any, wanted: Any) -> Conflict | None:
        dropped = [item for item in stored if item not in wanted]
        if not dropped:
            return None
        holds = self.holds.replace("{items}", ", ".join(map(str, dropped)))  # not format: a path may hold braces
        noun = self.option.removeprefix("--")
        return Conflict(f"it holds {holds}, so {noun} may be added but not dropped",
                        f"{self.option} {' '.join(map(str, self.recorded(stored, wanted)))}")

    def recorded(self, stored: Any, wanted: Any) -> Any:
        return sorted({*stored, *wanted})


@dataclass(frozen=True)
class MayGainOrDrop:
    """A mapping the folder may gain or lose entries of (an ablation grid's cells, each in a folder of its own);
    an entry kept must not change. ``entry`` names one. The folder records every entry it was ever given, the
    dropped ones too: their folders stay, so one that comes back changed is a conflict."""

    entry: str

    def conflict(self, stored: Any, wanted: Any) -> Conflict | None:
        changed = [name for name in stored if name in wanted and stored[name] != wanted[name]]
        if not changed:
            return None
        return Conflict(f"its {self.entry}(s) {', '.join(changed)} changed, and {self.entry}s may be added or dropped"
                        " but not changed")

    def recorded(self, stored: Any, wanted: Any) -> Any:
        return {**stored, **wanted}


@dataclass(frozen=True)
class FolderCheck:
    """What :func:`check_folder_settings` decided: whether the call replaces the folder, and the settings the
    folder is to record once the call writes it (each setting as its rule merges the stored value with the new)."""

    replace: bool
    record: dict[str, Any]


def check_folder_settings(out: str | Path, record: str, settings: Mapping[str, Any], *, kind: str,
                          overwrite: bool | None = None, rules: Mapping[str, SettingRule] | None = None) -> FolderCheck:
    """Refuse to add to the results folder ``out`` (a CV, ablation or sweep folder) what other ``settings`` would make.

    ``record`` is the file in ``out`` that holds the settings it was made with; each setting is compared by its rule
    in ``rules``, by default :class:`Same`. A folder made with settings that conflict, or one that did not record
    one of them (made by an earlier emimic), is refused, unless ``overwrite=True``: then the folder is to be
    replaced (under :func:`provisional_output`). ``overwrite=None``: the command offers no ``--overwrite``. A
    non-empty folder without ``record`` is never emimic's, so it is refused either way."""
    rules = rules or {}
    assert rules.keys() <= settings.keys(), f"rules for no setting: {sorted(rules.keys() - settings.keys())}"
    out = Path(out)
    path = out / record
    if not path.exists():
        if out.exists() and any(out.iterdir()):
            raise ConfigError(f"{out} exists and is not an emimic {kind} folder; choose a new --out.")
        return FolderCheck(False, dict(settings))
    stored = json.loads(path.read_text(encoding="utf-8"))
    # a setting an earlier emimic did not record is not reused: whether it differs is unknown
    unrecorded = [key for key in sorted(settings) if key not in stored]
    conflicts = {key: conflict for key in sorted(settings) if key in stored
                 and (conflict := _rule(rules, key).conflict(stored[key], settings[key])) is not None}
    if (unrecorded or conflicts) and overwrite:
        return FolderCheck(True, dict(settings))
    offer = ", pass --overwrite to replace it," if overwrite is not None else ","
    if unrecorded:
        raise ConfigError(f"{out} was made by an earlier emimic, which did not record its {', '.join(unrecorded)}"
                          f" (see {path}); it cannot be checked against this run{offer} or choose a new --out.")
    if conflicts:
        raise ConfigError(_refusal(out, path, conflicts, offer))
    return FolderCheck(False, {key: _rule(rules, key).recorded(stored[key], value) for key, value in settings.items()})


def _rule(rules: Mapping[str, SettingRule], key: str) -> SettingRule:
    return rules.get(key) or Same()


def _refusal(out: Path, path: Path, conflicts: Mapping[str, Conflict], offer: str) -> str:
    """The one sentence refusing ``out`` for ``conflicts``: which settings, why (where a rule says), and what to do."""
    details = "; ".join(conflict.detail for conflict in conflicts.values() if conflict.detail)
    # a rule's own advice fits when its setting is the only one that conflicts
    rerun = next(iter(conflicts.values())).rerun if len(conflicts) == 1 else None
    return (f"{out} was made with other {', '.join(conflicts)}{': ' + details if details else ''} (see {path}); rerun"
            f" it with {rerun or 'the same options'}{offer} or choose a new --out.")


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
