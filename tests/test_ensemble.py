"""``model.members``: a seed ensemble inside one model and one run (emimic.models.ensemble)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import LEARNING_MAX_EPOCHS, LEARNING_OVERRIDES
from emimic.config import ExperimentConfig, ModelConfig, load_config
from emimic.data import open_dataset
from emimic.errors import ConfigError
from emimic.metrics import pcc_scores
from emimic.models import build_model, resolve_spec
from emimic.models.ensemble import EMIEnsemble, auto_members, resolve_members
from emimic.training.history import MONITOR
from emimic.training.inference import evaluate, load_run, predict_ids
from emimic.training.losses import EMILoss
from test_models_emi import DIMS, batch


def ensemble(members: int = 3) -> EMIEnsemble:
    torch.manual_seed(0)
    cfg = ModelConfig(members=members)
    model = build_model(resolve_spec(cfg, DIMS), cfg)
    assert isinstance(model, EMIEnsemble)
    return model


def test_members_start_from_their_own_initialisation_and_predict_their_mean() -> None:
    model = ensemble().eval()
    first, second = (dict(member.named_parameters()) for member in model.members[:2])
    assert not torch.equal(first["head.1.0.weight"], second["head.1.0.weight"])
    out = model(batch(model.spec))
    own = torch.stack([member.pred for member in out.members])
    assert len(out.members) == 3 and not torch.allclose(own[0], own[1])
    assert torch.allclose(out.pred, own.mean(0))


def test_each_member_is_trained_by_its_own_loss() -> None:
    model = ensemble().train()
    targets = torch.rand(6, 6, generator=torch.Generator().manual_seed(1))
    loss = EMILoss(ExperimentConfig().loss)
    torch.manual_seed(2)
    out = model(batch(model.spec))
    parts = loss(out, targets)
    alone = [loss(member, targets) for member in out.members]
    for name, value in parts.items():
        assert value.item() == pytest.approx(float(np.mean([a[name].item() for a in alone])), abs=1e-6), name
    parts["loss"].backward()
    assert all(member.head[1][0].weight.grad.abs().sum() > 0 for member in model.members)


def test_auto_members_follow_the_number_of_training_clips() -> None:
    assert [auto_members(n) for n in (10, 999, 1000, 20000)] == [5, 5, 1, 1]
    cfg = load_config("paper", overrides={"model.members": "auto"})
    assert resolve_members(cfg, 300).model.members == 5
    assert resolve_members(cfg, 3000).model.members == 1
    fixed = load_config("paper", overrides={"model.members": 2})
    assert resolve_members(fixed, 300) is fixed
    with pytest.raises(ConfigError, match="auto"):
        build_model(resolve_spec(cfg.model, DIMS), cfg.model)


@pytest.mark.parametrize("value", [0, -1, "many", True, 2.5])
def test_a_wrong_member_count_is_refused_naming_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match=r"model\.members: must be a whole number >= 1 or auto \(got "):
        load_config("paper", overrides={"model.members": value})


def test_an_auto_ensemble_learns_records_its_size_and_scores_what_it_saved(simulated_root: Path,
                                                                             tmp_path: Path) -> None:
    from emimic.training.run import train

    run = tmp_path / "run"
    result = train(simulated_root, run, config="paper", seed=0, max_epochs=LEARNING_MAX_EPOCHS,
                   overrides={**LEARNING_OVERRIDES, "model.members": "auto"}, progress=False)
    # the learning corpus has 90 training clips: auto trains five members, and the run says so
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["members"] == 5
    assert result.valid.mean_pcc > 0.4
    # best.ckpt holds the (EMA-averaged) ensemble of the selected epoch: it scores what validation scored then
    best_score = pd.read_csv(run / "history.csv")[MONITOR].max()
    assert evaluate(run, simulated_root).mean_pcc == pytest.approx(best_score, abs=1e-5)
    trained = load_run(run)
    assert isinstance(trained.model, EMIEnsemble) and len(trained.model.members) == 5
    ds = open_dataset(simulated_root)
    ids = ds.splits["valid"].index.to_numpy()
    store = ds.store(progress=False)
    targets = ds.splits["valid"].to_numpy(dtype=np.float64)
    members = [float(np.mean(list(pcc_scores(predict_ids(_alone(trained, k), store, ids), targets).values())))
               for k in range(5)]
    assert len({round(score, 6) for score in members}) == 5  # five different models, not one five times
    assert result.valid.mean_pcc > np.mean(members)


def _alone(trained, k: int):
    """The run's ``k``-th member as a model of its own."""
    from dataclasses import replace

    return replace(trained, model=trained.model.members[k])
