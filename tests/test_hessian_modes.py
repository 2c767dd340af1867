"""dldna_lite.hessian on a model with dropout and batch norm: the Hessian is the one of the model in eval mode.

The package's convention (dldna_lite/hessian/__init__.py): ``data`` is evaluated as one full batch *in eval mode*
(dropout off, batch norm with its running statistics) and the model's training mode is restored afterwards. The
models of tests/test_hessian.py have neither dropout nor batch norm, so a Hessian computed in training mode passes
them. Here a tiny float64 ``Linear -> BatchNorm1d -> Tanh -> Dropout -> Linear`` with non-trivial running statistics
is checked against an exact Hessian built in this file (``torch.autograd.functional.hessian`` of the loss as a
function of the flat trainable parameters, on an eval-mode copy of the model): HVPs, top eigenvalues (both methods),
the Hutchinson trace, the SLQ density and ``exact_hessian`` itself; and every function must leave each module in the
mode it had (a frozen batch-norm layer inside a training model stays in eval mode), the parameters and the
running statistics untouched.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dldna_lite import hessian as hs


AMBIENT_THREADS = ("test_hvp_",)


@pytest.fixture(autouse=True)
def _one_thread(request, pinned_threads):
    """Tiny float64 problems: one thread is fastest and immune to a busy 2-core machine (at 2 threads a loaded
    machine made the trace and power-iteration tests 30x slower). The HVP test runs the package at
    the ambient thread count, so its numbers are also checked with OMP_NUM_THREADS=2."""
    if request.node.name.startswith(AMBIENT_THREADS):
        yield
    else:
        with pinned_threads(1):
            yield


def _problem(seed=0):
    """The model (63 parameters, in training mode, running statistics set by 8 batches of shifted data) and a
    batch of 32 points."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6, momentum=0.5), nn.Tanh(), nn.Dropout(0.4),
                        nn.Linear(6, 3)).double()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for _ in range(8):                          # running statistics far from the batch statistics of X
            net(torch.randn(64, 4, generator=gen, dtype=torch.float64) * 2.5 + 1.0)
    X = torch.randn(32, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (32,), generator=gen)
    net.train()
    return net, (X, y)


def eval_mode_hessian(model, data, loss_fn=F.cross_entropy):
    """The reference: the exact Hessian ``[P, P]`` over the trainable parameters of an eval-mode copy."""
    net = copy.deepcopy(model).eval()
    X, y = data
    named = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    flat0 = torch.cat([p.detach().reshape(-1) for _, p in named])

    def loss_of(flat):
        parts = torch.split(flat, [p.numel() for _, p in named])
        params = {n: t.view_as(p) for (n, p), t in zip(named, parts)}
        return loss_fn(torch.func.functional_call(net, params, (X,)), y)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)              # the reference of every test, at any ambient thread count: fast
    try:
        return torch.autograd.functional.hessian(loss_of, flat0)
    finally:
        torch.set_num_threads(threads)


def _snapshot(model):
    """What the Hessian functions must leave alone: the model's mode, the parameters, the buffers (running
    statistics); the mode of each submodule is checked by :func:`test_every_function_restores_each_module_s_mode`."""
    return (model.training, [p.detach().clone() for p in model.parameters()], [b.clone() for b in model.buffers()])


def _assert_unchanged(model, snapshot):
    mode, params, buffers = snapshot
    assert model.training == mode, "the model's training/eval mode changed"
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters())), "parameters changed"
    assert all(torch.equal(a, b) for a, b in zip(buffers, model.buffers())), "running statistics changed"


def _flat(ts):
    return torch.cat([t.reshape(-1) for t in ts])


MODES = {"train": lambda net: net.train(), "eval": lambda net: net.eval(),
         "train-with-frozen-bn": lambda net: (net.train(), net[1].eval())}


@pytest.fixture(params=list(MODES))
def model_in_mode(request):
    net, data = _problem()
    H = eval_mode_hessian(net, data)
    MODES[request.param](net)
    return net, data, H


def test_the_reference_differs_from_the_training_mode_hessian():
    """The test has teeth: in training mode (batch statistics, dropout) the Hessian is far from the reference."""
    net, (X, y) = _problem()
    H = eval_mode_hessian(net, (X, y))
    torch.manual_seed(0)
    train_net = copy.deepcopy(net).train()
    named = [(n, p) for n, p in train_net.named_parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for _, p in named])

    def loss_of(flat):
        parts = torch.split(flat, [p.numel() for _, p in named])
        out = torch.func.functional_call(train_net, {n: t.view_as(p) for (n, p), t in zip(named, parts)}, (X,))
        return F.cross_entropy(out, y)

    H_train = torch.autograd.functional.hessian(loss_of, flat0)
    assert (H_train - H).abs().max() > 0.5 * H.abs().max()


def test_hvp_is_the_eval_mode_hessian_times_v(model_in_mode):
    net, data, H = model_in_mode
    snap = _snapshot(net)
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        v = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in net.parameters()]
        got = hs.hvp(net, data, v)
        torch.testing.assert_close(_flat(got), H @ _flat(v), rtol=1e-10, atol=1e-12)
    _assert_unchanged(net, snap)
    with hs.HessianOperator(net, data) as op:        # the operator itself, and the gradient it keeps
        e = torch.zeros(op.size, dtype=torch.float64)
        e[5] = 1.0
        torch.testing.assert_close(op(e), H[:, 5], rtol=1e-10, atol=1e-12)
    _assert_unchanged(net, snap)


@pytest.mark.parametrize("method", hs.METHODS)
def test_top_eigenvalues_are_the_eval_mode_ones(model_in_mode, method):
    net, data, H = model_in_mode
    snap = _snapshot(net)
    ev = torch.linalg.eigvalsh(H)
    want = ev[ev.abs().argsort(descending=True)][:2].tolist()
    got, vectors = hs.top_eigenvalues(net, data, k=2, max_iter=3000, tol=1e-12, method=method,
                                      generator=torch.Generator().manual_seed(0))
    _assert_unchanged(net, snap)
    for g_, w, v in zip(got, want, vectors):
        assert math.isclose(g_, w, rel_tol=1e-6), (got, want)
        v = _flat(v)
        torch.testing.assert_close(H @ v, g_ * v, atol=1e-4 * abs(w), rtol=0)


def test_hessian_trace_is_the_eval_mode_trace(model_in_mode):
    """Hutchinson with n Rademacher vectors: mean tr(H), standard deviation sqrt(2 sum_{i != j} H_ij^2 / n)
    (computed from the reference); the estimate must be within 5 standard deviations."""
    net, data, H = model_in_mode
    snap = _snapshot(net)
    n = 4096
    got = hs.hessian_trace(net, data, n_samples=n, batch=512, generator=torch.Generator().manual_seed(0))
    _assert_unchanged(net, snap)
    off = H - torch.diag(torch.diagonal(H))
    sd = math.sqrt(2 * (off ** 2).sum().item() / n)
    assert abs(got - H.trace().item()) <= 5 * sd, (got, H.trace().item(), sd)


def test_eigen_density_nodes_are_eval_mode_eigenvalues(model_in_mode):
    """SLQ with as many Lanczos steps as parameters: the Ritz values are eigenvalues of the reference (each node
    within 1e-6 of one, the extreme ones equal to the extreme eigenvalues) and the weights sum to 1."""
    net, data, H = model_in_mode
    snap = _snapshot(net)
    out = hs.eigen_density(net, data, n_iter=H.shape[0], n_runs=2, generator=torch.Generator().manual_seed(0))
    _assert_unchanged(net, snap)
    ev = torch.linalg.eigvalsh(H).double()
    scale = ev.abs().max().item()
    for nodes, weights in zip(out["nodes"], out["weights"]):
        nodes = torch.from_numpy(nodes)
        assert (nodes[:, None] - ev[None]).abs().min(1).values.max().item() <= 1e-6 * scale
        assert nodes.max().item() == pytest.approx(ev.max().item(), abs=1e-6 * scale)
        assert nodes.min().item() == pytest.approx(ev.min().item(), abs=1e-6 * scale)
        assert weights.sum() == pytest.approx(1.0, abs=1e-10)


def test_exact_hessian_is_the_eval_mode_hessian(model_in_mode):
    net, data, H = model_in_mode
    snap = _snapshot(net)
    got = hs.exact_hessian(net, data)
    _assert_unchanged(net, snap)
    torch.testing.assert_close(got, H, rtol=1e-10, atol=1e-12)


FUNCTIONS = {
    "hvp": lambda net, data: hs.hvp(net, data, [torch.ones_like(p) for p in net.parameters()]),
    "top_eigenvalues": lambda net, data: hs.top_eigenvalues(net, data, k=1, max_iter=20),
    "hessian_trace": lambda net, data: hs.hessian_trace(net, data, n_samples=4),
    "eigen_density": lambda net, data: hs.eigen_density(net, data, n_iter=5),
    "HessianOperator": lambda net, data: hs.HessianOperator(net, data).close(),
    "exact_hessian": lambda net, data: hs.exact_hessian(net, data),
}


@pytest.mark.parametrize("name", list(FUNCTIONS))
@pytest.mark.parametrize("mode", list(MODES))
def test_every_function_restores_each_module_s_mode(name, mode):
    """Each module keeps its own mode: a training model with a frozen (eval-mode) batch-norm layer, as when
    fine-tuning, must still have it frozen after a Hessian computation."""
    net, data = _problem()
    MODES[mode](net)
    modes, buffers = [m.training for m in net.modules()], [b.clone() for b in net.buffers()]
    FUNCTIONS[name](net, data)
    assert [m.training for m in net.modules()] == modes
    assert all(torch.equal(a, b) for a, b in zip(buffers, net.buffers())), "running statistics changed"


def test_a_failing_call_restores_the_mode_too():
    """A loss that is not a scalar raises ValueError, after putting the modes back."""
    net, data = _problem()
    snap = _snapshot(net)
    with pytest.raises(ValueError, match="scalar"):
        hs.hvp(net, data, list(net.parameters()), loss_fn=lambda out, y: F.cross_entropy(out, y, reduction="none"))
    _assert_unchanged(net, snap)
