"""Two commands writing the same folders at once: the second is refused, or waits for the first and reuses its work;
neither deletes or half-reads what the other is writing. The first command runs in a subprocess stopped at a named
point of its work (tests/interruptible.py), the second in the test; the first is let go on (or killed) only once the
second has found the folder held, so no sleep has to outlast a race."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
import re
import shutil
import struct
import threading
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import emimic.data.store
import emimic.features.ledger
import emimic.infer
import emimic.outputs
from conftest import HeldCommand, Hold, flat
from emimic.cli.registry import main
from emimic.config import load_config
from emimic.data import FeatureStore, pack
from emimic.data.store import default_store_dir
from emimic.errors import OutputConflict
from emimic.features import EXTRACTORS, ClipInput, Output, extract
from emimic.features.ledger import LedgerWriter
from emimic.features.pipeline import start_records
from emimic.features.runner import ClipReport, Outcome
from emimic.infer import CLIP_COLUMN, infer
from emimic.labels import EMOTIONS, write_split
from emimic.outputs import UnlockedWarning, WaitingWarning, exclusive_output, exclusive_outputs
from emimic.report import write_report
from emimic.training import evaluate, train
from emimic.training.ablate import Grid, ablate
from emimic.training.sweep import SearchSpace, sweep
from interruptible import Slow
from test_interrupt import CLIPS, EXIT_SECONDS, PACKING_SECOND_MODALITY, half_written_crops, temporaries

# The first command has finished clips 1 and 2 and is writing the crops of clip 3.
WRITING_CLIP_3 = "slow_images/00003/1.jpg"


class Other(Slow):
    """Another modality of the same root, which cannot read clip 2."""

    name = "other"

    def outputs(self) -> tuple[Output, ...]:
        return (Output("other", "frame", "clip id"),)

    def _process(self, clip: ClipInput) -> dict[str, object]:
        if clip.clip_id == 2:
            raise ValueError("clip 2 cannot be read")
        return {"other": pd.DataFrame(np.full((2, 3), clip.clip_id, np.float32))}


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CLIPS placeholder videos (the `slow` extractor reads no media) with labels, and the test's own extractors."""
    monkeypatch.setitem(EXTRACTORS, Slow.name, Slow)
    monkeypatch.setitem(EXTRACTORS, Other.name, Other)
    root = tmp_path / "root"
    (root / "raw").mkdir(parents=True)
    for clip_id in range(1, CLIPS + 1):
        (root / "raw" / f"{clip_id:05d}.mp4").write_bytes(b"")
    labels = pd.DataFrame(np.random.default_rng(0).uniform(size=(CLIPS, 6)), index=range(1, CLIPS + 1),
                          columns=list(EMOTIONS))
    write_split(labels.iloc[: CLIPS // 2], root / "train_split.csv")
    write_split(labels.iloc[CLIPS // 2:], root / "valid_split.csv")
    return root


@pytest.fixture
def short_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Waits for a held store or cache bounded by 1 min, not 30: a first command that failed to release fails the
    test in a minute."""
    monkeypatch.setattr(emimic.data.store, "LOCK_WAIT_SECONDS", 60.0)
    monkeypatch.setattr(emimic.infer, "LOCK_WAIT_SECONDS", 60.0)


def release_once_waiting(first: HeldCommand, monkeypatch: pytest.MonkeyPatch) -> None:
    """Let ``first`` go on as soon as the test's command has found the folder held (and starts waiting for it)."""
    try_lock = emimic.outputs._try_flock

    def try_then_release(handle, mode: int) -> bool:
        locked = try_lock(handle, mode)
        if not locked:
            first.release()
        return locked

    monkeypatch.setattr(emimic.outputs, "_try_flock", try_then_release)


def packing(held: Hold, root: Path) -> tuple[Path, HeldCommand]:
    """The default store of ``root`` and an ``emimic pack`` of it, held as it packs its second modality."""
    return default_store_dir(root), held(["pack", str(root), "--quiet"], PACKING_SECOND_MODALITY)


def ended_well(command: HeldCommand) -> None:
    """Let ``command`` go on (if the test's command has not yet) and check that it succeeded."""
    command.release()
    _, err = command.communicate(timeout=EXIT_SECONDS)
    assert command.returncode == 0, err


def done_rows(root: Path, extractor: str) -> list[int]:
    ledger = pd.read_csv(root / "_extract" / "ledger.csv")
    return sorted(ledger.loc[(ledger["extractor"] == extractor) & (ledger["status"] == "done"), "clip"])


def test_a_second_extract_of_the_same_modality_is_refused_and_the_first_finishes_untouched(
    root: Path, held: Hold, capsys: pytest.CaptureFixture
) -> None:
    """The second used to delete the first one's half-written crops as leftovers, and both wrote every clip."""
    first = held(["extract", "--data", str(root), "--modalities", "slow", "--quiet"], WRITING_CLIP_3)
    assert main(["extract", "--data", str(root), "--modalities", "slow", "--quiet"]) == 1
    assert flat(capsys.readouterr().err) == (f"error: {root / 'slow'}: another emimic extract is writing this folder"
                                             " now; wait until it ends, or extract other modalities meanwhile.")
    assert half_written_crops(root)
    ended_well(first)
    assert done_rows(root, "slow") == list(range(1, CLIPS + 1)) and temporaries(root) == []


def test_extracts_of_other_modalities_into_one_root_run_at_once_and_keep_each_others_failures(
    root: Path, held: Hold
) -> None:
    """The one that ended last replaced errors.csv with its own failures: the other's were lost."""
    first = held(["extract", "--data", str(root), "--modalities", "slow", "--quiet"], WRITING_CLIP_3)
    summary = extract(root, "other", progress=False)
    assert summary.loc["other", ["done", "failed"]].tolist() == [CLIPS - 1, 1]
    ended_well(first)
    errors = pd.read_csv(root / "_extract" / "errors.csv")
    assert errors[["clip", "extractor"]].values.tolist() == [[2, "other"]]
    assert "clip 2 cannot be read" in errors["error"][0]
    assert done_rows(root, "slow") == list(range(1, CLIPS + 1))
    assert done_rows(root, "other") == [c for c in range(1, CLIPS + 1) if c != 2]


def test_a_pack_beside_a_pack_waits_for_it_and_reuses_the_store_it_finished(make_root, held: Hold, short_waits: None,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The second used to delete the first one's half-packed modality as a leftover and pack everything again."""
    root = make_root()
    store, first = packing(held, root)
    release_once_waiting(first, monkeypatch)
    waiting = rf"^{re.escape(str(store))}: another emimic command is packing this feature store now; waiting for it"
    with pytest.warns(WaitingWarning, match=waiting + r" to end, for at most 1 min\.$"):
        result = pack(root, progress=False)
    assert result.actions == {"vit": "unchanged", "wav2vec2": "unchanged"}
    ended_well(first)
    assert FeatureStore.open(store).frames("wav2vec2", 30).shape[0] > 0


def test_a_train_waits_a_bounded_time_for_a_pack_of_its_store_then_says_so(make_root, held: Hold, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A train into another --out used to pack the same store at once, deleting what the pack was writing."""
    root = make_root()
    store, first = packing(held, root)
    monkeypatch.setattr(emimic.data.store, "LOCK_WAIT_SECONDS", 0.5)
    refused = (rf"^{re.escape(str(store))}: another emimic command is packing this feature store now, still after 0.5 s"
               r" of waiting; run this command again when it has ended\.$")
    with pytest.warns(WaitingWarning), pytest.raises(OutputConflict, match=refused):
        train(root, tmp_path / "run", max_epochs=1, progress=False)
    assert temporaries(store) and not (tmp_path / "run").exists()
    ended_well(first)
    assert train(root, tmp_path / "run", max_epochs=1, progress=False).epochs == 1


def test_two_infers_of_the_same_videos_both_succeed_and_extract_each_clip_once(
    root: Path, held: Hold, tmp_path: Path, short_waits: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two notebooks predicting the same videos share one cache: the second deleted what the first was writing."""
    extract(root, "slow", progress=False)
    run = tmp_path / "run"
    train(root, run, max_epochs=1, progress=False)
    videos = tmp_path / "videos"
    shutil.copytree(root / "raw", videos)
    monkeypatch.setenv("EMIMIC_CACHE", str(tmp_path / "cache"))

    first = held(["infer", "--run", str(run), str(videos), "--out", str(tmp_path / "first.csv"), "--quiet"],
                 WRITING_CLIP_3)
    release_once_waiting(first, monkeypatch)
    with pytest.warns(WaitingWarning, match=r"another emimic infer of the same features of the same videos is"
                                            r" extracting them into this cache now; waiting for it to end, for at most"
                                            r" 1 min\.$"):
        second = infer(run, [videos], progress=False)
    ended_well(first)
    firsts = pd.read_csv(tmp_path / "first.csv", dtype={CLIP_COLUMN: str})
    assert list(second.predictions[CLIP_COLUMN]) == list(firsts[CLIP_COLUMN]) == [f"{c:05d}" for c in range(1, 9)]
    np.testing.assert_allclose(second.predictions[list(EMOTIONS)], firsts[list(EMOTIONS)], atol=1e-6)
    assert done_rows(second.cache, "slow") == list(range(1, CLIPS + 1))  # the second extracted none again


def test_without_flock_a_command_holding_several_and_nested_folders_warns_once(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """An infer holds its cache, then extracts and packs inside it: one warning, not one per folder."""
    monkeypatch.setattr(emimic.outputs, "fcntl", None)
    cache = tmp_path / "cache"
    with (
        pytest.warns(UnlockedWarning, match=r"^this system has no flock, so emimic cannot lock") as caught,
        exclusive_outputs([cache, tmp_path / "other"], emimic.outputs.Hold("infer")),
        exclusive_outputs([cache / "egemaps", cache / "egemaps_func"], emimic.outputs.Hold("extract")),
    ):
        pass
    assert len(caught) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no lock file, no folder made for one


def test_an_open_store_keeps_what_it_needs_when_a_pack_replaces_its_files(make_root) -> None:
    """A train opened the store, a pack then replaced it: the fingerprint of the run read a deleted sources.csv."""
    root = make_root()
    opened = FeatureStore.open(pack(root, progress=False).store_dir)
    digest = opened.content_digest("vit")
    pack(root, dtype="float16", progress=False)  # every modality packed anew, the old folders deleted
    assert opened.content_digest("vit") == digest == FeatureStore.open(opened.path).content_digest("vit")
    clips = opened.ids("vit")[:2]  # the digest a run records: the clips it trained and validated on
    assert opened.content_digest("vit", clips) == FeatureStore.open(opened.path).content_digest("vit", clips)
    assert opened.frames("vit", 3).shape[0] > 0


def test_a_store_being_packed_is_opened_once_the_pack_has_finished(make_root, held: Hold, short_waits: None,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Opened meanwhile it held the modalities packed so far: a train would have read vit without wav2vec2."""
    root = make_root()
    store, first = packing(held, root)
    release_once_waiting(first, monkeypatch)
    with pytest.warns(WaitingWarning, match=rf"^{re.escape(str(store))}: another emimic command is packing"):
        opened = FeatureStore.open(store)
    assert opened.modalities == ["vit", "wav2vec2"]
    ended_well(first)


def test_commands_opening_one_store_together_read_it_at_once_with_no_warning(make_root,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """DDP ranks, --jobs workers, an evaluate beside a train: each waited for the others' exclusive lock, warning
    falsely that another command was packing the store."""
    store = pack(make_root(), progress=False).store_dir
    readers = 3
    inside = threading.Barrier(readers, timeout=20.0)  # passed only while every reader holds the store at once
    read_manifest = emimic.data.store._read_manifest

    def read_together(folder: Path) -> dict | None:
        inside.wait()
        return read_manifest(folder)

    monkeypatch.setattr(emimic.data.store, "_read_manifest", read_together)
    monkeypatch.setattr(emimic.data.store, "LOCK_WAIT_SECONDS", 10.0)  # a reader that waits fails fast
    opened: list[FeatureStore] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        threads = [threading.Thread(target=lambda: opened.append(FeatureStore.open(store))) for _ in range(readers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert [str(w.message) for w in caught] == []
    assert [s.modalities for s in opened] == [["vit", "wav2vec2"]] * readers
    assert sorted(p.name for p in store.parent.iterdir()) == ["store"]  # the last reader removed .store.lock


def test_a_reader_ending_first_leaves_the_lock_file_the_other_reader_holds(tmp_path: Path) -> None:
    """Removed, a pack would have made a new lock file and written the store while the other reader read it."""
    folder = tmp_path / "store"
    refusals: list[str] = []

    def in_another_thread(hold: emimic.outputs.Hold) -> None:
        def hold_once() -> None:
            try:
                with exclusive_outputs([folder], hold):
                    pass
            except OutputConflict as refused:
                refusals.append(str(refused))

        thread = threading.Thread(target=hold_once)
        thread.start()
        thread.join()

    with exclusive_outputs([folder], emimic.outputs.Hold("evaluate", shared=True)):
        in_another_thread(emimic.outputs.Hold("evaluate", shared=True))
        in_another_thread(emimic.outputs.Hold("pack"))
    assert len(refusals) == 1 and "another emimic pack is writing this folder now" in refusals[0]
    assert list(tmp_path.iterdir()) == []  # the last reader removed it


def nfs_like_flock(exclusive_tried: threading.Barrier) -> SimpleNamespace:
    """``fcntl`` with flock as an NFS mount emulates it, by POSIX locks of the open file (``F_OFD_SETLK``): a shared
    lock turns into an exclusive one atomically, and stays when that fails. Every exclusive try waits at
    ``exclusive_tried`` before and after it, so that readers ending together each try before any of them closes its
    file."""
    kinds = {fcntl.LOCK_SH: fcntl.F_RDLCK, fcntl.LOCK_EX: fcntl.F_WRLCK, fcntl.LOCK_UN: fcntl.F_UNLCK}

    def posix_lock(handle: io.IOBase, mode: int) -> None:
        kind = kinds[mode & ~fcntl.LOCK_NB]
        command = fcntl.F_OFD_SETLKW if kind != fcntl.F_UNLCK and not mode & fcntl.LOCK_NB else fcntl.F_OFD_SETLK
        try:
            fcntl.fcntl(handle.fileno(), command, struct.pack("hhqqi4x", kind, os.SEEK_SET, 0, 0, 0))
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise BlockingIOError(exc.errno, exc.strerror) from None
            raise

    def flock(handle: io.IOBase, mode: int) -> None:
        if mode & ~fcntl.LOCK_NB != fcntl.LOCK_EX:
            return posix_lock(handle, mode)
        exclusive_tried.wait()
        try:
            return posix_lock(handle, mode)
        finally:
            exclusive_tried.wait()

    return SimpleNamespace(flock=flock, **{name: getattr(fcntl, name) for name in ("LOCK_SH", "LOCK_EX", "LOCK_UN",
                                                                                     "LOCK_NB")})


@pytest.mark.skipif(not hasattr(fcntl, "F_OFD_SETLK"), reason="open file description locks are Linux's")
def test_readers_ending_together_remove_the_lock_file_where_locks_convert_atomically(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each turned its shared lock into an exclusive one to see whether it was the last, failed for the other's, and
    left .store.lock behind."""
    folder = tmp_path / "store"
    monkeypatch.setattr(emimic.outputs, "fcntl", nfs_like_flock(threading.Barrier(2, timeout=10.0)))
    reading = threading.Barrier(2, timeout=10.0)

    def read() -> None:
        with exclusive_outputs([folder], emimic.outputs.Hold("evaluate", shared=True)):
            reading.wait()

    threads = [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert list(tmp_path.iterdir()) == []


def test_a_holder_of_a_lock_file_removed_meanwhile_leaves_the_new_one_alone(tmp_path: Path) -> None:
    """Two holders ending together: the first removed the file, a pack made it anew and held it, and the second,
    finding its own (removed) file free, removed the pack's: a third command would have locked a new file and
    written the store beside the pack."""
    folder, lock_file = tmp_path / "store", tmp_path / ".store.lock"
    packing, finish = threading.Event(), threading.Event()

    def pack_meanwhile() -> None:
        with exclusive_outputs([folder], emimic.outputs.Hold("pack")):
            packing.set()
            finish.wait(10.0)

    pack = threading.Thread(target=pack_meanwhile)
    with exclusive_outputs([folder], emimic.outputs.Hold("evaluate", shared=True)):
        lock_file.unlink()  # what the other holder's release did
        pack.start()
        assert packing.wait(10.0)
    assert lock_file.exists()  # the pack's, which it holds
    finish.set()
    pack.join()
    assert list(tmp_path.iterdir()) == []


def test_a_store_beside_which_nothing_can_be_written_is_opened_without_a_lock(make_root,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only root packed earlier: its store is read as it is, with no warning that it cannot be locked."""
    store = pack(make_root(), progress=False).store_dir
    unwritable = OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(emimic.data.store, "write_failure", lambda f: unwritable if f == store.parent else None)

    def no_lock_file(path: Path):  # what trying to lock it there would meet
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(emimic.outputs, "_open_lock_file", no_lock_file)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert FeatureStore.open(store).modalities == ["vit", "wav2vec2"]


def test_without_flock_a_store_is_opened_with_no_warning(make_root, monkeypatch: pytest.MonkeyPatch) -> None:
    """On Windows evaluate, predict and report, which write nothing, each warned that they could not lock."""
    store = pack(make_root(), progress=False).store_dir
    monkeypatch.setattr(emimic.outputs, "fcntl", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert FeatureStore.open(store).modalities == ["vit", "wav2vec2"]


def test_a_folder_this_process_holds_is_refused_at_once_to_this_process(tmp_path: Path) -> None:
    """It waited for itself the whole bound, then blamed another emimic command."""
    store, waiting = tmp_path / "store", emimic.outputs.Hold("pack", wait=5.0)
    refused = (rf"^{re.escape(str(store))}: this process holds this folder already, for a command that has not ended;"
               r" run this emimic pack after that one, not inside it\.$")
    started = time.monotonic()
    with (
        exclusive_outputs([store], waiting),
        pytest.raises(OutputConflict, match=refused),
        exclusive_outputs([tmp_path / "other", store], waiting),
    ):
        pass
    assert time.monotonic() - started < 4.0
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # the first hold's lock file removed, no other made


def test_two_threads_writing_one_folder_are_two_commands(tmp_path: Path) -> None:
    """A notebook training into one folder from two threads: the second is another writer, refused as another
    process's train is (not told that it runs inside the first), and a folder beside it is its own."""
    run = tmp_path / "run"
    outcomes: list[str] = []

    def train_in_a_thread(folder: Path) -> None:
        try:
            with exclusive_output(folder, command="train"):
                outcomes.append("held")
        except OutputConflict as refused:
            outcomes.append(str(refused))

    with exclusive_output(run, command="train"):
        for folder in (run, tmp_path / "other"):
            thread = threading.Thread(target=train_in_a_thread, args=(folder,))
            thread.start()
            thread.join()
    assert outcomes == [f"{run}: another emimic train is writing this folder now; wait until it ends, or choose"
                        " another --out.", "held"]


def test_a_lock_file_another_command_removes_while_it_is_checked_is_locked_anew(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The holder before this command removed the file it locked; a third one made a new file, then removed it
    between the two looks at it: FileNotFoundError, with a traceback."""
    folder = tmp_path / "run"
    lock_file, real_stat, looks = emimic.outputs._lock_path(folder), os.stat, []

    def third_command_between(path, *args, **kwargs):
        if Path(path) != lock_file or looks:
            return real_stat(path, *args, **kwargs)
        looks.append(path)
        lock_file.unlink()  # the holder before, ending
        lock_file.touch()  # the third command's file, seen now ...
        seen = real_stat(path, *args, **kwargs)
        lock_file.unlink()  # ... and removed as it ends
        return seen

    monkeypatch.setattr(os, "stat", third_command_between)
    with exclusive_outputs([folder], emimic.outputs.Hold("train")):
        assert looks and lock_file.exists()  # held through the file that is there now
    assert list(tmp_path.iterdir()) == []


def test_a_command_that_does_not_wait_is_not_refused_for_a_readers_probe_of_its_folder(tmp_path: Path) -> None:
    """A pack probing whether an extract held the modality (a shared lock, a moment) made an extract that started
    then refuse, saying that another extract was writing it."""
    folder = tmp_path / "vit"
    with open(emimic.outputs._lock_path(folder), "a+b") as probe:
        fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
        threading.Timer(0.1, probe.close).start()  # the probe ends
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with exclusive_outputs([folder], emimic.outputs.Hold("extract")):
                assert probe.closed


def test_ctrl_c_while_waiting_closes_the_lock_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file stayed open (and its flock attempts with it) until the process ended."""
    folder = tmp_path / "run"
    with open(emimic.outputs._lock_path(folder), "a+b") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another command holds the folder
        opened, real_open, try_lock = [], emimic.outputs._open_lock_file, emimic.outputs._try_flock

        def recorded(path: Path):
            opened.append(real_open(path))
            return opened[-1]

        def interrupted_on_second_try(handle, mode: int) -> bool:
            if tries := getattr(handle, "tries", 0):
                raise KeyboardInterrupt  # Ctrl-C while waiting
            handle.tries = tries + 1
            return try_lock(handle, mode)

        monkeypatch.setattr(emimic.outputs, "_open_lock_file", recorded)
        monkeypatch.setattr(emimic.outputs, "_try_flock", interrupted_on_second_try)
        with (pytest.warns(WaitingWarning), pytest.raises(KeyboardInterrupt),
              exclusive_outputs([folder], emimic.outputs.Hold("train", wait=60.0))):
            pass
    assert len(opened) == 1 and opened[0].closed


def test_ctrl_c_while_the_lock_file_is_made_removes_the_folders_made_for_it(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent folders made only to hold the lock file stayed, empty."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(emimic.outputs, "open", interrupted, raising=False)  # Ctrl-C once the parents are made
    with pytest.raises(KeyboardInterrupt), exclusive_outputs([tmp_path / "runs" / "a" / "run"],
                                                             emimic.outputs.Hold("train")):
        pass
    assert list(tmp_path.iterdir()) == []


def test_a_lock_file_another_user_left_is_locked_read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening it for appending failed (EACCES), and every later command ran unlocked after a warning."""
    folder = tmp_path / "run"
    lock_file = emimic.outputs._lock_path(folder)
    lock_file.touch()  # left by another user's command, killed
    real_open = open

    def other_users(path, mode="r", *args, **kwargs):  # tests run as root, whom permission bits do not stop
        if Path(path) == lock_file and mode != "rb":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(emimic.outputs, "open", other_users, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no UnlockedWarning
        with (exclusive_outputs([folder], emimic.outputs.Hold("train")), real_open(lock_file, "rb") as second,
              pytest.raises(BlockingIOError)):
            fcntl.flock(second, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: another command would be refused


def test_two_extracts_starting_together_on_a_new_root_write_one_ledger_header(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Both found the ledger empty and both wrote its header, the second one amid the first one's lines."""
    state = tmp_path / "_extract"
    together = threading.Barrier(2, timeout=1.0)  # both inside at once, or the first one alone for a second
    real_open = open

    def open_then_meet(*args, **kwargs):
        handle = real_open(*args, **kwargs)
        with contextlib.suppress(threading.BrokenBarrierError):
            together.wait()
        return handle

    monkeypatch.setattr(emimic.features.ledger, "open", open_then_meet, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WaitingWarning)  # the second one waits for the first
        starts = [threading.Thread(target=start_records, args=(state,)) for _ in range(2)]
        for thread in starts:
            thread.start()
        for thread in starts:
            thread.join()
    assert (state / "ledger.csv").read_text() == "clip,extractor,status,reason,seconds,params\n"


def test_a_ledger_line_cut_short_by_the_system_is_written_whole(tmp_path: Path) -> None:
    """A write of fewer bytes than asked (a signal, a disk filling up) left the rest of the line unwritten."""
    class ShortWrites(io.RawIOBase):
        def __init__(self) -> None:
            self.written = b""

        def writable(self) -> bool:
            return True

        def write(self, data) -> int:
            self.written += bytes(data[:7])
            return min(len(data), 7)

    handle = ShortWrites()
    ledger = LedgerWriter(handle, lambda clip, extractor: "key", {3: "raw/00003.mp4"})
    ledger.record(ClipReport(3, [Outcome("vit", "done", seconds=0.5), Outcome("egemaps", "failed", "no audio")]))
    assert handle.written.decode() == "3,vit,done,,0.500,key\r\n3,egemaps,failed,no audio,0.000,key\r\n"


def test_ablate_and_sweep_beside_an_extract_of_a_modality_none_of_their_runs_reads_skip_it(
    root: Path, held: Hold, tmp_path: Path
) -> None:
    """They were refused beside an extract of any modality, even one no cell or trial of theirs reads."""
    extract(root, "other", progress=False)
    first = held(["extract", "--data", str(root), "--modalities", "slow", "--quiet"], WRITING_CLIP_3)
    slow_folder = re.escape(str(root / "slow"))
    skipped = rf"^{slow_folder}: an emimic extract is writing it now and this command does not read it"
    refused = rf"^{slow_folder}: an emimic extract is writing this modality now"
    other, slow = {"model.modalities": ["other"]}, {"model.modalities": ["slow"]}
    options = dict(seeds=[0], max_epochs=1, progress=False)
    with pytest.warns(emimic.data.store.HeldModalityWarning, match=skipped):
        ablate(root, tmp_path / "ablation", grid=Grid(base="default", reference="other", cells={"other": other}),
               **options)
    with pytest.raises(OutputConflict, match=refused):  # a cell reads it
        ablate(root, tmp_path / "ablation", grid=Grid(base="default", reference="other",
                                                      cells={"other": other, "slow": slow}), **options)
    config = load_config("default", overrides=other)
    rate = {"optim.lr": {"type": "float", "low": 1e-3, "high": 2e-3}}
    with pytest.warns(emimic.data.store.HeldModalityWarning, match=skipped):
        sweep(root, tmp_path / "sweep", trials=1, config=config, space=SearchSpace.model_validate({"params": rate}),
              max_epochs=1, progress=False)
    observed = {"model.vad.observed": {"type": "categorical", "choices": ["other", "slow"]}}
    with pytest.raises(OutputConflict, match=refused):  # a trial may read it, as its observed VAD prior
        sweep(root, tmp_path / "sweep", trials=2, config=config, space=SearchSpace.model_validate({"params": observed}),
              max_epochs=1, progress=False, overwrite=True)
    ended_well(first)
    # the finished extract is packed now: the folders, whose runs do not read it, resume (they were refused as made
    # with other data, their digest covering every modality)
    ablate(root, tmp_path / "ablation", grid=Grid(base="default", reference="other", cells={"other": other}),
           **options)
    sweep(root, tmp_path / "sweep", trials=1, config=config, space=SearchSpace.model_validate({"params": rate}),
          max_epochs=1, progress=False)


def test_a_pack_while_an_extract_writes_a_modality_is_refused_at_once(root: Path, held: Hold) -> None:
    """It packed the clips extracted so far and the store held the others as missing, with no word said."""
    first = held(["extract", "--data", str(root), "--modalities", "slow", "--quiet"], WRITING_CLIP_3)
    refused = (rf"^{re.escape(str(root / 'slow'))}: an emimic extract is writing this modality now; wait for it to"
               r" end, then run this command again\.$")
    with pytest.raises(OutputConflict, match=refused):
        pack(root, progress=False)
    assert not (root / ".emimic").exists()  # no empty store left, nor the folder made for it
    ended_well(first)
    assert len(FeatureStore.open(pack(root, progress=False).store_dir).ids("slow")) == CLIPS


def test_an_evaluate_beside_an_extract_of_a_modality_it_does_not_read_skips_it_with_a_warning(
    root: Path, held: Hold, tmp_path: Path
) -> None:
    """evaluate and predict repack a stale store first: they were refused while any modality was being extracted."""
    extract(root, "other", progress=False)
    run = tmp_path / "run"
    train(root, run, max_epochs=1, progress=False, overrides={"model.modalities": ["other"]})
    first = held(["extract", "--data", str(root), "--modalities", "slow", "--quiet"], WRITING_CLIP_3)
    skipped = (rf"^{re.escape(str(root / 'slow'))}: an emimic extract is writing it now and this command does not"
               r" read it, so it is not packed \(the store keeps what it held of it\); pack it once the extract has"
               r" ended\.$")
    with pytest.warns(emimic.data.store.HeldModalityWarning, match=skipped):
        assert evaluate(run, root).n_clips == CLIPS // 2
    with pytest.warns(emimic.data.store.HeldModalityWarning, match=skipped):  # its data check opens the store too
        write_report([run], tmp_path / "report", data=root)
    assert FeatureStore.open(default_store_dir(root)).modalities == ["other"]
    refused = rf"^{re.escape(str(root / 'slow'))}: an emimic extract is writing this modality now"
    with pytest.raises(OutputConflict, match=refused):  # a train of every modality found would read it
        train(root, tmp_path / "every", max_epochs=1, progress=False)
    with pytest.warns(emimic.data.store.HeldModalityWarning, match=skipped):  # one of model.modalities would not
        train(root, tmp_path / "other", max_epochs=1, progress=False, overrides={"model.modalities": ["other"]})
    ended_well(first)
