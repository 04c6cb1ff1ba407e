"""``ablate()``: a grid of configs x seeds, each an ordinary ``train`` run, summarised with noise marks.

A *grid* (YAML, :class:`Grid`) names *cells*, each a set of dotted config overrides of a *base*
preset (default ``paper``), and may *generate* cells from the registry and the data: one per
registered fusion (``fusion_<name>``) and one per single modality and pair of modalities
(``modalities=<a>+<b>``), plus all modalities but the text ones (``no_text``) when the data has text.
The packaged default grid (``configs/grids/default.yaml``) varies one factor at a time from the
paper method. A cell that cannot apply to the data (a modality the data lacks, a model the data
cannot feed) is *skipped* with its reason, not failed; a modality name that is neither in the data nor
one an extractor writes is a typo, refused with a did-you-mean.

Every (cell, seed) is a ``train`` run folder ``OUT/<cell>/seed<s>/``: a finished one is reused, an
interrupted one resumes. A later call may gain, drop or change cells (its data and seeds must be the folder's):
before any run trains, every run folder of the grid is checked against its cell, and one holding a run the cell
cannot reuse (other settings, an unreadable ``run.json``) is refused, or with ``overwrite`` replaced alone. The
summary compares each cell with the reference cell (``paper``):

- mean ± standard deviation over seeds (ddof 1) of the validation mean PCC and of each dimension;
- the change of the mean PCC, paired by seed, with a paired t-test across seeds (``scipy.stats.ttest_rel``);
- a paired bootstrap over validation clips of the seed-averaged predictions (the resampling of
  ``emimic report``): the 95 % interval of the change;
- *within noise* unless both agree: t-test p < 0.05 (with >= 2 seeds) and a bootstrap interval that
  excludes 0 on the same side as the change.

Folder::

    OUT/ablation.json        what the folder was made with (data fingerprint, seeds), and the cells of the last
                             call, each's config (each run folder records its own, which is what is checked)
    OUT/<cell>/seed<s>/      a `train` run folder
    OUT/ablation.csv         one row per cell x seed: status (trained, reused, skipped), PCCs, epochs, time
    OUT/ablation.md          the summary table (mean ± std, change, p, interval, mark) and the skipped cells

Example::

    from emimic.training.ablate import ablate
    result = ablate("data/sim", "runs/ablation", seeds=[0, 1, 2], max_epochs=8, jobs=2)
    result.summary[0].name, result.summary[0].mean
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, ValidationError, field_validator

from emimic.config import ExperimentConfig, Section, explain, load_config, read_yaml_mapping, with_overrides
from emimic.data import FeatureStore, VidmimicDataset, open_dataset
from emimic.data.dataset import with_valid_split
from emimic.data.holdout import VALID_FILE, refuse_unused_fraction, validation_clips
from emimic.data.simulate import AUDIO_DIR, FACE_DIR, TEXT_EMB_DIR
from emimic.defaults import ABLATION_BASE, ABLATION_MAX_EPOCHS, preset_dir
from emimic.errors import ConfigError, DataError
from emimic.io import atomic_path, write_text
from emimic.labels import EMOTIONS
from emimic.metrics import (
    BOOTSTRAP_SAMPLES,
    BOOTSTRAP_SEED,
    bootstrap_pcc,
    format_bound,
    paired_difference_interval,
)
from emimic.outputs import check_folder_settings, refuse_inside_dataset, warn_leftovers
from emimic.registry import EXTRACTORS, FUSIONS
from emimic.training.inference import evaluate
from emimic.training.jobs import (
    Backend,
    Runner,
    TrainJob,
    checked_run_folders,
    distinct_seeds,
    results_folder,
    train_job,
)
from emimic.training.provenance import corpus_fingerprint, describe, labelled_splits
from emimic.training.run import (
    TrainResult,
    check_selectable,
    modalities_read_by_any,
    trainable_spec,
    untrainable_modalities,
    untrainable_settings,
    valid_way_out,
)

SETTINGS_FILE = "ablation.json"
TABLE_FILE = "ablation.csv"
SUMMARY_FILE = "ablation.md"
DEFAULT_GRID = "default"
ALPHA = 0.05
_CELL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=-]*")


def grid_dir() -> Path:
    """The folder of the packaged grids."""
    return preset_dir() / "grids"


class GridGenerate(Section):
    """Cells made from the registry and the data rather than written out."""

    fusions: bool = Field(False, description="a cell fusion_<name> per registered fusion other than the base's")
    modality_subsets: bool = Field(
        False, description="a cell per single modality and per pair of the data's modalities, and no_text"
    )


class Grid(Section):
    """A grid file: named cells of dotted config overrides of ``base``, compared with ``reference``."""

    description: str = ""
    base: str = ABLATION_BASE
    reference: str = ABLATION_BASE
    cells: dict[str, dict[str, Any] | None] = Field(default_factory=dict)
    generate: GridGenerate = Field(default_factory=GridGenerate)

    @field_validator("cells")
    @classmethod
    def _names(cls, value: dict[str, dict[str, Any] | None]) -> dict[str, dict[str, Any]]:
        bad = [name for name in value if not _CELL_NAME.fullmatch(str(name))]
        if bad:
            raise ValueError(f"cell names {bad} must be letters, digits and _ . + = - (each names a folder)")
        return {str(name): dict(overrides or {}) for name, overrides in value.items()}


@dataclass(frozen=True)
class Cell:
    """One configuration of the grid: its overrides of the base, and its config or why it is skipped."""

    name: str
    overrides: dict[str, Any]
    config: ExperimentConfig | None = None
    skipped: str | None = None


@dataclass(frozen=True)
class GridConfigs:
    """The configs of a grid's base and of its written cells (the reference first), built once for what ``ablate``
    packs (:func:`modalities_read_by`) and for its plan (:func:`plan_cells`)."""

    base: ExperimentConfig
    written: dict[str, ExperimentConfig]

    @classmethod
    def of(cls, grid: Grid, overrides: Mapping[str, Any]) -> GridConfigs:
        """The base of ``grid`` under ``overrides``, and each written cell's config on it."""
        base = load_config(grid.base, overrides=overrides)
        cells = {grid.reference: grid.cells[grid.reference], **grid.cells}
        return cls(base, {name: cell_config(base, name, cell) for name, cell in cells.items()})


@dataclass(frozen=True)
class AblationJob(TrainJob):
    """One (cell, seed) to train."""

    cell: str

    @property
    def label(self) -> str:
        return f"{self.cell} seed {self.seed}"


@dataclass
class CellSummary:
    """A cell over its seeds, and its comparison with the reference cell (``None`` for the reference)."""

    name: str
    seeds: int
    mean: float
    std: float
    pcc_mean: dict[str, float]
    pcc_std: dict[str, float]
    delta: float | None = None
    p_value: float | None = None  # paired t-test across seeds; None with a single seed
    interval: tuple[float, float] | None = None  # paired bootstrap over clips of the change
    within_noise: bool | None = None

    @property
    def verdict(self) -> str:
        if self.delta is None:
            return "reference"
        if self.within_noise:
            return "within noise"
        return "better" if self.delta > 0 else "worse"


@dataclass
class AblationResult:
    out: Path
    seeds: list[int]
    reference: str
    summary: list[CellSummary]
    table: pd.DataFrame  # ablation.csv
    skipped: dict[str, str] = field(default_factory=dict)
    valid_fraction: float | None = None  # the share of train every cell held out for validation, if any
    held_out_by: str | None = None  # the group column whose whole groups that share is made of, if it is

    @property
    def validated_on(self) -> str:
        """The clips every cell was scored on, in words."""
        return validation_clips(self.valid_fraction, self.held_out_by)


# ---------------------------------------------------------------- the grid


def load_grid(source: str | Path | None = None) -> Grid:
    """A grid file, or a packaged grid by name (default ``default``); every cell is checked against its base."""
    path = Path(source) if source is not None else grid_dir() / f"{DEFAULT_GRID}.yaml"
    if not path.exists() and path.suffix == "" and (grid_dir() / f"{source}.yaml").exists():
        path = grid_dir() / f"{source}.yaml"
    raw = read_yaml_mapping(path, what="a grid YAML file", holds="base, reference, cells and generate")
    try:
        grid = Grid.model_validate(raw)
    except ValidationError as exc:
        raise explain(exc, Grid, source=str(path)) from None
    base = load_config(grid.base)
    for name, overrides in grid.cells.items():
        cell_config(base, name, overrides, source=path)
    if grid.reference not in grid.cells:
        raise ConfigError(_unknown_reference(path, grid))
    return grid


def _unknown_reference(path: Path, grid: Grid) -> str:
    """Why ``grid.reference`` is no cell, and what to write: a grid of generated cells only (no ``cells:``) has none
    to name, as its cells are made from the data."""
    written = f"its cells are {', '.join(grid.cells)}" if grid.cells else "it writes no cells"
    if grid.generate.fusions or grid.generate.modality_subsets:
        written += "; a generated cell cannot be the reference, as it is made only once the data is read"
    or_one = ", or make one of those the reference" if grid.cells else ""
    return (f"{path}: reference {grid.reference!r} is not a cell written under cells: ({written}); write it under"
            f" cells: with its overrides (`{grid.base}: {{}}` is the base {grid.base!r} itself){or_one}.")


def cell_config(base: ExperimentConfig, name: str, overrides: Mapping[str, Any], *,
                source: str | Path = "grid") -> ExperimentConfig:
    """``base`` with the cell's overrides; a bad key or value is a ConfigError naming the cell."""
    try:
        return with_overrides(base, {**overrides, "name": name})
    except ConfigError as exc:
        raise ConfigError(f"{source}: cell {name!r}: {str(exc).removeprefix('overrides: ')}") from None


def text_modalities() -> set[str]:
    """Modalities made from transcripts: the outputs of the extractors that read text, and the simulator's."""
    names = {TEXT_EMB_DIR}
    for extractor in EXTRACTORS.names():
        cls = EXTRACTORS[extractor]
        if "text" in cls.needs:
            names |= {output.name for output in cls().outputs()}
    return names


def known_modalities() -> set[str]:
    """Names a modality may have although this data lacks it: what emimic's extractors write, and the
    folders of the Vidmimic layout."""
    names = {FACE_DIR, AUDIO_DIR, TEXT_EMB_DIR, *EXTRACTORS.names()}
    for extractor in EXTRACTORS.names():
        names |= {output.name for output in EXTRACTORS[extractor]().outputs()}
    return names


def generated_cells(grid: Grid, base: ExperimentConfig, modalities: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The cells ``grid.generate`` asks for, on data with ``modalities``."""
    cells: dict[str, dict[str, Any]] = {}
    if grid.generate.fusions:
        cells |= {f"fusion_{name}": {"model.fusion": name} for name in FUSIONS.names() if name != base.model.fusion}
    if grid.generate.modality_subsets:
        subsets = [[m] for m in modalities] + [list(pair) for pair in itertools.combinations(modalities, 2)]
        cells |= {f"modalities={'+'.join(s)}": {"model.modalities": s} for s in subsets if len(s) < len(modalities)}
        text = text_modalities()
        spoken = [m for m in modalities if m not in text]
        if spoken and len(spoken) < len(modalities) and spoken not in subsets:
            cells["no_text"] = {"model.modalities": spoken}
    return cells


def why_skipped(cfg: ExperimentConfig, store: FeatureStore, *, cell: str, untrainable: Collection[str] = (),
                valid_ids: np.ndarray | None = None) -> str | None:
    """Why the cell's model cannot be trained on ``store`` (None: it can), whose ``untrainable`` modalities no
    training clip has, selecting on the clips ``valid_ids`` (when given; none of them may lack every modality the
    model reads); a modality name that is no modality at all is a typo and raises."""
    from emimic.models.emi import EMIModel  # torch: only once there is data to plan on

    absent = [m for m in cfg.model.modalities or [] if m not in store.modalities]
    if absent:
        known = known_modalities()
        for name in absent:
            if name not in known:
                close = difflib.get_close_matches(name, [*store.modalities, *sorted(known)], n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"cell {cell!r}: unknown modality {name!r}{hint}; the data has"
                                  f" {', '.join(store.modalities)}.")
        return f"the data has no {', '.join(absent)} (it has {', '.join(store.modalities)})"
    named = untrainable_settings(cfg, untrainable)
    if named:
        return (f"no training clip has {', '.join(sorted(set(named.values())))}, which {' and '.join(named)}"
                f" {'names' if len(named) == 1 else 'name'}")
    try:
        EMIModel(trainable_spec(cfg, store, untrainable), cfg.model)
        if valid_ids is not None:
            check_selectable(cfg, store, valid_ids, untrainable=untrainable,
                             way_out=valid_way_out(cfg.train.valid_fraction))
    except (ConfigError, DataError) as exc:
        return str(exc)
    return None


def plan_cells(grid: Grid, store: FeatureStore, configs: GridConfigs, *,
               untrainable: Callable[[ExperimentConfig], Collection[str]] = lambda cfg: (),
               valid_ids: Callable[[ExperimentConfig], np.ndarray] | None = None,
               has_valid_split: bool) -> list[Cell]:
    """Every cell of ``grid`` on this data (the reference first, then the written ones, whose configs ``configs``
    holds, then the generated ones whose names are not taken), each with its config or why it is skipped.
    ``untrainable(cfg)`` names the modalities no clip that ``cfg`` trains on has (its own ``train.valid_fraction``
    decides which clips those are): the generated cells use only the others of the base config, and a cell naming
    one is skipped; so is one whose modalities no clip it validates on (``valid_ids(cfg)``, when given) has.
    ``has_valid_split``: the data has a valid split, which every cell validates on (no cell may hold out a share of
    train instead)."""
    base = configs.base
    untrainable_in_base = untrainable(base)
    generated = generated_cells(grid, base, [m for m in store.modalities if m not in untrainable_in_base])
    planned = {name: (grid.cells[name], cfg) for name, cfg in configs.written.items()}
    planned |= {name: (cell, cell_config(base, name, cell)) for name, cell in generated.items() if name not in planned}
    cells = []
    for name, (cell_overrides, cfg) in planned.items():
        if has_valid_split:
            _refuse_held_out_share(name, cfg)
        reason = why_skipped(cfg, store, cell=name, untrainable=untrainable(cfg),
                             valid_ids=None if valid_ids is None else valid_ids(cfg))
        cells.append(Cell(name, cell_overrides, None if reason else cfg, reason))
    if cells[0].skipped:
        reason = cells[0].skipped.rstrip(".")
        raise ConfigError(f"the reference cell {grid.reference!r} cannot run on this data: {reason}.")
    _refuse_other_validation_clips(cells)
    return cells


def _refuse_held_out_share(cell: str, cfg: ExperimentConfig) -> None:
    """Refuse a cell holding out a share of train on data with a valid split (its training would be refused, after
    the cells before it trained)."""
    if cfg.train.valid_fraction is not None:
        raise ConfigError(f"cell {cell!r}: train.valid_fraction {cfg.train.valid_fraction} does not apply, as the data"
                          f" has a {VALID_FILE} that every cell validates on; leave train.valid_fraction out.")


def _refuse_other_validation_clips(cells: Sequence[Cell]) -> None:
    """Every cell must be scored on the reference's validation clips: its change is paired clip by clip. On a corpus
    without a valid split, ``train.valid_fraction`` decides which clips are held out, so it must not differ."""
    reference = cells[0]
    assert reference.config is not None, "a skipped reference is refused before"
    expected = reference.config.train.valid_fraction
    for cell in cells[1:]:
        if cell.config is not None and cell.config.train.valid_fraction != expected:
            raise ConfigError(f"cell {cell.name!r} validates on other clips than the reference cell {reference.name!r}"
                              f" (train.valid_fraction {cell.config.train.valid_fraction}, not {expected}), so their"
                              " scores cannot be paired; give every cell the same train.valid_fraction.")


def modalities_read_by(grid: Grid, configs: GridConfigs) -> set[str] | None:
    """The modalities some cell of ``grid`` may read (``None``: every modality found, when a cell reads each, or the
    grid makes a cell per modality of the data)."""
    if grid.generate.modality_subsets:
        return None
    fusion_cells = [configs.base] if grid.generate.fusions else []  # a fusion cell reads the base's modalities
    return modalities_read_by_any([*configs.written.values(), *fusion_cells])


def untrainable_in(ds: VidmimicDataset, store: FeatureStore, cfg: ExperimentConfig) -> list[str]:
    """The modalities of ``store`` that no clip ``cfg`` trains on has (its ``train.valid_fraction`` holds out part of
    a corpus without a valid split): its model cannot learn from them."""
    return untrainable_modalities(store, split_ids(ds, cfg, "train"))


def split_ids(ds: VidmimicDataset, cfg: ExperimentConfig, split: str) -> np.ndarray:
    """The clips ``cfg`` trains or validates on (``split``): its ``train.valid_fraction`` may hold out part of train."""
    return labelled_splits(with_valid_split(ds, cfg.train.valid_fraction), [split])[split][0]


# ---------------------------------------------------------------- runs


def _jobs(out: Path, ds: VidmimicDataset, cells: Sequence[Cell], seeds: Sequence[int]) -> list[AblationJob]:
    return [AblationJob.at(ds, out / cell.name / f"seed{seed}", seed, cell.config, cell=cell.name)
            for cell in cells if cell.config is not None for seed in seeds]


def _refusal(job: AblationJob, found: list[str]) -> str:
    return (f"{job.run} holds a run that cell {job.cell!r} of this grid cannot reuse ({describe(found)}); pass"
            " --overwrite to train it again (the runs this grid can reuse are kept), or choose a new --out.")


def _settings(data: str, seeds: Sequence[int]) -> dict:
    """What the folder is made with, checked against ``ablation.json`` (each cell's runs are checked by their own
    folders instead, see :func:`ablate`)."""
    return {"data": data, "seeds": list(seeds)}


def _grid_record(cells: Sequence[Cell]) -> dict[str, Any]:
    """The cells of this call, each as its resolved config (seed aside) or why it is skipped: how the tables of the
    folder were made."""
    return {c.name: c.config.model_dump(mode="json", exclude={"seed"}) if c.config else f"skipped: {c.skipped}"
            for c in cells}


# ---------------------------------------------------------------- statistics


def paired_t_test(values: Sequence[float], reference: Sequence[float]) -> float | None:
    """Two-sided p of the paired t-test of ``values`` against ``reference`` (paired by seed); None under 2 pairs.
    Identical differences have no spread: p is 1 when they are all 0, else 0."""
    from scipy.stats import ttest_rel

    diffs = np.asarray(values, dtype=float) - np.asarray(reference, dtype=float)
    if len(diffs) < 2:
        return None
    if np.ptp(diffs) == 0.0:
        return 1.0 if diffs[0] == 0.0 else 0.0
    return float(ttest_rel(values, reference).pvalue)


def is_within_noise(delta: float, p_value: float | None, interval: tuple[float, float]) -> bool:
    """A change counts only when the seeds (t-test, when there are >= 2) and the clips (bootstrap interval on
    the change's side of 0) both say so."""
    low, high = interval
    clips_agree = low > 0.0 if delta > 0 else high < 0.0
    seeds_agree = p_value is None or p_value < ALPHA
    return not (clips_agree and seeds_agree)


def summarise(scores: pd.DataFrame, reference: str, boot: Mapping[str, np.ndarray]) -> list[CellSummary]:
    """Per cell (rows of ``scores``: cell, seed, mean_pcc and one column per emotion) its mean ± std over seeds
    and its change against ``reference``, paired by seed (t-test) and over clips (``boot[cell]``: ``(samples,
    6)`` PCC of its seed-averaged predictions on the shared bootstrap resamples)."""
    ref = scores[scores["cell"] == reference].set_index("seed")
    summaries = []
    for name, rows in scores.groupby("cell", sort=False):
        rows = rows.set_index("seed")
        std = rows.std(numeric_only=True, ddof=1).fillna(0.0)
        summary = CellSummary(str(name), len(rows), float(rows["mean_pcc"].mean()), float(std["mean_pcc"]),
                              {e: float(rows[e].mean()) for e in EMOTIONS}, {e: float(std[e]) for e in EMOTIONS})
        if name != reference:
            paired = rows.index.intersection(ref.index)
            summary.delta = float((rows.loc[paired, "mean_pcc"] - ref.loc[paired, "mean_pcc"]).mean())
            summary.p_value = paired_t_test(rows.loc[paired, "mean_pcc"], ref.loc[paired, "mean_pcc"])
            summary.interval = paired_difference_interval(boot[str(name)], boot[reference])
            summary.within_noise = is_within_noise(summary.delta, summary.p_value, summary.interval)
        summaries.append(summary)
    return summaries


def seed_averaged_bootstrap(out: Path, ds: VidmimicDataset, cells: Sequence[Cell],
                            seeds: Sequence[int]) -> dict[str, np.ndarray]:
    """``(samples, 6)`` PCC of each cell's seed-averaged validation predictions on the shared clip resamples."""
    boot = {}
    for cell in cells:
        if cell.config is not None:  # scored on the clips its runs validated on (held out of train, if so)
            held = with_valid_split(ds, cell.config.train.valid_fraction)
            evaluation = evaluate([out / cell.name / f"seed{s}" for s in seeds], held, split="valid")
            boot[cell.name] = bootstrap_pcc(*evaluation.arrays(), samples=BOOTSTRAP_SAMPLES, seed=BOOTSTRAP_SEED)
    return boot


# ---------------------------------------------------------------- outputs


def result_row(job: AblationJob, result: TrainResult) -> dict[str, Any]:
    return {"cell": job.cell, "seed": job.seed, "status": "reused" if result.stored else "trained", "reason": "",
            "mean_pcc": result.valid.mean_pcc, **result.valid.pcc, "best_epoch": result.best_epoch,
            "epochs": result.epochs, "seconds": round(result.seconds, 2), "run": job.run}


def _skipped_rows(cells: Sequence[Cell], seeds: Sequence[int]) -> list[dict[str, Any]]:
    return [{"cell": c.name, "seed": s, "status": "skipped", "reason": c.skipped} for c in cells if c.skipped
            for s in seeds]


def _fmt(value: float | None, spec: str = ".4f") -> str:
    """``-`` for no value, else the value with its own sign (a change, a bound, a p-value: :func:`format_bound`)."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format_bound(value, spec)


def summary_rows(summary: Sequence[CellSummary]) -> list[list[str]]:
    """The table's cells as text (:data:`SUMMARY_HEADER`), for ablation.md and the terminal."""
    rows = []
    for s in summary:
        interval = "-" if s.interval is None else f"[{_fmt(s.interval[0], '+.3f')}, {_fmt(s.interval[1], '+.3f')}]"
        rows.append([s.name, str(s.seeds), f"{s.mean:z.4f} ± {s.std:.4f}", _fmt(s.delta, "+.4f"),
                     _fmt(s.p_value, ".3f"), interval, s.verdict,
                     *(f"{s.pcc_mean[e]:z.3f} ± {s.pcc_std[e]:.3f}" for e in EMOTIONS)])
    return rows


SUMMARY_HEADER = ["cell", "seeds", "mean PCC ± std", "Δ", "p (t-test)", "Δ 95 % CI (clips)", "mark", *EMOTIONS]
COMPARISON_COLUMNS = len(SUMMARY_HEADER) - len(EMOTIONS)  # the terminal prints the emotions in a table of their own


def markdown(result: AblationResult, ds: VidmimicDataset, settings: Mapping[str, Any], *, base: str,
             max_epochs: int | None) -> str:
    epochs = f", at most {max_epochs} epochs unless a cell sets its own" if max_epochs is not None else ""
    lines = [f"# Ablation: {result.out}", "",
             f"Data `{ds.root}` (fingerprint {settings['data']}), {result.validated_on}; cells of the base config"
             f" `{base}`{epochs} (each cell's resolved config: {SETTINGS_FILE}); seeds {result.seeds}; reference"
             f" cell `{result.reference}`.", "",
             "| " + " | ".join(SUMMARY_HEADER) + " |", "|" + "---|" * len(SUMMARY_HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in summary_rows(result.summary)]
    lines += ["", f"mean PCC and the emotions: validation PCC, mean ± standard deviation over seeds. Δ: change of the"
              f" mean PCC against `{result.reference}`, averaged over seeds (paired by seed); p: paired t-test"
              f" across seeds; CI: 95 % paired bootstrap over the validation clips of the seed-averaged predictions"
              f" ({BOOTSTRAP_SAMPLES} resamples). *within noise* unless p < {ALPHA} and the CI excludes 0 on the"
              " side of Δ."]
    if result.skipped:
        lines += ["", "## Skipped cells", ""] + [f"- `{name}`: {reason}" for name, reason in result.skipped.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the command


def ablate(
    data: str | Path | VidmimicDataset,
    out: str | Path,
    *,
    grid: Grid | str | Path | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    max_epochs: int | None = ABLATION_MAX_EPOCHS,
    overrides: Mapping[str, object] | None = None,
    valid_fraction: float | None = None,
    jobs: int = 1,
    backend: Backend = "local",
    ray_address: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    report: Callable[[AblationJob, TrainResult], None] | None = None,
) -> AblationResult:
    """Train every cell of ``grid`` (default: the packaged default grid) with every seed into ``out``.

    ``max_epochs`` (default 10, as for ``emimic ablate``; None: the base config's own), ``valid_fraction`` (the
    share of train every cell holds out for validation on a corpus without a valid split, as ``train`` does) and
    ``overrides`` apply to the base of every cell, under the cell's own overrides. ``jobs`` runs train at once (local
    processes, or Ray tasks with ``backend="ray"``). ``overwrite`` replaces a folder made with other data or seeds,
    else only the runs that the cells cannot reuse. ``report(job, result)`` is called as each run finishes."""
    out = Path(out)
    warn_leftovers(out)
    seeds = distinct_seeds(seeds)
    grid = grid if isinstance(grid, Grid) else load_grid(grid)
    ds = data if isinstance(data, VidmimicDataset) else open_dataset(data)
    refuse_inside_dataset(out, ds.root)
    refuse_unused_fraction(ds.splits, valid_fraction, root=ds.root)
    given = {"train.max_epochs": max_epochs, "train.valid_fraction": valid_fraction}
    base_overrides = dict(overrides or {}) | {key: value for key, value in given.items() if value is not None}
    # packed once here, before any worker opens it
    configs = GridConfigs.of(grid, base_overrides)
    needed = modalities_read_by(grid, configs)
    store = ds.store(progress=progress, needed=needed)
    cells = plan_cells(grid, store, configs, untrainable=lambda cfg: untrainable_in(ds, store, cfg),
                       valid_ids=lambda cfg: split_ids(ds, cfg, "valid"), has_valid_split="valid" in ds.splits)
    data = corpus_fingerprint(ds, store, out / SETTINGS_FILE, needed=needed)
    runner = Runner(jobs, backend, ray_address, progress)  # a wrong --ray-address refuses before any write
    replace = check_folder_settings(out, SETTINGS_FILE, _settings(data.recorded, seeds), kind="ablation",
                                    overwrite=overwrite, any_order=["seeds"])
    settings = _settings(data.to_record(replaced=replace), seeds)
    with results_folder(out, replace=replace, kind="ablation"):
        # the grid may gain, drop or change cells: what binds is what the cells' run folders hold, checked here
        # before any run trains (a cell that never saved an epoch, or whose folders are gone, binds nothing)
        plan = checked_run_folders(_jobs(out, ds, cells, seeds), ds, overwrite=overwrite, refusal=_refusal)
        write_text(out / SETTINGS_FILE, json.dumps({**settings, "grid": _grid_record(cells)}, indent=2))
        results = runner.run(plan, train_job, inline=lambda job: train_job(job, ds), label="ablation runs",
                             report=report)
    table = pd.DataFrame([*(result_row(j, r) for j, r in zip(plan, results, strict=True)),
                          *_skipped_rows(cells, seeds)])
    table = table.astype({"seed": "Int64", "best_epoch": "Int64", "epochs": "Int64"})  # skipped rows have none
    with atomic_path(out / TABLE_FILE) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    scores = table[table["status"] != "skipped"]
    summary = summarise(scores, grid.reference, seed_averaged_bootstrap(out, ds, cells, seeds))
    fraction = configs.written[grid.reference].train.valid_fraction
    result = AblationResult(out, seeds, grid.reference, summary, table, {c.name: c.skipped for c in cells if c.skipped},
                            fraction, with_valid_split(ds, fraction).held_out_by)
    write_text(out / SUMMARY_FILE, markdown(result, ds, settings, base=grid.base, max_epochs=max_epochs))
    return result
