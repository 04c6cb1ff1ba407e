"""Named registries: the one list of names that configs, CLI choices, ``--help`` and docs read.

Each pluggable kind (extractors, encoders, fusions, loss terms, commands) owns one
:class:`Registry`. A registry knows its built-in *names* without importing their
implementations: the names are declared here, in a module that imports neither torch nor
numpy, so validating a config and printing ``emimic --help`` stay fast. The implementations
register themselves with ``@REGISTRY.register("name")`` in their own (heavy) modules, which the
registry imports on the first lookup of an implementation.

Lookups are case-insensitive and accept aliases; an unknown name is a
:class:`~emimic.errors.ConfigError` with a did-you-mean and the available names, so a typo in a
YAML file or on the command line is one clear sentence rather than a ``KeyError``. A name a
plug-in registers without declaring it is found too: an unknown name first imports the
registry's modules, then looks again.

Example::

    from emimic.registry import FUSIONS
    FUSIONS.check("Concat")        # 'concat' (no torch imported)
    FUSIONS["concat"]              # the class; imports emimic.models.fusion
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import Any, TypeVar

from emimic.errors import ConfigError

T = TypeVar("T")


class Registry(MutableMapping[str, T]):
    """Names → implementations of one kind (``kind`` names it in error messages).

    ``names`` are the declared built-ins, in the order iteration yields them (for extractors,
    the order they run on a clip); ``aliases`` map other spellings to them; ``modules`` are
    imported to load the implementations.
    """

    def __init__(
        self,
        kind: str,
        *,
        modules: Iterable[str] = (),
        names: Iterable[str] = (),
        aliases: Mapping[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.modules = tuple(modules)
        self._names: dict[str, None] = dict.fromkeys(n.lower() for n in names)
        self._declared = tuple(self._names)
        self._aliases = {k.lower(): v.lower() for k, v in (aliases or {}).items()}
        self._items: dict[str, T] = {}
        self._loaded = False

    # -- registration ---------------------------------------------------------------------------
    def register(self, name: str, *, aliases: Iterable[str] = ()) -> Callable[[T], T]:
        """Decorator: make ``item`` the implementation of ``name`` (declared here or a plug-in's own)."""
        key = name.lower()

        def decorate(item: T) -> T:
            if key in self._items:
                raise ValueError(f"duplicate {self.kind} {name!r}")
            for alias in aliases:
                if self._aliases.setdefault(alias.lower(), key) != key:
                    raise ValueError(f"duplicate {self.kind} alias {alias!r}")
            self[key] = item
            return item

        return decorate

    def load(self) -> None:
        """Import the modules whose decorators register the implementations (once)."""
        if not self._loaded:
            self._loaded = True
            for module in self.modules:
                importlib.import_module(module)

    # -- lookup ---------------------------------------------------------------------------------
    def _canonical(self, name: str) -> str | None:
        key = name.strip().lower()
        key = self._aliases.get(key, key)
        if key not in self._names and not self._loaded:
            self.load()  # a plug-in may register a name nobody declared
        return key if key in self._names else None

    def check(self, name: str) -> str:
        """The canonical (lower-case) name for ``name``, or a ConfigError with a did-you-mean and the choices."""
        key = self._canonical(name)
        if key is not None:
            return key
        close = difflib.get_close_matches(name.strip().lower(), [*self._names, *self._aliases], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown {self.kind} {name!r}{hint}; available: {', '.join(self.names())}.")

    def get(self, name: str, *default: T | None) -> T | None:  # type: ignore[override]
        """``self[name]`` (an unknown name raises the did-you-mean ConfigError), or with a ``default``
        given, that default for an unknown name (``dict.get``'s contract, which monkeypatch relies on)."""
        if default and name not in self:
            return default[0]
        return self[name]

    def names(self) -> list[str]:
        """Every registered name, sorted (what ``--help`` and error messages list)."""
        return sorted(self._names)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._canonical(name) is not None

    def __getitem__(self, name: str) -> T:
        key = self.check(name)
        if key not in self._items:
            self.load()
        if key not in self._items:  # a declared name its module does not register: a packaging bug
            raise LookupError(f"{self.kind} {key!r} is declared but none of {self.modules} registers it")
        return self._items[key]

    def __setitem__(self, name: str, item: T) -> None:
        key = name.lower()
        self._names[key] = None
        self._items[key] = item

    def __delitem__(self, name: str) -> None:
        key = name.lower()
        del self._names[key]
        self._items.pop(key, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._names))

    def __len__(self) -> int:
        return len(self._names)

    def undeclared(self) -> list[str]:
        """Names the implementations register that this module does not declare (a test keeps this empty)."""
        return sorted(set(self._items) - set(self._declared))


# -- the built-in registries -------------------------------------------------------------------------
# Their names are declared here so that config validation and `--help` import no torch. A new
# built-in is declared here and registered by its module; tests/test_registry.py checks both agree.

ENCODERS: Registry[Any] = Registry(
    "encoder", modules=("emimic.models.encoders",), names=("meanstd", "attentive", "gru", "transformer")
)
FUSIONS: Registry[Any] = Registry(
    "fusion",
    modules=("emimic.models.fusion",),
    names=("concat", "gated", "attention", "text_anchored", "tensor", "low_rank", "late"),
    aliases={"taemi": "text_anchored", "lmf": "low_rank", "tfn": "tensor", "cross_attention": "attention"},
)
LOSS_TERMS: Registry[Any] = Registry("loss term", modules=("emimic.training.losses",), names=("mse", "pcc", "ccc"))
# Declaration order is the order extractors run on a clip: `whisper` (which writes the transcript)
# comes before the extractors that read it (`text_emb`, `lexicon`).
EXTRACTORS: Registry[Any] = Registry(
    "extractor",
    modules=(
        "emimic.features.audio",
        "emimic.features.text",
        "emimic.features.lexicon",
        "emimic.features.vad",
        "emimic.features.vision",
    ),
    names=("egemaps", "wav2vec2", "hubert", "wavlm", "whisper", "text_emb", "lexicon", "vad", "face", "face_emb"),
    aliases={"asr": "whisper", "sentence": "text_emb", "facemesh": "face"},
)
