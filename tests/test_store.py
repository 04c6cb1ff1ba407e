import contextlib
import json
import os
import pickle
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from emimic.cli import main
from emimic.data import ClipDataset, FeatureStore, collate_clips, feature_statistics, open_dataset, pack
from emimic.data.store import (
    FLOAT16_ROUNDING,
    FLOAT32_ROUNDING,
    RoundingHarm,
    cache_dir,
    cache_store_dir,
    default_store_dir,
)
from emimic.data.validate import validate
from emimic.errors import DataError, OutputConflict
from emimic.io import load_array


def test_open_dataset_splits_modalities_and_masks(make_root) -> None:
    root = make_root(missing={"vit": [3, 6]})
    ds = open_dataset(root)
    assert ds.modalities == ["vit", "wav2vec2"]
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 12, "valid": 6, "test": 4}
    assert ds.has_labels("train") and not ds.has_labels("test")
    assert ds.coverage().loc["train", "vit"] == pytest.approx(10 / 12)
    store = ds.store(progress=False)
    assert store.present("vit", [3, 6, 9, 999]).tolist() == [False, False, True, False]
    assert (store.pooled("vit", [3]) == 0).all()


def test_pooled_and_frames_match_the_source_files(make_root) -> None:
    root = make_root(dims={"vit": 6})
    store = open_dataset(root).store(progress=False)
    for clip_id in (3, 30, 60):
        frames = load_array(root / "vit" / f"{clip_id:05d}.pkl")
        np.testing.assert_allclose(store.frames("vit", clip_id), frames)
        expected = np.concatenate([frames.mean(0), frames.std(0), frames.min(0), frames.max(0)])
        np.testing.assert_allclose(store.pooled("vit", [clip_id])[0], expected, rtol=1e-5, atol=1e-6)
    assert store.lengths("vit", [3])[0] == len(load_array(root / "vit" / "00003.pkl"))


def test_float16_store(make_root) -> None:
    root = make_root()
    pack(root, dtype="float16", progress=False)
    store = FeatureStore.open(default_store_dir(root))
    assert store.manifest["modalities"]["vit"]["dtype"] == "float16"
    np.testing.assert_allclose(store.frames("vit", 3), load_array(root / "vit" / "00003.pkl"), atol=2e-3)


def test_repack_is_a_noop_until_a_clip_changes(make_root) -> None:
    root = make_root()
    assert set(pack(root, progress=False).actions.values()) == {"packed"}
    assert set(pack(root, progress=False).actions.values()) == {"unchanged"}
    changed = root / "vit" / "00003.pkl"
    with open(changed, "wb") as handle:
        pickle.dump(np.full((4, 8), 7.0, np.float32), handle)
    os.utime(changed, ns=(1, 1))
    result = pack(root, progress=False)
    assert result.actions == {"vit": "packed", "wav2vec2": "unchanged"}
    assert (FeatureStore.open(result.store_dir).frames("vit", 3) == 7.0).all()
    # the superseded modality folder is gone, the manifest names only live folders
    manifest = json.loads((result.store_dir / "manifest.json").read_text())
    live = {e["dir"] for e in manifest["modalities"].values()}
    assert {p.name for p in result.store_dir.iterdir() if p.is_dir()} == live


def test_a_damaged_store_is_named_and_repacked(make_root, tmp_path: Path) -> None:
    """A packed frames.bin truncated afterwards (a full disk, a cleanup) is packed again, not read as garbage."""
    root = make_root()
    store_dir = pack(root, progress=False).store_dir
    frames = next(store_dir.glob("vit-*/frames.bin"))
    frames.write_bytes(b"")
    with pytest.raises(DataError) as caught:
        FeatureStore.open(store_dir)
    assert str(caught.value) == (
        f"{frames}: the packed 'vit' features are missing or damaged (not the size the store's manifest records);"
        f" pack them again: emimic pack {root}"
    )
    ds = open_dataset(root)
    np.testing.assert_allclose(ds.store(progress=False).frames("vit", 3), load_array(root / "vit" / "00003.pkl"))
    assert pack(root, progress=False).actions == {"vit": "unchanged", "wav2vec2": "unchanged"}

    elsewhere = pack(root, store_dir=tmp_path / "elsewhere", progress=False).store_dir
    next(elsewhere.glob("wav2vec2-*/pooled.npy")).unlink()
    with pytest.raises(DataError, match=rf"pack them again: emimic pack {root} --store {elsewhere}$"):
        FeatureStore.open(elsewhere)
    assert pack(root, store_dir=elsewhere, progress=False).actions == {"vit": "unchanged", "wav2vec2": "packed"}


def test_bad_file_aborts_pack_and_keeps_previous_store(make_root) -> None:
    root = make_root()
    first = pack(root, progress=False)
    before = (first.store_dir / "manifest.json").read_text()
    (root / "wav2vec2" / "00009.pkl").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=r"00009\.pkl: cannot be read"):
        pack(root, progress=False)
    assert (first.store_dir / "manifest.json").read_text() == before
    assert not list(first.store_dir.glob(".*.tmp"))
    assert FeatureStore.open(first.store_dir).dim("wav2vec2") == 12


@pytest.mark.parametrize(("odd", "listed"), [
    ({30: 5}, ""), ({3: 5}, ""), ({3: 5, 6: 5, 60: 5}, " (clips 3, 6, 60 differ: 3 of width 5)"),
    ({3: 5, 6: 12, 60: 5}, " (clips 3, 6, 60 differ: 2 of width 5, 1 of width 12)")],
    ids=["middle", "first", "several", "several widths"])
def test_wrong_width_names_the_odd_file(make_root, odd: dict[int, int], listed: str) -> None:
    """The clips of another width than most are named, even when the first clip packed is one of them (it was
    taken as the modality's width, and the next, ordinary clip blamed); those of a third width were folded into
    the list of clips, as if of the first odd clip's."""
    root = make_root()
    for clip_id, width in odd.items():
        _put(root / "vit" / f"{clip_id:05d}.pkl", np.ones((3, width), np.float32))
    with pytest.raises(DataError) as caught:
        pack(root, progress=False)
    first, them = root / "vit" / f"{min(odd):05d}.pkl", "them" if len(odd) > 1 else "it"
    assert str(caught.value) == (
        f"{first}: has feature width 5, but {22 - len(odd)} of the 22 clips of modality 'vit' have width 8{listed};"
        f" extract {them} again as the others were, or delete {them} to mask {'those clips' if listed else 'the clip'}."
    )


def _put(path: Path, frames: np.ndarray) -> None:
    path.write_bytes(pickle.dumps(frames))


@pytest.mark.parametrize("broken", [pickle.dumps(np.full((3, 8), np.nan, np.float32)), b"garbage"],
                         ids=["nan", "unreadable"])
def test_a_later_broken_clip_does_not_hide_the_width_error(make_root, broken: bytes) -> None:
    """The scan of the other clips' widths stopped at the first clip that failed to read, and raised its error."""
    root = make_root()
    _put(root / "vit" / "00003.pkl", np.ones((3, 5), np.float32))
    (root / "vit" / "00060.pkl").write_bytes(broken)
    with pytest.raises(DataError, match=r"00003\.pkl: has feature width 5, but 20 of the 21 clips of modality 'vit'"
                                        r" have width 8; extract it again"):
        pack(root, progress=False)


def test_a_width_tie_blames_no_clip(make_root) -> None:
    """pack blamed the clips of whichever width it met second, validate those of the width it met second in its own
    order; pack and validate now say the same."""
    root = make_root()
    for clip_id in range(3, 36, 3):  # 11 of the 22 clips
        _put(root / "vit" / f"{clip_id:05d}.pkl", np.ones((3, 5), np.float32))
    tie = (f"{root / 'vit'}: the 22 clips of modality 'vit' differ in feature width and no width is the most common"
           " (11 of width 5, 11 of width 8); extract the modality again so that every clip has one width.")
    with pytest.raises(DataError) as caught:
        pack(root, progress=False)
    assert str(caught.value) == tie
    assert [p.message for p in validate(root, progress=False).problems if p.where == "vit"] == [
        tie.replace(str(root / "vit"), "vit")]


def test_single_pickle_mapping_modality(make_root) -> None:
    root = make_root(dims={"vit": 4})
    mapping = {f"{i:05d}": np.full((2, 3), float(i)) for i in (3, 6, 9)}
    with open(root / "googlevit.pkl", "wb") as handle:
        pickle.dump(mapping, handle)
    store = open_dataset(root).store(progress=False)
    assert store.modalities == ["googlevit", "vit"]
    assert store.present("googlevit", [3, 12]).tolist() == [True, False]
    assert store.frames("googlevit", 9)[0, 0] == 9.0


def test_feature_statistics_match_frame_moments(make_root) -> None:
    root = make_root(dims={"vit": 3})
    ds = open_dataset(root)
    ids = ds.splits["train"].index
    stats = feature_statistics(ds.store(progress=False), ids, ["vit"])["vit"]
    frames = np.concatenate([load_array(root / "vit" / f"{i:05d}.pkl") for i in ids])
    np.testing.assert_allclose(stats.frame_mean, frames.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats.frame_std, frames.std(0), rtol=1e-4)


def test_clip_dataset_batches_with_masks_and_sequences(make_root) -> None:
    root = make_root(missing={"vit": [3]})
    ds = open_dataset(root)
    train = ds.splits["train"]
    dataset = ClipDataset(
        ds.store(progress=False), train.index, train.to_numpy(), modalities=ds.modalities, sequences=True, max_frames=5
    )
    batch = next(iter(DataLoader(dataset, batch_size=4, collate_fn=collate_clips)))
    assert batch["ids"].tolist() == [3, 6, 9, 12]
    assert torch.allclose(batch["targets"], torch.tensor(train.to_numpy()[:4], dtype=torch.float32))
    vit = batch["inputs"]["vit"]
    assert vit["present"].tolist() == [False, True, True, True]
    assert vit["lengths"][0] == 0 and (vit["lengths"][1:] <= 5).all()
    assert vit["frames"].shape == (int(vit["lengths"].sum()), 8)  # packed: absent clips add no step
    assert vit["pooled"].shape == (4, 32)


def test_missing_split_and_missing_root_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a folder"):
        open_dataset(tmp_path / "nope")
    with pytest.raises(DataError, match="no split CSV"):
        open_dataset(tmp_path)


def test_zero_frame_files_are_masked_not_fatal(make_root) -> None:
    root = make_root()
    np.save(root / "vit" / "00006.npy", np.zeros((0, 8), np.float32))
    (root / "vit" / "00006.pkl").unlink()
    store = FeatureStore.open(pack(root, progress=False).store_dir)
    assert store.present("vit", [3, 6, 9]).tolist() == [True, False, True]
    assert store.manifest["modalities"]["vit"]["n_empty"] == 1


def test_single_array_dicts_are_unwrapped_and_other_dicts_refused(make_root) -> None:
    root = make_root(dims={"vit": 4})
    with open(root / "vit" / "00003.pkl", "wb") as handle:
        pickle.dump({"feature": np.ones((2, 4))}, handle)
    assert FeatureStore.open(pack(root, progress=False).store_dir).frames("vit", 3).shape == (2, 4)
    with open(root / "vit" / "00006.pkl", "wb") as handle:
        pickle.dump({"a": np.ones((2, 4)), "b": np.ones((2, 4))}, handle)
    with pytest.raises(DataError, match=r"00006\.pkl: holds a dict with keys \['a', 'b'\]"):
        pack(root, progress=False)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """No new entry can be made in ``folder``, for root too: permission bits do not stop root, the
    immutable attribute does (as a read-only mount would)."""
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(mode)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot make a folder read-only for root here (chattr +i unsupported)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_read_only_root_keeps_its_store_in_the_cache(make_root, tmp_path: Path, monkeypatch, capsys) -> None:
    root = make_root(dims={"vit": 4})
    monkeypatch.setenv("EMIMIC_CACHE", str(tmp_path / "cache"))
    run, submission = tmp_path / "run", tmp_path / "submission.csv"
    with read_only(root):
        assert main(["train", "--data", str(root), "--out", str(run), "--max-epochs", "1", "--quiet"]) == 0
        cached = cache_store_dir(root)
        assert cached.parent == tmp_path / "cache" / "stores" and cached.name.startswith("root-")
        manifest = (cached / "manifest.json").stat().st_mtime_ns
        assert main(["evaluate", "--run", str(run), "--data", str(root)]) == 0
        assert main(["predict", "--run", str(run), "--data", str(root), "--out", str(submission)]) == 0
    assert not (root / ".emimic").exists()
    assert [p.name for p in (tmp_path / "cache" / "stores").iterdir()] == [cached.name]
    assert (cached / "manifest.json").stat().st_mtime_ns == manifest  # found again, not re-packed
    assert len(pd.read_csv(submission)) == 4


def test_a_current_store_in_a_read_only_root_is_used(make_root, tmp_path: Path, monkeypatch) -> None:
    root = make_root(dims={"vit": 4})
    monkeypatch.setenv("EMIMIC_CACHE", str(tmp_path / "cache"))
    pack(root, progress=False)
    with read_only(root), read_only(default_store_dir(root)):
        assert open_dataset(root).store(progress=False).path == default_store_dir(root)
    assert not (tmp_path / "cache").exists()


def test_store_flag_and_cache_variables(make_root, tmp_path: Path, monkeypatch) -> None:
    root = make_root(dims={"vit": 4})
    elsewhere = tmp_path / "elsewhere"
    assert main(["pack", str(root), "--store", str(elsewhere), "--quiet"]) == 0
    assert FeatureStore.open(elsewhere).modalities == ["vit"] and not (root / ".emimic").exists()
    monkeypatch.delenv("EMIMIC_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "emimic"
    monkeypatch.setenv("EMIMIC_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    assert cache_store_dir(root) == cache_store_dir(root / ".." / root.name) != cache_store_dir(tmp_path)


def test_a_store_that_cannot_be_written_is_one_clear_error(make_root, tmp_path: Path) -> None:
    root = make_root(dims={"vit": 4})
    locked = tmp_path / "locked"
    locked.mkdir()
    with read_only(locked), pytest.raises(DataError, match=r"locked/store: cannot create the feature store .*--store"):
        pack(root, store_dir=locked / "store", progress=False)


def test_train_and_evaluate_keep_a_float16_store_given_by_flag(make_root, tmp_path: Path) -> None:
    root, store, run = make_root(dims={"vit": 4}), tmp_path / "store", tmp_path / "run"
    assert main(["pack", str(root), "--dtype", "float16", "--store", str(store), "--quiet"]) == 0
    manifest = store / "manifest.json"
    before = (manifest.read_text(), manifest.stat().st_mtime_ns)
    assert main(["train", "--data", str(root), "--store", str(store), "--out", str(run), "--max-epochs", "1",
                 "--quiet"]) == 0
    assert main(["evaluate", "--run", str(run), "--data", str(root), "--store", str(store)]) == 0
    assert main(["pack", str(root), "--store", str(store), "--quiet"]) == 0  # no --dtype: the store's own
    assert (manifest.read_text(), manifest.stat().st_mtime_ns) == before
    assert {e["dtype"] for e in json.loads(before[0])["modalities"].values()} == {"float16"}
    assert not (root / ".emimic").exists()
    converted = pack(root, dtype="float32", store_dir=store, progress=False)  # asked for explicitly: converted
    assert set(converted.actions.values()) == {"packed"}


def test_docs_store_example_runs(tmp_path: Path, monkeypatch) -> None:
    section = (Path(__file__).parents[1] / "docs" / "data.md").read_text().split("## Where the store lives")[1]
    block = section.split("```bash\n")[1].split("```")[0]
    monkeypatch.chdir(tmp_path)
    for line in filter(None, (line.split("#")[0].strip() for line in block.splitlines())):
        command, *args = shlex.split(line)
        assert command == "emimic" and main(args) == 0, line
    assert FeatureStore.open(default_store_dir(Path("data/sim"))).identity["vit"]["dtype"] == "float16"
    assert FeatureStore.open("stores/sim").modalities == ["text_emb", "vit", "wav2vec2"]


def write_extractor_record(root: Path, modality: str, names: list[str]) -> Path:
    path = root / modality / "_extractor.json"
    path.write_text(json.dumps({"extractor": modality, "feature_names": names}))
    return path


def test_feature_names_recorded_by_the_extractor_travel_with_the_store(make_root) -> None:
    root = make_root(dims={"vit": 4, "vad": 3})
    record = write_extractor_record(root, "vad", ["arousal", "dominance", "valence"])
    store = open_dataset(root).store(progress=False)
    assert store.feature_names("vad") == ["arousal", "dominance", "valence"]
    assert store.feature_names("vit") is None
    # a corrected record reaches the store: its modality is packed again, the others are kept
    write_extractor_record(root, "vad", ["valence", "arousal", "dominance"])
    os.utime(record, ns=(record.stat().st_atime_ns, record.stat().st_mtime_ns + 10**9))
    assert pack(root, progress=False).actions == {"vad": "packed", "vit": "unchanged"}
    assert FeatureStore.open(default_store_dir(root)).feature_names("vad") == ["valence", "arousal", "dominance"]
    write_extractor_record(root, "vad", ["valence", "arousal"])
    with pytest.raises(DataError, match=r"vad/_extractor.json: names 2 feature columns but the files of modality"
                                        r" 'vad' are 3 wide"):
        pack(root, progress=False)


def test_float16_harm_of_clips_longer_than_its_block_counts_every_row_once() -> None:
    """It works on blocks of rows (speed): the shares are those of all rows of all clips."""
    rng = np.random.default_rng(0)
    clips = [rng.normal(0, 1e-4, (frames, 300)).astype(np.float32) for frames in (1000, 7, 450)]
    harm = RoundingHarm(300, FLOAT16_ROUNDING)
    for frames in clips:
        harm.add(frames, frames.astype(np.float16))
    values = np.concatenate(clips).astype(np.float64)
    errors = np.concatenate(clips).astype(np.float16).astype(np.float64) - values
    assert harm.error_shares() == pytest.approx(errors.std(0) / values.std(0), rel=1e-6)


def test_rounding_harm_of_a_column_far_from_zero_keeps_its_spread() -> None:
    """Sums of squares of values near 1e8 would cancel their spread of 0.3 away (1e16 in float64 keeps steps of 2):
    the values are summed less the first frame's, so the shares are those numpy computes on the whole column. A
    constant column loses nothing, though the sums of its one rounding error leave a residue."""
    rng = np.random.default_rng(0)
    clips = [1e8 + rng.normal(0, 0.3, (frames, 3)) for frames in (40, 7, 25)]
    clips.append(clips[1].astype(np.float32).astype(np.float64))  # kept exactly: its errors are not computed
    harm = RoundingHarm(3, FLOAT32_ROUNDING)
    for frames in clips:
        harm.add(frames, frames.astype(np.float32))
    values = np.concatenate(clips)
    errors = values.astype(np.float32).astype(np.float64) - values
    assert harm.error_shares() == pytest.approx(errors.std(0) / values.std(0), rel=1e-6)
    constant = RoundingHarm(1, FLOAT32_ROUNDING)
    for frames in (125, 109, 331, 103, 164, 257, 220):  # sums whose residue is not 0
        column = np.full((frames, 1), 423326506639.9308)
        constant.add(column, column.astype(np.float32))
    assert constant.error_shares().tolist() == [0.0]


def _unit_rows(rng: np.random.Generator, frames: int, width: int) -> np.ndarray:
    rows = rng.normal(size=(frames, width))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _layer_normalised(rng: np.random.Generator, frames: int) -> np.ndarray:
    rows = rng.normal(size=(frames, 256))
    return (rows - rows.mean(1, keepdims=True)) / rows.std(1, keepdims=True)


# float64 columns of one value but for float64 arithmetic noise (1e-16 of it), which float32 rounds to one value.
NOISE_COLUMNS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "the norm beside an L2-normalised embedding": lambda rng, clip, frames: (
        lambda rows: np.c_[rows, np.linalg.norm(rows, axis=1)])(_unit_rows(rng, frames, 8)),
    "the sum of softmax probabilities": lambda rng, clip, frames: (
        lambda p: np.c_[p, p.sum(1)])(rng.dirichlet(np.ones(5), frames)),
    "a sample rate computed as n / duration": lambda rng, clip, frames: np.full(
        (frames, 1), 16000 * (3 + clip * 0.37) / (3 + clip * 0.37)),
    "the mean of a layer-normalised row plus 1": lambda rng, clip, frames: (
        _layer_normalised(rng, frames).mean(1, keepdims=True) + 1),
}


def _float32_harm(clips: list[np.ndarray]) -> RoundingHarm:
    harm = RoundingHarm(clips[0].shape[1], FLOAT32_ROUNDING)
    for frames in clips:
        harm.add(frames, frames.astype(np.float32))
    return harm


@pytest.mark.parametrize("column", NOISE_COLUMNS)
def test_a_float64_column_constant_but_for_arithmetic_noise_is_accepted(column: str) -> None:
    """float32 rounds all of its spread away, yet that spread is float64's own noise: there was nothing to lose, and
    main packed it. A spread of 3e-9 of the mean, 0.3 around 1e8, is refused, though every value rounds to 1e8."""
    rng = np.random.default_rng(0)
    clips = [NOISE_COLUMNS[column](rng, clip, frames) for clip, frames in enumerate((300, 7, 300, 300))]
    assert _float32_harm(clips).refusal("m", "m") is None
    offset = [1e8 + rng.uniform(-0.3, 0.3, (frames, 1)) for frames in (50, 7, 31)]
    assert {float(v) for v in np.concatenate(offset).astype(np.float32).ravel()} == {1e8}
    assert _float32_harm(offset).error_shares() == pytest.approx([1.0])


def test_a_constant_rounding_error_does_not_vary() -> None:
    """The errors are summed less the first frame's: values in float32's steps around 4e11, each rounded by the same
    error, vary by exactly 0, not by a residue of their sums (1.6e-11 of the values' spread here)."""
    step, starts = float(np.spacing(np.float32(423326506639.9308))), np.cumsum([0, 175, 159, 381, 153, 214, 307])
    clips = [423326506639.9308 + step * np.arange(start, start + frames, dtype=np.float64)[:, None]
             for start, frames in zip(starts, (125, 109, 331, 103, 164, 257, 220), strict=True)]
    assert _float32_harm(clips).error_shares().tolist() == [0.0]


@pytest.mark.parametrize("inside", [".", "vit", "new/store"])
def test_a_store_inside_the_dataset_root_is_refused_before_anything_is_written(make_root, tmp_path, inside,
                                                                                capsys) -> None:
    """Its folders and manifest were written into the root, then discovered as a modality: every later command
    failed. Every command taking --store opens the dataset through open_dataset or pack, which both refuse it."""
    root = make_root(dims={"vit": 4})
    before = sorted(root.rglob("*"))
    store = root / inside
    expected = (f"error: {store}: the feature store would lie inside the dataset root {root.resolve()}, whose every"
                " folder is read as data but those whose names begin with '.' or '_'; pass a --store DIR outside it or"
                f" in such a folder, or none (the store then lives in {default_store_dir(root.resolve())}).\n")
    for command in (["pack", str(root)], ["train", "--data", str(root), "--out", str(tmp_path / "run")],
                    ["cv", "--data", str(root), "--out", str(tmp_path / "cv")]):
        assert main([*command, "--store", str(store), "--quiet"]) == 1
        assert capsys.readouterr().err == expected
    with pytest.raises(OutputConflict, match="inside the dataset root"):
        open_dataset(root, store_dir=store)  # refused at once, even where a store there would be current
    assert sorted(root.rglob("*")) == before


@pytest.mark.parametrize("unread", [".emimic/elsewhere", "_store", ".cache/store"])
def test_a_store_in_a_folder_of_the_root_that_discovery_passes_over_is_accepted(make_root, unread: str) -> None:
    """Names beginning with '.' or '_' are not read as data (main packed into ROOT/_store), so a store there is safe."""
    root = make_root(dims={"vit": 4})
    pack(root, store_dir=root / unread, progress=False)
    assert open_dataset(root, store_dir=root / unread).store(progress=False).modalities == ["vit"]
