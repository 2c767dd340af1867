"""dldna_lite.optim against independent references, in float64, 100 steps, random hyperparameters.

References: torch.optim (SGD, Adagrad, RMSprop, Adam, AdamW, Adafactor), lion-pytorch (Lion), pytorch-optimizer's
SophiaH, and the SophiaG update of Liu et al. (2023, Algorithm 3) written out below. The references are test-only
dependencies: tests that need one are skipped when it is missing.
"""
import copy
import io
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dldna_lite import optim
from dldna_lite.optim import reference
from dldna_lite.optim.reference import STEPS, run_steps as run



def random_sizes(seed):
    """``(d_in, width, d_out)``, each in 2..6."""
    g = torch.Generator().manual_seed(seed)
    return tuple(int(torch.randint(2, 7, (1,), generator=g)) for _ in range(3))


def make_problem(seed):
    """A random-size tanh MLP (float64) and a stream of random regression batches (optim.reference)."""
    return reference.make_problem(seed, sizes=random_sizes(seed), steps=STEPS)


def assert_same(model_a, model_b, tol=1e-6):
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        torch.testing.assert_close(pa, pb, atol=tol, rtol=0)


def uniform(rng, low, high):
    return float(rng.uniform(low, high))


def log_uniform(rng, low, high):
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


# name -> (ours, reference class, random kwargs(rng))
CASES = {
    "SGD": (optim.SGD, torch.optim.SGD, lambda r: dict(lr=log_uniform(r, 1e-3, 0.3))),
    "SGD-momentum": (optim.SGD, torch.optim.SGD, lambda r: dict(
        lr=log_uniform(r, 1e-3, 0.1), momentum=uniform(r, 0.1, 0.99), dampening=uniform(r, 0, 0.5),
        weight_decay=log_uniform(r, 1e-4, 1e-1))),
    "SGD-nesterov": (optim.SGD, torch.optim.SGD, lambda r: dict(
        lr=log_uniform(r, 1e-3, 0.1), momentum=uniform(r, 0.1, 0.99), nesterov=True,
        weight_decay=log_uniform(r, 1e-4, 1e-1))),
    "Adagrad": (optim.Adagrad, torch.optim.Adagrad, lambda r: dict(
        lr=log_uniform(r, 1e-3, 0.3), lr_decay=log_uniform(r, 1e-4, 1e-1), weight_decay=log_uniform(r, 1e-4, 1e-1),
        initial_accumulator_value=uniform(r, 0, 0.5), eps=log_uniform(r, 1e-10, 1e-6))),
    "RMSprop": (optim.RMSprop, torch.optim.RMSprop, lambda r: dict(
        lr=log_uniform(r, 1e-4, 1e-2), alpha=uniform(r, 0.8, 0.999), eps=log_uniform(r, 1e-8, 1e-4),
        weight_decay=log_uniform(r, 1e-4, 1e-1))),
    "RMSprop-centered-momentum": (optim.RMSprop, torch.optim.RMSprop, lambda r: dict(
        lr=log_uniform(r, 1e-4, 1e-2), alpha=uniform(r, 0.8, 0.999), momentum=uniform(r, 0.1, 0.95),
        centered=True, weight_decay=log_uniform(r, 1e-4, 1e-1))),
    "Adam": (optim.Adam, torch.optim.Adam, lambda r: dict(
        lr=log_uniform(r, 1e-4, 3e-2), betas=(uniform(r, 0.5, 0.99), uniform(r, 0.9, 0.9999)),
        eps=log_uniform(r, 1e-8, 1e-4), weight_decay=log_uniform(r, 1e-4, 1e-1))),
    "Adam-amsgrad": (optim.Adam, torch.optim.Adam, lambda r: dict(
        lr=log_uniform(r, 1e-4, 3e-2), betas=(uniform(r, 0.5, 0.99), uniform(r, 0.9, 0.9999)), amsgrad=True)),
    "AdamW": (optim.AdamW, torch.optim.AdamW, lambda r: dict(
        lr=log_uniform(r, 1e-4, 3e-2), betas=(uniform(r, 0.5, 0.99), uniform(r, 0.9, 0.9999)),
        eps=log_uniform(r, 1e-8, 1e-4), weight_decay=log_uniform(r, 1e-3, 0.5))),
    "Adafactor": (optim.Adafactor, torch.optim.Adafactor, lambda r: dict(
        lr=log_uniform(r, 1e-3, 0.1), beta2_decay=uniform(r, -1.0, -0.5), eps=(None, log_uniform(r, 1e-4, 1e-2)),
        d=uniform(r, 1.0, 2.0), weight_decay=log_uniform(r, 1e-4, 1e-1))),
}


def lion_reference():
    return pytest.importorskip("lion_pytorch").Lion


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_torch_optim(case, seed):
    ours, ref, sample = CASES[case]
    kwargs = sample(np.random.default_rng(seed))
    assert reference.max_difference(ours, ref, seed=seed, sizes=random_sizes(seed), **kwargs) <= 1e-6


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lion_matches_lion_pytorch(seed):
    rng = np.random.default_rng(seed)
    kwargs = dict(lr=log_uniform(rng, 1e-4, 1e-2), betas=(uniform(rng, 0.5, 0.95), uniform(rng, 0.9, 0.999)),
                  weight_decay=log_uniform(rng, 1e-3, 1.0))
    assert reference.max_difference(optim.Lion, lion_reference(), seed=seed, sizes=random_sizes(seed), **kwargs) <= 1e-6


def random_curvatures(model, seed):
    """A fixed list of (step, diagonal estimate) pairs, some entries negative, fed identically to both sides."""
    g = torch.Generator().manual_seed(seed + 100)
    return [[torch.randn(p.shape, generator=g, dtype=p.dtype).abs_() * 3 - 0.5 for p in model.parameters()]
            for _ in range(STEPS)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sophia_matches_pytorch_optimizer_sophiah(seed):
    """pytorch-optimizer's SophiaH steps -lr*clip(m/max(h, eps), p): ours with lr'=lr*p, rho=p, eps'=p*eps."""
    SophiaH = pytest.importorskip("pytorch_optimizer").SophiaH
    rng = np.random.default_rng(seed)
    lr, clip, wd, k = log_uniform(rng, 1e-2, 1.0), log_uniform(rng, 1e-3, 0.1), log_uniform(rng, 1e-3, 1e-1), 3
    betas = (uniform(rng, 0.5, 0.99), uniform(rng, 0.9, 0.999))
    model, data = make_problem(seed)
    twin = copy.deepcopy(model)
    h_hats = random_curvatures(model, seed)
    ours = optim.Sophia(model.parameters(), lr=lr * clip, betas=betas, rho=clip, weight_decay=wd / clip,
                        eps=clip * 1e-12, update_period=k)
    ref = SophiaH(twin.parameters(), lr=lr, betas=betas, p=clip, weight_decay=wd, update_period=k, eps=1e-12)
    for t, (x, y) in enumerate(data):
        for net, opt in ((model, ours), (twin, ref)):
            opt.zero_grad()
            F.mse_loss(net(x), y).backward()
        if t % k == 0:
            ours.update_hessian(h_hats[t])
            ref.step(hessian=[h.clone() for h in h_hats[t]])
        else:
            ref.step()
        ours.step()
    assert_same(model, twin)


def sophia_g_reference(params, grads_per_step, h_hats, lr, beta1, beta2, rho, wd, eps, k):
    """Liu et al. (2023), Algorithm 3, written out on plain tensors (one parameter list, no optimizer class)."""
    theta = [p.clone() for p in params]
    m = [torch.zeros_like(p) for p in params]
    h = [torch.zeros_like(p) for p in params]
    for t in range(1, len(grads_per_step) + 1):
        g = grads_per_step[t - 1](theta)
        m = [beta1 * mi + (1 - beta1) * gi for mi, gi in zip(m, g)]
        if t % k == 1 or k == 1:
            h = [beta2 * hi + (1 - beta2) * ei for hi, ei in zip(h, h_hats[t - 1])]
        theta = [th - lr * wd * th for th in theta]
        theta = [th - lr * torch.clamp(mi / torch.clamp(rho * hi, min=eps), -1, 1) for th, mi, hi in zip(theta, m, h)]
    return theta


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sophia_matches_algorithm(seed):
    rng = np.random.default_rng(seed)
    kw = dict(lr=log_uniform(rng, 1e-3, 1e-1), beta1=uniform(rng, 0.5, 0.99), beta2=uniform(rng, 0.9, 0.999),
              rho=log_uniform(rng, 1e-3, 1.0), wd=log_uniform(rng, 1e-3, 1e-1), eps=1e-12, k=int(rng.integers(1, 6)))
    model, data = make_problem(seed)
    h_hats = random_curvatures(model, seed)
    names = [n for n, _ in model.named_parameters()]
    functional = torch.func.functional_call

    def grad_fn(x, y):
        def grads(theta):
            theta = [p.detach().requires_grad_() for p in theta]
            loss = F.mse_loss(functional(model, dict(zip(names, theta)), (x,)), y)
            return torch.autograd.grad(loss, theta)
        return grads

    expected = sophia_g_reference(list(model.parameters()), [grad_fn(x, y) for x, y in data], h_hats, **kw)
    calls = iter(h_hats[t] for t in range(STEPS) if t % kw["k"] == 0)
    opt = optim.Sophia(model.parameters(), lr=kw["lr"], betas=(kw["beta1"], kw["beta2"]), rho=kw["rho"],
                       weight_decay=kw["wd"], eps=kw["eps"], update_period=kw["k"], estimator=lambda: next(calls))
    run(model, opt, data)
    for p, q in zip(model.parameters(), expected):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)


def test_hutchinson_diagonal_is_exact_for_a_diagonal_hessian():
    """For f = sum(a * x**2 / 2) + sum(x)**3-free terms, H is diagonal and u*(Hu) = diag(H) for any +-1 vector u."""
    a = torch.tensor([1.0, 5.0, -2.0, 0.5], dtype=torch.float64)
    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    est = optim.hutchinson_diagonal((a * x ** 2 / 2).sum() + torch.sin(x).sum(), [x],
                                    generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(est[0], a - torch.sin(x.detach()))


def test_hutchinson_diagonal_is_unbiased():
    torch.manual_seed(0)
    A = torch.randn(5, 5, dtype=torch.float64)
    H = A @ A.T
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    est = optim.hutchinson_diagonal(0.5 * x @ H @ x, [x], generator=torch.Generator().manual_seed(0),
                                    n_samples=4000)[0]
    torch.testing.assert_close(est, torch.diagonal(H), atol=0.15 * H.abs().max().item(), rtol=0)


def test_gauss_newton_bartlett_matches_closed_form():
    """Softmax regression: grad of mean CE wrt W is (1/B) (P - onehot(y_hat))^T X; estimate = B * grad**2."""
    torch.manual_seed(0)
    model = nn.Linear(6, 4, bias=False).double()
    X = torch.randn(32, 6, dtype=torch.float64)
    est = optim.GaussNewtonBartlett(model, generator=torch.Generator().manual_seed(3))
    model(X)
    (h_hat,) = est()
    P = F.softmax(model(X), 1).detach()
    y_hat = torch.multinomial(P, 1, generator=torch.Generator().manual_seed(3)).squeeze(1)
    grad = (P - F.one_hot(y_hat, 4).double()).T @ X / len(X)
    torch.testing.assert_close(h_hat, len(X) * grad ** 2)
    est.remove()


BAD_HYPERPARAMETERS = [dict(lr=-1e-3), dict(lr=math.inf), dict(lr=math.nan), dict(betas=(1.0, 0.9)),
                       dict(betas=(0.9, -0.1)), dict(betas=(0.9, math.nan)), dict(eps=-1.0), dict(eps=math.inf),
                       dict(weight_decay=math.inf)]


def _bad_cases():
    """(optimizer, bad keyword) for the keywords each optimizer has: only combinations that exist."""
    cases = []
    for name in optim.OPTIMIZERS:
        defaults = optim.get(name)([nn.Parameter(torch.zeros(1))]).defaults
        for bad in BAD_HYPERPARAMETERS:
            (key, value), = bad.items()
            if key in defaults:
                if key == "eps" and isinstance(defaults["eps"], tuple):      # Adafactor's (eps1, eps2)
                    value = (None, value)
                cases.append(pytest.param(name, key, value, id=f"{name}-{key}={value}"))
    return cases


@pytest.mark.parametrize("name,key,value", _bad_cases())
def test_bad_hyperparameters_raise(name, key, value):
    with pytest.raises(ValueError, match="invalid"):
        optim.get(name)([nn.Parameter(torch.zeros(1))], **{key: value})


def test_unknown_optimizer_lists_choices():
    with pytest.raises(ValueError, match="Adam"):
        optim.get("Adamm")
