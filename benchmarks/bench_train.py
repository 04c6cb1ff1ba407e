"""Training and inference speed of the reference method on CPU.

Simulates a 15,000-clip corpus (8,000 train, 3,500 valid, 3,500 test; seed 0) once, then in
this process (``--threads`` torch threads, default 2, for everything but the model, which runs on
the config's ``train.threads``, one by default):

* trains the paper config for exactly ``--epochs`` epochs (early stopping off): seconds per
  epoch and in total (goal: <= 60 s for 30 epochs on 2 cores);
* predicts every clip of the corpus with the saved model: clips per second, median of three warm
  passes (goal: >= 10,000/s), and the first, cold pass;
* reports the peak RSS of the process.

Run: ``python benchmarks/bench_train.py [--threads 2] [--epochs 30] [--json bench_data/train.json]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch

CLIPS, TRAIN, VALID = 15_000, 8_000, 3_500


class EpochTimer(pl.Callback):
    """Wall time of every train epoch (its validation included)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._started = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("bench_data/train15k"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from emimic.data import open_dataset
    from emimic.data.simulate import ORACLE_FILE, SimulationSettings, simulate
    from emimic.training.inference import load_run, predict_ids
    from emimic.training.run import train

    if not (args.data / ORACLE_FILE).exists():
        started = time.perf_counter()
        settings = SimulationSettings(clips=CLIPS, seed=0, train_fraction=TRAIN / CLIPS, valid_fraction=VALID / CLIPS)
        simulate(args.data, settings, progress=False)
        print(f"simulated {CLIPS} clips in {time.perf_counter() - started:.0f} s")
    ds = open_dataset(args.data)
    started = time.perf_counter()
    store = ds.store(progress=False)
    pack_seconds = time.perf_counter() - started

    run = args.data.parent / "train15k-run"
    shutil.rmtree(run, ignore_errors=True)
    timer = EpochTimer()
    started = time.perf_counter()
    result = train(ds, run, config="paper", max_epochs=args.epochs, overrides={"train.patience": args.epochs},
                   progress=False, callbacks=[timer])
    total = time.perf_counter() - started

    trained = load_run(run)
    ids = np.sort(np.concatenate([frame.index.to_numpy() for frame in ds.splits.values()]))
    passes = []
    for _ in range(4):  # the first pass also pages the pooled statistics in from disk
        started = time.perf_counter()
        predict_ids(trained, store, ids)
        passes.append(time.perf_counter() - started)
    infer = float(np.median(passes[1:]))

    figures = {
        "process_threads": args.threads,
        "model_threads": trained.config.train.threads,  # what training and inference ran on (config)
        "train_clips": len(ds.splits["train"]),
        "epochs": len(timer.seconds),
        "seconds_per_epoch": float(np.mean(timer.seconds)),
        "train_seconds_fit": float(np.sum(timer.seconds)),
        "train_seconds_total": total,  # includes statistics, set-up and the final evaluation
        "pack_or_open_seconds": pack_seconds,
        "inference_clips_per_second": len(ids) / infer,  # median of three warm passes
        "inference_clips_per_second_cold": len(ids) / passes[0],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "valid_mean_pcc": result.valid.mean_pcc,
    }
    for key, value in figures.items():
        print(f"{key:28s} {value:.3f}" if isinstance(value, float) else f"{key:28s} {value}")
    print(f"goal <= 60 s for 30 epochs: {'PASS' if figures['train_seconds_fit'] <= 60 else 'FAIL'};"
          f" goal >= 10k clips/s: {'PASS' if figures['inference_clips_per_second'] >= 10_000 else 'FAIL'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
