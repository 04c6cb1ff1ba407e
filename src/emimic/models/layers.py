"""Small building blocks shared by the branches, the heads and the fusions."""

from __future__ import annotations

from torch import nn


def mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    """Linear → GELU → dropout → Linear."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))
