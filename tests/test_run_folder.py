"""Run folders are never silently reused, mixed or overwritten; failed starts and Ctrl-C leave nothing in the way."""

import json
import re
import shlex
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import lightning.pytorch as pl
import pandas as pd
import pytest

from conftest import flat
from emimic.cli import main
from emimic.config import config_to_yaml, load_config
from emimic.errors import ConfigError, OutputConflict
from emimic.io import write_text
from emimic.labels import EMOTIONS
from emimic.training.history import History
from emimic.training.inference import predict
from emimic.training.provenance import DataFingerprint, RunRecord, differences, read_run_record
from emimic.training.run import train

DOCS = Path(__file__).parents[1] / "docs" / "training.md"


def train_cli(root, run, *extra: str, epochs: int = 2) -> int:
    return main(["train", "--data", str(root), "--out", str(run), "--max-epochs", str(epochs), "--quiet", *extra])


class CrashAt(pl.Callback):
    def __init__(self, epoch: int, error: BaseException):
        self.epoch, self.error = epoch, error

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise self.error


def test_a_finished_run_is_shown_only_for_the_same_data_and_settings(make_root, tmp_path, capsys):
    root, run = make_root("a"), tmp_path / "run"
    assert train_cli(root, run) == 0
    metrics = (run / "metrics.json").read_bytes()
    capsys.readouterr()

    assert train_cli(make_root("b", seed=1), run) == 1
    printed = capsys.readouterr()
    assert flat(printed.err) == (
        f"error: {run} holds a finished run made with other settings or data (the 'vit' feature files differ;"
        " the 'wav2vec2' feature files differ; the train labels differ; and 1 more); choose another --out, or"
        " pass --overwrite to replace it."
    )
    assert "Validation" not in printed.out

    assert train_cli(root, run, "--seed", "5") == 1
    assert "(seed was 0, now 5)" in flat(capsys.readouterr().err)

    # the same data elsewhere, copied with new file times and no store: the same run
    copy = shutil.copytree(root, tmp_path / "copy", copy_function=shutil.copy, ignore=shutil.ignore_patterns(".emimic"))
    assert train_cli(copy, run) == 0
    printed = capsys.readouterr().out
    assert f"{run} already finished; showing stored results" in flat(printed) and "Validation" in printed
    assert (run / "metrics.json").read_bytes() == metrics  # nothing was trained again

    assert train_cli(root, run, "--seed", "5", "--overwrite") == 0
    assert read_run_record(run).config.seed == 5
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # the old run is gone


def test_a_changed_label_file_is_named(make_root, tmp_path):
    root, run = make_root(), tmp_path / "run"
    train(root, run, max_epochs=1, progress=False)
    labels = pd.read_csv(root / "valid_split.csv")
    labels.loc[0, "Joy"] = 1 - labels.loc[0, "Joy"]
    labels.to_csv(root / "valid_split.csv", index=False)
    with pytest.raises(OutputConflict, match=r"\(the valid labels differ\)"):
        train(root, run, max_epochs=1, progress=False)


def test_overwrite_keeps_the_old_run_until_the_new_one_saved_an_epoch(make_root, tmp_path):
    root, run = make_root(), tmp_path / "run"
    train(root, run, max_epochs=1, progress=False)
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(RuntimeError, match="crash"):
        train(root, run, max_epochs=1, seed=4, overwrite=True, progress=False,
              callbacks=[CrashAt(0, RuntimeError("crash"))])
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root", "run"]


def test_a_folder_emimic_did_not_make_is_never_replaced(make_root, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(OutputConflict, match="is not empty and holds no emimic run"):
        train(make_root(), folder, max_epochs=1, overwrite=True, progress=False)
    assert (folder / "notes.txt").read_text() == "keep me"


def test_a_run_folder_inside_the_dataset_is_refused(make_root):
    root = make_root()
    with pytest.raises(OutputConflict, match="is inside the dataset root"):
        train(root, root / "runs" / "a", max_epochs=1, progress=False)
    assert not (root / "runs").exists()


def test_failed_starts_leave_nothing_that_blocks_the_corrected_command(make_root, tmp_path):
    root, run = make_root(), tmp_path / "run"
    with pytest.raises((ValueError, ConfigError)):  # ConfigError once seeds are range-checked up front
        train(root, run, seed=-1, max_epochs=1, progress=False)
    assert not run.exists()
    typo = tmp_path / "typo.yaml"
    typo.write_text("optim:\n  lr: 0.01\n  momentum: 0.9\n")
    with pytest.raises(ConfigError):
        train(root, run, config=typo, max_epochs=1, progress=False)
    assert not run.exists()
    with pytest.raises(RuntimeError, match="crash"):
        train(root, run, max_epochs=1, progress=False, callbacks=[CrashAt(0, RuntimeError("crash"))])
    assert not run.exists()
    run.mkdir()  # a folder the user made keeps existing, empty
    with pytest.raises(RuntimeError, match="crash"):
        train(root, run, max_epochs=1, progress=False, callbacks=[CrashAt(0, RuntimeError("crash"))])
    assert list(run.iterdir()) == []
    # what a killed start leaves (config and record, no saved epoch) does not block another config either
    write_text(run / "config.yaml", config_to_yaml(load_config("paper", overrides={"seed": 9})))
    assert train(root, run, seed=1, max_epochs=1, progress=False).epochs == 1
    assert read_run_record(run).config.seed == 1


def test_ctrl_c_says_what_was_kept_and_the_same_command_resumes(make_root, tmp_path, capsys, monkeypatch):
    root, run, whole = make_root(), tmp_path / "run", tmp_path / "whole"
    assert train_cli(root, whole, epochs=4) == 0
    handler = signal.getsignal(signal.SIGINT)
    presses = iter([KeyboardInterrupt()])

    def ctrl_c_at_third_epoch(self, trainer, pl_module):
        if trainer.current_epoch == 2:
            raise next(presses, None) or RuntimeError("pressed twice")

    with monkeypatch.context() as patch:
        patch.setattr(History, "on_train_epoch_start", ctrl_c_at_third_epoch, raising=False)
        capsys.readouterr()
        assert train_cli(root, run, epochs=4) == 130
    err = capsys.readouterr().err
    last = run / "checkpoints" / "last.ckpt"
    assert err.strip() == (f"interrupted: kept {run} after epoch 2/4 (resume point {last}); run the same command"
                           " to resume.")
    assert signal.getsignal(signal.SIGINT) is handler  # a second Ctrl-C still works
    assert train_cli(root, run, epochs=4) == 0
    assert without_times(run / "metrics.json") == without_times(whole / "metrics.json")


def without_times(metrics: Path) -> dict:
    """``metrics.json`` less the wall times, which differ between any two runs."""
    stored = json.loads(metrics.read_text())
    del stored["seconds"], stored["provenance"]["training"]["wall_seconds"]
    return stored


class TermAt(pl.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)  # the handler, now: a real signal comes late


def test_sigterm_stops_like_ctrl_c_not_as_a_success(make_root, tmp_path):
    run = tmp_path / "run"
    earlier = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # Lightning's handler only, not one another test left
    try:
        with pytest.raises(KeyboardInterrupt, match=r"kept .*run after epoch 2/3 \(resume point"):
            train(make_root(), run, max_epochs=3, progress=False, callbacks=[TermAt()])
    finally:
        signal.signal(signal.SIGTERM, earlier)
    assert not (run / "metrics.json").exists()


def test_ctrl_c_before_the_first_epoch_keeps_nothing(make_root, tmp_path, capsys):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt, match=f"no epoch had finished, so nothing of this run was kept in {run};"):
        train(make_root(), run, max_epochs=1, progress=False, callbacks=[CrashAt(0, KeyboardInterrupt())])
    assert not run.exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from conftest import write_root

    base = tmp_path_factory.mktemp("trained")
    root = write_root(base / "root")
    train(root, base / "run", max_epochs=1, progress=False)
    return root, base / "run"


def test_ctrl_c_before_the_first_epoch_of_an_overwrite_says_the_old_run_is_back(trained, tmp_path):
    """It said 'kept RUN after epoch 1/2 ...; run the same command to resume', of the old run put back."""
    root, trained_run = trained
    run = shutil.copytree(trained_run, tmp_path / "run")
    metrics = (run / "metrics.json").read_bytes()
    with pytest.raises(KeyboardInterrupt, match=r"^no epoch had finished, so nothing of this run was kept and the run"
                                                rf" that was in {re.escape(str(run))} is back in place; run the same"
                                                r" command to start again\.$"):
        train(root, run, seed=3, max_epochs=2, overwrite=True, progress=False,
              callbacks=[CrashAt(0, KeyboardInterrupt())])
    assert (run / "metrics.json").read_bytes() == metrics


def test_predict_never_writes_into_the_dataset_nor_over_a_file(trained, tmp_path, capsys):
    root, run = trained
    labels = (root / "train_split.csv").read_bytes()
    assert main(["predict", "--run", str(run), "--data", str(root), "--out", str(root / "train_split.csv"),
                 "--overwrite"]) == 1
    assert f"{root / 'train_split.csv'} is inside the dataset root {root}" in flat(capsys.readouterr().err)
    assert (root / "train_split.csv").read_bytes() == labels

    mine = tmp_path / "mine.csv"
    mine.write_text("my notes\n")
    assert main(["predict", "--run", str(run), "--data", str(root), "--out", str(mine)]) == 1
    assert flat(capsys.readouterr().err) == (
        f"error: {mine} already exists; pass --overwrite to replace it, or choose another path.")
    assert mine.read_text() == "my notes\n"
    with pytest.raises(OutputConflict, match="already exists"):
        predict(run, root, out=mine)
    assert main(["predict", "--run", str(run), "--data", str(root), "--out", str(mine), "--overwrite"]) == 0
    assert list(pd.read_csv(mine).columns) == ["Filename", *EMOTIONS]


def test_evaluate_json_follows_the_same_rules(trained, tmp_path, capsys):
    root, run = trained
    args = ["evaluate", "--run", str(run), "--data", str(root), "--json"]
    assert main([*args, str(root / "scores.json")]) == 1
    assert "is inside the dataset root" in flat(capsys.readouterr().err)
    assert not (root / "scores.json").exists()
    scores = tmp_path / "scores.json"
    scores.write_text("{}")
    assert main([*args, str(scores)]) == 1
    assert scores.read_text() == "{}"
    assert main([*args, str(scores), "--overwrite"]) == 0
    assert json.loads(scores.read_text())["split"] == "valid"


def _record(**changes) -> RunRecord:
    features = {"vit": {"dim": 8, "dtype": "float32", "content": "c1"}, "wav2vec2": {"dim": 12, "dtype": "float32",
                                                                                      "content": "c2"}}
    data = DataFingerprint(changes.pop("modalities", features), {"train": "t", "valid": "v"})
    return RunRecord(load_config("paper", overrides=changes), data)


@pytest.mark.parametrize(("modalities", "expected"), [
    ({"vit": {"dim": 9, "dtype": "float32", "content": "c9"}, "wav2vec2": {"dim": 12, "dtype": "float32",
                                                                             "content": "c2"}},
     ["'vit' features were 8 wide, now 9"]),
    ({"vit": {"dim": 8, "dtype": "float16", "content": "c1"}, "wav2vec2": {"dim": 12, "dtype": "float32",
                                                                             "content": "c2"}},
     ["'vit' features were stored as float32, now float16"]),
    ({"vit": {"dim": 8, "dtype": "float32", "content": "c1"}},
     ["it read modalities vit, wav2vec2, now vit"]),
])
def test_differences_name_what_changed_in_the_data(modalities, expected):
    assert differences(_record(), _record(modalities=modalities)) == expected


def test_differences_name_changed_settings_and_unrecorded_data():
    assert differences(_record(), _record()) == []
    assert differences(_record(), _record(**{"optim.lr": 0.01})) == ["optim.lr was 0.002, now 0.01"]
    legacy = RunRecord(load_config("paper"), None)
    assert differences(legacy, _record()) == ["its data was not recorded (it was made by an earlier emimic)"]


def documented_session(test: str) -> Iterator[tuple[list[str], int, list[str]]]:
    """The commands of the docs block marked ``<!-- executed by tests/test_run_folder.py::test -->``, each with the
    exit status and the quoted output its comment announces (``# exit 1: "..."``; no status means 0)."""
    marker = f"<!-- executed by tests/test_run_folder.py::{test} -->\n```bash\n"
    block = DOCS.read_text().split(marker, 1)[1].split("```", 1)[0]
    for line in block.splitlines():
        command, _, comment = line.partition("#")
        status = re.search(r"exit (\d+)", comment)
        yield shlex.split(command)[1:], int(status.group(1)) if status else 0, re.findall(r'"([^"]*)"', comment)


def test_the_documented_session_behaves_as_documented(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    session = list(documented_session("test_the_documented_session_behaves_as_documented"))
    assert len(session) == 9
    for argv, status, quoted in session:
        assert main(argv) == status, argv
        printed = flat(" ".join(capsys.readouterr()))
        for fragment in quoted:
            assert fragment in printed, argv
