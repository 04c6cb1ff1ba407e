"""emimic.outputs: what a failed or interrupted command leaves of a results folder, and how the next one says so."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

from emimic.cli import main
from emimic.errors import ConfigError, NothingSaved
from emimic.outputs import (
    LeftoverWarning,
    check_folder_settings,
    leftover_message,
    provisional_output,
    warn_leftovers,
)


def fill(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text(name)


def contents(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in folder.iterdir()}


def test_a_failure_before_a_run_started_removes_only_what_the_block_added(tmp_path: Path) -> None:
    folder = tmp_path / "ablation"
    fill(folder, "ablation.json", "notes.txt")
    with pytest.raises(RuntimeError), provisional_output(folder, replace=False, started=lambda: False, kind="CV"):
        fill(folder, "cell-seed0.json")
        (folder / "run").mkdir()
        raise RuntimeError("failed before its first epoch")
    assert contents(folder) == {"ablation.json": "ablation.json", "notes.txt": "notes.txt"}


def test_a_new_folder_that_failed_before_a_run_started_is_removed(tmp_path: Path) -> None:
    folder = tmp_path / "cv"
    with pytest.raises(RuntimeError), provisional_output(folder, replace=False, started=lambda: False, kind="CV"):
        fill(folder, "cv.json")
        raise RuntimeError("failed")
    assert not folder.exists()


def test_a_replaced_folder_comes_back_when_the_new_run_fails_before_it_started(tmp_path: Path) -> None:
    folder = tmp_path / "cv"
    fill(folder, "cv.json")
    with pytest.raises(RuntimeError), provisional_output(folder, replace=True, started=lambda: False, kind="CV"):
        assert not folder.exists()
        fill(folder, "new.json")
        raise RuntimeError("failed")
    assert contents(folder) == {"cv.json": "cv.json"}
    assert [p.name for p in tmp_path.iterdir()] == ["cv"]


def test_an_interrupted_clean_up_never_deletes_the_folder_it_was_replacing(tmp_path: Path) -> None:
    folder = tmp_path / "cv"
    fill(folder, "cv.json")

    def second_ctrl_c() -> bool:  # the user presses Ctrl-C again while the failed start is being cleaned up
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), provisional_output(folder, replace=True, started=second_ctrl_c, kind="CV"):
        fill(folder, "new.json")
        raise KeyboardInterrupt
    kept = [p for p in tmp_path.iterdir() if p.name.startswith(".cv.replaced-")]
    assert len(kept) == 1 and contents(kept[0]) == {"cv.json": "cv.json"}


def test_a_replaced_folder_is_deleted_once_the_new_run_started(tmp_path: Path) -> None:
    folder = tmp_path / "cv"
    fill(folder, "old.json")
    with provisional_output(folder, replace=True, started=lambda: True, kind="CV"):
        fill(folder, "new.json")
    assert contents(folder) == {"new.json": "new.json"}
    assert [p.name for p in tmp_path.iterdir()] == ["cv"]


def test_a_block_that_ends_without_a_run_puts_the_folder_it_was_replacing_back_and_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "ablation"
    fill(folder, "old.json")
    said = (rf"^the new ablation in {folder} saved no epoch, so the ablation it was to replace is kept as it was;"
            r" emimic does not expect this of a command that ended without an error; please report it\.$")
    with pytest.raises(NothingSaved, match=said), provisional_output(folder, replace=True, started=lambda: False,
                                                                     kind="ablation"):
        fill(folder, "new.json")
    assert contents(folder) == {"old.json": "old.json"}
    assert [p.name for p in tmp_path.iterdir()] == ["ablation"]  # no .ablation.replaced-* copy beside it


def test_a_block_that_ends_without_a_run_and_replaces_nothing_keeps_what_it_wrote(tmp_path: Path) -> None:
    folder = tmp_path / "cv"
    with provisional_output(folder, replace=False, started=lambda: False, kind="CV"):
        fill(folder, "cv.json")
    assert contents(folder) == {"cv.json": "cv.json"}


def test_a_folder_from_an_earlier_emimic_that_did_not_record_a_setting_is_refused_as_such(tmp_path: Path) -> None:
    folder = tmp_path / "cv"
    fill(folder)
    (folder / "cv.json").write_text(json.dumps({"folds": 3}))
    with pytest.raises(ConfigError, match=rf"{folder} was made by an earlier emimic, which did not record its data"
                                          r" \(see .*cv.json\); it cannot be checked against this run, pass"
                                          " --overwrite to replace it, or choose a new --out"):
        check_folder_settings(folder, "cv.json", {"folds": 3, "data": "abc"}, kind="CV", overwrite=False)
    with pytest.raises(ConfigError, match="was made with other folds"):
        check_folder_settings(folder, "cv.json", {"folds": 4}, kind="CV", overwrite=False)
    assert check_folder_settings(folder, "cv.json", {"folds": 3, "data": "abc"}, kind="CV", overwrite=True)


def record(folder: Path, **settings: object) -> Path:
    fill(folder)
    (folder / "made.json").write_text(json.dumps(settings))
    return folder


def test_a_list_compared_in_any_order_takes_its_items_in_any_order(tmp_path: Path) -> None:
    folder = record(tmp_path / "ablation", seeds=[1, 0], data="abc")  # recorded in the order given, as emimic once did
    assert not check_folder_settings(folder, "made.json", {"seeds": [0, 1], "data": "abc"}, kind="ablation",
                                     overwrite=False, any_order=["seeds"])
    with pytest.raises(ConfigError, match=rf"^{folder} was made with other seeds \(see {folder / 'made.json'}\); rerun"
                                          " it with the same options, pass --overwrite to replace it, or choose a new"
                                          r" --out\.$"):
        check_folder_settings(folder, "made.json", {"seeds": [0], "data": "abc"}, kind="ablation", overwrite=False,
                              any_order=["seeds"])
    with pytest.raises(ConfigError, match="was made with other seeds"):  # a setting not named keeps its order
        check_folder_settings(folder, "made.json", {"seeds": [0, 1], "data": "abc"}, kind="ablation", overwrite=False)


def test_any_order_naming_no_setting_is_a_programming_error(tmp_path: Path) -> None:
    # a misspelt key would leave its setting compared in order, and refuse what the caller meant to allow
    with pytest.raises(AssertionError, match=r"any_order names no setting: \['seed'\]"):
        check_folder_settings(tmp_path / "cv", "cv.json", {"seeds": [0]}, kind="CV", overwrite=False,
                              any_order=["seed"])


def test_a_deletion_cut_short_leaves_a_folder_named_as_incomplete(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "cv"
    fill(folder, "old.json")

    def ctrl_c_while_deleting(path: Path, **kwargs: object) -> None:  # the old content is half deleted
        (path / "old.json").unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", ctrl_c_while_deleting)
    with pytest.raises(KeyboardInterrupt), provisional_output(folder, replace=True, started=lambda: True, kind="CV"):
        fill(folder, "new.json")
    assert [p.name.split("-")[0] for p in tmp_path.iterdir() if p.name != "cv"] == [".cv.discarded"]


def test_copies_of_a_folder_named_like_a_copy_are_named_and_found_as_its_own(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "x.replaced-1"
    fill(folder, "old.json")
    monkeypatch.setattr(shutil, "rmtree", lambda path, **kwargs: None)  # a deletion that did not happen
    with provisional_output(folder, replace=True, started=lambda: True, kind="CV"):
        fill(folder, "new.json")
    (copy,) = (p for p in tmp_path.iterdir() if p != folder)
    assert copy.name.startswith(".x.replaced-1.discarded-")
    assert leftover_message(folder) == f"{copy} is what an interrupted deletion left of an old {folder}; delete it."
    assert leftover_message(tmp_path / "x") is None  # not the copy of a folder "x"


def test_leftovers_of_the_parent_folder_are_named_by_a_path_that_leads_there(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    fill(tmp_path / "runs" / "sub")
    fill(tmp_path / ".runs.replaced-1a2b3c4d")
    monkeypatch.chdir(tmp_path / "runs" / "sub")
    message = leftover_message("..")
    assert message is not None and message.startswith(f"{tmp_path}/.runs.replaced-1a2b3c4d holds")


def test_leftovers_beside_a_folder_are_one_sentence_naming_them_and_nothing_without(tmp_path: Path) -> None:
    folder = tmp_path / "cv"
    fill(folder, "cv.json")
    fill(tmp_path / ".cvx.replaced-00000000")  # another folder's
    fill(tmp_path / "cv.replaced-00000000")  # not hidden: not one of emimic's
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_leftovers(folder)
    assert leftover_message(folder) is None
    fill(tmp_path / ".cv.replaced-1a2b3c4d", "cv.json")
    assert leftover_message(folder) == (
        f"{tmp_path}/.cv.replaced-1a2b3c4d holds the old content of {folder}, moved aside by a command that replaced"
        f" it and was interrupted; delete it if you do not need it, or move it back in place of {folder}.")
    fill(tmp_path / ".cv.replaced-5e6f7a8b")
    fill(tmp_path / ".cv.discarded-9c0d1e2f")
    with pytest.warns(LeftoverWarning) as caught:
        warn_leftovers(folder)
    assert len(caught) == 1 and str(caught[0].message) == (
        f"{tmp_path}/.cv.replaced-1a2b3c4d, {tmp_path}/.cv.replaced-5e6f7a8b hold the old content of {folder}, moved"
        " aside by a command that replaced it and was interrupted; delete them if you do not need them, or move one"
        f" back in place of {folder}; {tmp_path}/.cv.discarded-9c0d1e2f is what an interrupted deletion left of an"
        f" old {folder}; delete it.")


# Each command refuses its arguments at once, after the warning: no training is needed to see the warning.
REFUSED_AT_ONCE = {
    "train": ["--config", "no-such-preset"],
    "cv": ["--config", "no-such-preset"],
    "ablate": ["--grid", "no-such-grid.yaml"],
    "sweep": ["--config", "no-such-preset", "--trials", "1"],
}


@pytest.mark.parametrize("command", sorted(REFUSED_AT_ONCE))
def test_every_command_that_writes_an_out_folder_warns_of_leftovers_in_one_line(
        command: str, make_root, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, out = make_root(), tmp_path / "runs" / "out"
    argv = [command, "--data", str(root), "--out", str(out), "--quiet", *REFUSED_AT_ONCE[command]]
    assert main(argv) != 0
    assert "warning" not in capsys.readouterr().err
    fill(out.parent / ".out.replaced-1a2b3c4d", "cv.json")
    assert main(argv) != 0
    lines = capsys.readouterr().err.splitlines()
    warned = [line for line in lines if line.startswith("warning:")]
    assert warned == [f"warning: {leftover_message(out)}"] and "Traceback" not in lines
    assert lines[-1].startswith("error:")
