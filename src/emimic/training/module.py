"""The LightningModule: builds the model from plain dicts (config + model spec), so a checkpoint
is self-describing and loads with ``torch.load(weights_only=True)``; trains with the
multi-objective loss; validates with the challenge metric."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from emimic.config import ExperimentConfig
from emimic.labels import EMOTIONS
from emimic.metrics import pcc_scores
from emimic.models.emi import ModelOutput, ModelSpec, build_model
from emimic.training.losses import EMILoss


class EMIModule(pl.LightningModule):
    """``EMIModule(config=cfg.model_dump(mode="json"), spec=spec.to_dict(), data=store_identity)``."""

    def __init__(self, config: dict[str, Any], spec: dict[str, Any], data: dict[str, Any] | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.cfg = ExperimentConfig.model_validate(config)
        self.spec = ModelSpec.from_dict(spec)
        self.net = build_model(self.spec, self.cfg.model)
        self.loss = EMILoss(self.cfg.loss)
        self._val_preds: list[Tensor] = []
        self._val_targets: list[Tensor] = []

    def forward(self, inputs: dict[str, dict[str, Tensor]]) -> ModelOutput:
        return self.net(inputs)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if device.type == "cpu":  # batches are built on the CPU: skip Lightning's recursive walk of the dicts
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_train_batch_start(self, batch: dict[str, Any], batch_idx: int) -> None:
        # Dropout, modality dropout and the VAD sample draw from a stream seeded by (seed, step), not
        # from whatever else consumed the global RNG: a resumed run repeats the uninterrupted one exactly.
        torch.manual_seed(self.cfg.seed * 1_000_003 + self.global_step)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        weights = batch["weights"] if self.cfg.loss.sample_weights != "none" else None
        parts = self.loss(self.net(batch["inputs"]), batch["targets"], weights)
        size = len(batch["targets"])
        self.log_dict({f"train/{k}": v.detach() for k, v in parts.items()}, on_step=False, on_epoch=True,
                      batch_size=size)
        return parts["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out = self.net(batch["inputs"])
        self.log("val/loss", self.loss(out, batch["targets"])["loss"], on_epoch=True, batch_size=len(out.pred))
        self._val_preds.append(out.pred.detach().cpu())
        self._val_targets.append(batch["targets"].cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val_preds:
            return
        scores = pcc_scores(torch.cat(self._val_preds), torch.cat(self._val_targets))
        self._val_preds.clear()
        self._val_targets.clear()
        self.log("val/pcc_mean", sum(scores.values()) / len(EMOTIONS), prog_bar=True)
        for emotion, value in scores.items():
            self.log(f"val/pcc_{emotion.lower().replace(' ', '_')}", value)

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
