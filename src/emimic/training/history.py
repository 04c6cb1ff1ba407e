"""Per-epoch record of a run: a compact console line and ``history.csv`` in the run folder.

The rows live in the callback's state, so they travel in the checkpoint and a resumed run
continues the same file instead of starting a new one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback

from emimic.io import atomic_path
from emimic.training.module import SplitPCC, synced_pcc

MONITOR = "val/pcc_mean"


RAW_MONITOR = "val/pcc_mean_raw"


class History(Callback):
    """With ``raw_weights=True`` (EMA runs) each row also holds the validation mean PCC of the raw weights:
    validation itself sees the averaged ones, so this costs one extra forward pass over the validation
    clips per epoch (measured on the demo: 0.06 s of a 0.8 s epoch; see docs/report.md)."""

    def __init__(self, path: str | Path, *, verbose: bool = True, raw_weights: bool = False):
        self.path = Path(path)
        self.verbose = verbose
        self.raw_weights = raw_weights
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # validation of this epoch has run by now (Lightning validates before the train epoch ends)
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if self.raw_weights and trainer.val_dataloaders is not None:
            metrics[RAW_MONITOR] = raw_weights_pcc(trainer.val_dataloaders, pl_module)
        row = {"epoch": trainer.current_epoch + 1, **dict(sorted(metrics.items()))}
        self.rows.append(row)  # on every process: the rows travel in the checkpoint
        if not trainer.is_global_zero:
            return
        with atomic_path(self.path) as tmp:
            pd.DataFrame(self.rows).to_csv(tmp, index=False, float_format="%.6f")
        if self.verbose:
            best = max((r.get(MONITOR, -math.inf) for r in self.rows), default=math.nan)
            line = (
                f"epoch {row['epoch']:>3}/{trainer.max_epochs}  loss {metrics.get('train/loss', math.nan):.4f}"
                f"  val loss {metrics.get('val/loss', math.nan):.4f}"
                f"  val PCC {metrics.get(MONITOR, math.nan):z.4f}  best {best:z.4f}"
            )
            bar = trainer.progress_bar_callback
            if bar is not None and hasattr(bar, "print"):
                bar.print(line)
            else:
                print(line)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict["rows"])


@torch.no_grad()
def raw_weights_pcc(loader: Iterable[dict[str, Any]], pl_module: pl.LightningModule) -> float:
    """Validation mean PCC of the weights the optimiser holds (after validation swapped the EMA ones out).

    Under DDP each process scores its own validation clips and the PCC is computed over all of them
    (every process must call this)."""
    was_training = pl_module.training
    pl_module.eval()
    metric = SplitPCC().to(pl_module.device)
    for batch in loader:
        batch = pl_module.transfer_batch_to_device(batch, pl_module.device, 0)
        metric.update(pl_module(batch["inputs"]).pred, batch["targets"])
    pl_module.train(was_training)
    return float(synced_pcc(metric).mean())
