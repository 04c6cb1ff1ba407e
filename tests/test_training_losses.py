import math

import pytest
import torch

from emimic.config import LossConfig
from emimic.errors import ConfigError
from emimic.models.emi import ModelOutput
from emimic.models.vad_prior import VADLatent, anchor_table, gaussian_kl, pseudo_vad, vad_kl
from emimic.training.losses import LOSS_TERMS, EMILoss, batch_ccc, batch_pcc

PRED = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
TARGET = torch.tensor([[1.0], [3.0], [2.0], [4.0]])


def test_mse_by_hand():
    # errors -1, -2, 0, -1 -> (1 + 4 + 0 + 1) / 4
    assert LOSS_TERMS.get("mse")(PRED, TARGET).item() == pytest.approx(1.5)


def test_pcc_by_hand():
    # centred: p = (-1.5, -0.5, 0.5, 1.5), t = (-1.5, 0.5, -0.5, 1.5); cov = 4/4 = 1, var_p = var_t = 1.25
    assert batch_pcc(PRED, TARGET).item() == pytest.approx(0.8)
    assert LOSS_TERMS.get("pcc")(PRED, TARGET).item() == pytest.approx(0.2)


def test_ccc_by_hand():
    # 2 cov / (var_p + var_t + (mean_p - mean_t)^2) = 2 / (1.25 + 1.25 + 1)
    assert batch_ccc(PRED, TARGET).item() == pytest.approx(2 / 3.5)
    assert LOSS_TERMS.get("ccc")(PRED, TARGET).item() == pytest.approx(1 - 2 / 3.5)


def test_pcc_of_constant_batch_is_zero_not_nan():
    value = batch_pcc(torch.full((5, 6), 0.3), torch.rand(5, 6))
    assert torch.all(value == 0)
    pred = torch.full((5, 6), 0.3, requires_grad=True)
    LOSS_TERMS.get("pcc")(pred, torch.rand(5, 6)).sum().backward()
    assert torch.isfinite(pred.grad).all()


def test_pcc_against_constant_targets_is_zero_with_a_finite_gradient():
    target = torch.rand(5, 6)
    target[:, 3] = 0.4
    pred = torch.rand(5, 6, requires_grad=True)
    value = batch_pcc(pred, target)
    assert value[3] == 0 and torch.isfinite(value).all()
    value.mean().backward()
    assert torch.isfinite(pred.grad).all()


def test_clip_weights_act_like_repeated_clips():
    # weight 2 on a clip is the same as the clip appearing twice, for every term
    weights = torch.tensor([2.0, 1.0, 1.0, 1.0])
    repeated_p, repeated_t = torch.cat([PRED[:1], PRED]), torch.cat([TARGET[:1], TARGET])
    for name in ("mse", "pcc", "ccc"):
        term = LOSS_TERMS.get(name)
        assert term(PRED, TARGET, weights / weights.sum()).item() == pytest.approx(term(repeated_p, repeated_t).item())


def test_emotion_weights_reweight_the_dimensions_at_the_same_scale():
    torch.manual_seed(1)
    pred, y = torch.rand(8, 6), torch.rand(8, 6)
    out = _output(pred, {}, {})
    per_dim = ((pred - y) ** 2).mean(0)
    weighted = EMILoss(LossConfig(terms={"mse": 1.0}, aux=0.0, vad=0.0, emotion_weights={"Empathic Pain": 4.0}))
    # weights (1, 1, 1, 4, 1, 1) normalised to mean 1 are w * 6/9; the objective is their mean over 6 dims
    expected = (per_dim * torch.tensor([1, 1, 1, 4, 1, 1.0])).sum() / 9
    assert weighted(out, y)["main"].item() == pytest.approx(expected.item())


def test_unknown_emotion_weight_is_refused():
    with pytest.raises(ValueError, match="unknown emotion"):
        LossConfig(emotion_weights={"Pain": 2.0})


def test_unknown_term_lists_the_available_ones():
    with pytest.raises(ConfigError, match="available: ccc, mse, pcc"):
        LOSS_TERMS.get("huber")


def _output(pred, aux, present, vad=None):
    return ModelOutput(pred=pred, aux=aux, present=present, vad=vad)


def test_total_combines_weighted_parts_and_masks_absent_branches():
    torch.manual_seed(0)
    y = torch.rand(6, 6)
    pred, aux_a, aux_b = torch.rand(6, 6), torch.rand(6, 6), torch.rand(6, 6)
    present_a = torch.tensor([True, True, False, True, False, True])
    present_b = torch.tensor([False, False, True, False, False, False])  # one clip: no correlation to learn
    loss = EMILoss(LossConfig(terms={"mse": 2.0, "pcc": 1.0}, aux=0.5, vad=0.0))
    parts = loss(_output(pred, {"a": aux_a, "b": aux_b}, {"a": present_a, "b": present_b}), y)

    def objective(p, t):
        return 2.0 * ((p - t) ** 2).mean() + 1.0 - batch_pcc(p, t).mean()

    assert parts["main"].item() == pytest.approx(objective(pred, y).item())
    assert parts["aux"].item() == pytest.approx(objective(aux_a[present_a], y[present_a]).item())
    assert parts["loss"].item() == pytest.approx(parts["main"].item() + 0.5 * parts["aux"].item())


def test_gaussian_kl_closed_form():
    mu, logvar = torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([[0.0, 0.0, math.log(0.25)]])
    prior = torch.zeros(1, 3)
    # per axis: 0.5 * ((var + mu^2) / s^2 - 1 - log var + log s^2) with s = 1
    expected = 0.0 + 0.5 * 1.0 + 0.5 * (0.25 - 1 - math.log(0.25))
    assert gaussian_kl(mu, logvar, prior, 1.0).item() == pytest.approx(expected)
    assert gaussian_kl(prior, torch.full((1, 3), math.log(0.09)), prior, 0.3).item() == pytest.approx(0.0, abs=1e-6)


def test_pseudo_vad_is_neutral_without_emotion_and_tends_to_the_anchor():
    anchors = anchor_table()
    assert torch.all(pseudo_vad(torch.zeros(1, 6), anchors) == 0)
    joy = torch.zeros(1, 6)
    joy[0, 5] = 1.0
    assert torch.allclose(pseudo_vad(joy, anchors), anchors[5] / 2)


def latent(mu: float, *, observed=None, observed_present=None, present=(True, True, False),
           label_mean=(0.0, 0.0, 0.0), label_std=(1.0, 1.0, 1.0)) -> VADLatent:
    rows = len(present)
    return VADLatent(
        mu=torch.full((rows, 3), mu), logvar=torch.full((rows, 3), math.log(0.25)), present=torch.tensor(present),
        prior_std=0.5, label_mean=torch.tensor(label_mean), label_std=torch.tensor(label_std),
        observed=observed, observed_present=observed_present,
    )


def test_vad_kl_uses_observed_prior_where_present_and_masks_absent_clips():
    targets = torch.zeros(3, 6)
    z = latent(2.0, observed=torch.full((3, 3), 2.0), observed_present=torch.tensor([True, False, True]))
    # clip 0 matches its observed prior exactly (KL 0); clip 1 falls back to the neutral label prior;
    # clip 2 has no acoustic modality and does not count
    clip1 = gaussian_kl(z.mu[1:2], z.logvar[1:2], torch.zeros(1, 3), 0.5).item()
    assert vad_kl(z, targets).item() == pytest.approx(clip1 / 2)


def test_label_prior_is_standardised_with_the_training_statistics():
    targets = torch.rand(2, 6)
    mean, std = (0.1, 0.2, -0.1), (0.5, 0.25, 2.0)
    z = latent(0.3, present=(True, True), label_mean=mean, label_std=std)
    prior = (pseudo_vad(targets, anchor_table()) - torch.tensor(mean)) / torch.tensor(std)
    assert vad_kl(z, targets).item() == pytest.approx(gaussian_kl(z.mu, z.logvar, prior, 0.5).mean().item())


@pytest.mark.parametrize("weight", [0.0, 0.25])
def test_vad_term_enters_the_total_with_its_weight(weight):
    torch.manual_seed(0)
    y, pred = torch.rand(3, 6), torch.rand(3, 6)
    z = latent(1.5)
    loss = EMILoss(LossConfig(terms={"mse": 1.0}, aux=0.0, vad=weight))
    parts = loss(_output(pred, {}, {}, z), y)
    kl = vad_kl(z, y).item()
    assert kl > 1
    assert parts["loss"].item() == pytest.approx(parts["main"].item() + weight * kl)
