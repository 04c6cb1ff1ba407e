"""DDP on CPU with a sequence encoder: what each process of a 1- and a 2-process training builds, holds and spends.

Writes (or reuses) a corpus of ``--clips`` clips with ``bench_scale.write_corpus`` (wav2vec2 (T, 768) at 50
frames/s for 2-6 s, vit (T, 384) at 5 frames/s, a text vector; 60 % train, 20 % valid), packs it as float16,
then trains the ``gru`` preset (``model.encoder.max_frames`` = ``--max-frames``) for ``--epochs`` epochs with
``--devices 1`` and ``--devices 2`` (Lightning's own launcher, gloo, one torch thread per process,
``optim.batch_size`` 64 split over the processes). Every process reports, for its whole ``train()`` call:

* ``cached``: clips whose steps it cached (``chunked_steps``, counted once per clip and modality read, divided
  by the modalities), and the seconds that took;
* ``eval s``: seconds spent evaluating the saved run after training;
* ``private MB``: peak private memory (``RssAnon``, sampled every 50 ms; the memory-mapped frames are page
  cache, shared by the processes, and not counted);
* ``wall s`` and the validation mean PCC it returned.

Run: ``python benchmarks/bench_ddp.py [--clips 1500] [--epochs 3] [--max-frames 8] [--data DIR]``; the load
average is printed with the table (the machine is shared: seconds depend on it, clip counts do not).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import write_corpus

STORE = Path(".emimic") / "store-float16"
BATCH = 64


class Timed:
    """Wraps a function, adding up its seconds and ``size(args)`` over its calls."""

    def __init__(self, function: Callable, size: Callable[[tuple], int] = lambda args: 1):
        self.function, self.size, self.count, self.seconds = function, size, 0, 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.function(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started
            self.count += self.size(args)


class PeakPrivate(threading.Thread):
    """Samples this process's private memory (RssAnon) every 50 ms, keeping the largest value in MB."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_mb = 0.0

    def run(self) -> None:
        while True:
            with open("/proc/self/status") as status:
                kb = next(int(line.split()[1]) for line in status if line.startswith("RssAnon"))
            self.peak_mb = max(self.peak_mb, kb / 1024)
            time.sleep(0.05)


def phase_train(args: argparse.Namespace) -> None:
    """One training (every process of it runs this): prints this process's figures as one JSON line."""
    import emimic.data.dataset as dataset_module
    import emimic.training.run as run_module
    from emimic.data import open_dataset

    memory = PeakPrivate()
    memory.start()
    # chunked_steps(frames, starts, lengths, max_steps) computes the steps of len(lengths) clips
    cache = dataset_module.chunked_steps = Timed(dataset_module.chunked_steps, lambda call: len(call[2]))
    evaluation = run_module.evaluate = Timed(run_module.evaluate)
    ds = open_dataset(args.data, store_dir=args.data / STORE)
    started = time.perf_counter()
    result = run_module.train(ds, args.out, config="gru", seed=0, max_epochs=args.epochs, overwrite=True,
                              progress=False,
                              overrides={"train.devices": args.devices, "train.accelerator": "cpu", "train.threads": 1,
                                         "train.patience": 10_000, "optim.batch_size": BATCH // args.devices,
                                         "model.encoder.max_frames": args.max_frames})
    modalities = len(ds.store().modalities)
    print(json.dumps({"devices": args.devices, "rank": result.rank, "wall_s": time.perf_counter() - started,
                      "cached": cache.count // modalities, "cache_s": cache.seconds, "eval_s": evaluation.seconds,
                      "private_mb": memory.peak_mb, "mean_pcc": result.valid.mean_pcc}), flush=True)


def train_processes(args: argparse.Namespace, devices: int) -> list[dict]:
    """The figures of every process of one training with ``devices`` processes, by rank."""
    command = [sys.executable, __file__, "--phase", "train", "--data", str(args.data), "--epochs", str(args.epochs),
               "--max-frames", str(args.max_frames), "--devices", str(devices),
               "--out", str(args.data.parent / f"{args.data.name}-runs" / f"ddp{devices}")]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"training with {devices} processes failed:\n{done.stderr[-3000:]}")
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return sorted(rows, key=lambda row: row["rank"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-frames", type=int, default=8, help="model.encoder.max_frames of the gru preset")
    parser.add_argument("--data", type=Path, default=None, help="corpus folder (default: bench_data/ddp<clips>)")
    for hidden in ("--phase", "--out"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.data = args.data or Path(f"bench_data/ddp{args.clips}")
    if args.phase:
        phase_train(args)
        return
    if not (args.data / "test_split.csv").exists():
        write_corpus(args.data, args.clips, seed=0)
    if not (args.data / STORE).exists():
        from emimic.data.store import pack

        pack(args.data, dtype="float16", store_dir=args.data / STORE, progress=False)
    load = os.getloadavg()[0]
    rows = [row for devices in (1, 2) for row in train_processes(args, devices)]
    print(f"{args.clips} clips, gru, max_frames {args.max_frames}, {args.epochs} epochs; load average {load:.1f}"
          f" before, {os.getloadavg()[0]:.1f} after (2 cores)")
    print("processes  rank  cached clips  cache s  eval s  private MB  wall s  val mean PCC")
    for row in rows:
        print(f"{row['devices']:>9}  {row['rank']:>4}  {row['cached']:>12}  {row['cache_s']:>7.1f}"
              f"  {row['eval_s']:>6.1f}  {row['private_mb']:>10.0f}  {row['wall_s']:>6.1f}  {row['mean_pcc']:>12.4f}")


if __name__ == "__main__":
    main()
