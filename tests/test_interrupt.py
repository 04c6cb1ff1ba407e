"""Ctrl-C and SIGKILL during `extract` and `pack`: the same command then completes, no partial
file remains and finished work is not redone. The commands run in a subprocess
(tests/interruptible.py) whose work is slowed down, so the signal lands at a known point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from emimic.data import FeatureStore, pack
from emimic.data.store import default_store_dir
from emimic.features import EXTRACTORS, extract
from emimic.io import load_array
from interruptible import IMAGES, Slow

HELPER = Path(__file__).with_name("interruptible.py")
CLIPS = 8


def start(args: list[str], *, delay: float) -> subprocess.Popen:
    env = {
        **os.environ,
        "SLOW_SECONDS": str(delay),
        "COLUMNS": "400",  # one message, one line: no wrapping by the console
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen([sys.executable, str(HELPER), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(condition: Callable[[], bool], process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the command ended before the signal:\n{process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the command never reached the point to interrupt")
        time.sleep(0.02)


def temporaries(root: Path) -> list[Path]:
    return sorted(root.rglob("*.tmp"))


# -- extract ------------------------------------------------------------------------------------------


@pytest.fixture
def videos(tmp_path: Path) -> Path:
    """A root with CLIPS placeholder videos: the `slow` extractor reads no media."""
    (tmp_path / "raw").mkdir()
    for clip_id in range(1, CLIPS + 1):
        (tmp_path / "raw" / f"{clip_id:05d}.mp4").write_bytes(b"")
    return tmp_path


def finished_clips(root: Path) -> list[Path]:
    folder = root / "slow_images"
    return sorted(p for p in folder.glob("[0-9]*") if p.is_dir()) if folder.is_dir() else []


def half_written_crops(root: Path) -> bool:
    return any(any(d.glob("*.jpg")) for d in (root / "slow_images").glob(".*.tmp"))


def test_extract_killed_then_rerun_completes_without_redoing_finished_clips(
    videos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    process = start(["extract", "--data", str(videos), "--modalities", "slow", "--quiet"], delay=0.15)
    wait_for(lambda: len(finished_clips(videos)) >= 2 and half_written_crops(videos), process)
    process.kill()
    process.wait()
    assert temporaries(videos), "the kill should land while a crop folder is half written"
    # the parameters are recorded before the first clip: a resume with other ones would be refused
    assert json.loads((videos / "slow" / "_extractor.json").read_text())["extractor"] == "slow"
    done = {p.name: p.stat().st_mtime_ns for p in finished_clips(videos)}
    arrays = {name: (videos / "slow" / f"{name}.npy").stat().st_mtime_ns for name in done}

    monkeypatch.setitem(EXTRACTORS, "slow", Slow)
    summary = extract(videos, "slow", progress=False)

    assert summary.loc["slow", ["done", "skipped", "failed"]].tolist() == [CLIPS - len(done), len(done), 0]
    assert temporaries(videos) == []
    assert {name: (videos / "slow_images" / name).stat().st_mtime_ns for name in done} == done
    assert {name: (videos / "slow" / f"{name}.npy").stat().st_mtime_ns for name in done} == arrays
    for clip_id in range(1, CLIPS + 1):
        assert (load_array(videos / "slow" / f"{clip_id:05d}.npy") == clip_id).all()
        assert len(list((videos / "slow_images" / f"{clip_id:05d}").glob("*.jpg"))) == IMAGES


def test_extract_ctrl_c_prints_what_was_kept_and_exits_130(videos: Path) -> None:
    process = start(["extract", "--data", str(videos), "--modalities", "slow", "--quiet"], delay=0.15)
    wait_for(lambda: len(finished_clips(videos)) >= 1, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    finished = len(finished_clips(videos))
    assert err.strip().splitlines() == [
        f"interrupted: extraction stopped with {finished} of {CLIPS} clip(s) recorded; the features of every"
        f" finished clip are kept in {videos}; run the same command to resume."
    ]
    assert temporaries(videos) == []


# -- pack ---------------------------------------------------------------------------------------------


def packing_second_modality(store: Path) -> bool:
    """`vit` is committed to the manifest and `wav2vec2` is being written."""
    manifest = store / "manifest.json"
    try:
        committed = json.loads(manifest.read_text())["modalities"] if manifest.is_file() else {}
    except json.JSONDecodeError:
        return False
    frames = [p / "frames.bin" for p in store.glob(".wav2vec2-*.tmp")]
    return "vit" in committed and any(f.is_file() and f.stat().st_size > 0 for f in frames)


def test_pack_killed_then_rerun_keeps_the_finished_modality(make_root) -> None:
    root = make_root()
    store = default_store_dir(root)
    process = start(["pack", str(root), "--quiet"], delay=0.03)
    wait_for(lambda: packing_second_modality(store), process)
    process.kill()
    process.wait()
    assert temporaries(store), "the kill should land while wav2vec2 is half packed"
    vit = store / json.loads((store / "manifest.json").read_text())["modalities"]["vit"]["dir"]
    before = (vit.stat().st_ino, (vit / "frames.bin").stat().st_mtime_ns)

    result = pack(root, progress=False)

    assert result.actions == {"vit": "unchanged", "wav2vec2": "packed"}
    assert (vit.stat().st_ino, (vit / "frames.bin").stat().st_mtime_ns) == before
    assert temporaries(store) == []
    packed = FeatureStore.open(store)
    for name in ("vit", "wav2vec2"):
        for clip_id in (3, 30, 66):
            np.testing.assert_array_equal(packed.frames(name, clip_id), load_array(root / name / f"{clip_id:05d}.pkl"))


def test_pack_ctrl_c_prints_what_was_kept_and_exits_130(make_root) -> None:
    root = make_root()
    store = default_store_dir(root)
    process = start(["pack", str(root), "--quiet"], delay=0.03)
    wait_for(lambda: packing_second_modality(store), process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert err.strip().splitlines() == [
        f"interrupted: packing stopped; the store {store} keeps vit (wav2vec2 to do); run the same command to resume."
    ]
    assert temporaries(store) == []
