"""Accuracy and speed of every encoder preset against the pooled default, on three simulated corpora.

For each corpus and each encoder preset (``paper``: mean/std pooling, ``rich_stats``, ``attentive``,
``gru``, ``transformer``) it trains ``--seeds`` runs for exactly ``--epochs`` epochs (early stopping
off) and prints the validation mean PCC (mean ± std over seeds) and the seconds per epoch
(validation included), with the ratio to the ``paper`` run of the same seed, run just before it (the
presets of a seed run back to back, so a change of load on a shared machine hits both). ``--rounds N``
also builds every preset's model once and times N rounds of one model epoch each, alternating (see
:func:`interleaved_epochs`): the steadier ratio when the machine is busy. The load average is printed.

Corpora (``--clips`` clips each unless ``--clips-for`` says otherwise, 60/20/20 train/valid/test, simulator seed 0):

* ``default``: the issue's corpus, clips of 0.8-3.2 s (vit 384-d at 20 frames/s: 16-64 frames, wav2vec2 768-d
  at 50 frames/s: 40-160), the simulator's other defaults;
* ``long``: clips of 1.5-4 s (vit 12-32, wav2vec2 75-200 frames) whose expressive segments cover only
  8-20 % of the clip, so the signal is strongly time-localised;
* ``w2v``: wav2vec2-length sequences, 50 frames/s over 2-6 s (100-300 frames; vit 16-48).

Run: ``python benchmarks/bench_encoders.py --clips 4000 --clips-for long=1500 w2v=1500 --seeds 0 1 2 --epochs 8
--rounds 3 [--json out.json]`` (``--seeds`` with no value: the timing rounds only);
``--encoders`` and ``--corpus`` pick subsets (``--clips 300 --epochs 3 --seeds 0`` runs in a few minutes).
Corpora are simulated once under ``--work`` and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import EpochTimer

CORPORA: dict[str, dict] = {
    "default": {"min_duration": 0.8, "max_duration": 3.2, "face_fps": 20.0},
    "long": {"min_duration": 1.5, "max_duration": 4.0, "min_segment": 0.08, "max_segment": 0.2},
    "w2v": {"min_duration": 2.0, "max_duration": 6.0, "audio_fps": 50.0},
}
ENCODERS: tuple[str, ...] = ("paper", "rich_stats", "attentive", "gru", "transformer")
BASELINE = "paper"


def corpus(work: Path, name: str, clips: int) -> Path:
    """Simulate the corpus ``name`` with ``clips`` clips once (reused when finished) and pack it."""
    from emimic.data import open_dataset
    from emimic.data.simulate import ORACLE_FILE, SimulationSettings, simulate

    root = work / f"enc-{name}-{clips}"
    if not (root / ORACLE_FILE).exists():
        shutil.rmtree(root, ignore_errors=True)
        started = time.perf_counter()
        simulate(root, SimulationSettings(clips=clips, seed=0, **CORPORA[name]), progress=False)
        print(f"simulated {name} ({clips} clips) in {time.perf_counter() - started:.0f} s", flush=True)
    open_dataset(root).store(progress=False)
    return root


def run_once(root: Path, preset: str, seed: int, epochs: int, work: Path) -> dict:
    from emimic.data import open_dataset
    from emimic.training.run import train

    run = work / "enc-runs" / f"{root.name}-{preset}-{seed}"
    shutil.rmtree(run, ignore_errors=True)
    timer = EpochTimer()
    started = time.perf_counter()
    result = train(open_dataset(root), run, config=preset, seed=seed, max_epochs=epochs,
                   overrides={"train.patience": epochs}, progress=False, callbacks=[timer])
    return {"mean_pcc": result.valid.mean_pcc, "seconds_per_epoch": float(np.median(timer.seconds)),
            "seconds_total": time.perf_counter() - started}


def bench_corpus(root: Path, presets: list[str], seeds: list[int], epochs: int, work: Path) -> dict:
    """Every preset for every seed, interleaved (seed by seed, the pooled run first), so the pooled epoch each
    sequence epoch is divided by was measured minutes, not an hour, away: load from other work hits both."""
    rows: dict[str, list[dict]] = {preset: [] for preset in presets}
    for seed in seeds:
        for preset in presets:
            rows[preset].append(run_once(root, preset, seed, epochs, work))
            last = rows[preset][-1]
            last["x_pooled"] = last["seconds_per_epoch"] / rows[BASELINE][-1]["seconds_per_epoch"]
            print(f"  {root.name:18s} {preset:12s} seed {seed}: PCC {last['mean_pcc']:.4f}"
                  f"  {last['seconds_per_epoch']:.2f} s/epoch  x{last['x_pooled']:.1f}  ({last['seconds_total']:.0f} s)"
                  f"  load {os.getloadavg()[0]:.1f}", flush=True)
    return rows


class ModelEpoch:
    """One preset's model and loaders on a corpus, built once, whose :meth:`run` is one epoch of model work:
    every training batch forward, MSE, backward and an AdamW step, then the validation batches forward.
    Lightning's per-epoch costs (checkpoint, metrics, callbacks) are left out, which only makes a
    sequence encoder's ratio to the pooled epoch larger."""

    def __init__(self, root: Path, preset: str):
        from emimic.config import load_config
        from emimic.data import feature_statistics, open_dataset
        from emimic.labels import EMOTIONS
        from emimic.models import build_model, resolve_spec
        from emimic.models.ensemble import resolve_members
        from emimic.training.inference import clip_loader, eval_batch_size

        started = time.perf_counter()
        ds = open_dataset(root)
        self.cfg = resolve_members(load_config(preset), len(ds.splits["train"]))
        store = ds.store(progress=False)
        spec = resolve_spec(self.cfg.model, {m: store.dim(m) for m in store.modalities},
                            {m: store.feature_names(m) for m in store.modalities})
        torch.manual_seed(0)
        self.model = build_model(spec, self.cfg.model)
        split = {name: (ds.splits[name].index.to_numpy(), ds.splits[name][list(EMOTIONS)].to_numpy(np.float32))
                 for name in ("train", "valid")}
        self.model.set_statistics(feature_statistics(store, split["train"][0], spec.inputs), split["train"][1])
        batch = self.cfg.optim.batch_size
        frames = self.cfg.model.encoder.max_frames
        self.train = clip_loader(store, spec, self.model, *split["train"], batch_size=batch, max_frames=frames,
                                 seed=0, drop_last=True)
        self.valid = clip_loader(store, spec, self.model, *split["valid"], max_frames=frames,
                                 batch_size=eval_batch_size(self.model, batch))
        self.optimiser = torch.optim.AdamW(self.model.parameters(), lr=self.cfg.optim.lr)
        self.setup_seconds = time.perf_counter() - started

    def run(self) -> float:
        from emimic.training.inference import torch_threads

        started = time.perf_counter()
        with torch_threads(self.cfg.train.threads):
            self.model.train()
            for batch in self.train:
                loss = torch.nn.functional.mse_loss(self.model(batch["inputs"]).pred, batch["targets"])
                self.optimiser.zero_grad()
                loss.backward()
                self.optimiser.step()
            self.model.eval()
            with torch.no_grad():
                for batch in self.valid:
                    self.model(batch["inputs"])
        return time.perf_counter() - started


def interleaved_epochs(root: Path, presets: list[str], rounds: int) -> dict:
    """Epoch seconds of every preset's model, the presets' epochs alternating round after round, so a change
    of load hits all of them alike; per preset the median seconds and the median of its per-round ratio to
    the pooled epoch of the same round."""
    epochs = {preset: ModelEpoch(root, preset) for preset in presets}
    seconds: dict[str, list[float]] = {preset: [] for preset in presets}
    for _ in range(rounds):
        for preset, epoch in epochs.items():
            seconds[preset].append(epoch.run())
    base = np.array(seconds[BASELINE])
    return {preset: {"seconds": float(np.median(s)), "x_pooled": float(np.median(np.array(s) / base)),
                     "setup_seconds": epochs[preset].setup_seconds} for preset, s in seconds.items()}


def summary(runs: dict[str, list[dict]]) -> list[str]:
    lines = [f"  {'encoder':12s} {'mean PCC':>17s} {'s/epoch':>8s} {'x pooled':>9s} {'total s':>8s}"]
    for preset, seeds in runs.items():
        pcc = np.array([r["mean_pcc"] for r in seeds])
        epoch = float(np.mean([r["seconds_per_epoch"] for r in seeds]))
        ratio = float(np.mean([r["x_pooled"] for r in seeds]))
        total = float(np.mean([r["seconds_total"] for r in seeds]))
        lines.append(f"  {preset:12s} {pcc.mean():8.4f} ± {pcc.std():.4f} {epoch:8.2f} {ratio:9.1f} {total:8.0f}")
    return lines


def fmt_load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{value:.1f}" for value in load)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=4000, help="clips per simulated corpus")
    parser.add_argument("--clips-for", nargs="*", default=[], metavar="CORPUS=CLIPS",
                        help="a different size for some corpora, e.g. long=1500 w2v=1500")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="training seeds (none: timing only)")
    parser.add_argument("--epochs", type=int, default=12, help="epochs per run (early stopping off)")
    parser.add_argument("--encoders", nargs="+", default=list(ENCODERS), help="presets to compare")
    parser.add_argument("--corpus", nargs="+", choices=sorted(CORPORA), default=list(CORPORA))
    parser.add_argument("--rounds", type=int, default=0,
                        help="also time this many rounds of alternating model epochs per corpus (0: none)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads outside the model")
    parser.add_argument("--work", type=Path, default=Path("bench_data"), help="corpora and runs go here")
    parser.add_argument("--json", type=Path, default=None, help="also write every run's figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from emimic.data.simulate import ORACLE_FILE
    presets = [BASELINE, *[p for p in args.encoders if p != BASELINE]]
    results = {}
    load_before = os.getloadavg()
    sizes = {name: args.clips for name in args.corpus} | {k: int(v) for k, v in (a.split("=") for a in args.clips_for)}
    for name in args.corpus:
        root = corpus(args.work, name, sizes[name])
        results[name] = {"oracle_valid": json.loads((root / ORACLE_FILE).read_text())["oracle_mean_pcc"]["valid"]}
        if args.seeds:
            results[name]["runs"] = bench_corpus(root, presets, args.seeds, args.epochs, args.work)
        if args.rounds:
            results[name]["interleaved"] = interleaved_epochs(root, presets, args.rounds)
    load = {"before": load_before, "after": os.getloadavg()}
    print(f"\nseeds {args.seeds}, {args.epochs} epochs, {args.rounds} timing rounds; s/epoch includes validation,"
          f" x pooled is the mean over seeds of the ratio to the {BASELINE} run of the same seed, run just before;"
          f" load average (1, 5, 15 min) before {fmt_load(load['before'])}, after {fmt_load(load['after'])}")
    for name, result in results.items():
        print(f"\n{name} corpus, {sizes[name]} clips (oracle valid mean PCC {result['oracle_valid']:.4f})")
        if "runs" in result:
            print("\n".join(summary(result["runs"])))
        for preset, timing in result.get("interleaved", {}).items():
            print(f"  interleaved {preset:12s} {timing['seconds']:6.2f} s/epoch  x{timing['x_pooled']:.1f}"
                  f"  (built in {timing['setup_seconds']:.1f} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"args": {k: str(v) for k, v in vars(args).items()}, "load_average": load, **results}
        args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
