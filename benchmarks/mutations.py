"""Do the tests catch broken core logic? Each mutation below breaks one rule the suite must guard
(issue 7, "Tests that can fail"): it is applied to the source, the tests named with it are run and
must fail, and the file is restored afterwards (also on Ctrl-C).

Run from the repository root: ``python benchmarks/mutations.py [NAME ...]`` (all mutations by
default; about 10 minutes on 2 cores, most of it the shared trained run of tests/test_learning.py,
which each mutation of training code retrains). Prints one line per mutation and exits non-zero
if any mutation left its tests green. ``--list`` runs nothing: it prints where each mutation applies
and exits non-zero if the code one changes is no longer in its file exactly once (after a refactor).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEARNING = "tests/test_learning.py::"


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    original: str
    mutated: str
    tests: tuple[str, ...]


RUN, INFERENCE, DATASET, MODEL = (f"src/emimic/{name}.py" for name in ("training/run", "training/inference",
                                                                        "data/dataset", "models/emi"))
ENCODERS = "src/emimic/models/encoders.py"
DATAMODULE = "src/emimic/training/datamodule.py"
EMA, SIMULATE, METRICS, LOSSES = (f"src/emimic/{name}.py" for name in ("training/ema", "data/simulate", "metrics",
                                                                       "training/losses"))
PRIOR, STORE = "src/emimic/models/vad_prior.py", "src/emimic/data/store.py"
SELECTION = (LEARNING + "test_the_saved_run_scores_what_its_best_epoch_scored",)
BEST_EPOCH = (LEARNING + "test_reported_best_epoch_is_the_argmax_of_the_validation_history",)
EMA_USED = (LEARNING + "test_ema_weights_differ_from_the_raw_ones_and_are_the_ones_inference_uses",)
TRAIN_STATISTICS = (LEARNING + "test_normalisation_statistics_come_from_the_training_clips_only",)
STANDARDISATION = ("tests/test_models_emi.py::test_branches_standardise_with_the_stored_mean_and_std",)
VAD_NAMES = ("tests/test_models_emi.py::test_observed_vad_columns_are_matched_to_the_axes_by_their_recorded_names",)
VAD_TRAINED = ("tests/test_training_run.py::test_an_observed_vad_is_read_by_the_column_names_recorded_with_it",)
VAD_SCALE = ("tests/test_models_emi.py::test_both_vad_priors_are_in_standard_units_of_the_training_clips",)

MUTATIONS: tuple[Mutation, ...] = (
    Mutation("selection keeps the lowest val PCC", RUN, 'monitor=MONITOR if selecting else None, mode="max"',
             'monitor=MONITOR if selecting else None, mode="min"', SELECTION),
    Mutation("early stopping in the wrong direction", RUN, 'EarlyStopping(monitor=MONITOR, mode="max"',
             'EarlyStopping(monitor=MONITOR, mode="min"',
             (LEARNING + "test_early_stopping_ends_the_run_after_patience_epochs_without_a_higher_pcc",)),
    Mutation("best epoch: the worst one", RUN, "return int(max(rows, key=", "return int(min(rows, key=",
             BEST_EPOCH),
    Mutation("best epoch: the last one", RUN, 'return int(max(rows, key=lambda r: r.get(MONITOR, -np.inf))["epoch"])',
             'return int(rows[-1]["epoch"])', BEST_EPOCH),
    Mutation("best epoch: off by one", RUN, 'r.get(MONITOR, -np.inf))["epoch"]',
             'r.get(MONITOR, -np.inf))["epoch"] - 1', BEST_EPOCH),
    Mutation("inference on the raw weights", INFERENCE, 'ckpt["state_dict"].items()',
             'ckpt.get("current_model_state", ckpt["state_dict"]).items()', (*EMA_USED, *SELECTION)),
    Mutation("EMA callback left out", RUN, "    if cfg.train.ema.enabled:\n", "    if False:\n", EMA_USED),
    Mutation("statistics over train + valid", DATAMODULE, "feature_statistics(self.store, ids, self.spec.inputs)",
             "feature_statistics(self.store, np.concatenate([ids, self.labelled['valid'][0]]), self.spec.inputs)",
             TRAIN_STATISTICS),
    Mutation("statistics over every clip", DATASET, "chosen = np.asarray(ids)[present]",
             "chosen = store.ids(modality)", TRAIN_STATISTICS),
    Mutation("overlapping train/valid accepted", RUN, '        ds.check_disjoint("train", "valid")\n', "        pass\n",
             ("tests/test_training_run.py::test_clips_in_both_train_and_valid_are_refused_before_anything_is_written",)),
    Mutation("std normalisation dropped (pooled)", MODEL, '(inputs["pooled"] - self.pooled_mean) / self.pooled_std',
             '(inputs["pooled"] - self.pooled_mean)', STANDARDISATION),
    Mutation("std normalisation dropped (frames)", ENCODERS, "    weight = layer.weight / std\n",
             "    weight = layer.weight\n", STANDARDISATION),
    Mutation("std statistics dropped", DATASET, "pooled_std=column_scales(pooled.std(0), pooled.mean(0))",
             "pooled_std=np.ones(4 * dim, np.float32)", TRAIN_STATISTICS),
    Mutation("EMA decay the wrong way round", EMA, "averaged * d + current * (1.0 - d)",
             "averaged * (1.0 - d) + current * d", ("tests/test_training_ema.py",)),
    Mutation("oracle from the intensity", SIMULATE, "pearson(self.expected[rows, k], self.observed[rows, k])",
             "pearson(self.intensity[rows, k], self.observed[rows, k])",
             ("tests/test_simulate.py::test_oracle_is_the_pcc_of_expected_and_observed_labels_as_written",)),
    Mutation("speakers shared across splits", SIMULATE, "speaker[members] = first + rng.integers(0, pool",
             "speaker[members] = rng.integers(0, pool", ("tests/test_simulate.py::test_speakers_never_cross_splits",)),
    Mutation("constant-target guard removed (metric)", METRICS, "torch.stack([pd_, td], dim=1)", "pd_[:, None]",
             ("tests/test_metrics.py::test_constant_labels_score_zero_whatever_the_predictions",)),
    Mutation("constant-target guard removed (loss)", LOSSES, "(batch_mean(dt.pow(2), weight) + EPS)",
             "batch_mean(dt.pow(2), weight)",
             ("tests/test_training_losses.py::test_pcc_against_constant_targets_is_zero_with_a_finite_gradient",)),
    Mutation("VAD loss weight ignored", LOSSES, "self.aux_weight * aux + self.vad_weight * vad",
             "self.aux_weight * aux + vad",
             ("tests/test_training_losses.py::test_vad_term_enters_the_total_with_its_weight",)),
    Mutation("VAD columns taken by position", MODEL,
             "columns = axis_columns(observed_name, (feature_names or {}).get(observed_name))", "columns = FILE_ORDER",
             (*VAD_NAMES, *VAD_TRAINED)),
    Mutation("VAD columns ignored when read", PRIOR, "pooled.index_select(1, self.observed_columns)", "pooled[:, :3]",
             VAD_NAMES),
    Mutation("VAD observed statistics not reordered", PRIOR, "torch.as_tensor(observed_mean[columns])",
             "torch.as_tensor(observed_mean)", (*VAD_SCALE, *VAD_TRAINED)),
    Mutation("VAD label prior not standardised", PRIOR,
             "return (pseudo_vad(targets, anchor_table().to(targets.device)) - latent.label_mean) / latent.label_std",
             "return pseudo_vad(targets, anchor_table().to(targets.device))",
             (*VAD_SCALE,
              "tests/test_training_losses.py::test_label_prior_is_standardised_with_the_training_statistics")),
    Mutation("VAD observed prior not standardised", PRIOR,
             "(pooled.index_select(1, self.observed_columns) - self.observed_mean) / self.observed_std",
             "pooled.index_select(1, self.observed_columns)", VAD_SCALE),
    Mutation("store drops the feature names", STORE,
             'entry["feature_names"] = checked_feature_names(source, entry["dim"])',
             'entry["feature_names"] = None',
             ("tests/test_store.py::test_feature_names_recorded_by_the_extractor_travel_with_the_store", *VAD_TRAINED)),
)


def located(mutation: Mutation) -> tuple[str, int]:
    """The text of the mutated file and the line of the code the mutation changes."""
    text = (ROOT / mutation.file).read_text(encoding="utf-8")
    if text.count(mutation.original) != 1:
        raise SystemExit(f"{mutation.file}: the code that {mutation.name!r} changes is not there once; update it.")
    return text, text[: text.index(mutation.original)].count("\n") + 1


def run(mutation: Mutation) -> tuple[int, list[str]]:
    """Line of the mutated code and the tests that failed with it (none: the mutation survived)."""
    path = ROOT / mutation.file
    text, line = located(mutation)
    path.write_text(text.replace(mutation.original, mutation.mutated), encoding="utf-8")
    try:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *mutation.tests],
                              cwd=ROOT, env=env, capture_output=True, text=True)
    finally:
        path.write_text(text, encoding="utf-8")
    failed = [row.split(" - ")[0].split(" ", 1)[1] for row in done.stdout.splitlines()
              if row.startswith(("FAILED", "ERROR"))]
    return line, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="print where each mutation applies; run nothing")
    args = parser.parse_args()
    chosen = args.names
    if args.list:
        for mutation in MUTATIONS:
            print(f"{mutation.name:45} {mutation.file}:{located(mutation)[1]}  {', '.join(mutation.tests)}")
        return 0
    survivors = []
    for mutation in MUTATIONS:
        if chosen and mutation.name not in chosen:
            continue
        line, failed = run(mutation)
        print(f"{'caught  ' if failed else 'SURVIVED'} {mutation.name:45} {mutation.file}:{line}  {', '.join(failed)}",
              flush=True)
        if not failed:
            survivors.append(mutation.name)
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
