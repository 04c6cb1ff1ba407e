"""Per-modality temporal encoders: a clip's features → one vector (and, for sequence encoders, per-frame states).

Every encoder maps the (normalised) inputs of one modality to ``(B, out_dim)``. The default,
``meanstd``, reads the pooled statistics the feature store precomputed (mean and std over
frames, optionally min and max), so training never touches frames and an epoch over 8k clips
takes well under a second.

The sequence encoders (``attentive``, ``gru``, ``transformer``) read the batch's frames packed
(``(sum of lengths, D)``, see :class:`~emimic.data.ClipDataset`), project them to a small width and
only then pad them to ``(B, T, hidden)``; they declare ``uses_frames = True`` and the training loop
then asks the dataset for sequences. Each is *residual over the pooled statistics*: its output is
the ``meanstd`` vector plus a correction computed from the frames,
``pooled + W · summary(temporal(frames))``, with ``W`` initialised to zero. At initialisation the
encoder is exactly the pooled one, so the temporal part only has to add what the statistics of the
frames miss (a peak, an order, a co-occurrence): a sequence model starts from, rather than has to
rediscover, the strong pooled baseline. Padded steps are masked everywhere: in attention weights,
in the packed GRU, in the transformer's keys and in every summary.

:meth:`Encoder.encode` also returns the per-frame states and their mask (:class:`Encoded`), the
interface cross-attention fusions read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn

from emimic.registry import ENCODERS

if TYPE_CHECKING:
    from emimic.config import EncoderConfig

# Order of the blocks in a pooled row, as written by the feature store.
POOLED_STATS: tuple[str, ...] = ("mean", "std", "min", "max")



@dataclass
class Encoded:
    """What an encoder computed for a batch: the clip vector and, for sequence encoders, the frames.

    ``frames`` is ``(B, T, frame_dim)`` with zeros on padded steps and ``mask`` ``(B, T)`` is True on
    real ones; both are None for encoders that never read frames.
    """

    vector: Tensor
    frames: Tensor | None = None
    mask: Tensor | None = None


Norm = tuple[Tensor, Tensor]


class Encoder(nn.Module):
    """Base class: ``forward(pooled (B, 4D), frames (sum of lengths, D) | None, lengths (B,)) -> (B, out_dim)``.

    ``pooled`` is already normalised; ``frames`` are raw, with ``norm`` the per-feature (mean, std)
    of training frames that the encoder applies.
    """

    uses_frames: ClassVar[bool] = False
    out_dim: int
    frame_dim: int = 0  # width of the per-frame states of encode() (0: none)

    def encode(self, pooled: Tensor, frames: Tensor | None, lengths: Tensor, norm: Norm | None = None) -> Encoded:
        raise NotImplementedError

    def forward(self, pooled: Tensor, frames: Tensor | None, lengths: Tensor, norm: Norm | None = None) -> Tensor:
        return self.encode(pooled, frames, lengths, norm).vector


def frame_mask(lengths: Tensor, steps: int) -> Tensor:
    """``(B, T)`` True on real frames. Absent clips (length 0) get one pseudo-frame so softmax and
    means stay finite; the branch replaces their output with the missing-modality embedding anyway."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths.clamp(min=1)[:, None]


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` ``(B, T, D)`` over the steps where ``mask`` ``(B, T)`` holds; 0 for a row with none."""
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def masked_max(x: Tensor, mask: Tensor) -> Tensor:
    return x.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)


def pad_packed(packed: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """``(sum of lengths, H)`` steps of consecutive clips → zero-padded ``(B, T, H)`` and its ``(B, T)`` mask."""
    mask = frame_mask(lengths, max(int(lengths.max()), 1) if len(lengths) else 1)
    clip = torch.repeat_interleave(torch.arange(len(lengths), device=lengths.device), lengths)
    step = torch.arange(len(clip), device=lengths.device) - torch.repeat_interleave(lengths.cumsum(0) - lengths,
                                                                                    lengths)
    padded = packed.new_zeros(mask.shape[0], mask.shape[1], packed.shape[1])
    return padded.index_put((clip, step), packed), mask


def normalised_linear(layer: nn.Linear, x: Tensor, norm: Norm | None) -> Tensor:
    """``layer((x - mean) / std)`` without materialising the normalised ``x``: the statistics fold into the
    weights, which costs a (hidden x D) product instead of two passes over every frame."""
    if norm is None:
        return layer(x)
    mean, std = norm
    weight = layer.weight / std
    return nn.functional.linear(x, weight, layer.bias - weight @ mean)


@ENCODERS.register("meanstd")
class PooledStatistics(Encoder):
    """Mean and std over frames (``stats`` picks any of mean/std/min/max), read from the store's pooled row."""

    def __init__(self, dim: int, cfg: EncoderConfig):
        super().__init__()
        columns = [POOLED_STATS.index(s) * dim + torch.arange(dim) for s in cfg.stats]
        self.register_buffer("columns", torch.cat(columns), persistent=False)
        self.out_dim = len(cfg.stats) * dim

    def encode(self, pooled: Tensor, frames: Tensor | None, lengths: Tensor, norm: Norm | None = None) -> Encoded:
        return Encoded(pooled.index_select(1, self.columns))


class SequenceEncoder(Encoder):
    """Pooled statistics + a zero-initialised linear map of a temporal summary of the frames.

    Subclasses define ``temporal`` (per-frame states, ``(B, T, H) -> (B, T, frame_dim)``) and
    ``summarise`` (``-> (B, summary_dim)``); this class does the input projection, the masking and
    the residual sum.
    """

    uses_frames = True

    def __init__(self, dim: int, cfg: EncoderConfig):
        super().__init__()
        self.pooled = PooledStatistics(dim, cfg)
        self.out_dim = self.pooled.out_dim
        self.input = nn.Linear(dim, cfg.hidden)
        self.activate = nn.Sequential(nn.GELU(), nn.Dropout(cfg.dropout))


    def _residual(self, summary_dim: int) -> nn.Linear:
        """The map from the temporal summary to the pooled space, zero so the encoder starts as the pooled one."""
        layer = nn.Linear(summary_dim, self.out_dim)
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
        return layer

    def temporal(self, x: Tensor, mask: Tensor, lengths: Tensor) -> Tensor:
        raise NotImplementedError

    def summarise(self, states: Tensor, mask: Tensor) -> Tensor:
        """Masked mean and max over time: the mean keeps what is steady, the max a short peak."""
        return torch.cat([masked_mean(states, mask), masked_max(states, mask)], dim=1)

    def encode(self, pooled: Tensor, frames: Tensor | None, lengths: Tensor, norm: Norm | None = None) -> Encoded:
        if frames is None:
            raise ValueError("this encoder reads frames: build the dataset with sequences=True")
        # project the packed frames first, so padding is added at the small width only
        x, mask = pad_packed(self.activate(normalised_linear(self.input, frames, norm)), lengths)
        states = self.temporal(x, mask, lengths) * mask.unsqueeze(-1)
        vector = self.pooled(pooled, None, lengths) + self.residual(self.summarise(states, mask))
        return Encoded(vector, states, mask)


@ENCODERS.register("attentive")
class AttentiveStatistics(SequenceEncoder):
    """Attentive statistics pooling (Okabe et al., 2018): attention-weighted mean and std of projected frames."""

    def __init__(self, dim: int, cfg: EncoderConfig):
        super().__init__(dim, cfg)
        self.score = nn.Sequential(nn.Linear(cfg.hidden, cfg.hidden), nn.Tanh(), nn.Linear(cfg.hidden, 1))
        self.frame_dim = cfg.hidden
        self.residual = self._residual(2 * cfg.hidden)

    def temporal(self, x: Tensor, mask: Tensor, lengths: Tensor) -> Tensor:
        return x

    def summarise(self, states: Tensor, mask: Tensor) -> Tensor:
        weights = self.score(states).squeeze(-1).masked_fill(~mask, float("-inf")).softmax(1).unsqueeze(-1)
        mean = (weights * states).sum(1)
        var = (weights * (states - mean.unsqueeze(1)) ** 2).sum(1)
        return torch.cat([mean, var.clamp(min=1e-6).sqrt()], dim=1)


@ENCODERS.register("gru")
class GRUEncoder(SequenceEncoder):
    """Bidirectional GRU over packed sequences (padding is never read), masked mean and max over time."""

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
        self.frame_dim = 2 * cfg.hidden
        self.residual = self._residual(2 * self.frame_dim)

    def temporal(self, x: Tensor, mask: Tensor, lengths: Tensor) -> Tensor:
        if bool(mask.all()):  # no padding (common with length buckets and max_frames): packing would only cost
            return self.rnn(x)[0]
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.rnn(packed)
        return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


def sinusoidal_positions(steps: int, width: int, device: torch.device) -> Tensor:
    position = torch.arange(steps, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, width, 2, device=device, dtype=torch.float32) * (-math.log(1e4) / width))
    table = torch.zeros(steps, width, device=device)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: width // 2])
    return table


@ENCODERS.register("transformer")
class TransformerEncoder(SequenceEncoder):
    """A small pre-norm transformer over the frames with sinusoidal positions and a key padding mask."""

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
        self.frame_dim = cfg.hidden
        self.residual = self._residual(2 * cfg.hidden)

    def temporal(self, x: Tensor, mask: Tensor, lengths: Tensor) -> Tensor:
        x = x + sinusoidal_positions(x.shape[1], x.shape[2], x.device)
        return self.body(x, src_key_padding_mask=~mask)


def build_encoder(dim: int, cfg: EncoderConfig) -> Encoder:
    """The encoder ``cfg.name``; one that reads frames is built on a side stream of the RNG, so the rest
    of the model gets the very weights the pooled model of the same seed gets: with its residual map at
    zero, both start as the same function."""
    encoder = ENCODERS.get(cfg.name)
    if not encoder.uses_frames:
        return encoder(dim, cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch.initial_seed() + 1)
        return encoder(dim, cfg)
