"""The ``sweep`` command: an Optuna search over the config, one ``train`` run per trial, the best config as YAML."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from emimic.cli.arguments import add_valid_fraction_arg, output_folder, positive_int
from emimic.cli.data import add_store_arg
from emimic.cli.registry import Handler, command, console, out
from emimic.cli.train import add_config_args, dataset

if TYPE_CHECKING:
    import pandas as pd
    from optuna.trial import FrozenTrial

# Trials shown on the terminal, best first; trials.csv holds them all.
SHOWN_TRIALS = 15


def trial_line(trial: FrozenTrial) -> None:
    """One line per finished trial, as it finishes (trials may finish out of order with --jobs)."""
    value = f"valid mean PCC {trial.value:z.4f}" if trial.state.name == "COMPLETE" else trial.state.name
    epochs = trial.user_attrs.get("epochs", len(trial.intermediate_values))
    seconds = trial.duration.total_seconds() if trial.duration is not None else math.nan
    params = escape(", ".join(f"{name}={_short(value)}" for name, value in trial.params.items()))
    console.print(f"trial {trial.number}: {value}, {epochs} epochs, {seconds:.1f} s  ({params})", highlight=False)


def _short(value: object) -> str:
    """A parameter's value as a space YAML writes it: a float to 4 digits, a list as ``[vit, wav2vec2]``, None as
    ``null`` (every modality, for model.modalities); plain text: escape it for rich, which takes ``[vit]`` for
    markup."""
    if isinstance(value, list):
        return f"[{', '.join(map(_short, value))}]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def trials_table(table: pd.DataFrame, title: str) -> Table:
    """The trials, best first; a pruned trial's value is its last reported epoch's (Optuna's rule)."""
    import pandas as pd  # not for --help

    shown = table.sort_values("value", ascending=False, na_position="last").head(SHOWN_TRIALS)
    params = [c for c in table.columns if c not in ("trial", "state", "value", "epochs", "seconds", "run")]
    view = Table(title=title, title_justify="left")
    for name in ("trial", "state", "valid mean PCC", "epochs", *params):
        view.add_column(name, justify="left" if name == "state" else "right")
    for row in shown.to_dict("records"):
        value = "-" if pd.isna(row["value"]) else f"{row['value']:z.4f}"
        cells = [escape(_short(row[p])) for p in params]
        view.add_row(str(row["trial"]), row["state"], value, str(row["epochs"]), *cells)
    return view


@command("sweep", "Search the config with Optuna (TPE, median pruning on validation mean PCC): one run per trial,"
         " a results table and the best config as YAML; resumable, parallel trials with --jobs.",
         "emimic sweep --data data/sim --trials 20 --max-epochs 30 --out runs/sweep --jobs 2   (another --space,"
         " --config or --max-epochs into the same folder: add --overwrite to replace it; a corpus without"
         " valid_split.csv: add --valid-fraction 0.2)\n"
         "  emimic sweep --data data/sim --trials 12 --max-epochs 30 --space modalities.yaml --out runs/modalities"
         "   (modalities.yaml sweeps modality subsets, a categorical choice may be a list: params: {model.modalities:"
         " {type: categorical, choices: [[vit], [wav2vec2], [vit, wav2vec2]]}})")
def sweep_command(parser: argparse.ArgumentParser) -> Handler:
    parser.add_argument("--data", type=Path, required=True, help="dataset root (Hume-Vidmimic2 layout)")
    parser.add_argument("--out", type=output_folder, required=True,
                        help="sweep folder to create or resume (trials/, trials.csv, best.yaml)")
    parser.add_argument("--trials", type=positive_int, required=True,
                        help="trials the study should hold; the same command again runs only the missing ones")
    add_config_args(parser)
    add_valid_fraction_arg(parser)
    parser.add_argument("--space", type=Path, default=None,
                        help="search space YAML (default: the packaged one; see docs/sweep.md): dotted config keys"
                             " and their distributions, a categorical choice a value or a list (model.modalities:"
                             " {type: categorical, choices: [[vit], [vit, wav2vec2]]})")
    parser.add_argument("--storage", default=None,
                        help="Optuna storage: a database URL (sqlite:///sweep.db) or a journal file path (default:"
                             " OUT/study.log, safe for --jobs)")
    parser.add_argument("--jobs", type=positive_int, default=1, help="trials run in parallel (local processes)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a sweep folder made with another config, space, data or storage (kept until a"
                             " new trial saved an epoch)")
    parser.add_argument("--quiet", action="store_true", help="no per-trial lines")
    add_store_arg(parser)

    def run(args: argparse.Namespace) -> int:
        from emimic.training.sweep import sweep

        result = sweep(dataset(args), args.out, trials=args.trials, config=args.config, space=args.space,
                       max_epochs=args.max_epochs, seed=args.seed, valid_fraction=args.valid_fraction,
                       storage=args.storage, jobs=args.jobs, overwrite=args.overwrite, progress=not args.quiet,
                       report=None if args.quiet else trial_line)
        out.print(trials_table(result.table, f"Sweep {result.out}: {len(result.table)} trials ({result.ran} run now),"
                                             f" best first; validation on {result.validated_on}"))
        if result.best_config is None:
            out.print("no trial completed, so there is no best config yet; see the states above.")
            return 1
        out.print(f"best: trial {result.best_trial}, valid mean PCC {result.best_value:z.4f}; its config:"
                  f" {result.best_config}  (emimic train --config {result.best_config} ...)", highlight=False)
        return 0

    return run
