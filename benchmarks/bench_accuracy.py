"""Accuracy of the reference method against baselines, on the same simulated corpus and splits.

For each corpus (the default simulator settings, seed 0, which ``emimic demo`` uses too, and a
second corpus with other widths, lengths, noise and missing rates), it trains and scores on the
validation split:

* ``paper``: the reference method (configs/paper.yaml), and ``paper without VAD prior``;
* ``ridge mean``: ridge regression on the per-modality mean-pooled features;
* ``ridge rich``: ridge regression on mean, std, min and max per modality (a strong reference);
* ``only <modality>``: the paper config restricted to one modality.

Ridge inputs are standardised on train; a clip lacking a modality gets the train mean (0 after
scaling) plus a presence flag; the ridge penalty is chosen by leave-one-out on train (RidgeCV).
Every row is stated as mean PCC and as a fraction of the simulator's oracle. The run ends with
the acceptance checks: paper >= 0.85 x oracle, paper >= ridge mean + 0.05, paper > ridge rich.

Run: ``python benchmarks/bench_accuracy.py [--corpus default second] [--json bench_data/accuracy.json]``
(about a minute per corpus on 2 cores; corpora are simulated once under ``bench_data/``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

# The second corpus changes every axis the issue names: widths, lengths, noise, missing rates.
CORPORA: dict[str, dict] = {
    "default": {"seed": 0},
    "second": {
        "seed": 1,
        "face_dim": 768,
        "audio_dim": 1024,
        "text_dim": 256,
        "face_fps": 12.0,
        "min_duration": 1.0,
        "max_duration": 2.5,
        "feature_noise": 0.8,
        "missing_face": 0.15,
        "missing_audio": 0.2,
        "missing_text": 0.2,
    },
}


def corpus(root: Path, settings: dict) -> dict:
    """Simulate ``root`` once (reused when its oracle exists); return the oracle report."""
    from emimic.data.simulate import ORACLE_FILE, SimulationSettings, simulate

    if not (root / ORACLE_FILE).exists():
        shutil.rmtree(root, ignore_errors=True)
        simulate(root, SimulationSettings(**settings), progress=False)
    return json.loads((root / ORACLE_FILE).read_text())


def ridge_features(store, ids: np.ndarray, train_ids: np.ndarray, n_stats: int) -> tuple[np.ndarray, np.ndarray]:
    """Pooled blocks (first ``n_stats`` of mean/std/min/max) of every modality + presence flags."""
    blocks_train, blocks = [], []
    for modality in store.modalities:
        width = n_stats * store.dim(modality)
        for target, chosen in ((blocks_train, train_ids), (blocks, ids)):
            x = store.pooled(modality, chosen)[:, :width].astype(np.float64)
            present = store.present(modality, chosen)
            target.append((x, present))
    out_train, out = [], []
    for (xt, pt), (x, p) in zip(blocks_train, blocks, strict=True):
        mean, std = xt[pt].mean(0), xt[pt].std(0) + 1e-6
        for target, values, present in ((out_train, xt, pt), (out, x, p)):
            scaled = np.where(present[:, None], (values - mean) / std, 0.0)
            target += [scaled, present[:, None].astype(np.float64)]
    return np.hstack(out_train), np.hstack(out)


def ridge_score(ds, n_stats: int) -> dict[str, float]:
    from sklearn.linear_model import RidgeCV

    from emimic.labels import EMOTIONS
    from emimic.metrics import pcc_scores

    store = ds.store(progress=False)
    train, valid = ds.splits["train"], ds.splits["valid"]
    x_train, x_valid = ridge_features(store, valid.index.to_numpy(), train.index.to_numpy(), n_stats)
    model = RidgeCV(alphas=np.logspace(-1, 5, 13)).fit(x_train, train[list(EMOTIONS)].to_numpy())
    return pcc_scores(model.predict(x_valid), valid[list(EMOTIONS)].to_numpy())


def paper_score(ds, run: Path, overrides: dict, seed: int) -> dict[str, float]:
    from emimic.training.run import train

    shutil.rmtree(run, ignore_errors=True)
    return train(ds, run, config="paper", seed=seed, overrides=overrides, progress=False).valid.pcc


def bench_corpus(name: str, settings: dict, work: Path, seed: int) -> dict:
    from emimic.data import open_dataset

    oracle = corpus(work / f"acc-{name}", settings)
    ceiling = float(oracle["oracle_mean_pcc"]["valid"])
    ds = open_dataset(work / f"acc-{name}")
    ds.store(progress=False)
    rows: dict[str, dict[str, float]] = {}
    runs = work / f"acc-{name}-runs"
    timings: dict[str, float] = {}
    jobs = {
        "paper": lambda: paper_score(ds, runs / "paper", {}, seed),
        "paper without VAD prior": lambda: paper_score(ds, runs / "novad", {"model.vad.enabled": False}, seed),
        "ridge mean": lambda: ridge_score(ds, 1),
        "ridge rich (mean, std, min, max)": lambda: ridge_score(ds, 4),
    }
    for modality in ds.modalities:
        jobs[f"only {modality}"] = (
            lambda m=modality: paper_score(ds, runs / f"only-{m}", {"model.modalities": [m]}, seed)
        )
    for label, job in jobs.items():
        started = time.perf_counter()
        scores = job()
        timings[label] = time.perf_counter() - started
        rows[label] = {"mean_pcc": float(np.mean(list(scores.values()))), **scores}
        print(f"  {name:8s} {label:34s} {rows[label]['mean_pcc']:.4f}  ({timings[label]:.0f} s)", flush=True)
    paper = rows["paper"]["mean_pcc"]
    checks = {
        "paper >= 0.85 x oracle": paper >= 0.85 * ceiling,
        "paper >= ridge mean + 0.05": paper >= rows["ridge mean"]["mean_pcc"] + 0.05,
        "paper > ridge rich": paper > rows["ridge rich (mean, std, min, max)"]["mean_pcc"],
    }
    return {"settings": settings, "oracle_valid": ceiling, "rows": rows, "seconds": timings, "checks": checks}


def report(results: dict) -> None:
    for name, result in results.items():
        ceiling = result["oracle_valid"]
        print(f"\n{name} corpus: oracle mean PCC (valid) {ceiling:.4f}")
        print(f"  {'model':34s} {'mean PCC':>9s} {'of oracle':>10s}")
        for label, row in result["rows"].items():
            print(f"  {label:34s} {row['mean_pcc']:9.4f} {row['mean_pcc'] / ceiling:10.1%}")
        for check, ok in result["checks"].items():
            print(f"  [{'PASS' if ok else 'FAIL'}] {check}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", nargs="+", choices=sorted(CORPORA), default=list(CORPORA))
    parser.add_argument("--work", type=Path, default=Path("bench_data"), help="corpora and runs go here")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    results = {name: bench_corpus(name, CORPORA[name], args.work, args.seed) for name in args.corpus}
    report(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
