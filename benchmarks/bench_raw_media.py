"""Raw media only → extract → train → infer on unseen videos: does the model learn from real media?

Runs on a corpus written by ``benchmarks/raw_media.py`` (espeak-ng speech over a warped face):
extracts eGeMAPS, a Whisper transcript, its MiniLM embedding and FaceMesh geometry, trains the
default configuration (``--config``: another) for each seed, and scores ``emimic infer`` on the held-out unseen
videos against their labels. Prints the validation and unseen mean PCC per seed.

    python benchmarks/raw_media.py --out data/raw_media --clips 120 --unseen 16
    python benchmarks/bench_raw_media.py --data data/raw_media --runs runs/raw_media --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from emimic.defaults import DEFAULT_PRESET
from emimic.features import extract
from emimic.infer import CLIP_COLUMN, infer
from emimic.labels import EMOTIONS, read_split
from emimic.metrics import pcc_scores
from emimic.training import train

MODALITIES = "egemaps,whisper,text_emb,face"
FPS = 2.0


def unseen_score(run: Path, data: Path) -> float:
    """Mean PCC of ``emimic infer`` on ``data/unseen/*.mp4`` against ``data/unseen_labels.csv``."""
    # beside the run, not in it: no output goes inside a run folder a command reads
    result = infer(run, [data / "unseen"], out=run.with_name(f"{run.name}-unseen.csv"), progress=False)
    truth = read_split(data / "unseen_labels.csv", require_labels=True)
    preds = result.predictions.set_index(CLIP_COLUMN)
    ids = [int(name) for name in preds.index]
    scores = pcc_scores(preds[list(EMOTIONS)].to_numpy(np.float64), truth.loc[ids, list(EMOTIONS)].to_numpy(np.float64))
    return float(np.mean(list(scores.values())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--config", default=DEFAULT_PRESET)
    parser.add_argument("--workers", type=int, default=2, help="extraction processes")
    args = parser.parse_args()
    started = time.perf_counter()
    summary = extract(args.data, MODALITIES, fps=FPS, workers=args.workers, progress=False)
    print(summary.to_string(), f"\nextraction: {time.perf_counter() - started:.0f} s")
    valid, unseen = [], []
    for seed in args.seeds:
        run = args.runs / f"{args.config}-seed{seed}"
        result = train(args.data, run, config=args.config, seed=seed, progress=False)
        valid.append(result.valid.mean_pcc)
        unseen.append(unseen_score(run, args.data))
        print(f"seed {seed}: valid mean PCC {valid[-1]:.3f} ({result.valid.n_clips} clips), unseen {unseen[-1]:.3f}")
    print(f"{args.config}: valid {np.mean(valid):.3f} ± {np.std(valid, ddof=1) if len(valid) > 1 else 0:.3f},"
          f" unseen {np.mean(unseen):.3f} ± {np.std(unseen, ddof=1) if len(unseen) > 1 else 0:.3f}"
          f" (n={len(valid)} seeds)")


if __name__ == "__main__":
    main()
