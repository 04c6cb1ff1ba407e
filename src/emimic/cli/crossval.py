"""The ``cv`` command: k-fold cross-validation over train+valid, out-of-fold score, optional refit."""

from __future__ import annotations

import argparse
from pathlib import Path

from emimic.cli.arguments import add_runner_args, output_folder, positive_int, seed_value
from emimic.cli.data import add_store_arg
from emimic.cli.registry import Handler, command, out
from emimic.cli.train import add_config_args, dataset, job_line, pcc_table


@command("cv", "Cross-validate over train+valid (grouped folds when the CSVs name groups): out-of-fold PCC with"
         " CIs, optional refit; `predict --run CV` averages its models.",
         "emimic cv --data data/sim --folds 5 --seeds 0 1 --out runs/cv --refit --jobs 2   (other --folds into the"
         " same folder: add --overwrite to replace it)")
def cv_command(parser: argparse.ArgumentParser) -> Handler:
    parser.add_argument("--data", type=Path, required=True, help="dataset root (Hume-Vidmimic2 layout)")
    parser.add_argument("--out", type=output_folder, required=True, help="CV folder to create or resume")
    parser.add_argument("--folds", type=positive_int, default=5,
                        help="number of folds, >= 2, each of at least 2 clips (a PCC needs them; default: 5)")
    add_config_args(parser)
    parser.add_argument("--seeds", type=seed_value, nargs="+", default=None,
                        help="one model per fold and seed (default: the --seed, else the config's seed)")
    parser.add_argument("--fold-seed", type=seed_value, default=0, help="seed of the fold assignment (default: 0)")
    parser.add_argument("--refit", action="store_true",
                        help="also train on all of train+valid for the median best epoch of the folds")
    add_runner_args(parser, what="models")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a CV folder made with other folds, fold seed, config or data, or holding"
                             " models of seeds not given; otherwise replace only the models it cannot reuse (a"
                             " refit of other epochs than the folds now choose, an unreadable run), keeping the"
                             " others (what is replaced is kept until a new model saved an epoch)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or per-model lines")
    add_store_arg(parser)

    def run(args: argparse.Namespace) -> int:
        from emimic.training.crossval import cross_validate

        result = cross_validate(dataset(args), args.out, folds=args.folds, seeds=args.seeds, config=args.config,
                                max_epochs=args.max_epochs, overrides={} if args.seed is None else {"seed": args.seed},
                                refit=args.refit, jobs=args.jobs, backend=args.backend, ray_address=args.ray_address,
                                fold_seed=args.fold_seed, overwrite=args.overwrite, progress=not args.quiet,
                                report=None if args.quiet else job_line)
        grouping = f"grouped by {result.group_column!r}" if result.group_column else "not grouped"
        out.print(pcc_table(result.pcc, f"Out-of-fold PCC: {result.folds} folds, {grouping}, {len(result.seeds)}"
                            f" seed(s)", intervals=result.pcc_ci95))
        folds = ", ".join(f"{name} {score:z.4f}" for name, score in result.fold_scores.items())
        out.print(f"per fold: {folds}")
        if result.refit_epochs is not None:
            out.print(f"refit on train+valid for {result.refit_epochs} epochs (median best epoch):"
                      f" {', '.join(str(p) for p in result.refit_runs)}")
        out.print(f"CV folder: {result.out}  (predict with the ensemble: emimic predict --run {result.out} ...)")
        return 0

    return run
