"""The ridge baseline of the benchmarks: ``emimic report``'s ridge regression on pooled statistics.

One model (RidgeCV on the standardised mean, std, min and max of every modality plus presence flags,
fitted on train) defined once in :func:`emimic.report.ridge_baseline`; this module only gives the
benchmarks its mean and a command line.

    python benchmarks/ridge.py --data data/sim
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from emimic.data import VidmimicDataset, open_dataset
from emimic.labels import EMOTIONS
from emimic.report import ridge_baseline


def ridge_mean_pcc(dataset: VidmimicDataset, split: str = "valid") -> float:
    """Validation (or ``split``) mean PCC of the ridge baseline."""
    return float(np.mean(list(ridge_baseline(dataset, split).values())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a dataset root with train and valid splits")
    parser.add_argument("--split", default="valid")
    args = parser.parse_args()
    scores = ridge_baseline(open_dataset(args.data), args.split)
    for emotion in EMOTIONS:
        print(f"{emotion:14s} {scores[emotion]:.4f}")
    print(f"{'mean':14s} {np.mean(list(scores.values())):.4f}")


if __name__ == "__main__":
    main()
