"""Native libraries' info and warning lines (MediaPipe, TensorFlow Lite) stay off stderr; their errors and Python's
own output do not."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emimic.errors import DataError
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
    os.write(2, b"after\n")  # descriptor 2 is back where it was
    err = capfd.readouterr().err
    assert err.splitlines() == ["a Python warning", NATIVE_ERROR.decode().rstrip(),
                                "F0000 00:00:17.5 13983 check.cc:1] Check failed: x", "after"]


def test_threads_inside_together_leave_stderr_where_it_was(capfd: pytest.CaptureFixture) -> None:
    """The first thread out must not restore descriptor 2 while another is still inside (nor the last leave it on
    the filter's pipe)."""
    import threading

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
