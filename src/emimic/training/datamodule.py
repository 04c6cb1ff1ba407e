"""The LightningDataModule of a training run: the clips of train and valid over the packed FeatureStore.

One process (``train.devices: 1``) trains on every training clip per epoch, shuffled per (seed, epoch),
with length buckets for a model that reads frames, and validates on every validation clip. Under DDP
(``devices`` x ``num_nodes`` > 1 processes) each process gets its own share of both splits:

- train: each process trains on its own share of the clips for the whole run, a partition seeded by
  ``seed`` (:func:`~emimic.data.dataset.process_share`), so it reads, and for a model reading frames caches
  the steps of, those clips only. Every epoch it shuffles its share per (seed, epoch) and draws as many
  clips as the smallest share holds (a larger share leaves out another clip each epoch), so every process
  takes the same number of steps, which DDP needs; a model reading frames buckets them by length. Each
  process's batch holds ``optim.batch_size`` clips, so one optimiser step sees ``world`` batches.
- valid: Lightning's :class:`UnrepeatedDistributedSampler` picks clips ``rank``, ``rank + world``, ...:
  no clip is counted twice (the default ``DistributedSampler`` pads the split with repeats, which shifts
  the PCC), and the validation metric, a torchmetrics metric synced across processes
  (:class:`~emimic.training.module.EMIModule`), sees the whole split exactly once.

Lightning must not swap in samplers of its own: the Trainer runs with ``use_distributed_sampler=False``.
"""

from __future__ import annotations

from collections.abc import Mapping

import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader

from emimic.config import ExperimentConfig
from emimic.data import FeatureStore, feature_statistics
from emimic.data.dataset import process_share
from emimic.errors import ConfigError
from emimic.models.emi import ModelSpec
from emimic.models.ensemble import AnyModel
from emimic.training.inference import clip_loader, eval_batch_size

Labelled = Mapping[str, tuple[np.ndarray, np.ndarray]]  # split -> (clip ids, (N, 6) labels)


class EMIDataModule(pl.LightningDataModule):
    """Training and validation batches of ``labelled`` (train and valid ids with labels) from ``store``.

    ``model`` is only asked whether it reads frames; ``weights`` are the per-clip loss weights of the
    training clips; ``eval_batch`` overrides the validation batch size (default: :func:`eval_batch_size`).

    Example::

        dm = EMIDataModule(cfg, store, spec, module.net, {"train": (ids, y), "valid": (vids, vy)})
        dm.set_statistics(module.net)
        trainer.fit(module, datamodule=dm)
    """

    def __init__(self, cfg: ExperimentConfig, store: FeatureStore, spec: ModelSpec, model: AnyModel,
                 labelled: Labelled, weights: np.ndarray | None = None, *, eval_batch: int | None = None):
        super().__init__()
        self.cfg, self.store, self.spec, self.model = cfg, store, spec, model
        self.labelled, self.weights = labelled, weights
        self.eval_batch = eval_batch or eval_batch_size(model, cfg.optim.batch_size)
        self.first_epoch = 0  # the epoch training starts at: a resumed run's is restored from its checkpoint

    def state_dict(self) -> dict[str, int]:
        # Saved in each checkpoint, which emimic writes at the end of a train epoch: a run resumed from it starts at
        # the next. Lightning restores it before it first iterates the training loader, unlike its epoch counter.
        return {"first_epoch": self.trainer.current_epoch + 1}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.first_epoch = state_dict["first_epoch"]

    def set_statistics(self, model: AnyModel) -> None:
        """Normalise ``model``'s inputs and initialise its output with statistics of the training clips only."""
        ids, targets = self.labelled["train"]
        model.set_statistics(feature_statistics(self.store, ids, self.spec.inputs), targets)

    def _process(self) -> tuple[int, int]:
        """``(rank, world size)`` of this process (``(0, 1)`` outside a Trainer)."""
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def setup(self, stage: str) -> None:
        check_world(self.labelled, self._process()[1])

    def train_dataloader(self) -> DataLoader:
        rank, world = self._process()
        ids, targets = self.labelled["train"]
        share = process_share(len(ids), self.cfg.seed, rank=rank, replicas=world)
        per_epoch = len(ids) // world
        batch = self.cfg.optim.batch_size
        loader = clip_loader(self.store, self.spec, self.model, ids[share], targets[share], batch_size=batch,
                             max_frames=self.cfg.model.encoder.max_frames, seed=self.cfg.seed,
                             drop_last=per_epoch > batch, num_workers=self.cfg.train.num_workers,
                             weights=None if self.weights is None else self.weights[share], per_epoch=per_epoch)
        # With worker processes the loader draws its first batches as soon as iter() is called on it, and Lightning
        # calls it (for the scheduler's step count) before it restores a resumed run's epoch and calls set_epoch:
        # the epoch this run starts at (load_state_dict) is set here, or the resumed epoch trains on epoch 0's order.
        loader.batch_sampler.sampler.set_epoch(self.first_epoch)  # the EpochShuffle of either batch sampler
        return loader

    def val_dataloader(self) -> DataLoader:
        rank, world = self._process()
        ids, targets = self.labelled["valid"]
        share = np.fromiter(UnrepeatedDistributedSampler(ids, num_replicas=world, rank=rank, shuffle=False),
                            dtype=np.int64)
        return clip_loader(self.store, self.spec, self.model, ids[share], targets[share],
                           batch_size=self.eval_batch, max_frames=self.cfg.model.encoder.max_frames,
                           num_workers=self.cfg.train.num_workers)


def check_world(labelled: Labelled, world: int) -> None:
    """Refuse more processes than a split has clips: every process needs some clips of each split (one with no
    validation clip would skip the synced metric the others wait for). ``train`` checks this before it writes."""
    for split, (ids, _) in labelled.items():
        if len(ids) < world:
            raise ConfigError(
                f"{world} training processes (--devices x --num-nodes) need at least {world} clips in the {split!r}"
                f" split, which has {len(ids)}; train with fewer --devices / --num-nodes."
            )
