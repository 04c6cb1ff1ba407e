"""Data commands: simulate, validate, pack."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from emimic.cli.registry import Handler, command, out
from emimic.data.store import DTYPES, pack
from emimic.data.validate import ValidationReport, validate


def frame_table(frame, title: str) -> Table:
    """Render a pandas DataFrame as a rich table (floats to 4 decimals)."""
    table = Table(title=title, title_justify="left")
    for column in frame.columns:
        table.add_column(str(column), justify="left" if frame[column].dtype == object else "right")
    for _, row in frame.iterrows():
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    return table


def print_validation(report: ValidationReport) -> None:
    out.print(f"[bold]{report.root}[/]")
    if len(report.splits):
        out.print(frame_table(report.splits, "Splits"))
    if len(report.modalities):
        out.print(frame_table(report.modalities, "Modalities"))
    if report.problems:
        table = Table(title=f"Problems ({len(report.errors)} error(s))", title_justify="left")
        for column in ("severity", "where", "problem"):
            table.add_column(column, overflow="fold")
        for p in report.problems:
            colour = "red" if p.severity == "error" else "yellow"
            table.add_row(f"[{colour}]{p.severity}[/]", p.where, p.message)
        out.print(table)
    verdict = "[green]ready to train[/]" if report.ok else "[red]not trainable: fix the errors above[/]"
    out.print(verdict)


@command(
    "validate",
    "Inspect a dataset root: splits, modalities, missing clips and every problem.",
    "emimic validate data/sim",
)
def validate_command(parser: argparse.ArgumentParser) -> Handler:
    parser.add_argument("root", type=Path, help="dataset root in the Hume-Vidmimic2 layout")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def run(args: argparse.Namespace) -> int:
        report = validate(args.root, progress=not args.quiet)
        print_validation(report)
        return 0 if report.ok else 1

    return run


@command(
    "pack",
    "Pack every modality into a memory-mapped FeatureStore (a no-op when nothing changed).",
    "emimic pack data/sim --dtype float16",
)
def pack_command(parser: argparse.ArgumentParser) -> Handler:
    parser.add_argument("root", type=Path, help="dataset root in the Hume-Vidmimic2 layout")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="frame storage type (default: float32)")
    parser.add_argument("--store", type=Path, default=None, help="store folder (default: ROOT/.emimic/store)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def run(args: argparse.Namespace) -> int:
        result = pack(args.root, dtype=args.dtype, store_dir=args.store, progress=not args.quiet)
        table = Table(title=f"Feature store {result.store_dir}", title_justify="left")
        table.add_column("modality")
        table.add_column("action")
        for name, action in sorted(result.actions.items()):
            table.add_row(name, action)
        out.print(table)
        out.print(f"done in {result.seconds:.1f} s")
        return 0

    return run
