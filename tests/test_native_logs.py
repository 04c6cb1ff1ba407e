"""Native libraries' info and warning lines (MediaPipe, TensorFlow Lite) stay off stderr; their errors and Python's
own output do not."""

from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from emimic.errors import DataError
from emimic.features import native_logs, vision
from emimic.features.native_logs import quiet_native_logs

MEDIA = Path(__file__).parent / "media"
CHATTER = (b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
           b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
           b"W0000 00:00:1795719504.735923   13983 inference_feedback_manager.cc:114] Feedback manager requires a"
           b" model with a single signature inference.\n"
           b"I20231107 20:04:23.744423 377746 face_landmarker_graph.cc:168] Sets acceleration to Xnnpack.\n")
NATIVE_ERROR = b"E0000 00:00:1795719504.780240   13983 calculator_graph.cc:887] INTERNAL: graph failed\n"


def test_chatter_is_dropped_and_errors_and_exceptions_reach_the_user(capfd: pytest.CaptureFixture) -> None:
    with pytest.raises(DataError, match=r"^clip\.mp4: one sentence\.$"), quiet_native_logs():
        os.write(2, CHATTER + NATIVE_ERROR + b"F0000 00:00:17.5 13983 check.cc:1] Check failed: x\n")
        print("a Python warning", file=sys.stderr)
        raise DataError("clip.mp4: one sentence.")
    os.write(2, b"after\n")  # descriptor 2 is back where it was, what was held written before
    lines = capfd.readouterr().err.splitlines()
    # pytest's sys.stderr writes to its capture directly, not through descriptor 2: it may come first.
    assert [line for line in lines if line != "a Python warning"] == [
        NATIVE_ERROR.decode().rstrip(), "F0000 00:00:17.5 13983 check.cc:1] Check failed: x", "after"]
    assert lines.count("a Python warning") == 1


def test_python_lines_through_descriptor_2_keep_their_place_among_the_native_ones(tmp_path: Path) -> None:
    script = ("import os, sys\nfrom emimic.features.native_logs import quiet_native_logs\n"
              "with quiet_native_logs():\n"
              "    os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\nE0000 first\\n')\n"
              "    print('second', file=sys.stderr)\n    os.write(2, b'E0000 third\\n')\n"
              "print('fourth', file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0 and done.stderr.splitlines() == ["E0000 first", "second", "E0000 third", "fourth"]


def test_threads_inside_together_leave_stderr_where_it_was(capfd: pytest.CaptureFixture) -> None:
    """The first thread out must not restore descriptor 2 while another is still inside (nor the last leave it on
    the capture file)."""
    inside, leave = threading.Barrier(2), threading.Event()

    def second() -> None:
        with quiet_native_logs():
            inside.wait()
            leave.wait()
            os.write(2, CHATTER + b"second\n")

    thread = threading.Thread(target=second)
    thread.start()
    with quiet_native_logs():
        inside.wait()
    leave.set()
    thread.join()
    os.write(2, b"after\n")
    assert capfd.readouterr().err.splitlines() == ["second", "after"]


def test_extract_quiet_prints_nothing_on_stderr_with_the_real_facemesh(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    shutil.copy(MEDIA / "00001.mp4", tmp_path / "raw" / "00001.mp4")
    done = subprocess.run([sys.executable, "-m", "emimic", "extract", "--data", str(tmp_path), "--modalities", "face",
                           "--fps", "2", "--quiet"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and (tmp_path / "facemesh" / "00001.npy").is_file()


@pytest.mark.parametrize("where", ["capture", "entered", "release"])
def test_a_ctrl_c_entering_or_leaving_leaves_stderr_working(where: str, capfd: pytest.CaptureFixture,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A KeyboardInterrupt right after descriptor 2 went to the capture file, or from Python's stderr's flush on
    leaving, must not leave it there (nor a later window take the capture file for the terminal)."""
    real_dup2 = os.dup2

    def dup2_then_interrupt(fd: int, fd2: int) -> None:
        real_dup2(fd, fd2)
        raise KeyboardInterrupt

    class Interrupted(io.StringIO):
        def flush(self) -> None:
            raise KeyboardInterrupt

    def capture_then_interrupt(capture: Callable[[], None]) -> None:
        capture()
        raise KeyboardInterrupt

    python_stderr, terminal = sys.stderr, os.fstat(2)
    with pytest.raises(KeyboardInterrupt):
        if where in ("capture", "entered"):  # inside the capture, or once it is done but not yet entered
            if where == "capture":
                monkeypatch.setattr(native_logs.os, "dup2", dup2_then_interrupt)
            else:
                monkeypatch.setattr(native_logs._CAPTURE, "_capture", functools.partial(
                    capture_then_interrupt, native_logs._CAPTURE._capture))
            with quiet_native_logs():
                pass
        else:
            with quiet_native_logs():
                os.write(2, b"inside\n")
                sys.stderr = Interrupted()  # what leaving flushes
    monkeypatch.undo()
    sys.stderr = python_stderr
    assert (os.fstat(2).st_dev, os.fstat(2).st_ino) == (terminal.st_dev, terminal.st_ino)  # not captured any more
    os.write(2, b"after Ctrl-C\n")
    with quiet_native_logs():
        os.write(2, CHATTER + b"second window\n")
    os.write(2, b"after\n")
    expected = ["after Ctrl-C", "second window", "after"]
    assert capfd.readouterr().err.splitlines() == (["inside", *expected] if where == "release" else expected)


def test_facemesh_goes_through_the_filter_only_until_its_first_face(monkeypatch: pytest.MonkeyPatch,
                                                                    capfd: pytest.CaptureFixture) -> None:
    """MediaPipe's chatter comes while its graph is built, on its first frame and its first face: a fatal line or a
    crash's traceback later must reach stderr, not a file that dies with the process."""
    terminal = os.fstat(2)
    captured: list[bool] = []  # per graph built, then per frame: whether descriptor 2 was captured

    def is_captured() -> bool:
        return (os.fstat(2).st_dev, os.fstat(2).st_ino) != (terminal.st_dev, terminal.st_ino)

    class Mesh:
        def process(self, frame: np.ndarray) -> SimpleNamespace:
            captured.append(is_captured())
            face = SimpleNamespace(landmark=[SimpleNamespace(x=0.5, y=0.5, z=0.0)] * 478)
            return SimpleNamespace(multi_face_landmarks=[face] if frame.any() else None)

    @functools.cache
    def face_mesh() -> Mesh:
        captured.append(is_captured())
        return Mesh()

    monkeypatch.setattr(vision, "_face_mesh", face_mesh)
    black, face = np.zeros((2, 4, 4, 3), np.uint8), np.ones((2, 4, 4, 3), np.uint8)
    found = vision.detect_landmarks(np.concatenate([black, face]))
    assert [points is None for points in found] == [True, True, False, False]
    assert captured == [True, True, True, True, False]  # built, 2 without a face, the first face; then the terminal
    vision.detect_landmarks(np.concatenate([black, face]))  # the next clip
    assert captured[5:] == [False] * 4
    face_mesh.cache_clear()  # a new graph chatters again
    vision.detect_landmarks(face)
    assert captured[9:] == [True, True, False]
    assert not is_captured()
