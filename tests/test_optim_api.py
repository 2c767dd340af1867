"""dldna_lite.optim as drop-in optimizers: lr schedulers, state_dict round trips, state memory."""
import copy
import io

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dldna_lite import optim

REFERENCE = {"SGD": torch.optim.SGD, "Adagrad": torch.optim.Adagrad, "RMSprop": torch.optim.RMSprop,
             "Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW, "Adafactor": torch.optim.Adafactor}
KWARGS = {"SGD": dict(lr=0.05, momentum=0.9), "Adagrad": dict(lr=0.05), "RMSprop": dict(lr=0.01, momentum=0.5),
          "Adam": dict(lr=0.01), "AdamW": dict(lr=0.01), "Adafactor": dict(lr=0.05), "Lion": dict(lr=0.003),
          "Sophia": dict(lr=0.01, update_period=2)}
SCHEDULERS = {
    "StepLR": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.5),
    "CosineAnnealingLR": lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=30),
    "OneCycleLR": lambda opt: torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=2 * opt.defaults["lr"], total_steps=30,
        cycle_momentum="momentum" in opt.defaults or "betas" in opt.defaults),
}


def problem(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    g = torch.Generator().manual_seed(seed)
    data = [(torch.randn(12, 5, generator=g, dtype=torch.float64),
             torch.randint(0, 3, (12,), generator=g)) for _ in range(30)]
    return model, data


def make_optimizer(name, model):
    kwargs = dict(KWARGS[name])
    if name == "Sophia":
        kwargs["estimator"] = optim.GaussNewtonBartlett(model, generator=torch.Generator().manual_seed(0))
    return optim.get(name)(model.parameters(), **kwargs)


def train(model, opt, data, scheduler=None):
    lrs = []
    for x, y in data:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
        if scheduler is not None:
            scheduler.step()
    return lrs


@pytest.mark.parametrize("sched", list(SCHEDULERS))
@pytest.mark.parametrize("name", list(optim.OPTIMIZERS))
def test_schedulers_drive_the_learning_rate(name, sched):
    model, data = problem()
    opt = make_optimizer(name, model)
    lrs = train(model, opt, data, SCHEDULERS[sched](opt))
    probe = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=KWARGS[name]["lr"], momentum=0.9)
    expected = train_probe(probe, SCHEDULERS[sched](probe), len(data))
    assert lrs == pytest.approx(expected)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    if name in REFERENCE:  # and the parameters follow torch's optimizer under the same schedule
        twin, _ = problem()
        ref = REFERENCE[name](twin.parameters(), **KWARGS[name])
        train(twin, ref, data, SCHEDULERS[sched](ref))
        for p, q in zip(model.parameters(), twin.parameters()):
            torch.testing.assert_close(p, q, atol=1e-6, rtol=0)


def train_probe(opt, scheduler, n):
    lrs = []
    for _ in range(n):
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
        scheduler.step()
    return lrs


@pytest.mark.parametrize("name", list(optim.OPTIMIZERS))
def test_state_dict_round_trip_resumes_identically(name, pinned_threads):
    with pinned_threads(1):   # both sides of "the same run" at one thread count (seed_everything's promise)
        _round_trip_resumes_identically(name)


def _round_trip_resumes_identically(name):
    model, data = problem(1)
    opt = make_optimizer(name, model)
    train(model, opt, data[:15])
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    train(model, opt, data[15:])  # uninterrupted run

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed, _ = problem(1)
    resumed.load_state_dict(saved["model"])
    opt2 = make_optimizer(name, resumed)
    opt2.load_state_dict(saved["opt"])
    if name == "Sophia":  # the estimator's sampler is not optimizer state: give it the same stream position
        opt2.estimator = opt.estimator.__class__(resumed, generator=torch.Generator().manual_seed(0))
        opt2.estimator.generator.set_state(state_after_15(name))
    train(resumed, opt2, data[15:])
    for p, q in zip(model.parameters(), resumed.parameters()):
        torch.testing.assert_close(p, q, atol=1e-12, rtol=0)


def state_after_15(name):
    """Generator state of the Sophia estimator after the first 15 steps (estimates at steps 1, 3, ..., 15)."""
    model, data = problem(1)
    opt = make_optimizer(name, model)
    train(model, opt, data[:15])
    return opt.estimator.generator.get_state()


def test_state_bytes_counts_moments():
    layer = nn.Linear(100, 50)  # 5000 + 50 parameters
    n, bytes_per = 5050, 4
    expected = {"SGD": 0, "SGD+momentum": n, "Adagrad": n, "RMSprop": n, "Adam": 2 * n, "AdamW": 2 * n,
                "Adafactor": 100 + 50 + 50, "Lion": n, "Sophia": 2 * n}
    for label, count in expected.items():
        name, kwargs = ("SGD", dict(momentum=0.9)) if label == "SGD+momentum" else (label, {})
        layer.zero_grad()
        opt = optim.get(name)(layer.parameters(), **kwargs)
        layer(torch.randn(4, 100)).sum().backward()
        opt.step()
        assert opt.state_bytes() == count * bytes_per, label
