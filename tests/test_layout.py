import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from emimic.cli import main
from emimic.data.layout import discover
from emimic.data.validate import validate
from emimic.errors import DataError


def test_media_and_bookkeeping_folders_are_not_modalities(make_root) -> None:
    root = make_root()
    (root / "raw").mkdir()
    (root / "raw" / "00003.mp4").write_bytes(b"")
    (root / "face_images" / "00003").mkdir(parents=True)
    (root / "text").mkdir()
    (root / "text" / "00003.txt").write_text("hello")
    (root / "vit" / "_extractor.json").write_text("{}")
    layout = discover(root)
    assert sorted(layout.modalities) == ["vit", "wav2vec2"]
    assert list(layout.transcripts) == [3] and list(layout.videos) == [3]


def test_text_embeddings_beside_transcripts_are_a_modality(make_root) -> None:
    root = make_root()
    (root / "text").mkdir()
    (root / "text" / "00003.txt").write_text("")
    np.save(root / "text" / "00003.npy", np.ones(16, np.float32))
    assert discover(root).modalities["text"].ids == [3]


def test_links_leaving_the_root_are_refused(make_root, tmp_path: Path) -> None:
    root = make_root()
    outside = tmp_path / "secret.npy"
    np.save(outside, np.ones((2, 8), np.float32))
    os.symlink(outside, root / "vit" / "00099.npy")
    layout = discover(root)
    assert 99 not in layout.modalities["vit"].files
    assert any("links outside the dataset root" in p.message for p in validate(root, progress=False).problems)


def test_a_one_pickle_modality_with_a_line_break_in_its_name_is_refused_naming_it(make_root, capsys) -> None:
    """Its name cut the feature store's line of each clip in two: training stopped with an unexpected IndexError."""
    root = make_root(dims={"vit": 4})
    with open(root / "au\ndio.pkl", "wb") as handle:
        pickle.dump({3: np.ones((2, 5), dtype=np.float32)}, handle)
    expected = (f"{root}: the one-pickle modality 'au\\ndio.pkl' has a line break in its file name, which the feature"
                " store cannot record; rename the file without it.")
    with pytest.raises(DataError) as refused:
        discover(root)
    assert str(refused.value) == expected
    assert main(["validate", str(root)]) == 1
    assert capsys.readouterr().err == f"error: {expected}\n"


@pytest.mark.parametrize("suffix", [".pkl", ".npy", ".pt"])
def test_a_one_pickle_modality_beside_a_folder_of_its_name_is_refused_naming_both(make_root, suffix, capsys) -> None:
    """The one-pickle modality silently replaced the folder, whichever of the two was meant."""
    root = make_root(dims={"vit": 4})
    (root / f"vit{suffix}").write_bytes(pickle.dumps({3: np.ones((2, 4), dtype=np.float32)}))
    expected = (f"{root / f'vit{suffix}'}: duplicates modality 'vit' ({root / 'vit'}); which one was meant is yours"
                " to say, so keep one of the two.")
    with pytest.raises(DataError) as refused:
        discover(root)
    assert str(refused.value) == expected
    assert main(["pack", str(root), "--quiet"]) == 1
    assert capsys.readouterr().err == f"error: {expected}\n"
