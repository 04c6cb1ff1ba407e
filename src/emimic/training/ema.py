"""Exponential moving average of the weights, as a Lightning callback.

Built on Lightning's :class:`~lightning.pytorch.callbacks.WeightAveraging`, which keeps an
``AveragedModel``, swaps the averaged weights in for every validation epoch, writes them to the
checkpoint's ``state_dict`` (the raw weights go to ``current_model_state`` so training resumes
exactly) and copies them into the model when training ends. Lightning's own
``EMAWeightAveraging`` uses a fixed decay; here the decay can warm up as
``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so that on short runs (a few hundred
steps) the average is not dominated by the random initial weights.
"""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import WeightAveraging


def ema_decay(decay: float, num_averaged: int, *, warmup: bool) -> float:
    """Decay used for the update that follows ``num_averaged`` earlier updates."""
    return min(decay, (1.0 + num_averaged) / (10.0 + num_averaged)) if warmup else decay


class EMA(WeightAveraging):
    """``avg ← d·avg + (1 − d)·w`` after every optimizer step (the first update copies ``w``)."""

    def __init__(self, decay: float = 0.99, *, warmup: bool = True):
        self.decay = decay
        self.warmup = warmup
        super().__init__(avg_fn=self._average, use_buffers=True)

    def _average(self, averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        d = ema_decay(self.decay, int(num_averaged), warmup=self.warmup)
        return averaged * d + current * (1.0 - d) if averaged.is_floating_point() else current
