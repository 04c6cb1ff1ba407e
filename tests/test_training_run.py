import json

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from emimic.data import feature_statistics, open_dataset
from emimic.errors import DataError, OutputConflict
from emimic.training.inference import evaluate, load_run, predict
from emimic.training.run import train

DIMS = {"vit": 8, "wav2vec2": 12, "text_emb": 4}


@pytest.fixture
def root(make_root):
    return make_root(train=48, valid=16, test=8, dims=DIMS, missing={"wav2vec2": [3, 30, 60], "text_emb": [6]})


class Interrupt(pl.Callback):
    """Fails during the third epoch, after the second epoch's checkpoint was written."""

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 2:
            raise RuntimeError("simulated crash")


# gru: batches of LengthBuckets, which the loader iterates early; a worker process draws batches at iter() already
@pytest.mark.parametrize(("config", "workers"), [(None, 0), ("gru", 0), ("gru", 1)])
def test_resume_after_interruption_gives_the_same_final_metrics(root, tmp_path, config, workers):
    options = dict(max_epochs=5, progress=False, config=config,
                   overrides={"optim.batch_size": 16, "train.num_workers": workers})
    whole = train(root, tmp_path / "whole", **options)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(root, tmp_path / "cut", callbacks=[Interrupt()], **options)
    assert not (tmp_path / "cut" / "metrics.json").exists()
    # the resume point is the last finished epoch (the second), whatever its score
    assert torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
    resumed = train(root, tmp_path / "cut", **options)
    assert resumed.valid.pcc == whole.valid.pcc
    assert resumed.epochs == whole.epochs == 5
    history = (tmp_path / "cut" / "history.csv").read_text().splitlines()
    assert history == (tmp_path / "whole" / "history.csv").read_text().splitlines()


def test_run_folder_checkpoint_and_refusals(root, make_root, tmp_path):
    run = tmp_path / "run"
    result = train(root, run, max_epochs=2, progress=False, seed=3)
    for name in ("config.yaml", "history.csv", "metrics.json", "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        assert (run / name).exists(), name
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["spec"]["dims"] == DIMS
    # EMA: state_dict holds the averaged weights, current_model_state the raw ones (for resuming)
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    weight = next(name for name in last["state_dict"] if name.endswith("head.1.0.weight"))
    assert not torch.equal(last["state_dict"][weight], last["current_model_state"][weight])
    stored = json.loads((run / "metrics.json").read_text())
    assert stored["mean_pcc"] == pytest.approx(result.valid.mean_pcc)
    assert evaluate(run, root).pcc == pytest.approx(result.valid.pcc)
    # a finished run is returned as stored; another config for it is refused
    assert train(root, run, max_epochs=2, progress=False, seed=3).valid.mean_pcc == result.valid.mean_pcc
    with pytest.raises(OutputConflict, match=r"train\.max_epochs was 2, now 4"):
        train(root, run, max_epochs=4, progress=False, seed=3)
    # features of another width are refused, not silently mis-read
    other = make_root("other", dims={"vit": 9, "wav2vec2": 12, "text_emb": 4})
    with pytest.raises(DataError, match="'vit' is 9 wide here but the model was trained on width 8"):
        predict(load_run(run), other, split="test")



@pytest.mark.parametrize("preset", ["attentive", "gru", "transformer", "no_ema"])
def test_frame_encoder_and_no_ema_presets_train_and_predict(root, tmp_path, preset):
    run = tmp_path / preset
    result = train(root, run, config=preset, max_epochs=1, progress=False)
    assert result.valid.n_clips == 16
    frame = predict(run, root, split="test")
    assert len(frame) == 8 and frame.iloc[:, 1:].to_numpy().max() <= 1


def test_clips_in_both_train_and_valid_are_refused_before_anything_is_written(root, tmp_path):
    valid = root / "valid_split.csv"
    train_rows = (root / "train_split.csv").read_text().splitlines()[1:13]
    valid.write_text(valid.read_text() + "\n".join(train_rows) + "\n")
    with pytest.raises(DataError, match=r"clips 3, 6, 9, 12, 15, 18, 21, 24, 27, 30 and 2 more are in both"
                                        r" train_split.csv and valid_split.csv; a clip may be in one split only\.$"):
        train(root, tmp_path / "run", max_epochs=1, progress=False)
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_an_observed_vad_is_read_by_the_column_names_recorded_with_it(make_root, tmp_path):
    root = make_root(train=24, valid=8, test=4, dims={"vit": 4, "wav2vec2": 6, "vad": 3})
    with pytest.raises(DataError, match="'vad' has 3 columns but no recorded feature names"):
        train(root, tmp_path / "unnamed", max_epochs=1, progress=False)
    (root / "vad" / "_extractor.json").write_text(json.dumps({"feature_names": ["arousal", "dominance", "valence"]}))
    train(root, tmp_path / "named", max_epochs=1, progress=False)
    trained = load_run(tmp_path / "named")
    assert trained.spec.observed_columns == (2, 0, 1)
    ds = open_dataset(root)
    stats = feature_statistics(ds.store(progress=False), ds.splits["train"].index, ["vad"])["vad"]
    members = trained.model.members  # the default preset trains 5 on so few clips: every one reads the prior
    assert len(members) == 5
    for member in members:
        np.testing.assert_allclose(member.vad.observed_mean, stats.pooled_mean[[2, 0, 1]])
        np.testing.assert_allclose(member.vad.observed_std, stats.pooled_std[[2, 0, 1]])


def test_selection_last_runs_every_epoch_and_keeps_the_last(root, tmp_path):
    # weights that cannot move (lr 1e-30, no EMA) never improve the score, so patience 1 would stop a
    # "best" run after its second epoch and keep the first; "last" ignores the score
    result = train(root, tmp_path / "last", max_epochs=4, progress=False,
                   overrides={"optim.batch_size": 16, "optim.lr": 1e-30, "train.ema.enabled": False,
                              "train.selection": "last", "train.patience": 1})
    assert result.epochs == result.best_epoch == 4
    assert torch.load(tmp_path / "last" / "checkpoints" / "best.ckpt", weights_only=True)["epoch"] == 3


def test_modality_folders_whose_names_torch_refuses_as_module_names_train_and_predict(make_root, tmp_path):
    root = make_root(train=24, valid=8, test=4, dims={"vit.b16": 6, "keys": 4})  # a dot; an attribute of a dict
    result = train(root, tmp_path / "run", max_epochs=1, progress=False)
    assert result.valid.coverage == {"keys": 1.0, "vit.b16": 1.0}
    assert len(predict(tmp_path / "run", root, split="test")) == 4
