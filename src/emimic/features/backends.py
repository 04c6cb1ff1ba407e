"""Where the clips of an extraction run: in-process, on a pool of local processes, or as Ray tasks.

Each backend takes the :class:`~emimic.features.runner.Task` list and yields one
:class:`~emimic.features.runner.ClipReport` per clip as it finishes; a worker that dies fails its
clip, never the run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any

from emimic.errors import ConfigError
from emimic.features.runner import ClipReport, ExtractSpec, Outcome, Task, run_clip


def _init_pool_worker(threads: int) -> None:
    # Before torch/opencv are imported in this process, so their pools take the per-worker share.
    os.environ["OMP_NUM_THREADS"] = str(threads)
    # Ctrl-C reaches the whole process group: the main process alone stops the run (and finishes
    # the clips in flight), instead of every worker printing a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def spawned_pool(workers: int, initializer: Callable[..., None] | None = None,
                 initargs: tuple[Any, ...] = ()) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``workers`` spawned processes (not forked: forked children would inherit half-initialised
    thread pools of torch/mediapipe). On leaving it, by Ctrl-C or an error too, the queued work is dropped
    instead of being run first; work in flight finishes (or stops on its own Ctrl-C)."""
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=initializer,
                               initargs=initargs)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_local(spec: ExtractSpec, tasks: list[Task], workers: int) -> Iterator[ClipReport]:
    if workers <= 1:
        for task in tasks:
            yield run_clip(spec, *task)
        return
    with spawned_pool(workers, _init_pool_worker, (spec.threads,)) as pool:
        futures = {pool.submit(run_clip, spec, *task): task for task in tasks}
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as exc:  # a crashed worker fails its clips, not the run
                yield crashed(futures[future], exc)


def crashed(task: Task, exc: BaseException) -> ClipReport:
    """The report of a clip whose worker died (a native crash, out of memory)."""
    clip_id, _, pending = task
    reason = f"worker failed: {type(exc).__name__}: {exc}"
    return ClipReport(clip_id, [Outcome(name, "failed", reason) for name in pending])


RAY_PROBE_SECONDS = 5.0
_NO_CLUSTER = "start one with `ray start --head` or drop --ray-address"


def check_ray_address(address: str) -> None:
    """Fail in seconds when no Ray cluster answers at ``address``: ``ray.init`` itself retries for minutes.

    ``local`` starts a Ray here and ``auto`` finds a running one (Ray fails fast on that itself);
    ``HOST:PORT`` and ``ray://HOST:PORT`` are probed with one TCP connection.
    """
    if address in ("local", "auto"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not (sep and host and port.isdigit()):
        raise ConfigError(f"--ray-address {address!r} is not HOST:PORT, ray://HOST:PORT or auto (e.g. 10.0.0.5:6379).")
    try:
        socket.create_connection((host, int(port)), timeout=RAY_PROBE_SECONDS).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"--ray-address {address}: no Ray cluster answers there ({reason}); {_NO_CLUSTER}.") from None


@contextlib.contextmanager
def ray_session(address: str, workers: int) -> Iterator[Any]:
    """The ``ray`` module, connected for the duration of the block: ``local`` starts a Ray of ``workers`` CPUs
    here, anything else joins that cluster (probe it first with :func:`check_ray_address`: ``ray.init``
    retries for minutes). A Ray started here is shut down afterwards; one already running is left alone."""
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        if address == "local":
            ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
        else:
            try:
                ray.init(address=address, log_to_driver=False)
            except ConnectionError as exc:
                raise ConfigError(f"--ray-address {address}: {' '.join(str(exc).split())} ({_NO_CLUSTER}).") from None
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()


def run_ray(spec: ExtractSpec, tasks: list[Task], address: str, workers: int) -> Iterator[ClipReport]:
    with ray_session(address, workers) as ray:
        remote = ray.remote(num_cpus=1)(run_clip)
        spec_ref = ray.put(spec)
        # A bounded window of tasks in flight keeps the driver's memory flat on 15k-clip corpora.
        window = max(2, 2 * int(ray.cluster_resources().get("CPU", workers)))
        queue = list(reversed(tasks))
        running: dict[Any, Task] = {}
        while queue or running:
            while queue and len(running) < window:
                task = queue.pop()
                running[remote.remote(spec_ref, *task)] = task
            [ready], _ = ray.wait(list(running), num_returns=1)
            task = running.pop(ready)
            try:
                yield ray.get(ready)
            except Exception as exc:  # a lost worker or node fails its clip, not the run
                yield crashed(task, exc)
