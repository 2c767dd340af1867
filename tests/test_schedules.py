"""dldna_lite.schedules against torch.optim.lr_scheduler."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from dldna_lite import schedules


def _torch_lrs(make_sched, total, lr):
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    sched = make_sched(opt)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_schedules_match_torch(seed):
    rng = np.random.default_rng(seed)
    T = int(rng.integers(40, 200))
    peak = float(rng.uniform(0.01, 1.0))
    S = torch.optim.lr_scheduler
    step_size, gamma = int(rng.integers(5, 30)), float(rng.uniform(0.1, 0.9))
    np.testing.assert_allclose(schedules.lr_schedule("step", T, peak, step_size=step_size, gamma=gamma),
                               _torch_lrs(lambda o: S.StepLR(o, step_size, gamma), T, peak), rtol=1e-10)
    eta_min = peak * float(rng.uniform(0, 0.1))
    np.testing.assert_allclose(schedules.lr_schedule("cosine", T, peak, min_lr=eta_min),
                               _torch_lrs(lambda o: S.CosineAnnealingLR(o, T, eta_min), T, peak), rtol=1e-8)
    pct, div, final = float(rng.uniform(0.1, 0.5)), float(rng.uniform(5, 30)), float(rng.uniform(10, 1e4))
    np.testing.assert_allclose(
        schedules.lr_schedule("one_cycle", T, peak, pct_start=pct, div_factor=div, final_div_factor=final),
        _torch_lrs(lambda o: S.OneCycleLR(o, peak, total_steps=T, pct_start=pct, div_factor=div,
                                          final_div_factor=final, cycle_momentum=False), T, peak), rtol=1e-8)
    g = float(rng.uniform(1.0, 1.02))
    np.testing.assert_allclose(schedules.lr_schedule("exponential", T, peak, growth=g),
                               _torch_lrs(lambda o: S.ExponentialLR(o, g), T, peak), rtol=1e-8)
    w = int(rng.integers(2, T // 3))
    seq = lambda o: S.SequentialLR(o, [S.LinearLR(o, 1 / w, 1.0, total_iters=w - 1),
                                       S.CosineAnnealingLR(o, T - w, eta_min)], milestones=[w])
    np.testing.assert_allclose(schedules.lr_schedule("warmup_cosine", T, peak, warmup=w, min_lr=eta_min),
                               _torch_lrs(seq, T, peak), rtol=1e-8)
    np.testing.assert_allclose(schedules.lr_schedule("constant", T, peak), np.full(T, peak))


def test_scheduler_makes_the_optimizer_follow_the_array():
    lrs = schedules.lr_schedule("one_cycle", 50, 0.3)
    np.testing.assert_allclose(_torch_lrs(lambda o: schedules.scheduler(o, lrs), 50, 1.0), lrs, rtol=1e-12)


def test_schedule_bad_arguments():
    with pytest.raises(ValueError, match="cosine"):
        schedules.lr_schedule("linear", 10, 0.1)
    with pytest.raises(ValueError, match="warmup"):
        schedules.lr_schedule("warmup_cosine", 10, 0.1, warmup=10)
    with pytest.raises(ValueError):
        schedules.lr_schedule("cosine", 0, 0.1)


_USES = {"peak_lr": schedules.SCHEDULES, "min_lr": ("cosine", "warmup_cosine"), "gamma": ("step",),
         "pct_start": ("one_cycle",), "div_factor": ("one_cycle",), "final_div_factor": ("one_cycle",),
         "growth": ("exponential",)}


@pytest.mark.parametrize("name,key,bad", [(name, key, bad) for key, names in _USES.items() for name in names
                                          for bad in (math.nan, math.inf)])
def test_non_finite_schedule_parameters_are_rejected(name, key, bad):
    """Each schedule with each parameter it uses: NaN compares False with everything, so ``peak_lr <= 0`` alone
    let NaN through into every learning rate."""
    args = dict(peak_lr=0.1, warmup=2 if name == "warmup_cosine" else 0)
    args[key] = bad
    with pytest.raises(ValueError, match=f"{key} must be a finite number"):
        schedules.lr_schedule(name, 10, **args)




def test_non_finite_learning_rates_are_rejected_by_scheduler():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    for bad in ([0.1, math.inf], [math.nan, 0.1]):
        with pytest.raises(ValueError, match="finite, non-negative"):
            schedules.scheduler(opt, bad)
