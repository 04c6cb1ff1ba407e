"""Small building blocks shared by the branches, the heads and the fusions."""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn


def mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    """Linear → GELU → dropout → Linear."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))


class ModalityModules(nn.ModuleDict):
    """An ``nn.ModuleDict`` keyed by modality name, any folder name included.

    A modality is named after its folder, but torch refuses a module name holding a dot (``vit.b16``) or one that
    is an attribute of the dict (``train``, ``keys``, ``float``). Such a name is stored under ``/`` + the name with
    its dots as ``/`` (:func:`module_key`); every other name is stored as it is, so the state_dict keys of runs
    trained before stay the same. No folder name holds a ``/``, so two modalities never share a key. Lookups and
    iteration use the modality names (``pop`` and ``update`` go through them).
    """

    def __getitem__(self, modality: str) -> nn.Module:
        return super().__getitem__(module_key(modality))

    def __setitem__(self, modality: str, module: nn.Module) -> None:  # update() and __init__ add through this
        super().__setitem__(module_key(modality), module)

    def __delitem__(self, modality: str) -> None:
        super().__delitem__(module_key(modality))

    def __contains__(self, modality: object) -> bool:
        return isinstance(modality, str) and super().__contains__(module_key(modality))

    def __iter__(self) -> Iterator[str]:
        return (modality_name(key) for key in super().__iter__())

    def keys(self) -> list[str]:  # type: ignore[override]  # names, not the stored keys
        return list(self)

    def items(self) -> list[tuple[str, nn.Module]]:  # type: ignore[override]
        return [(modality_name(key), module) for key, module in super().items()]


# The names torch refuses as module names of a ModuleDict: its own attributes.
_DICT_ATTRIBUTES = frozenset(dir(nn.ModuleDict()))


def module_key(modality: str) -> str:
    """The module name :class:`ModalityModules` stores ``modality`` under: the name itself when torch accepts it."""
    if "." in modality or modality in _DICT_ATTRIBUTES:
        return "/" + modality.replace(".", "/")
    return modality


def modality_name(key: str) -> str:
    """The modality a :class:`ModalityModules` key stands for (the inverse of :func:`module_key`)."""
    return key[1:].replace("/", ".") if key.startswith("/") else key
