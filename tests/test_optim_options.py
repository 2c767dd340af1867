"""Every option of the from-scratch optimizers of dldna_lite.optim against a reference, in float64.

tests/test_optim.py checks the update rules with random hyperparameters; this file checks the *options* each
constructor accepts and ``step(closure)``: ``maximize`` for every optimizer and every variant (momentum, Nesterov,
dampening, centered, AMSGrad, L2 / decoupled weight decay, ``lr_decay``, an explicit Adafactor ``eps1``), options
set per parameter group, and ``step(closure)`` (the closure is called exactly once, under ``enable_grad``, its loss
is returned and its gradient is the one used). References: ``torch.optim`` with the same option; lion-pytorch
(no ``maximize``: it minimises the negated loss, which is what ``maximize`` means); pytorch-optimizer's SophiaH
(with its own ``maximize``), fed the same curvature estimates as in tests/test_optim.py.

Last, the references themselves: a ``pytest.importorskip`` in tests/ must never skip under ``make test``, so every
module it names must be importable here and come from a distribution that pyproject.toml's ``test`` (or runtime)
dependencies declare, and every distribution of the ``test`` extra must be installed at a version it allows.
"""
from __future__ import annotations

import copy
import importlib
import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from dldna_lite import optim
from dldna_lite.optim import reference

ROOT = Path(__file__).resolve().parents[1]
STEPS = 20
TOL = 1e-9


def problem(seed):
    """The float64 tanh MLP of optim.reference (4 -> 6 -> 3) and ``STEPS`` regression batches."""
    return reference.make_problem(seed, sizes=(4, 6, 3), steps=STEPS)


def run(model, opt, data, *, sign=1.0, closure=False, step=None):
    """``STEPS`` steps on ``sign * mse``; with ``closure`` the gradient is computed only inside ``step(closure)``.
    ``step(t, closure)`` replaces ``opt.step(closure)``. Returns what the steps returned and how often the closure
    ran, per step."""
    step = step or (lambda t, c: opt.step(c))
    returned, calls = [], []
    for t, (x, y) in enumerate(data):
        if closure:
            count = [0]

            def closure_fn():
                count[0] += 1
                assert torch.is_grad_enabled()
                opt.zero_grad()
                loss = sign * F.mse_loss(model(x), y)
                loss.backward()
                return loss

            opt.zero_grad(set_to_none=True)
            returned.append(step(t, closure_fn))
            calls.append(count[0])
        else:
            opt.zero_grad()
            (sign * F.mse_loss(model(x), y)).backward()
            returned.append(step(t, None))
    return returned, calls


def max_diff(a, b):
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


def moved(model, start):
    return max((p - q).abs().max().item() for p, q in zip(model.parameters(), start.parameters()))


# id -> (ours, torch reference, kwargs). Every option each constructor accepts, each with maximize on.
TORCH_CASES = {
    "SGD": (optim.SGD, torch.optim.SGD, dict(lr=0.05)),
    "SGD-wd": (optim.SGD, torch.optim.SGD, dict(lr=0.05, weight_decay=0.03)),
    "SGD-momentum-dampening-wd": (optim.SGD, torch.optim.SGD,
                                  dict(lr=0.02, momentum=0.8, dampening=0.3, weight_decay=0.02)),
    "SGD-nesterov-wd": (optim.SGD, torch.optim.SGD, dict(lr=0.02, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "Adagrad": (optim.Adagrad, torch.optim.Adagrad, dict(lr=0.05)),
    "Adagrad-all": (optim.Adagrad, torch.optim.Adagrad, dict(lr=0.05, lr_decay=0.05, weight_decay=0.02,
                                                             initial_accumulator_value=0.3, eps=1e-6)),
    "RMSprop": (optim.RMSprop, torch.optim.RMSprop, dict(lr=0.003, alpha=0.9)),
    "RMSprop-momentum": (optim.RMSprop, torch.optim.RMSprop, dict(lr=0.003, momentum=0.7, weight_decay=0.01)),
    "RMSprop-centered": (optim.RMSprop, torch.optim.RMSprop, dict(lr=0.003, centered=True, eps=1e-5)),
    "RMSprop-centered-momentum-wd": (optim.RMSprop, torch.optim.RMSprop,
                                     dict(lr=0.003, centered=True, momentum=0.5, weight_decay=0.02)),
    "Adam": (optim.Adam, torch.optim.Adam, dict(lr=0.01, betas=(0.8, 0.99))),
    "Adam-l2": (optim.Adam, torch.optim.Adam, dict(lr=0.01, weight_decay=0.05, eps=1e-6)),
    "Adam-amsgrad-l2": (optim.Adam, torch.optim.Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.05)),
    "AdamW": (optim.AdamW, torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1, eps=1e-6)),
    "AdamW-amsgrad": (optim.AdamW, torch.optim.AdamW, dict(lr=0.01, amsgrad=True, weight_decay=0.1,
                                                           betas=(0.7, 0.95))),
    "Adafactor": (optim.Adafactor, torch.optim.Adafactor, dict(lr=0.05)),
    "Adafactor-eps1-wd-d": (optim.Adafactor, torch.optim.Adafactor,
                            dict(lr=0.05, eps=(1e-20, 1e-2), weight_decay=0.05, d=1.5, beta2_decay=-0.6)),
    "Adafactor-no-clipping": (optim.Adafactor, torch.optim.Adafactor, dict(lr=0.05, d=float("inf"))),
}


def test_every_constructor_option_is_exercised():
    """Adding an option to a constructor without a case here fails: each keyword (but ``lr`` and Sophia's
    ``estimator``/``update_period``) must be set to a non-default value by some case of this file."""
    import inspect

    covered = {}
    for ours, _, kwargs in TORCH_CASES.values():
        covered.setdefault(ours, set()).update(kwargs)
    covered.setdefault(optim.Lion, set()).update(LION_KWARGS)
    covered.setdefault(optim.Sophia, set()).update({"betas", "rho", "weight_decay", "eps"})
    for cls in optim.OPTIMIZERS.values():
        options = set(inspect.signature(cls).parameters) - {"params", "lr", "maximize", "estimator",
                                                             "update_period"}
        assert options <= covered.get(cls, set()), (cls.__name__, options - covered.get(cls, set()))


@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("case", list(TORCH_CASES))
def test_options_match_torch_optim(case, maximize):
    ours, ref, kwargs = TORCH_CASES[case]
    model, data = problem(1)
    start, twin = copy.deepcopy(model), copy.deepcopy(model)
    run(model, ours(model.parameters(), maximize=maximize, **kwargs), data)
    run(twin, ref(twin.parameters(), maximize=maximize, **kwargs), data)
    assert moved(twin, start) > 1e-3                                 # the comparison is not vacuous
    assert max_diff(model, twin) <= TOL


@pytest.mark.parametrize("case", list(TORCH_CASES))
def test_closure_matches_torch_optim(case):
    """``step(closure)`` with no gradient before the step: the closure must run (once, with grad enabled), its
    loss must come back, and the step must use its gradient; maximize on, to catch a closure path that skips it."""
    ours, ref, kwargs = TORCH_CASES[case]
    model, data = problem(2)
    twin = copy.deepcopy(model)
    got, calls = run(model, ours(model.parameters(), maximize=True, **kwargs), data, closure=True)
    want, _ = run(twin, ref(twin.parameters(), maximize=True, **kwargs), data, closure=True)
    assert calls == [1] * STEPS
    assert all(torch.is_tensor(g) for g in got)
    torch.testing.assert_close(torch.stack(got).detach(), torch.stack(want).detach(), atol=TOL, rtol=0)
    assert max_diff(model, twin) <= TOL


@pytest.mark.parametrize("case", ["SGD-momentum-dampening-wd", "RMSprop-centered-momentum-wd", "Adam-amsgrad-l2",
                                  "AdamW-amsgrad", "Adagrad-all", "Adafactor-eps1-wd-d"])
def test_options_per_parameter_group_match_torch_optim(case):
    """Two parameter groups: the first layer maximised with its own learning rate and weight decay, the rest
    with the defaults: each group must read its own options."""
    ours, ref, kwargs = TORCH_CASES[case]
    model, data = problem(3)
    twin = copy.deepcopy(model)

    def groups(net):
        first = list(net[0].parameters())
        return [dict(params=first, maximize=True, lr=kwargs["lr"] / 2, weight_decay=0.07),
                dict(params=list(net[2].parameters()))]

    run(model, ours(groups(model), **kwargs), data)
    run(twin, ref(groups(twin), **kwargs), data)
    assert max_diff(model, twin) <= TOL


LION_KWARGS = dict(lr=3e-3, betas=(0.8, 0.95), weight_decay=0.3)


@pytest.mark.parametrize("closure", [False, True])
@pytest.mark.parametrize("maximize", [False, True])
def test_lion_options_match_lion_pytorch(maximize, closure):
    """lion-pytorch has no ``maximize``: it minimises ``-loss`` (the definition of maximising ``loss``)."""
    Lion = pytest.importorskip("lion_pytorch").Lion
    model, data = problem(4)
    start, twin = copy.deepcopy(model), copy.deepcopy(model)
    got, calls = run(model, optim.Lion(model.parameters(), maximize=maximize, **LION_KWARGS), data, closure=closure)
    want, _ = run(twin, Lion(twin.parameters(), **LION_KWARGS), data, sign=-1.0 if maximize else 1.0,
                  closure=closure)
    assert moved(twin, start) > 1e-3
    assert max_diff(model, twin) <= TOL
    if closure:
        assert calls == [1] * STEPS
        sign = -1.0 if maximize else 1.0
        torch.testing.assert_close(sign * torch.stack(got).detach(), torch.stack(want).detach(), atol=TOL, rtol=0)


def curvatures(model, seed):
    g = torch.Generator().manual_seed(seed + 100)
    return [[torch.randn(p.shape, generator=g, dtype=p.dtype).abs_() * 3 - 0.5 for p in model.parameters()]
            for _ in range(STEPS)]


@pytest.mark.parametrize("closure", [False, True])
@pytest.mark.parametrize("maximize", [False, True])
def test_sophia_options_match_pytorch_optimizer_sophiah(maximize, closure):
    """As tests/test_optim.py (lr' = lr*p, rho = p, eps' = p*eps, decoupled weight decay wd/p), with maximize
    and closure: SophiaH's own ``maximize`` flag, the same curvature estimates fed to both."""
    SophiaH = pytest.importorskip("pytorch_optimizer").SophiaH
    lr, clip, wd, k, betas = 0.3, 0.02, 0.01, 3, (0.8, 0.95)
    model, data = problem(5)
    start, twin = copy.deepcopy(model), copy.deepcopy(model)
    h_hats = curvatures(model, 5)
    ours = optim.Sophia(model.parameters(), lr=lr * clip, betas=betas, rho=clip, weight_decay=wd / clip,
                        eps=clip * 1e-12, update_period=k, maximize=maximize)
    ref = SophiaH(twin.parameters(), lr=lr, betas=betas, p=clip, weight_decay=wd, update_period=k, eps=1e-12,
                  maximize=maximize)

    def ours_step(t, c):
        if t % k == 0:
            ours.update_hessian(h_hats[t])
        return ours.step(c)

    def ref_step(t, c):
        return ref.step(c, hessian=[h.clone() for h in h_hats[t]]) if t % k == 0 else ref.step(c)

    got, calls = run(model, ours, data, closure=closure, step=ours_step)
    want, _ = run(twin, ref, data, closure=closure, step=ref_step)
    assert moved(twin, start) > 1e-3
    assert max_diff(model, twin) <= 1e-9
    if closure:
        assert calls == [1] * STEPS
        torch.testing.assert_close(torch.stack(got).detach(), torch.stack(want).detach(), atol=TOL, rtol=0)


def test_sophia_estimator_sees_the_closure_gradient_step():
    """With an estimator and a closure, Sophia calls the closure once per step and the estimator on steps
    1, k+1, 2k+1, ... (after the closure: the estimator may rely on the forward pass the closure made)."""
    model, data = problem(6)
    events = []

    def estimator():
        events.append("estimate")
        return [torch.ones_like(p) for p in model.parameters()]

    opt = optim.Sophia(model.parameters(), lr=1e-3, update_period=4, estimator=estimator)
    for x, y in data[:9]:
        def closure():
            events.append("closure")
            opt.zero_grad()
            loss = F.mse_loss(model(x), y)
            loss.backward()
            return loss
        opt.step(closure)
    steps = " ".join(events).split("closure")[1:]
    assert len(steps) == 9
    assert [i for i, s in enumerate(steps) if "estimate" in s] == [0, 4, 8]


# --------------------------------------------------------------------------------------- the references must exist
def _importorskip_modules() -> dict[str, list[str]]:
    """``{module: [test files]}`` of every ``importorskip`` call with a literal module name in tests/ (a text scan: a test file being
    edited need not parse)."""
    found = {}
    for path in sorted((ROOT / "tests").glob("*.py")):
        for name in re.findall(r"importorskip\(\s*[\"']([\w.]+)[\"']", path.read_text()):
            found.setdefault(name.split(".")[0], []).append(path.name)
    return found


def _declared(extra: str | None) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return reqs


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[@]", requirement.strip(), maxsplit=1)[0]


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_importorskip_in_tests_only_skips_what_the_test_extra_declares():
    """Every module a test importorskips is importable here and is provided by a distribution declared in the
    ``test`` extra or the runtime dependencies: so under ``make test`` (which installs ``.[book,test]``) no
    reference implementation is skipped, and no optimizer goes untested."""
    skips = _importorskip_modules()
    assert skips, "no importorskip found: the scan of tests/ is broken"
    declared = {_normal(_name(r)) for r in _declared("test") + _declared(None)}
    providers = importlib.metadata.packages_distributions()
    for module, files in skips.items():
        try:
            importlib.import_module(module)
        except ImportError as e:
            pytest.fail(f"{module} (importorskip in {files}) is not importable ({e}): under make test it would be "
                        "skipped silently; install the test extra, pip install -e '.[test]'")
        dists = {_normal(d) for d in providers.get(module, [])}
        assert dists & declared, f"{module} (importorskip in {files}) comes from {dists}, not declared in " \
                                 "pyproject.toml's test extra"


@pytest.mark.parametrize("requirement", _declared("test"))
def test_every_test_extra_is_installed_at_an_allowed_version(requirement):
    from packaging.requirements import Requirement

    req = Requirement(requirement)
    try:
        version = importlib.metadata.version(req.name)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{req.name} (pyproject.toml test extra) is not installed: pip install -e '.[test]'")
    assert req.specifier.contains(version, prereleases=True), (req.name, version, str(req.specifier))
