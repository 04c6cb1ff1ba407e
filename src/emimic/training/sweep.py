"""``sweep()``: an Optuna search over the experiment config; every trial is one ``train`` run folder.

The search space is a YAML file (default: the packaged ``configs/spaces/default.yaml``; unknown keys
are refused) mapping dotted config keys to distributions::

    params:
      optim.lr: {type: float, low: 5.0e-4, high: 1.0e-2, log: true}
      model.branch.embed: {type: categorical, choices: [32, 64, 128]}
      model.fusion: {type: categorical, registry: fusion}   # every registered fusion
      model.modalities: {type: categorical, choices: [[vit], [vit, wav2vec2]]}   # a choice may be a list
    pruner: {startup_trials: 3, warmup_epochs: 5}          # Optuna's MedianPruner
    enqueue: [{optim.lr: 2.0e-3}]                          # trials to run first (then TPE samples)

A list choice is stored in Optuna as its label (``vit+wav2vec2``, see :func:`choice_label`); everything read back
from the study (the table, best.yaml, a trial's config, the trials given to ``report``) holds the list.

Each trial trains the base config (``config``, default: the default preset) with its sampled values into
``OUT/trials/NNNN`` and reports the validation mean PCC every epoch; a trial whose curve falls below
the median of the finished trials' at the same epoch is pruned (state PRUNED). The objective is the
run's best validation mean PCC (the selected checkpoint's).

Sweep folder::

    OUT/sweep.json       what the study was made with: base config, space, data fingerprint, storage
    OUT/study.log        the Optuna study (JournalStorage file; --storage names another, e.g. sqlite:///s.db)
    OUT/trials/NNNN/     a `train` run folder per trial
    OUT/trials.csv       one row per trial: number, state, value, epochs, seconds and its parameters
    OUT/best.yaml        the base config with the best trial's values: ``emimic train --config OUT/best.yaml``

Calling it again with the same settings resumes: ``trials`` is the total the study should hold, so
the same count runs nothing new and a larger one adds trials; a trial a killed sweep left running is
run again in its own folder (which resumes from its last epoch). Other data, space, base config or
storage are refused, unless ``overwrite``: the new sweep then replaces the folder once one of its trials saved an
epoch (until then the old folder is kept aside and put back if it fails, see :mod:`emimic.outputs`). ``jobs`` > 1
runs trials on up to that many local processes sharing the storage, one per trial left at most (the runner of
:mod:`emimic.training.jobs`; when one is enough, the trials run in this process): a job is a worker's whole share
of trials, so the emimic warnings of its trials are raised here when it has run them all, or when it fails
(before its error), while each trial is reported as it finishes.

A study belongs to the sweep folder that made it. A storage outside the folder (``--storage sqlite:///s.db``) may
hold the studies of several sweeps (named after their settings); a study there that already ran trials is never
adopted by a folder that does not record it (its trials' run folders are elsewhere, or gone) and never deleted by
emimic (another folder may be using it): that is refused, naming the study and how to delete it. Only a study this
call created is deleted again, when the sweep fails before any trial saved an epoch, so the corrected command
starts afresh.

Example::

    from emimic.training.sweep import sweep
    result = sweep("data/sim", "runs/sweep", trials=20, max_epochs=30, jobs=2)
    result.best_value, result.best_config
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import itertools
import json
import math
import shlex
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState
from optuna_integration import PyTorchLightningPruningCallback
from pydantic import Field, ValidationError, model_validator

from emimic.config import (
    ExperimentConfig,
    Section,
    check_setting,
    config_to_yaml,
    explain,
    load_config,
    read_yaml_mapping,
    with_overrides,
)
from emimic.data import FeatureStore, VidmimicDataset, open_dataset, with_valid_split
from emimic.data.holdout import check_valid_size, validation_clips
from emimic.defaults import preset_dir
from emimic.errors import ConfigError, IncompatibleRun, NothingSaved
from emimic.io import atomic_path, write_text
from emimic.outputs import check_folder_settings, refuse_inside_dataset, warn_leftovers
from emimic.registry import ENCODERS, FUSIONS
from emimic.training.history import MONITOR
from emimic.training.jobs import Runner, holds_a_started_run, results_folder
from emimic.training.provenance import RECORD_FILE, check_model_format, corpus_fingerprint, read_run_record
from emimic.training.run import (
    MODALITY_SETTINGS,
    check_selectable,
    modalities_read_by_any,
    train,
    untrainable_modalities,
    valid_way_out,
)

SETTINGS_FILE = "sweep.json"
STUDY_FILE = "study.log"
TRIALS_DIR = "trials"
TABLE_FILE = "trials.csv"
BEST_FILE = "best.yaml"
DEFAULT_SPACE = preset_dir() / "spaces" / "default.yaml"
# A trial a killed sweep left RUNNING, or one a crash or Ctrl-C failed, is enqueued again; the new one names it here.
RETRY_OF = "retry_of"
INVALID = "invalid_config"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
CHOICE_REGISTRIES = {"fusion": FUSIONS, "encoder": ENCODERS}
# The setting that decides a trial's branches, so the modalities its valid clips must have.
BRANCHES = "model.modalities"

# What a categorical choice or an enqueued value may be. Optuna persists categorical choices that are None, bool, int,
# float or str only, so a list (the value of a list-valued setting such as model.modalities) is stored as its label.
Scalar = bool | int | float | str | None
Choice = Scalar | list[Scalar]
SUPPORTED_CHOICES = "a finite number, a string, true, false, null, or a list of those such as [vit, wav2vec2]"
PARAM_TYPES_IN_WORDS = "float, int or categorical"


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, bool | int | str) or (isinstance(value, float) and math.isfinite(value))


def is_choice(value: object) -> bool:
    """Whether ``value`` may be a categorical choice or an enqueued value: a scalar, or a flat list of scalars."""
    return _is_scalar(value) or (isinstance(value, list | tuple) and all(map(_is_scalar, value)))


def choice_label(choice: Choice) -> Scalar:
    """How Optuna stores ``choice``: a scalar as itself (so a study of scalar choices is what it always was), a list as
    its items joined by '+' (``vit+wav2vec2``), readable in Optuna's own tools. The label is a function of the list
    alone, so every worker sharing the storage and every resume of the study names the choices alike (Optuna refuses
    a categorical parameter whose choices change within a study)."""
    if not isinstance(choice, list | tuple):
        return choice
    return "+".join(item if isinstance(item, str) else json.dumps(item) for item in choice) or "[]"


class _Param(Section):
    """What every parameter does with the values Optuna stores: a float or int is stored as itself."""

    EXAMPLE: ClassVar[str]

    def value_of(self, stored: Any) -> Choice:
        """The value a trial's config takes for the value ``stored`` in Optuna."""
        return stored

    def stored(self, value: Choice) -> Choice:
        """What Optuna stores for ``value`` (an enqueued trial's, which :meth:`enqueue_refusal` let through)."""
        return value


class _RangeParam(_Param):
    """A number between ``low`` and ``high``: an enqueued one outside them would run a trial outside the space."""

    low: float
    high: float

    def enqueue_refusal(self, value: Choice) -> str | None:
        """Why Optuna cannot take ``value`` as this parameter's in an enqueued trial (None: it can)."""
        if not isinstance(value, int | float) or isinstance(value, bool):
            return "which is no number"
        return None if self.low <= value <= self.high else f"which lies outside its range {self.low!r} to {self.high!r}"


class FloatParam(_RangeParam):
    EXAMPLE: ClassVar[str] = "{type: float, low: 1.0e-3, high: 1.0e-2, log: true}"

    type: Literal["float"]
    low: float
    high: float
    log: bool = False

    def values(self) -> list[Choice]:
        return [self.low, self.high]

    def suggest(self, trial: optuna.Trial, name: str) -> Choice:
        return trial.suggest_float(name, self.low, self.high, log=self.log)


class IntParam(_RangeParam):
    EXAMPLE: ClassVar[str] = "{type: int, low: 8, high: 64}"

    type: Literal["int"]
    low: int
    high: int
    log: bool = False

    def values(self) -> list[Choice]:
        return [self.low, self.high]

    def suggest(self, trial: optuna.Trial, name: str) -> Choice:
        return trial.suggest_int(name, self.low, self.high, log=self.log)


class CategoricalParam(_Param):
    """Listed ``choices``, or every name of a ``registry`` (``fusion``, ``encoder``) as the registry has them. A choice
    may be a list (the value of a list-valued setting): Optuna stores it as its :func:`choice_label`, and every value
    read back from the study is mapped back to the list."""

    EXAMPLE: ClassVar[str] = "{type: categorical, choices: [32, 64]} or {type: categorical, registry: fusion}"

    type: Literal["categorical"]
    choices: list[Choice] | None = Field(None, min_length=1)
    registry: Literal["fusion", "encoder"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _supported_choices(cls, raw: Any) -> Any:
        """One sentence for a choice of no supported type (pydantic would list each type of the union it failed)."""
        choices = raw.get("choices") if isinstance(raw, dict) else None
        unsupported = [choice for choice in choices if not is_choice(choice)] if isinstance(choices, list) else []
        if unsupported:
            raise ValueError(f"choice {unsupported[0]!r} is not supported: a choice is {SUPPORTED_CHOICES}")
        return raw

    @model_validator(mode="after")
    def _one_source(self) -> CategoricalParam:
        if (self.choices is None) == (self.registry is None):
            raise ValueError("give either choices (a list) or registry (fusion or encoder)")
        labels = [choice_label(choice) for choice in self.choices or []]
        for (i, first), (j, second) in itertools.combinations(enumerate(labels), 2):
            if first == second:  # Optuna finds a stored value by ==: 1, 1.0 and true are one to it
                raise ValueError(f"choices {self.choices[i]!r} and {self.choices[j]!r} are one choice to Optuna, which"
                                 f" stores both as {first!r}; keep one of them")
        return self

    def values(self) -> list[Choice]:
        return list(self.choices) if self.choices is not None else CHOICE_REGISTRIES[str(self.registry)].names()

    def suggest(self, trial: optuna.Trial, name: str) -> Choice:
        return self.value_of(trial.suggest_categorical(name, [choice_label(choice) for choice in self.values()]))

    def value_of(self, stored: Any) -> Choice:
        return {choice_label(choice): choice for choice in self.values()}.get(stored, stored)

    def stored(self, value: Choice) -> Scalar:
        return choice_label(value)

    def enqueue_refusal(self, value: Choice) -> str | None:
        labels = [choice_label(choice) for choice in self.values()]
        return None if choice_label(value) in labels else f"which is not among its choices {self.values()!r}"


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]
PARAM_TYPES: dict[str, type[FloatParam | IntParam | CategoricalParam]] = {
    "float": FloatParam, "int": IntParam, "categorical": CategoricalParam}


class PrunerConfig(Section):
    """Optuna's MedianPruner: no pruning before ``startup_trials`` finished trials, nor before ``warmup_epochs``."""

    startup_trials: int = Field(3, ge=0)
    warmup_epochs: int = Field(5, ge=0)


class SearchSpace(Section):
    params: dict[str, Param] = Field(min_length=1)
    pruner: PrunerConfig = Field(default_factory=PrunerConfig)
    enqueue: list[dict[str, Choice]] = Field(default_factory=list, description="trials to run first")

    @model_validator(mode="before")
    @classmethod
    def _supported_enqueued_values(cls, raw: Any) -> Any:
        """One sentence for an enqueued value of no supported type (pydantic would list each type of the union)."""
        enqueue = raw.get("enqueue") if isinstance(raw, dict) else None
        for number, trial in enumerate(enqueue if isinstance(enqueue, list) else []):
            for name, value in trial.items() if isinstance(trial, dict) else ():
                if not is_choice(value):
                    raise ValueError(f"enqueue: trial {number} gives {name} {value!r}, which is not supported: a value"
                                     f" is {SUPPORTED_CHOICES}")
        return raw

    @model_validator(mode="after")
    def _bounds(self) -> SearchSpace:
        for name, param in self.params.items():
            if isinstance(param, FloatParam | IntParam) and not param.low < param.high:
                raise ValueError(f"params.{name}: low must be below high")
        for number, trial in enumerate(self.enqueue):
            if unknown := sorted(set(trial) - set(self.params)):
                raise ValueError(f"enqueue: {unknown} are not among the params")
            for name, value in trial.items():
                if refusal := self.params[name].enqueue_refusal(value):
                    raise ValueError(f"enqueue: trial {number} gives {name} {value!r}, {refusal}")
        return self

    def check_against(self, cfg: ExperimentConfig, source: str) -> None:
        """Every key must be a setting of ``cfg`` and every bound, choice and enqueued value a valid value of it; a
        value that fits only some values of another searched setting (heads and hidden of the transformer) makes its
        trials invalid, one that fits none of the fixed ones is refused."""
        for name, param in self.params.items():
            for value in param.values():
                self._check_setting(cfg, name, value, f"{source}: params.{name} = {value!r}")
        for number, trial in enumerate(self.enqueue):
            for name, value in trial.items():
                self._check_setting(cfg, name, value,
                                    f"{source}: enqueue: trial {number} gives {name} {value!r}, which")

    def _check_setting(self, cfg: ExperimentConfig, name: str, value: Choice, what: str) -> None:
        try:
            check_setting(cfg, name, value, varying=self.params.keys())
        except ConfigError as exc:
            detail = str(exc).removeprefix("overrides: ").rstrip(".")
            raise ConfigError(f"{what} is no valid setting ({detail}).") from None

    def modalities_read(self, cfg: ExperimentConfig) -> set[str] | None:
        """The modalities a trial on ``cfg`` may read, whatever values it samples or is enqueued with (``None``:
        every modality found): the union over every combination of the values of the settings that decide them."""
        return modalities_read_by_any(trial for _, trial in self.combinations(cfg, MODALITY_SETTINGS))

    def combinations(self, cfg: ExperimentConfig, keys: Collection[str]
                     ) -> list[tuple[dict[str, Choice], ExperimentConfig]]:
        """``cfg`` with each combination of the values trials may give the searched ones of ``keys``: those values,
        and the config. A combination that is no valid config is left out, as its trial fails before it reads
        anything; none of ``keys`` searched, or every combination invalid: ``cfg`` alone (the checks before the
        first trial read it)."""
        searched = [key for key in self.params if key in keys]
        trials = []
        for combination in itertools.product(*(self.values_of(key) for key in searched)):
            values = dict(zip(searched, combination, strict=True))
            with contextlib.suppress(ConfigError):
                trials.append((values, with_overrides(cfg, values)))
        return trials or [({}, cfg)]

    def values_of(self, key: str) -> list[Choice]:
        """Every value a trial may give the setting ``key``: the space's and its enqueued trials' (none: unsearched)."""
        searched = self.params[key].values() if key in self.params else []
        return [*searched, *(trial[key] for trial in self.enqueue if key in trial)]

    def config_values(self, stored: Mapping[str, Any]) -> dict[str, Choice]:
        """The values a trial's config takes for the parameters Optuna ``stored`` for it (a list choice is stored as
        its label): what every reader of a trial's parameters shows (the table, best.yaml, the report of a trial)."""
        return {name: self.params[name].value_of(value) if name in self.params else value
                for name, value in stored.items()}

    def stored_values(self, trial: Mapping[str, Choice]) -> dict[str, Choice]:
        """What Optuna stores for the values of the enqueued ``trial``."""
        return {name: self.params[name].stored(value) for name, value in trial.items()}

    def configured(self, trial: FrozenTrial) -> FrozenTrial:
        """A copy of ``trial`` whose ``params`` are its config's values (see :meth:`config_values`)."""
        shown = copy.copy(trial)
        shown.params = self.config_values(trial.params)
        return shown


def load_space(source: str | Path | None = None) -> SearchSpace:
    """The search space of the YAML file ``source`` (default: the packaged default space)."""
    path = Path(source) if source is not None else DEFAULT_SPACE
    raw = read_yaml_mapping(path, what="a search space YAML file", holds="'params' and its options")
    params = raw.get("params")
    if isinstance(params, dict):  # each on its own, so an error names the parameter and its allowed keys
        raw = {**raw, "params": {name: _param(name, spec, str(path)) for name, spec in params.items()}}
    try:
        return SearchSpace.model_validate(raw)
    except ValidationError as exc:
        raise explain(exc, SearchSpace, source=str(path)) from None


def _param(name: str, raw: object, source: str) -> FloatParam | IntParam | CategoricalParam:
    """The parameter ``name`` of the space ``raw``, or one sentence naming it, what is wrong and what one looks like."""
    where = f"{source}: params.{name}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping such as {FloatParam.EXAMPLE} (got {raw!r}).")
    given = raw.get("type")
    kind = next((kind for type_name, kind in PARAM_TYPES.items() if type_name == given), None)  # given: any YAML
    if kind is None:
        problem = "type is missing" if given is None else f"type {given!r} is unknown"
        raise ConfigError(f"{where}: {problem}; give type: {PARAM_TYPES_IN_WORDS}, e.g. {FloatParam.EXAMPLE}.")
    try:
        return kind.model_validate(raw)
    except ValidationError as exc:
        explained = explain(exc, kind, source=where)
        if all(error["type"] == "value_error" for error in exc.errors()):  # the validators' sentences say what to do
            raise explained from None
        example = f"a {given} parameter looks like {kind.EXAMPLE}"
        raise ConfigError(f"{str(explained).removesuffix('.')}; {example}.") from None


@dataclass(frozen=True)
class Worker:
    """What one process of a sweep needs to run its share of trials (plain, picklable values)."""

    root: str
    store_dir: str
    out: str
    storage: str
    study: str
    config: ExperimentConfig
    space: SearchSpace
    trials: int
    sampler_seed: int


@dataclass
class SweepResult:
    out: Path
    table: pd.DataFrame  # one row per trial (trials.csv)
    ran: int  # trials this call ran
    best_trial: int | None
    best_value: float | None
    best_params: dict[str, Any]
    best_config: Path | None
    valid_fraction: float | None = None  # the share of train every trial held out for validation, if any
    held_out_by: str | None = None  # the group column whose whole groups that share is made of, if it is

    @property
    def validated_on(self) -> str:
        """The clips every trial was scored on, in words."""
        return validation_clips(self.valid_fraction, self.held_out_by)


def open_storage(spec: str) -> optuna.storages.BaseStorage:
    """A database URL (``sqlite:///sweep.db``) is an RDB storage; anything else is a JournalStorage file's path
    (safe for several processes on one machine, where sqlite may report 'database is locked')."""
    from optuna.storages.journal import JournalFileBackend

    try:
        if "://" in spec:
            return optuna.storages.RDBStorage(spec)
        return optuna.storages.JournalStorage(JournalFileBackend(spec))
    except Exception as exc:  # optuna and sqlalchemy raise many kinds; the user gets one sentence either way
        detail = " ".join(str(exc).split())[:200]
        raise ConfigError(f"--storage {spec!r} cannot be opened ({type(exc).__name__}: {detail}); give a database"
                          " URL such as sqlite:///sweep.db, or the path of a journal file.") from None


def _pruner(space: SearchSpace) -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(n_startup_trials=space.pruner.startup_trials,
                                       n_warmup_steps=space.pruner.warmup_epochs)


def _load(worker: Worker) -> optuna.Study:
    return optuna.load_study(study_name=worker.study, storage=open_storage(worker.storage),
                             sampler=optuna.samplers.TPESampler(seed=worker.sampler_seed), pruner=_pruner(worker.space))


def objective(trial: optuna.Trial, ds: VidmimicDataset, worker: Worker) -> float:
    """Train the base config with the trial's values; the best validation mean PCC of its run."""
    run = trial.user_attrs.get("run") or f"{trial.number:04d}"
    trial.set_user_attr("run", run)
    try:
        cfg = with_overrides(worker.config,
                             {name: p.suggest(trial, name) for name, p in worker.space.params.items()})
        result = train(ds, Path(worker.out) / TRIALS_DIR / run, config=cfg, progress=False,
                       callbacks=[PyTorchLightningPruningCallback(trial, monitor=MONITOR)])
    except ConfigError:
        trial.set_user_attr(INVALID, True)  # it would fail again: done, unlike a trial a crash or Ctrl-C failed
        raise
    trial.set_user_attr("epochs", result.epochs)
    trial.set_user_attr("best_epoch", result.best_epoch)
    return result.valid.mean_pcc


def run_worker(worker: Worker, ds: VidmimicDataset | None = None,
               report: Callable[[FrozenTrial], None] | None = None) -> None:
    """Run ``worker.trials`` trials of the study; a sampled config that is no valid config fails its trial only."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a spawned worker starts with optuna's INFO lines
    ds = ds if ds is not None else open_dataset(worker.root, store_dir=worker.store_dir)
    ds = with_valid_split(ds, worker.config.train.valid_fraction)
    callbacks = [lambda study, trial: report(worker.space.configured(trial))] if report is not None else []
    _load(worker).optimize(lambda trial: objective(trial, ds, worker), n_trials=worker.trials,
                           catch=(ConfigError,), callbacks=callbacks)


def _settings(cfg: ExperimentConfig, space: SearchSpace, data: str) -> dict[str, Any]:
    """What the study is made with: a resumed sweep must match all of it."""
    return {"config": cfg.model_dump(mode="json"), "space": space.model_dump(mode="json"), "data": data}


def _study_name(settings: Mapping[str, Any]) -> str:
    """One study per settings, so a storage shared by several sweeps never mixes their trials."""
    return "emimic-" + hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def _create(name: str, storage: optuna.storages.BaseStorage, space: SearchSpace) -> optuna.Study:
    """The study (created with the space's enqueued trials on first use). A trial that did not end on its own
    (left RUNNING by a killed sweep, or failed by a crash or Ctrl-C rather than as an invalid config) is failed
    if need be and enqueued again with its parameters and run folder. A rerun that crashes too counts as done, so
    a trial whose values always crash (memory) cannot hold the sweep up."""
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
    if not study.trials:
        for params in space.enqueue:
            study.enqueue_trial(space.stored_values(params))
    retried = {t.user_attrs.get(RETRY_OF) for t in study.get_trials(deepcopy=False)}
    crashed = [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
               if not t.user_attrs.get(INVALID) and RETRY_OF not in t.user_attrs and t.number not in retried]
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study.tell(trial.number, state=TrialState.FAIL)
    for trial in [*crashed, *stale]:
        study.enqueue_trial(trial.params, user_attrs={"run": trial.user_attrs.get("run", f"{trial.number:04d}"),
                                                      RETRY_OF: trial.number})
    return study


def _trials_run(storage: optuna.storages.BaseStorage, name: str) -> int | None:
    """How many trials of the study ``name`` in ``storage`` ran (merely enqueued ones do not count); None: there
    is no such study."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    return sum(t.state != TrialState.WAITING for t in storage.get_all_trials(study_id, deepcopy=False))


def _delete_command(storage: str, name: str) -> str:
    """The shell command that deletes the study ``name`` from the storage ``storage`` (as --storage takes it)."""
    journal = "" if "://" in storage else " --storage-class JournalFileBackend"
    return f"optuna delete-study --storage {shlex.quote(storage)}{journal} --study-name {shlex.quote(name)}"


@contextlib.contextmanager
def _study(name: str, storage: str, space: SearchSpace, *, out: Path, recorded: bool) -> Iterator[optuna.Study]:
    """The study ``name`` of the sweep folder ``out`` (``recorded``: ``out`` already records it). A study that
    ran trials for another folder is refused; one made here is deleted again if the block fails before a trial
    saved an epoch in ``out``."""
    opened = open_storage(storage)
    ran = _trials_run(opened, name)
    if ran and not recorded:
        raise ConfigError(f"--storage {storage} already holds the study {name} of these settings, with {ran}"
                          f" trial(s) that {out} does not record (their run folders are elsewhere or gone); delete"
                          f" the study to start it afresh here ({_delete_command(storage, name)}), or give another"
                          " --storage.")
    study = _create(name, opened, space)
    try:
        yield study
    except BaseException:
        if ran is None and not holds_a_started_run(out):
            # the error that stopped the sweep is the one to show; a study left behind is named by the refusal above
            with contextlib.suppress(Exception):
                optuna.delete_study(study_name=name, storage=opened)
        raise


def finished_trials(study: optuna.Study) -> int:
    """Trials that count towards the total: finished ones, except those enqueued again after a kill."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get(RETRY_OF) for t in trials}
    return sum(t.state in FINISHED and t.number not in retried for t in trials)


def _shares(remaining: int, jobs: int) -> list[int]:
    """``remaining`` trials split over at most ``jobs`` workers, none idle."""
    return [n for n in (remaining // jobs + (i < remaining % jobs) for i in range(jobs)) if n]


def trial_table(study: optuna.Study, space: SearchSpace) -> pd.DataFrame:
    """One row per trial that ran, its parameters as its config took them (a list choice as the list)."""
    rows = []
    for t in study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING)):
        seconds = t.duration.total_seconds() if t.duration is not None else None
        rows.append({"trial": t.number, "state": t.state.name, "value": t.value,
                     "epochs": t.user_attrs.get("epochs", len(t.intermediate_values)),
                     "seconds": None if seconds is None else round(seconds, 1), "run": t.user_attrs.get("run"),
                     **space.config_values(t.params)})
    return pd.DataFrame(rows)


def _best(study: optuna.Study) -> FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(complete, key=lambda t: t.value) if complete else None


def _write_best(out: Path, cfg: ExperimentConfig, best: FrozenTrial, values: Mapping[str, Choice],
                ds: VidmimicDataset) -> Path:
    """``cfg`` with the ``values`` of the trial ``best`` as OUT/best.yaml."""
    described = (f"Best of the `emimic sweep` in {out} on {ds.root}: trial {best.number}, validation mean PCC"
                 f" {best.value:z.4f} on {validation_clips(cfg.train.valid_fraction, ds.held_out_by)}.")
    best_cfg = with_overrides(cfg, {**values, "name": f"{cfg.name}-sweep", "description": described})
    write_text(out / BEST_FILE, config_to_yaml(best_cfg))
    return out / BEST_FILE


def sweep(
    data: str | Path | VidmimicDataset,
    out: str | Path,
    *,
    trials: int,
    config: ExperimentConfig | str | Path | None = None,
    space: SearchSpace | str | Path | None = None,
    max_epochs: int | None = None,
    seed: int | None = None,
    valid_fraction: float | None = None,
    storage: str | None = None,
    jobs: int = 1,
    overwrite: bool = False,
    progress: bool = True,
    report: Callable[[FrozenTrial], None] | None = None,
) -> SweepResult:
    """Search ``space`` around ``config`` (default: the default preset) on ``data`` until the study in ``out``
    holds ``trials`` finished trials; ``report(trial)`` is called as each trial finishes (in the process that ran
    it). ``max_epochs``, ``seed`` and ``valid_fraction`` (the share of train held out for validation on a corpus
    without a valid split, as ``train`` holds it out) override the config's. A folder made with other settings is
    refused unless ``overwrite``, which replaces it once a trial of the new sweep saved an epoch."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # trials are reported through ``report``
    out = Path(out)
    warn_leftovers(out)
    ds = data if isinstance(data, VidmimicDataset) else open_dataset(data)
    refuse_inside_dataset(out, ds.root)
    given = {"train.max_epochs": max_epochs, "seed": seed, "train.valid_fraction": valid_fraction}
    overrides = {key: value for key, value in given.items() if value is not None}
    cfg = with_overrides(config if isinstance(config, ExperimentConfig) else load_config(config), overrides)
    space_source = "search space" if isinstance(space, SearchSpace) else str(space or DEFAULT_SPACE)
    space = space if isinstance(space, SearchSpace) else load_space(space)
    space.check_against(cfg, space_source)
    ds = with_valid_split(ds, cfg.train.valid_fraction)
    # refused once here, not by every trial
    check_valid_size(ds.clips("valid"), root=ds.root, fraction=ds.held_out_fraction)
    # packed once here, before any worker opens it
    needed = space.modalities_read(cfg)
    store = ds.store(progress=progress, needed=needed)
    data = corpus_fingerprint(ds, store, out / SETTINGS_FILE, needed=needed)
    _check_selectable_trials(ds, store, cfg, space, space_source)
    # The default storage is recorded relative to the folder, so a moved sweep folder still resumes.
    storage_setting = {"storage": storage or f"OUT/{STUDY_FILE}"}
    replace = check_folder_settings(out, SETTINGS_FILE, {**_settings(cfg, space, data.recorded), **storage_setting},
                                    kind="sweep", overwrite=overwrite)
    if not replace and (out / SETTINGS_FILE).exists():
        replace = _outdated_trials(out, overwrite=overwrite)
    resuming = not replace and (out / SETTINGS_FILE).exists()
    settings = _settings(cfg, space, data.to_record(replaced=replace))
    recorded = {**settings, **storage_setting}
    storage = storage or str(out / STUDY_FILE)
    name = _study_name(settings)
    with results_folder(out, replace=replace, kind="sweep"):
        out.mkdir(parents=True, exist_ok=True)
        with _study(name, storage, space, out=out, recorded=resuming) as study:
            write_text(out / SETTINGS_FILE, json.dumps({**recorded, "study": name}, indent=2))
            done = finished_trials(study)
            _run(_workers(ds, out, cfg, space, storage, name, remaining=max(0, trials - done), jobs=jobs, done=done),
                 ds, report)
            if replace and not holds_a_started_run(out):
                # results_folder's own refusal, raised here so that _study deletes the study it created
                failed = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
                raise NothingSaved(out, "sweep", detail=f" ({failed} of its trials failed)",
                                   advice="fix the search space or config and run again")
    return _results(out, study, cfg, space, ds, ran=finished_trials(study) - done)


def _check_selectable_trials(ds: VidmimicDataset, store: FeatureStore, cfg: ExperimentConfig, space: SearchSpace,
                             space_source: str) -> None:
    """Refuse, before any trial, a sweep a trial of which would select its best epoch on valid clips none of which has
    a modality its model reads: one check per value the trials may give the branches (``model.modalities``), rather
    than a failed trial that would stop the study."""
    if "best" not in {cfg.train.selection, *space.values_of("train.selection")}:
        return
    untrainable = untrainable_modalities(store, ds.clips("train").index.to_numpy())
    for values, trial_cfg in space.combinations(with_overrides(cfg, {"train.selection": "best"}), [BRANCHES]):
        searched = "".join(f"{space_source}: params.{key} = {value!r}: " for key, value in values.items())
        way_out = valid_way_out(ds.held_out_fraction) + (", or remove that choice" if searched else "")
        try:
            check_selectable(trial_cfg, store, ds.clips("valid").index.to_numpy(), untrainable=untrainable,
                             where=ds.where + searched, way_out=way_out)
        except ConfigError as exc:  # a choice naming a modality the data lacks: say which choice, and the way out
            if not searched or str(exc).startswith(ds.where + searched):
                raise
            raise ConfigError(f"{ds.where}{searched}{str(exc).rstrip('.')}; remove that choice.") from None


def _outdated_trials(out: Path, *, overwrite: bool) -> bool:
    """Whether the sweep ``out``, about to resume, must be replaced: a resumed sweep ranks its finished trials with
    the new ones, so a trial whose predictions a later change of emimic alters, or one this emimic cannot read
    (see :mod:`emimic.models.formats`), is refused; with ``overwrite`` the answer is True instead."""
    for record in sorted((out / TRIALS_DIR).glob(f"*/{RECORD_FILE}")):
        try:
            trial = read_run_record(record.parent)
            if trial is not None:
                check_model_format(record.parent, trial.model_format, trial.config)
        except IncompatibleRun as exc:
            if overwrite:
                return True
            raise IncompatibleRun(f"{exc.reason}, so the sweep cannot rank it with new trials",
                                  f"pass --overwrite to replace the sweep {out}, or choose a new --out") from None
    return False


def _workers(ds: VidmimicDataset, out: Path, cfg: ExperimentConfig, space: SearchSpace, storage: str, name: str, *,
             remaining: int, jobs: int, done: int) -> list[Worker]:
    """``remaining`` trials shared by at most ``jobs`` workers, each with a sampler seed of its own."""
    base_seed = np.random.SeedSequence([cfg.seed, done])  # a resumed sweep samples anew, not trial 0's values
    return [Worker(str(ds.root), str(ds.store_dir), str(out), storage, name, cfg, space, share,
                   int(child.generate_state(1)[0]))
            for share, child in zip(_shares(remaining, jobs), base_seed.spawn(jobs), strict=False)]


def _run(workers: list[Worker], ds: VidmimicDataset, report: Callable[[FrozenTrial], None] | None) -> None:
    """Each worker in a process of its own (one worker: here, on the open ``ds``); none: the study is complete. The
    trials report themselves as they finish, so the runner shows no bar of its own."""
    Runner(len(workers), progress=False).run(workers, functools.partial(run_worker, report=report),
                                             inline=lambda worker: run_worker(worker, ds, report))


def _results(out: Path, study: optuna.Study, cfg: ExperimentConfig, space: SearchSpace, ds: VidmimicDataset, ran: int
             ) -> SweepResult:
    table = trial_table(study, space)
    with atomic_path(out / TABLE_FILE) as tmp:
        # a list value as JSON, which json and YAML read back as the list (pandas would write Python's repr)
        table.map(lambda value: json.dumps(value) if isinstance(value, list) else value).to_csv(
            tmp, index=False, float_format="%.6g")
    best = _best(study)
    held = (cfg.train.valid_fraction, ds.held_out_by)
    if best is None:
        return SweepResult(out, table, ran, None, None, {}, None, *held)
    values = space.config_values(best.params)
    return SweepResult(out, table, ran, best.number, best.value, values, _write_best(out, cfg, best, values, ds),
                       *held)

