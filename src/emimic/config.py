"""Typed experiment configuration: the one source of defaults, loaded from YAML.

The defaults of these models *are* the reference method (Huang et al., ABAW 10 EMI), so
``configs/paper.yaml`` only names it and an ablation preset only spells out what it changes.
Every section rejects unknown keys: a typo is a :class:`~emimic.errors.ConfigError` naming the
key, never a silently ignored setting. Names of encoders, fusions and loss terms are checked
against their registries. YAML is read with ``yaml.safe_load``.

Example::

    from emimic.config import load_config
    cfg = load_config("paper", overrides={"train.max_epochs": 5, "seed": 1})
    cfg.model.encoder.name        # 'meanstd'
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from emimic.defaults import (
    ACCELERATORS,
    DEFAULT_OBSERVED_VAD,
    DEFAULT_PRESET,
    PRECISIONS,
    SEED_MAX,
    STRATEGIES,
    preset_dir,
    preset_names,
)
from emimic.errors import ConfigError
from emimic.registry import ENCODERS, FUSIONS, LOSS_TERMS, Registry

PooledStat = Literal["mean", "std", "min", "max"]
Accelerator = Literal[ACCELERATORS]  # type: ignore[valid-type]
Precision = Literal[PRECISIONS]  # type: ignore[valid-type]
Strategy = Literal[STRATEGIES]  # type: ignore[valid-type]
POOLED_STATS: tuple[str, ...] = get_args(PooledStat)  # the order the store packs them in


def _registered(registry: Registry, name: str) -> str:
    try:
        return registry.check(name)
    except ConfigError as exc:  # pydantic only aggregates ValueErrors
        raise ValueError(str(exc)) from None


class Section(BaseModel):
    # NaN or Inf (YAML's .nan / .inf) is never a setting: an infinite learning rate only shows as a diverged run
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class EncoderConfig(Section):
    """How a modality's frames become one vector (registry: ``emimic.registry.ENCODERS``)."""

    name: str = "meanstd"
    stats: list[PooledStat] = Field(default_factory=lambda: ["mean", "std"], min_length=1)
    hidden: int = Field(128, gt=0, description="width of the sequence encoders")
    layers: int = Field(1, gt=0)
    heads: int = Field(4, gt=0, description="transformer: attention heads (must divide hidden)")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    max_frames: int = Field(
        8, gt=0, description="sequence encoders: a longer clip becomes this many chunk means (peaks survive);"
        " an epoch's cost grows with it"
    )

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        return _registered(ENCODERS, value)

    @field_validator("stats")
    @classmethod
    def _ordered(cls, value: list[str]) -> list[str]:
        return [s for s in POOLED_STATS if s in value]

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> EncoderConfig:
        # only the transformer splits its width among heads; the other encoders ignore heads
        if self.name == "transformer" and self.hidden % self.heads:
            raise ValueError(f"the transformer encoder's hidden {self.hidden} is not a multiple of heads {self.heads};"
                             " change one of them")
        return self


class BranchConfig(Section):
    """The MLP projecting an encoder's output to the branch embedding."""

    hidden: int = Field(256, gt=0)
    embed: int = Field(64, gt=0)
    dropout: float = Field(0.3, ge=0.0, lt=1.0)


class HeadConfig(Section):
    """The shared regression head (and the width of nothing else: auxiliary heads are linear)."""

    hidden: int = Field(256, gt=0)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    output: Literal["sigmoid", "clip"] = Field(
        "sigmoid", description="sigmoid, or a linear output clipped to [0, 1] at inference"
    )


class VADConfig(Section):
    """The VAD latent prior on the acoustic branch (see emimic.models.vad_prior)."""

    enabled: bool = True
    modality: str | None = Field(None, description="the acoustic branch; default: wav2vec2 or the first audio-like")
    observed: str | None = Field(DEFAULT_OBSERVED_VAD,
                                 description="modality whose 3 columns serve as an observed prior, if present")
    prior_std: float = Field(0.5, gt=0.0)


class FusionConfig(Section):
    """Hyper-parameters of the fusions (registry ``emimic.registry.FUSIONS``); each fusion reads only its own
    (see docs/method.md, "Fusion")."""

    width: int = Field(64, gt=0, description="gated, attention, text_anchored, low_rank: width of the fused tokens")
    heads: int = Field(4, gt=0, description="attention, text_anchored: attention heads (must divide width)")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="attention, text_anchored: dropout on attention weights")
    rank: int = Field(4, gt=0, description="low_rank: rank of the factorised fusion tensor")
    tensor_width: int = Field(
        8, gt=0, description="tensor: each branch is projected to this width before the outer product"
    )
    text_modality: str | None = Field(
        None, description="text_anchored: the query branch; default: text_emb, else the first text-like branch"
    )

    @model_validator(mode="after")
    def _heads_divide_width(self) -> FusionConfig:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not a multiple of heads {self.heads}; change one of them")
        return self


class ModelConfig(Section):
    modalities: list[str] | None = Field(None, description="branches to build; default (null): every modality found")
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    branch: BranchConfig = Field(default_factory=BranchConfig)
    fusion: str = "concat"
    fusion_options: FusionConfig = Field(default_factory=FusionConfig)
    head: HeadConfig = Field(default_factory=HeadConfig)
    modality_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="training-time chance to mask a branch")
    vad: VADConfig = Field(default_factory=VADConfig)
    members: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        1, description="models trained side by side from their own initialisations, predicting their mean (a seed"
        " ensemble in one run); auto: by the number of training clips (emimic.models.ensemble.auto_members)"
    )

    @field_validator("fusion")
    @classmethod
    def _known(cls, value: str) -> str:
        return _registered(FUSIONS, value)

    @field_validator("modalities")
    @classmethod
    def _some_modalities(cls, value: list[str] | None) -> list[str] | None:
        if value == []:  # not "no branch": a model without inputs cannot be built
            raise ValueError("name at least one modality, or leave the key out (null) to use every modality found")
        repeated = sorted({name for name in value or [] if value.count(name) > 1})  # two branches of one name clash
        if repeated:
            raise ValueError(f"{', '.join(map(repr, repeated))} named more than once; name each modality once")
        return value

    @field_validator("members", mode="before")
    @classmethod
    def _member_count(cls, value: Any) -> Any:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError("must be a whole number >= 1 or auto")


class LossConfig(Section):
    terms: dict[str, float] = Field(default_factory=lambda: {"mse": 1.0, "pcc": 1.0})
    aux: float = Field(1.0, ge=0.0, description="weight of the auxiliary per-branch losses (0 disables)")
    vad: float = Field(0.05, ge=0.0, description="weight of the VAD prior's KL term")
    sample_weights: Literal["none", "sqrt_raters"] = Field(
        "none", description="weight each training clip: none, or by the square root of its rater count (the split"
        " CSV's 'raters' column, else inferred from the label fractions k/N)"
    )
    max_raters: int = Field(
        20, ge=1, description="largest rater count inferred from label fractions (finer labels count as this many)"
    )
    emotion_weights: dict[str, float] = Field(
        default_factory=dict, description="loss weight of each named emotion (others 1), normalised to mean 1; e.g."
        " {'Empathic Pain': 2.0} for a sparse dimension"
    )

    @field_validator("terms")
    @classmethod
    def _known(cls, value: dict[str, float]) -> dict[str, float]:
        checked = {_registered(LOSS_TERMS, name): weight for name, weight in value.items()}
        if any(w < 0 for w in checked.values()) or not any(checked.values()):
            raise ValueError("loss term weights must be >= 0 and at least one must be positive")
        return checked

    @field_validator("emotion_weights")
    @classmethod
    def _emotions(cls, value: dict[str, float]) -> dict[str, float]:
        from emimic.labels import EMOTIONS  # pandas: config validation stays light for --help

        unknown = [name for name in value if name not in EMOTIONS]
        if unknown:
            raise ValueError(f"unknown emotion(s) {unknown}; use the names {list(EMOTIONS)}")
        if any(not w > 0 for w in value.values()):
            raise ValueError("emotion weights must be > 0")
        return value


class OptimConfig(Section):
    lr: float = Field(2e-3, gt=0.0)
    weight_decay: float = Field(1e-2, ge=0.0)
    batch_size: int = Field(256, gt=1)
    scheduler: Literal["cosine", "none"] = "cosine"
    warmup_epochs: int = Field(1, ge=0)


class EMAConfig(Section):
    """Exponential moving average of the weights; ``warmup`` names the schedule of the decay
    (see :func:`emimic.training.ema.ema_decay`): after ``n`` updates the decay is ``min(decay,
    (1+n)/(10+n))`` for ``adaptive`` (the paper's; it reaches 0.99 only after ~890 updates),
    ``decay`` from the first update for ``none``, and ``decay·min(1, n/warmup_steps)`` for ``linear``."""

    enabled: bool = True
    decay: float = Field(0.99, gt=0.0, lt=1.0)
    warmup: Literal["adaptive", "none", "linear"] = "adaptive"
    warmup_steps: int = Field(100, gt=0, description="updates until the decay reaches its value (warmup: linear)")

    @field_validator("warmup", mode="before")
    @classmethod
    def _legacy_flag(cls, value: object) -> object:
        # run folders written before the schedule had a name recorded warmup: true/false
        return {True: "adaptive", False: "none"}.get(value, value) if isinstance(value, bool) else value


class TrainConfig(Section):
    max_epochs: int = Field(30, gt=0)
    valid_fraction: float | None = Field(
        None, gt=0.0, lt=1.0, description="share of train held out for validation when the corpus has no valid split"
    )
    patience: int = Field(10, gt=0, description="epochs without a better val mean PCC before stopping")
    selection: Literal["best", "last"] = Field(
        "best", description="checkpoint kept: best (the epoch with the best val mean PCC, early stopping on) or last"
        " (every epoch runs; for a refit whose validation clips are among its training clips)"
    )
    ema: EMAConfig = Field(default_factory=EMAConfig)
    num_workers: int = Field(0, ge=0)
    threads: int | None = Field(
        1, gt=0, description="torch CPU threads for training and inference (small MLPs run fastest on one); null: "
        "torch's default"
    )
    accelerator: Accelerator = Field("cpu", description="cpu, gpu, or auto (a GPU when there is one)")
    devices: int | Literal["auto"] = Field(
        1, description="processes (one per device) per node; > 1 trains with DDP, one batch of optim.batch_size each"
    )
    num_nodes: int = Field(1, gt=0, description="machines; with devices, the world size is num_nodes x devices")
    strategy: Strategy = Field(
        "auto", description="Lightning's: auto (ddp when there is more than one process) or ddp (starts a process"
        " per device by running the command again, or joins the processes torchrun or SLURM started)"
    )
    precision: Precision = Field("32-true", description="32-true, or 16-mixed / bf16-mixed (automatic mixed precision)")

    @field_validator("devices")
    @classmethod
    def _some_devices(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("devices must be at least 1 (or auto)")
        return value


class ExperimentConfig(Section):
    """A complete, resolved experiment: what ``RUN/config.yaml`` records."""

    name: str = "paper"  # the schema defaults are the paper method; a YAML without a name is a variant of it
    description: str = ""
    seed: int = Field(0, ge=0, le=SEED_MAX)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)


def list_presets() -> dict[str, str]:
    """Packaged preset names and their one-line descriptions."""
    out = {}
    for path in sorted(preset_dir().glob("*.yaml")):
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        out[path.stem] = str(raw.get("description", "")).strip().splitlines()[0] if raw.get("description") else ""
    return out


def read_yaml_mapping(path: Path, *, what: str, holds: str) -> dict[str, Any]:
    """The mapping in the YAML file ``path`` (an empty file is ``{}``), or one ConfigError sentence naming the file.

    ``what`` names the kind of file the user should give (``"a config YAML file"``), ``holds`` what its mapping
    holds (``"settings"``); config files, ablation grids and search spaces share this reader."""
    try:
        text = path.read_text(encoding="utf-8")
        twice = _repeated_keys(yaml.compose(text, Loader=yaml.SafeLoader))
        raw = yaml.safe_load(text)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror}); give {what}.") from None
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: a date YAML reads that no calendar has, bytes not UTF-8
        raise ConfigError(f"{path}: is not valid YAML ({' '.join(str(exc).split())}).") from None
    if twice is not None:
        raise ConfigError(f"{path}: {_given_twice(*twice)}, and YAML would keep only the last; keep one of them.")
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must hold a mapping of {holds}, not {type(raw).__name__}.")
    return raw


# The tag of a ``<<`` key: several in one mapping each merge their mapping in.
_MERGE_TAG = "tag:yaml.org,2002:merge"


def _given_twice(first: yaml.ScalarNode, second: yaml.ScalarNode) -> str:
    """How a key given twice is named: once when written alike, else each spelling as written (``true`` then ``1``
    is one key to YAML, and naming only ``1`` would send the user looking for another ``1``)."""
    if first.value == second.value:
        return (f"key {first.value!r} is given twice in one mapping (lines {first.start_mark.line + 1} and"
                f" {second.start_mark.line + 1})")
    return (f"key {first.value!r} (line {first.start_mark.line + 1}) is given twice in one mapping, the second time"
            f" as {second.value!r} (line {second.start_mark.line + 1}), which YAML reads as the same key")


def _repeated_keys(root: yaml.Node | None) -> tuple[yaml.ScalarNode, yaml.ScalarNode] | None:
    """Both occurrences of the first key written twice in one mapping of the YAML tree ``root`` (PyYAML keeps the
    last value silently, so a section given twice would lose the first's settings). Keys are compared as the
    values PyYAML loads them as (``1`` and ``'1'`` are two keys; ``on`` and ``true`` are one), and ``<<`` merge keys
    are left out (PyYAML merges each). The tree is the one composed before merges are applied, so a key may still
    override one merged in."""
    constructor = yaml.constructor.SafeConstructor()
    pending, seen_nodes = [root], set()
    while pending:
        node = pending.pop()
        if node is None or id(node) in seen_nodes:  # an alias repeats a node already walked
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: dict[object, yaml.ScalarNode] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE_TAG:
                    loaded = constructor.construct_object(key)
                    if loaded in keys:
                        return keys[loaded], key
                    keys[loaded] = key
                pending.append(value)
        elif isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
    return None


def _read_yaml(source: str | Path) -> tuple[dict[str, Any], str]:
    path = Path(source)
    if not path.exists() and path.suffix == "":
        preset = preset_dir() / f"{source}.yaml"
        if not preset.exists():
            raise ConfigError(f"no config file or preset {str(source)!r}; presets: {', '.join(preset_names())}.")
        path = preset
    elif not path.exists() and str(path) == f"{path.stem}.yaml" and path.stem in preset_names():
        raise ConfigError(f"{path}: no such file; the packaged preset is named {path.stem!r}, without .yaml.")
    return read_yaml_mapping(path, what="a config YAML file", holds="settings"), str(path)


def _set_dotted(tree: dict[str, Any], key: str, value: object) -> None:
    node = tree
    *parents, leaf = key.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section.")
        node = child
    node[leaf] = value


def _section_keys(model: type[BaseModel], path: Sequence[str | int]) -> list[str]:
    """The keys allowed in the section at ``path`` of ``model`` (empty when ``path`` is not a section)."""
    for part in path:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _describe(error: Mapping[str, Any], model: type[BaseModel]) -> str:
    where = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        *section, key = error["loc"]
        allowed = _section_keys(model, section)
        close = difflib.get_close_matches(str(key), allowed, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"
        return f"unknown key {where!r} ({hint})"
    if error["type"] == "missing":  # pydantic's input is then the whole section, no value of the key
        return f"{where} is missing"
    message = error["msg"].removeprefix("Value error, ").rstrip(".")
    # A check of the whole section (loc ()) has no single offending value to quote.
    return f"{where}: {message} (got {error.get('input')!r})" if where else message


def explain(exc: ValidationError, model: type[BaseModel], *, source: str) -> ConfigError:
    """One sentence for every problem pydantic found: the key, what is wrong, and a did-you-mean for typos."""
    return ConfigError(f"{source}: " + "; ".join(_describe(e, model) for e in exc.errors()) + ".")


def validate_config(raw: Mapping[str, Any], *, source: str = "config") -> ExperimentConfig:
    """Validate a plain mapping into an :class:`ExperimentConfig`; errors name the offending key."""
    try:
        return ExperimentConfig.model_validate(dict(raw))
    except ValidationError as exc:
        raise explain(exc, ExperimentConfig, source=source) from None


def load_config(
    source: str | Path | None = None, *, overrides: Mapping[str, object] | None = None
) -> ExperimentConfig:
    """Load a YAML file or a packaged preset name (default: ``DEFAULT_PRESET``), then apply dotted overrides."""
    raw, where = _read_yaml(source if source is not None else DEFAULT_PRESET)
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value)
    return validate_config(raw, source=where)


def with_overrides(cfg: ExperimentConfig, overrides: Mapping[str, object]) -> ExperimentConfig:
    """A validated copy of ``cfg`` with dotted overrides such as ``{"train.max_epochs": 5}`` applied."""
    raw = cfg.model_dump(mode="json")
    for key, value in overrides.items():
        _set_dotted(raw, key, value)
    return validate_config(raw, source="overrides")


def check_setting(cfg: ExperimentConfig, key: str, value: object, *, varying: Collection[str] = ()) -> None:
    """Refuse ``value`` for the dotted setting ``key`` of ``cfg`` when it is no valid value of that setting. A rule
    that combines it with the other settings of its section (the transformer's hidden a multiple of its heads) is
    left to the config it ends up in only when one of those settings is among ``varying`` (a search space's other
    parameters); with all of them fixed, the value can never fit and is refused too."""
    raw = cfg.model_dump(mode="json")
    _set_dotted(raw, key, value)
    try:
        ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        path = tuple(key.split("."))
        section = ".".join(path[:-1]) + "."
        open_rule = any(other != key and other.startswith(section) for other in varying)
        refused = [error for error in exc.errors()
                   if tuple(map(str, error["loc"]))[:len(path)] == path or not open_rule]
        if refused:
            raise ConfigError(f"overrides: {'; '.join(_describe(e, ExperimentConfig) for e in refused)}.") from None


def config_to_yaml(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
