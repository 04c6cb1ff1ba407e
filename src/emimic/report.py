"""``emimic report``: one self-contained HTML file (plots embedded as PNG) for one run or a comparison.

For each run: provenance, per-dimension PCC with 95 % bootstrap intervals against the oracle (simulated
corpora) and a ridge baseline fitted on the same split, predicted vs true, residuals by modality
coverage, learning curves (EMA and raw weights, chosen epoch marked) and a summary of the data. For
several runs: a comparison table and chart, each difference to the first run with a paired bootstrap
interval over the same clips (with the same labels: a run scored on others is shown unpaired, saying why) and
marked "within noise" when that interval contains 0.

Plots use matplotlib's object API (``Figure``, never pyplot, which keeps global state and leaks figures)
on the Agg canvas, laid out once by the constrained layout engine; every colour comes from the palette
below, so an emotion, a modality or a run has the same colour in every plot.

Example::

    from emimic.report import write_report
    write_report(["runs/paper", "runs/no_vad"], "compare.html")
"""

from __future__ import annotations

import base64
import html
import io
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from emimic.data import VidmimicDataset, open_dataset, with_valid_split
from emimic.data.simulate import load_oracle
from emimic.errors import DataError, EmimicError, EmimicWarning, IncompatibleRun, OutputConflict
from emimic.io import write_text
from emimic.labels import EMOTIONS, shortlist
from emimic.metrics import (
    BOOTSTRAP_SAMPLES,
    BOOTSTRAP_SEED,
    bootstrap_pcc,
    confidence_interval,
    format_bound,
    paired_difference_interval,
    pcc_scores,
)
from emimic.outputs import refuse_inside_dataset, refuse_inside_runs
from emimic.training.crossval import fold_view
from emimic.training.history import MONITOR, RAW_MONITOR
from emimic.training.inference import Evaluation, evaluate, load_run
from emimic.training.provenance import RECORD_FILE, data_differences, describe, read_model_format
from emimic.training.run import METRICS_FILE, read_metrics

# One palette for every plot.
EMOTION_COLOURS = dict(zip(EMOTIONS, ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"),
                           strict=True))
MODALITY_COLOURS = {"vit": "#1b9e77", "wav2vec2": "#d95f02", "text_emb": "#7570b3", "egemaps": "#e7298a",
                    "whisper": "#66a61e", "face_emb": "#e6ab02", "facemesh": "#a6761d", "vad": "#666666"}
EXTRA_COLOURS = ("#17becf", "#bcbd22", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
RUN_COLOURS = ("#264653", "#2a9d8f", "#e9c46a", "#f4a261", "#e76f51", "#6d597a", "#b56576", "#355070")
BASELINE_COLOUR, ORACLE_COLOUR = "#bbbbbb", "#000000"
DPI = 100


def modality_colour(name: str) -> str:
    return MODALITY_COLOURS.get(name, EXTRA_COLOURS[sum(name.encode()) % len(EXTRA_COLOURS)])


def run_colour(index: int) -> str:
    return RUN_COLOURS[index % len(RUN_COLOURS)]


@dataclass
class RunSummary:
    """A finished run with what the report needs: its stored metrics, history, data and fresh predictions."""

    path: Path
    metrics: dict
    history: pd.DataFrame | None
    dataset: VidmimicDataset
    valid: Evaluation

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def provenance(self) -> dict:
        return self.metrics.get("provenance", {})

    @cached_property
    def bootstrap(self) -> np.ndarray:
        """``(samples, 6)`` per-dimension PCC on the shared bootstrap resamples of the validation clips."""
        return bootstrap_pcc(*self.valid.arrays(), samples=BOOTSTRAP_SAMPLES, seed=BOOTSTRAP_SEED)


def expand_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run folders from the arguments: a run folder, or a folder with runs inside (CV, sweep, ablation: cell/seed)."""
    runs: list[Path] = []
    for given in map(Path, paths):
        if (given / METRICS_FILE).exists():
            runs.append(given)
            continue
        inside = _finished_runs_inside(given)
        if not inside:
            raise EmimicError(f"{given}: not a finished run (no {METRICS_FILE}) nor a folder of runs; train it"
                              f" first or give a run folder.")
        runs += inside
    return runs


def _finished_runs_inside(folder: Path) -> list[Path]:
    """The finished runs at any depth inside ``folder``; one that has not finished is left out with a warning, and
    hidden folders (the copies ``--overwrite`` keeps aside until a new run saved an epoch) are not looked into."""
    found = {path.parent for path in folder.rglob("*.json") if path.name in (METRICS_FILE, RECORD_FILE)
             and not any(part.startswith(".") for part in path.relative_to(folder).parts)}
    unfinished = sorted(run for run in found if not (run / METRICS_FILE).exists())
    if unfinished:
        warnings.warn(f"{shortlist(map(str, unfinished), shown=3)}: not finished (no {METRICS_FILE}: still training,"
                      " interrupted, failed, or a sweep trial that was pruned), so the report leaves them out; resume"
                      " a run with the command that made it to include it.", EmimicWarning, stacklevel=3)
    return sorted(found.difference(unfinished))


def load_summary(run: Path, data: str | Path | VidmimicDataset | None = None, *,
                 store: str | Path | None = None) -> RunSummary:
    """``run`` scored afresh on its own validation clips of ``data`` (default: the root its metrics.json records),
    features read from the store ``store`` (default: the root's)."""
    metrics = read_metrics(run)
    root = data if data is not None else metrics.get("provenance", {}).get("data", {}).get("root")
    if root is None:
        raise EmimicError(f"{run / METRICS_FILE} does not record its dataset (a run from an older emimic);"
                          f" give it with --data DIR.")
    if data is None and not Path(root).is_dir():  # moved or deleted since: the layout's own words would not say whose
        raise DataError(f"{run}: the dataset it was trained on, {root} (recorded in its {METRICS_FILE}), is not there"
                        " any more; give its new place with --data DIR.")
    trained = load_run(run)
    # the data as the run saw it: its CV fold, or the share of train it held out for validation
    opened = root if isinstance(root, VidmimicDataset) else open_dataset(root, store_dir=store)
    dataset = with_valid_split(fold_view(run, opened), trained.config.train.valid_fraction)
    changed = data_differences(run, dataset)
    if changed:  # fresh scores of other data beside the run's own history and provenance would mix two things
        raise IncompatibleRun(f"{run}: was trained on other data than {dataset.root} holds now ({describe(changed)})",
                              "report it with the data it was made with (--data DIR), or train it again")
    history_path = run / "history.csv"
    history = pd.read_csv(history_path) if history_path.exists() else None
    return RunSummary(run, metrics, history, dataset, evaluate(trained, dataset, split="valid"))


def ridge_baseline(dataset: VidmimicDataset, split: str = "valid") -> dict[str, float]:
    """PCC of a ridge regression (L2 strength by efficient leave-one-out on train) on the pooled statistics
    of every modality plus presence flags, fitted on the train split and scored on ``split``."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    store = dataset.store(progress=False)

    def design(ids: np.ndarray) -> np.ndarray:
        blocks = [store.pooled(m, ids) for m in store.modalities]
        flags = np.column_stack([store.present(m, ids) for m in store.modalities]).astype(np.float32)
        return np.hstack([*blocks, flags])

    train, scored = dataset.split("train"), dataset.split(split)
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(0, 5, 11)))
    model.fit(design(train.index.to_numpy()), train[list(EMOTIONS)].to_numpy())
    preds = np.clip(model.predict(design(scored.index.to_numpy())), 0.0, 1.0)
    return pcc_scores(preds, scored[list(EMOTIONS)].to_numpy(dtype=np.float64))


# ---------------------------------------------------------------- figures


def _warn_missing_glyphs(caught: list[warnings.WarningMessage], figure: str) -> None:
    """One ``warning:`` line for the characters (of a modality name, say) the plot's font cannot draw, instead of
    matplotlib's two lines per character; other warnings are shown as they were raised."""
    glyphs = [re.match(r"Glyph (\d+) ", str(w.message)) for w in caught]
    for warning, glyph in zip(caught, glyphs, strict=True):
        if glyph is None:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    missing = "".join(dict.fromkeys(chr(int(glyph.group(1))) for glyph in glyphs if glyph is not None))
    if missing:
        warnings.warn(f"{figure}: the plot's font cannot draw {missing!r}, which shows there as boxes (the report's"
                      " tables show it as written).", EmimicWarning, stacklevel=3)


def png_html(fig: Figure, alt: str) -> str:
    """The figure as an ``<img>`` with an embedded PNG (the file stays self-contained and opens offline)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.savefig(buffer, format="png", dpi=DPI)
    _warn_missing_glyphs(caught, alt)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def pcc_figure(summary: RunSummary, ridge: dict[str, float], oracle: dict[str, float] | None) -> Figure:
    """Per-dimension PCC with 95 % intervals, the ridge baseline beside it and the oracle as a tick."""
    low, high = confidence_interval(summary.bootstrap)
    pcc = np.array([summary.valid.pcc[e] for e in EMOTIONS])
    x = np.arange(len(EMOTIONS))
    fig = Figure(figsize=(9, 3.8), layout="constrained")
    ax = fig.subplots()
    ax.bar(x - 0.2, pcc, 0.4, color=[EMOTION_COLOURS[e] for e in EMOTIONS], label="model (95 % CI)",
           yerr=[pcc - low, high - pcc], capsize=3)
    ax.bar(x + 0.2, [ridge[e] for e in EMOTIONS], 0.4, color=BASELINE_COLOUR, label="ridge baseline")
    if oracle:
        ax.scatter(x, [oracle[e] for e in EMOTIONS], marker="_", s=900, color=ORACLE_COLOUR, label="oracle")
    ax.set_xticks(x, EMOTIONS)
    ax.set_ylabel("PCC (validation)")
    ax.set_ylim(min(0.0, float(low.min())), 1.0)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return fig


def scatter_figure(evaluation: Evaluation) -> Figure:
    preds, labels = evaluation.arrays()
    fig = Figure(figsize=(10, 6), layout="constrained")
    for k, (ax, emotion) in enumerate(zip(fig.subplots(2, 3).ravel(), EMOTIONS, strict=True)):
        ax.scatter(labels[:, k], preds[:, k], s=6, alpha=0.4, color=EMOTION_COLOURS[emotion], linewidths=0)
        ax.plot([0, 1], [0, 1], color="#999999", lw=0.8)
        ax.set(xlim=(0, 1), ylim=(0, 1), title=f"{emotion}  r={evaluation.pcc[emotion]:z.3f}",
               xlabel="true", ylabel="predicted")
    return fig


def residual_groups(evaluation: Evaluation) -> dict[str, np.ndarray]:
    """Per-clip mean absolute error, for the clips with every modality and for those lacking each one."""
    preds, labels = evaluation.arrays()
    error = np.abs(preds - labels).mean(axis=1)
    has = evaluation.clips.filter(like="has ")  # type: ignore[union-attr]
    groups = {"all modalities": error[has.all(axis=1).to_numpy()]}
    for column in has.columns:
        lacking = ~has[column].to_numpy()
        if lacking.any():
            groups[f"no {column.removeprefix('has ')}"] = error[lacking]
    return groups


def residual_figure(evaluation: Evaluation) -> Figure:
    groups = residual_groups(evaluation)
    fig = Figure(figsize=(7, 3.5), layout="constrained")
    ax = fig.subplots()
    parts = ax.boxplot(list(groups.values()), patch_artist=True, showfliers=False)
    for patch, name in zip(parts["boxes"], groups, strict=True):
        patch.set_facecolor("#dddddd" if name == "all modalities" else modality_colour(name.removeprefix("no ")))
    ax.set_xticks(range(1, len(groups) + 1), [f"{name}\n(n={len(v)})" for name, v in groups.items()])
    ax.set_ylabel("mean |predicted − true|")
    ax.grid(axis="y", alpha=0.3)
    return fig


def learning_figure(history: pd.DataFrame, best_epoch: int) -> Figure:
    fig = Figure(figsize=(10, 3.5), layout="constrained")
    loss_ax, pcc_ax = fig.subplots(1, 2)
    for column, label, colour in (("train/loss", "train loss", RUN_COLOURS[0]), ("val/loss", "validation loss",
                                                                               RUN_COLOURS[4])):
        if column in history:
            loss_ax.plot(history["epoch"], history[column], label=label, color=colour)
    pcc_ax.plot(history["epoch"], history[MONITOR], label="validation PCC (evaluated weights)", color=RUN_COLOURS[1])
    if RAW_MONITOR in history:
        pcc_ax.plot(history["epoch"], history[RAW_MONITOR], label="validation PCC (raw weights)",
                    color=RUN_COLOURS[3], ls="--")
    for ax, title in ((loss_ax, "loss"), (pcc_ax, "mean PCC")):
        ax.axvline(best_epoch, color="#999999", ls=":", label=f"chosen epoch {best_epoch}")
        ax.set(xlabel="epoch", title=title)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return fig


def labels_figure(dataset: VidmimicDataset) -> Figure:
    fig = Figure(figsize=(10, 5), layout="constrained")
    labelled = [s for s in dataset.splits if dataset.has_labels(s)]
    for ax, emotion in zip(fig.subplots(2, 3).ravel(), EMOTIONS, strict=True):
        for split, alpha in zip(labelled, (0.8, 0.5, 0.3), strict=False):
            ax.hist(dataset.split(split)[emotion], bins=20, range=(0, 1), density=True, alpha=alpha,
                    color=EMOTION_COLOURS[emotion], label=split, histtype="stepfilled" if alpha > 0.5 else "step",
                    lw=1.5)
        ax.set(title=emotion, xlabel="label")
        ax.legend(fontsize=7)
    return fig


def lengths_figure(dataset: VidmimicDataset) -> Figure:
    store = dataset.store(progress=False)
    ids = np.concatenate([frame.index.to_numpy() for frame in dataset.splits.values()])
    fig = Figure(figsize=(10, 3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(store.modalities)))
    for ax, modality in zip(axes, store.modalities, strict=True):
        lengths = store.lengths(modality, ids)
        ax.hist(lengths[lengths > 0], bins=30, color=modality_colour(modality))
        ax.set(title=f"{modality} (width {store.dim(modality)})", xlabel="frames per clip")
    return fig


def comparison_figure(summaries: Sequence[RunSummary], marks: Sequence[str]) -> Figure:
    """Grouped bars per emotion and for the mean; the axis starts near the lowest interval so that
    differences between runs are visible (the interval bars show which ones are within noise)."""
    x = np.arange(len(EMOTIONS) + 1)
    width = 0.8 / len(summaries)
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.subplots()
    lowest = 1.0
    for i, (summary, mark) in enumerate(zip(summaries, marks, strict=True)):
        boot = summary.bootstrap
        draws = np.column_stack([boot, boot.mean(axis=1)])
        values = np.array([*(summary.valid.pcc[e] for e in EMOTIONS), summary.valid.mean_pcc])
        low, high = confidence_interval(draws)
        lowest = min(lowest, float(low.min()))
        ax.bar(x - 0.4 + width * (i + 0.5), values, width, color=run_colour(i), yerr=[values - low, high - values],
               capsize=2, label=f"{summary.name} ({mark})" if mark else summary.name)
    ax.set_xticks(x, [*EMOTIONS, "mean"])
    ax.set_ylim(max(0.0, lowest - 0.05), 1.0)
    ax.set_ylabel("PCC (validation, 95 % CI)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(summaries), 4), fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return fig


# ---------------------------------------------------------------- HTML


def html_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def provenance_table(summary: RunSummary) -> str:
    prov = summary.provenance
    data, training, config = prov.get("data", {}), prov.get("training", {}), prov.get("config", {})
    stopped = training.get("stopped_early")
    stop_text = "-" if stopped is None else (
        f"stopped early (patience {training['patience']})" if stopped
        else "hit the epoch limit: may not have converged")
    members = config.get("resolved", {}).get("model", {}).get("members", 1)
    rows = [
        ("run folder", summary.path),
        ("config", f"{config.get('name', '-')} ({config.get('source', '-')})"
                   + (f", a seed ensemble of {members} models" if members != 1 else "")),
        ("seed", prov.get("seed", "-")),
        ("dataset", f"{data.get('root', summary.dataset.root)}  fingerprint {data.get('fingerprint', '-')}"),
        ("split sizes", ", ".join(f"{k} {v}" for k, v in data.get("split_sizes", {}).items()) or "-"),
        ("epochs", f"best {summary.metrics.get('best_epoch')} of {training.get('epochs_run', '-')} run,"
                   f" limit {training.get('max_epochs', '-')}: {stop_text}"),
        ("wall time", f"{training.get('wall_seconds', summary.metrics.get('seconds', '-'))} s"),
        ("emimic", f"{prov.get('emimic_version', '-')}, model format {read_model_format(summary.path)}"),
    ]
    return html_table(("", ""), rows)


def scores_table(summary: RunSummary, ridge: dict[str, float], oracle: dict[str, float] | None) -> str:
    low, high = confidence_interval(summary.bootstrap)
    rows = []
    for k, emotion in enumerate(EMOTIONS):
        row = [emotion, f"{summary.valid.pcc[emotion]:z.4f}", f"[{format_bound(low[k])}, {format_bound(high[k])}]",
               f"{ridge[emotion]:z.4f}"]
        rows.append(row + ([f"{oracle[emotion]:z.4f}"] if oracle else []))
    mean_oracle = [f"{np.mean([oracle[e] for e in EMOTIONS]):z.4f}"] if oracle else []
    mean_ci = confidence_interval(summary.bootstrap.mean(axis=1))
    rows.append(["mean", f"{summary.valid.mean_pcc:z.4f}", f"[{format_bound(mean_ci[0])}, {format_bound(mean_ci[1])}]",
                 f"{np.mean(list(ridge.values())):z.4f}", *mean_oracle])
    return html_table(["emotion", "PCC", "95 % CI", "ridge", *(["oracle"] if oracle else [])], rows)


def data_tables(dataset: VidmimicDataset) -> str:
    sizes = html_table(["split", "clips", "labelled"],
                       [(s, len(f), "yes" if dataset.has_labels(s) else "no") for s, f in dataset.splits.items()])
    coverage = dataset.coverage()
    cov = html_table(["split", *coverage.columns],
                     [(s, *(f"{v:.0%}" for v in row)) for s, row in zip(coverage.index, coverage.to_numpy(),
                                                                        strict=True)])
    return sizes + cov


def headline(summary: RunSummary, ridge: dict[str, float], oracle: dict[str, float] | None) -> str:
    """The result in one sentence: score with its interval, against the baseline and the ceiling."""
    low, high = confidence_interval(summary.bootstrap.mean(axis=1))
    mean = summary.valid.mean_pcc
    text = (f"Validation mean PCC <b>{mean:z.4f}</b> (95 % CI {format_bound(low)} to {format_bound(high)},"
            f" {summary.valid.n_clips} clips); ridge baseline {np.mean(list(ridge.values())):z.4f}")
    if oracle:
        ceiling = float(np.mean([oracle[e] for e in EMOTIONS]))
        text += f"; oracle {ceiling:z.4f}, so the model reaches {mean / ceiling:z.1%} of the ceiling"
    return text + "."


def run_section(summary: RunSummary) -> str:
    oracle_all = load_oracle(summary.dataset.root)
    oracle = oracle_all["oracle_pcc"]["valid"] if oracle_all else None
    ridge = ridge_baseline(summary.dataset)
    parts = [f"<h2>Run {html.escape(summary.name)}</h2>", f'<p class="headline">{headline(summary, ridge, oracle)}</p>',
             provenance_table(summary),
             "<h3>Validation PCC</h3>", scores_table(summary, ridge, oracle),
             png_html(pcc_figure(summary, ridge, oracle), "per-dimension PCC with 95 % CI"),
             "<h3>Predicted vs true</h3>", png_html(scatter_figure(summary.valid), "predicted vs true"),
             "<h3>Errors by modality coverage</h3>", png_html(residual_figure(summary.valid), "residuals")]
    if summary.history is not None and MONITOR in summary.history:
        parts += ["<h3>Learning curves</h3>",
                  png_html(learning_figure(summary.history, int(summary.metrics["best_epoch"])), "learning curves")]
    return "\n".join(parts)


def data_section(dataset: VidmimicDataset) -> str:
    return "\n".join([f"<h2>Data: {html.escape(str(dataset.root))}</h2>", data_tables(dataset),
                      "<h3>Label distributions</h3>", png_html(labels_figure(dataset), "label distributions"),
                      "<h3>Sequence lengths</h3>", png_html(lengths_figure(dataset), "sequence lengths")])


# Why a run is shown unpaired with the first one (see :func:`unpaired_reason`): its row's mark.
OTHER_CLIPS, OTHER_LABELS = "other clips: not paired", "other labels: not paired"


def unpaired_reason(summary: RunSummary, reference: RunSummary) -> str | None:
    """Why ``summary`` cannot be compared with ``reference`` clip by clip (its row's mark), or None when it can: a
    paired difference needs the same validation clips with the same labels. Equal ids are not enough: runs on two
    corpora that number their clips alike, or on a corpus whose labels were edited between them, score the same ids
    against other targets, and a paired interval over those would call noise a significant difference."""
    if not summary.valid.clips.index.equals(reference.valid.clips.index):  # type: ignore[union-attr]
        return OTHER_CLIPS
    if not np.array_equal(summary.valid.arrays()[1], reference.valid.arrays()[1]):
        return OTHER_LABELS
    return None


def comparison_rows(summaries: Sequence[RunSummary]) -> list[list[str]]:
    """Mean PCC with its interval per run, and the paired difference to the first run over the same clips (the
    same labels too, see :func:`unpaired_reason`)."""
    reference = summaries[0]
    rows = []
    for summary in summaries:
        low, high = confidence_interval(summary.bootstrap.mean(axis=1))
        prov = summary.provenance
        row = [summary.name, prov.get("config", {}).get("name", "-"), str(prov.get("seed", "-")),
               f"{summary.valid.mean_pcc:z.4f}", f"[{format_bound(low)}, {format_bound(high)}]"]
        if summary is reference:
            row += ["", "reference"]
        elif (reason := unpaired_reason(summary, reference)) is not None:
            row += ["-", reason]
        else:
            diff_low, diff_high = paired_difference_interval(summary.bootstrap, reference.bootstrap)
            delta = summary.valid.mean_pcc - reference.valid.mean_pcc
            noise = "within noise" if diff_low <= 0.0 <= diff_high else "significant"
            bounds = f"[{format_bound(diff_low, '+.3f')}, {format_bound(diff_high, '+.3f')}]"
            row += [f"{format_bound(delta, '+.4f')} {bounds}", noise]
        rows.append(row)
    return rows


def comparison_section(summaries: Sequence[RunSummary]) -> str:
    header = ["run", "config", "seed", "mean PCC", "95 % CI", f"Δ vs {summaries[0].name} (paired 95 % CI)", ""]
    rows = comparison_rows(summaries)
    note = ("<p>Differences are paired over the same validation clips with the same labels (1,000 bootstrap"
            " resamples); the interval covers the sampling of clips, not the training seed: compare configs over"
            " several seeds.</p>")
    # other clips are what CV folds have, and say so in their mark; other labels on the same ids need saying why
    relabelled = [f"<p>{html.escape(row[0])} is not paired with {html.escape(summaries[0].name)}: it was scored on the"
                  " same clip ids with other labels (another corpus that numbers its clips alike, or labels edited"
                  " between the runs), so no difference to it is computed; compare their intervals.</p>"
                  for row in rows if row[-1] == OTHER_LABELS]
    return "\n".join([f"<h2>Comparison of {len(summaries)} runs</h2>", html_table(header, rows), note, *relabelled,
                      png_html(comparison_figure(summaries, [row[-1] for row in rows]), "comparison of runs")])


# Counts images that failed to decode and script errors; the browser test reads these attributes.
_ONLOAD = """<script>
window.reportErrors = 0;
window.addEventListener("error", function () { window.reportErrors += 1; });
window.addEventListener("load", function () {
  var broken = Array.from(document.images).filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  document.body.dataset.brokenImages = String(broken.length);
  document.body.dataset.images = String(document.images.length);
  document.body.dataset.errors = String(window.reportErrors);
  document.body.dataset.ready = "1";
});
</script>"""

_STYLE = """<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 1em; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 1em 1em 0; display: inline-table; vertical-align: top; }
td, th { border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: left; font-size: 14px; }
img { max-width: 100%; display: block; margin: 0.5em 0 1.5em; }
.headline { font-size: 17px; }
h2 { border-top: 2px solid #264653; padding-top: 0.6em; margin-top: 2em; }
</style>"""


_HEAD = '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>'
_TITLE = "emimic report: "
# How every report begins: a file at the report's path that begins otherwise is not emimic's to replace.
PAGE_START = _HEAD + _TITLE


def render(summaries: Sequence[RunSummary]) -> str:
    """The complete HTML page for one or more runs."""
    title = _TITLE + ", ".join(s.name for s in summaries)
    sections = [comparison_section(summaries)] if len(summaries) > 1 else []
    sections += [run_section(s) for s in summaries]
    roots = dict.fromkeys(s.dataset.root for s in summaries)
    sections += [data_section(next(s.dataset for s in summaries if s.dataset.root == root)) for root in roots]
    return (f"{_HEAD}{html.escape(title)}</title>"
            f"{_STYLE}{_ONLOAD}</head>\n<body><h1>{html.escape(title)}</h1>\n" + "\n".join(sections)
            + "\n</body></html>\n")


def refuse_other_file(out: Path) -> None:
    """Raise :class:`OutputConflict` when ``out`` holds a file that is not an emimic report (a user's page, a CSV)."""
    if out.is_file():
        try:
            with out.open("rb") as file:
                start = file.read(len(PAGE_START.encode()))
        except OSError as exc:
            raise OutputConflict(f"{out}: exists and cannot be read ({exc.strerror}), so it is kept; choose another"
                                 " --out, or delete it first.") from None
        if start != PAGE_START.encode():
            raise OutputConflict(f"{out}: exists and is not an emimic report, so it is kept; choose another --out, or"
                                 " delete it first.")


def write_report(runs: Sequence[str | Path], out: str | Path, *, data: str | Path | None = None,
                 store: str | Path | None = None) -> Path:
    """Write the report of ``runs`` (run folders, or folders of runs) to ``out``, their features read from the store
    ``store`` (default: their data root's); returns its path. It replaces an earlier report at ``out``, never
    another file, and is never written inside a run's dataset root, nor inside a folder of ``runs`` but as its own
    report (``RUN/report.html``)."""
    refuse_other_file(Path(out))
    refuse_inside_runs(out, runs, report=True)
    shared = open_dataset(data, store_dir=store) if data is not None else None
    summaries = [load_summary(run, shared, store=store) for run in expand_runs(runs)]
    out = Path(out)
    for root in {summary.dataset.root for summary in summaries}:
        refuse_inside_dataset(out, root)
    write_text(out, render(summaries))
    return out
