"""The ``ablate`` command: a grid of configs x seeds, one table of mean ± std, changes and noise marks."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from emimic.cli.arguments import add_runner_args, add_valid_fraction_arg, output_folder, positive_int, seed_value
from emimic.cli.data import add_store_arg
from emimic.cli.registry import Handler, command, out
from emimic.cli.train import dataset, job_line
from emimic.defaults import ABLATION_MAX_EPOCHS

if TYPE_CHECKING:
    from emimic.training.ablate import AblationResult

def summary_tables(result: AblationResult) -> tuple[Table, Table]:
    """The comparison with the reference cell, and the per-dimension PCCs (two tables, so each fits a terminal)."""
    from emimic.training.ablate import COMPARISON_COLUMNS, SUMMARY_HEADER, summary_rows

    title = f"Ablation ({len(result.seeds)} seed(s), {result.validated_on}): {result.out}"
    comparison = Table(title=title, title_justify="left")
    dimensions = Table(title="Per-dimension validation PCC, mean ± std over seeds", title_justify="left")
    dimensions.add_column(SUMMARY_HEADER[0])
    for i, name in enumerate(SUMMARY_HEADER):
        table = comparison if i < COMPARISON_COLUMNS else dimensions
        table.add_column(name, justify="left" if i in (0, COMPARISON_COLUMNS - 1) else "right", no_wrap=i > 0)
    colours = {"better": "green", "worse": "red", "within noise": "dim", "reference": "bold"}
    for summary, row in zip(result.summary, summary_rows(result.summary), strict=True):
        mark = f"[{colours[summary.verdict]}]{row[COMPARISON_COLUMNS - 1]}[/]"
        comparison.add_row(*row[:COMPARISON_COLUMNS - 1], mark)
        dimensions.add_row(row[0], *row[COMPARISON_COLUMNS:])
    return comparison, dimensions


@command("ablate", "Train a grid of configs x seeds (default: the paper method and one change at a time) and"
         " tabulate mean ± std, the change against paper with a paired t-test and bootstrap, and noise marks.",
         "emimic ablate --data data/sim --seeds 0 1 2 --out runs/ablation --jobs 2   (a corpus without"
         " valid_split.csv: add --valid-fraction 0.2)")
def ablate_command(parser: argparse.ArgumentParser) -> Handler:
    parser.add_argument("--data", type=Path, required=True, help="dataset root (Hume-Vidmimic2 layout)")
    parser.add_argument("--out", type=output_folder, default=Path("runs/ablation"),
                        help="ablation folder to create or resume (default: runs/ablation)")
    parser.add_argument("--grid", default=None, metavar="FILE",
                        help="grid YAML (default: the packaged grid, docs/ablation.md)")
    parser.add_argument("--seeds", type=seed_value, nargs="+", default=[0, 1, 2],
                        help="seeds of every cell (default: 0 1 2)")
    parser.add_argument("--max-epochs", type=positive_int, default=ABLATION_MAX_EPOCHS,
                        help=f"epoch limit of every run; a cell may set its own train.max_epochs (default:"
                             f" {ABLATION_MAX_EPOCHS}, the same from Python)")
    add_valid_fraction_arg(parser)
    add_runner_args(parser, what="runs")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an ablation folder made with other seeds or data; otherwise replace only"
                             " the runs its cells cannot reuse (a changed cell's, an unreadable one), keeping the"
                             " others (what is replaced is kept until a new run saved an epoch)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or per-run lines")
    add_store_arg(parser)

    def run(args: argparse.Namespace) -> int:
        from emimic.training.ablate import SUMMARY_FILE, TABLE_FILE, ablate

        result = ablate(dataset(args), args.out, grid=args.grid, seeds=args.seeds, max_epochs=args.max_epochs,
                        valid_fraction=args.valid_fraction, jobs=args.jobs, backend=args.backend,
                        ray_address=args.ray_address, overwrite=args.overwrite, progress=not args.quiet,
                        report=None if args.quiet else job_line)
        for table in summary_tables(result):
            out.print(table)
        for name, reason in result.skipped.items():
            out.print(f"skipped {name}: {reason}", highlight=False)
        out.print(f"table: {result.out / SUMMARY_FILE}, per run: {result.out / TABLE_FILE}")
        return 0

    return run
