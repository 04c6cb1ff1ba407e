import os
from pathlib import Path

import numpy as np

from emimic.data.layout import discover
from emimic.data.validate import validate


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
