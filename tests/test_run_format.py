"""A run records its model format; a run older than a change that alters its predictions, or newer than this
emimic, is refused wherever runs are loaded or resumed, and the runs no change affects keep loading.

An "old" run is a run trained here whose run.json lost its model_format: exactly what a run made before emimic
recorded the number looks like."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest

import emimic
from conftest import flat
from emimic.cli import main
from emimic.config import load_config
from emimic.errors import IncompatibleRun
from emimic.models.formats import CHANGES, FIRST_FORMAT, MODEL_FORMAT, changes_since, format_table
from emimic.training.inference import evaluate, load_run
from emimic.training.provenance import FORMAT_KEY, RECORD_FILE
from emimic.training.run import train

DOCS = Path(__file__).parents[1] / "docs" / "training.md"
FUSIONS = ("attention", "concat")


def old_run_refusal(run: Path) -> str:
    return (f"{run} was trained with model format 1, and since format 2 the attention fusion reads learned"
            " missing-modality tokens instead of masking absent modalities out, which changes its predictions on"
            " clips that lack a modality; train it again with this emimic (the same emimic train command with"
            " --overwrite).")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """A small root (some clips lack audio) and a one-epoch run of each fusion of :data:`FUSIONS` on it; tests copy
    a run before editing it."""
    from conftest import write_root

    base = tmp_path_factory.mktemp("formats")
    root = write_root(base / "root", missing={"wav2vec2": [3, 39, 57]})
    runs = {fusion: base / fusion for fusion in FUSIONS}
    for fusion, run in runs.items():
        train(root, run, max_epochs=1, overrides={"model.fusion": fusion}, progress=False)
    return root, runs


def copy_as(run: Path, into: Path, model_format: object | None) -> Path:
    """A copy of ``run`` at ``into`` whose run.json records ``model_format`` (None: records none, as an old run)."""
    copy = Path(shutil.copytree(run, into))
    record = json.loads((copy / RECORD_FILE).read_text(encoding="utf-8"))
    record.pop(FORMAT_KEY)
    if model_format is not None:
        record[FORMAT_KEY] = model_format
    (copy / RECORD_FILE).write_text(json.dumps(record), encoding="utf-8")
    return copy


class FitStarts(pl.Callback):
    def __init__(self) -> None:
        self.count = 0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.count += 1


def train_cli(root: Path, run: Path, *extra: str) -> int:
    return main(["train", "--data", str(root), "--out", str(run), "--max-epochs", "1", "--quiet", *extra])


def test_a_run_records_the_model_format_of_the_emimic_that_trained_it(trained):
    _, runs = trained
    for run in runs.values():
        assert json.loads((run / RECORD_FILE).read_text(encoding="utf-8"))[FORMAT_KEY] == MODEL_FORMAT
        metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
        assert metrics["provenance"][FORMAT_KEY] == MODEL_FORMAT  # a reported figure says what computed it
    assert load_run(runs["attention"]).config.model.fusion == "attention"


@pytest.mark.parametrize("command", ["evaluate", "predict", "report", "infer"])
def test_every_command_refuses_an_attention_run_from_before_the_missing_tokens(trained, tmp_path, capsys, command):
    root, runs = trained
    old = copy_as(runs["attention"], tmp_path / "old", None)
    argv = {"evaluate": ["evaluate", "--run", str(old), "--data", str(root)],
            "predict": ["predict", "--run", str(old), "--data", str(root), "--out", str(tmp_path / "sub.csv")],
            "report": ["report", str(old), "--out", str(tmp_path / "report.html")],
            "infer": ["infer", "--run", str(old), str(tmp_path / "clip.mp4"), "--out", str(tmp_path / "p.csv")]}
    assert main(argv[command]) == 1
    assert flat(capsys.readouterr().err) == f"error: {old_run_refusal(old)}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]  # nothing written


def test_a_run_without_run_json_is_as_old(trained, tmp_path):
    _, runs = trained
    old = Path(shutil.copytree(runs["attention"], tmp_path / "old"))
    (old / RECORD_FILE).unlink()
    with pytest.raises(IncompatibleRun, match=re.escape(old_run_refusal(old))):
        load_run(old)


def test_an_ensemble_with_an_old_attention_member_is_refused_naming_it(trained, tmp_path):
    root, runs = trained
    copy_as(runs["concat"], tmp_path / "cv" / "fold0", None)
    old = copy_as(runs["attention"], tmp_path / "cv" / "fold1", None)
    with pytest.raises(IncompatibleRun, match=re.escape(old_run_refusal(old))):
        evaluate(tmp_path / "cv", root)


def test_train_refuses_to_show_or_resume_an_old_attention_run_and_overwrite_retrains_it(trained, tmp_path, capsys):
    root, runs = trained
    old = copy_as(runs["attention"], tmp_path / "old", None)
    assert train_cli(root, old) == 1  # finished: would show its stored results
    assert flat(capsys.readouterr().err) == f"error: {old_run_refusal(old)}"
    (old / "metrics.json").unlink()  # unfinished: would resume from last.ckpt
    fit = FitStarts()
    with pytest.raises(IncompatibleRun, match=re.escape(old_run_refusal(old))):
        train(root, old, max_epochs=1, progress=False, callbacks=[fit])
    assert fit.count == 0  # refused before resuming, not by the evaluation after it

    assert train_cli(root, old, "--overwrite") == 0
    assert json.loads((old / RECORD_FILE).read_text(encoding="utf-8"))[FORMAT_KEY] == MODEL_FORMAT
    load_run(old)


def test_runs_of_other_fusions_from_before_the_number_keep_loading_and_resuming(trained, tmp_path, capsys):
    root, runs = trained
    old = copy_as(runs["concat"], tmp_path / "old", None)
    np.testing.assert_array_equal(evaluate(old, root).arrays()[0], evaluate(runs["concat"], root).arrays()[0])
    assert train_cli(root, old) == 0
    assert f"{old} already finished; showing stored results" in flat(capsys.readouterr().out)
    (old / "metrics.json").unlink()  # unfinished: resumes from last.ckpt
    fit = FitStarts()
    train(root, old, max_epochs=1, progress=False, callbacks=[fit])
    assert fit.count == 1 and (old / "metrics.json").exists()


def newer_refusal(run: Path) -> str:
    return (f"{run} was made by a newer emimic (model format {MODEL_FORMAT + 1}; emimic {emimic.__version__} knows"
            f" formats up to {MODEL_FORMAT}); upgrade emimic to use it, or train it again with --overwrite.")


def test_a_run_of_a_newer_format_is_refused_before_its_config_is_read(trained, tmp_path, capsys):
    root, runs = trained
    newer = copy_as(runs["concat"], tmp_path / "newer", MODEL_FORMAT + 1)
    with pytest.raises(IncompatibleRun, match=re.escape(newer_refusal(newer))):
        load_run(newer)
    # a newer emimic may write settings this one does not know: the format is what the user must hear about
    with (newer / "config.yaml").open("a", encoding="utf-8") as config:
        config.write("newer_setting: 1\n")
    assert train_cli(root, newer) == 1
    assert flat(capsys.readouterr().err) == f"error: {newer_refusal(newer)}"


@pytest.mark.parametrize("model_format", ["2", True])
def test_a_model_format_that_is_no_number_is_refused(trained, tmp_path, model_format):
    _, runs = trained
    edited = copy_as(runs["concat"], tmp_path / "edited", model_format)
    with pytest.raises(IncompatibleRun, match=re.escape(f"{edited / RECORD_FILE}: model_format {model_format!r} is"
                                                         " not a model format (a whole number from 1); restore the"
                                                         " file emimic wrote, or train the run again with"
                                                         " --overwrite.")):
        load_run(edited)


@pytest.mark.parametrize("content", ["{", "[1]"])
def test_a_damaged_run_json_is_refused_naming_it(trained, tmp_path, capsys, content):
    root, runs = trained
    damaged = Path(shutil.copytree(runs["concat"], tmp_path / "damaged"))
    (damaged / RECORD_FILE).write_text(content, encoding="utf-8")
    assert main(["evaluate", "--run", str(damaged), "--data", str(root)]) == 1
    assert flat(capsys.readouterr().err).startswith(f"error: {damaged / RECORD_FILE}: cannot be read as the record"
                                                    " of a run")


@pytest.mark.parametrize("edit", ["newer", "damaged"])
def test_overwrite_replaces_a_run_this_emimic_cannot_read(trained, tmp_path, edit):
    root, runs = trained
    run = copy_as(runs["concat"], tmp_path / "run", MODEL_FORMAT + 1)
    if edit == "damaged":
        (run / RECORD_FILE).write_text("{", encoding="utf-8")
    (run / "stale.txt").write_text("from the replaced run", encoding="utf-8")
    assert train_cli(root, run, "--overwrite") == 0
    assert json.loads((run / RECORD_FILE).read_text(encoding="utf-8"))[FORMAT_KEY] == MODEL_FORMAT
    assert not (run / "stale.txt").exists()  # replaced whole, not written over
    load_run(run)


def test_the_check_of_a_run_folder_before_training_names_what_overwrite_resolves(trained, tmp_path):
    # what `cv` and `ablate` check every run folder with before any run trains (emimic.training.jobs)
    from emimic.data import open_dataset
    from emimic.errors import OutputConflict
    from emimic.training.run import run_differences

    root, runs = trained
    ds = open_dataset(root)
    config = {fusion: load_config(run / "config.yaml") for fusion, run in runs.items()}
    assert run_differences(runs["concat"], ds, config["concat"]) == []  # the same run: resumed or reused
    old = copy_as(runs["attention"], tmp_path / "old", None)
    assert run_differences(old, ds, config["attention"]) == [old_run_refusal(old).partition("; train it")[0]]
    newer = copy_as(runs["concat"], tmp_path / "newer", MODEL_FORMAT + 1)
    assert run_differences(newer, ds, config["concat"]) == [newer_refusal(newer).partition("; upgrade")[0]]
    (newer / RECORD_FILE).write_text("{", encoding="utf-8")
    [damaged] = run_differences(newer, ds, config["concat"])
    assert damaged.startswith(f"{newer / RECORD_FILE}: cannot be read as the record of a run")
    # the files a resume or a reuse would trip on, which train refuses too
    damaged = shutil.copytree(runs["concat"], tmp_path / "damaged")
    (damaged / "metrics.json").write_text("[]", encoding="utf-8")
    [reason] = run_differences(damaged, ds, config["concat"])
    assert reason.startswith(f"{damaged / 'metrics.json'}: cannot be read as the metrics of a run")
    (damaged / "checkpoints" / "best.ckpt").unlink()
    assert run_differences(damaged, ds, config["concat"]) == [
        f"{damaged / 'checkpoints' / 'best.ckpt'}: is missing, so the weights of this run are lost"]
    (damaged / "metrics.json").unlink()
    (damaged / "checkpoints" / "last.ckpt").write_bytes(b"truncated")
    [reason] = run_differences(damaged, ds, config["concat"])
    assert reason.startswith(f"{damaged / 'checkpoints' / 'last.ckpt'}: cannot be read as a checkpoint")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("not a run", encoding="utf-8")
    with pytest.raises(OutputConflict, match="is not empty and holds no emimic run"):  # --overwrite does not help
        run_differences(tmp_path / "notes", ds, config["concat"])


def test_a_resumed_sweep_refuses_an_attention_trial_from_before_the_missing_tokens(trained, tmp_path, capsys):
    from emimic.training.sweep import SETTINGS_FILE, TRIALS_DIR

    root, runs = trained
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  optim.lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\n", encoding="utf-8")
    argv = ["sweep", "--data", str(root), "--out", str(tmp_path / "sweep"), "--trials", "1", "--max-epochs", "1",
            "--space", str(space), "--config", "paper", "--quiet"]
    settings = tmp_path / "sweep" / SETTINGS_FILE
    assert main(argv) == 0 and settings.exists()
    capsys.readouterr()
    trial = next((tmp_path / "sweep" / TRIALS_DIR).iterdir())
    shutil.rmtree(trial)
    copy_as(runs["attention"], trial, None)  # as an attention trial made before the change would be
    assert main([*argv[:5], "--trials", "2", *argv[7:]]) == 1
    assert flat(capsys.readouterr().err) == (
        f"error: {trial} was trained with model format 1, and since format 2 the attention fusion reads learned"
        " missing-modality tokens instead of masking absent modalities out, which changes its predictions on clips"
        " that lack a modality, so the sweep cannot rank it with new trials; pass --overwrite to replace the sweep"
        f" {tmp_path / 'sweep'}, or choose a new --out.")
    assert main([*argv[:5], "--trials", "2", *argv[7:], "--overwrite"]) == 0  # the advice works: a new sweep
    assert sorted(p.name for p in (tmp_path / "sweep" / TRIALS_DIR).iterdir()) == ["0000", "0001"]
    assert json.loads((trial / RECORD_FILE).read_text(encoding="utf-8"))[FORMAT_KEY] == MODEL_FORMAT


def test_the_changelog_numbers_each_change_once_and_names_the_runs_it_alters():
    assert [change.format for change in CHANGES] == list(range(FIRST_FORMAT + 1, MODEL_FORMAT + 1))
    attention, concat = (load_config("paper", overrides={"model.fusion": f}) for f in FUSIONS)
    assert changes_since(FIRST_FORMAT, attention) == [CHANGES[0]]
    assert changes_since(FIRST_FORMAT, concat) == []
    assert changes_since(MODEL_FORMAT, attention) == []


def test_the_docs_show_the_changelog_and_the_refusal():
    text = DOCS.read_text(encoding="utf-8")
    assert format_table() in text
    assert f"error: {old_run_refusal(Path('runs/a'))}" in flat(text)
