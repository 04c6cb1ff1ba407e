"""The shared job runner of `cv` and `ablate`: local processes, and Ray tasks (dispatch checked with a stand-in
Ray: a real local Ray takes minutes to start on the 2 shared CPU cores the suite runs on); the defaults and the
--overwrite the two commands share."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import write_root
from emimic.cli import main
from emimic.defaults import ABLATION_MAX_EPOCHS
from emimic.errors import ConfigError, emimic_warnings_to
from emimic.outputs import LeftoverWarning
from emimic.training.ablate import ablate
from emimic.training.crossval import cross_validate
from emimic.training.jobs import Runner, _warnings_of


def double(job: int) -> int:
    return 2 * job


class StandInRay(types.ModuleType):
    """What emimic uses of the ``ray`` module; tasks run at once, and finish in the reverse order of submission."""

    def __init__(self) -> None:
        super().__init__("ray")
        self.started: dict[str, Any] | None = None
        self.stopped = False
        self.task_cpus: list[int] = []
        self._results: dict[int, Any] = {}

    def is_initialized(self) -> bool:
        return self.started is not None and not self.stopped

    def init(self, **options: Any) -> None:
        self.started = options

    def shutdown(self) -> None:
        self.stopped = True

    def remote(self, *, num_cpus: int):  # ray.remote(num_cpus=1)(function)
        def wrap(function):
            def submit(*args: Any) -> int:
                self.task_cpus.append(num_cpus)
                ref = len(self._results)
                try:
                    self._results[ref] = function(*args)
                except BaseException as error:  # Ray sends a task's error back pickled, and raises it on get
                    self._results[ref] = pickle.loads(pickle.dumps(error))
                return ref

            return types.SimpleNamespace(remote=submit)

        return wrap

    def wait(self, refs: list[int], *, num_returns: int) -> tuple[list[int], list[int]]:
        return refs[-num_returns:], refs[:-num_returns]

    def get(self, ref: int) -> Any:
        if isinstance(self._results[ref], BaseException):
            raise self.wrapped(self._results[ref])
        return self._results[ref]

    @staticmethod
    def wrapped(error: BaseException) -> BaseException:
        """What Ray's get raises for a task's ``error``: a ``RayTaskError`` that is also an instance of the error's
        class (``RayTaskError(ConfigError)``), without the error's attributes, which it holds as ``cause``."""
        wrapper = type(f"RayTaskError({type(error).__name__})", (RayTaskError, type(error)), {})
        raised = wrapper.__new__(wrapper, *error.args)
        BaseException.__init__(raised, *error.args)
        raised.cause = error
        return raised


class RayTaskError(Exception):
    """Ray's wrapper of a task's error (ray.exceptions.RayTaskError)."""

    cause: BaseException


@pytest.fixture
def ray(monkeypatch: pytest.MonkeyPatch) -> StandInRay:
    stand_in = StandInRay()
    monkeypatch.setitem(sys.modules, "ray", stand_in)
    return stand_in


def test_ray_runs_each_job_as_a_one_cpu_task_on_a_ray_started_here(ray: StandInRay) -> None:
    finished: list[int] = []
    results = Runner(workers=2, backend="ray", progress=False).run(
        [1, 2, 3], double, report=lambda job, result: finished.append(job))
    assert results == [2, 4, 6]  # in the order of the jobs, whatever order they finished in
    assert finished == [3, 2, 1] and ray.task_cpus == [1, 1, 1]
    assert ray.started == {"num_cpus": 2, "include_dashboard": False, "log_to_driver": False} and ray.stopped


def test_a_ray_address_where_nothing_answers_fails_in_seconds(ray: StandInRay) -> None:
    with pytest.raises(ConfigError, match=r"--ray-address 127.0.0.1:9: no Ray cluster answers there"):
        Runner(backend="ray", ray_address="127.0.0.1:9", progress=False).run([1], double)
    assert ray.started is None


def test_a_ray_address_without_the_ray_backend_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^--ray-address 10\.0\.0\.5:6379 applies to --backend ray only;"):
        Runner(workers=2, ray_address="10.0.0.5:6379")


def test_local_processes_return_the_results_in_job_order() -> None:
    assert Runner(workers=2, progress=False).run([3, 1, 2], double) == [6, 2, 4]


def warn_and_double(job: int) -> int:
    warnings.warn(f"job {job} found leftovers", LeftoverWarning, stacklevel=1)
    return 2 * job


def test_the_warnings_of_a_job_run_elsewhere_are_raised_again_here_before_its_report(ray: StandInRay) -> None:
    seen: list[str] = []
    with emimic_warnings_to(lambda warning: seen.append(str(warning))):
        Runner(workers=2, backend="ray", progress=False).run(
            [1, 2], warn_and_double, report=lambda job, result: seen.append(f"report {job}"))
    # a Ray task's output never reaches the command: its warnings must come back with its result
    assert seen == ["job 2 found leftovers", "report 2", "job 1 found leftovers", "report 1"]


def warn_then_fail(job: int) -> int:
    warnings.warn(f"job {job} found leftovers", LeftoverWarning, stacklevel=1)
    raise ConfigError(f"job {job} failed")


def test_the_warnings_of_a_job_that_fails_elsewhere_are_raised_here_before_its_error(ray: StandInRay) -> None:
    seen: list[str] = []
    with emimic_warnings_to(lambda warning: seen.append(str(warning))), pytest.raises(ConfigError, match="job 4"):
        Runner(workers=2, backend="ray", progress=False).run([4], warn_then_fail)
    assert seen == ["job 4 found leftovers"]


CTRL_C_SCRIPT = """
import sys, time, warnings
from pathlib import Path
from emimic.errors import emimic_warnings_to, explain_interrupt
from emimic.outputs import LeftoverWarning

def job(n):
    warnings.warn(f"job {n} found leftovers", LeftoverWarning, stacklevel=1)
    with explain_interrupt(lambda: f"job {n} kept its last epoch."):
        Path(sys.argv[1], f"started{n}").touch()
        time.sleep(60)

if __name__ == "__main__":
    from emimic.training.jobs import Runner
    seen = []
    try:
        with emimic_warnings_to(lambda warning: seen.append(str(warning))):
            Runner(workers=2, progress=False).run([1, 2], job)
    except KeyboardInterrupt as stopped:
        print(type(stopped).__name__, stopped, sorted(seen), sep="|")
"""


def test_ctrl_c_on_local_processes_says_what_each_stopped_job_kept_and_shows_its_warnings(tmp_path: Path) -> None:
    """The command's own KeyboardInterrupt came first and threw the workers' Interrupted errors away (and with
    them their warnings and what they kept)."""
    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C_SCRIPT, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE, text=True,
                               env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("started*"))) < 2 and time.monotonic() < deadline and command.poll() is None:
        time.sleep(0.1)
    os.killpg(command.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    out, _ = command.communicate(timeout=60)
    kind, message, seen = out.strip().split("|")
    assert kind == "Interrupted"
    assert message in ("job 1 kept its last epoch. job 2 kept its last epoch.",
                       "job 2 kept its last epoch. job 1 kept its last epoch.")
    assert seen == "['job 1 found leftovers', 'job 2 found leftovers']"


def test_a_ray_task_error_holds_the_warnings_in_its_cause() -> None:
    caught = ConfigError("job 6 failed")
    caught.emimic_warnings = [LeftoverWarning("job 6 found leftovers")]
    raised = StandInRay.wrapped(caught)
    assert isinstance(raised, ConfigError) and not hasattr(raised, "emimic_warnings")
    assert [str(w) for w in _warnings_of(raised)] == ["job 6 found leftovers"]


def test_a_command_of_many_runs_prints_each_distinct_warning_once(tmp_path: Path, capsys) -> None:
    """Every run of an ablation raised the same warning: 2 seeds x 2 cells printed it 4 times."""
    root = write_root(tmp_path / "root", train=16, valid=8)
    valid = pd.read_csv(root / "valid_split.csv")
    valid["Joy"] = 0.0
    valid.to_csv(root / "valid_split.csv", index=False)
    grid = tmp_path / "grid.yaml"
    grid.write_text("cells:\n  paper: {}\n  no_aux: {loss.aux: 0.0}\n", encoding="utf-8")
    assert main(["ablate", "--data", str(root), "--grid", str(grid), "--seeds", "0", "1", "--max-epochs", "1",
                 "--out", str(tmp_path / "ablation"), "--quiet"]) == 0
    assert capsys.readouterr().err.count("Joy 0") == 1


def test_cli_cv_and_ablate_dispatch_to_ray(ray: StandInRay, tmp_path: Path) -> None:
    root = write_root(tmp_path / "root", train=16, valid=8)
    assert main(["cv", "--data", str(root), "--folds", "2", "--max-epochs", "1", "--out", str(tmp_path / "cv"),
                 "--backend", "ray", "--jobs", "2", "--quiet"]) == 0
    assert ray.task_cpus == [1, 1] and ray.started["num_cpus"] == 2
    grid = tmp_path / "grid.yaml"
    grid.write_text("cells:\n  paper: {}\n", encoding="utf-8")
    assert main(["ablate", "--data", str(root), "--grid", str(grid), "--seeds", "0", "--max-epochs", "1",
                 "--out", str(tmp_path / "ablation"), "--backend", "ray", "--quiet"]) == 0
    assert ray.task_cpus == [1, 1, 1]


# ---------------------------------------------------------------- what cv and ablate share


class StopBeforeTraining(RuntimeError):
    """What the stand-in for ``train`` raises: the run fails before it writes anything."""


@pytest.fixture
def planned(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int]]:
    """(run folder, max epochs, seed) of each run a command hands to ``train``, which fails at once instead."""
    runs: list[tuple[str, int, int]] = []

    def fail(data: Any, run: str, *, config: Any, seed: int, overwrite: bool, progress: bool) -> None:
        runs.append((run, config.train.max_epochs, seed))
        raise StopBeforeTraining(run)

    monkeypatch.setattr("emimic.training.jobs.train", fail)
    return runs


@pytest.fixture(scope="module")
def small_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_root(tmp_path_factory.mktemp("jobs") / "root", train=16, valid=8, dims={"vit": 4})


def one_cell_grid(folder: Path) -> Path:
    grid = folder / "grid.yaml"
    grid.write_text("cells:\n  paper: {}\n", encoding="utf-8")
    return grid


def test_ablate_trains_the_same_epochs_from_python_and_from_the_command_line(
        small_root: Path, planned: list[tuple[str, int, int]], tmp_path: Path) -> None:
    grid = one_cell_grid(tmp_path)
    with pytest.raises(StopBeforeTraining):
        ablate(small_root, tmp_path / "python", grid=grid, seeds=[0], progress=False)
    assert main(["ablate", "--data", str(small_root), "--grid", str(grid), "--seeds", "0",
                 "--out", str(tmp_path / "cli"), "--quiet"]) == 1
    assert [epochs for _, epochs, _ in planned] == [ABLATION_MAX_EPOCHS] * 2 == [10, 10]  # the paper preset has 30
    # no run saved an epoch: nothing of either ablation is left, so a corrected command starts afresh
    assert not (tmp_path / "python").exists() and not (tmp_path / "cli").exists()


def test_cv_trains_the_config_seed_from_python_and_from_the_command_line_with_absolute_paths(
        small_root: Path, planned: list[tuple[str, int, int]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "seven.yaml").write_text("name: seven\nseed: 7\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # relative paths given: a job must still name absolute ones (a Ray node's own cwd)
    with pytest.raises(StopBeforeTraining):
        cross_validate(small_root, "python", folds=2, config="seven.yaml", progress=False)
    assert main(["cv", "--data", str(small_root), "--folds", "2", "--config", "seven.yaml", "--out", "cli",
                 "--quiet"]) == 1
    assert [seed for _, _, seed in planned] == [7, 7]
    assert [run for run, _, _ in planned] == [str(tmp_path / "python" / "fold1-seed7"),
                                              str(tmp_path / "cli" / "fold1-seed7")]
    assert not (tmp_path / "python").exists() and not (tmp_path / "cli").exists()


def test_cv_folds_a_corpus_without_a_valid_split(planned: list[tuple[str, int, int]], tmp_path: Path) -> None:
    root = write_root(tmp_path / "root", train=16, valid=0, dims={"vit": 4})
    (root / "valid_split.csv").unlink()
    with pytest.raises(StopBeforeTraining):  # the folder's data fingerprint covers the train split alone
        cross_validate(root, tmp_path / "cv", folds=2, progress=False)
    assert len(planned) == 1


@pytest.mark.parametrize("command", [ablate, cross_validate])
def test_no_seeds_at_all_are_refused_before_anything_is_packed_or_written(command: Any, tmp_path: Path) -> None:
    root = write_root(tmp_path / "root", train=8, valid=4, dims={"vit": 4})
    before = sorted(root.rglob("*"))
    with pytest.raises(ConfigError, match=r"^no seeds were given; give at least one \(--seeds 0\)\.$"):
        command(root, tmp_path / "out", seeds=[], progress=False)
    assert sorted(root.rglob("*")) == before  # no store packed into the root
    assert not (tmp_path / "out").exists()


# (options the folder is made with, other options, the settings file, what differs)
OVERWRITTEN = {
    "cv": (["--folds", "2"], ["--folds", "3"], "cv.json", "folds"),
    "ablate": (["--seeds", "0"], ["--seeds", "1"], "ablation.json", "seeds"),
}


@pytest.mark.parametrize("command", list(OVERWRITTEN))
def test_overwrite_replaces_a_folder_made_otherwise_and_keeps_it_if_the_new_run_fails_first(
        command: str, small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    made_with, other, record, differs = OVERWRITTEN[command]
    out = tmp_path / command
    common = [command, "--data", str(small_root), "--max-epochs", "1", "--out", str(out)]
    if command == "ablate":
        common += ["--grid", str(one_cell_grid(tmp_path))]
    assert main([*common, *made_with]) == 0
    settings = (out / record).read_text(encoding="utf-8")
    (out / "notes.txt").write_text("the old folder's", encoding="utf-8")
    printed = " ".join(capsys.readouterr().err.split())
    assert ": valid mean PCC " in printed and " clips), best epoch 1/1, trained in " in printed  # one line format

    assert main([*common, *other]) == 1
    assert f"{out} was made with other {differs} (see {out / record}); rerun it with the same options, pass" \
           " --overwrite to replace it, or choose a new --out." in " ".join(capsys.readouterr().err.split())

    def fail(*args: Any, **kwargs: Any) -> None:
        raise StopBeforeTraining

    with monkeypatch.context() as patch:
        patch.setattr("emimic.training.jobs.train", fail)
        assert main([*common, *other, "--overwrite"]) == 1
    assert (out / record).read_text(encoding="utf-8") == settings and (out / "notes.txt").exists()

    assert main([*common, *other, "--overwrite"]) == 0
    assert (out / record).read_text(encoding="utf-8") != settings and not (out / "notes.txt").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # the old folder, moved aside, is gone
