import json
import re
import shutil
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from emimic.cli import main
from emimic.config import load_config, with_overrides
from emimic.errors import ConfigError, DataError, NothingSaved
from emimic.registry import ENCODERS, FUSIONS
from emimic.training.sweep import (
    DEFAULT_SPACE,
    SETTINGS_FILE,
    SearchSpace,
    finished_trials,
    load_space,
    open_storage,
    sweep,
)

# The first trial learns, the second cannot (lr 1e-7): with pruning allowed from the first epoch after one
# finished trial, the median pruner must stop it after its first epoch. The third is sampled.
PRUNING_SPACE = {
    "params": {"optim.lr": {"type": "categorical", "choices": [0.01, 1.0e-7]},
               "model.branch.embed": {"type": "int", "low": 8, "high": 32}},
    "pruner": {"startup_trials": 1, "warmup_epochs": 0},
    "enqueue": [{"optim.lr": 0.01, "model.branch.embed": 16}, {"optim.lr": 1.0e-7, "model.branch.embed": 16}],
}
OPTIONS = dict(max_epochs=3, config="paper", progress=False)
# Another sweep, as small as one can be: its trials train 1 epoch, and no trial is pruned.
OTHER_SPACE = SearchSpace.model_validate({"params": {"optim.lr": {"type": "categorical", "choices": [0.005, 0.02]}},
                                          "pruner": {"startup_trials": 5, "warmup_epochs": 0}})
OTHER = dict(space=OTHER_SPACE, max_epochs=1, config="paper", progress=False)


@pytest.fixture(scope="module")
def swept(simulated_root, tmp_path_factory):
    """A finished 3-trial sweep of the learning corpus."""
    out = tmp_path_factory.mktemp("sweep") / "sweep"
    space = SearchSpace.model_validate(PRUNING_SPACE)
    return out, space, sweep(simulated_root, out, trials=3, space=space, **OPTIONS)


def write_space(path: Path, raw: object) -> Path:
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_a_sweep_runs_its_trials_prunes_the_hopeless_one_and_writes_the_table(swept):
    out, _, result = swept
    table = pd.read_csv(out / "trials.csv")
    assert list(table["trial"]) == [0, 1, 2]
    assert table.loc[0, "state"] == "COMPLETE" and table.loc[0, "epochs"] == 3
    assert table.loc[1, "state"] == "PRUNED" and table.loc[1, "epochs"] == 1
    assert {"optim.lr", "model.branch.embed", "value", "seconds"} <= set(table.columns)
    complete = result.table[result.table["state"] == "COMPLETE"]
    assert result.ran == 3 and result.best_value == complete["value"].max()
    assert (out / "trials" / "0000" / "metrics.json").exists()


def test_best_yaml_is_the_base_config_with_the_best_values_and_loads_as_a_config(swept):
    out, _, result = swept
    best = load_config(out / "best.yaml")
    expected = load_config("paper", overrides={"train.max_epochs": 3, **result.best_params})
    assert best.model_dump(exclude={"name", "description"}) == expected.model_dump(exclude={"name", "description"})
    trained = load_config(out / "trials" / f"{result.best_trial:04d}" / "config.yaml")
    assert best.model_dump(exclude={"name", "description"}) == trained.model_dump(exclude={"name", "description"})


def test_the_same_call_again_runs_nothing_and_other_settings_are_refused(swept, simulated_root):
    out, space, first = swept
    again = sweep(simulated_root, out, trials=3, space=space, **OPTIONS)
    assert again.ran == 0 and again.table.equals(first.table)
    other = SearchSpace.model_validate({**PRUNING_SPACE, "pruner": {"startup_trials": 2, "warmup_epochs": 0}})
    with pytest.raises(ConfigError, match=rf"was made with other space \(see {out / SETTINGS_FILE}\)"):
        sweep(simulated_root, out, trials=3, space=other, **OPTIONS)


def test_a_trial_a_killed_sweep_left_running_is_run_again_in_its_folder(swept, simulated_root, tmp_path):
    out, space, _ = swept
    copy = shutil.copytree(out, tmp_path / "sweep")
    storage = open_storage(str(copy / "study.log"))
    name = storage.get_all_studies()[0].study_name
    study = optuna.load_study(study_name=name, storage=storage)
    killed = study.ask({"optim.lr": optuna.distributions.CategoricalDistribution([0.01, 1.0e-7]),
                        "model.branch.embed": optuna.distributions.IntDistribution(8, 32)})
    killed.set_user_attr("run", "0003")
    result = sweep(simulated_root, copy, trials=4, space=space, **OPTIONS)  # a moved sweep folder resumes
    retry = result.table.iloc[-1]
    assert result.table.loc[3, "state"] == "FAIL" and retry["run"] == "0003" and retry["state"] != "RUNNING"
    assert retry["optim.lr"] == killed.params["optim.lr"] and finished_trials(study) == 4


def test_space_errors_name_the_key_and_what_to_do(tmp_path):
    cases = {
        "typo.yaml": ({"params": {"optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "logg": True}}},
                      r"params\.optim\.lr: unknown key 'logg' \(did you mean 'log'\?\)"),
        "section.yaml": ({"params": {"optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2}}, "prune": {}},
                         r"unknown key 'prune' \(did you mean 'pruner'\?\)"),
        "bounds.yaml": ({"params": {"optim.lr": {"type": "float", "low": 1e-2, "high": 1e-3}}},
                        r"params\.optim\.lr: low must be below high"),
        "neither.yaml": ({"params": {"model.fusion": {"type": "categorical"}}},
                         r"give either choices \(a list\) or registry \(fusion or encoder\)\.$"),
        "enqueue.yaml": ({"params": {"optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2}},
                          "enqueue": [{"optim.lrr": 1e-3}]}, r"enqueue: \['optim\.lrr'\] are not among the params"),
        "list.yaml": (["optim.lr"], r"must hold a mapping of 'params' and its options, not list"),
    }
    for name, (raw, message) in cases.items():
        with pytest.raises(ConfigError, match=rf"^{tmp_path / name}: .*{message}"):
            load_space(write_space(tmp_path / name, raw))
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot be read .*; give a search space YAML file\."):
        load_space(tmp_path / "nope.yaml")


def test_a_parameter_must_be_a_valid_setting_of_the_config_at_every_bound(tmp_path):
    paper = load_config("paper")
    misspelt = load_space(write_space(tmp_path / "s.yaml", {"params": {"optim.lrr": {
        "type": "float", "low": 1e-3, "high": 1e-2}}}))
    with pytest.raises(ConfigError, match=r"s\.yaml: params\.optim\.lrr = 0\.001 is no valid setting \(unknown key"
                                          r" 'optim\.lrr' \(did you mean 'lr'\?\)\)\."):
        misspelt.check_against(paper, "s.yaml")
    too_high = load_space(write_space(tmp_path / "d.yaml", {"params": {"model.branch.dropout": {
        "type": "float", "low": 0.1, "high": 1.0}}}))
    with pytest.raises(ConfigError, match=r"params\.model\.branch\.dropout = 1\.0 is no valid setting"):
        too_high.check_against(paper, "d.yaml")


def test_choices_that_fit_only_some_values_of_another_parameter_are_left_to_the_trials(tmp_path):
    """heads 3 fits hidden 96, not the base's 128: the whole space was refused; a trial pairing 3 with 128 is marked
    invalid by the objective instead."""
    transformer = with_overrides(load_config("paper"), {"model.encoder.name": "transformer",
                                                         "model.encoder.hidden": 128, "model.encoder.heads": 4})
    space = load_space(write_space(tmp_path / "t.yaml", {"params": {
        "model.encoder.hidden": {"type": "categorical", "choices": [96, 128]},
        "model.encoder.heads": {"type": "categorical", "choices": [3, 4]}}}))
    space.check_against(transformer, "t.yaml")
    zero = load_space(write_space(tmp_path / "z.yaml", {"params": {
        "model.encoder.heads": {"type": "categorical", "choices": [0, 4]}}}))
    with pytest.raises(ConfigError, match=r"params\.model\.encoder\.heads = 0 is no valid setting"):
        zero.check_against(transformer, "z.yaml")  # a value no config accepts is still refused
    fixed = load_space(write_space(tmp_path / "f.yaml", {"params": {
        "model.encoder.heads": {"type": "categorical", "choices": [3, 4]}}}))
    with pytest.raises(ConfigError, match=r"params\.model\.encoder\.heads = 3 is no valid setting .*multiple"):
        fixed.check_against(transformer, "f.yaml")  # hidden 128 is not searched: heads 3 can never fit


def test_registry_choices_are_the_names_the_registries_hold_now(monkeypatch):
    space = load_space(DEFAULT_SPACE)
    space.check_against(load_config("paper"), str(DEFAULT_SPACE))
    assert space.params["model.fusion"].values() == FUSIONS.names()
    assert space.params["model.encoder.name"].values() == ENCODERS.names()
    monkeypatch.setitem(FUSIONS, "plugin_fusion", object)
    assert "plugin_fusion" in space.params["model.fusion"].values()


def test_a_storage_that_cannot_be_opened_is_one_sentence_and_leaves_no_folder(simulated_root, tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", "--data", str(simulated_root), "--out", str(out), "--trials", "1", "--storage", "nosuchdb://x/y"]
    assert main(argv) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "--storage 'nosuchdb://x/y' cannot be opened" in err and "Traceback" not in err
    assert not out.exists()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def beside(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir())


def test_overwrite_replaces_a_finished_sweep_and_the_new_one_holds_only_its_own_trials(swept, simulated_root,
                                                                                        tmp_path):
    copy = shutil.copytree(swept[0], tmp_path / "sweep")
    result = sweep(simulated_root, copy, trials=2, overwrite=True, **OTHER)
    assert result.ran == 2 and list(result.table["trial"]) == [0, 1]
    assert set(result.table["optim.lr"]) <= {0.005, 0.02} and "model.branch.embed" not in result.table
    assert sorted(p.name for p in (copy / "trials").iterdir()) == ["0000", "0001"]
    assert json.loads((copy / SETTINGS_FILE).read_text())["space"] == OTHER_SPACE.model_dump(mode="json")
    assert len(open_storage(str(copy / "study.log")).get_all_studies()) == 1
    assert beside(copy) == ["sweep"]  # the old sweep is gone, nothing hidden is left


def test_an_overwrite_that_fails_before_a_trial_saved_an_epoch_puts_the_old_sweep_back(swept, simulated_root,
                                                                                       tmp_path, monkeypatch):
    copy = shutil.copytree(swept[0], tmp_path / "sweep")
    before = snapshot(copy)

    def fails_before_its_first_epoch(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr("emimic.training.sweep.train", fails_before_its_first_epoch)
    with pytest.raises(RuntimeError, match="out of memory"):
        sweep(simulated_root, copy, trials=2, overwrite=True, **OTHER)
    assert snapshot(copy) == before and beside(copy) == ["sweep"]


def test_an_overwrite_whose_every_trial_fails_as_an_invalid_config_keeps_the_old_sweep(swept, simulated_root,
                                                                                        tmp_path, monkeypatch):
    copy = shutil.copytree(swept[0], tmp_path / "sweep")
    before = snapshot(copy)

    def invalid(*args, **kwargs):  # a sampled combination that is no valid config fails its trial only
        raise ConfigError("model.fusion: tensor needs at least two modalities.")

    monkeypatch.setattr("emimic.training.sweep.train", invalid)
    with pytest.raises(NothingSaved, match=f"^the new sweep in {copy} saved no epoch \\(2 of its trials failed\\), so"
                                           " the sweep it was to replace is kept as it was; fix the search space or"
                                           " config and run again.$"):
        sweep(simulated_root, copy, trials=2, overwrite=True, **OTHER)
    assert snapshot(copy) == before and beside(copy) == ["sweep"]


def test_the_command_that_deletes_a_study_survives_the_shell(tmp_path):
    import shlex

    from emimic.training.sweep import _delete_command

    storage = str(tmp_path / "my studies.log")
    words = shlex.split(_delete_command(storage, "emimic-0123"))
    assert words[words.index("--storage") + 1] == storage and words[-1] == "emimic-0123"
    assert shlex.split(_delete_command("sqlite:///a b.db?timeout=5", "x"))[3] == "sqlite:///a b.db?timeout=5"


def test_a_study_in_an_outside_storage_is_never_mixed_into_another_folder_nor_deleted(simulated_root, tmp_path,
                                                                                      monkeypatch):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    first = sweep(simulated_root, tmp_path / "a", trials=1, storage=storage, **OTHER)
    name = json.loads((tmp_path / "a" / SETTINGS_FILE).read_text())["study"]
    # the same settings into a folder that does not record the study: its trial would be taken for this folder's
    with pytest.raises(ConfigError, match=(
            rf"^--storage {storage} already holds the study {name} of these settings, with 1 trial\(s\) that"
            rf" {tmp_path / 'b'} does not record \(their run folders are elsewhere or gone\); delete the study to"
            rf" start it afresh here \(optuna delete-study --storage {storage} --study-name {name}\), or give"
            r" another --storage\.$")):
        sweep(simulated_root, tmp_path / "b", trials=1, storage=storage, **OTHER)
    assert not (tmp_path / "b").exists()
    # --overwrite replaces the folder; the study the old folder used stays in the storage, untouched
    replacing = {**OTHER, "max_epochs": 2}
    monkeypatch.setattr("emimic.training.sweep.train", lambda *args, **kwargs: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # a failed start deletes the study it created, nothing else
        sweep(simulated_root, tmp_path / "a", trials=1, storage=storage, overwrite=True, **replacing)
    assert optuna.get_all_study_names(storage) == [name]
    monkeypatch.undo()
    second = sweep(simulated_root, tmp_path / "a", trials=1, storage=storage, overwrite=True, **replacing)
    kept = optuna.load_study(study_name=name, storage=storage)
    assert [t.value for t in kept.trials] == list(first.table["value"]) and len(second.table) == 1
    assert len(optuna.get_all_study_names(storage)) == 2
    # ... so going back to the first settings finds that study, and says so rather than mixing it in
    with pytest.raises(ConfigError, match=rf"already holds the study {name} of these settings, with 1 trial"):
        sweep(simulated_root, tmp_path / "a", trials=1, storage=storage, overwrite=True, **OTHER)
    assert json.loads((tmp_path / "a" / SETTINGS_FILE).read_text())["config"]["train"]["max_epochs"] == 2


def test_a_second_ctrl_c_during_the_clean_up_keeps_the_old_sweep_and_the_next_run_names_the_study_left(
        swept, simulated_root, tmp_path, monkeypatch):
    copy = shutil.copytree(swept[0], tmp_path / "sweep")
    before = snapshot(copy)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("emimic.training.sweep.train", ctrl_c)  # in the first epoch of the new sweep's first trial
    monkeypatch.setattr(optuna, "delete_study", ctrl_c)  # and again while its new study is being deleted
    with pytest.raises(KeyboardInterrupt):
        sweep(simulated_root, copy, trials=1, storage=storage, overwrite=True, **OTHER)
    assert snapshot(copy) == before and beside(copy) == ["studies.db", "sweep"]
    monkeypatch.undo()
    (left,) = optuna.get_all_study_names(storage)
    with pytest.raises(ConfigError, match=rf"already holds the study {left} of these settings, with 1 trial"):
        sweep(simulated_root, tmp_path / "new", trials=1, storage=storage, **OTHER)


def test_a_sweep_a_crash_stopped_keeps_its_study_and_the_same_command_reruns_the_crashed_trial(simulated_root,
                                                                                               tmp_path, monkeypatch):
    from emimic.training import sweep as sweep_module

    real_train, calls = sweep_module.train, []

    def second_trial_crashes(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return real_train(*args, **kwargs)

    monkeypatch.setattr(sweep_module, "train", second_trial_crashes)
    out = tmp_path / "sweep"
    with pytest.raises(RuntimeError, match="out of memory"):
        sweep(simulated_root, out, trials=2, **OTHER)
    monkeypatch.undo()
    assert (out / SETTINGS_FILE).exists() and (out / "trials" / "0000" / "metrics.json").exists()
    result = sweep(simulated_root, out, trials=2, **OTHER)
    assert result.ran == 1
    assert list(result.table["state"]) == ["COMPLETE", "FAIL", "COMPLETE"]
    assert list(result.table["run"]) == ["0000", "0001", "0001"]  # the rerun trains in the crashed trial's folder
    assert (out / "trials" / "0001" / "metrics.json").exists()
    assert sweep(simulated_root, out, trials=2, **OTHER).ran == 0  # done: the same command again runs nothing


def test_a_trial_whose_sampled_config_is_invalid_counts_as_done_and_is_not_rerun(simulated_root, tmp_path,
                                                                                  monkeypatch):
    from emimic.training import sweep as sweep_module

    def invalid(*args, **kwargs):
        raise ConfigError("model.fusion: tensor needs at least two modalities.")

    monkeypatch.setattr(sweep_module, "train", invalid)
    out = tmp_path / "sweep"
    assert sweep(simulated_root, out, trials=1, **OTHER).ran == 1
    monkeypatch.undo()
    assert sweep(simulated_root, out, trials=1, **OTHER).ran == 0


def test_a_rerun_that_crashes_again_counts_as_done_so_the_sweep_can_finish(simulated_root, tmp_path, monkeypatch):
    from emimic.training import sweep as sweep_module

    real_train, calls = sweep_module.train, []

    def later_trials_always_crash(*args, **kwargs):  # the sampled values always run out of memory
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("out of memory")
        return real_train(*args, **kwargs)

    monkeypatch.setattr(sweep_module, "train", later_trials_always_crash)
    out = tmp_path / "sweep"
    for _ in range(2):  # the first run, then its rerun of the crashed trial
        with pytest.raises(RuntimeError, match="out of memory"):
            sweep(simulated_root, out, trials=2, **OTHER)
    result = sweep(simulated_root, out, trials=2, **OTHER)
    assert result.ran == 0 and list(result.table["state"]) == ["COMPLETE", "FAIL", "FAIL"]


# A sweep of modality subsets: each choice of model.modalities is a list, which Optuna stores as its label. The first
# two trials are enqueued (as lists), the third is sampled.
MODALITY_CHOICES = [["vit"], ["wav2vec2"], ["vit", "wav2vec2"]]
MODALITY_SPACE = {
    "params": {"model.modalities": {"type": "categorical", "choices": MODALITY_CHOICES},
               "optim.lr": {"type": "float", "low": 1.0e-3, "high": 1.0e-2, "log": True}},
    "pruner": {"startup_trials": 1, "warmup_epochs": 0},
    "enqueue": [{"model.modalities": ["vit", "wav2vec2"], "optim.lr": 3.0e-3},
                {"model.modalities": ["wav2vec2"], "optim.lr": 3.0e-3}],
}
MODALITY_OPTIONS = dict(max_epochs=2, config="paper", progress=False)


@pytest.fixture(scope="module")
def modality_swept(simulated_root, tmp_path_factory):
    """A finished 3-trial sweep of modality subsets, its space a YAML file."""
    folder = tmp_path_factory.mktemp("modality-sweep")
    space = write_space(folder / "modalities.yaml", MODALITY_SPACE)
    return folder / "sweep", space, sweep(simulated_root, folder / "sweep", trials=3, space=space, **MODALITY_OPTIONS)


def load_study(out: Path) -> optuna.Study:
    storage = open_storage(str(out / "study.log"))
    return optuna.load_study(study_name=storage.get_all_studies()[0].study_name, storage=storage)


def test_a_sweep_of_list_choices_trains_and_shows_the_lists_and_stores_their_labels(modality_swept):
    out, _, result = modality_swept
    column = result.table["model.modalities"].tolist()
    assert column[:2] == [["vit", "wav2vec2"], ["wav2vec2"]] and column[2] in MODALITY_CHOICES
    assert pd.read_csv(out / "trials.csv")["model.modalities"].map(json.loads).tolist() == column
    for row in result.table.to_dict("records"):  # each trial trained the list the table shows
        assert load_config(out / "trials" / row["run"] / "config.yaml").model.modalities == row["model.modalities"]
    assert [t.params["model.modalities"] for t in load_study(out).trials[:2]] == ["vit+wav2vec2", "wav2vec2"]


def test_the_best_yaml_of_a_list_choice_sweep_holds_the_list_and_trains(modality_swept, simulated_root, tmp_path):
    out, _, result = modality_swept
    best_row = result.table.set_index("trial").loc[result.best_trial]
    assert load_config(out / "best.yaml").model.modalities == result.best_params["model.modalities"] == best_row[
        "model.modalities"]
    assert isinstance(result.best_params["model.modalities"], list)
    argv = ["train", "--data", str(simulated_root), "--out", str(tmp_path / "best"), "--config", str(out / "best.yaml"),
            "--quiet"]
    assert main(argv) == 0
    assert load_config(tmp_path / "best" / "config.yaml").model.modalities == best_row["model.modalities"]


def test_a_list_choice_sweep_resumes_and_reruns_a_killed_trial_with_its_list(modality_swept, simulated_root,
                                                                               tmp_path, capsys):
    out, space, first = modality_swept
    copy = shutil.copytree(out, tmp_path / "sweep")
    study = load_study(copy)
    study.enqueue_trial({"model.modalities": "vit", "optim.lr": 5.0e-3})  # as Optuna holds a list choice
    killed = study.ask({"model.modalities": optuna.distributions.CategoricalDistribution(["vit", "wav2vec2",
                                                                                            "vit+wav2vec2"]),
                        "optim.lr": optuna.distributions.FloatDistribution(1.0e-3, 1.0e-2, log=True)})
    killed.set_user_attr("run", "0003")
    argv = ["sweep", "--data", str(simulated_root), "--out", str(copy), "--trials", "4", "--config", "paper",
            "--max-epochs", "2", "--space", str(space)]
    assert main(argv) == 0
    printed = " ".join(" ".join(capsys.readouterr()).split())
    table = pd.read_csv(copy / "trials.csv")
    assert table["model.modalities"].map(json.loads).tolist() == [*first.table["model.modalities"], ["vit"], ["vit"]]
    # the rerun, in the killed trial's folder: pruned at its first epoch (the median pruner reads no parameter)
    assert list(table["state"])[3:] == ["FAIL", "PRUNED"] and table.loc[4, "run"] == 3
    assert "trial 4: " in printed and "model.modalities=[vit], optim.lr=0.005)" in printed
    assert "│ [vit] │" in printed and "│ [vit, wav2vec2] │" in printed  # the table of the command


def test_every_supported_choice_comes_back_from_the_storage_as_it_was_given(tmp_path):
    """Optuna persists categorical choices as JSON and takes None, bool, int, float and str only: a list goes in as its
    label and must come back, from a storage opened afresh (a resume, another worker), as the list; a scalar as
    itself (2.0 stays a float, true a bool)."""
    choices = [None, ["vit"], ["vit", "wav2vec2"], ["a", 1, 2.5, True, None], "concat", 2.0, 3, True]
    space = SearchSpace.model_validate({"params": {"x": {"type": "categorical", "choices": choices}},
                                        "enqueue": [{"x": choice} for choice in choices]})
    study = optuna.create_study(study_name="s", storage=open_storage(str(tmp_path / "study.log")))
    for trial in space.enqueue:
        study.enqueue_trial(space.stored_values(trial))
    suggested = []
    for _ in choices:
        trial = study.ask()
        suggested.append(space.params["x"].suggest(trial, "x"))
        study.tell(trial, 0.0)
    reloaded = optuna.load_study(study_name="s", storage=open_storage(str(tmp_path / "study.log"))).trials
    assert [t.params["x"] for t in reloaded] == [None, "vit", "vit+wav2vec2", "a+1+2.5+true+null", "concat", 2.0, 3,
                                                 True]
    read_back = [space.config_values(t.params)["x"] for t in reloaded]
    assert json.dumps(suggested) == json.dumps(read_back) == json.dumps(choices)


@pytest.mark.parametrize(("raw", "message"), [
    ({"params": {"model.modalities": {"type": "categorical", "choices": [[["vit"]], ["wav2vec2"]]}}},
     "{path}: params.model.modalities: choice [['vit']] is not supported: a choice is a finite number, a string,"
     " true, false, null, or a list of those such as [vit, wav2vec2]."),
    ({"params": {"model.modalities": {"type": "categorical", "choices": [["vit"], {"vit": True}]}}},
     "{path}: params.model.modalities: choice {{'vit': True}} is not supported: a choice is a finite number, a"
     " string, true, false, null, or a list of those such as [vit, wav2vec2]."),
    ({"params": {"model.branch.embed": {"type": "categorical", "choices": [1, True]}}},
     "{path}: params.model.branch.embed: choices 1 and True are one choice to Optuna, which stores both as 1; keep"
     " one of them."),
    ({"params": {"model.fusion": {"type": "categorical", "choices": ["concat", ["concat"]]}}},
     "{path}: params.model.fusion: choices 'concat' and ['concat'] are one choice to Optuna, which stores both as"
     " 'concat'; keep one of them."),
    ({"params": {"model.modalities": {"type": "categorical", "choices": [["vit"]]}},
      "enqueue": [{"model.modalities": {"vit": 1}}]},
     "{path}: enqueue: trial 0 gives model.modalities {{'vit': 1}}, which is not supported: a value is a finite"
     " number, a string, true, false, null, or a list of those such as [vit, wav2vec2]."),
    ({"params": {"model.modalities": {"type": "categorical", "choices": [["vit"], ["wav2vec2"]]}},
      "enqueue": [{"model.modalities": ["vit"]}, {"model.modalities": ["text_emb"]}]},
     "{path}: enqueue: trial 1 gives model.modalities ['text_emb'], which is not among its choices [['vit'],"
     " ['wav2vec2']]."),
    ({"params": {"optim.lr": {"type": "float", "low": 1.0e-3, "high": 1.0e-2}}, "enqueue": [{"optim.lr": "fast"}]},
     "{path}: enqueue: trial 0 gives optim.lr 'fast', which is no number."),
    ({"params": {"optim.lr": {"type": "float", "low": 1.0e-3, "high": 1.0e-2}}, "enqueue": [{"optim.lr": 5}]},
     "{path}: enqueue: trial 0 gives optim.lr 5, which lies outside its range 0.001 to 0.01."),
    ({"params": {"optim.lr": {"type": "float", "high": 1.0e-2}}},
     "{path}: params.optim.lr: low is missing; a float parameter looks like {{type: float, low: 1.0e-3, high: 1.0e-2,"
     " log: true}}."),
    ({"params": {"optim.lr": {"type": "real", "low": 1.0e-3, "high": 1.0e-2}}},
     "{path}: params.optim.lr: type 'real' is unknown; give type: float, int or categorical, e.g. {{type: float, low:"
     " 1.0e-3, high: 1.0e-2, log: true}}."),
    ({"params": {"optim.lr": {"type": ["float"], "low": 1.0e-3, "high": 1.0e-2}}},
     "{path}: params.optim.lr: type ['float'] is unknown; give type: float, int or categorical, e.g. {{type: float,"
     " low: 1.0e-3, high: 1.0e-2, log: true}}."),
    ({"params": {"optim.lr": {"low": 1.0e-3, "high": 1.0e-2}}},
     "{path}: params.optim.lr: type is missing; give type: float, int or categorical, e.g. {{type: float, low: 1.0e-3,"
     " high: 1.0e-2, log: true}}."),
    ({"params": {"optim.lr": 1.0e-3}},
     "{path}: params.optim.lr must be a mapping such as {{type: float, low: 1.0e-3, high: 1.0e-2, log: true}} (got"
     " 0.001)."),
], ids=["nested-list", "dict", "one-and-true", "scalar-and-its-list", "enqueued-dict", "enqueued-elsewhere",
        "enqueued-word", "enqueued-out-of-range", "no-low", "unknown-type", "type-list", "no-type", "not-a-mapping"])
def test_a_malformed_space_is_one_sentence_naming_the_key_and_what_is_supported(tmp_path, raw, message):
    """An unsupported choice was pydantic's whole union, a clause per type it tried: 'choices.0.bool: Input should
    be a valid boolean (got ['vit']); choices.0.int: ...'; an unhashable type crashed."""
    path = write_space(tmp_path / "space.yaml", raw)
    with pytest.raises(ConfigError) as refused:
        load_space(path)
    assert str(refused.value) == message.format(path=path)


def test_each_list_choice_is_checked_as_a_setting_and_the_modalities_read_are_their_union(tmp_path):
    paper = load_config("paper")
    space = load_space(write_space(tmp_path / "s.yaml", {"params": {"model.modalities": {
        "type": "categorical", "choices": [["vit"], ["text_emb", "wav2vec2"]]}}}))
    space.check_against(paper, "s.yaml")
    assert space.modalities_read(paper) == {"vit", "text_emb", "wav2vec2", paper.model.vad.observed}
    empty = load_space(write_space(tmp_path / "e.yaml", {"params": {"model.modalities": {
        "type": "categorical", "choices": [["vit"], []]}}}))
    with pytest.raises(ConfigError, match=r"^e\.yaml: params\.model\.modalities = \[\] is no valid setting"
                                          r" \(model\.modalities: name at least one modality"):
        empty.check_against(paper, "e.yaml")
    transformer = with_overrides(paper, {"model.encoder.name": "transformer", "model.encoder.hidden": 128,
                                         "model.encoder.heads": 4})
    enqueued = load_space(write_space(tmp_path / "q.yaml", {"params": {"model.encoder.heads": {
        "type": "int", "low": 1, "high": 4}}, "enqueue": [{"model.encoder.heads": 3}]}))
    with pytest.raises(ConfigError, match=r"^q\.yaml: enqueue: trial 0 gives model\.encoder\.heads 3, which is no"
                                          r" valid setting \(.*multiple"):
        enqueued.check_against(transformer, "q.yaml")  # it failed as an invalid config once the sweep had started


def test_a_list_choice_whose_modalities_no_valid_clip_has_is_refused_before_any_trial(make_root, tmp_path):
    """Only the base config's branches (every modality) were checked: the trial of [vit] stopped the study."""
    root = make_root(missing={"vit": [3 * i for i in range(13, 19)]})  # write_root's six valid clips
    space = write_space(tmp_path / "space.yaml", {"params": {"model.modalities": {
        "type": "categorical", "choices": [["wav2vec2"], ["vit"], ["vit", "wav2vec2"]]}}})
    with pytest.raises(DataError, match=(
            rf"^{re.escape(str(space))}: params\.model\.modalities = \['vit'\]: none of the 6 clips of the 'valid'"
            r" split has any of the modalities the model reads \(vit\), .*; add their features, or validate on clips"
            r" that have some, or remove that choice\.$")):
        sweep(root, tmp_path / "sweep", trials=1, space=space, max_epochs=1, progress=False)
    assert not (tmp_path / "sweep").exists()
    absent = write_space(tmp_path / "absent.yaml", {"params": {"model.modalities": {
        "type": "categorical", "choices": [["wav2vec2"], ["egemaps"]]}}})
    with pytest.raises(ConfigError, match=(
            rf"^{re.escape(str(absent))}: params\.model\.modalities = \['egemaps'\]: model\.modalities: \['egemaps'\]"
            r" not in the data; available: .*; remove that choice\.$")):
        sweep(root, tmp_path / "sweep", trials=1, space=absent, max_epochs=1, progress=False)
    assert not (tmp_path / "sweep").exists()
