import pytest
import torch
from torch.optim.swa_utils import AveragedModel

from emimic.config import EMAConfig
from emimic.training.ema import EMA, ema_decay


def test_decay_warms_up_to_its_ceiling():
    assert ema_decay(0.99, 0, warmup="adaptive") == pytest.approx(0.1)
    assert ema_decay(0.99, 10, warmup="adaptive") == pytest.approx(11 / 20)
    assert ema_decay(0.99, 10_000, warmup="adaptive") == 0.99
    assert ema_decay(0.9, 0, warmup="none") == 0.9


def test_linear_schedule_reaches_the_configured_decay_at_warmup_steps():
    assert ema_decay(0.99, 0, warmup="linear", warmup_steps=50) == 0.0  # the first update copies
    assert ema_decay(0.99, 25, warmup="linear", warmup_steps=50) == pytest.approx(0.495)
    assert ema_decay(0.99, 50, warmup="linear", warmup_steps=50) == 0.99
    assert ema_decay(0.99, 500, warmup="linear", warmup_steps=50) == 0.99


def test_schedule_is_a_named_config_choice_and_old_flags_still_load():
    assert EMAConfig(warmup=True).warmup == "adaptive"
    assert EMAConfig(warmup="none").warmup == "none"
    with pytest.raises(ValueError, match="warmup"):
        EMAConfig(warmup="cosine")


def test_update_math():
    # an asymmetric decay: with 0.5 a swap of the two weights would go unnoticed
    model = torch.nn.Linear(2, 1, bias=False)
    callback = EMA(decay=0.75, warmup="none")
    averaged = AveragedModel(model, avg_fn=callback._average, use_buffers=True)
    steps = [torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 6.0]]), torch.tensor([[5.0, 2.0]])]
    for weight in steps:
        model.weight.data.copy_(weight)
        averaged.update_parameters(model)
    # first update copies; then avg = 0.75 avg + 0.25 w: the average moves a quarter of the way to w
    expected = 0.75 * (0.75 * steps[0] + 0.25 * steps[1]) + 0.25 * steps[2]
    assert torch.allclose(averaged.module.weight, expected)


def test_warm_up_decay_is_applied_to_the_average_not_to_the_new_weights():
    callback = EMA(decay=0.99, warmup="adaptive")
    # after 80 updates d = 81/90 = 0.9
    out = callback._average(torch.tensor([10.0]), torch.tensor([0.0]), torch.tensor(80))
    assert out.item() == pytest.approx(9.0)


def test_integer_buffers_are_copied_not_averaged():
    callback = EMA(decay=0.9, warmup="none")
    out = callback._average(torch.tensor([1, 2]), torch.tensor([1, 2]), torch.tensor(3))
    assert out.dtype == torch.int64 and out.tolist() == [1, 2]
