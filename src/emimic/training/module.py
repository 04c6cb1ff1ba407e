"""The LightningModule: builds the model from plain dicts (config + model spec), so a checkpoint
is self-describing and loads with ``torch.load(weights_only=True)``; trains with the
multi-objective loss; validates with the challenge metric.

The validation PCC is :func:`emimic.metrics.pearson_per_dimension`, the metric ``evaluate`` reports, constant-column
rule included: each process keeps the predictions and labels of its own validation clips (float64, under mixed
precision too; a few numbers per clip) and ``compute()`` gathers those of every process (an all-gather), so under DDP
the score is the PCC over the whole split, exactly as one process computes it, never a mean of per-process PCCs.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor
from torchmetrics import MeanMetric, Metric
from torchmetrics.utilities import dim_zero_cat

from emimic.config import ExperimentConfig
from emimic.labels import EMOTIONS
from emimic.metrics import pearson_per_dimension
from emimic.models.emi import ModelOutput, ModelSpec, build_model
from emimic.training.losses import EMILoss


class SplitPCC(Metric):
    """Per-emotion Pearson correlation over every clip seen, by :func:`emimic.metrics.pearson_per_dimension`: the
    score ``evaluate`` reports, so a column constant by its rule (:data:`emimic.labels.CONSTANT_STD`) scores 0 here
    too (torchmetrics' ``PearsonCorrCoef`` judged constancy by a rule of its own, relative to the spread); a column
    with a non-finite prediction scores 0. The clips' predictions and labels are kept, and gathered from every
    process on ``compute``."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")

    def update(self, preds: Tensor, targets: Tensor) -> None:
        self.preds.append(preds.detach().double())
        self.targets.append(targets.double())

    def compute(self) -> Tensor:
        preds, targets = dim_zero_cat(self.preds), dim_zero_cat(self.targets)
        scores = torch.as_tensor(pearson_per_dimension(preds, targets), device=preds.device)
        # a column with a NaN/Inf prediction scores 0, not the PCC of its other clips: a diverging model must not be
        # selected (evaluate refuses such predictions rather than scoring them)
        return torch.where(torch.isfinite(preds).all(dim=0), scores, torch.zeros_like(scores))


def pcc_column(emotion: str) -> str:
    """The name the validation PCC of ``emotion`` is logged under (a ``history.csv`` column)."""
    return f"val/pcc_{emotion.lower().replace(' ', '_')}"


def synced_pcc(metric: SplitPCC) -> Tensor:
    """``(6,)`` PCC over every clip the processes saw, then reset. Every process must call it (it gathers).

    A constant column scores 0, not NaN, as in :func:`emimic.metrics.pearson_per_dimension` (which computes it), so
    a degenerate model is uninformative rather than breaking model selection."""
    scores = metric.compute()
    metric.reset()
    return scores


class EMIModule(pl.LightningModule):
    """``EMIModule(config=cfg.model_dump(mode="json"), spec=spec.to_dict(), data=store_identity)``."""

    def __init__(self, config: dict[str, Any], spec: dict[str, Any], data: dict[str, Any] | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.cfg = ExperimentConfig.model_validate(config)
        self.spec = ModelSpec.from_dict(spec)
        self.net = build_model(self.spec, self.cfg.model)
        self.loss = EMILoss(self.cfg.loss)
        self.val_pcc = SplitPCC()
        self.val_loss = MeanMetric()

    def forward(self, inputs: dict[str, dict[str, Tensor]]) -> ModelOutput:
        return self.net(inputs)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if device.type == "cpu":  # batches are built on the CPU: skip Lightning's recursive walk of the dicts
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    @contextlib.contextmanager
    def _step_random_stream(self) -> Iterator[None]:
        """Dropout, modality dropout and the VAD sample of a training step draw from a stream seeded by
        (seed, step, process), not from whatever else consumed the random state, so a resumed run repeats
        the uninterrupted one exactly. The stream is forked off: the process's global random state (which
        user callbacks, samplers and Lightning share) is the same after the step as before it. (A private
        ``torch.Generator`` cannot reach ``nn.Dropout``, hence the fork.)"""
        cuda = self.device.type == "cuda"
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self._trainer is not None else (1, 0)
        with torch.random.fork_rng(devices=[self.device] if cuda else [], device_type=self.device.type):
            torch.manual_seed((self.cfg.seed * 1_000_003 + self.global_step) * world + rank)
            yield

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        weights = batch["weights"] if self.cfg.loss.sample_weights != "none" else None
        with self._step_random_stream():
            parts = self.loss(self.net(batch["inputs"]), batch["targets"], weights)
        size = len(batch["targets"])
        self.log_dict({f"train/{k}": v.detach() for k, v in parts.items()}, on_step=False, on_epoch=True,
                      batch_size=size, sync_dist=True)  # under DDP: the mean over every process's clips
        return parts["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out = self.net(batch["inputs"])
        self.val_loss.update(self.loss(out, batch["targets"])["loss"].detach(), len(out.pred))
        self.val_pcc.update(out.pred, batch["targets"])

    def on_validation_epoch_end(self) -> None:
        if self.val_loss.update_count == 0:
            return
        # Computed on every process (both gather from all of them), so every process holds the same values;
        # Lightning's sync with "max" keeps them exact (a mean of N equal copies need not be).
        scores = synced_pcc(self.val_pcc)
        per_emotion = {pcc_column(e): v for e, v in zip(EMOTIONS, scores, strict=True)}
        self.log_dict({"val/loss": self.val_loss.compute(), **per_emotion}, sync_dist=True, reduce_fx="max")
        self.log("val/pcc_mean", scores.mean(), prog_bar=True, sync_dist=True, reduce_fx="max")
        self.val_loss.reset()

    def configure_optimizers(self) -> Any:
        optim = self.cfg.optim
        optimizer = torch.optim.AdamW(self.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
        if optim.scheduler == "none":
            return optimizer
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = min(total // 2, optim.warmup_epochs * math.ceil(total / self.cfg.train.max_epochs))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(total - warmup, 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
