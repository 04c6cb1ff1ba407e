"""The HTML report, the provenance in metrics.json, and evaluate with a labels file / per-clip predictions."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from emimic.cli import main
from emimic.cli.train import pcc_table
from emimic.data import open_dataset
from emimic.data.simulate import TRUTH_DIR, SimulationSettings, simulate
from emimic.data.store import FeatureStore, pack
from emimic.errors import ConfigError, EmimicWarning, OutputConflict
from emimic.infer import infer
from emimic.labels import EMOTIONS
from emimic.metrics import pcc_intervals
from emimic.outputs import check_folder_settings
from emimic.report import (
    RunSummary,
    comparison_rows,
    comparison_section,
    expand_runs,
    headline,
    png_html,
    scores_table,
    write_report,
)
from emimic.training.ablate import CellSummary, Grid, ablate, summary_rows
from emimic.training.crossval import cross_validate
from emimic.training.inference import Evaluation
from emimic.training.provenance import (
    RECORD_FILE,
    DataFingerprint,
    corpus_fingerprint,
    data_fingerprint,
    labelled_splits,
    read_run_record,
)
from emimic.training.run import train
from emimic.training.sweep import SearchSpace, sweep

ARTIFACTS = Path(__file__).parents[1] / "artifacts"
SMALL = dict(clips=240, face_dim=16, audio_dim=24, text_dim=8)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report") / "sim"
    simulate(root, SimulationSettings(seed=0, **SMALL), progress=False)
    return root


@pytest.fixture(scope="module")
def runs(corpus) -> list[Path]:
    """Two short runs on the same corpus: the default preset (a seed ensemble of 5 models on its 144 training
    clips) and the paper method without EMA, from a YAML file."""
    own = corpus.parent / "mine.yaml"
    own.write_text("name: paper\ntrain:\n  ema:\n    enabled: false\n")
    paper = train(corpus, corpus.parent / "paper", seed=0, max_epochs=4, progress=False).run
    mine = train(corpus, corpus.parent / "mine", config=own, seed=1, max_epochs=4, progress=False).run
    return [paper, mine]


@pytest.fixture(scope="module")
def report(runs) -> str:
    return write_report(runs, runs[0].parent / "report.html").read_text(encoding="utf-8")


def printed_error(capsys, expected: str) -> bool:
    """Whether stderr holds ``expected``; whitespace is ignored, as the console wraps long lines (even mid-path)."""
    return "".join(expected.split()) in "".join(capsys.readouterr().err.split())


def embedded_pngs(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_metrics_json_records_provenance_and_intervals(runs, corpus):
    stored = json.loads((runs[1] / "metrics.json").read_text())
    prov = stored["provenance"]
    assert prov["config"]["name"] == "mine" and prov["config"]["source"].endswith("mine.yaml")
    assert prov["config"]["resolved"]["train"]["ema"]["enabled"] is False and prov["seed"] == 1
    assert prov["data"]["root"] == str(corpus.resolve())
    assert prov["data"]["fingerprint"] == read_run_record(runs[1]).data.digest  # the one run.json records
    assert prov["data"]["split_sizes"] == {"train": 144, "valid": 48, "test": 48}
    assert prov["data"]["content_of"] == "labelled clips"
    assert 0 < prov["data"]["coverage"]["valid"]["wav2vec2"] < 1
    assert prov["oracle"]["mean_pcc"]["valid"] > 0.5
    assert prov["training"] | {"wall_seconds": 0} == {"epochs_run": 4, "max_epochs": 4, "best_epoch":
                                                      stored["best_epoch"], "patience": 10, "stopped_early": False,
                                                      "wall_seconds": 0}
    low, high = stored["pcc_ci95"]["mean"]
    assert low < stored["mean_pcc"] < high and high - low < 0.5


def test_history_records_the_raw_weights_beside_the_ema_ones(runs):
    ema = pd.read_csv(runs[0] / "history.csv")
    assert not np.allclose(ema["val/pcc_mean_raw"], ema["val/pcc_mean"])
    assert "val/pcc_mean_raw" not in pd.read_csv(runs[1] / "history.csv")  # without EMA they are the same weights


def test_report_has_every_section_and_every_plot_is_a_real_image(report):
    for heading in ("Comparison of 2 runs", "Run paper", "Run mine", "Validation PCC", "Predicted vs true",
                    "Errors by modality coverage", "Learning curves", "Label distributions", "Sequence lengths"):
        assert heading in report, heading
    assert "oracle" in report and "ridge baseline" in report and "hit the epoch limit" in report
    images = embedded_pngs(report)
    assert len(images) == 1 + 2 * 4 + 2  # comparison, 4 per run, 2 of the data
    for png in images:
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        assert pixels.shape[0] > 100 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10


def fake_summary(name: str, preds: np.ndarray, labels: np.ndarray) -> RunSummary:
    clips = pd.DataFrame({**{f"pred {e}": preds[:, k] for k, e in enumerate(EMOTIONS)},
                          **{f"true {e}": labels[:, k] for k, e in enumerate(EMOTIONS)}})
    scores = dict(zip(EMOTIONS, [float(np.corrcoef(preds[:, k], labels[:, k])[0, 1]) for k in range(6)], strict=True))
    valid = Evaluation("valid", len(preds), float(np.mean(list(scores.values()))), scores, {}, clips)
    return RunSummary(Path(name), {}, None, None, valid)  # type: ignore[arg-type]


def test_comparison_marks_differences_within_noise_with_a_paired_bootstrap():
    rng = np.random.default_rng(0)
    labels = rng.random((300, 6))
    good = labels + rng.normal(scale=0.3, size=labels.shape)
    rows = comparison_rows([fake_summary("a", good, labels),
                            fake_summary("b", good + rng.normal(scale=0.02, size=labels.shape), labels),
                            fake_summary("c", labels + rng.normal(scale=1.0, size=labels.shape), labels),
                            # +0.011 mean PCC: an unpaired interval (about ±0.03) would contain 0, a paired one not
                            fake_summary("d", good + 0.03 * (labels - good), labels)])
    assert [row[-1] for row in rows] == ["reference", "within noise", "significant", "significant"]
    assert rows[2][-2].startswith("-") and rows[3][-2].startswith("+0.011")


def test_runs_scored_on_the_same_clip_ids_with_other_labels_are_not_paired():
    """Two corpora numbering their clips alike (or labels edited between two runs): a paired interval over the ids
    called a difference of noise "significant" (-0.65 [-0.78, -0.51] on a permuted copy of a corpus)."""
    rng = np.random.default_rng(1)
    labels = rng.random((300, 6))
    permuted = labels[rng.permutation(len(labels))]
    good = labels + rng.normal(scale=0.3, size=labels.shape)
    summaries = [fake_summary("run_a", good, labels), fake_summary("run_b", good, permuted),
                 fake_summary("run_c", good, labels.copy())]  # equal values read afresh: paired
    rows = comparison_rows(summaries)
    assert [row[-2:] for row in rows[1:]] == [["-", "other labels: not paired"],
                                              ["+0.0000 [+0.000, +0.000]", "within noise"]]
    section = comparison_section(summaries)
    assert ("run_b is not paired with run_a: it was scored on the same clip ids with other labels (another corpus"
            " that numbers its clips alike, or labels edited between the runs), so no difference to it is computed;"
            " compare their intervals.") in section
    assert "run_c is not paired" not in section


def test_a_bound_of_exactly_minus_zero_prints_as_zero_and_one_just_below_zero_keeps_its_sign(monkeypatch):
    """With 3 clips evaluate's bootstrap lower bound of the mean PCC (rounded to 4 decimals) is -0.0, which evaluate,
    cv and demo printed as -0.000; a bound or change of -0.0004 is below 0 (what decides an ablation's mark) and must
    still print as -0.000, in every table of intervals and changes."""
    rng = np.random.default_rng(4)
    labels = rng.random((3, 6))
    preds = labels + rng.normal(scale=0.3, size=labels.shape)
    intervals = pcc_intervals(preds, labels)
    assert intervals["mean"][0] == 0.0 and np.signbit(intervals["mean"][0])  # the case itself
    summary, ridge = fake_summary("a", preds, labels), dict.fromkeys(EMOTIONS, 0.0)

    def last_interval_cell(intervals: dict[str, list[float]]) -> str:
        return list(pcc_table(summary.valid.pcc, "Validation", intervals=intervals).columns[2].cells)[-1]

    assert last_interval_cell(intervals) == "0.000 to 0.667"
    assert last_interval_cell(intervals | {"mean": [-0.0004, 0.667]}) == "-0.000 to 0.667"
    # report's tables, with this lower bound (-1.1e-16: what averaging six PCC draws leaves where evaluate has -0.0)
    for low, printed in ((-0.0, "0.000"), (-1.1e-16, "0.000"), (-0.0004, "-0.000")):
        monkeypatch.setattr("emimic.report.confidence_interval", lambda samples, low=low: np.array(
            [np.full(samples.shape[1:], low), np.full(samples.shape[1:], 0.5)]))
        assert comparison_rows([summary])[0][4] == f"[{printed}, 0.500]"
        assert f"95 % CI {printed} to 0.500" in headline(summary, ridge, None)
        assert f"[{printed}, 0.500]" in scores_table(summary, ridge, None)
    # report's comparison: a change of 0 whose paired interval is [-0.0004, -0.0]
    monkeypatch.setattr("emimic.report.paired_difference_interval", lambda *_: (-0.0004, -0.0))
    assert comparison_rows([summary, fake_summary("b", preds, labels)])[1][-2:] == [
        "+0.0000 [-0.000, +0.000]", "within noise"]
    # ablate: a PCC of -1e-9 is 0.000, a change or bound of -0.0 is +0.000, one of -0.0004 (or less) stays below 0
    zero = CellSummary("no_text", 2, 0.5, 0.01, dict.fromkeys(EMOTIONS, -1e-9), dict.fromkeys(EMOTIONS, 0.0),
                       delta=-0.0, p_value=0.9, interval=(-0.0, 0.02), within_noise=True)
    below = CellSummary("fusion_text_anchored", 2, 0.6, 0.01, dict.fromkeys(EMOTIONS, 0.6),
                        dict.fromkeys(EMOTIONS, 0.0), delta=-0.00004, p_value=0.3, interval=(-0.019, -0.0004),
                        within_noise=True)
    assert summary_rows([zero])[0][3:8] == ["+0.0000", "0.900", "[+0.000, +0.020]", "within noise", "0.000 ± 0.000"]
    assert summary_rows([below])[0][3:6] == ["-0.0000", "0.300", "[-0.019, -0.000]"]


def test_report_cli_default_paths_and_errors(runs, corpus, tmp_path, capsys):
    assert main(["report", str(runs[0])]) == 0
    assert (runs[0] / "report.html").exists() and f"report: {runs[0] / 'report.html'}" in capsys.readouterr().out
    assert main(["report", str(runs[0].parent)]) == 0  # a folder of runs (ablation, CV) is compared
    assert "Comparison of 2 runs" in (runs[0].parent / "report.html").read_text(encoding="utf-8")
    capsys.readouterr()
    assert main(["report", str(tmp_path)]) == 1
    assert printed_error(capsys, f"{tmp_path}: not a finished run (no metrics.json) nor a folder of runs")
    older = shutil.copytree(runs[0], tmp_path / "older")  # a run from before metrics.json had provenance
    metrics = json.loads((older / "metrics.json").read_text())
    (older / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if k != "provenance"}))
    assert main(["report", str(older)]) == 1
    assert printed_error(capsys, f"{older / 'metrics.json'} does not record its dataset")
    assert main(["report", str(runs[0]), "--out", str(corpus / "report.html")]) == 1  # as predict and evaluate
    assert printed_error(capsys, f"{corpus / 'report.html'} is inside the dataset root {corpus}, where emimic writes"
                                 " only feature stores and extracted features; choose a path outside it.")
    assert not (corpus / "report.html").exists()


def test_a_run_whose_dataset_moved_says_so_and_is_reported_with_data(runs, corpus, tmp_path, capsys):
    """It said only "c_mv: dataset root is not a folder.", not whose dataset that was nor what to do."""
    run = shutil.copytree(runs[0], tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["provenance"]["data"]["root"] = str(tmp_path / "c_mv")  # as if the corpus was moved after training
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert main(["report", str(run)]) == 1
    assert printed_error(capsys, f"error: {run}: the dataset it was trained on, {tmp_path / 'c_mv'} (recorded in its"
                                 " metrics.json), is not there any more; give its new place with --data DIR.")
    assert main(["report", str(run), "--data", str(corpus)]) == 0


def test_a_folder_of_runs_is_searched_at_any_depth_and_unfinished_runs_are_named(runs, tmp_path):
    folder = tmp_path / "ablation"  # emimic ablate nests CELL/seedS
    finished = shutil.copytree(runs[0], folder / "paper" / "seed0")
    unfinished = shutil.copytree(runs[1], folder / "no_ema" / "seed0", ignore=shutil.ignore_patterns("metrics.json"))
    shutil.copytree(runs[1], folder / ".no_ema.replaced-0123abcd" / "seed0")  # a copy --overwrite keeps aside
    with pytest.warns(EmimicWarning, match=rf"^{re.escape(str(unfinished))}: not finished \(no metrics.json"):
        assert expand_runs([folder]) == [finished]


def test_a_run_is_reported_on_the_clips_it_validated_on_and_only_on_its_own_data(corpus, tmp_path, capsys):
    root = shutil.copytree(corpus, tmp_path / "noval", ignore=shutil.ignore_patterns(".emimic"))
    (root / "valid_split.csv").unlink()
    run = train(root, tmp_path / "held", seed=0, max_epochs=1, valid_fraction=0.25, progress=False).run
    assert main(["report", str(run)]) == 0  # scored on the share of train it held out, as its metrics.json is
    assert "Validation mean PCC" in (run / "report.html").read_text(encoding="utf-8")
    labels = pd.read_csv(root / "train_split.csv")
    labels.loc[0, "Joy"] = 1.0 - labels.loc[0, "Joy"]  # the data changed after training
    labels.to_csv(root / "train_split.csv", index=False)
    assert main(["report", str(run)]) == 1
    assert printed_error(capsys, f"{run}: was trained on other data than {root} holds now (the train labels differ);"
                                 " report it with the data it was made with (--data DIR), or train it again.")


def test_a_run_trained_on_a_float16_store_is_reported_from_either_store(corpus, tmp_path, capsys):
    root = shutil.copytree(corpus, tmp_path / "sim", ignore=shutil.ignore_patterns(".emimic"))
    store16 = tmp_path / "store16"
    pack(root, dtype="float16", store_dir=store16, progress=False)
    run = tmp_path / "half"
    assert main(["train", "--data", str(root), "--out", str(run), "--store", str(store16), "--max-epochs", "1",
                 "--quiet"]) == 0
    assert main(["report", str(run), "--store", str(store16), "--out", str(tmp_path / "16.html")]) == 0
    # the same features packed at float32 (the root's own store) are the same data to score the run on
    assert main(["report", str(run), "--out", str(tmp_path / "32.html")]) == 0, capsys.readouterr().err


def test_features_added_for_a_test_clip_leave_a_run_reportable_but_a_changed_valid_clip_does_not(corpus, tmp_path,
                                                                                                  capsys):
    root = shutil.copytree(corpus, tmp_path / "sim", ignore=shutil.ignore_patterns(".emimic"))
    test_clip, valid_clip = (f"{int(pd.read_csv(root / f'{split}_split.csv').Filename[0]):05d}.pkl"
                             for split in ("test", "valid"))
    (root / "vit" / test_clip).unlink()  # extracted only after training
    run = train(root, tmp_path / "run", seed=0, max_epochs=1, progress=False).run
    shutil.copy(corpus / "vit" / test_clip, root / "vit" / test_clip)
    assert main(["report", str(run)]) == 0, capsys.readouterr().err  # re-packed with the test clip's features
    shutil.copy(root / "vit" / test_clip, root / "vit" / valid_clip)  # a clip it validated on changed
    assert main(["report", str(run)]) == 1
    assert printed_error(capsys, f"{run}: was trained on other data than {root} holds now (the 'vit' feature files"
                                 " differ)")


def as_recorded_before_content_of(fingerprint: DataFingerprint, store: FeatureStore) -> tuple[dict, str]:
    """``fingerprint``'s modalities and digest as emimic recorded them before it marked ``content_of``: each content
    digest the sha256 of the raw bytes of the modality's whole ``sources.csv``, the digest of modalities and labels."""
    modalities = {
        name: {**entry, "content": hashlib.sha256(
            (store.path / store.manifest["modalities"][name]["dir"] / "sources.csv").read_bytes()).hexdigest()}
        for name, entry in fingerprint.modalities.items()
    }
    payload = json.dumps({"modalities": modalities, "labels": fingerprint.labels}, sort_keys=True)
    return modalities, hashlib.sha256(payload.encode()).hexdigest()


def test_a_run_and_a_cv_folder_recorded_before_content_of_keep_working_until_a_clip_they_used_changes(
        corpus, tmp_path, capsys):
    root = shutil.copytree(corpus, tmp_path / "sim", ignore=shutil.ignore_patterns(".emimic"))
    options = dict(seed=0, max_epochs=1, progress=False)
    run = train(root, tmp_path / "run", **options).run
    ds = open_dataset(root)
    store = ds.store(progress=False)
    record = json.loads((run / RECORD_FILE).read_text(encoding="utf-8"))
    dataset = record["dataset"]
    dataset.pop("content_of")
    dataset["modalities"], dataset["fingerprint"] = as_recorded_before_content_of(
        DataFingerprint(dataset["modalities"], dataset["labels"]), store)
    (run / RECORD_FILE).write_text(json.dumps(record), encoding="utf-8")
    folder = tmp_path / "cv"
    folder.mkdir()
    whole = data_fingerprint(store, store.modalities, labelled_splits(ds))
    (folder / "cv.json").write_text(json.dumps({"data": as_recorded_before_content_of(whole, store)[1]}))

    def folder_check() -> bool:
        return check_folder_settings(folder, "cv.json",
                                     {"data": corpus_fingerprint(ds, store, folder / "cv.json", needed=None).recorded},
                                     kind="CV", overwrite=False)

    assert main(["report", str(run)]) == 0, capsys.readouterr().err
    assert train(root, run, **options).run == run  # the same run: taken as it is
    assert folder_check() is False
    valid_clip, other_clip = (f"{clip:05d}.pkl" for clip in pd.read_csv(root / "valid_split.csv").Filename[:2])
    shutil.copy(root / "vit" / other_clip, root / "vit" / valid_clip)  # a clip it validated on changed
    ds = open_dataset(root)
    store = ds.store(progress=False)
    assert main(["report", str(run)]) == 1
    assert printed_error(capsys, f"{run}: was trained on other data than {root} holds now (the 'vit' feature files"
                                 " differ)")
    with pytest.raises(OutputConflict, match="the 'vit' feature files differ"):
        train(root, run, **options)
    with pytest.raises(ConfigError, match="was made with other data"):
        folder_check()


ONE_CELL = Grid(cells={"paper": None})
ONE_RATE = SearchSpace.model_validate({"params": {"optim.lr": {"type": "float", "low": 1e-3, "high": 2e-3}}})
# Each folder of many runs: how it is made in one epoch (``other``: with other settings) and its settings file.
MANY_RUNS = {
    "cv": (lambda root, out, other=False, **kw: cross_validate(root, out, folds=2, fold_seed=int(other), max_epochs=1,
                                                              progress=False, **kw), "cv.json"),
    "ablate": (lambda root, out, other=False, **kw: ablate(root, out, grid=ONE_CELL, seeds=[int(other)], max_epochs=1,
                                                          progress=False, **kw), "ablation.json"),
    "sweep": (lambda root, out, other=False, **kw: sweep(root, out, trials=1, space=ONE_RATE, seed=int(other),
                                                        max_epochs=1, progress=False, **kw), "sweep.json"),
}


@pytest.mark.parametrize("command", list(MANY_RUNS))
def test_a_folder_of_an_earlier_emimic_replaced_records_the_data_afresh(command, make_root):
    """It kept the earlier emimic's digest of every clip's features: features of a test clip extracted later then
    made the new folder 'other data', refused until --overwrite again."""
    make, settings_file = MANY_RUNS[command]
    root = make_root(train=24, valid=8, test=2, dims={"vit": 4}, missing={"vit": [102]})  # 102: the last test clip
    out = root.parent / command
    make(root, out)
    ds = open_dataset(root)
    store = ds.store(progress=False)
    now = data_fingerprint(store, store.modalities, labelled_splits(ds))
    settings = json.loads((out / settings_file).read_text(encoding="utf-8"))
    assert settings["data"] == now.digest
    (out / settings_file).write_text(json.dumps({**settings, "data": as_recorded_before_content_of(now, store)[1]}))
    make(root, out, other=True, overwrite=True)  # replaced, made with other settings
    assert json.loads((out / settings_file).read_text(encoding="utf-8"))["data"] == now.digest
    shutil.copy(root / "vit" / "00099.pkl", root / "vit" / "00102.pkl")  # a test clip's features, extracted later
    make(root, out, other=True)  # resumed


def test_a_folder_recorded_with_every_modality_resumes_on_the_same_data_when_its_runs_read_fewer(make_root) -> None:
    """A folder's digest covers only the modalities its runs read; one recorded before, of every modality (with or
    without the content_of mark), is still this data's."""
    root = make_root(train=6, valid=4, dims={"vit": 4, "wav2vec2": 3})
    ds = open_dataset(root)
    store = ds.store(progress=False)
    whole = data_fingerprint(store, store.modalities, labelled_splits(ds))
    settings = root.parent / "ablation.json"
    for recorded in (whole.digest, as_recorded_before_content_of(whole, store)[1]):
        settings.write_text(json.dumps({"data": recorded}), encoding="utf-8")
        folder = corpus_fingerprint(ds, store, settings, needed={"vit"})
        assert folder.recorded == recorded
        assert folder.digest == data_fingerprint(store, ["vit"], labelled_splits(ds)).digest != recorded


def test_evaluate_test_split_with_labels_file_and_per_clip_predictions(runs, corpus, tmp_path, capsys):
    truth = corpus / TRUTH_DIR / "test_labels.csv"
    clips = tmp_path / "clips.csv"
    scores = tmp_path / "test.json"
    assert main(["evaluate", "--run", str(runs[0]), "--data", str(corpus), "--split", "test", "--labels", str(truth),
                 "--predictions", str(clips), "--json", str(scores)]) == 0
    assert "test (48 clips)" in capsys.readouterr().out
    frame = pd.read_csv(clips, index_col="Filename")
    expected = pd.read_csv(truth, index_col="Filename").loc[frame.index]
    np.testing.assert_allclose(frame[[f"true {e}" for e in EMOTIONS]].to_numpy(), expected.to_numpy(), atol=1e-6)
    assert frame.filter(like="has ").shape[1] == 3 and len(frame) == 48
    payload = json.loads(scores.read_text())
    assert payload["mean_pcc"] > 0.2 and payload["pcc_ci95"]["mean"][0] < payload["mean_pcc"]

    assert main(["evaluate", "--run", str(runs[0]), "--data", str(corpus), "--split", "test"]) == 1
    assert printed_error(capsys, "the 'test' split has no labels to evaluate against; give them with --labels FILE")
    partial = tmp_path / "partial.csv"
    pd.read_csv(truth).iloc[2:].to_csv(partial, index=False)
    assert main(["evaluate", "--run", str(runs[0]), "--data", str(corpus), "--split", "test",
                 "--labels", str(partial)]) == 1
    assert printed_error(capsys, f"{partial}: no labels for 2 clips of the 'test' split")


def test_no_output_is_written_inside_a_run_folder_being_read_even_with_overwrite(runs, corpus, tmp_path, capsys):
    """`predict --out RUN/checkpoints/best.ckpt --overwrite` replaced the weights it read: the run was lost. A run's
    own report (RUN/report.html, report's default) is the one file written into it."""
    run, folder = runs[0], runs[0].parent  # folder: a folder of runs, as a CV folder is
    kept = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    refused = {
        ("predict", "--run", str(run), "--data", str(corpus), "--out", str(run / "checkpoints" / "best.ckpt")): run,
        ("predict", "--run", str(folder), "--data", str(corpus), "--out", str(run / "metrics.json")): folder,
        ("evaluate", "--run", str(run), "--data", str(corpus), "--json", str(run / "config.yaml")): run,
        ("evaluate", "--run", str(run), "--data", str(corpus), "--predictions", f"{run}/../{run.name}/run.json"): run,
        ("report", str(run), "--out", str(run / "checkpoints" / "report.html")): run,
    }
    for argv, reads in refused.items():
        assert main([*argv, "--overwrite"] if argv[0] != "report" else list(argv)) == 1, argv
        assert printed_error(capsys, f"{argv[-1]} is inside {reads}, which holds the run(s) this command reads; choose"
                                     " a path outside it."), argv
    with pytest.raises(OutputConflict, match=r"metrics\.json is inside .*, which holds the run\(s\) this command"):
        infer(run, [tmp_path], out=run / "metrics.json")
    assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == kept


def chromium() -> str | None:
    found = next(filter(None, map(shutil.which, ("chromium-headless-shell", "chromium", "chromium-browser"))), None)
    if found is None and os.environ.get("CI") == "true":
        pytest.fail("no chromium binary on PATH: CI must install chromium-headless-shell (see .ci/run)")
    return found


def browser_state(page: Path, profile: Path, *, screenshot: Path | None = None) -> dict[str, str]:
    """The ``data-*`` attributes the report's onload script sets, as rendered by headless Chromium."""
    binary = chromium()
    if binary is None:
        pytest.skip("no chromium binary (install chromium-headless-shell); required when CI=true")
    flags = [binary, "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}", "--hide-scrollbars"]
    if screenshot is not None:
        subprocess.run([*flags, "--window-size=1200,2400", f"--screenshot={screenshot}", page.as_uri()],
                       check=True, capture_output=True, timeout=120)
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], check=True, capture_output=True, text=True,
                         timeout=120).stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body is not None, dom[:500]
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1)))


def test_report_renders_in_a_headless_browser(report, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(report, encoding="utf-8")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    state = browser_state(page, tmp_path / "profile", screenshot=shot)
    assert state == {"broken-images": "0", "images": str(len(embedded_pngs(report))), "errors": "0", "ready": "1"}
    assert np.asarray(Image.open(shot)).std() > 1.0  # the screenshot shows something

    broken = tmp_path / "broken.html"
    broken.write_text(report.replace("base64,iVBOR", "base64,XXXX", 1).replace("</body>", "<script>x(</script></body>"))
    state = browser_state(broken, tmp_path / "profile")
    assert state["broken-images"] == "1" and state["errors"] == "1"


def test_a_report_replaces_an_earlier_report_never_another_file(tmp_path, monkeypatch, capsys):
    """Checked before any run is read (so no run is needed here); the demo test re-renders its report in place."""
    mine = tmp_path / "mine.html"
    mine.write_text("<html>my notes</html>")
    assert main(["report", str(tmp_path / "run"), "--out", str(mine)]) == 1
    assert f"{mine}: exists and is not an emimic report, so it is kept" in capsys.readouterr().err
    assert mine.read_text() == "<html>my notes</html>"
    real_open = Path.open

    def unreadable(path: Path, *args, **kwargs):
        if path == mine:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    with monkeypatch.context() as patched:  # as root, chmod cannot make a file unreadable
        patched.setattr(Path, "open", unreadable)
        assert main(["report", str(tmp_path / "run"), "--out", str(mine)]) == 1
    assert f"{mine}: exists and cannot be read (Permission denied), so it is kept" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="2"):
        main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "missing" / "r.html")])
    assert "does not exist; create it first" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()


def test_docs_python_example_runs(tmp_path, monkeypatch, capsys):
    page = (Path(__file__).parents[1] / "docs" / "report.md").read_text(encoding="utf-8")
    (example,) = re.findall(r"## From Python\n\n<!-- executed by [^\n]*\n```python\n(.*?)```", page, flags=re.S)
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "docs/report.md", "exec"), {})
    assert capsys.readouterr().out.strip() == "compare.html"
    assert "Comparison of 3 runs" in (tmp_path / "compare.html").read_text(encoding="utf-8")


def test_the_provenance_says_when_a_run_is_a_seed_ensemble(report: str) -> None:
    assert report.count("a seed ensemble of 5 models") == 1  # the default preset's run; the paper run is one model


def test_characters_the_plot_font_lacks_are_one_warning_line_per_figure() -> None:
    fig = Figure()
    fig.subplots().set_title("面部 au-2")  # a modality name in a script DejaVu Sans lacks
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        png_html(fig, "sequence lengths")
    assert [str(w.message) for w in caught] == [
        "sequence lengths: the plot's font cannot draw '面部', which shows there as boxes (the report's tables show it"
        " as written)."]
    assert all(issubclass(w.category, EmimicWarning) for w in caught)
