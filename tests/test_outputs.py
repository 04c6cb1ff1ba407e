"""emimic.outputs.provisional_output: what a failed or interrupted command leaves of a results folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emimic.errors import ConfigError
from emimic.outputs import check_folder_settings, provisional_output


def fill(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text(name)


def contents(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in folder.iterdir()}


def test_a_failure_before_a_run_started_removes_only_what_the_block_added(tmp_path: Path) -> None:
    folder = tmp_path / "ablation"
    fill(folder, "ablation.json", "notes.txt")
    with pytest.raises(RuntimeError), provisional_output(folder, replace=False, started=lambda: False):
        fill(folder, "cell-seed0.json")
        (folder / "run").mkdir()
        raise RuntimeError("failed before its first epoch")
    assert contents(folder) == {"ablation.json": "ablation.json", "notes.txt": "notes.txt"}


def test_a_new_folder_that_failed_before_a_run_started_is_removed(tmp_path: Path) -> None:
    folder = tmp_path / "cv"
    with pytest.raises(RuntimeError), provisional_output(folder, replace=False, started=lambda: False):
        fill(folder, "cv.json")
        raise RuntimeError("failed")
    assert not folder.exists()


def test_a_replaced_folder_comes_back_when_the_new_run_fails_before_it_started(tmp_path: Path) -> None:
    folder = tmp_path / "cv"
    fill(folder, "cv.json")
    with pytest.raises(RuntimeError), provisional_output(folder, replace=True, started=lambda: False):
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

    with pytest.raises(KeyboardInterrupt), provisional_output(folder, replace=True, started=second_ctrl_c):
        fill(folder, "new.json")
        raise KeyboardInterrupt
    kept = [p for p in tmp_path.iterdir() if p.name.startswith(".cv.replaced-")]
    assert len(kept) == 1 and contents(kept[0]) == {"cv.json": "cv.json"}


def test_a_replaced_folder_is_deleted_once_the_new_run_started(tmp_path: Path) -> None:
    folder = tmp_path / "cv"
    fill(folder, "old.json")
    with provisional_output(folder, replace=True, started=lambda: True):
        fill(folder, "new.json")
    assert contents(folder) == {"new.json": "new.json"}
    assert [p.name for p in tmp_path.iterdir()] == ["cv"]


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
