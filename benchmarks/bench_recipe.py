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
        results[name] = found
    print("\n" + table(results, args.seeds, args.folds))
    for name, found in results.items():
        gain = np.mean(found["best"]["valid"]) - np.mean(found["paper"]["valid"])
        print(f"{name}: best - paper = {gain:+.4f} valid mean PCC ({'ok' if gain >= MARGIN else 'FAILS'} the"
              f" +{MARGIN} requirement)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
