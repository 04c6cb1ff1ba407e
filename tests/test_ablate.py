"""`emimic ablate`: grid parsing, cells that cannot apply, the statistics of the table, resume and refusal."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import flat, write_root
from emimic.cli import main
from emimic.config import load_config
from emimic.errors import ConfigError
from emimic.labels import EMOTIONS
from emimic.outputs import leftover_message
from emimic.registry import FUSIONS
from emimic.training.ablate import (
    TABLE_FILE,
    Grid,
    GridConfigs,
    ablate,
    generated_cells,
    is_within_noise,
    load_grid,
    paired_t_test,
    plan_cells,
    split_ids,
    summarise,
    untrainable_in,
)

TINY_DIMS = {"vit": 6, "wav2vec2": 8, "text_emb": 4}


def grid_file(tmp_path: Path, text: str, name: str = "grid.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_root(tmp_path_factory.mktemp("ablate") / "root", train=24, valid=12, dims=TINY_DIMS)


@pytest.fixture(scope="module")
def tiny_store(tiny_root: Path):
    from emimic.data import open_dataset

    return open_dataset(tiny_root).store(progress=False)


# ---------------------------------------------------------------- the grid file


def test_the_packaged_default_grid_loads_and_varies_one_factor_at_a_time() -> None:
    grid = load_grid()
    assert grid.reference == "paper" and grid.cells["paper"] == {}
    assert {"loss_mse_only", "loss_mse_pcc", "loss_with_ccc", "no_ema", "no_vad"} <= set(grid.cells)
    assert grid.generate.fusions and grid.generate.modality_subsets


@pytest.mark.parametrize(("text", "message"), [
    ("cell:\n  paper: {}\n", r"unknown key 'cell' \(did you mean 'cells'\?\)"),
    ("cells:\n  paper: {}\n  x: {model.fusoin: concat}\n", r"cell 'x': unknown key 'model.fusoin' \(did you mean"
                                                         r" 'fusion'\?\)"),
    ("cells:\n  paper: {}\n  x: {model.fusion: concta}\n", r"cell 'x': model.fusion: unknown fusion 'concta' \(did"
                                                         r" you mean 'concat'\?\)"),
    ("cells:\n  main: {}\n", r"reference 'paper' is not a cell written under cells: \(its cells are main\); write it"
                             r" under cells: with its overrides \(`paper: {}` is the base 'paper' itself\), or make"
                             r" one of those the reference\.$"),
    # generated cells only: the list of cells was empty ("cells: ."); the base's name, not a generated one, is offered
    ("generate:\n  fusions: true\nreference: fusion_gated\n", r"reference 'fusion_gated' is not a cell written under"
                                    r" cells: \(it writes no cells; a generated cell cannot be the reference, as it"
                                    r" is made only once the data is read\); write it under cells: with its overrides"
                                    r" \(`paper: {}` is the base 'paper' itself\)\.$"),
    ("cells:\n  paper: {}\n  a/b: {}\n", r"cell names \['a/b'\] must be letters"),
    ("generate:\n  fusion: true\ncells:\n  paper: {}\n", r"unknown key 'generate.fusion' \(did you mean 'fusions'"),
])
def test_a_wrong_grid_is_one_sentence_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_grid(grid_file(tmp_path, text))


def test_a_mistyped_modality_is_refused_and_an_absent_one_skips_its_cell(tmp_path: Path, tiny_store) -> None:
    typo = load_grid(grid_file(tmp_path, "cells:\n  paper: {}\n  v: {model.modalities: [vti]}\n"))
    with pytest.raises(ConfigError, match=r"cell 'v': unknown modality 'vti' \(did you mean 'vit'\?\)"):
        plan_cells(typo, tiny_store, GridConfigs.of(typo, {}), has_valid_split=True)
    absent = load_grid(grid_file(tmp_path, "cells:\n  paper: {}\n  e: {model.modalities: [egemaps, vit]}\n"))
    paper, egemaps = plan_cells(absent, tiny_store, GridConfigs.of(absent, {}), has_valid_split=True)
    assert paper.config is not None and paper.skipped is None
    assert egemaps.config is None and egemaps.skipped.startswith("the data has no egemaps (it has text_emb, vit,")


def test_a_modality_no_training_clip_has_makes_no_subset_and_skips_the_cell_that_names_it(tmp_path: Path,
                                                                                            tiny_store) -> None:
    """A generated cell of it used to fail the whole ablation midway, as train refuses to name it."""
    grid = load_grid(grid_file(tmp_path, "cells:\n  paper: {}\n  v: {model.modalities: [vit]}\n"
                                         "generate: {modality_subsets: true}\n"))
    cells = {c.name: c for c in plan_cells(grid, tiny_store, GridConfigs.of(grid, {}), untrainable=lambda cfg: ["vit"],
                                           has_valid_split=True)}
    assert not [name for name in cells if "vit" in name.split("=")[-1].split("+")]
    assert cells["v"].skipped == "no training clip has vit, which model.modalities names"
    assert cells["paper"].config is not None


def test_a_cell_holding_out_another_valid_share_is_planned_on_the_clips_it_trains_on(tmp_path: Path) -> None:
    """Untrainable modalities came from the base config's valid share: a cell that held out the only clips with
    egemaps was planned to use it, and failed midway."""
    from emimic.data import open_dataset
    from emimic.data.holdout import hold_out

    labels = pd.read_csv(write_root(tmp_path / "ids", train=24, valid=0) / "train_split.csv")
    held_by_half = set(hold_out(labels, 0.5)[1]["Filename"]) - set(hold_out(labels, 0.2)[1]["Filename"])
    root = write_root(tmp_path / "root", train=24, valid=0, dims={"vit": 6, "egemaps": 4},
                      missing={"egemaps": [i for i in labels["Filename"] if i not in held_by_half]})
    (root / "valid_split.csv").unlink()
    ds = open_dataset(root)
    store = ds.store(progress=False)
    grid = load_grid(grid_file(tmp_path, "cells:\n  paper: {model.modalities: [vit, egemaps]}\n"
                                         "  half: {model.modalities: [vit, egemaps], train.valid_fraction: 0.5}\n"))
    cells = {c.name: c for c in plan_cells(grid, store, GridConfigs.of(grid, {"train.valid_fraction": 0.2}),
                                           untrainable=lambda cfg: untrainable_in(ds, store, cfg),
                                           has_valid_split=False)}
    assert cells["paper"].config is not None
    assert cells["half"].skipped == "no training clip has egemaps, which model.modalities names"


def test_a_cell_validating_on_other_clips_than_the_reference_is_refused(tmp_path: Path, tiny_store) -> None:
    """Its change would be paired with the reference's clip by clip, and its seeds' scores compared, on other clips."""
    grid = load_grid(grid_file(tmp_path, "cells:\n  paper: {}\n  half: {train.valid_fraction: 0.5}\n"))
    with pytest.raises(ConfigError, match=r"cell 'half' validates on other clips than the reference cell 'paper'"
                                          r" \(train.valid_fraction 0.5, not 0.2\), so their scores cannot be paired"):
        plan_cells(grid, tiny_store, GridConfigs.of(grid, {"train.valid_fraction": 0.2}), has_valid_split=False)


def test_a_cell_reading_only_modalities_no_valid_clip_has_is_skipped(tmp_path: Path) -> None:
    """Its training is refused (no PCC to select on): it failed the whole ablation after the cells before it."""
    from emimic.data import open_dataset

    valid_ids = [3 * i for i in range(5, 7)]  # the two valid clips of write_root(train=4, valid=2)
    ds = open_dataset(write_root(tmp_path / "root", train=4, valid=2, missing={"vit": valid_ids}))
    store = ds.store(progress=False)
    grid = load_grid(grid_file(tmp_path, "cells:\n  paper: {}\n  v: {model.modalities: [vit]}\n"))
    cells = {c.name: c for c in plan_cells(grid, store, GridConfigs.of(grid, {}),
                                           valid_ids=lambda cfg: split_ids(ds, cfg, "valid"), has_valid_split=True)}
    assert cells["paper"].config is not None
    assert cells["v"].skipped.startswith("none of the 2 clips of the 'valid' split has any of the modalities the model"
                                         " reads (vit), so")
    assert cells["v"].skipped.endswith("add their features, or validate on clips that have some.")


def test_a_reference_cell_without_valid_features_is_one_sentence_with_the_way_out_of_a_held_out_share(
        tmp_path: Path) -> None:
    """The share is --valid-fraction's, so the advice is to hold out another (it said to add the valid clips'
    features), and the reason's full stop was doubled."""
    from emimic.data.holdout import hold_out

    labels = pd.read_csv(write_root(tmp_path / "ids", train=24, valid=0) / "train_split.csv")
    held_out = list(hold_out(labels, 0.25)[1]["Filename"])
    root = write_root(tmp_path / "root", train=24, valid=0, missing={"vit": held_out})
    (root / "valid_split.csv").unlink()
    grid = grid_file(tmp_path, "cells:\n  paper: {model.modalities: [vit]}\n")
    with pytest.raises(ConfigError) as refused:
        ablate(root, tmp_path / "ablation", grid=grid, seeds=[0], max_epochs=1, progress=False, valid_fraction=0.25)
    assert str(refused.value).startswith("the reference cell 'paper' cannot run on this data: none of the 6 clips of"
                                         " the 'valid' split has any of the modalities the model reads (vit), so")
    assert str(refused.value).endswith("; hold out another share of train with --valid-fraction, or train a model"
                                       " reading a modality they have.")


def test_a_cell_holding_out_a_share_of_train_beside_a_valid_split_is_refused(tmp_path: Path, tiny_root) -> None:
    """Not as validating on other clips: the share does not apply at all (its training would be refused)."""
    grid = grid_file(tmp_path, "cells:\n  paper: {}\n  half: {train.valid_fraction: 0.5}\n")
    with pytest.raises(ConfigError, match=r"^cell 'half': train.valid_fraction 0.5 does not apply, as the data has a"
                                          r" valid_split.csv that every cell validates on"):
        ablate(tiny_root, tmp_path / "ablation", grid=grid, seeds=[0], max_epochs=1, progress=False)
    assert not (tmp_path / "ablation").exists()  # refused before anything trained


def test_an_ablation_of_a_corpus_without_a_valid_split_scores_the_held_out_clips(tmp_path: Path) -> None:
    """The paired bootstrap read the valid split of the corpus, which it lacks: the ablation failed after training."""
    root = write_root(tmp_path / "root", train=30, valid=0, dims={"vit": 6, "wav2vec2": 8})
    (root / "valid_split.csv").unlink()
    grid = grid_file(tmp_path, "cells:\n  paper: {}\n  no_ema: {train.ema.enabled: false}\n")
    result = ablate(root, tmp_path / "out", grid=grid, seeds=[0], max_epochs=1,
                    overrides={"train.valid_fraction": 0.3}, progress=False)
    no_ema = {s.name: s for s in result.summary}["no_ema"]
    assert no_ema.seeds == 1 and no_ema.interval is not None  # paired over the 9 clips both held out


def test_the_command_line_holds_out_a_share_of_train_with_valid_fraction_as_train_does(tmp_path: Path, tiny_root,
                                                                                        capsys) -> None:
    """ablate and sweep advised --valid-fraction on a corpus without a valid split, and had no such option."""
    root = write_root(tmp_path / "root", train=20, valid=0, dims={"vit": 6})
    (root / "valid_split.csv").unlink()
    options = ["--grid", str(grid_file(tmp_path, "cells:\n  paper: {}\n")), "--seeds", "0", "--max-epochs", "1",
               "--quiet"]
    assert main(["ablate", "--data", str(root), "--out", str(tmp_path / "ablation"), *options]) == 1
    assert (f"{root}: no valid_split.csv, so there is nothing to select the best epoch on; add one, or pass"
            " --valid-fraction F (e.g. 0.2) to train, validate, ablate or sweep") in flat(capsys.readouterr().err)
    assert main(["ablate", "--data", str(root), "--out", str(tmp_path / "ablation"), "--valid-fraction", "0.25",
                 *options]) == 0
    assert load_config(tmp_path / "ablation" / "paper" / "seed0" / "config.yaml").train.valid_fraction == 0.25
    held_out = "25 % of train held out (train.valid_fraction 0.25)"  # said 'validation split', which it lacks
    assert f"Ablation (1 seed(s), {held_out}): {tmp_path / 'ablation'}" in flat(capsys.readouterr().out)
    assert f"), {held_out}; cells of the base config" in (tmp_path / "ablation" / "ablation.md").read_text()
    assert main(["sweep", "--data", str(root), "--out", str(tmp_path / "sweep"), "--trials", "1", "--max-epochs", "1",
                 "--valid-fraction", "0.25", "--quiet"]) == 0
    assert f"best first; validation on {held_out}" in flat(capsys.readouterr().out)
    assert load_config(tmp_path / "sweep" / "best.yaml").description.endswith(f"on {held_out}.")
    unused = (f"error: {tiny_root}: has a valid_split.csv, so --valid-fraction does not apply; drop it or remove"
              " the file.")
    assert main(["ablate", "--data", str(tiny_root), "--out", str(tmp_path / "other"), "--valid-fraction", "0.25",
                 *options]) == 1
    assert flat(capsys.readouterr().err) == unused
    assert main(["sweep", "--data", str(tiny_root), "--out", str(tmp_path / "sweep-other"), "--trials", "1",
                 "--valid-fraction", "0.25", "--quiet"]) == 1
    assert flat(capsys.readouterr().err) == unused


def test_ablate_and_sweep_say_a_share_of_grouped_clips_is_whole_groups(tmp_path: Path, capsys) -> None:
    root = write_root(tmp_path / "root", train=20, valid=0, dims={"vit": 6})
    (root / "valid_split.csv").unlink()
    frame = pd.read_csv(root / "train_split.csv")
    frame["speaker"] = [f"s{i % 5}" for i in range(len(frame))]
    frame.to_csv(root / "train_split.csv", index=False)
    held_out = "whole 'speaker' groups near 25 % of train held out (train.valid_fraction 0.25)"
    assert main(["ablate", "--data", str(root), "--out", str(tmp_path / "ablation"), "--valid-fraction", "0.25",
                 "--grid", str(grid_file(tmp_path, "cells:\n  paper: {}\n")), "--seeds", "0", "--max-epochs", "1",
                 "--quiet"]) == 0
    assert f"Ablation (1 seed(s), {held_out}): {tmp_path / 'ablation'}" in flat(capsys.readouterr().out)
    assert main(["sweep", "--data", str(root), "--out", str(tmp_path / "sweep"), "--trials", "1", "--max-epochs", "1",
                 "--valid-fraction", "0.25", "--quiet"]) == 0
    assert f"best first; validation on {held_out}" in flat(capsys.readouterr().out)
    assert load_config(tmp_path / "sweep" / "best.yaml").description.endswith(f"on {held_out}.")
    assert not (tmp_path / "other").exists() and not (tmp_path / "sweep-other").exists()


def test_generated_cells_cover_every_fusion_and_the_modality_subsets_with_and_without_text(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from emimic.config import load_config

    monkeypatch.setitem(FUSIONS, "plugin_fusion", object)  # a fusion registered by anyone is a cell too
    grid = Grid(generate={"fusions": True, "modality_subsets": True})
    base = load_config("paper")
    cells = generated_cells(grid, base, ["text_emb", "vit", "wav2vec2"])
    fusions = {name.removeprefix("fusion_") for name in cells if name.startswith("fusion_")}
    assert fusions == set(FUSIONS.names()) - {"concat"}  # the base's fusion is the paper cell itself
    assert "plugin_fusion" in fusions
    subsets = {tuple(c["model.modalities"]) for n, c in cells.items() if n.startswith("modalities=")}
    assert subsets == {("text_emb",), ("vit",), ("wav2vec2",), ("text_emb", "vit"), ("text_emb", "wav2vec2"),
                       ("vit", "wav2vec2")}
    assert "no_text" not in cells  # vit+wav2vec2 is already the subset without text
    four = generated_cells(grid, base, ["egemaps", "text_emb", "vit", "wav2vec2"])
    assert four["no_text"] == {"model.modalities": ["egemaps", "vit", "wav2vec2"]}
    assert "no_text" not in generated_cells(grid, base, ["vit", "wav2vec2"])  # no text in the data


# ---------------------------------------------------------------- statistics on hand-made numbers


def scores(cells: dict[str, list[float]]) -> pd.DataFrame:
    rows = [{"cell": name, "seed": seed, "mean_pcc": value, **dict.fromkeys(EMOTIONS, value)}
            for name, values in cells.items() for seed, value in enumerate(values)]
    return pd.DataFrame(rows)


def test_the_paired_t_test_matches_the_textbook_value() -> None:
    # differences 0.10, 0.09, 0.11: mean 0.10, sd 0.01, t = 0.10 / (0.01 / sqrt 3) = 17.32 on 2 df -> p = 0.0033
    assert paired_t_test([0.60, 0.61, 0.62], [0.50, 0.52, 0.51]) == pytest.approx(0.00332, abs=1e-4)
    assert paired_t_test([0.5, 0.6], [0.5, 0.6]) == 1.0 and paired_t_test([0.6], [0.5]) is None


def test_a_change_counts_only_when_seeds_and_clips_both_say_so() -> None:
    assert not is_within_noise(0.1, 0.003, (0.05, 0.15))
    assert is_within_noise(0.1, 0.003, (-0.01, 0.15))  # the clips disagree
    assert is_within_noise(0.1, 0.20, (0.05, 0.15))  # the seeds disagree
    assert is_within_noise(-0.1, 0.003, (0.05, 0.15))  # the interval is on the other side of 0
    assert not is_within_noise(-0.1, 0.003, (-0.15, -0.05))
    assert not is_within_noise(0.1, None, (0.05, 0.15))  # one seed: the clips alone judge


def test_the_summary_gives_mean_std_change_and_marks_on_hand_made_numbers() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(0.5, 0.01, size=(1000, len(EMOTIONS)))
    boot = {"paper": reference, "clear": reference + 0.1 + rng.normal(0, 0.01, reference.shape),
            "noisy": reference + rng.normal(0, 0.2, reference.shape), "worse": reference - 0.1}
    table = scores({"paper": [0.50, 0.52, 0.51], "clear": [0.60, 0.61, 0.62], "noisy": [0.49, 0.55, 0.50],
                    "worse": [0.40, 0.43, 0.41]})
    paper, clear, noisy, worse = summarise(table, "paper", boot)
    assert (paper.verdict, paper.mean, paper.std) == ("reference", pytest.approx(0.51), pytest.approx(0.01))
    assert clear.delta == pytest.approx(0.10) and clear.p_value == pytest.approx(0.00332, abs=1e-4)
    assert clear.interval[0] > 0 and clear.verdict == "better"
    assert clear.pcc_mean["Joy"] == pytest.approx(0.61) and clear.pcc_std["Joy"] == pytest.approx(0.01)
    assert noisy.interval[0] < 0 < noisy.interval[1] and noisy.verdict == "within noise"
    assert worse.delta == pytest.approx(-0.0967, abs=1e-4) and worse.verdict == "worse"


# ---------------------------------------------------------------- end to end through the CLI


@pytest.fixture(scope="module")
def ablation(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """A 2-cell x 2-seed ablation of 2 epochs (plus a skipped cell), run once through the CLI."""
    folder = tmp_path_factory.mktemp("ablation")
    grid = grid_file(folder, "cells:\n  paper: {}\n  no_ema: {train.ema.enabled: false}\n"
                             "  face_mesh: {model.modalities: [facemesh]}\n")
    argv = ["ablate", "--data", str(tiny_root), "--grid", str(grid), "--seeds", "0", "1", "--max-epochs", "2",
            "--out", str(folder / "out"), "--quiet"]
    assert main(argv) == 0
    return folder / "out", grid, argv


def test_ablate_writes_one_row_per_cell_and_seed_and_the_table(ablation: tuple[Path, Path, list[str]]) -> None:
    out, _, _ = ablation
    table = pd.read_csv(out / TABLE_FILE)
    assert list(zip(table["cell"], table["seed"], table["status"], strict=True)) == [
        ("paper", 0, "trained"), ("paper", 1, "trained"), ("no_ema", 0, "trained"), ("no_ema", 1, "trained"),
        ("face_mesh", 0, "skipped"), ("face_mesh", 1, "skipped")]
    assert set(EMOTIONS) <= set(table.columns) and table["mean_pcc"].notna().sum() == 4
    assert all((out / cell / f"seed{s}" / "metrics.json").exists() for cell in ("paper", "no_ema") for s in (0, 1))
    summary = (out / "ablation.md").read_text(encoding="utf-8")
    assert "| paper | 2 |" in summary and "| no_ema | 2 |" in summary and "reference" in summary
    assert "- `face_mesh`: the data has no facemesh" in summary
    assert "cells of the base config `paper`, at most 2 epochs unless a cell sets its own" in summary  # what ran


def test_an_ablation_folder_is_no_ensemble_to_predict_with(ablation: tuple[Path, Path, list[str]], tiny_root: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out, _, _ = ablation
    assert main(["predict", "--run", str(out), "--data", str(tiny_root), "--out", str(out.parent / "sub.csv")]) == 1
    assert f"error: {out}: is no run nor a folder of runs to average (a CV folder); its runs lie deeper" in \
        " ".join(capsys.readouterr().err.split())


@pytest.fixture
def copied(ablation: tuple[Path, Path, list[str]], tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A copy of the ablation's folder for a test that writes into it: its folder, grid and argv (with --out the
    copy), so that no test depends on what another did to the shared one."""
    out, grid, argv = ablation
    copy = Path(shutil.copytree(out, tmp_path / "out"))
    return copy, grid, [a if a != str(out) else str(copy) for a in argv]


def with_grid(argv: list[str], grid: Path) -> list[str]:
    return [*argv[: argv.index("--grid") + 1], str(grid), *argv[argv.index("--grid") + 2:]]


def test_a_second_call_with_the_seeds_in_another_order_than_recorded_reuses_every_finished_run(
        copied: tuple[Path, Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    out, _, argv = copied
    settings = json.loads((out / "ablation.json").read_text(encoding="utf-8"))
    settings["seeds"] = [1, 0]  # as an earlier emimic recorded them: in the order given
    (out / "ablation.json").write_text(json.dumps(settings), encoding="utf-8")
    runs = sorted(out.glob("*/seed*/metrics.json"))
    before = [path.stat().st_mtime_ns for path in runs]
    reordered = [*argv[: argv.index("--seeds") + 1], "1", "0", *argv[argv.index("--max-epochs"):]]
    capsys.readouterr()
    assert main([a for a in reordered if a != "--quiet"]) == 0
    assert [path.stat().st_mtime_ns for path in runs] == before
    assert set(pd.read_csv(out / TABLE_FILE)["status"]) == {"reused", "skipped"}
    printed = capsys.readouterr().err
    assert "paper seed 1: valid mean PCC" in printed and printed.count(", reused") == 4


def test_leftovers_found_by_runs_on_worker_processes_are_one_warning_line_each(
        copied: tuple[Path, Path, list[str]], tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    out, _, argv = copied
    (tmp_path / ".out.replaced-1a2b3c4d").mkdir()  # found by the command itself
    (out / "paper" / ".seed1.replaced-5e6f7a8b").mkdir()  # found by the worker that reuses paper/seed1
    capfd.readouterr()
    assert main([*argv, "--jobs", "2"]) == 0
    printed = capfd.readouterr().err.splitlines()  # the workers' stderr too: it is the terminal's
    assert [line for line in printed if "replaced-" in line] == [
        f"warning: {leftover_message(out)}", f"warning: {leftover_message(out / 'paper' / 'seed1')}"]


def test_a_folder_made_with_other_seeds_is_refused_unless_overwrite(copied: tuple[Path, Path, list[str]],
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out, _, argv = copied
    other = [*argv[: argv.index("--seeds") + 1], "0", *argv[argv.index("--max-epochs"):]]
    capsys.readouterr()
    assert main(other) == 1
    assert f"{out} was made with other seeds (see {out / 'ablation.json'}); rerun it with the same options, pass" \
           " --overwrite to replace it, or choose a new --out." in " ".join(capsys.readouterr().err.split())
    assert main([*other, "--overwrite"]) == 0
    assert set(pd.read_csv(out / TABLE_FILE)["seed"]) == {0} and not (out / "paper" / "seed1").exists()


def refusal(run: Path, cell: str, found: str) -> str:
    return (f"error: {run} holds a run that cell {cell!r} of this grid cannot reuse ({found}); pass --overwrite to"
            " train it again (the runs this grid can reuse are kept), or choose a new --out.")


def stamps(out: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in out.glob("*/seed*/metrics.json")}


def test_a_grid_that_gains_a_cell_reuses_the_others_and_a_changed_cell_is_refused_before_any_run_trains(
        copied: tuple[Path, Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, grid, argv = copied
    before = stamps(out)
    grown = grid_file(tmp_path, grid.read_text(encoding="utf-8") + "  no_vad: {model.vad.enabled: false}\n",
                      name="grown.yaml")
    changed = grid_file(tmp_path, "cells:\n  paper: {}\n  no_vad: {model.vad.enabled: false}\n"
                                  "  no_ema: {train.ema.decay: 0.9}\n", name="changed.yaml")
    capsys.readouterr()
    assert main(with_grid(argv, changed)) == 1  # no_vad, new, comes first in the grid: nothing of it trains
    assert " ".join(capsys.readouterr().err.split()) == refusal(
        out / "no_ema" / "seed0", "no_ema", "train.ema.decay was 0.99, now 0.9; train.ema.enabled was False, now True")
    assert not (out / "no_vad").exists() and stamps(out) == before
    assert main(with_grid(argv, grown)) == 0
    assert stamps(out).items() >= before.items()  # every run of the cells it shares is reused
    table = pd.read_csv(out / TABLE_FILE).set_index("cell")
    assert set(table.loc["no_vad", "status"]) == {"trained"} and set(table.loc["paper", "status"]) == {"reused"}


def test_a_cell_binds_only_through_the_runs_its_folders_hold(
        copied: tuple[Path, Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    out, _, argv = copied
    before = stamps(out)

    from emimic.training import jobs

    train = jobs.train

    def crash_in_big(data: Path, run: str, **kwargs: object) -> object:  # as an out-of-memory before the first epoch
        if Path(run).parent.name == "big":
            raise MemoryError(run)
        return train(data, run, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(jobs, "train", crash_in_big)
        assert main(with_grid(argv, grid_file(tmp_path, "cells:\n  paper: {}\n  big: {model.head.dropout: 0.5}\n",
                                              name="big.yaml"))) == 1
    fixed = grid_file(tmp_path, "cells:\n  paper: {}\n  big: {model.head.dropout: 0.2}\n", name="fixed.yaml")
    assert main(with_grid(argv, fixed)) == 0
    # a dropped cell whose folders the user deleted comes back changed as a new cell
    shutil.rmtree(out / "no_ema")
    assert main(with_grid(argv, grid_file(tmp_path, "cells:\n  paper: {}\n  no_ema: {train.ema.decay: 0.9}\n",
                                          name="no_ema.yaml"))) == 0
    table = pd.read_csv(out / TABLE_FILE).set_index("cell")
    assert set(table.loc["no_ema", "status"]) == {"trained"} and set(table.loc["paper", "status"]) == {"reused"}
    assert all(stamps(out)[path] == stamp for path, stamp in before.items() if "paper" in path.parts)
    assert json.loads((out / "ablation.json").read_text(encoding="utf-8"))["grid"].keys() == {"paper", "no_ema"}


def test_overwrite_replaces_only_the_runs_a_cell_cannot_reuse_an_unreadable_one_too(
        copied: tuple[Path, Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    out, _, argv = copied
    before = stamps(out)
    (out / "no_ema" / "seed1" / "run.json").write_text("{broken", encoding="utf-8")
    capsys.readouterr()
    assert main(argv) == 1
    assert " ".join(capsys.readouterr().err.split()).startswith(
        f"error: {out / 'no_ema' / 'seed1'} holds a run that cell 'no_ema' of this grid cannot reuse"
        f" ({out / 'no_ema' / 'seed1' / 'run.json'}: cannot be read as the record of a run (Expecting")
    assert stamps(out) == before
    assert main([*argv, "--overwrite"]) == 0
    table = pd.read_csv(out / TABLE_FILE).set_index(["cell", "seed"])["status"]
    assert table[("no_ema", 1)] == "trained" and set(table.drop(("no_ema", 1))) == {"reused", "skipped"}
    assert {path: stamps(out)[path] for path in before if "seed1" not in path.parts or "paper" in path.parts} == {
        path: stamp for path, stamp in before.items() if "seed1" not in path.parts or "paper" in path.parts}
