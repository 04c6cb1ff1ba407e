"""Shared fixtures: tiny Vidmimic-style roots written from numpy, independent of the simulator, and
one small simulated corpus with signal plus one run trained on it, shared by the tests of learning."""

from __future__ import annotations

import importlib.util
import os
import pickle
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from emimic.data.simulate import SimulationSettings, simulate
from emimic.labels import EMOTIONS, clip_stem

if TYPE_CHECKING:
    from emimic.training.run import TrainResult

# 150 clips (90 train, 30 valid) with narrow features: simulated in under a second. The model's
# validation mean PCC is near 0.5 after a few seconds of training, far above chance.
LEARNING_CORPUS = SimulationSettings(clips=150, seed=0, face_dim=16, audio_dim=24, text_dim=12, face_fps=4.0,
                                     audio_fps=10.0)
# A high learning rate without weight decay on so few clips overfits within a few epochs: the validation
# score peaks, falls and early stopping ends the run, so selection and stopping are both exercised.
LEARNING_OVERRIDES: dict[str, object] = {"optim.batch_size": 16, "optim.lr": 1e-2, "optim.weight_decay": 0.0,
                                          "train.patience": 3}
LEARNING_MAX_EPOCHS = 30
BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def write_root(
    root: Path,
    *,
    train: int = 12,
    valid: int = 6,
    test: int = 4,
    dims: dict[str, int] | None = None,
    missing: dict[str, list[int]] | None = None,
    seed: int = 0,
) -> Path:
    """A small dataset root: pickled (T, D) arrays per modality and labelled split CSVs."""
    rng = np.random.default_rng(seed)
    dims = dims or {"vit": 8, "wav2vec2": 12}
    missing = missing or {}
    ids = np.arange(1, train + valid + test + 1) * 3
    labels = pd.DataFrame(rng.uniform(0, 1, (len(ids), len(EMOTIONS))), columns=list(EMOTIONS))
    labels.insert(0, "Filename", ids)
    root.mkdir(parents=True, exist_ok=True)
    labels.iloc[:train].to_csv(root / "train_split.csv", index=False)
    labels.iloc[train : train + valid].to_csv(root / "valid_split.csv", index=False)
    labels.iloc[train + valid :][["Filename"]].to_csv(root / "test_split.csv", index=False)
    for name, dim in dims.items():
        (root / name).mkdir(exist_ok=True)
        for clip_id in ids:
            if int(clip_id) in missing.get(name, []):
                continue
            frames = rng.normal(size=(int(rng.integers(3, 20)), dim)).astype(np.float32)
            with open(root / name / f"{clip_stem(clip_id)}.pkl", "wb") as handle:
                pickle.dump(frames, handle)
    return root


def import_benchmark(name: str) -> ModuleType:
    """The script ``benchmarks/NAME.py`` as a module, importing its sibling scripts as it does when run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCHMARKS))
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        patch.setitem(sys.modules, name, module)  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return module


def flat(text: str) -> str:
    """Console output with rich's line wrapping undone."""
    return " ".join(text.split())


def documented_commands(page: str, test: str) -> list[tuple[list[str], int]]:
    """The shell lines of the block marked ``<!-- executed by tests/TEST -->`` in ``docs/PAGE``, each with
    the exit status it expects (a ``# exit N`` comment; 0 without one)."""
    text = (Path(__file__).parents[1] / "docs" / page).read_text(encoding="utf-8")
    block = text.split(f"<!-- executed by tests/{test} -->", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.strip().splitlines():
        command, _, comment = line.partition("#")
        expected = int(comment.split("exit ", 1)[1].split(":")[0]) if "exit " in comment else 0
        commands.append((shlex.split(command), expected))
    return commands


@pytest.fixture
def make_root(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "root", **kwargs) -> Path:
        return write_root(tmp_path / name, **kwargs)

    return make


@pytest.fixture(scope="session")
def simulated_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The learning corpus; tests must not modify it (copy it first)."""
    root = tmp_path_factory.mktemp("learning") / "corpus"
    simulate(root, LEARNING_CORPUS, progress=False)
    return root


@pytest.fixture(scope="session")
def trained_run(simulated_root: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """The paper preset trained on the learning corpus (a few seconds); tests must not modify the run folder."""
    from emimic.training.run import train  # imported here: collecting the suite stays free of Lightning

    out = tmp_path_factory.mktemp("learning-run") / "run"
    return train(simulated_root, out, config="paper", seed=0, max_epochs=LEARNING_MAX_EPOCHS,
                 overrides=LEARNING_OVERRIDES, progress=False)


# -- commands stopped at a point of their work (tests/interruptible.py) -------------------------------------------

HELPER = Path(__file__).with_name("interruptible.py")
# Bounds on a loaded machine (interpreter start-up with torch, then the work up to the point), not delays.
REACH_SECONDS = 300.0


class HeldCommand(subprocess.Popen):
    """An ``emimic`` command stopped at a point of its work: :meth:`release` lets it go on from there."""

    release_file: Path

    def release(self) -> None:
        self.release_file.touch()


Hold = Callable[[list[str], str], HeldCommand]


@pytest.fixture
def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hold]:
    """``held(args, point)``: ``emimic ARGS`` started and stopped at ``point`` (see tests/interruptible.py);
    a command a failed test left running is killed."""
    started: list[HeldCommand] = []

    def run_to(args: list[str], point: str) -> HeldCommand:
        announcement = tmp_path_factory.mktemp("hold") / "reached"
        env = {
            **os.environ,
            "HOLD_AT": point,
            "HOLD_FILE": str(announcement),
            "HOLD_RELEASE": str(announcement.with_name("released")),
            "COLUMNS": "400",  # one message, one line: no wrapping by the console
            "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")]),
        }
        process = HeldCommand([sys.executable, str(HELPER), *args], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        process.release_file = announcement.with_name("released")
        started.append(process)
        wait_for(announcement.exists, process, point)
        return process

    yield run_to
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate()


def wait_for(condition: Callable[[], bool], process: subprocess.Popen, point: str) -> None:
    deadline = time.monotonic() + REACH_SECONDS
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the command ended before reaching {point}:\n{process.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the command did not reach {point} in {REACH_SECONDS:.0f} s")
        time.sleep(0.02)
