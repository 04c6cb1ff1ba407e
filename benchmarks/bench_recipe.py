"""The paper preset against the best recipe (``configs/best.yaml``) and a CV ensemble of the best recipe.

On the two corpora of ``bench_accuracy.py`` (``default``: the simulator's defaults, seed 0, what
``emimic demo`` uses; ``second``: other widths, lengths, noise and missing rates, seed 1), same
splits:

* ``paper`` and ``best``: one ``train`` run per seed; validation mean PCC and mean PCC on the
  simulator's held-out test truth (``.truth/test_labels.csv``), mean ± standard deviation over the
  seeds and the paired difference best - paper (same seed);
* ``best, CV ensemble``: ``cross_validate(best, folds, refit=True)`` with the first seed: its
  out-of-fold mean PCC over train+valid (no clip is scored by a model that trained on it; this
  stands in the valid column), and the mean of all its fold and refit models' predictions on the
  test truth (what ``emimic predict --run CV`` submits).

Run: ``python benchmarks/bench_recipe.py [--seeds 0 1 2] [--folds 5] [--json bench_data/recipe.json]``
(per corpus: 2 x seeds trainings and folds + 1 for the ensemble; corpora are simulated once under
``bench_data/``). It ends by checking best >= paper + 0.02 validation mean PCC on each corpus.

``--ceiling`` adds what the recipes could reach were the raters exact: each recipe is also trained (first
seed) on a twin of the corpus whose train and valid labels are the simulator's noise-free expected labels
(``.truth/clips.csv``; feature folders linked), and every run is scored on the valid split against those
expected labels. Since an observed label is the expected one plus rater noise independent of the features,
a model's PCC with the observed labels is about its PCC with the expected ones times the oracle's; so
paper + 0.02 on the observed labels needs about ``(paper + 0.02) / oracle`` on the expected ones, which the
table prints beside what each recipe reaches with noise-free labels.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from bench_accuracy import CORPORA, corpus

RECIPES = ("paper", "best")
MARGIN = 0.02  # the requirement on the validation mean PCC


def truth(root: Path) -> Path:
    return root / ".truth" / "test_labels.csv"


def single_runs(root: Path, work: Path, recipe: str, seeds: list[int]) -> dict[str, list[float]]:
    """Valid and test mean PCC of one run of ``recipe`` per seed (a finished run is reused)."""
    from emimic.data import open_dataset
    from emimic.training.inference import evaluate
    from emimic.training.run import train

    ds = open_dataset(root)
    scores: dict[str, list[float]] = {"valid": [], "test": []}
    for seed in seeds:
        result = train(ds, work / f"{recipe}-s{seed}", config=recipe, seed=seed, progress=False)
        scores["valid"].append(result.valid.mean_pcc)
        scores["test"].append(evaluate(result.run, ds, split="test", labels=truth(root)).mean_pcc)
    return scores


def cv_ensemble(root: Path, work: Path, folds: int, seed: int) -> dict[str, list[float]]:
    """Out-of-fold mean PCC of the best recipe's CV, and its fold+refit ensemble's mean PCC on the test truth."""
    from emimic.training.crossval import cross_validate
    from emimic.training.inference import evaluate

    result = cross_validate(root, work / "best-cv", folds=folds, seeds=[seed], config="best", refit=True,
                            progress=False)
    return {"valid": [result.mean_pcc], "test": [evaluate(result.out, root, split="test", labels=truth(root)).mean_pcc]}


def noise_free_twin(root: Path, twin: Path) -> Path:
    """``twin``: the corpus ``root`` with its train and valid labels replaced by the noise-free expected labels (its
    feature folders are links; the twin packs a store of its own). ``oracle.json`` is left out: it scores the
    observed labels, which the twin does not have."""
    import pandas as pd

    from emimic.labels import EMOTIONS

    twin.mkdir(parents=True, exist_ok=True)
    for entry in root.iterdir():
        link = twin / entry.name
        if entry.name not in {"train_split.csv", "valid_split.csv", ".emimic", "oracle.json"}:
            link.unlink(missing_ok=True)  # a link left by an earlier call may point to a corpus simulated anew
            link.symlink_to(entry.resolve())
    expected = pd.read_csv(root / ".truth" / "clips.csv", index_col="Filename")
    for split in ("train", "valid"):
        labels = pd.read_csv(root / f"{split}_split.csv", index_col="Filename")
        labels[list(EMOTIONS)] = expected.loc[labels.index, [f"expected {e}" for e in EMOTIONS]].to_numpy()
        labels.to_csv(twin / f"{split}_split.csv", float_format="%.6f")
    return twin


def ceiling(root: Path, work: Path, seed: int) -> dict[str, dict[str, float]]:
    """Per recipe, valid mean PCC against the expected labels when trained on the observed labels (the runs of
    :func:`single_runs`) and when trained on the noise-free twin."""
    from emimic.training.inference import evaluate
    from emimic.training.run import train

    twin = noise_free_twin(root, work / "noise-free")
    expected = twin / "valid_split.csv"
    return {recipe: {"observed": evaluate(work / "runs" / f"{recipe}-s{seed}", root, labels=expected).mean_pcc,
                     "noise-free": train(twin, work / "noise-free-runs" / f"{recipe}-s{seed}", config=recipe,
                                         seed=seed, progress=False).valid.mean_pcc}
            for recipe in RECIPES}


def ceiling_table(results: dict) -> str:
    lines = ["| corpus | recipe | trained on observed labels | trained on noise-free labels |"
             " paper + 0.02 needs about |", "|---|---|---|---|---|"]
    for name, found in results.items():
        needed = (np.mean(found["paper"]["valid"]) + MARGIN) / found["oracle"]["valid"]
        for i, (recipe, scores) in enumerate(found["ceiling"].items()):
            first = i == 0
            lines.append(f"| {name if first else ''} | {recipe} | {scores['observed']:.4f} |"
                         f" {scores['noise-free']:.4f} | {f'{needed:.4f}' if first else ''} |")
    return "\n".join(lines)


def spread(values, *, signed: bool = False) -> str:
    values = np.atleast_1d(np.asarray(values, dtype=float))
    mean = f"{values.mean():+.4f}" if signed else f"{values.mean():.4f}"
    return f"{mean} ± {values.std(ddof=1):.4f}" if len(values) > 1 else mean


def table(results: dict, seeds: list[int], folds: int) -> str:
    lines = ["| corpus (oracle valid / test) | model | valid mean PCC | test mean PCC | valid diff to paper |"
             " test diff to paper |", "|---|---|---|---|---|---|"]
    for name, found in results.items():
        oracle = found["oracle"]
        label = f"{name} ({oracle['valid']:.4f} / {oracle['test']:.4f})"
        rows = {"paper": found["paper"], "best": found["best"], f"best, {folds}-fold CV ensemble": found["cv"]}
        for i, (model, scores) in enumerate(rows.items()):
            diffs = ["", ""]
            if model != "paper":
                paired = len(scores["valid"]) == len(seeds)
                diffs = [spread(np.subtract(scores[k], found["paper"][k][: len(scores[k])]) if paired
                                else np.subtract(scores[k][0], found["paper"][k][0]), signed=True)
                         for k in ("valid", "test")]
            valid = spread(scores["valid"]) + (" (out-of-fold)" if model.endswith("ensemble") else "")
            lines.append(f"| {label if i == 0 else ''} | {model} | {valid} | {spread(scores['test'])} | {diffs[0]}"
                         f" | {diffs[1]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--corpus", nargs="+", default=list(CORPORA), choices=list(CORPORA))
    parser.add_argument("--work", type=Path, default=Path("bench_data/recipe"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--ceiling", action="store_true",
                        help="also train each recipe on noise-free labels and score every run against them")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    for name in args.corpus:
        root = args.work / name / "data"
        oracle = corpus(root, CORPORA[name])["oracle_mean_pcc"]
        found = {"oracle": {"valid": oracle["valid"], "test": oracle["test"]}}
        for recipe in RECIPES:
            found[recipe] = single_runs(root, args.work / name / "runs", recipe, args.seeds)
            print(f"{name} {recipe}: valid {spread(found[recipe]['valid'])}, test {spread(found[recipe]['test'])}",
                  flush=True)
        found["cv"] = cv_ensemble(root, args.work / name / "runs", args.folds, args.seeds[0])
        print(f"{name} CV ensemble: out-of-fold {found['cv']['valid'][0]:.4f}, test {found['cv']['test'][0]:.4f}",
              flush=True)
        if args.ceiling:
            found["ceiling"] = ceiling(root, args.work / name, args.seeds[0])
        results[name] = found
    print("\n" + table(results, args.seeds, args.folds))
    if args.ceiling:
        print("\nValid mean PCC against the noise-free expected labels:\n" + ceiling_table(results))
    for name, found in results.items():
        gain = np.mean(found["best"]["valid"]) - np.mean(found["paper"]["valid"])
        print(f"{name}: best - paper = {gain:+.4f} valid mean PCC ({'ok' if gain >= MARGIN else 'FAILS'} the"
              f" +{MARGIN} requirement)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
