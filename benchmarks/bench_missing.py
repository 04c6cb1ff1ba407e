"""Missing-modality robustness: mean PCC when 0 / 30 / 60 % of the test clips lose one modality.

For each fusion (default ``concat`` and the sequence fusion ``attention``), each modality dropout
rate in training (default 0.0 and 0.3) and each seed, the paper preset is trained on the default
simulated corpus (``emimic simulate``, seed 0; 1,200 train / 400 valid / 400 test clips) and scored on
the test clips against the simulator's held-out truth (``.truth/test_labels.csv``). At evaluation a
random share of the clips (the same clips for every model) is flagged as lacking one modality at a
time: their ``present`` flag is cleared, so the model takes them down the path of real missing data
(the learned missing embedding and tokens), never zeroed features. Clips that already lack the
modality stay without it. Cells are mean ± std over the seeds.

Run: ``python benchmarks/bench_missing.py [--seeds 0 1 2] [--fusions concat attention]
[--dropout 0.0 0.3] [--rates 0.3 0.6] [--encoder meanstd] [--work bench_data]`` (about 12 trainings
of 30-60 s each on 2 cores; finished runs under ``WORK/missing-runs`` are reused).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from bench_accuracy import CORPORA, corpus

TRUTH = Path(".truth") / "test_labels.csv"


def run_name(fusion: str, dropout: float, encoder: str, seed: int) -> str:
    return f"{fusion}-{encoder}-drop{dropout:g}-seed{seed}"


def hidden_clips(n: int, rate: float, seed: int) -> np.ndarray:
    """``(n,)`` bool: a random ``rate`` share of the clips, the same for every model of a seed."""
    hidden = np.zeros(n, dtype=bool)
    hidden[np.random.default_rng(seed).permutation(n)[: round(rate * n)]] = True
    return hidden


def robustness(run: Path, root: Path, rates: list[float], seed: int) -> dict[str, float]:
    """Mean test PCC with every modality present, and with each modality hidden at each rate."""
    from emimic.data import open_dataset
    from emimic.labels import EMOTIONS
    from emimic.metrics import mean_pcc
    from emimic.training.inference import external_labels, load_run, predict_ids

    trained = load_run(run)
    ds = open_dataset(root)
    store = ds.store(progress=False)
    ids = ds.split("test").index.to_numpy(dtype=np.int64)
    targets = external_labels(root / TRUTH, ids, split="test")[list(EMOTIONS)].to_numpy(dtype=np.float64)
    scores = {"all present": mean_pcc(predict_ids(trained, store, ids), targets)}
    for modality in trained.spec.modalities:
        for rate in rates:
            absent = {modality: hidden_clips(len(ids), rate, seed)}
            scores[f"{modality} -{rate:.0%}"] = mean_pcc(predict_ids(trained, store, ids, absent), targets)
    return scores


def train_run(root: Path, run: Path, fusion: str, dropout: float, encoder: str, seed: int) -> float:
    """Train (or reuse) one run; the seconds per epoch it took."""
    from emimic.training.run import train

    overrides = {"model.fusion": fusion, "model.modality_dropout": dropout, "model.encoder.name": encoder}
    result = train(root, run, seed=seed, overrides=overrides, progress=False)
    return result.seconds / max(result.epochs, 1)


def summarise(cells: dict[str, list[float]]) -> dict[str, str]:
    return {column: f"{np.mean(values):.3f} ± {np.std(values):.3f}" for column, values in cells.items()}


def markdown(rows: dict[tuple[str, float], dict[str, str]]) -> str:
    columns = list(next(iter(rows.values())))
    lines = ["| fusion | dropout | " + " | ".join(columns) + " |", "|---|---:|" + "---:|" * len(columns)]
    for (fusion, dropout), cells in rows.items():
        lines.append(f"| {fusion} | {dropout:g} | " + " | ".join(cells[c] for c in columns) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fusions", nargs="+", default=["concat", "attention"])
    parser.add_argument("--dropout", nargs="+", type=float, default=[0.0, 0.3], help="modality dropout rates")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--rates", nargs="+", type=float, default=[0.3, 0.6], help="shares of test clips hidden")
    parser.add_argument("--encoder", default="meanstd", help="branch encoder (attentive: fusions read frames)")
    parser.add_argument("--work", type=Path, default=Path("bench_data"), help="corpus and runs go here")
    parser.add_argument("--json", type=Path, default=None, help="also write the per-seed scores here")
    args = parser.parse_args()

    root = args.work / "acc-default"  # the corpus bench_accuracy.py simulates too
    corpus(root, CORPORA["default"])
    rows, raw = {}, {}
    for fusion in args.fusions:
        for dropout in args.dropout:
            cells: dict[str, list[float]] = {}
            for seed in args.seeds:
                run = args.work / "missing-runs" / run_name(fusion, dropout, args.encoder, seed)
                started = time.perf_counter()
                per_epoch = train_run(root, run, fusion, dropout, args.encoder, seed)
                scores = robustness(run, root, args.rates, seed)
                raw[run.name] = {**scores, "seconds per epoch": per_epoch}
                print(f"  {run.name:40s} all present {scores['all present']:.4f}  {per_epoch:.2f} s/epoch"
                      f"  ({time.perf_counter() - started:.0f} s)", flush=True)
                for column, value in scores.items():
                    cells.setdefault(column, []).append(value)
            rows[(fusion, dropout)] = summarise(cells)
    print(f"\nmean test PCC (mean ± std over seeds {args.seeds}), encoder {args.encoder}; '-30%': that share of"
          " the test clips lose the modality\n")
    print(markdown(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(raw, indent=2))


if __name__ == "__main__":
    main()
