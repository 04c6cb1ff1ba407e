import pytest
import torch
from torch.optim.swa_utils import AveragedModel

from emimic.training.ema import EMA, ema_decay


def test_decay_warms_up_to_its_ceiling():
    assert ema_decay(0.99, 0, warmup=True) == pytest.approx(0.1)
    assert ema_decay(0.99, 10, warmup=True) == pytest.approx(11 / 20)
    assert ema_decay(0.99, 10_000, warmup=True) == 0.99
    assert ema_decay(0.9, 0, warmup=False) == 0.9


def test_update_math():
    # an asymmetric decay: with 0.5 a swap of the two weights would go unnoticed
    model = torch.nn.Linear(2, 1, bias=False)
    callback = EMA(decay=0.75, warmup=False)
    averaged = AveragedModel(model, avg_fn=callback._average, use_buffers=True)
    steps = [torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 6.0]]), torch.tensor([[5.0, 2.0]])]
    for weight in steps:
        model.weight.data.copy_(weight)
        averaged.update_parameters(model)
    # first update copies; then avg = 0.75 avg + 0.25 w: the average moves a quarter of the way to w
    expected = 0.75 * (0.75 * steps[0] + 0.25 * steps[1]) + 0.25 * steps[2]
    assert torch.allclose(averaged.module.weight, expected)


def test_warm_up_decay_is_applied_to_the_average_not_to_the_new_weights():
    callback = EMA(decay=0.99, warmup=True)
    # after 80 updates d = 81/90 = 0.9
    out = callback._average(torch.tensor([10.0]), torch.tensor([0.0]), torch.tensor(80))
    assert out.item() == pytest.approx(9.0)


def test_integer_buffers_are_copied_not_averaged():
    callback = EMA(decay=0.9, warmup=False)
    out = callback._average(torch.tensor([1, 2]), torch.tensor([1, 2]), torch.tensor(3))
    assert out.dtype == torch.int64 and out.tolist() == [1, 2]
