"""The ``extract`` command: features from videos, audio files and transcripts (thin over emimic.features)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.table import Table

from emimic.cli.arguments import positive_int, seed_value
from emimic.cli.registry import Handler, command, out
from emimic.errors import ConfigError
from emimic.registry import EXTRACTORS


def parse_options(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["wav2vec2.layer=6", "whisper.encoder=true"]`` → ``{"wav2vec2": {"layer": 6}, "whisper": {"encoder": True}}``.

    Values are read as YAML scalars/lists, so numbers, booleans and ``[4,6]`` keep their types.
    """
    import yaml

    options: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        name, dot, param = key.partition(".")
        if not (sep and dot and name and param):
            raise ConfigError(f"--option {item!r} is not EXTRACTOR.KEY=VALUE (e.g. wav2vec2.layer=6).")
        options.setdefault(name.strip(), {})[param.strip()] = yaml.safe_load(value)
    return options


def extractor_table() -> Table:
    table = Table(title="Extractors", title_justify="left")
    for column in ("name", "needs", "outputs", "description"):
        table.add_column(column, overflow="fold")
    for name in EXTRACTORS.names():
        extractor = EXTRACTORS[name]()  # default parameters; nothing is loaded
        doc = " ".join((type(extractor).__doc__ or "").split())
        outputs = ", ".join(f"{o.name} ({o.level})" for o in extractor.outputs())
        table.add_row(name, ",".join(sorted(extractor.needs)), outputs, doc)
    return table


@command(
    "extract",
    "Extract features from DIR/raw/<id>.mp4, DIR/audio/<id>.wav|mp3|flac|m4a and DIR/text/<id>.txt into per-clip"
    " folders;"
    " each extractor runs on the clips that hold its input (resumable, parallel, Ray). Other modalities may be"
    " extracted into DIR at the same time; a second extract of a modality being extracted is refused.",
    "emimic extract --data data/vidmimic --modalities egemaps,whisper,text_emb,face --workers 4\n"
    "  emimic extract --data data/transcripts_only --modalities text_emb,lexicon\n"
    "  emimic extract --data data/vidmimic --modalities face  # in a second terminal, while egemaps runs",
)
def extract_command(parser: argparse.ArgumentParser) -> Handler:
    names = ", ".join(EXTRACTORS.names())
    parser.add_argument(
        "--data", type=Path, required=False,
        help="dataset root holding raw/<id>.mp4 (or .mov, .mkv, .webm, .avi, .m4v), audio/<id>.wav|mp3|flac|m4a"
        " and/or text/<id>.txt; other files in raw/ and audio/ are named in a warning (docs/extract.md: what is"
        " read)",
    )
    parser.add_argument(
        "--modalities", default="", help=f"comma-separated extractors to run; available: {names} (see --list)"
    )
    parser.add_argument(
        "--workers", type=positive_int, default=1, help="local processes (or Ray CPUs with --ray local)"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--ray-address", default=None, metavar="ADDR", help="run as Ray tasks on this cluster")
    where.add_argument(
        "--ray", choices=["local"], default=None, help="run as Ray tasks on a local Ray of --workers CPUs"
    )
    parser.add_argument(
        "--model-dir", type=Path, default=None, help="folder of local models, one sub-folder per extractor"
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="EXTRACTOR.KEY=VALUE",
        help="an extractor parameter, e.g. wav2vec2.layer=6, whisper.encoder=true, face.landmarks=true",
    )
    parser.add_argument("--fps", type=float, default=5.0, help="video frames sampled per second (default: 5)")
    parser.add_argument(
        "--max-side",
        type=int,
        default=640,
        help="downscale frames so their larger side is at most this; 0 keeps full size (default: 640)",
    )
    parser.add_argument("--seed", type=seed_value, default=0, help="random seed (default: 0)")
    parser.add_argument("--overwrite", action="store_true", help="re-extract clips that already have features")
    parser.add_argument("--list", action="store_true", help="list the extractors and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def run(args: argparse.Namespace) -> int:
        if args.list:
            out.print(extractor_table())
            return 0
        if args.data is None or not args.modalities:
            raise ConfigError("--data and --modalities are required (see `emimic extract --help`).")
        from emimic.features import extract  # numpy, pandas and the extractors: not needed for --help

        summary = extract(
            args.data,
            args.modalities,
            workers=args.workers,
            ray_address=args.ray or args.ray_address,
            model_dir=args.model_dir,
            options=parse_options(args.option),
            fps=args.fps,
            max_side=args.max_side,
            seed=args.seed,
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
        table = Table(title=f"Extraction in {Path(args.data)}", title_justify="left")
        table.add_column("extractor")
        for column in summary.columns:
            table.add_column(column, justify="left" if column == "outputs" else "right")
        for name, row in summary.iterrows():
            table.add_row(str(name), *(str(v) for v in row))
        out.print(table)
        failed = int(summary["failed"].sum())
        if failed:
            out.print(f"[yellow]{failed} failure(s); see {summary.attrs['errors']}[/]")
        return 0

    return run
