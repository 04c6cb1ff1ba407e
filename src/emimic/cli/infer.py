"""The ``infer`` command: videos in, predictions out, with the run's own extraction recipe (thin over emimic.infer)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from emimic.cli.arguments import output_file, positive_int
from emimic.cli.registry import Handler, command, console, out
from emimic.defaults import LOCK_WAIT_SECONDS

SHOWN_ROWS = 20


def plots_folder(predictions: Path) -> Path:
    """Where ``--report`` puts the per-clip plots: beside the CSV, ``<name>_plots/``."""
    return predictions.with_name(f"{predictions.stem}_plots")


@command(
    "infer",
    "Predict the six intensities of new videos (files or folders) with a trained run; extracts exactly the"
    " modalities the run was trained on, with the same extractor settings, into a cache folder. A second infer of"
    " the same features of the same videos waits for the first (at most"
    f" {LOCK_WAIT_SECONDS / 60:g} min) and reuses its features.",
    "emimic infer --run runs/raw new_videos/ clip7.mp4 --out predictions.csv --report",
)
def infer_command(parser: argparse.ArgumentParser) -> Handler:
    parser.add_argument(
        "inputs", nargs="+", type=Path, metavar="INPUT",
        help="video files or folders of them, searched recursively; recordings of other formats in them (.3gp,"
        " .wav ...) are named in a warning (a name starting with '-' goes after --: `-- -take2.mp4`)",
    )
    parser.add_argument("--run", type=Path, required=True,
                        help="a trained run folder (emimic train --out RUN)")
    parser.add_argument(
        "--out", type=output_file, default=Path("predictions.csv"),
        help="CSV to write: clip name + six intensities, outside the --run folders (default: predictions.csv)",
    )
    parser.add_argument(
        "--report", action="store_true", help="also plot each clip's six intensities into <out name>_plots/*.png"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the --out file if it exists")
    parser.add_argument(
        "--model-dir", type=Path, default=None,
        help="folder of the extractors' models, when they are no longer where training found them",
    )
    parser.add_argument("--workers", type=positive_int, default=1, help="local extraction processes (default: 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")

    def run(args: argparse.Namespace) -> int:
        from emimic.infer import CLIP_COLUMN, infer
        from emimic.labels import EMOTIONS  # pandas: not for --help

        result = infer(args.run, args.inputs, out=args.out, plots=plots_folder(args.out) if args.report else None,
                       model_dir=args.model_dir, workers=args.workers, overwrite=args.overwrite,
                       progress=not args.quiet)
        predictions = result.predictions
        table = Table(title=f"Predictions ({len(predictions)} clips)", title_justify="left")
        table.add_column(CLIP_COLUMN)
        for emotion in EMOTIONS:
            table.add_column(emotion, justify="right")
        for _, row in predictions.head(SHOWN_ROWS).iterrows():
            table.add_row(escape(str(row[CLIP_COLUMN])), *(f"{row[e]:z.3f}" for e in EMOTIONS))
        out.print(table)
        more = f" (first {SHOWN_ROWS} shown)" if len(predictions) > SHOWN_ROWS else ""
        out.print(f"predictions: {args.out}{more}", highlight=False)
        if result.plots:
            out.print(f"plots: {plots_folder(args.out)}/ ({len(result.plots)} PNG)", highlight=False)
        failed = result.failed.drop_duplicates(CLIP_COLUMN)
        for _, row in failed.iterrows():
            console.print(f"[yellow]failed:[/] {escape(str(row[CLIP_COLUMN]))}: {escape(row['error'])}",
                          highlight=False, soft_wrap=True)
        if len(failed):
            console.print(f"[yellow]{len(failed)} clip(s) failed and have no prediction; extraction log:"
                          f" {result.cache / '_extract'}[/]", highlight=False, soft_wrap=True)
        return 0 if len(predictions) else 1

    return run
