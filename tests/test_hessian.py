"""dldna_lite.hessian against the exact Hessian of tiny float64 networks (``torch.autograd.functional.hessian``)."""
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dldna_lite import hessian as hs


def _problem(seed=0, act=nn.Tanh, n=40):
    """A 5-8-3 network (75 parameters), float64, cross-entropy on random data."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(5, 8), act(), nn.Linear(8, 3)).double()
    gen = torch.Generator().manual_seed(seed + 100)
    X = torch.randn(n, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=gen)
    return net, F.cross_entropy, (X, y)


exact_hessian = hs.exact_hessian  # torch.autograd.functional.hessian: the dense reference


def _flat(ts):
    return torch.cat([t.reshape(-1) for t in ts])


@pytest.mark.parametrize("seed", [0, 1])
def test_hvp_equals_exact_hessian_times_vector(seed):
    net, loss_fn, data = _problem(seed)
    H = exact_hessian(net, loss_fn, data)
    v = [torch.randn_like(p) for p in net.parameters()]
    got = hs.hvp(net, loss_fn, data, v)
    assert [g.shape for g in got] == [p.shape for p in net.parameters()]
    torch.testing.assert_close(_flat(got), H @ _flat(v), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed,act", [(0, nn.Tanh), (3, nn.ReLU), (5, nn.Sigmoid)])
def test_top_eigenvalues_match_exact(seed, act):
    net, loss_fn, data = _problem(seed, act)
    H = exact_hessian(net, loss_fn, data)
    ev, evec = torch.linalg.eigh(H)
    order = ev.abs().argsort(descending=True)
    before = [p.detach().clone() for p in net.parameters()]
    net.train()
    values, vectors = hs.top_eigenvalues(net, loss_fn, data, k=2, max_iter=3000, tol=1e-12,
                                         generator=torch.Generator().manual_seed(seed))
    assert net.training                                           # mode restored
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # parameters untouched
    for i in range(2):
        want = ev[order[i]].item()
        assert math.isclose(values[i], want, rel_tol=1e-3), (i, values[i], want)
        v = _flat(vectors[i])
        assert v.norm().item() == pytest.approx(1.0)
        # an eigenvector: H v = λ v, and it is (up to sign) the exact one
        torch.testing.assert_close(H @ v, values[i] * v, atol=1e-3 * abs(want), rtol=0)
        assert abs(v @ evec[:, order[i]]).item() == pytest.approx(1.0, abs=1e-3)


def test_top_eigenvalues_warm_start_and_errors():
    net, loss_fn, data = _problem(0)
    H = exact_hessian(net, loss_fn, data)
    ev, evec = torch.linalg.eigh(H)
    top = evec[:, ev.abs().argmax()]
    init = [list(torch.split(top, [p.numel() for p in net.parameters()]))]
    init = [[t.view_as(p) for t, p in zip(init[0], net.parameters())]]
    values, _ = hs.top_eigenvalues(net, loss_fn, data, k=1, max_iter=3, tol=1e-12, init=init)
    assert values[0] == pytest.approx(ev[ev.abs().argmax()].item(), rel=1e-9)
    with pytest.raises(ValueError, match="k must be"):
        hs.top_eigenvalues(net, loss_fn, data, k=0)
    with pytest.raises(ValueError, match="init"):
        hs.top_eigenvalues(net, loss_fn, data, k=2, init=init)


def test_hutchinson_is_the_mean_of_rademacher_quadratic_forms():
    """Exact check of the estimator: same Rademacher draws as the implementation, exact Hessian."""
    net, loss_fn, data = _problem(2)
    H = exact_hessian(net, loss_fn, data)
    n = 50
    got = hs.hessian_trace(net, loss_fn, data, n_samples=n, generator=torch.Generator().manual_seed(7), batch=n)
    V = torch.randint(0, 2, (n, H.shape[0]), generator=torch.Generator().manual_seed(7)).double() * 2 - 1
    want = torch.einsum("np,pq,nq->n", V, H, V).mean().item()
    assert got == pytest.approx(want, rel=1e-10)


def test_hutchinson_trace_is_unbiased():
    net, loss_fn, data = _problem(4)
    H = exact_hessian(net, loss_fn, data)
    n = 4000
    got = hs.hessian_trace(net, loss_fn, data, n_samples=n, generator=torch.Generator().manual_seed(1), batch=500)
    trace = H.trace().item()
    std_err = math.sqrt(2 * ((H ** 2).sum() - (H.diag() ** 2).sum()).item() / n)
    assert abs(got - trace) < 4 * std_err, (got, trace, std_err)


def test_lanczos_gauss_quadrature_is_exact_for_low_moments():
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(30, 30, generator=gen, dtype=torch.float64)
    A = (A + A.T) / 2
    v0 = torch.randn(30, generator=gen, dtype=torch.float64)
    u = v0 / v0.norm()
    nodes, weights = hs.lanczos(lambda v: A @ v, v0, 8)
    assert weights.sum().item() == pytest.approx(1.0)
    for k in range(2 * 8):               # m-point Gauss quadrature is exact up to degree 2m - 1
        want = (u @ torch.linalg.matrix_power(A, k) @ u).item()
        assert (weights * nodes ** k).sum().item() == pytest.approx(want, rel=1e-6, abs=1e-8), k
    # a full run recovers the spectrum exactly
    nodes, weights = hs.lanczos(lambda v: A @ v, v0, 30)
    torch.testing.assert_close(nodes, torch.linalg.eigvalsh(A), rtol=1e-8, atol=1e-8)


def test_eigen_density_on_tiny_net():
    net, loss_fn, data = _problem(0)
    H = exact_hessian(net, loss_fn, data)
    ev = torch.linalg.eigvalsh(H).numpy()
    P = len(ev)
    out = hs.eigen_density(net, loss_fn, data, n_iter=P, n_runs=3, generator=torch.Generator().manual_seed(0))
    assert out["nodes"].shape[0] == 3 and np.isfinite(out["density"]).all()
    # every node that carries weight is an exact eigenvalue, and the extremes are found
    heavy = out["nodes"][out["weights"] > 1e-6]
    assert np.abs(heavy[:, None] - ev[None]).min(axis=1).max() < 1e-6 * np.abs(ev).max()
    assert out["nodes"].max() == pytest.approx(ev.max(), rel=1e-6)
    assert out["nodes"].min() == pytest.approx(ev.min(), rel=1e-6)
    area = out["density"].sum() * (out["grid"][1] - out["grid"][0])
    assert area == pytest.approx(1.0, abs=1e-3)
    # P * first moment of the quadrature = a Hutchinson estimate: unbiased for the trace
    estimates = P * (out["weights"] * out["nodes"]).sum(1)
    assert np.all(np.isfinite(estimates))


def test_density_on_grid_is_a_mixture_of_gaussians():
    grid = np.linspace(-5, 5, 2001)
    d = hs.density_on_grid([[0.0, 1.0]], [[0.25, 0.75]], grid, sigma=0.5)
    want = 0.25 * np.exp(-0.5 * (grid / 0.5) ** 2) + 0.75 * np.exp(-0.5 * ((grid - 1) / 0.5) ** 2)
    np.testing.assert_allclose(d, want / (0.5 * math.sqrt(2 * math.pi)), rtol=1e-12)
    with pytest.raises(ValueError):
        hs.density_on_grid([0.0], [1.0], grid, sigma=0)
