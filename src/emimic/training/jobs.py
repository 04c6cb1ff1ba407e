"""Run many independent trainings (CV folds, ablation cells, sweep workers): here, on local processes, or as Ray tasks.

Each job is a plain, picklable value and ``work(job)`` a module-level function that trains it into its
own run folder, so a job can run anywhere the run folder is reachable; ``report(job, result)`` is
called in this process as each one finishes (in finishing order), under one progress bar. The emimic
warnings a job raises elsewhere (e.g. leftover copies beside its run folder) come back with its result and
are raised again here, just before its report, so the CLI prints them as it prints its own; those of a job
that fails come back with its error and are raised here before it. Ctrl-C reaches the command and its local
worker processes alike: the command waits for the jobs in flight to stop, raises their warnings, and stops with one
:class:`~emimic.errors.Interrupted` saying what each of them kept. The warnings of Ray tasks stopped by Ctrl-C may
be lost.

Backends:

- ``local`` (default): ``workers`` <= 1 runs the jobs here one after another (with ``inline`` when
  given: it may reuse objects already open in this process); more run on that many spawned processes.
- ``ray``: each job is a Ray task of one CPU, on a Ray started here with ``workers`` CPUs
  (``ray_address`` ``local``) or on the cluster at ``ray_address`` (probed first, so a wrong address
  fails in seconds; see :mod:`emimic.features.backends`). Paths in the jobs must be absolute and
  visible to every node.

A job of ``cv`` or ``ablate`` is a :class:`TrainJob` (one ``train`` run folder), run by :func:`train_job`;
:func:`checked_run_folders` checks every run folder of a plan before any job trains, so a folder holding a run that
``train`` would refuse stops the command at once, not halfway through.

Example::

    from emimic.training.jobs import Runner, train_job
    results = Runner(workers=2).run(jobs, train_job, label="ablation runs", report=print)
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, as_completed, wait
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

from emimic.config import ExperimentConfig, with_overrides
from emimic.data import VidmimicDataset, open_dataset
from emimic.errors import ConfigError, EmimicWarning, Interrupted, emimic_warnings_to
from emimic.features.backends import check_ray_address, spawned_pool
from emimic.outputs import provisional_output
from emimic.progress import progress_bar
from emimic.training.run import LAST_CHECKPOINT, TrainResult, run_differences, train

Backend = Literal["local", "ray"]

J = TypeVar("J")
R = TypeVar("R")
TJ = TypeVar("TJ", bound="TrainJob")


# What a job sent elsewhere returns: its result, and the emimic warnings it raised, for this process to show.
Returned = tuple[R, list[EmimicWarning]]
# The attribute of a failed job's error that holds the warnings it raised (an exception's attributes travel with it).
_CAUGHT = "emimic_warnings"


def _with_warnings(work: Callable[[J], R], job: J) -> Returned[R]:
    """``work(job)`` in a worker process or a Ray task, with the emimic warnings it raised (e.g. leftovers beside
    its run folder): the command shows them as its own, in its own format (a worker would print them in Python's
    two-line one, and a Ray task, whose output is not relayed, not at all). A job that fails sends them with its
    error (see :func:`_warnings_of`): the command shows them, then stops with the error."""
    caught: list[EmimicWarning] = []
    try:
        with emimic_warnings_to(caught.append):
            result = work(job)
    except BaseException as exc:  # Ctrl-C too: an interrupted training (Interrupted) is a KeyboardInterrupt
        setattr(exc, _CAUGHT, caught)
        raise
    return result, caught


def _warnings_of(error: BaseException) -> list[EmimicWarning]:
    """The warnings a failed job sent with ``error`` (Ray wraps the job's own error as ``cause``)."""
    return getattr(error, _CAUGHT, None) or getattr(getattr(error, "cause", None), _CAUGHT, [])


def _raise_again(caught: list[EmimicWarning]) -> None:
    """Raise here the warnings a job raised elsewhere, so the CLI prints them as its own."""
    for warning in caught:
        warnings.warn(warning, stacklevel=3)


def _local(jobs: Sequence[J], work: Callable[[J], R], inline: Callable[[J], R],
           workers: int) -> Iterator[tuple[int, Returned[R]]]:
    if workers <= 1:
        for index, job in enumerate(jobs):
            yield index, (inline(job), [])  # here, its warnings are shown as they are raised
        return
    # workers keep Ctrl-C: an interrupted training keeps its resume point and stops (emimic.errors.Interrupted)
    with spawned_pool(workers) as pool:
        futures = {pool.submit(_with_warnings, work, job): index for index, job in enumerate(jobs)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except KeyboardInterrupt as interrupt:
            raise _stopped_together(list(futures), interrupt) from None


def _stopped_together(futures: list[Future], interrupt: KeyboardInterrupt) -> KeyboardInterrupt:
    """What Ctrl-C, which reaches the command and its workers alike, stopped: one :class:`Interrupted` saying what
    each job stopped by it kept, carrying their warnings (the command's own KeyboardInterrupt arrives first, and
    would otherwise throw theirs away); ``interrupt`` itself when no job was stopped. Waits for the jobs in flight,
    which stop on their own Ctrl-C, as leaving the pool would."""
    for future in futures:
        future.cancel()  # the queued ones: never started
    wait(futures)
    stopped = [f.exception() for f in futures if not f.cancelled() and isinstance(f.exception(), KeyboardInterrupt)]
    if not stopped:
        return interrupt
    combined = Interrupted(" ".join(dict.fromkeys(str(error) for error in stopped if str(error))))
    setattr(combined, _CAUGHT, [warning for error in stopped for warning in _warnings_of(error)])
    return combined


def _ray(jobs: Sequence[J], work: Callable[[J], R], address: str, workers: int) -> Iterator[tuple[int, Returned[R]]]:
    from emimic.features.backends import ray_session

    with ray_session(address, workers) as ray:
        remote = ray.remote(num_cpus=1)(_with_warnings)
        running = {remote.remote(work, job): index for index, job in enumerate(jobs)}
        while running:
            [ready], _ = ray.wait(list(running), num_returns=1)
            yield running.pop(ready), ray.get(ready)


@dataclass(frozen=True)
class Runner:
    """Where and how many jobs run at once (the ``--jobs``, ``--backend`` and ``--ray-address`` of a command)."""

    workers: int = 1
    backend: Backend = "local"
    ray_address: str | None = None  # backend ray: a cluster's address, or None for a Ray started here
    progress: bool = True

    def __post_init__(self) -> None:
        # before a command writes anything: a wrong address is one sentence, not a half-made results folder
        if self.backend == "ray":
            check_ray_address(self.ray_address or "local")
        elif self.ray_address is not None:
            raise ConfigError(f"--ray-address {self.ray_address} applies to --backend ray only; add --backend ray, or"
                              " drop --ray-address to run on local processes.")

    def run(self, jobs: Sequence[J], work: Callable[[J], R], *, inline: Callable[[J], R] | None = None,
            label: str = "models", report: Callable[[J, R], None] | None = None) -> list[R]:
        """``work(job)`` for every job; the results in the order of ``jobs``."""
        if self.backend == "ray":
            finished = _ray(jobs, work, self.ray_address or "local", self.workers)
        else:
            finished = _local(jobs, work, inline or work, self.workers)
        results: dict[int, R] = {}
        with progress_bar(self.progress) as bar:
            task = bar.add_task(label, total=len(jobs))
            try:
                for index, (result, caught) in finished:
                    _raise_again(caught)
                    results[index] = result
                    if report is not None:
                        report(jobs[index], result)
                    bar.advance(task)
            except BaseException as error:  # a job stopped by Ctrl-C sends its warnings too
                _raise_again(_warnings_of(error))
                raise
        return [results[index] for index in range(len(jobs))]


@dataclass(frozen=True)
class TrainJob:
    """One ``train`` run: plain, picklable values for a worker process or a Ray task. Paths are absolute, as a
    Ray node does not share this process's working folder (make one with :meth:`at`)."""

    root: str
    store_dir: str
    run: str
    seed: int
    config: ExperimentConfig
    replace: bool = field(default=False, kw_only=True)  # the run folder holds another run, to be replaced

    @classmethod
    def at(cls, ds: VidmimicDataset, run: Path, seed: int, config: ExperimentConfig, **details: Any) -> Self:
        """The job that trains ``config`` with ``seed`` on ``ds`` into the run folder ``run``."""
        return cls(str(Path(ds.root).resolve()), str(Path(ds.store_dir).resolve()), str(run.resolve()), seed, config,
                   **details)

    @property
    def label(self) -> str:
        """What the command prints for this run."""
        return Path(self.run).name

    def dataset(self, ds: VidmimicDataset | None = None) -> VidmimicDataset:
        """The dataset the run trains on: ``ds`` where this process has it open already, else the one at ``root``."""
        return ds if ds is not None else open_dataset(self.root, store_dir=self.store_dir)


def train_job(job: TrainJob, ds: VidmimicDataset | None = None) -> TrainResult:
    """Train ``job`` into its run folder (a finished one is returned as stored, an interrupted one resumes; with
    ``job.replace`` the run the folder holds is replaced)."""
    return train(job.dataset(ds), job.run, config=job.config, seed=job.seed, overwrite=job.replace, progress=False)


def run_conflict(job: TrainJob, ds: VidmimicDataset | None = None) -> list[str]:
    """How the run already in ``job``'s run folder differs from ``job``, or why it cannot be used (empty: the same
    run, or none that saved an epoch): what would make :func:`train_job` refuse it, found before anything is trained
    (see :func:`~emimic.training.run.run_differences`)."""
    return run_differences(job.run, job.dataset(ds), with_overrides(job.config, {"seed": job.seed}))


def checked_run_folders(jobs: Sequence[TJ], ds: VidmimicDataset, *, overwrite: bool,
                        refusal: Callable[[TJ, list[str]], str]) -> list[TJ]:
    """``jobs``, each checked against the run its folder holds before any of them trains: one that ``train`` would
    refuse (:func:`run_conflict`) is refused here with ``refusal(job, differences)`` (one sentence), or, with
    ``overwrite``, marked to replace just that run; the others are reused or resumed."""
    checked = []
    for job in jobs:
        found = run_conflict(job, ds)
        if found and not overwrite:
            raise ConfigError(refusal(job, found))
        checked.append(dataclasses.replace(job, replace=bool(found)))
    return checked


def distinct_seeds(seeds: Sequence[int]) -> list[int]:
    """``seeds`` without repeats, sorted (``--seeds 1 0`` asks for the same models as ``--seeds 0 1``); none at all
    is refused (a command of no model has nothing to report)."""
    distinct = sorted(set(seeds))
    if not distinct:
        raise ConfigError("no seeds were given; give at least one (--seeds 0).")
    return distinct


def results_folder(out: Path, *, replace: bool, kind: str) -> AbstractContextManager[None]:
    """Write the folder of many runs ``out`` (a ``kind``: CV, ablation, sweep) for good once one of its runs saved an
    epoch (see :func:`~emimic.outputs.provisional_output`): a command that fails before that leaves nothing, and a
    folder it replaces (``replace``: ``--overwrite``) is put back, as it is when the command ends without such a
    run."""
    return provisional_output(out, replace=replace, started=lambda: holds_a_started_run(out), kind=kind)


def holds_a_started_run(folder: Path) -> bool:
    """Whether a run anywhere under ``folder`` saved an epoch: what makes a folder of runs worth keeping."""
    return any(folder.rglob(LAST_CHECKPOINT.name))
