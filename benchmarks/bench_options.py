"""What the winners' training options add over the paper preset, measured with 3 seeds.

Each option is trained next to ``paper`` on the same corpus, splits and seeds; the table gives the
validation mean PCC and the mean PCC on the simulator's held-out test truth (mean ± standard
deviation over the seeds) and the paired difference to ``paper`` on the same seed.

* ``default`` corpus (the simulator's defaults, seed 0, what ``emimic demo`` uses): the EMA
  schedules ``train.ema.warmup`` none / linear against the paper's adaptive one, and per-emotion
  loss weights (``loss.emotion_weights``, Empathic Pain x2).
* ``votes`` corpus (defaults plus ``min_raters 2``, ``n_raters 10``, ``rating_levels 2``: each clip
  has 2-10 raters voting 0/1, labels are fractions k/N as in Hume-Vidmimic2): sample weighting by
  the square root of the inferred rater count (``loss.sample_weights: sqrt_raters``).

Run: ``python benchmarks/bench_options.py [--seeds 0 1 2] [--json bench_data/options.json]``
(about 20 trainings of ~15-40 s each on 2 cores; corpora are simulated once under ``bench_data/``).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

CORPORA: dict[str, dict] = {
    "default": {"seed": 0},
    "votes": {"seed": 0, "min_raters": 2, "n_raters": 10, "rating_levels": 2},
}
# corpus -> option name -> config overrides on top of the paper preset
OPTIONS: dict[str, dict[str, dict]] = {
    "default": {
        "paper": {},
        "ema warmup none": {"train.ema.warmup": "none"},
        "ema warmup linear 30": {"train.ema.warmup": "linear", "train.ema.warmup_steps": 30},
        "Empathic Pain x2": {"loss.emotion_weights": {"Empathic Pain": 2.0}},
    },
    "votes": {
        "paper": {},
        "sqrt raters": {"loss.sample_weights": "sqrt_raters"},
    },
}


def corpus(root: Path, settings: dict) -> dict:
    """Simulate ``root`` once (reused when its oracle exists); return the oracle report."""
    from emimic.data.simulate import ORACLE_FILE, SimulationSettings, simulate

    if not (root / ORACLE_FILE).exists():
        shutil.rmtree(root, ignore_errors=True)
        simulate(root, SimulationSettings(**settings), progress=False)
    return json.loads((root / ORACLE_FILE).read_text())


def score(root: Path, run: Path, overrides: dict, seed: int) -> tuple[float, float]:
    """Train (or reuse) one run; its validation mean PCC and its mean PCC on the held-out test truth."""
    from emimic.data import open_dataset
    from emimic.training.inference import evaluate
    from emimic.training.run import train

    ds = open_dataset(root)
    result = train(ds, run, config="paper", seed=seed, overrides=overrides, progress=False)
    test = evaluate(run, ds, split="test", labels=root / ".truth" / "test_labels.csv")
    return result.valid.mean_pcc, test.mean_pcc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--corpus", nargs="+", default=list(CORPORA), choices=list(CORPORA))
    parser.add_argument("--work", type=Path, default=Path("bench_data/options"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    for name in args.corpus:
        root = args.work / name / "data"
        oracle = corpus(root, CORPORA[name])
        print(f"\n{name} corpus: oracle valid {oracle['oracle_mean_pcc']['valid']:.4f},"
              f" test {oracle['oracle_mean_pcc']['test']:.4f}")
        print(f"{'option':<24} {'valid mean PCC':>18} {'test mean PCC':>18} {'valid diff':>18} {'test diff':>18}")
        table = results.setdefault(name, {})
        for option, overrides in OPTIONS[name].items():
            slug = option.replace(" ", "_")
            pairs = [score(root, args.work / name / "runs" / f"{slug}-s{seed}", overrides, seed) for seed in args.seeds]
            table[option] = {"valid": [v for v, _ in pairs], "test": [t for _, t in pairs]}
            cells = [_spread(table[option][k]) for k in ("valid", "test")]
            cells += [_spread(np.subtract(table[option][k], table["paper"][k])) for k in ("valid", "test")]
            print(f"{option:<24} " + " ".join(f"{c:>18}" for c in cells), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


def _spread(values) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():+.4f} ± {values.std(ddof=1):.4f}" if len(values) > 1 else f"{values.mean():+.4f}"


if __name__ == "__main__":
    main()
