import pytest
import torch
from torch import nn

from adautomix.ema import ModelEma, cosine_momentum, ema_update, frozen_copy


def test_cosine_momentum_schedule_points():
    # spec §2 step 9: constant 0.999 before 0.1T, ≈0.999024 at 0.1T, ≈0.9995 at T/2, m_end at T
    T, base, end = 1000, 0.999, 0.999999
    assert cosine_momentum(0, T, base, end) == base
    assert cosine_momentum(99, T, base, end) == base
    assert cosine_momentum(100, T, base, end) == pytest.approx(0.999024, abs=2e-6)
    assert cosine_momentum(500, T, base, end) == pytest.approx(0.9994995, abs=1e-6)
    assert cosine_momentum(T, T, base, end) == pytest.approx(end)


def test_ema_update_parameters_only_leaves_buffers():
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    teacher = frozen_copy(online)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
        online[1].running_mean.fill_(5.0)
    before = [p.clone() for p in teacher.parameters()]
    ema_update(teacher, online, momentum=0.75, buffers=False)
    for b, t, o in zip(before, teacher.parameters(), online.parameters()):
        assert torch.allclose(t, 0.75 * b + 0.25 * o)
        assert not t.requires_grad
    assert torch.equal(teacher[1].running_mean, torch.zeros(3))


def test_model_ema_tracks_buffers_and_stays_in_eval():
    online = nn.BatchNorm1d(2)
    ema = ModelEma(online, decay=0.5)
    online.running_mean.fill_(2.0)
    ema.update(online, step=100)  # past the warm-up: (1 + 100) / (10 + 100) > 0.5
    assert torch.allclose(ema.module.running_mean, torch.ones(2))
    assert not ema.module.training


@pytest.mark.parametrize(
    "warmup, step, kept",
    [(True, 0, 0.1), (True, 20, 0.7), (True, 10_000, 0.999), (False, 0, 0.999)],
)
def test_model_ema_warms_its_decay_up(warmup, step, kept):
    # the fraction of the old average kept: min(0.999, (1 + t) / (10 + t)) with the warm-up
    online = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(online.weight)
    ema = ModelEma(online, decay=0.999, warmup=warmup)
    online.weight.data.fill_(1.0)
    ema.update(online, step=step)
    assert ema.module.weight.item() == pytest.approx(1.0 - kept)
