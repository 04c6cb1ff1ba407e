"""Fusion of the branches: the registry every fusion plugs into, and the built-in fusions.

The contract: a fusion is built from one :class:`BranchShape` per branch, in the model's modality
order (the width of its embedding as the model computes it: the acoustic branch is 3 wider when the
VAD latent is appended; and the width of its encoder's per-step states, 0 for a pooled encoder),
declares ``out_dim`` and maps one :class:`BranchOutput` per branch to ``(B, out_dim)``, which the
shared head reads. A fusion with ``predicts = True`` (``late``) outputs the six pre-activation
scores itself and the model adds no shared head.

Every fusion reads the ``present`` mask (after modality dropout) and never the features of an
absent branch: the branch has already replaced its embedding with the learned missing embedding
and, for the fusions that read frames, its sequence with one learned missing token.

* ``concat`` (the reference method): the embeddings side by side; an absent branch contributes its
  missing embedding.
* ``gated``: per clip, softmax weights over the present branches (computed from the present
  embeddings, zeros for absent ones) mix the branches projected to ``width``; an absent branch gets
  weight 0.
* ``attention``: the branches' tokens (see :class:`Tokens`: the embedding, then the frame states when
  the encoder gives them), each with a learned modality embedding, pass one transformer layer; the
  mean of each branch's tokens, side by side. An absent branch takes part as its learned missing
  embedding and token (a key for the other branches, and its own slot), so modality dropout trains
  them; masking them out instead left them without a gradient on every clip with a present branch.
  Every branch has at least one unmasked token, so no clip's attention is empty.
* ``text_anchored`` (TAEMI, ABAW 10): the text embedding is the query of one cross-attention per
  other branch over its tokens; absent branches are attended as their learned missing embedding and
  token, and a clip without a transcript queries with the text branch's missing embedding. Without a
  text branch the query is a learned vector (attention pooling of each branch).
* ``tensor`` (TFN): each branch projected to ``tensor_width``, extended by a constant 1 and
  multiplied out: width ``(tensor_width + 1) ** branches``; an absent branch is all zeros but the 1,
  which keeps the terms of the others.
* ``low_rank`` (LMF): the same product in rank-``rank`` factorised form, width ``width``; factors
  in an ``nn.ParameterList`` (MultiBench keeps them in a plain list, so they are never trained).
* ``late``: a head per branch; the prediction is the mean of the present branches' scores.

A clip where no branch is present is fused from the missing embeddings of all branches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn

from emimic.errors import ConfigError
from emimic.labels import EMOTIONS
from emimic.models.encoders import masked_mean
from emimic.models.layers import mlp
from emimic.registry import FUSIONS

if TYPE_CHECKING:
    from emimic.config import ModelConfig

# Substrings that mark a branch as the transcript's when model.fusion_options.text_modality names none.
TEXT_HINTS: tuple[str, ...] = ("text", "sentence", "transcript")
# Largest output of the tensor fusion: its width is (tensor_width + 1) ** branches and feeds the head's first layer.
MAX_TENSOR_WIDTH = 2**14
# Scale of the learned tokens at initialisation (TAEMI's missing tokens start as randn * 0.02).
TOKEN_INIT_STD = 0.02


@dataclass(frozen=True)
class BranchShape:
    """What a fusion is built from for one branch: its modality, embedding width and per-step state width."""

    name: str
    width: int
    frame_width: int = 0  # 0: the branch's encoder gives no per-step states


@dataclass
class BranchOutput:
    """What a branch hands the fusion for a batch.

    ``embedding`` holds the learned missing embedding on rows where ``present`` is False. ``frames``
    (``(B, T, F)``, zeros on padded steps) and ``mask`` (``(B, T)``, True on real steps) are given only
    to a fusion that listed the branch in ``frame_branches``; an absent row holds the learned missing
    token at step 0, its only real step.
    """

    embedding: Tensor
    present: Tensor
    frames: Tensor | None = None
    mask: Tensor | None = None


def presence(inputs: Sequence[BranchOutput]) -> Tensor:
    """``(B, M)`` True where branch ``m`` is present."""
    return torch.stack([x.present for x in inputs], dim=1)


def or_all_when_none(present: Tensor) -> Tensor:
    """``present`` with the rows that have no branch set all True: such a clip is fused from the missing
    embeddings of every branch, and softmaxes and means over branches stay defined."""
    return present | ~present.any(dim=1, keepdim=True)


def zero_absent(x: Tensor, present: Tensor) -> Tensor:
    return torch.where(present[:, None], x, torch.zeros_like(x))


def with_constant(x: Tensor) -> Tensor:
    """``[1, x]``: the constant keeps the lower-order terms of a multiplicative fusion."""
    return torch.cat([x.new_ones(len(x), 1), x], dim=1)


class Fusion(nn.Module):
    """Base class: built from the branches' :class:`BranchShape`, ``forward(list of BranchOutput) -> (B, out_dim)``.

    A fusion that reads frame states names the branches in ``frame_branches``; the model then gives
    those branches a learned missing-sequence token and passes their frames.
    """

    out_dim: int
    predicts: ClassVar[bool] = False  # True: forward returns the six scores, the model adds no shared head

    def __init__(self, branches: Sequence[BranchShape], cfg: ModelConfig):
        super().__init__()
        self.shapes = tuple(branches)
        self.in_dims = [b.width for b in self.shapes]
        self.frame_branches: frozenset[str] = frozenset()

    def forward(self, inputs: list[BranchOutput]) -> Tensor:
        raise NotImplementedError


@FUSIONS.register("concat")
class ConcatFusion(Fusion):
    """Feature-level concatenation (the reference method)."""

    def __init__(self, branches: Sequence[BranchShape], cfg: ModelConfig):
        super().__init__(branches, cfg)
        self.out_dim = sum(self.in_dims)

    def forward(self, inputs: list[BranchOutput]) -> Tensor:
        return torch.cat([x.embedding for x in inputs], dim=1)


@FUSIONS.register("gated")
class GatedFusion(Fusion):
    """Per-clip softmax weights over the present branches mix their projections; absent branches weigh 0."""

    def __init__(self, branches: Sequence[BranchShape], cfg: ModelConfig):
        super().__init__(branches, cfg)
        width = cfg.fusion_options.width
        self.project = nn.ModuleList(nn.Linear(d, width) for d in self.in_dims)
        self.gate = nn.Linear(sum(self.in_dims), len(self.in_dims))
        self.out_dim = width

    def forward(self, inputs: list[BranchOutput]) -> Tensor:
        # the gate sees zeros for absent branches: which ones are missing, not their missing embeddings
        scores = self.gate(torch.cat([zero_absent(x.embedding, x.present) for x in inputs], dim=1))
        weights = scores.masked_fill(~or_all_when_none(presence(inputs)), float("-inf")).softmax(dim=1)
        values = torch.stack([project(x.embedding) for project, x in zip(self.project, inputs, strict=True)], dim=1)
        return (weights.unsqueeze(-1) * values).sum(1)


class Tokens(nn.Module):
    """A branch as a sequence of tokens of one width: its embedding (the pooled summary the reference method
    fuses), followed by its frame states when ``frames`` is True; ``BranchOutput -> (B, 1 + T, width), mask``."""

    def __init__(self, branch: BranchShape, width: int, *, frames: bool):
        super().__init__()
        self.embedding = nn.Linear(branch.width, width)
        self.frames = nn.Linear(branch.frame_width, width) if frames else None

    def forward(self, x: BranchOutput) -> tuple[Tensor, Tensor]:
        tokens, mask = self.embedding(x.embedding).unsqueeze(1), x.present.new_ones(len(x.present), 1)
        if self.frames is None or x.frames is None or x.mask is None:
            return tokens, mask
        return torch.cat([tokens, self.frames(x.frames)], dim=1), torch.cat([mask, x.mask], dim=1)


@FUSIONS.register("attention")
class AttentionFusion(Fusion):
    """One transformer layer over the tokens of every branch; an absent branch's are its learned missing ones."""

    def __init__(self, branches: Sequence[BranchShape], cfg: ModelConfig):
        super().__init__(branches, cfg)
        options = cfg.fusion_options
        self.frame_branches = frozenset(b.name for b in self.shapes if b.frame_width)
        self.tokens = nn.ModuleList(Tokens(b, options.width, frames=b.frame_width > 0) for b in self.shapes)
        self.modality = nn.Parameter(TOKEN_INIT_STD * torch.randn(len(self.shapes), options.width))
        self.body = nn.TransformerEncoderLayer(options.width, options.heads, dim_feedforward=2 * options.width,
                                               dropout=options.dropout, batch_first=True, norm_first=True)
        self.out_dim = len(self.shapes) * options.width

    def forward(self, inputs: list[BranchOutput]) -> Tensor:
        tokens, masks = [], []
        for m, (x, to_tokens) in enumerate(zip(inputs, self.tokens, strict=True)):
            # not masked by presence: an absent branch's tokens are its learned missing ones, which must be read
            sequence, mask = to_tokens(x)
            tokens.append(sequence + self.modality[m])
            masks.append(mask)
        states = self.body(torch.cat(tokens, dim=1), src_key_padding_mask=~torch.cat(masks, dim=1))
        per_branch = torch.split(states, [mask.shape[1] for mask in masks], dim=1)
        return torch.cat([masked_mean(s, mask) for s, mask in zip(per_branch, masks, strict=True)], dim=1)


class CrossAttention(nn.Module):
    """A query vector attends to a sequence (TAEMI's layer): ``q = LN(Wq·query)``, ``k = LN(Wk·x)``,
    ``v = Wv·x``, multi-head scaled dot products with a key padding mask, dropout on the weights, output
    projection; ``(B, query_dim), (B, T, token_dim), (B, T) -> (B, width)``."""

    def __init__(self, query_dim: int, token_dim: int, width: int, heads: int, dropout: float):
        super().__init__()
        self.query = nn.Sequential(nn.Linear(query_dim, width), nn.LayerNorm(width))
        self.key = nn.Sequential(nn.Linear(token_dim, width), nn.LayerNorm(width))
        self.value = nn.Linear(token_dim, width)
        self.out = nn.Linear(width, width)
        self.heads = heads
        self.dropout = dropout

    def _split(self, x: Tensor) -> Tensor:
        batch, steps, width = x.shape
        return x.view(batch, steps, self.heads, width // self.heads).transpose(1, 2)

    def forward(self, query: Tensor, tokens: Tensor, mask: Tensor) -> Tensor:
        q = self._split(self.query(query).unsqueeze(1))
        k, v = self._split(self.key(tokens)), self._split(self.value(tokens))
        attended = nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask[:, None, None, :], dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(attended.transpose(1, 2).flatten(1))


def text_branch(names: Sequence[str], chosen: str | None) -> int | None:
    """Index of the transcript's branch: ``chosen``, else ``text_emb``, else the first text-like name, else None."""
    if chosen is not None:
        if chosen not in names:
            raise ConfigError(f"model.fusion_options.text_modality: {chosen!r} is not a branch; branches:"
                              f" {', '.join(names)}; name one of them, or null to pick the text branch itself.")
        return names.index(chosen)
    if "text_emb" in names:
        return names.index("text_emb")
    return next((i for i, name in enumerate(names) if any(h in name.lower() for h in TEXT_HINTS)), None)


@FUSIONS.register("text_anchored")
class TextAnchoredFusion(Fusion):
    """The text embedding queries each other branch's tokens (TAEMI); ``[text, attended_1, ...]``."""

    def __init__(self, branches: Sequence[BranchShape], cfg: ModelConfig):
        super().__init__(branches, cfg)
        options = cfg.fusion_options
        self.text = text_branch([b.name for b in self.shapes], options.text_modality)
        self.others = [i for i in range(len(self.shapes)) if i != self.text]
        self.frame_branches = frozenset(self.shapes[i].name for i in self.others if self.shapes[i].frame_width)
        if self.text is None:  # no transcript modality: a learned query pools each branch by attention
            self.anchor = nn.Parameter(TOKEN_INIT_STD * torch.randn(options.width))
        query_dim = options.width if self.text is None else self.in_dims[self.text]
        self.tokens = nn.ModuleList(Tokens(self.shapes[i], options.width, frames=self.shapes[i].frame_width > 0)
                                    for i in self.others)
        self.attend = nn.ModuleList(CrossAttention(query_dim, options.width, options.width, options.heads,
                                                   options.dropout) for _ in self.others)
        self.out_dim = (0 if self.text is None else query_dim) + len(self.others) * options.width

    def forward(self, inputs: list[BranchOutput]) -> Tensor:
        if self.text is None:
            query, parts = self.anchor.expand(len(inputs[0].embedding), -1), []
        else:
            query = inputs[self.text].embedding  # a clip without a transcript: the learned missing embedding
            parts = [query]
        parts += [attend(query, *to_tokens(inputs[i]))
                  for i, to_tokens, attend in zip(self.others, self.tokens, self.attend, strict=True)]
        return torch.cat(parts, dim=1)


@FUSIONS.register("tensor")
class TensorFusion(Fusion):
    """Outer product of the branches projected to ``tensor_width``, each extended by a constant 1 (TFN)."""

    def __init__(self, branches: Sequence[BranchShape], cfg: ModelConfig):
        super().__init__(branches, cfg)
        width = cfg.fusion_options.tensor_width
        self.out_dim = (width + 1) ** len(self.in_dims)
        if self.out_dim > MAX_TENSOR_WIDTH:
            fitting = math.floor(MAX_TENSOR_WIDTH ** (1 / len(self.in_dims)) + 1e-9) - 1
            raise ConfigError(
                f"model.fusion_options.tensor_width: {width} gives the tensor fusion of {len(self.in_dims)} branches"
                f" a width of {self.out_dim} (limit {MAX_TENSOR_WIDTH}); set it to {fitting} or less, use fewer"
                " model.modalities, or model.fusion: low_rank."
            )
        self.project = nn.ModuleList(nn.Linear(d, width) for d in self.in_dims)

    def forward(self, inputs: list[BranchOutput]) -> Tensor:
        fused: Tensor | None = None
        present = or_all_when_none(presence(inputs))
        for m, (x, project) in enumerate(zip(inputs, self.project, strict=True)):
            z = with_constant(zero_absent(project(x.embedding), present[:, m]))
            fused = z if fused is None else (fused.unsqueeze(2) * z.unsqueeze(1)).flatten(1)
        assert fused is not None  # a model has at least one branch
        return fused


@FUSIONS.register("low_rank")
class LowRankFusion(Fusion):
    """The tensor fusion's product in rank-``rank`` factorised form (LMF), without forming the tensor.

    ``out = sum_r w_r prod_m ([1, x_m] @ F_m[r]) + b``. Each factor's row for the constant starts at 1 and
    the rest as a Linear layer's weights, so every product starts as 1 + a sum of per-branch linear terms
    instead of a vanishing product of small numbers."""

    def __init__(self, branches: Sequence[BranchShape], cfg: ModelConfig):
        super().__init__(branches, cfg)
        options = cfg.fusion_options
        self.factors = nn.ParameterList(self._factor(d, options.rank, options.width) for d in self.in_dims)
        self.rank_weights = nn.Parameter(torch.full((options.rank,), 1.0 / options.rank))
        self.bias = nn.Parameter(torch.zeros(options.width))
        self.out_dim = options.width

    @staticmethod
    def _factor(in_dim: int, rank: int, width: int) -> nn.Parameter:
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default scale
        factor = torch.empty(rank, in_dim + 1, width).uniform_(-bound, bound)
        factor[:, 0] = 1.0
        return nn.Parameter(factor)

    def forward(self, inputs: list[BranchOutput]) -> Tensor:
        fused: Tensor | None = None
        present = or_all_when_none(presence(inputs))
        for m, (x, factor) in enumerate(zip(inputs, self.factors, strict=True)):
            term = torch.einsum("bd,rdo->bro", with_constant(zero_absent(x.embedding, present[:, m])), factor)
            fused = term if fused is None else fused * term
        assert fused is not None  # a model has at least one branch
        return torch.einsum("r,bro->bo", self.rank_weights, fused) + self.bias


@FUSIONS.register("late")
class LateFusion(Fusion):
    """A head per branch (as the shared head); the scores of the present branches are averaged."""

    predicts = True

    def __init__(self, branches: Sequence[BranchShape], cfg: ModelConfig):
        super().__init__(branches, cfg)
        head = cfg.head
        self.heads = nn.ModuleList(nn.Sequential(nn.Dropout(head.dropout), mlp(d, head.hidden, len(EMOTIONS),
                                                                                head.dropout))
                                   for d in self.in_dims)
        self.out_dim = len(EMOTIONS)

    def forward(self, inputs: list[BranchOutput]) -> Tensor:
        scores = torch.stack([head(x.embedding) for head, x in zip(self.heads, inputs, strict=True)], dim=1)
        return masked_mean(scores, or_all_when_none(presence(inputs)))


def build_fusion(branches: Sequence[BranchShape], cfg: ModelConfig) -> Fusion:
    return FUSIONS.get(cfg.fusion)(branches, cfg)
