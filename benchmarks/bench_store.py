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
  its memory is reported as private (anonymous) RSS, since mapped file pages are page cache;
* ``pool``: the pooled statistics ``pack`` computes per clip (``pool_frames``), against the former way (a
  float64 copy of the clip, then numpy's ``std``), on the same clips of the widest modality in one process
  that imported what ``pack`` imports (pandas among it): CPU ms per clip, page faults per clip and the ratio.

Loading phases run twice: with a cold page cache (dropped first, as a first load after a
reboot or on a network disk would see; needs root) and warm (right after).

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
    import shutil

    from emimic.data.store import default_store_dir, pack

    shutil.rmtree(default_store_dir(root), ignore_errors=True)  # time a full pack, not a no-op
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


POOL_CLIPS = 200  # clips of the widest modality pooled per round of the ``pool`` phase


def _pool_whole_copy(frames: np.ndarray) -> np.ndarray:
    """``pool_frames`` as it was: two float64 arrays of the clip's size per clip (a copy, and std's deviations)."""
    wide = frames.astype(np.float64, copy=False)
    return np.concatenate([wide.mean(0), wide.std(0), wide.min(0), wide.max(0)]).astype(np.float32)


def _minor_faults() -> int:
    with open("/proc/self/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[7])


def phase_pool(root: Path) -> dict:
    from emimic.data.layout import discover
    from emimic.data.store import pool_frames
    from emimic.io import load_array

    folders = [source for source in discover(root).modalities.values() if source.container is None]
    loaded = {s.name: [load_array(path) for path in list(s.files.values())[:POOL_CLIPS]] for s in folders}
    widest, clips = max(loaded.items(), key=lambda item: item[1][0].shape[-1])
    ways = {"pool_frames": pool_frames, "whole_copy": _pool_whole_copy}
    for clip in clips:  # the same values both ways (to float32 rounding), before timing
        np.testing.assert_allclose(pool_frames(clip), _pool_whole_copy(clip), rtol=1e-6, atol=1e-7)
    best = {name: (float("inf"), 0.0) for name in ways}
    for _ in range(5):  # alternated rounds, best of each: the machine's other load hits both alike
        for name, pool in ways.items():
            faults, started = _minor_faults(), time.process_time()
            for clip in clips:
                pool(clip)
            ms, faulted = (time.process_time() - started) * 1e3 / len(clips), (_minor_faults() - faults) / len(clips)
            best[name] = min(best[name], (ms, faulted))
    frames = np.median([len(clip) for clip in clips])
    return {"modality": widest, "shape": f"{frames:.0f}x{clips[0].shape[1]}",
            **{f"{name}_ms": ms for name, (ms, _) in best.items()},
            **{f"{name}_faults": faulted for name, (_, faulted) in best.items()}}


PHASES = {
    "pool": phase_pool,
    "pickles": phase_pickles,
    "pack": phase_pack,
    "store": phase_store,
    "dataset": phase_dataset,
    "frames": phase_frames,
}


def drop_page_cache() -> bool:
    """Empty the OS page cache (root only) so that the next phase reads from disk."""
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def run_phase(name: str, root: Path, *, cold: bool = False) -> dict:
    if cold and not drop_page_cache():
        return {"seconds": float("nan"), "peak_rss_mb": float("nan")}
    output = subprocess.run(
        [sys.executable, __file__, "--phase", name, "--data", str(root)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=15000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=Path("bench_data/store15k"))
    parser.add_argument(
        "--duration",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="clip duration range in seconds for the simulated corpus (default: the simulator's)",
    )
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        result = PHASES[args.phase](args.data)
        print(json.dumps({**result, "peak_rss_mb": _peak_rss_mb()}))
        return
    from emimic.data.simulate import SimulationSettings, simulate

    if not (args.data / "oracle.json").is_file():
        print(f"simulating {args.clips} clips (seed {args.seed}) into {args.data} ...", flush=True)
        durations = dict(zip(("min_duration", "max_duration"), args.duration, strict=True)) if args.duration else {}
        simulate(args.data, SimulationSettings(clips=args.clips, seed=args.seed, **durations), progress=False)
    packed = run_phase("pack", args.data)
    rows = {}
    for label, phase in (
        ("pickles, clip by clip", "pickles"),
        ("store: open + one pooled epoch", "store"),
        ("open_dataset (freshness check) + epoch", "dataset"),
        ("store: open + every frame once", "frames"),
    ):
        rows[phase] = (label, run_phase(phase, args.data, cold=True), run_phase(phase, args.data))
    files = rows["pickles"][2]["files"]
    settings = json.loads((args.data / "oracle.json").read_text())["settings"]
    print(
        f"corpus: {args.data} ({settings['clips']} clips, seed {settings['seed']}, {files} per-clip files, "
        f"clips of {settings['min_duration']}-{settings['max_duration']} s)"
    )
    print(f"{'method':<40}{'cold s':>9}{'warm s':>9}{'peak RSS MB':>14}")
    for label, cold, warm in rows.values():
        # Mapped pages of the frame file count in RSS; report that pass's private memory instead.
        memory = f"{warm['anon_mb']:>14.0f}  (private)" if "anon_mb" in warm else f"{warm['peak_rss_mb']:>14.0f}"
        print(f"{label:<40}{cold['seconds']:>9.2f}{warm['seconds']:>9.2f}{memory}")
    print(f"{'pack (one-off)':<40}{'':>9}{packed['seconds']:>9.2f}{packed['peak_rss_mb']:>14.0f}")
    pool = run_phase("pool", args.data)
    print(f"pack's pooled statistics per {pool['modality']} clip (median {pool['shape']}): pool_frames"
          f" {pool['pool_frames_ms']:.2f} ms ({pool['pool_frames_faults']:.0f} page faults), the former float64"
          f" copy {pool['whole_copy_ms']:.2f} ms ({pool['whole_copy_faults']:.0f}):"
          f" {pool['whole_copy_ms'] / pool['pool_frames_ms']:.1f}x")
    (_, pickles_cold, pickles_warm), (_, store_cold, store_warm) = rows["pickles"], rows["store"]
    print(
        f"speed-up pickles / store epoch: {pickles_cold['seconds'] / store_cold['seconds']:.0f}x cold page cache, "
        f"{pickles_warm['seconds'] / store_warm['seconds']:.0f}x warm (goal >= 20x); cold needs root, else nan"
    )


if __name__ == "__main__":
    main()
