"""``python tests/ddp_train.py ROOT OUT REPORTS``: ``emimic.train`` of the ``gru`` preset (a sequence encoder, so
loaders cache frames) on two CPU processes; Lightning's launcher starts the second by running this script again.

Each process writes ``REPORTS/rank<r>.json``: the TrainResult it returned, the clips its training and
validation loaders held, how many clips it cached the frames of (per modality read) and how often it
evaluated the saved run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

import emimic.data.dataset as dataset_module
import emimic.training.run as run_module


class Counted:
    """Wraps a function, adding up ``size(args)`` over its calls (default: counting the calls)."""

    def __init__(self, function: Callable, size: Callable[[tuple], int] = lambda args: 1):
        self.function, self.size, self.count = function, size, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.count += self.size(args)
        return self.function(*args, **kwargs)


class Loaders(pl.Callback):
    """The clip ids of the datasets behind this process's training and validation loaders."""

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.ids = {"train": trainer.train_dataloader.dataset.ids.tolist(),
                    "valid": trainer.val_dataloaders.dataset.ids.tolist()}
        self.modalities = len(pl_module.spec.inputs)


def main(root: str, out: str, reports: str) -> None:
    # chunked_steps(frames, starts, lengths, max_steps) computes the cache of len(lengths) clips
    cached = dataset_module.chunked_steps = Counted(dataset_module.chunked_steps, lambda args: len(args[2]))
    evaluations = run_module.evaluate = Counted(run_module.evaluate)
    loaders = Loaders()
    result = run_module.train(root, out, config="gru", seed=0, max_epochs=2, progress=False, callbacks=[loaders],
                              overrides={"optim.batch_size": 4, "train.devices": 2, "train.accelerator": "cpu"})
    report = {"result": {**result.to_dict(), "rank": result.rank, "has_clips": result.valid.clips is not None},
              "loaders": loaders.ids, "cached_clips": cached.count // loaders.modalities,
              "evaluations": evaluations.count}
    Path(reports, f"rank{result.rank}.json").write_text(json.dumps(report), encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:4])
