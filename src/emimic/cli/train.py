"""Model commands: train, evaluate, predict, demo, configs. Thin: parse, call the library, print."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from emimic.cli.arguments import add_valid_fraction_arg, output_file, output_folder, positive_int, seed_value
from emimic.cli.data import add_store_arg
from emimic.cli.registry import Handler, command, console, out
from emimic.defaults import ACCELERATORS, DEFAULT_PRESET, PRECISIONS, SEED_MAX, STRATEGIES, preset_names
from emimic.errors import DataError
from emimic.outputs import check_output_file
from emimic.registry import ENCODERS, FUSIONS, LOSS_TERMS

if TYPE_CHECKING:
    from emimic.data import VidmimicDataset
    from emimic.training.jobs import TrainJob
    from emimic.training.run import TrainResult


def pcc_table(scores: dict[str, float], title: str, oracle: dict[str, float] | None = None,
              intervals: dict[str, list[float]] | None = None) -> Table:
    """Per-dimension PCC (with its 95 % interval, and the oracle ceiling with the fraction reached, when known)."""
    from emimic.labels import EMOTIONS  # pandas: not for --help
    from emimic.metrics import format_bound  # torch: not for --help

    table = Table(title=title, title_justify="left")
    table.add_column("emotion")
    table.add_column("PCC", justify="right")
    if intervals:
        table.add_column("95% CI", justify="right")
    if oracle:
        table.add_column("oracle", justify="right")
        table.add_column("fraction", justify="right")
    rows = [(e, scores[e], (oracle or {}).get(e)) for e in EMOTIONS]
    mean_oracle = sum(oracle[e] for e in EMOTIONS) / len(EMOTIONS) if oracle else None
    rows.append(("mean", sum(scores[e] for e in EMOTIONS) / len(EMOTIONS), mean_oracle))
    for i, (name, value, ceiling) in enumerate(rows):
        cells = [f"[bold]{name}[/]" if i == len(EMOTIONS) else name, f"{value:z.4f}"]
        if intervals:
            low, high = intervals[name]
            cells.append(f"{format_bound(low)} to {format_bound(high)}")
        if oracle:
            cells += [f"{ceiling:z.4f}", f"{value / ceiling:z.1%}" if ceiling else "-"]
        table.add_row(*cells, end_section=i == len(EMOTIONS) - 1)
    return table


def coverage_line(coverage: dict[str, float]) -> str:
    """Share of the scored clips that have each modality (absent ones are predicted from the rest)."""
    return "modality coverage: " + ", ".join(f"{m} {share:.0%}" for m, share in coverage.items())


def job_line(job: TrainJob, result: TrainResult) -> None:
    """One line per finished run of ``cv`` or ``ablate``, as it finishes (in finishing order with --jobs)."""
    how = "reused" if result.stored else f"trained in {result.seconds:.1f} s"
    console.print(f"{job.label}: valid mean PCC {result.valid.mean_pcc:z.4f} ({result.valid.n_clips} clips), best"
                  f" epoch {result.best_epoch}/{result.epochs}, {how}", highlight=False)


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", default=None,
        help=f"YAML file or preset name (default: {DEFAULT_PRESET}; presets: {', '.join(preset_names())})",
    )
    parser.add_argument(
        "--seed", type=seed_value, default=None, help=f"random seed in [0, {SEED_MAX}] (overrides the config's)"
    )
    parser.add_argument(
        "--max-epochs", type=positive_int, default=None, help="epoch limit, >= 1 (overrides the config's)"
    )


def _add_overwrite_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")


def _add_run_args(parser: argparse.ArgumentParser, *, split: str) -> None:
    # extend: `--run A --run B` is both runs, as `--run A B` is (argparse's default keeps the last silently)
    parser.add_argument("--run", type=Path, nargs="+", action="extend", required=True,
                        help="run folder written by `emimic train`; several runs or a folder of runs (`emimic cv`):"
                             " the mean of their predictions")
    parser.add_argument("--data", type=Path, required=True, help="dataset root")
    add_store_arg(parser)
    parser.add_argument("--split", default=split, help=f"split to use (default: {split})")


def dataset(args: argparse.Namespace) -> VidmimicDataset:
    from emimic.data import open_dataset

    return open_dataset(args.data, store_dir=args.store)


def _add_device_args(parser: argparse.ArgumentParser) -> None:
    """Where training runs (each overrides the config's ``train.*`` field of the same name)."""
    parser.add_argument("--accelerator", choices=ACCELERATORS, default=None,
                        help="cpu, gpu, or auto (a GPU when there is one); default: the config's (cpu)")
    parser.add_argument("--devices", type=positive_int, default=None,
                        help="processes per machine, one per device (CPU processes or GPUs); > 1 trains with DDP")
    parser.add_argument("--num-nodes", type=positive_int, default=None,
                        help="machines (under torchrun or SLURM, or Lightning's launcher with NODE_RANK set)")
    parser.add_argument("--strategy", choices=STRATEGIES, default=None,
                        help="Lightning strategy; auto is ddp when there is more than one process")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="32-true (default), or automatic mixed precision 16-mixed (GPU) / bf16-mixed")


def device_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The ``train.*`` overrides of the device flags that were given."""
    given = {"accelerator": args.accelerator, "devices": args.devices, "num_nodes": args.num_nodes,
             "strategy": args.strategy, "precision": args.precision}
    return {f"train.{key}": value for key, value in given.items() if value is not None}


@command("train", "Train a model on a dataset root into a run folder (resumes an interrupted run).",
         "emimic train --data data/sim --out runs/paper --config paper --seed 0   (2 processes: --devices 2;"
         " see docs/training.md for torchrun and SLURM)")
def train_command(parser: argparse.ArgumentParser) -> Handler:
    parser.add_argument("--data", type=Path, required=True, help="dataset root (Hume-Vidmimic2 layout)")
    parser.add_argument("--out", type=output_folder, required=True,
                        help="run folder to create; the same command again resumes it or shows its results")
    add_store_arg(parser)
    add_config_args(parser)
    add_valid_fraction_arg(parser)
    _add_device_args(parser)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a run made in --out with another config, seed or data")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")

    def run(args: argparse.Namespace) -> int:
        from emimic.data.holdout import held_out_words
        from emimic.training.run import train

        try:
            result = train(dataset(args), args.out, config=args.config, seed=args.seed, max_epochs=args.max_epochs,
                           valid_fraction=args.valid_fraction, overrides=device_overrides(args),
                           overwrite=args.overwrite, progress=not args.quiet)
        except DataError as exc:
            check = f"emimic validate {args.data}" + (f" --valid-fraction {args.valid_fraction}"
                                                     if args.valid_fraction else "")
            raise DataError(f"{str(exc).rstrip('.')}; run `{check}` to list every problem.") from None
        if result.rank != 0:  # under DDP every process returns here; one prints
            return 0
        if result.stored:
            out.print(f"{result.run} already finished; showing stored results", highlight=False)
        out.print(pcc_table(result.valid.pcc, f"Validation ({result.valid.n_clips} clips), best epoch"
                            f" {result.best_epoch}/{result.epochs}"))
        out.print(coverage_line(result.valid.coverage))
        if result.held_out_of:
            held_out = held_out_words(result.valid.n_clips, result.held_out_of, result.held_out_by)
            out.print(f"validation clips: {held_out}", highlight=False)
        out.print(f"run folder: {result.run}  ({result.seconds:.1f} s)")
        return 0

    return run


@command("evaluate", "Per-dimension PCC (with 95% bootstrap CIs) and mean PCC of a trained run on a labelled split.",
         "emimic evaluate --run runs/paper --data data/sim --split test --labels data/sim/.truth/test_labels.csv"
         " --predictions test_clips.csv")
def evaluate_command(parser: argparse.ArgumentParser) -> Handler:
    _add_run_args(parser, split="valid")
    parser.add_argument("--labels", type=Path, default=None,
                        help="labels CSV in the split format to score against (e.g. a simulated corpus's"
                             " .truth/test_labels.csv); default: the split's own labels")
    parser.add_argument("--json", type=output_file, default=None,
                        help="also write the scores to this JSON file (outside the dataset root and the --run folders)")
    parser.add_argument("--predictions", type=output_file, default=None,
                        help="also write per-clip predictions, labels and modality presence to this CSV (outside"
                             " the dataset root and the --run folders)")
    _add_overwrite_arg(parser)

    def run(args: argparse.Namespace) -> int:
        from emimic.io import write_text
        from emimic.metrics import pcc_intervals
        from emimic.training.inference import ensemble_members, evaluate
        from emimic.training.provenance import score_provenance

        for path in (args.json, args.predictions):
            if path is not None:
                check_output_file(path, dataset_root=args.data, runs=args.run, overwrite=args.overwrite)
        data = dataset(args)
        runs = ensemble_members(args.run)  # the run folders averaged, which --json names
        result = evaluate(runs, data, split=args.split, labels=args.labels, warn_featureless=True)
        intervals = pcc_intervals(*result.arrays())
        out.print(pcc_table(result.pcc, f"{result.split} ({result.n_clips} clips)", intervals=intervals))
        out.print(coverage_line(result.coverage))
        if args.json is not None:
            payload = {k: result.to_dict()[k] for k in ("split", "n_clips", "mean_pcc", "pcc")}
            payload |= {"pcc_ci95": intervals, "labels": str(args.labels) if args.labels else "split",
                        "provenance": score_provenance(runs, data, result)}
            write_text(args.json, json.dumps(payload, indent=2))
        if args.predictions is not None:
            result.write_clips(args.predictions)
            out.print(f"per-clip predictions: {args.predictions}")
        return 0

    return run


@command("predict", "Write a validated submission CSV for a split (Filename + six emotions, sorted, in [0, 1]).",
         "emimic predict --run runs/paper --data data/sim --split test --out submission.csv   (or --run runs/cv:"
         " the fold and seed ensemble)")
def predict_command(parser: argparse.ArgumentParser) -> Handler:
    _add_run_args(parser, split="test")
    parser.add_argument("--out", type=output_file, required=True,
                        help="submission CSV to write (outside the dataset root and the --run folders)")
    _add_overwrite_arg(parser)

    def run(args: argparse.Namespace) -> int:
        from emimic.training.inference import predict

        frame = predict(args.run, dataset(args), split=args.split, out=args.out, overwrite=args.overwrite,
                        warn_featureless=True)
        out.print(f"wrote {len(frame)} predictions to {args.out}")
        return 0

    return run


@command("configs", "List the packaged config presets and the registered encoders, fusions and loss terms.",
         "emimic configs")
def configs_command(parser: argparse.ArgumentParser) -> Handler:
    def run(args: argparse.Namespace) -> int:
        from emimic.config import list_presets

        table = Table(title="Config presets (emimic train --config NAME)", title_justify="left")
        table.add_column("preset")
        table.add_column("description")
        for name, description in list_presets().items():
            table.add_row(name, description)
        out.print(table)
        for label, registry in (("encoders", ENCODERS), ("fusions", FUSIONS), ("loss terms", LOSS_TERMS)):
            out.print(f"{label}: {', '.join(registry.names())}")
        return 0

    return run


def _oracle(data: Path, split: str) -> dict[str, float] | None:
    from emimic.data.simulate import load_oracle

    oracle = load_oracle(data)
    return None if oracle is None else oracle["oracle_pcc"][split]


@command("demo", "Simulate a corpus, validate, pack, train the default preset, evaluate, predict, write the report.",
         "emimic demo --out runs/demo --seed 0")
def demo_command(parser: argparse.ArgumentParser) -> Handler:
    parser.add_argument("--out", type=output_folder, default=Path("runs/demo"), help="demo folder (default: runs/demo)")
    add_config_args(parser)
    parser.add_argument("--clips", type=positive_int, default=None, help="corpus size (default: the simulator's, 2000)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the demo's run when --config, --seed, --max-epochs or --clips changed, and its"
                        " simulated corpus when --seed or --clips did")

    def run(args: argparse.Namespace) -> int:
        from emimic.cli.data import print_validation
        from emimic.config import load_config
        from emimic.data import open_dataset
        from emimic.data.simulate import SimulationSettings, existing_simulation, simulate
        from emimic.data.validate import validate
        from emimic.metrics import pcc_intervals
        from emimic.report import refuse_other_file, write_report
        from emimic.training.inference import evaluate, predict
        from emimic.training.run import train

        started = time.perf_counter()
        data, run_dir, report_file = args.out / "data", args.out / "run", args.out / "report.html"
        seed = 0 if args.seed is None else args.seed
        # what the last stages would refuse is refused before the first replaces a corpus
        config = None if args.config is None else load_config(args.config)
        refuse_other_file(report_file)
        settings = SimulationSettings(seed=seed, **({"clips": args.clips} if args.clips else {}))
        existing = existing_simulation(data, settings, overwrite=args.overwrite, offer_overwrite=True)
        replaced = f" anew: replacing the simulation there ({existing.differences})" if existing.differences else ""
        console.print(f"[bold]1/5 simulate[/] {data}{replaced}")  # a no-op when data holds this very simulation
        simulate(data, settings, overwrite=args.overwrite)
        console.print("[bold]2/5 validate[/]")
        report = validate(data)
        if not report.ok:
            print_validation(report)
            raise DataError(f"{data}: the simulated corpus did not validate.")
        console.print("[bold]3/5 pack[/]")
        ds = open_dataset(data)
        ds.store()
        console.print(f"[bold]4/5 train[/] {args.config or DEFAULT_PRESET} → {run_dir}")
        train(ds, run_dir, config=config, seed=seed, max_epochs=args.max_epochs, overwrite=args.overwrite)
        console.print("[bold]5/5 evaluate, predict and report[/]")
        result = evaluate(run_dir, ds, split="valid")
        submission = args.out / "submission.csv"
        # the demo's own file, re-made; a simulated corpus may leave a clip without any modality on purpose
        predict(run_dir, ds, split="test", out=submission, overwrite=True, warn_featureless=False)
        oracle = _oracle(data, "valid")
        out.print(pcc_table(result.pcc, f"Validation ({result.n_clips} clips)", oracle,
                            intervals=pcc_intervals(*result.arrays())))
        out.print(coverage_line(result.coverage))
        if oracle:
            ceiling = sum(oracle.values()) / len(oracle)
            out.print(f"mean PCC {result.mean_pcc:z.4f} = {result.mean_pcc / ceiling:z.1%} of the oracle"
                      f" {ceiling:z.4f}")
        out.print(f"submission: {submission}   run: {run_dir}   total {time.perf_counter() - started:.0f} s")
        out.print(f"report: {write_report([run_dir], report_file)}")
        return 0

    return run
