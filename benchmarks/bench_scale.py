"""Vidmimic scale on CPU: pack, store size, training memory and speed, 5-fold CV, DDP on 2 processes.

Writes a corpus of ``--clips`` clips (default 15,000; 60 % train, 20 % valid, 20 % test) in the
Vidmimic layout straight from numpy, without the simulator (too slow at this size): per clip a
``wav2vec2/<id>.npy`` of (T, 768) frames at 50 frames/s for 2-6 s, a ``vit/<id>.npy`` of (T, 384) frames
at 5 frames/s and a ``text_emb/<id>.npy`` clip vector of 768. Six hidden intensities per clip drive
the labels and, through fixed random directions, the mean of every modality's frames, so training
learns. Sources are written as float16 (half the disk); everything after that is emimic's real path:

* ``pack``: ``emimic.data.store.pack`` into a float32 and a float16 store: seconds and size on disk;
* ``train``: ``emimic.training.run.train`` of the paper preset on the float16 store, in a child process
  with ``--threads`` torch threads: seconds per epoch (median), peak RSS (``ru_maxrss``: includes the
  memory-mapped frame pages the process touched, which are page cache) and peak private memory
  (``RssAnon``, sampled every epoch; goal <= 2 GB), for the pooled encoder (meanstd) and a sequence
  encoder (attentive, frames cut into ``model.encoder.max_frames`` chunk means: 8 by default);
* ``cv``: ``emimic cv --folds 5 --max-epochs E`` end to end (pooled encoder);
* ``ddp``: the pooled training with ``--devices 1`` and ``--devices 2`` (DDP, gloo, one torch thread per
  process, ``optim.batch_size`` halved so one step still sees 256 clips): seconds per epoch and speed-up.

Run: ``python benchmarks/bench_scale.py [--clips 15000] [--data bench_data/scale15k] [--epochs 3]
[--json bench_data/scale.json]``; ``--keep`` keeps the corpus (several GB at 15k clips).
Prints one table; the load average of the machine is printed with it (the figures depend on it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

AUDIO_DIM, AUDIO_FPS, FACE_DIM, FACE_FPS, TEXT_DIM = 768, 50, 384, 5, 768
SPLITS = (("train", 0.6), ("valid", 0.2), ("test", 0.2))


def write_corpus(root: Path, clips: int, seed: int) -> None:
    """The corpus described in the module docstring; labels in [0, 1] driven by six hidden intensities."""
    from emimic.labels import EMOTIONS, clip_stem

    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(clips, len(EMOTIONS))).astype(np.float32)
    labels = 1.0 / (1.0 + np.exp(-(hidden + rng.normal(scale=0.5, size=hidden.shape))))
    directions = {name: rng.normal(scale=0.5, size=(len(EMOTIONS), dim)).astype(np.float32)
                  for name, dim in (("wav2vec2", AUDIO_DIM), ("vit", FACE_DIM), ("text_emb", TEXT_DIM))}
    for name in directions:
        (root / name).mkdir(parents=True, exist_ok=True)
    ids = np.arange(1, clips + 1)
    seconds = rng.uniform(2.0, 6.0, size=clips)
    for k, clip_id in enumerate(ids):
        stem = clip_stem(int(clip_id))
        for name, fps in (("wav2vec2", AUDIO_FPS), ("vit", FACE_FPS)):
            dim = directions[name].shape[1]
            frames = rng.standard_normal((max(int(seconds[k] * fps), 1), dim), dtype=np.float32)
            np.save(root / name / f"{stem}.npy", (frames + hidden[k] @ directions[name]).astype(np.float16))
        text = rng.standard_normal(TEXT_DIM, dtype=np.float32) + hidden[k] @ directions["text_emb"]
        np.save(root / "text_emb" / f"{stem}.npy", text.astype(np.float16))
    import pandas as pd

    start = 0
    for split, share in SPLITS:
        stop = clips if split == "test" else start + int(share * clips)
        frame = pd.DataFrame(labels[start:stop], columns=list(EMOTIONS))
        frame.insert(0, "Filename", ids[start:stop])
        frame.to_csv(root / f"{split}_split.csv", index=False, float_format="%.4f")
        start = stop


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _private_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssAnon")) / 1024


# ---- phases: each runs in a child process and prints one JSON line -------------------------------------------

def phase_pack(root: Path, dtype: str) -> dict:
    from emimic.data.store import pack

    store = root / ".emimic" / f"store-{dtype}"
    shutil.rmtree(store, ignore_errors=True)
    result = pack(root, dtype=dtype, store_dir=store, progress=False)
    return {"seconds": result.seconds, "bytes": folder_bytes(store)}


def phase_train(root: Path, args: argparse.Namespace) -> dict | None:
    import lightning.pytorch as pl
    import torch

    from emimic.data import open_dataset
    from emimic.training.run import train

    class Probe(pl.Callback):
        """Wall time of every train epoch (validation included) and the largest private memory seen."""

        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.private_mb = 0.0

        def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            self.started = time.perf_counter()

        def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            self.seconds.append(time.perf_counter() - self.started)
            self.private_mb = max(self.private_mb, _private_mb())

    torch.set_num_threads(args.threads)
    probe = Probe()
    ds = open_dataset(root, store_dir=root / ".emimic" / "store-float16")
    out = Path(args.out)
    overrides = {"model.encoder.name": args.encoder, "train.patience": 10_000, "train.threads": args.threads,
                 "train.devices": args.devices, "optim.batch_size": 256 // args.devices}
    result = train(ds, out, seed=0, max_epochs=args.epochs, overrides=overrides, overwrite=True, progress=False,
                   callbacks=[probe])
    if result.rank != 0:
        return None
    return {"epoch_seconds": probe.seconds, "median_epoch_seconds": statistics.median(probe.seconds),
            "mean_pcc": result.valid.mean_pcc, "private_mb": max(probe.private_mb, _private_mb())}


def run_phase(script_args: list[str]) -> dict:
    """Run a phase in a child process: its peak RSS is its own."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, *script_args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"phase {script_args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return {**json.loads(lines[-1]), "wall_seconds": time.perf_counter() - started}


def phase_main(args: argparse.Namespace) -> None:
    if args.phase == "pack":
        result = phase_pack(args.data, args.dtype)
    else:
        result = phase_train(args.data, args)
        if result is None:  # a DDP process other than rank 0
            return
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({**result, "peak_rss_mb": peak}), flush=True)


def cv_seconds(root: Path, out: Path, epochs: int) -> tuple[float, float]:
    """Wall seconds and OOF mean PCC of ``emimic cv --folds 5`` on the float16 store."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "emimic", "cv", "--data", str(root), "--store", str(root / ".emimic" /
               "store-float16"), "--out", str(out), "--folds", "5", "--max-epochs", str(epochs), "--quiet"]
    subprocess.run(command, check=True, capture_output=True, text=True)
    summary = json.loads((out / "summary.json").read_text())
    return time.perf_counter() - started, summary["oof_mean_pcc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=15_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=None, help="corpus folder (default: bench_data/scale<clips>)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of every training measured")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of a one-process training")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the corpus and runs (removed otherwise)")
    for hidden in ("--phase", "--dtype", "--encoder", "--out"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.data = args.data or Path(f"bench_data/scale{args.clips}")
    if args.phase:
        phase_main(args)
        return

    figures: dict[str, object] = {"clips": args.clips, "load_average_before": os.getloadavg()}
    started = time.perf_counter()
    if not (args.data / "test_split.csv").exists():
        write_corpus(args.data, args.clips, args.seed)
    figures["write_seconds"] = time.perf_counter() - started
    figures["source_bytes"] = sum(folder_bytes(args.data / m) for m in ("wav2vec2", "vit", "text_emb"))
    common = ["--data", str(args.data), "--epochs", str(args.epochs)]
    for dtype in ("float32", "float16"):
        figures[f"pack_{dtype}"] = run_phase(["--phase", "pack", "--dtype", dtype, *common])
    shutil.rmtree(args.data / ".emimic" / "store-float32")  # measured; training reads the float16 store
    runs = args.data.parent / f"{args.data.name}-runs"
    for encoder in ("meanstd", "attentive"):
        figures[f"train_{encoder}"] = run_phase(["--phase", "train", "--encoder", encoder, "--threads",
                                                 str(args.threads), "--out", str(runs / encoder), *common])
    for devices in (1, 2):
        figures[f"ddp_{devices}"] = run_phase(["--phase", "train", "--encoder", "meanstd", "--threads", "1",
                                               "--devices", str(devices), "--out", str(runs / f"ddp{devices}"),
                                               *common])
    figures["cv_seconds"], figures["cv_oof_mean_pcc"] = cv_seconds(args.data, runs / "cv", args.epochs)
    figures["load_average_after"] = os.getloadavg()
    report(figures, args.epochs)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    if not args.keep:
        shutil.rmtree(runs, ignore_errors=True)
        shutil.rmtree(args.data, ignore_errors=True)


def report(figures: dict, epochs: int) -> None:
    gb = 1024**3
    print(f"corpus: {figures['clips']} clips, sources {figures['source_bytes'] / gb:.2f} GB (float16 .npy),"
          f" written in {figures['write_seconds']:.0f} s; load average {figures['load_average_before'][0]:.1f}"
          f" before, {figures['load_average_after'][0]:.1f} after (2 cores)")
    for dtype in ("float32", "float16"):
        pack = figures[f"pack_{dtype}"]
        print(f"pack {dtype}: {pack['seconds']:.0f} s, store {pack['bytes'] / gb:.2f} GB, peak RSS"
              f" {pack['peak_rss_mb']:.0f} MB")
    for encoder in ("meanstd", "attentive"):
        run = figures[f"train_{encoder}"]
        print(f"train {encoder} ({epochs} epochs): {run['median_epoch_seconds']:.1f} s/epoch, val mean PCC"
              f" {run['mean_pcc']:.3f}, peak RSS {run['peak_rss_mb']:.0f} MB, private {run['private_mb']:.0f} MB")
    one, two = figures["ddp_1"], figures["ddp_2"]
    print(f"DDP pooled: 1 process {one['median_epoch_seconds']:.1f} s/epoch (PCC {one['mean_pcc']:.3f}),"
          f" 2 processes {two['median_epoch_seconds']:.1f} s/epoch (PCC {two['mean_pcc']:.3f}): speed-up"
          f" {one['median_epoch_seconds'] / two['median_epoch_seconds']:.2f}x")
    print(f"emimic cv --folds 5 --max-epochs {epochs}: {figures['cv_seconds']:.0f} s end to end, OOF mean PCC"
          f" {figures['cv_oof_mean_pcc']:.3f}")


if __name__ == "__main__":
    main()
