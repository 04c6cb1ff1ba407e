"""Data commands: simulate, validate, pack."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from emimic.cli.arguments import add_valid_fraction_arg, output_folder
from emimic.cli.registry import Handler, command, out
from emimic.defaults import CACHE_ENV, LOCK_WAIT_SECONDS, STORE_DTYPES

if TYPE_CHECKING:
    from emimic.data.validate import ValidationReport


def add_store_arg(parser: argparse.ArgumentParser) -> None:
    """``--store DIR``: where the feature store lives, for every command that reads or writes it."""
    parser.add_argument(
        "--store",
        type=output_folder,
        default=None,
        metavar="DIR",
        help=f"feature store folder (default: ROOT/.emimic/store, or the cache ${CACHE_ENV} or ~/.cache/emimic"
        " when the root is read-only)",
    )


def frame_table(frame, title: str) -> Table:
    """Render a pandas DataFrame as a rich table (see :func:`_cell`)."""
    table = Table(title=title, title_justify="left")
    for column in frame.columns:
        table.add_column(str(column), justify="left" if frame[column].dtype == object else "right")
    for _, row in frame.iterrows():
        table.add_row(*(_cell(v) for v in row))
    return table


def _cell(value: object) -> str:
    """A float to at most 4 decimals without trailing zeros (a median of frame counts is 7 or 7.5, never 7.0000) and
    never as a negative zero; anything else as it prints."""
    return f"{value:z.4f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


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
    "simulate",
    "Write a simulated corpus in the Hume-Vidmimic2 layout and print its oracle (ceiling) PCC.",
    "emimic simulate --out data/sim --clips 500 --seed 1",
)
def simulate_command(parser: argparse.ArgumentParser) -> Handler:
    from emimic.data.simulation_knobs import KNOBS  # plain data: the flags cost no pydantic or numpy import

    parser.add_argument("--out", type=output_folder, required=True, help="corpus folder to write")
    parser.add_argument("--config", type=Path, default=None, help="YAML file of SimulationSettings fields")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    # One flag per setting (e.g. --clips, --seed, --face-dim, --missing-audio); unset flags keep
    # the YAML value or the default, so the list of knobs stays the only list of flags.
    for knob in KNOBS:
        if knob.kind is bool:  # a switch: --transcripts-only / --no-transcripts-only
            parser.add_argument(
                knob.flag, dest=f"sim_{knob.name}", action=argparse.BooleanOptionalAction,
                default=None, help=f"{knob.description} (default: {'on' if knob.default else 'off'})",
            )
            continue
        parser.add_argument(
            knob.flag,
            dest=f"sim_{knob.name}",
            type=knob.kind,
            default=None,
            metavar=knob.kind.__name__.upper(),
            help=f"{knob.description} (default: {knob.default})",
        )

    def run(args: argparse.Namespace) -> int:
        from pydantic import ValidationError

        from emimic.config import explain
        from emimic.data.simulate import existing_simulation, simulate
        from emimic.data.simulation_settings import SimulationSettings
        from emimic.labels import EMOTIONS

        overrides = {k.name: getattr(args, f"sim_{k.name}") for k in KNOBS}
        overrides = {n: v for n, v in overrides.items() if v is not None}
        if args.config is not None:
            settings = SimulationSettings.from_yaml(args.config, **overrides)
        else:
            try:
                settings = SimulationSettings(**overrides)
            except ValidationError as exc:
                raise explain(exc, SimulationSettings, source="simulate options") from None
        reused = existing_simulation(args.out, settings).state == "finished"
        report = simulate(args.out, settings, progress=not args.quiet)
        table = Table(title=f"Oracle PCC of {args.out} (seed {settings.seed})", title_justify="left")
        table.add_column("split")
        table.add_column("clips", justify="right")
        for emotion in EMOTIONS:
            table.add_column(emotion, justify="right")
        table.add_column("mean", justify="right")
        for split, per_emotion in report["oracle_pcc"].items():
            cells = [f"{per_emotion[e]:z.4f}" for e in EMOTIONS]
            mean = f"{report['oracle_mean_pcc'][split]:z.4f}"
            table.add_row(split, str(report["clips"][split]), *cells, f"[bold]{mean}[/]")
        out.print(table)
        if reused:
            out.print(f"{args.out} already holds this simulation (same settings); no file was rewritten.")
        return 0

    return run


@command(
    "validate",
    "Inspect a dataset root: splits, modalities, missing clips and every problem.",
    "emimic validate data/sim",
)
def validate_command(parser: argparse.ArgumentParser) -> Handler:
    parser.add_argument("root", type=Path, help="dataset root in the Hume-Vidmimic2 layout")
    add_valid_fraction_arg(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def run(args: argparse.Namespace) -> int:
        from emimic.data.validate import validate

        report = validate(args.root, valid_fraction=args.valid_fraction, progress=not args.quiet)
        print_validation(report)
        return 0 if report.ok else 1

    return run


@command(
    "pack",
    "Pack every modality into a memory-mapped FeatureStore (a no-op when nothing changed); a command packing the"
    f" same store already is waited for (at most {LOCK_WAIT_SECONDS / 60:g} min), and what it packed is reused;"
    " a modality an extract is writing now is refused.",
    "emimic pack data/sim --dtype float16",
)
def pack_command(parser: argparse.ArgumentParser) -> Handler:
    parser.add_argument("root", type=Path, help="dataset root in the Hume-Vidmimic2 layout")
    parser.add_argument(
        "--dtype", choices=STORE_DTYPES, default=None,
        help="frame storage type (default: the store's own; float32 when new). Either refuses a column whose"
             " rounding errors vary by more than 10%% of its own standard deviation over all clips: float32 in"
             " float64 or int64 files (a feature varying by 0.3 around 1e8, where float32's steps are 8), float16"
             " besides (tiny values becoming 0, say), which also refuses a clip beyond ±65504 (docs/data.md)",
    )
    add_store_arg(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def run(args: argparse.Namespace) -> int:
        from emimic.data.store import pack

        result = pack(args.root, dtype=args.dtype, store_dir=args.store, progress=not args.quiet)
        table = Table(title="Feature store", title_justify="left")
        table.add_column("modality")
        table.add_column("action")
        for name, action in sorted(result.actions.items()):
            table.add_row(name, action)
        out.print(table)
        out.print(f"store: {result.store_dir}  (done in {result.seconds:.1f} s)")
        return 0

    return run
