import numpy as np
import pandas as pd
import pytest
import torch

from emimic.config import LossConfig
from emimic.data.simulate import CorpusGenerator, SimulationSettings
from emimic.errors import DataError
from emimic.labels import EMOTIONS, read_meta, read_split
from emimic.training.weights import infer_rater_counts, sample_weights


def test_rater_count_is_the_smallest_n_that_explains_every_label():
    labels = np.array([
        [0.2, 0.4, 0.0, 0.0, 1.0, 0.6],        # fifths
        [0.5, 0.0, 0.0, 0.0, 0.0, 0.0],        # halves
        [1 / 3, 2 / 3, 0, 0, 0, 0.333333],     # thirds, written with 6 decimals
        [0.1234, 0.0, 0, 0, 0, 0],             # finer than max_raters allows: capped
        [0.0, 1.0, 0, 0, 0, 0],                # 0/1 only: indistinguishable from one rater
    ])
    assert infer_rater_counts(labels, max_raters=20).tolist() == [5, 2, 3, 20, 1]

def test_simulated_votes_give_back_the_rater_counts():
    gen = CorpusGenerator(SimulationSettings(clips=300, n_raters=12, min_raters=3, rating_levels=2))
    written = np.round(gen.observed, 6)  # what the split CSV holds
    inferred = infer_rater_counts(written, max_raters=12)
    # N is only identifiable up to a common factor of the votes (2/6 is also 1/3): never above the truth
    assert (inferred <= gen.raters).all() and (gen.raters % inferred == 0).all()
    assert np.mean(inferred == gen.raters) > 0.8
    # votes are rounded at random, so the label stays an unbiased estimate of the noise-free one at every level
    levels = np.digitize(gen.expected, [0.2, 0.4, 0.6, 0.8])
    for level in range(5):
        assert abs((gen.observed - gen.expected)[levels == level].mean()) < 0.03

def test_weights_are_sqrt_raters_from_the_column_or_inferred():
    labels = pd.DataFrame([[0.25, 0, 0, 0, 0, 0], [0.5, 0, 0, 0, 0, 0]], index=[1, 2], columns=list(EMOTIONS))
    cfg = LossConfig(sample_weights="sqrt_raters")
    assert sample_weights(LossConfig(), labels, pd.DataFrame()) is None
    inferred = sample_weights(cfg, labels, pd.DataFrame(index=[1, 2]))

    assert inferred[0] / inferred[1] == pytest.approx(np.sqrt(4 / 2))
    given = sample_weights(cfg, labels, pd.DataFrame({"raters": [9, 1]}, index=[1, 2]))
    assert given[0] / given[1] == pytest.approx(3.0) and given.mean() == pytest.approx(1.0)

def test_split_csv_may_carry_group_and_rater_columns(tmp_path):
    path = tmp_path / "train_split.csv"
    path.write_text("Filename,Admiration,Amusement,Determination,Empathic Pain,Excitement,Joy,speaker,raters\n"
                    "1,0.2,0,0,0,0,0,s1,5\n2,0.5,0,0,0,0,0,s2,2\n")
    assert read_split(path).columns.tolist() == list(EMOTIONS)
    meta = read_meta(path)
    assert meta["speaker"].tolist() == ["s1", "s2"] and meta["raters"].tolist() == [5, 2]
    path.write_text("Filename,Admiration,Amusement,Determination,Empathic Pain,Excitement,Joy,raters\n"
                    "1,0.2,0,0,0,0,0,0\n")
    with pytest.raises(DataError, match="column 'raters' row 2 holds '0'; give the number of raters"):
        read_meta(path)


def _final_weights(root, out, sample_weights):
    from emimic.training.inference import load_run
    from emimic.training.run import train

    train(root, out, max_epochs=2, progress=False,
          overrides={"optim.batch_size": 16, "loss.sample_weights": sample_weights})
    return torch.cat([p.detach().flatten() for p in load_run(out).model.parameters()])


def test_clip_weights_reach_the_training_loss(make_root, tmp_path):
    root = make_root(train=32, valid=8, test=4, dims={"vit": 4})
    plain = _final_weights(root, tmp_path / "plain", "none")
    train_csv = root / "train_split.csv"
    frame = pd.read_csv(train_csv)
    frame["raters"] = 7
    frame.to_csv(train_csv, index=False)
    # equal rater counts weight every clip the same: the very model of no weighting
    assert torch.equal(_final_weights(root, tmp_path / "equal", "sqrt_raters"), plain)
    frame["raters"] = [1, 25] * 16
    frame.to_csv(train_csv, index=False)
    assert not torch.allclose(_final_weights(root, tmp_path / "varied", "sqrt_raters"), plain, atol=1e-4)
