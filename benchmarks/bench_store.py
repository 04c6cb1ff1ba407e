"""Loading speed and memory: per-clip pickles versus the packed FeatureStore.

Simulates a corpus (default 15,000 clips, seed 0) once, then measures in fresh
subprocesses, so that each peak RSS is its own:

* ``pickles``: read every per-clip file of every modality with emimic's safe loader and
  compute the pooled statistics (what a training script without a store does each run);
* ``pack``: the one-off cost of building the store;
* ``store``: read the split CSVs, open the store and iterate one epoch of pooled features of
  all clips in batches of 256 (what training reads);
* ``dataset``: the same through ``open_dataset(root).store()``, which first checks every source
  file's size and modification time to decide whether to re-pack;
* ``frames``: open the store and read every frame of every clip once (sequence encoders);
  its memory is reported as private (anonymous) RSS, since mapped file pages are page cache.

Run: ``python benchmarks/bench_store.py [--clips 15000] [--data bench_data/store15k]``.
Prints the times, peak RSS and the pickle/store speed-up (goal: at least 20x).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_pickles(root: Path) -> dict:
    from emimic.data.layout import discover
    from emimic.data.store import pool_frames
    from emimic.io import load_array

    started = time.perf_counter()
    clips = 0
    checksum = 0.0
    for source in discover(root).modalities.values():
        for path in source.files.values():
            checksum += float(pool_frames(load_array(path))[0])
            clips += 1
    return {"seconds": time.perf_counter() - started, "files": clips, "checksum": checksum}


def phase_pack(root: Path) -> dict:
    from emimic.data.store import pack

    result = pack(root, progress=False)
    return {"seconds": result.seconds}


def _pooled_epoch(store, ids: np.ndarray) -> float:
    checksum = 0.0
    for start in range(0, len(ids), 256):
        batch = ids[start : start + 256]
        for modality in store.modalities:
            checksum += float(store.pooled(modality, batch)[:, 0].sum())
    return checksum


def phase_store(root: Path) -> dict:
    from emimic.data.store import FeatureStore, default_store_dir
    from emimic.labels import read_split

    started = time.perf_counter()
    ids = np.concatenate([read_split(path, require_labels=False).index for path in sorted(root.glob("*_split.csv"))])
    store = FeatureStore.open(default_store_dir(root))
    checksum = _pooled_epoch(store, ids)
    return {"seconds": time.perf_counter() - started, "checksum": checksum}


def phase_dataset(root: Path) -> dict:
    from emimic.data import open_dataset

    started = time.perf_counter()
    dataset = open_dataset(root)
    store = dataset.store(progress=False)  # also checks every source file's size and mtime
    ids = np.concatenate([frame.index.to_numpy() for frame in dataset.splits.values()])
    checksum = _pooled_epoch(store, ids)
    return {"seconds": time.perf_counter() - started, "checksum": checksum}


def phase_frames(root: Path) -> dict:
    from emimic.data import open_dataset

    started = time.perf_counter()
    store = open_dataset(root).store(progress=False)
    frames, checksum = 0, 0.0
    for modality in store.modalities:
        for clip_id in store.ids(modality):
            clip = store.frames(modality, int(clip_id))
            frames += len(clip)
            checksum += float(clip[0, 0])
    # Mapped file pages count in RSS but are page cache, not the process's own memory.
    with open("/proc/self/status") as status:
        anon_kb = next(int(line.split()[1]) for line in status if line.startswith("RssAnon"))
    return {"seconds": time.perf_counter() - started, "frames": frames, "anon_mb": anon_kb / 1024}


PHASES = {
    "pickles": phase_pickles,
    "pack": phase_pack,
    "store": phase_store,
    "dataset": phase_dataset,
    "frames": phase_frames,
}


def run_phase(name: str, root: Path) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--phase", name, "--data", str(root)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=15000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=Path("bench_data/store15k"))
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        result = PHASES[args.phase](args.data)
        print(json.dumps({**result, "peak_rss_mb": _peak_rss_mb()}))
        return
    from emimic.data.simulate import SimulationSettings, simulate

    if not (args.data / "oracle.json").is_file():
        print(f"simulating {args.clips} clips (seed {args.seed}) into {args.data} ...", flush=True)
        simulate(args.data, SimulationSettings(clips=args.clips, seed=args.seed), progress=False)
    pickles = run_phase("pickles", args.data)
    packed = run_phase("pack", args.data)
    store = run_phase("store", args.data)
    dataset = run_phase("dataset", args.data)
    frames = run_phase("frames", args.data)
    print(f"corpus: {args.data} ({args.clips} clips, seed {args.seed}, {pickles['files']} per-clip files)")
    print(f"{'method':<40}{'seconds':>10}{'peak RSS MB':>14}")
    print(f"{'pickles, clip by clip':<40}{pickles['seconds']:>10.2f}{pickles['peak_rss_mb']:>14.0f}")
    print(f"{'store: open + one pooled epoch':<40}{store['seconds']:>10.2f}{store['peak_rss_mb']:>14.0f}")
    print(f"{'open_dataset (freshness check) + epoch':<40}{dataset['seconds']:>10.2f}{dataset['peak_rss_mb']:>14.0f}")
    print(f"{'store: open + every frame once':<40}{frames['seconds']:>10.2f}{frames['anon_mb']:>14.0f}  (private)")
    print(f"{'pack (one-off)':<40}{packed['seconds']:>10.2f}{packed['peak_rss_mb']:>14.0f}")
    print(f"speed-up pickles / store epoch: {pickles['seconds'] / store['seconds']:.0f}x (goal >= 20x)")


if __name__ == "__main__":
    main()
