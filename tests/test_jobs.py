"""The shared job runner of `cv` and `ablate`: local processes, and Ray tasks (dispatch checked with a stand-in
Ray: a real local Ray takes minutes to start on the 2 shared CPU cores the suite runs on)."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from conftest import write_root
from emimic.cli import main
from emimic.errors import ConfigError
from emimic.training.jobs import Runner


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
                self._results[ref] = function(*args)
                return ref

            return types.SimpleNamespace(remote=submit)

        return wrap

    def wait(self, refs: list[int], *, num_returns: int) -> tuple[list[int], list[int]]:
        return refs[-num_returns:], refs[:-num_returns]

    def get(self, ref: int) -> Any:
        return self._results[ref]


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
