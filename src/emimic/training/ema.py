"""Exponential moving average of the weights, as a Lightning callback.

Built on Lightning's :class:`~lightning.pytorch.callbacks.WeightAveraging`, which keeps an
``AveragedModel``, swaps the averaged weights in for every validation epoch, writes them to the
checkpoint's ``state_dict`` (the raw weights go to ``current_model_state`` so training resumes
exactly) and copies them into the model when training ends. Lightning's own
``EMAWeightAveraging`` uses a fixed decay; here the decay follows a named schedule
(``train.ema.warmup``), so that on short runs the average is not dominated by the random initial
weights: ``adaptive`` ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates (the paper's; 0.99 is
reached after ~890 updates, so on a short run the configured decay never applies), ``linear``
``decay · min(1, n / warmup_steps)`` (the configured decay applies from ``warmup_steps`` on), or
``none`` (the configured decay from the first update).
"""

from __future__ import annotations

from typing import Literal

import torch
from lightning.pytorch.callbacks import WeightAveraging

Warmup = Literal["adaptive", "none", "linear"]


def ema_decay(decay: float, num_averaged: int, *, warmup: Warmup, warmup_steps: int = 100) -> float:
    """Decay used for the update that follows ``num_averaged`` earlier updates."""
    if warmup == "adaptive":
        return min(decay, (1.0 + num_averaged) / (10.0 + num_averaged))
    if warmup == "linear":
        return decay * min(1.0, num_averaged / warmup_steps)
    return decay


class EMA(WeightAveraging):
    """``avg ← d·avg + (1 − d)·w`` after every optimizer step (the first update copies ``w``)."""

    def __init__(self, decay: float = 0.99, *, warmup: Warmup = "adaptive", warmup_steps: int = 100):
        self.decay = decay
        self.warmup = warmup
        self.warmup_steps = warmup_steps
        super().__init__(avg_fn=self._average, use_buffers=True)

    def _average(self, averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        d = ema_decay(self.decay, int(num_averaged), warmup=self.warmup, warmup_steps=self.warmup_steps)
        return averaged * d + current * (1.0 - d) if averaged.is_floating_point() else current
