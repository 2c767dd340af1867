"""The multi-tensor optimizers (dldna_lite.optim.foreach) equal the readable ones step for step (issue 27).

For every option each constructor accepts (with ``maximize`` both ways, weight decay, two parameter groups with
their own settings, and a parameter that has no gradient on every other step, so that step counts differ inside a
group), ``STEPS`` float64 steps of the readable class and of its ``*Foreach`` twin from the same start on the same
batches: parameters and every state tensor agree to ``TOL`` after every step. The model has a 3-D (convolution),
a 2-D and 1-D parameters (Adafactor factors the first two)."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dldna_lite import optim
from dldna_lite.optim import compare, foreach

STEPS = 20
TOL = 1e-6

CASES = {
    "SGD": ("SGD", dict(lr=0.05, weight_decay=0.03)),
    "SGD-momentum-dampening": ("SGD", dict(lr=0.02, momentum=0.8, dampening=0.3, weight_decay=0.02)),
    "SGD-nesterov": ("SGD", dict(lr=0.02, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "Adagrad": ("Adagrad", dict(lr=0.05, lr_decay=0.05, weight_decay=0.02, initial_accumulator_value=0.3, eps=1e-6)),
    "RMSprop": ("RMSprop", dict(lr=0.003, alpha=0.9, weight_decay=0.01)),
    "RMSprop-momentum": ("RMSprop", dict(lr=0.003, momentum=0.7, weight_decay=0.01)),
    "RMSprop-centered-momentum": ("RMSprop", dict(lr=0.003, centered=True, momentum=0.5, weight_decay=0.02,
                                                  eps=1e-5)),
    "Adam-l2": ("Adam", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.05, eps=1e-6)),
    "Adam-amsgrad": ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.05)),
    "AdamW": ("AdamW", dict(lr=0.01, weight_decay=0.1, eps=1e-6)),
    "AdamW-amsgrad": ("AdamW", dict(lr=0.01, amsgrad=True, weight_decay=0.1, betas=(0.7, 0.95))),
    "Adafactor": ("Adafactor", dict(lr=0.05)),
    "Adafactor-eps1-wd-d": ("Adafactor", dict(lr=0.05, eps=(1e-20, 1e-2), weight_decay=0.05, d=1.5,
                                              beta2_decay=-0.6)),
    "Adafactor-no-clipping": ("Adafactor", dict(lr=0.05, d=float("inf"))),
    "Lion": ("Lion", dict(lr=1e-3, betas=(0.8, 0.95), weight_decay=0.1)),
    "Sophia": ("Sophia", dict(lr=1e-3, betas=(0.9, 0.95), rho=0.05, weight_decay=0.1, eps=1e-12, update_period=3)),
}


def _problem(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(12, 3)).double()
    g = torch.Generator().manual_seed(seed + 1)
    data = [(torch.randn(8, 2, 6, generator=g, dtype=torch.float64),
             torch.randn(8, 3, generator=g, dtype=torch.float64)) for _ in range(STEPS)]
    return model, data


def _build(cls, model, kwargs, maximize):
    params = list(model.parameters())
    kwargs = dict(kwargs)
    if cls in (optim.Sophia, foreach.SophiaForeach):           # a deterministic curvature estimate, from the params
        kwargs["estimator"] = lambda: [p.detach() ** 2 + 0.1 for p in params]
    groups = [dict(params=params[:2], maximize=maximize), dict(params=params[2:], lr=kwargs["lr"] / 2,
                                                                 maximize=not maximize)]
    return cls(groups, **kwargs)


def _state(opt):
    return [t for p in opt.state for t in opt.state[p].values() if torch.is_tensor(t)]


def _max_diff(a, b):
    assert len(a) == len(b)
    return max(((x - y).abs().max().item() for x, y in zip(a, b)), default=0.0)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("maximize", [False, True])
def test_foreach_equals_the_readable_step(case, maximize):
    name, kwargs = CASES[case]
    readable = optim.OPTIMIZERS[name]
    model, data = _problem()
    twin = copy.deepcopy(model)
    opts = [_build(readable, model, kwargs, maximize), _build(foreach.FOREACH[readable], twin, kwargs, maximize)]
    sign = -1.0 if maximize else 1.0
    for t, (x, y) in enumerate(data):
        for net, opt in zip((model, twin), opts):
            opt.zero_grad()
            (sign * F.mse_loss(net(x), y)).backward()
            if t % 2:
                net[0].bias.grad = None                     # no gradient on every other step
            opt.step()
        assert _max_diff(list(model.parameters()), list(twin.parameters())) <= TOL, f"step {t + 1}"
        assert _max_diff(_state(opts[0]), _state(opts[1])) <= TOL, f"state after step {t + 1}"
    assert _max_diff(list(model.parameters()), list(_problem()[0].parameters())) > 1e-3     # it did move


@pytest.mark.parametrize("case", ["Adafactor", "Adafactor-eps1-wd-d"])
def test_foreach_adafactor_without_foreach_rsqrt(case, monkeypatch):
    """torch 2.5 (the oldest torch pyproject.toml allows) has no torch._foreach_rsqrt_: the per-tensor fallback is
    the same algorithm (make test-lowest found a chapter failing on it)."""
    monkeypatch.delattr(torch, "_foreach_rsqrt_", raising=False)
    test_foreach_equals_the_readable_step(case, False)


def test_every_optimizer_has_a_foreach_version_and_build_picks_it():
    assert set(foreach.FOREACH) == set(optim.OPTIMIZERS.values())
    model = nn.Linear(3, 2)
    for name in optim.NAMES:
        opt = optim.build(name, model.parameters(), 1e-3, model=model, foreach=True)
        readable = optim.OPTIMIZERS["SGD" if name == "SGD+momentum" else name]
        assert type(opt) is foreach.FOREACH[readable] and isinstance(opt, readable)
        assert type(optim.build(name, model.parameters(), 1e-3, model=model)) is readable
    with pytest.raises(ValueError, match="foreach must be True or False"):
        optim.build("Adam", model.parameters(), 1e-3, foreach="yes")


def test_the_comparisons_use_the_foreach_versions(monkeypatch):
    seen = []

    def spy(*args, **kwargs):
        opt = optim.build(*args, **kwargs)
        seen.append(type(opt))
        return opt

    monkeypatch.setattr(compare, "build", spy)
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(32, 5, generator=g), torch.randint(0, 3, (32,), generator=g)
    compare.run("Adam", 1e-3, lambda: nn.Sequential(nn.Linear(5, 3)), (X, y), (X, y), epochs=1, batch_size=16)
    compare.run("Adam", 1e-3, lambda: nn.Sequential(nn.Linear(5, 3)), (X, y), (X, y), epochs=1, batch_size=16,
                foreach=False)
    compare.run("Adafactor", 1e-3, lambda: nn.Sequential(nn.Linear(5, 3)), (X, y), (X, y), epochs=1, batch_size=16)
    assert seen == [foreach.AdamForeach, optim.Adam, optim.Adafactor]         # on the CPU: Adafactor's readable
    assert all(optim.default_foreach("cuda:0", label) for label in compare.LABELS)
    assert not optim.default_foreach("mps") and not optim.default_foreach("cpu", "Adafactor")


@pytest.mark.parametrize("case", ["SGD-nesterov", "Adagrad", "RMSprop-centered-momentum", "Adam-amsgrad", "AdamW",
                                  "Adafactor-eps1-wd-d", "Lion", "Sophia"])
def test_foreach_steps_read_nothing_back(case):
    """No ``.item()``/``bool()``/... in a multi-tensor step (the readable Adafactor reads two norms per parameter):
    on a GPU each would wait for the device. Every tensor read counts here (on the CPU all tensors are the host's)."""
    from test_device_budget import Reads

    name, kwargs = CASES[case]
    model, data = _problem()
    opt = _build(foreach.FOREACH[optim.OPTIMIZERS[name]], model, kwargs, maximize=False)
    for x, y in data[:4]:
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        with Reads() as reads:
            opt.step()
        assert reads.count == 0, case
