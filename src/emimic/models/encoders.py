"""Per-modality temporal encoders: a clip's features → one vector.

Every encoder maps the (normalised) inputs of one modality to ``(B, out_dim)``. The default,
``meanstd``, reads the pooled statistics the feature store precomputed (mean and std over
frames, optionally min and max), so training never touches frames and an epoch over 8k clips
takes well under a second. The sequence encoders (``attentive``, ``gru``, ``transformer``)
read zero-padded frames with their lengths; they declare ``uses_frames = True`` and the
training loop then asks the dataset for sequences.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn

from emimic.registry import ENCODERS

if TYPE_CHECKING:
    from emimic.config import EncoderConfig

# Order of the blocks in a pooled row, as written by the feature store.
POOLED_STATS: tuple[str, ...] = ("mean", "std", "min", "max")



class Encoder(nn.Module):
    """Base class: ``forward(pooled (B, 4D), frames (B, T, D) | None, lengths (B,)) -> (B, out_dim)``."""

    uses_frames: ClassVar[bool] = False
    out_dim: int

    def forward(self, pooled: Tensor, frames: Tensor | None, lengths: Tensor) -> Tensor:
        raise NotImplementedError


def frame_mask(lengths: Tensor, steps: int) -> Tensor:
    """``(B, T)`` True on real frames. Absent clips (length 0) get one pseudo-frame so softmax and
    means stay finite; the branch replaces their output with the missing-modality embedding anyway."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths.clamp(min=1)[:, None]


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(1) / weights.sum(1)


@ENCODERS.register("meanstd")
class PooledStatistics(Encoder):
    """Mean and std over frames (``stats`` picks any of mean/std/min/max), read from the store's pooled row."""

    def __init__(self, dim: int, cfg: EncoderConfig):
        super().__init__()
        columns = [POOLED_STATS.index(s) * dim + torch.arange(dim) for s in cfg.stats]
        self.register_buffer("columns", torch.cat(columns), persistent=False)
        self.out_dim = len(cfg.stats) * dim

    def forward(self, pooled: Tensor, frames: Tensor | None, lengths: Tensor) -> Tensor:
        return pooled.index_select(1, self.columns)


class _SequenceEncoder(Encoder):
    uses_frames = True

    def __init__(self, dim: int, cfg: EncoderConfig):
        super().__init__()
        self.input = nn.Sequential(nn.Linear(dim, cfg.hidden), nn.GELU(), nn.Dropout(cfg.dropout))

    @staticmethod
    def _frames(frames: Tensor | None) -> Tensor:
        if frames is None:
            raise ValueError("this encoder reads frames: build the dataset with sequences=True")
        return frames


@ENCODERS.register("attentive")
class AttentiveStatistics(_SequenceEncoder):
    """Attentive statistics pooling (Okabe et al., 2018): attention-weighted mean and std of projected frames."""

    def __init__(self, dim: int, cfg: EncoderConfig):
        super().__init__(dim, cfg)
        self.score = nn.Sequential(nn.Linear(cfg.hidden, cfg.hidden), nn.Tanh(), nn.Linear(cfg.hidden, 1))
        self.out_dim = 2 * cfg.hidden

    def forward(self, pooled: Tensor, frames: Tensor | None, lengths: Tensor) -> Tensor:
        x = self.input(self._frames(frames))
        mask = frame_mask(lengths, x.shape[1])
        weights = self.score(x).squeeze(-1).masked_fill(~mask, float("-inf")).softmax(1).unsqueeze(-1)
        mean = (weights * x).sum(1)
        var = (weights * (x - mean.unsqueeze(1)) ** 2).sum(1)
        return torch.cat([mean, var.clamp(min=1e-6).sqrt()], dim=1)


@ENCODERS.register("gru")
class GRUEncoder(_SequenceEncoder):
    """Bidirectional GRU over the frames (packed, so padding is never read), mean over time."""

    def __init__(self, dim: int, cfg: EncoderConfig):
        super().__init__(dim, cfg)
        self.rnn = nn.GRU(
            cfg.hidden,
            cfg.hidden,
            num_layers=cfg.layers,
            batch_first=True,
            bidirectional=True,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,
        )
        self.out_dim = 2 * cfg.hidden

    def forward(self, pooled: Tensor, frames: Tensor | None, lengths: Tensor) -> Tensor:
        x = self.input(self._frames(frames))
        steps = x.shape[1]
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.rnn(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=steps)
        return masked_mean(out, frame_mask(lengths, steps))


def sinusoidal_positions(steps: int, width: int, device: torch.device) -> Tensor:
    position = torch.arange(steps, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, width, 2, device=device, dtype=torch.float32) * (-math.log(1e4) / width))
    table = torch.zeros(steps, width, device=device)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: width // 2])
    return table


@ENCODERS.register("transformer")
class TransformerEncoder(_SequenceEncoder):
    """A small pre-norm transformer over the frames with sinusoidal positions, masked mean over time."""

    def __init__(self, dim: int, cfg: EncoderConfig):
        super().__init__(dim, cfg)
        layer = nn.TransformerEncoderLayer(
            cfg.hidden,
            cfg.heads,
            dim_feedforward=2 * cfg.hidden,
            dropout=cfg.dropout,
            batch_first=True,
            norm_first=True,
        )
        self.body = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.out_dim = cfg.hidden

    def forward(self, pooled: Tensor, frames: Tensor | None, lengths: Tensor) -> Tensor:
        x = self.input(self._frames(frames))
        x = x + sinusoidal_positions(x.shape[1], x.shape[2], x.device)
        mask = frame_mask(lengths, x.shape[1])
        return masked_mean(self.body(x, src_key_padding_mask=~mask), mask)


def build_encoder(dim: int, cfg: EncoderConfig) -> Encoder:
    return ENCODERS.get(cfg.name)(dim, cfg)
