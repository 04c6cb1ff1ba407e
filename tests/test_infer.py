"""emimic infer: videos → the run's own extraction recipe → predictions, CSV and plots."""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import flat
from emimic.cli.registry import main
from emimic.errors import ConfigError, DataError, EmimicWarning
from emimic.features.pipeline import make_spec
from emimic.features.recipe import model_digest
from emimic.features.vision import _face_mesh
from emimic.infer import CLIP_COLUMN, check_recipe, collect_videos, infer, run_recipe
from emimic.labels import EMOTIONS, write_split
from emimic.training import train
from emimic.training.inference import evaluate, load_run

MEDIA = Path(__file__).parent / "media"
MODALITIES = "egemaps,whisper,text_emb,face"
FPS = "2"  # fewer frames for FaceMesh: the test is about the recipe, not the face
DOCS = Path(__file__).parents[1] / "docs" / "infer.md"



@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Raw videos only (copies of the four valid test clips), extracted from the command line."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "raw").mkdir()
    ids = list(range(1, 9))
    for clip_id in ids:
        shutil.copy(MEDIA / f"{(clip_id - 1) % 4 + 1:05d}.mp4", root / "raw" / f"{clip_id:05d}.mp4")
    labels = pd.DataFrame(np.random.default_rng(0).uniform(size=(8, 6)), index=ids, columns=list(EMOTIONS))
    write_split(labels.iloc[:4], root / "train_split.csv")
    write_split(labels.iloc[4:], root / "valid_split.csv")
    assert main(["extract", "--data", str(root), "--modalities", MODALITIES, "--fps", FPS, "--quiet"]) == 0
    return root


@pytest.fixture(scope="module")
def run(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("runs") / "raw"
    train(corpus, folder, max_epochs=2, progress=False)
    return folder


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EMIMIC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_new_videos_get_the_predictions_of_the_training_features(corpus: Path, run: Path, tmp_path: Path) -> None:
    """Re-extracting the valid clips with the recorded recipe reproduces their features, hence their predictions."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for clip_id in range(5, 9):
        shutil.copy(corpus / "raw" / f"{clip_id:05d}.mp4", videos / f"{clip_id:05d}.mp4")
    shutil.copy(MEDIA / "00005.mp4", videos / "broken.mp4")  # a corrupt file fails alone
    result = infer(run, [videos], out=tmp_path / "p.csv", plots=tmp_path / "plots", progress=False)

    expected = evaluate(load_run(run), corpus, split="valid").clips
    got = result.predictions.set_index(CLIP_COLUMN)
    assert list(got.index) == ["00005", "00006", "00007", "00008"]
    for emotion in EMOTIONS:
        np.testing.assert_allclose(got[emotion].to_numpy(), expected[f"pred {emotion}"].to_numpy(), atol=1e-5)
    assert set(result.failed[CLIP_COLUMN]) == {"broken"}
    written = pd.read_csv(tmp_path / "p.csv", dtype={CLIP_COLUMN: str})
    assert list(written.columns) == [CLIP_COLUMN, *EMOTIONS] and len(written) == 4
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [f"0000{i}.png" for i in range(5, 9)]
    assert not any(p.name.startswith(("_", ".")) or p.is_dir() for p in videos.iterdir())  # nothing beside them
    assert (result.cache / "_extract").is_dir() and str(result.cache).startswith(str(tmp_path / "cache"))


def test_the_run_records_each_modalitys_recipe(run: Path) -> None:
    recipes = load_run(run).data["recipes"]
    assert recipes["facemesh"]["params"]["fps"] == float(FPS)
    assert recipes["text_emb"]["transcript"]["extractor"] == "whisper"
    assert len(recipes["text_emb"]["model_sha256"]) == 64 and recipes["egemaps"]["model_sha256"] is None


def test_cli_writes_csv_and_plots_and_lists_failures(run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "predictions.csv"
    code = main(["infer", "--run", str(run), str(MEDIA / "00001.mp4"), str(MEDIA / "00005.mp4"), "--out", str(out),
                 "--report", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Predictions (1 clips)" in captured.out and "predictions_plots/ (1 PNG)" in flat(captured.out)
    assert "failed: 00005:" in captured.err and "is not a video or audio file FFmpeg can read" in flat(captured.err)
    assert (tmp_path / "predictions_plots" / "00001.png").stat().st_size > 0
    # a second infer into that file: refused before any work unless --overwrite (it replaced the file silently)
    again = ["infer", "--run", str(run), str(MEDIA / "00001.mp4"), "--out", str(out), "--quiet"]
    assert main(again) == 1
    assert f"{out} already exists; pass --overwrite to replace it" in flat(capsys.readouterr().err)
    assert len(pd.read_csv(out)) == 1 and main([*again, "--overwrite"]) == 0


def test_quiet_infer_keeps_facemeshs_native_log_lines_off_stderr(run: Path, tmp_path: Path, capfd) -> None:
    """MediaPipe writes its info and warning lines to descriptor 2 itself, past Python's sys.stderr."""
    _face_mesh.cache_clear()  # a new graph logs again: this process's first one logged while the corpus was extracted
    code = main(["infer", "--run", str(run), str(MEDIA / "00001.mp4"), "--out", str(tmp_path / "p.csv"), "--quiet"])
    err = capfd.readouterr().err
    assert code == 0 and err == ""


def test_a_run_on_precomputed_features_is_refused_naming_them(make_root, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "run"
    train(make_root(), folder, max_epochs=1, progress=False)
    with pytest.raises(ConfigError, match=r"cannot be re-extracted from video: vit \(no extraction recipe.*wav2vec2"):
        infer(folder, [MEDIA], progress=False)
    assert main(["infer", "--run", str(folder), str(MEDIA)]) == 1
    assert "error: " in capsys.readouterr().err
    with pytest.raises(SystemExit):  # one run only: a second --run is not silently the one used
        main(["infer", "--run", str(folder), "--run", str(tmp_path), str(MEDIA)])
    assert f"argument --run: given twice ({folder}, then {tmp_path}); give it once" in capsys.readouterr().err


def _record(**changes) -> dict:
    record = {"extractor": "face", "options": {}, "params": {"fps": 5.0, "max_side": 640}, "seed": 0,
              "model_sha256": None, "transcript": None, "output": "facemesh"}
    return {**record, **changes}


def test_recipes_that_cannot_be_reproduced_in_one_run_are_refused() -> None:
    assert run_recipe({"facemesh": _record()}, ["facemesh"], "RUN").fps == 5.0
    with pytest.raises(ConfigError, match=r"different fps \(5.0 and 2.0\)"):
        run_recipe({"a": _record(), "b": _record(extractor="face_emb", output="face_emb", params={"fps": 2.0})},
                   ["a", "b"], "RUN")
    with pytest.raises(ConfigError, match=r"text_emb \(its transcripts came with the dataset"):
        run_recipe({"text_emb": _record(extractor="text_emb")}, ["text_emb"], "RUN")
    with pytest.raises(ConfigError, match=r"facemesh \(extracted by an emimic version that did not record"):
        run_recipe({"facemesh": {"extractor": "face", "params": {}}}, ["facemesh"], "RUN")


def test_a_different_model_is_refused(run: Path, tmp_path: Path) -> None:
    """Same extractor and parameters, other weights: the recorded SHA-256 no longer matches."""
    models = tmp_path / "models"
    shutil.copytree(Path(load_run(run).data["recipes"]["text_emb"]["params"]["model"]), models / "text_emb")
    with open(models / "text_emb" / "config.json", "a", encoding="utf-8") as handle:
        handle.write("\n")
    with pytest.raises(ConfigError, match=r"text_emb/ was extracted with a text_emb model of SHA-256 [0-9a-f]{12}"):
        infer(run, [MEDIA / "00001.mp4"], model_dir=models, progress=False)


def test_a_changed_parameter_is_refused(run: Path, tmp_path: Path) -> None:
    recipes = copy.deepcopy(load_run(run).data["recipes"])
    recipes["facemesh"]["params"]["refine_landmarks"] = False  # as if another emimic drew the mesh differently
    recipe = run_recipe(recipes, list(recipes), "RUN")
    spec = make_spec(tmp_path, list(recipe.options), recipe.options, model_dir=None, fps=recipe.fps,
                     max_side=recipe.max_side, seed=recipe.seed)
    with pytest.raises(ConfigError, match=r"facemesh/ was extracted with .*'refine_landmarks': False.* here would use"):
        check_recipe(recipe, spec.build(), spec)


def test_model_digest_follows_content(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "w.bin").write_bytes(b"1234")
    first = model_digest(tmp_path)
    (tmp_path / "sub" / "w.bin").write_bytes(b"1235")
    assert model_digest(tmp_path) != first


def test_clip_names_are_relative_to_the_inputs_shared_folder(tmp_path: Path) -> None:
    # Beside the videos: recordings of other formats (named), and files that are no clips (not named): notes, a
    # previous infer's CSV and plots, a run folder, bookkeeping under '_' names, hidden files.
    for name in ("a/x.mp4", "b/x.mp4", "b/.hidden/y.mp4", "b/takes/y.3gp", "b/voice.WAV", "b/notes.txt", "b/.DS_Store",
                 "b/predictions.csv", "b/predictions_plots/x.png", "b/runs/raw/model.ckpt", "b/_extract/z.mpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    with pytest.warns(EmimicWarning) as warned:  # what is not predicted is named, in one warning per input folder
        assert list(collect_videos([tmp_path / "a", tmp_path / "b"])) == ["a/x", "b/x"]
    assert [str(w.message) for w in warned] == [
        f"{(tmp_path / 'b').resolve()}/: 'takes/y.3gp', 'voice.WAV' not predicted: emimic reads .mp4, .avi, .mkv,"
        " .webm, .mov, .m4v files in b/; move each out of b/, or convert a recording to .mp4, e.g. ffmpeg -i"
        " clip.3gp clip.mp4."]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no video file"):
        collect_videos([tmp_path / "empty"])
    with pytest.raises(DataError, match="nothing: no such file or folder"):
        collect_videos([tmp_path / "nothing"])


def _documented_commands() -> list[list[str]]:
    block = re.findall(r"<!-- executed by tests/test_infer.py::test_docs_example_runs -->\n```bash\n(.*?)```",
                       DOCS.read_text(), flags=re.S)
    return [shlex.split(line) for line in block[0].strip().splitlines() if not line.startswith("#")]


def test_docs_example_runs(corpus: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """The page's commands, from a folder with the corpus (already extracted: the extract line resumes)."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(corpus, tmp_path / "corpus")
    shutil.copytree(MEDIA, tmp_path / "new_videos")
    for argv in _documented_commands():
        assert argv[0] == "emimic"
        assert main(argv[1:]) == 0, (argv, capsys.readouterr())
    predictions = pd.read_csv(tmp_path / "predictions.csv")
    assert len(predictions) == 4 and (tmp_path / "predictions_plots").is_dir()
    assert json.loads((tmp_path / "runs" / "raw" / "metrics.json").read_text())["n_clips"] == 4
    annotation = "<!-- executed by tests/test_infer.py::test_docs_example_runs -->"
    python_example = re.findall(annotation + r"\n```python\n(.*?)```", DOCS.read_text(), flags=re.S)[0]
    exec(python_example, {})
    assert pd.read_csv(tmp_path / "from_python.csv").equals(predictions)


def test_the_store_carries_each_modalitys_recipe_and_repacks_when_it_changes(make_root) -> None:
    from emimic.data import FeatureStore, discover, pack
    from emimic.data.store import stale_modalities

    root = make_root()
    (root / "vit" / "_extractor.json").write_text(json.dumps(_record(output="vit")))
    store = FeatureStore.open(pack(root, progress=False).store_dir)
    assert store.recipe("vit")["extractor"] == "face" and store.recipe("wav2vec2") is None
    (root / "vit" / "_extractor.json").write_text(json.dumps(_record(output="vit", seed=1)))
    assert stale_modalities(discover(root), store.path) == {"vit": "packed", "wav2vec2": "unchanged"}


def test_a_modality_no_video_yields_is_masked_not_fatal(run: Path, tmp_path: Path) -> None:
    """The silent, faceless clip alone: no text_emb, no facemesh anywhere, still predicted from the rest."""
    result = infer(run, [MEDIA / "00004.mp4"], progress=False)
    assert list(result.predictions[CLIP_COLUMN]) == ["00004"] and result.failed.empty
    assert np.isfinite(result.predictions[list(EMOTIONS)].to_numpy()).all()
