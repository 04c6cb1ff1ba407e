"""Per-epoch record of a run: a compact console line and ``history.csv`` in the run folder.

The rows live in the callback's state, so they travel in the checkpoint and a resumed run
continues the same file instead of starting a new one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pandas as pd
from lightning.pytorch.callbacks import Callback

from emimic.io import atomic_path

MONITOR = "val/pcc_mean"


class History(Callback):
    def __init__(self, path: str | Path, *, verbose: bool = True):
        self.path = Path(path)
        self.verbose = verbose
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # validation of this epoch has run by now (Lightning validates before the train epoch ends)
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        row = {"epoch": trainer.current_epoch + 1, **dict(sorted(metrics.items()))}
        self.rows.append(row)
        with atomic_path(self.path) as tmp:
            pd.DataFrame(self.rows).to_csv(tmp, index=False, float_format="%.6f")
        if self.verbose:
            best = max((r.get(MONITOR, -math.inf) for r in self.rows), default=math.nan)
            line = (
                f"epoch {row['epoch']:>3}/{trainer.max_epochs}  loss {metrics.get('train/loss', math.nan):.4f}"
                f"  val loss {metrics.get('val/loss', math.nan):.4f}"
                f"  val PCC {metrics.get(MONITOR, math.nan):.4f}  best {best:.4f}"
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
