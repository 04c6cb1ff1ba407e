"""Extraction speed on CPU: real-time factor per extractor and the 1 → 2 worker speed-up.

The corpus is the committed speech+face test clips re-encoded at ``--size`` pixels (a typical
webcam resolution rather than the tests' 160 px) and repeated to ``--clips`` clips. The real-time
factor (RTF) is processing seconds per second of media, from the ledger's per-clip timings (models
already loaded; lower is faster); decoding is timed on its own. Models that no package ships
(wav2vec2, vad, face_emb) are the tiny random ones of emimic.features.tiny unless ``--model-dir``
is given, so their figures are lower bounds.

    python benchmarks/bench_extract.py --clips 24 --size 640
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from emimic.features import decode, extract
from emimic.features.ledger import LEDGER, STATE_DIR
from emimic.features.tiny import save_tiny_models

MEDIA = Path(__file__).parents[1] / "tests" / "media"
SOURCES = ("00001.mp4", "00002.mp4")  # a face and speech


def reencode(source: Path, target: Path, size: int) -> None:
    """Copy ``source`` with its frames scaled to ``size``×``size`` (PyAV's bundled x264 and AAC)."""
    import av

    with av.open(str(source)) as src, av.open(str(target), "w") as dst:
        video_in, audio_in = src.streams.video[0], src.streams.audio[0]
        video = dst.add_stream("libx264", rate=video_in.average_rate)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        audio = dst.add_stream("aac", rate=audio_in.rate)
        for packet in src.demux(video_in, audio_in):
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    scaled = frame.reformat(width=size, height=size, format="yuv420p")
                    scaled.pts, scaled.time_base = frame.pts, frame.time_base  # keep the original timing
                    dst.mux(video.encode(scaled))
                else:
                    dst.mux(audio.encode(frame))
        dst.mux(video.encode(None))
        dst.mux(audio.encode(None))


def make_corpus(root: Path, clips: int, size: int) -> float:
    """Write ``clips`` videos under ``root/raw``; return their total duration in seconds."""
    (root / "raw").mkdir(parents=True)
    for i, name in enumerate(SOURCES):
        reencode(MEDIA / name, root / f"source{i}.mp4", size)
    total = 0.0
    for clip_id in range(1, clips + 1):
        target = root / "raw" / f"{clip_id:05d}.mp4"
        shutil.copy(root / f"source{clip_id % len(SOURCES)}.mp4", target)
        total += decode(target, video=False).duration
    return total


def _spin(_: int) -> float:
    started = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - started


def parallel_capacity() -> float:
    """Throughput of 2 processes over 1 on pure-Python work: the ceiling of any 1 → 2 worker speed-up here."""
    from concurrent.futures import ProcessPoolExecutor

    alone = _spin(0)
    with ProcessPoolExecutor(2) as pool:
        together = max(pool.map(_spin, range(2)))
    return 2 * alone / together


def fresh_root(corpus: Path, scratch: Path) -> Path:
    root = Path(tempfile.mkdtemp(dir=scratch))
    shutil.copytree(corpus / "raw", root / "raw")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--size", type=int, default=640, help="frame side in pixels")
    parser.add_argument("--fps", type=float, default=5.0, help="sampled video frames per second")
    parser.add_argument("--model-dir", type=Path, default=None, help="real models (default: tiny random ones)")
    parser.add_argument(
        "--extractors", default="egemaps,whisper,text_emb,face,face_emb,wav2vec2,vad", help="comma-separated"
    )
    parser.add_argument(
        "--parallel",
        action="append",
        help="extractors for a 1 → 2 worker run (repeatable; default: egemaps,face and whisper)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        corpus = scratch / "corpus"
        seconds = make_corpus(corpus, args.clips, args.size)
        model_dir = args.model_dir or save_tiny_models(scratch / "models")
        print(f"corpus: {args.clips} clips, {seconds:.1f} s of media, {args.size} px square, {args.fps:g} fps sampled")

        started = time.perf_counter()
        frames = 0
        for path in sorted((corpus / "raw").glob("*.mp4")):
            frames += len(decode(path, fps=args.fps).frames)
        decode_seconds = time.perf_counter() - started
        rows = [{"extractor": "decode (audio+frames)", "rtf": decode_seconds / seconds, "wall_s": decode_seconds}]

        for name in args.extractors.split(","):
            root = fresh_root(corpus, scratch)
            if name == "text_emb":  # it embeds transcripts, so make them first (untimed)
                extract(root, ["whisper"], model_dir=model_dir, progress=False)
            started = time.perf_counter()
            extract(root, [name], model_dir=model_dir, fps=args.fps, progress=False)
            wall = time.perf_counter() - started
            ledger = pd.read_csv(root / STATE_DIR / LEDGER).query("extractor == @name")
            # The first clip pays for loading the model; the median clip gives the steady-state rate.
            median = float(np.median(ledger["seconds"]))
            steady = median * len(ledger)
            row = {
                "extractor": name,
                "rtf": steady / seconds,
                "wall_s": wall,
                "load_s": ledger["seconds"].iloc[0] - median,
            }
            if name in ("face", "face_emb"):
                row["frames_per_s"] = frames / steady
            rows.append(row)

        table = pd.DataFrame(rows).set_index("extractor")
        print("\nReal-time factor (processing s per media s; decode excluded except in its own row):")
        print(table.round(4).to_string())

        print(f"\nThis machine: {os.cpu_count()} CPUs; 2 busy processes get {parallel_capacity():.2f}x the work of 1.")
        print("Wall time including process start and model loading:")
        for names in args.parallel or ["egemaps,face", "whisper"]:
            walls = {}
            for workers in (1, 2):
                root = fresh_root(corpus, scratch)
                started = time.perf_counter()
                extract(root, names, workers=workers, model_dir=model_dir, fps=args.fps, progress=False)
                walls[workers] = time.perf_counter() - started
            print(
                f"{names} on {args.clips} clips: 1 worker {walls[1]:.1f} s, 2 workers {walls[2]:.1f} s,"
                f" speed-up {walls[1] / walls[2]:.2f}x"
            )


if __name__ == "__main__":
    main()
