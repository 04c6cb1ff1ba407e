"""Ctrl-C and SIGKILL during `extract` and `pack`: the same command then completes, no partial
file remains and finished work is not redone. The commands run in a subprocess (tests/interruptible.py)
that stops at a named point of its work and announces it: the signal is sent once the announcement is
there, so it lands at that point on a loaded machine as on an idle one."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import Hold
from emimic.data import FeatureStore, pack
from emimic.data.store import default_store_dir
from emimic.features import EXTRACTORS, extract
from emimic.io import load_array
from interruptible import IMAGES, Slow

CLIPS = 8
EXIT_SECONDS = 120.0


def interrupt(process: subprocess.Popen) -> str:
    """Ctrl-C: the command's standard error once it has ended."""
    process.send_signal(signal.SIGINT)
    return process.communicate(timeout=EXIT_SECONDS)[1]


def kill(process: subprocess.Popen) -> None:
    process.kill()
    process.communicate(timeout=EXIT_SECONDS)


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
    videos: Path, held: Hold, monkeypatch: pytest.MonkeyPatch
) -> None:
    # clips 1 and 2 are finished, clip 3 has written crop 0 of its IMAGES and not crop 1
    kill(held(["extract", "--data", str(videos), "--modalities", "slow", "--quiet"], "slow_images/00003/1.jpg"))
    assert half_written_crops(videos), "the kill should land while a crop folder is half written"
    assert [p.name for p in finished_clips(videos)] == ["00001", "00002"]
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


def test_extract_ctrl_c_prints_what_was_kept_and_exits_130(videos: Path, held: Hold) -> None:
    # clip 1 is finished, clip 2 has written crop 0 of its IMAGES
    process = held(["extract", "--data", str(videos), "--modalities", "slow", "--quiet"], "slow_images/00002/1.jpg")
    err = interrupt(process)
    assert process.returncode == 130
    assert err.strip().splitlines() == [
        f"interrupted: extraction stopped with 1 of {CLIPS} clip(s) recorded; the features of every"
        f" finished clip are kept in {videos}; run the same command to resume."
    ]
    assert [p.name for p in finished_clips(videos)] == ["00001"]
    assert temporaries(videos) == []


# -- pack ---------------------------------------------------------------------------------------------


# `vit` is packed and committed to the manifest; `wav2vec2` is being written, its 10th clip of 22 next.
PACKING_SECOND_MODALITY = "wav2vec2/00030.pkl"


def test_pack_killed_then_rerun_keeps_the_finished_modality(make_root, held: Hold) -> None:
    root = make_root()
    store = default_store_dir(root)
    kill(held(["pack", str(root), "--quiet"], PACKING_SECOND_MODALITY))
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


def test_pack_ctrl_c_prints_what_was_kept_and_exits_130(make_root, held: Hold) -> None:
    root = make_root()
    store = default_store_dir(root)
    process = held(["pack", str(root), "--quiet"], PACKING_SECOND_MODALITY)
    err = interrupt(process)
    assert process.returncode == 130
    assert err.strip().splitlines() == [
        f"interrupted: packing stopped; the store {store} keeps vit (wav2vec2 to do); run the same command to resume."
    ]
    assert temporaries(store) == []


@pytest.mark.parametrize("where", ["selected_command", "build_parser"])
def test_a_ctrl_c_at_start_up_names_the_command_and_exits_130(monkeypatch, capsys, where: str) -> None:
    """Start-up (imports, the parser) takes seconds; a Ctrl-C there printed a traceback, and one in a command that
    explains nothing printed a bare 'interrupted'."""
    from emimic.cli import registry

    def interrupted(*_args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(registry, where, interrupted)
    assert registry.main(["train", "--data", "x", "--out", "y"]) == 130
    err = capsys.readouterr().err
    assert "interrupted: emimic train stopped before it finished; run the same command again." in " ".join(err.split())
