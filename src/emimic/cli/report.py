"""The ``report`` command: an HTML report of one run, or a comparison of several."""

from __future__ import annotations

import argparse
from pathlib import Path

from emimic.cli.arguments import output_file
from emimic.cli.data import add_store_arg
from emimic.cli.registry import Handler, command, out
from emimic.outputs import RUN_REPORT


@command("report", "Write a self-contained HTML report (plots, CIs, provenance) of a run or a comparison of runs.",
         "emimic report runs/paper runs/no_vad runs/no_ema --out compare.html")
def report_command(parser: argparse.ArgumentParser) -> Handler:
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN",
                        help="run folder(s) written by `emimic train`, or a folder with runs inside at any depth"
                             " (ablate, cv, sweep)")
    parser.add_argument("--out", type=output_file, default=None,
                        help=f"HTML file to write, in an existing folder; it replaces an earlier report, never"
                             f" another file, and inside a run folder only as its RUN/{RUN_REPORT} (default:"
                             f" RUN/{RUN_REPORT} for one run, ./{RUN_REPORT} for several)")
    parser.add_argument("--data", type=Path, default=None,
                        help="dataset root (default: the one recorded in each run's metrics.json); it must hold"
                             " the data the runs were trained on")
    add_store_arg(parser)

    def run(args: argparse.Namespace) -> int:
        from emimic.report import write_report

        target = args.out or (args.runs[0] / RUN_REPORT if len(args.runs) == 1 else Path(RUN_REPORT))
        path = write_report(args.runs, target, data=args.data, store=args.store)
        out.print(f"report: {path}")
        return 0

    return run
