"""Small corpora: the paper preset vs ridge on pooled statistics vs emimic's default, at 200-2000 clips.

Two simulated settings, each with one weak modality made explicit (``SETTINGS``):

* ``weak_text``: the simulator's three modalities, but transcripts say little (heavy text noise, more
  clips without one): face and audio carry the signal, text mostly noise;
* ``acoustic_only``: the real-data case of issue 11, one acoustic modality of 88 features per frame
  (eGeMAPS-like width) and nothing else.

Every corpus uses 75 % of its clips for training and 20 % for validation (200 clips: 150 / 40, like
the issue's ~300-clip corpus with 60 validation clips). Each size is simulated once per ``--corpora``
simulator seed under ``--work`` (each its own clips, speakers and split); each configuration is trained
with every ``--seeds`` training seed on each corpus. Prints validation mean PCC per size: the mean over
corpora and seeds; the spread over training seeds (std within a corpus, averaged over corpora: how much
a user's score depends on the seed alone); the difference to ridge (mean over corpora; ridge is
deterministic); the score of each configuration's seed ensemble (the average of its seeds'
predictions, as ``emimic evaluate`` on several runs gives it); and the check the defaults must pass:
default > ridge on the mean at every size.

    python benchmarks/bench_small.py --setting weak_text acoustic_only --sizes 200 400 800 2000 \
        --corpora 0 1 2 --seeds 0 1 2
    # a variant of a configuration: LABEL=PRESET_OR_YAML[+dotted.key=value...]
    python benchmarks/bench_small.py --sizes 200 --configs paper=paper "bs32=paper+optim.batch_size=32"
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from ridge import ridge_mean_pcc

from emimic.data import open_dataset
from emimic.data.simulate import ORACLE_FILE, SimulationSettings, simulate
from emimic.defaults import DEFAULT_PRESET
from emimic.training import evaluate, train

SPLIT_FRACTIONS = {"train_fraction": 0.75, "valid_fraction": 0.2}
SETTINGS: dict[str, dict] = {
    # text_noise 0.15 -> 1.5 and missing_text 0.10 -> 0.30: a transcript embedding that barely tracks emotion.
    # Audio at 10 frames/s instead of 50 keeps the 2000-clip corpus small enough to pack in seconds.
    "weak_text": {"text_noise": 1.5, "missing_text": 0.3, "audio_fps": 10.0},
    # One eGeMAPS-width acoustic modality at 10 frames/s, noisy enough that ridge scores ~0.3 at 400 clips as
    # on the real corpus; face and text folders are removed after simulation.
    "acoustic_only": {"audio_dim": 88, "audio_fps": 10.0, "missing_audio": 0.0, "feature_noise": 3.0},
}
ACOUSTIC_ONLY_KEEPS = "wav2vec2"
DROPPED_FOLDERS = ("vit", "text", "text_emb")


@dataclass
class Variant:
    """A configuration under test: a preset or YAML file plus dotted overrides."""

    label: str
    config: str | None
    overrides: dict[str, object] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Variant:
        label, _, spec = text.partition("=")
        config, *pairs = spec.split("+")
        overrides = {key: yaml.safe_load(value) for key, value in (pair.split("=", 1) for pair in pairs)}
        return cls(label, config or None, overrides)


DEFAULT_VARIANTS = [Variant("paper", "paper"), Variant(f"default ({DEFAULT_PRESET})", None)]


def corpus(work: Path, setting: str, clips: int, seed: int = 0) -> Path:
    """Simulate the corpus of ``setting`` with ``clips`` clips and simulator ``seed`` once under ``work``."""
    root = work / f"{setting}-{clips}-corpus{seed}"
    if not (root / ORACLE_FILE).exists():
        shutil.rmtree(root, ignore_errors=True)
        simulate(root, SimulationSettings(clips=clips, seed=seed, **SPLIT_FRACTIONS, **SETTINGS[setting]),
                 progress=False)
        if setting == "acoustic_only":
            for name in DROPPED_FOLDERS:
                shutil.rmtree(root / name)
    return root


def oracle_mean(root: Path) -> float:
    return float(json.loads((root / ORACLE_FILE).read_text())["oracle_mean_pcc"]["valid"])


def run_folders(variant: Variant, runs: Path, seeds: list[int]) -> list[Path]:
    return [runs / f"{variant.label.split()[0]}-seed{seed}" for seed in seeds]


def scores_of(variant: Variant, root: Path, runs: Path, seeds: list[int]) -> list[float]:
    """Validation mean PCC of ``variant`` trained with each seed (into ``runs``)."""
    dataset = open_dataset(root)
    out = []
    for seed, run in zip(seeds, run_folders(variant, runs, seeds), strict=True):
        shutil.rmtree(run, ignore_errors=True)
        result = train(dataset, run, config=variant.config, seed=seed, overrides=variant.overrides, progress=False)
        out.append(result.valid.mean_pcc)
    return out


def ensemble_score(variant: Variant, root: Path, runs: Path, seeds: list[int]) -> float:
    """Validation mean PCC of the average prediction of the seeds' runs (``emimic evaluate`` on several runs)."""
    return evaluate(run_folders(variant, runs, seeds), open_dataset(root), split="valid").mean_pcc


Scores = dict[str, list[list[float]]]  # label -> per corpus, the scores of each training seed


def spread(per_corpus: list[list[float]]) -> str:
    """Mean over corpora and seeds ± the seed-to-seed std within a corpus, averaged over corpora."""
    within = [np.std(seeds, ddof=1) for seeds in per_corpus if len(seeds) > 1]
    mean = np.mean([np.mean(seeds) for seeds in per_corpus])
    return f"{mean:.3f} ± {np.mean(within):.3f}" if within else f"{mean:.3f}"


def versus_ridge(row: Scores, label: str) -> float:
    """Mean over corpora of (the configuration's mean over seeds - ridge)."""
    return float(np.mean([np.mean(seeds) - ridge[0] for seeds, ridge in zip(row[label], row["ridge"], strict=True)]))


def bench(setting: str, sizes: list[int], seeds: list[int], variants: list[Variant], work: Path,
          corpora: Sequence[int] = (0,)) -> dict[int, Scores]:
    table: dict[int, Scores] = {}
    for clips in sizes:
        started = time.perf_counter()
        row: Scores = {}
        for corpus_seed in corpora:
            root = corpus(work, setting, clips, corpus_seed)
            dataset = open_dataset(root)
            row.setdefault("ridge", []).append([ridge_mean_pcc(dataset)])
            row.setdefault("oracle", []).append([oracle_mean(root)])
            runs = work / "runs" / root.name
            for variant in variants:
                row.setdefault(variant.label, []).append(scores_of(variant, root, runs, seeds))
                if len(seeds) > 1:
                    row.setdefault(f"{variant.label}, {len(seeds)}-seed ensemble", []).append(
                        [ensemble_score(variant, root, runs, seeds)])
        table[clips] = row
        cells = "  ".join(f"{label} {spread(values)}" for label, values in row.items())
        print(f"{setting} {clips:5d} clips: {cells}  ({time.perf_counter() - started:.0f} s)", flush=True)
    return table


def print_table(setting: str, table: dict[int, Scores], n_seeds: int, n_corpora: int) -> None:
    labels = list(next(iter(table.values())))
    print(f"\n{setting}: validation mean PCC over {n_corpora} corpora x {n_seeds} training seeds: mean ± seed-to-seed"
          " std (within a corpus, averaged); [difference to ridge, mean over corpora]")
    print("| clips | " + " | ".join(labels) + " |")
    print("|---:|" + "---:|" * len(labels))
    for clips, row in table.items():
        cells = [spread(row[label]) + ("" if label in ("ridge", "oracle") else f" [{versus_ridge(row, label):+.3f}]")
                 for label in labels]
        print(f"| {clips} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 400, 800, 2000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--corpora", type=int, nargs="+", default=[0, 1, 2],
                        help="simulator seeds: one corpus of each size per seed")
    parser.add_argument("--configs", type=Variant.parse, nargs="+", default=DEFAULT_VARIANTS,
                        help="LABEL=PRESET_OR_YAML[+dotted.key=value...]; an empty PRESET means the default")
    parser.add_argument("--work", type=Path, default=Path("bench_data/small"), help="corpora and runs go here")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    results = {setting: bench(setting, args.sizes, args.seeds, args.configs, args.work, args.corpora)
               for setting in args.setting}
    for setting, table in results.items():
        print_table(setting, table, len(args.seeds), len(args.corpora))
        default = next((v.label for v in args.configs if v.config is None and not v.overrides), None)
        if default is not None:
            held = all(versus_ridge(row, default) > 0 for row in table.values())
            print(f"[{'PASS' if held else 'FAIL'}] {default} beats ridge on the mean at every size")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
