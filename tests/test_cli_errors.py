"""Every bad input is one sentence on stderr, a non-zero exit, no traceback and no half-written output."""

from __future__ import annotations

import argparse
import errno
import json
import os
import pickle
import socket
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import documented_commands
from emimic.cli import main
from emimic.cli.arguments import StoreOnce, output_file, output_folder
from emimic.cli.registry import build_parser
from emimic.data import open_dataset, with_valid_split
from emimic.data.validate import validate
from emimic.errors import ConfigError, EmimicWarning, OutputPathError
from emimic.io import atomic_path, check_output_path, write_text

TRAIN = ["train", "--data", "{root}", "--quiet"]


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """Exit code and stderr of one CLI call, argparse's own exits included."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def assert_one_sentence(code: int, err: str, *words: str) -> None:
    assert code not in (0, None), err
    assert "Traceback" not in err and "pydantic" not in err and "https://" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, (word, err)


def files_under(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


# -- output paths ---------------------------------------------------------------------------------------

# (argv with {root}/{path}, whether the output is a folder emimic creates)
OUTPUT_COMMANDS = {
    "train --out": (["train", "--data", "{root}", "--out", "{path}", "--quiet"], True),
    "simulate --out": (["simulate", "--out", "{path}", "--clips", "30", "--quiet"], True),
    "pack --store": (["pack", "{root}", "--store", "{path}", "--quiet"], True),
    "demo --out": (["demo", "--out", "{path}", "--clips", "30"], True),
    "evaluate --json": (["evaluate", "--run", "{root}", "--data", "{root}", "--json", "{path}"], False),
    "predict --out": (["predict", "--run", "{root}", "--data", "{root}", "--out", "{path}"], False),
    "infer --out": (["infer", "--run", "{root}", "{root}", "--out", "{path}"], False),
    "sweep --out": (["sweep", "--data", "{root}", "--out", "{path}", "--trials", "1"], True),
    "ablate --out": (["ablate", "--data", "{root}", "--out", "{path}", "--seeds", "0", "--max-epochs", "1"], True),
    "cv --out": (["cv", "--data", "{root}", "--out", "{path}", "--folds", "2", "--max-epochs", "1"], True),
}


def _argv(template: list[str], root: Path, path: Path) -> list[str]:
    return [part.format(root=root, path=path) for part in template]


@pytest.mark.parametrize("name", sorted(OUTPUT_COMMANDS))
def test_output_path_of_the_wrong_kind(name, make_root, tmp_path, capsys) -> None:
    template, is_folder = OUTPUT_COMMANDS[name]
    root = make_root()
    wrong = root / "train_split.csv" if is_folder else root / "vit"  # a file where a folder goes, and vice versa
    before = files_under(tmp_path)
    code, err = run_cli(_argv(template, root, wrong), capsys)
    assert_one_sentence(code, err, str(wrong), "is a file" if is_folder else "is a folder")
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("name", sorted(name for name, (_, is_folder) in OUTPUT_COMMANDS.items() if not is_folder))
def test_output_file_in_a_missing_folder(name, make_root, tmp_path, capsys) -> None:
    template, _ = OUTPUT_COMMANDS[name]
    root = make_root()
    target = tmp_path / "no" / "such" / "out.csv"
    code, err = run_cli(_argv(template, root, target), capsys)
    assert_one_sentence(code, err, str(target), f"folder {target.parent} does not exist")
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("name", sorted(OUTPUT_COMMANDS))
def test_output_in_a_read_only_folder(name, make_root, tmp_path, capsys, monkeypatch) -> None:
    template, _ = OUTPUT_COMMANDS[name]
    root = make_root()
    locked = tmp_path / "locked"
    locked.mkdir()
    real = tempfile.TemporaryFile

    def refuse(*args, dir=None, **kwargs):
        # Tests run as root, for whom chmod does not lock a folder: the folder refuses like a read-only mount.
        if dir is not None and Path(dir) == locked:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    target = locked / "out"
    code, err = run_cli(_argv(template, root, target), capsys)
    assert_one_sentence(code, err, str(target), f"cannot write in folder {locked}", "Read-only file system")
    assert list(locked.iterdir()) == []


def test_output_under_a_real_read_only_mount(capsys) -> None:
    probe = Path("/sys/emimic-probe.csv")
    try:
        probe.touch()
    except OSError:
        pass
    else:
        probe.unlink()
        pytest.skip("/sys is writable here")
    code, err = run_cli(["simulate", "--out", "/sys/emimic-sim", "--quiet"], capsys)
    assert_one_sentence(code, err, "/sys/emimic-sim", "cannot write in folder /sys")


def test_missing_parents_of_an_emimic_folder_are_created(tmp_path) -> None:
    run = tmp_path / "runs" / "paper"
    assert check_output_path(run, folder=True, create_parents=True) == run
    assert not (tmp_path / "runs").exists()  # created later, by the command, only when it writes


def test_atomic_write_names_the_users_path_never_the_temporary_file(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "taken"
    folder.mkdir()
    with pytest.raises(OutputPathError) as info:
        write_text(folder, "x")  # os.replace of a file over a folder fails
    assert str(folder) in str(info.value) and ".tmp" not in str(info.value)
    assert list(tmp_path.iterdir()) == [folder] and list(folder.iterdir()) == []

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tempfile, "mkstemp", no_space)
    target = tmp_path / "out.json"
    with pytest.raises(OutputPathError, match=r"out.json: cannot be written \(No space left"), atomic_path(target):
        pass


# -- argument ranges ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--seed", "-1"], ["--seed", "-1 is out of range", "0 to 4294967295"]),
        (["--seed", str(2**32)], ["--seed", "4294967296 is out of range"]),
        (["--seed", "one"], ["--seed", "'one' is not an integer"]),
        (["--max-epochs", "0"], ["--max-epochs", "0 is too small", "at least 1"]),
        (["--valid-fraction", "1.5"], ["--valid-fraction", "1.5 is not a fraction"]),
    ],
)
def test_out_of_range_arguments(extra, words, make_root, tmp_path, capsys) -> None:
    root = make_root()
    run = tmp_path / "run"
    code, err = run_cli(["train", "--data", str(root), "--out", str(run), "--quiet", *extra], capsys)
    assert_one_sentence(code, err, *words)
    assert not run.exists()


# Actions whose second use is meant: they gather values, or act at once.
GATHERING = (argparse._AppendAction, argparse._ExtendAction, argparse._HelpAction, argparse._SubParsersAction)


def options_given_once() -> list[tuple[str, argparse.ArgumentParser, argparse.Action]]:
    """(command, its parser, action) of every option of every command but those meant to gather values: types and
    choices cleared, so that any two values parse."""
    parser, _ = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    found = []
    for name, sub in commands.items():
        for action in sub._actions:
            action.type, action.choices = None, None
        found += [(name, sub, action) for action in sub._actions
                  if action.option_strings and not isinstance(action, GATHERING)]
    return found


def test_every_option_not_meant_to_gather_given_twice_is_refused_naming_both(capsys) -> None:
    """argparse kept the last silently: `--data A ... --data B` trained on B, `--seeds 0 1 2 --seeds 3` seed 3 only."""
    actions = options_given_once()
    options = {action.option_strings[0] for _, _, action in actions}
    assert {"--data", "--out", "--config", "--store", "--seed", "--run", "--seeds", "--quiet", "--overwrite",
            "--transcripts-only"} <= options
    for name, sub, action in actions:
        option = action.option_strings[0]
        twice, shown = ([option, option], f"{option}, then {option}") if action.nargs == 0 else (
            [option, "first", option, "second"], "first, then second")
        with pytest.raises(SystemExit):
            sub.parse_known_args(twice)
        err = capsys.readouterr().err
        assert f"argument {option}: given twice ({shown}); give it once" in err, (name, err)


def test_an_option_given_twice_is_refused_by_a_plain_parser_too_and_each_parse_starts_afresh(capsys) -> None:
    """The refusal asserted that the parser was emimic's: a plain ArgumentParser (or ``python -O``) broke it."""
    plain = argparse.ArgumentParser(prog="plain")
    plain.add_argument("--seed", action=StoreOnce)
    assert plain.parse_args(["--seed", "1"]).seed == "1"
    assert plain.parse_args(["--seed", "2"]).seed == "2"  # a second parse: given once in it
    with pytest.raises(SystemExit):
        plain.parse_args(["--seed", "1", "--seed", "2"])
    assert "plain: error: argument --seed: given twice (1, then 2); give it once" in capsys.readouterr().err


def test_a_second_seed_is_one_sentence_and_options_meant_to_gather_values_still_do(make_root, tmp_path,
                                                                                    capsys) -> None:
    root = make_root()
    code, err = run_cli(["train", "--data", str(root), "--out", str(tmp_path / "run"), "--seed", "1", "--seed", "2"],
                        capsys)
    assert code == 2 and err == ("emimic train: error: argument --seed: given twice (1, then 2); give it once; see"
                                 " `emimic train --help`.\n")
    assert not (tmp_path / "run").exists()
    cv = ["cv", "--data", str(root), "--out", str(tmp_path / "cv"), "--seeds", "0", "1", "2", "--seeds", "3"]
    code, err = run_cli(cv, capsys)
    assert code == 2 and "argument --seeds: given twice (0 1 2, then 3); give it once" in err
    switched = ["simulate", "--out", str(tmp_path / "sim"), "--transcripts-only", "--no-transcripts-only"]
    code, err = run_cli(switched, capsys)
    assert code == 2 and ("argument --no-transcripts-only: given twice (--transcripts-only, then"
                          " --no-transcripts-only); give it once") in err
    parser, _ = build_parser(["evaluate", "extract", "cv"])
    assert parser.parse_args(["evaluate", "--run", "a", "--run", "b", "c", "--data", "d"]).run == [
        Path("a"), Path("b"), Path("c")]
    assert parser.parse_args(["extract", "--data", "d", "--option", "face.fps=2", "--option", "vad.x=1"]).option == [
        "face.fps=2", "vad.x=1"]
    assert "_emimic_options_given" not in vars(parser.parse_args(["cv", "--data", "d", "--out", str(tmp_path / "cv"),
                                                                  "--seeds", "0", "1"]))


def commands_with_several_outputs() -> dict[str, tuple[argparse.ArgumentParser, list[str], list[str]]]:
    """Per command with two or more output options (those typed output_file or output_folder): its parser, its other
    required arguments filled with "1" (a path, a count or a seed alike), and its output options."""
    parser, _ = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    found = {}
    for name, sub in commands.items():
        outputs = [a.option_strings[0] for a in sub._actions if a.type in (output_file, output_folder)]
        required = [word for a in sub._actions if (a.required or not a.option_strings) and a.type not in (
                    output_file, output_folder) for word in ([a.option_strings[0]] if a.option_strings else []) + ["1"]]
        if len(outputs) > 1:
            found[name] = (sub, required, outputs)
    return found


def test_two_outputs_of_one_command_naming_one_path_are_refused(tmp_path, monkeypatch, capsys) -> None:
    """`evaluate --json same.out --predictions same.out` wrote both into one file (the CSV survived) and reported
    success: any two outputs naming one path (spelled otherwise, or through a symlink) are refused before any work."""
    monkeypatch.chdir(tmp_path)
    found = commands_with_several_outputs()
    assert {"train", "evaluate", "predict", "report", "cv", "ablate", "sweep"} <= found.keys()
    for name, (sub, required, (first, second, *_)) in found.items():
        with pytest.raises(SystemExit):
            sub.parse_known_args([*required, first, str(tmp_path / "same"), second, "./same"])
        err = capsys.readouterr().err
        assert f"argument {second}: same is also the path of {first} {tmp_path / 'same'}; give each output its own" \
               " path" in err, (name, err)
    Path("same.out").write_text("kept")
    Path("link.out").symlink_to("same.out")
    code, err = run_cli(["evaluate", "--run", "r", "--data", "d", "--json", "link.out", "--predictions", "same.out"],
                        capsys)
    assert code == 2 and err == ("emimic evaluate: error: argument --predictions: same.out is also the path of --json"
                                 " link.out; give each output its own path; see `emimic evaluate --help`.\n")
    sub, required, _ = found["evaluate"]
    assert sub.parse_known_args([*required, "--json", "a.json", "--predictions", "same.out"])[1] == []


def test_a_seed_out_of_range_in_yaml_names_the_key(make_root, tmp_path, capsys) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"seed: {2**32}\n")
    code, err = run_cli(["train", "--data", str(make_root()), "--out", str(tmp_path / "run"), "-c", str(config)],
                        capsys)
    assert_one_sentence(code, err, "c.yaml", "seed", "4294967296")


# -- Ray ------------------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_ray_address_with_no_cluster_fails_fast(tmp_path, capsys) -> None:
    address = f"127.0.0.1:{_closed_port()}"
    started = time.perf_counter()
    code, err = run_cli(["extract", "--data", str(tmp_path), "--modalities", "egemaps", "--ray-address", address,
                         "--quiet"], capsys)
    assert time.perf_counter() - started < 15
    assert_one_sentence(code, err, address, "no Ray cluster answers", "ray start --head")
    assert list(tmp_path.iterdir()) == []


def test_a_malformed_ray_address(tmp_path, capsys) -> None:
    code, err = run_cli(["extract", "--data", str(tmp_path), "--modalities", "egemaps", "--ray-address", "cluster",
                         "--quiet"], capsys)
    assert_one_sentence(code, err, "'cluster' is not HOST:PORT")


# -- YAML -----------------------------------------------------------------------------------------------


def test_unknown_config_keys_get_a_did_you_mean(make_root, tmp_path, capsys) -> None:
    config = tmp_path / "typo.yaml"
    config.write_text("train:\n  max_epoch: 3\nmodel:\n  fusoin: concat\n  colour: red\n")
    code, err = run_cli(["train", "--data", str(make_root()), "--out", str(tmp_path / "run"), "-c", str(config)],
                        capsys)
    assert_one_sentence(code, err, "typo.yaml", "'train.max_epoch' (did you mean 'max_epochs'?)",
                        "'model.fusoin' (did you mean 'fusion'?)", "'model.colour' (allowed: modalities, encoder")
    assert not (tmp_path / "run").exists()


def test_unknown_simulator_keys_get_a_did_you_mean(tmp_path, capsys) -> None:
    config = tmp_path / "sim.yaml"
    config.write_text("clipz: 40\nflavour: 1\n")
    out = tmp_path / "sim"
    code, err = run_cli(["simulate", "--out", str(out), "--config", str(config), "--quiet"], capsys)
    assert_one_sentence(code, err, "sim.yaml", "'clipz' (did you mean 'clips'?)", "'flavour' (allowed: clips, seed")
    assert not out.exists()


def test_bad_simulator_flag_is_one_sentence(tmp_path, capsys) -> None:
    code, err = run_cli(["simulate", "--out", str(tmp_path / "sim"), "--clips", "1", "--quiet"], capsys)
    assert_one_sentence(code, err, "clips", "greater than or equal to 3", "(got 1)")


def test_a_section_level_check_is_quoted_without_the_input(tmp_path) -> None:
    from emimic.data.simulate import SimulationSettings

    config = tmp_path / "sim.yaml"
    config.write_text("train_fraction: 0.7\nvalid_fraction: 0.4\n")
    with pytest.raises(ConfigError) as info:
        SimulationSettings.from_yaml(config)
    assert str(info.value).startswith(f"{config}: train_fraction + valid_fraction is 1.1;")
    assert "got" not in str(info.value)


# -- valid split ----------------------------------------------------------------------------------------


@pytest.fixture
def no_valid_root(make_root) -> Path:
    root = make_root(train=20, valid=6)
    (root / "valid_split.csv").unlink()
    return root


def problems(root: Path, **kwargs) -> str:
    return "\n".join(p.message for p in validate(root, progress=False, **kwargs).problems)


def test_validate_and_train_refuse_a_corpus_without_valid_split_alike(no_valid_root, tmp_path, capsys) -> None:
    assert main(["validate", str(no_valid_root), "--quiet"]) == 1
    capsys.readouterr()
    run = tmp_path / "run"
    code, err = run_cli(["train", "--data", str(no_valid_root), "--out", str(run), "--quiet"], capsys)
    assert_one_sentence(code, err, "no valid_split.csv", "--valid-fraction F", f"emimic validate {no_valid_root}")
    sentence = err.split("error: ", 1)[1].split("; run `emimic validate")[0]
    assert sentence in problems(no_valid_root)  # validate says exactly what train says
    assert not run.exists()


def test_valid_fraction_holds_out_what_validate_reports(no_valid_root, tmp_path, capsys) -> None:
    assert main(["validate", str(no_valid_root), "--valid-fraction", "0.25", "--quiet"]) == 0
    assert "will hold out 5 of 20 train clips" in problems(no_valid_root, valid_fraction=0.25)
    run = tmp_path / "run"
    assert main(["train", "--data", str(no_valid_root), "--out", str(run), "--valid-fraction", "0.25",
                 "--max-epochs", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "Validation (5 clips)" in printed
    assert "validation clips: held out 5 of 20 train clips (25 %) one by one" in printed
    assert "valid_fraction: 0.25" in (run / "config.yaml").read_text()


@pytest.mark.parametrize("command", ["train", "validate", "ablate", "sweep"])
def test_valid_fraction_help_says_grouped_clips_are_held_out_as_whole_groups(command, capsys) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "whole groups, as near the share as they allow, when train_split.csv has a group / speaker / seed_video" \
           " column" in " ".join(capsys.readouterr().out.split())


def test_a_held_out_dataset_is_not_held_out_again(no_valid_root) -> None:
    held = with_valid_split(open_dataset(no_valid_root), 0.25)
    assert with_valid_split(held, 0.25) is held  # what sweep, then the train() of each trial, ask for
    assert len(held.splits["valid"]) == 5


def test_valid_fraction_with_a_valid_split_is_refused_by_both(make_root, tmp_path, capsys) -> None:
    root = make_root()
    assert main(["validate", str(root), "--valid-fraction", "0.2", "--quiet"]) == 1
    assert "--valid-fraction does not apply" in capsys.readouterr().out
    code, err = run_cli(["train", "--data", str(root), "--out", str(tmp_path / "run"), "--valid-fraction", "0.2",
                         "--quiet"], capsys)
    assert_one_sentence(code, err, "has a valid_split.csv, so --valid-fraction does not apply")


def test_hold_out_is_deterministic_disjoint_and_never_empty() -> None:
    from emimic.data.holdout import hold_out

    train = pd.DataFrame({"x": np.arange(10.0)}, index=np.arange(10) * 7)
    kept, held = hold_out(train, 0.3)
    _, again_held = hold_out(train.sample(frac=1.0, random_state=1), 0.3)
    assert len(held) == 3 and sorted(held.index) == sorted(again_held.index)
    assert set(kept.index).isdisjoint(held.index) and len(kept) + len(held) == 10
    assert len(hold_out(train, 0.01)[1]) == 1 and len(hold_out(train, 0.99)[0]) == 1
    # the draw of clips one by one is pinned: run folders that held these out must keep resuming
    assert sorted(held.index) == [14, 42, 49]


def grouped_train(sizes: dict[str, int]) -> tuple[pd.DataFrame, pd.Series]:
    """Training labels (ids 0, 3, 6, ...) and the 'speaker' of each clip, ``sizes[name]`` clips per speaker."""
    groups = pd.Series([name for name, size in sizes.items() for _ in range(size)], name="speaker")
    groups.index = np.arange(len(groups)) * 3
    return pd.DataFrame({"x": np.arange(len(groups), dtype=float)}, index=groups.index), groups


def test_hold_out_of_grouped_clips_keeps_groups_whole_as_near_the_fraction_as_they_allow() -> None:
    from emimic.data.holdout import hold_out, validation_clips

    train, groups = grouped_train({"a": 9, "b": 3, "c": 5, "d": 1, "e": 7, "f": 4, "g": 6})  # 0.3 of 35 is 10
    kept, held = hold_out(train, 0.3, groups)
    assert set(groups[kept.index]).isdisjoint(groups[held.index])  # no speaker on both sides
    assert len(held) == 10  # a sum of whole groups can reach it here
    shuffled = train.sample(frac=1.0, random_state=1)
    assert sorted(hold_out(shuffled, 0.3, groups[shuffled.index])[1].index) == sorted(held.index)
    assert sorted(hold_out(shuffled, 0.3, groups)[1].index) == sorted(held.index)  # groups matched by id, not row
    # the nearest sum of whole groups, not a greedy one: 0.195 of 75 clips is 15, which 10 + 5 make
    train, groups = grouped_train({"a": 10, "b": 28, "c": 29, "d": 3, "e": 5})
    assert sorted(set(groups[hold_out(train, 0.195, groups)[1].index])) == ["a", "e"]
    # of two equally near counts the smaller (4, not 6, for 5); a group is held out and one kept whatever the share
    train, groups = grouped_train({"a": 4, "b": 6, "c": 10})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 20 % for 25 %: near enough to say nothing
        assert len(hold_out(train, 0.25, groups)[1]) == 4
    assert len(hold_out(train, 0.99, groups)[0]) == 4
    # a share over twice the one asked for is said, in train's and validate's warning
    with pytest.warns(EmimicWarning, match=r"train_split\.csv: --valid-fraction 0\.05 holds out 4 of 20 clips \(20 %\),"
                      r" the nearest share that whole 'speaker' groups make; give the clips more and smaller groups"):
        assert len(hold_out(train, 0.05, groups)[1]) == 4
    assert validation_clips(0.05, "speaker") == ("whole 'speaker' groups near 5 % of train held out"
                                                 " (train.valid_fraction 0.05)")


def test_valid_fraction_holds_out_whole_speakers_and_says_so(no_valid_root, tmp_path, capsys) -> None:
    train_csv = no_valid_root / "train_split.csv"
    frame = pd.read_csv(train_csv)
    frame["speaker"] = [f"s{i % 6}" for i in range(len(frame))]  # 6 speakers of 3 or 4 clips
    frame.to_csv(train_csv, index=False)
    speaker = frame.set_index("Filename")["speaker"]
    held = with_valid_split(open_dataset(no_valid_root), 0.25)
    assert set(speaker[held.splits["train"].index]).isdisjoint(speaker[held.splits["valid"].index])
    assert held.held_out_by == "speaker" and len(held.splits["valid"]) == 4  # 5 is no sum of groups: of 4 and 6, 4
    assert (f"will hold out {len(held.splits['valid'])} of 20 train clips (whole 'speaker' groups)"
            in problems(no_valid_root, valid_fraction=0.25))
    run = tmp_path / "run"
    assert main(["train", "--data", str(no_valid_root), "--out", str(run), "--valid-fraction", "0.25",
                 "--max-epochs", "1", "--quiet"]) == 0
    assert "validation clips: held out 4 of 20 train clips (20 %) as whole 'speaker' groups" in capsys.readouterr().out
    record = json.loads((run / "metrics.json").read_text())["provenance"]["data"]["held_out"]
    assert record == {"fraction": 0.25, "group_column": "speaker"}


def test_a_run_that_held_out_clips_one_by_one_on_grouped_clips_is_refused_saying_why(no_valid_root, tmp_path,
                                                                                      capsys) -> None:
    """A run made before groups were honoured, on the same corpus and command, was refused as made with other
    data ('the train labels differ; the valid labels differ'), which left the user looking for what they changed."""
    run = tmp_path / "run"
    argv = ["train", "--data", str(no_valid_root), "--out", str(run), "--valid-fraction", "0.25", "--max-epochs", "1",
            "--quiet"]
    assert main(argv) == 0
    record = json.loads((run / "run.json").read_text())
    assert record["dataset"]["held_out"] == {"fraction": 0.25, "group_column": None}
    del record["dataset"]["held_out"]  # as an earlier emimic wrote it
    (run / "run.json").write_text(json.dumps(record))
    frame = pd.read_csv(no_valid_root / "train_split.csv")
    frame["speaker"] = [f"s{i % 6}" for i in range(len(frame))]
    frame.to_csv(no_valid_root / "train_split.csv", index=False)
    code, err = run_cli(argv, capsys)
    assert_one_sentence(code, err, "holds a finished run made with other settings or data (it held out clips of train"
                        " one by one (made by an earlier emimic, or before the 'speaker' column was added); emimic now"
                        " holds out whole 'speaker' groups for --valid-fraction); choose another --out")


def test_valid_fraction_refuses_a_single_group(no_valid_root, tmp_path, capsys) -> None:
    train_csv = no_valid_root / "train_split.csv"
    train_csv.write_text("\n".join(line + (",group" if i == 0 else ",g1")
                                   for i, line in enumerate(train_csv.read_text().splitlines())) + "\n")
    code, err = run_cli(["train", "--data", str(no_valid_root), "--out", str(tmp_path / "run"), "--valid-fraction",
                         "0.2", "--quiet"], capsys)
    assert_one_sentence(code, err, "train_split.csv: all 20 clips are in one 'group' group, and --valid-fraction holds"
                        " out whole groups; give the clips at least 2 groups, remove the 'group' column")


# -- validate names files and ids; train points to it ----------------------------------------------------


def test_validate_lists_ten_ids_then_a_count(make_root) -> None:
    bare = [3 * i for i in range(1, 13)]  # twelve train clips with no feature file at all
    root = make_root(train=14, dims={"vit": 4}, missing={"vit": bare})
    assert "12 clip(s) have no feature file at all: 3, 6, 9, 12, 15, 18, 21, 24, 27, 30 and 2 more." in problems(root)


def test_train_on_invalid_data_points_to_validate(make_root, tmp_path, capsys) -> None:
    root = make_root()
    (root / "vit" / "00003.pkl").write_bytes(pickle.dumps(np.full((3, 8), np.nan, dtype=np.float32)))
    code, err = run_cli(["train", "--data", str(root), "--out", str(tmp_path / "run"), "--quiet"], capsys)
    assert_one_sentence(code, err, "00003.pkl", "NaN", f"run `emimic validate {root}` to list every problem")
    assert "\nvit/00003.pkl: holds 24 NaN/Inf value(s) in 3 of 3 frame(s)" in "\n" + problems(root)  # the layout's name


# -- --debug and exceptions emimic did not anticipate ------------------------------------------------------


def test_debug_shows_the_traceback(tmp_path) -> None:
    config = tmp_path / "typo.yaml"
    config.write_text("colour: red\n")
    argv = ["simulate", "--out", str(tmp_path / "sim"), "--config", str(config), "--quiet"]
    with pytest.raises(ConfigError):
        main(["--debug", *argv])
    with pytest.raises(ConfigError):
        main([*argv, "--debug"])


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "/data/x.pkl"),
         ["/data/x.pkl: No such file or directory; check this path"]),
        (ValueError("bad\nvalue"), ["unexpected ValueError (bad value); rerun with --debug"]),
    ],
)
def test_unanticipated_exceptions_are_one_sentence(error, words, make_root, capsys, monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr("emimic.data.validate.validate", fail)  # imported when the command runs
    code, err = run_cli(["validate", str(make_root()), "--quiet"], capsys)
    assert_one_sentence(code, err, *words)
    with pytest.raises(type(error)):
        main(["--debug", "validate", str(make_root("other")), "--quiet"])


def test_messages_with_brackets_are_printed_verbatim(make_root, capsys, monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise ConfigError("keys [bold] and [3, 4] are wrong.")

    monkeypatch.setattr("emimic.data.validate.validate", fail)  # imported when the command runs
    code, err = run_cli(["validate", str(make_root()), "--quiet"], capsys)
    assert_one_sentence(code, err, "keys [bold] and [3, 4] are wrong.")


# -- the documented example ------------------------------------------------------------------------------

def test_docs_valid_fraction_example(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    for argv, expected in documented_commands("data.md", "test_cli_errors.py::test_docs_valid_fraction_example"):
        if argv[0] == "rm":
            Path(argv[1]).unlink()
            continue
        assert argv[0] == "emimic"
        assert main(argv[1:]) == expected, (argv, capsys.readouterr())
    assert json.loads((tmp_path / "runs" / "noval" / "metrics.json").read_text())["n_clips"] > 0
