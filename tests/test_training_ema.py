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
    model = torch.nn.Linear(2, 1, bias=False)
    callback = EMA(decay=0.5, warmup=False)
    averaged = AveragedModel(model, avg_fn=callback._average, use_buffers=True)
    steps = [torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 6.0]]), torch.tensor([[5.0, 2.0]])]
    for weight in steps:
        model.weight.data.copy_(weight)
        averaged.update_parameters(model)
    # first update copies; then avg = 0.5 avg + 0.5 w
    expected = 0.5 * (0.5 * steps[0] + 0.5 * steps[1]) + 0.5 * steps[2]
    assert torch.allclose(averaged.module.weight, expected)


def test_integer_buffers_are_copied_not_averaged():
    callback = EMA(decay=0.9, warmup=False)
    out = callback._average(torch.tensor([1, 2]), torch.tensor([1, 2]), torch.tensor(3))
    assert out.dtype == torch.int64 and out.tolist() == [1, 2]
