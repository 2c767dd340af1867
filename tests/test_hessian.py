"""dldna_lite.hessian against the exact Hessian of tiny float64 networks (``torch.autograd.functional.hessian``)."""
import math

import numpy as np
import pytest
import torch
from scipy.sparse.linalg import LinearOperator, eigsh
from torch import nn
from torch.nn import functional as F

import dldna_lite as dl
from dldna_lite import hessian as hs
from dldna_lite import models


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
    H = exact_hessian(net, data, loss_fn=loss_fn)
    v = [torch.randn_like(p) for p in net.parameters()]
    got = hs.hvp(net, data, v, loss_fn=loss_fn)
    assert [g.shape for g in got] == [p.shape for p in net.parameters()]
    torch.testing.assert_close(_flat(got), H @ _flat(v), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", hs.METHODS)
@pytest.mark.parametrize("seed,act", [(0, nn.Tanh), (3, nn.ReLU), (5, nn.Sigmoid)])
def test_top_eigenvalues_match_exact(seed, act, method):
    net, loss_fn, data = _problem(seed, act)
    H = exact_hessian(net, data, loss_fn=loss_fn)
    ev, evec = torch.linalg.eigh(H)
    order = ev.abs().argsort(descending=True)
    before = [p.detach().clone() for p in net.parameters()]
    net.train()
    values, vectors = hs.top_eigenvalues(net, data, loss_fn=loss_fn, k=2, max_iter=3000, tol=1e-12,
                                         generator=torch.Generator().manual_seed(seed), method=method)
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


def _saddle_loss(out, y):
    """Cross-entropy minus a multiple of the squared logits: negative curvature among the largest |λ|."""
    return F.cross_entropy(out, y) - 0.3 * (out ** 2).mean()


@pytest.mark.parametrize("seed,act,loss", [(s, a, "ce") for s in (0, 1, 2) for a in (nn.Tanh, nn.ReLU, nn.Sigmoid)]
                         + [(s, nn.Tanh, "saddle") for s in (0, 1, 2)])
def test_lanczos_at_the_default_tolerance_is_within_1e_3_of_exact(seed, act, loss):
    """The chapters call ``top_eigenvalues`` with the default ``tol``: every one of the k eigenvalues (largest
    magnitude first, negative ones included) must be within 1e-3 relative of ``eigvalsh`` of the exact Hessian."""
    net, loss_fn, data = _problem(seed, act)
    loss_fn = _saddle_loss if loss == "saddle" else loss_fn
    exact = torch.linalg.eigvalsh(exact_hessian(net, data, loss_fn=loss_fn))
    want = exact[exact.abs().argsort(descending=True)][:4].tolist()
    got, _ = hs.top_eigenvalues(net, data, loss_fn=loss_fn, k=4, generator=torch.Generator().manual_seed(seed))
    for i, (g, w) in enumerate(zip(got, want)):
        assert abs(g - w) <= 1e-3 * abs(w), (i, got, want)


def test_lanczos_restarts_and_warm_starts():
    """A basis of 8 vectors forces Krylov-Schur restarts on the 75-parameter net; a warm start from the exact
    eigenvectors needs k products (the Krylov space of their sum holds both)."""
    net, loss_fn, data = _problem(1)
    H = exact_hessian(net, data, loss_fn=loss_fn)
    ev, evec = torch.linalg.eigh(H)
    order = ev.abs().argsort(descending=True)
    with hs.HessianOperator(net, data, loss_fn=loss_fn) as op:
        values, vectors = hs.krylov.lanczos_top(op, 3, 200, 1e-10, None, torch.Generator().manual_seed(0), max_basis=8)
        assert op.n_products > 8                                   # it did restart
    for lam, v, j in zip(values, vectors, order[:3]):
        assert lam == pytest.approx(ev[j].item(), rel=1e-8)
        torch.testing.assert_close(H @ v, lam * v, atol=1e-6 * abs(lam), rtol=0)
    with hs.HessianOperator(net, data, loss_fn=loss_fn) as op:
        warm, _ = hs.krylov.lanczos_top(op, 2, 100, 1e-8, [evec[:, order[0]], evec[:, order[1]]], None)
        assert op.n_products == 2
    assert warm == pytest.approx([ev[order[0]].item(), ev[order[1]].item()], rel=1e-10)


def _mid_size_problem():
    """784-32-10 MLP (25,450 parameters) on 512 Fashion-MNIST test images, float64, default initialization."""
    X, y = dl.load_fashion_mnist("test", limit=512, flatten=True)
    dl.seed_everything(0)
    return models.mlp([784, 32, 10]).double(), F.cross_entropy, (X.double(), y)


def _arpack(net, loss_fn, data, k, tol=1e-12):
    """The tight reference: ARPACK (``scipy.sparse.linalg.eigsh``) on the Hessian-vector products, largest |λ|."""
    with hs.HessianOperator(net, data, loss_fn=loss_fn) as H:
        op = LinearOperator((H.size, H.size), dtype=np.float64,
                            matvec=lambda v: H(torch.from_numpy(np.asarray(v, dtype=np.float64).ravel())).numpy())
        values = eigsh(op, k=k, which="LM", tol=tol, v0=np.random.default_rng(0).standard_normal(H.size))[0]
    return sorted(values.tolist(), key=abs, reverse=True)


@pytest.fixture(scope="module")
def mid_size():
    net, loss_fn, data = _mid_size_problem()
    return net, loss_fn, data, _arpack(net, loss_fn, data, k=6)


def test_lanczos_matches_arpack_on_a_mid_size_net(mid_size):
    net, loss_fn, data, ref = mid_size
    for seed in (0, 1):
        got, vectors = hs.top_eigenvalues(net, data, loss_fn=loss_fn, k=3, generator=torch.Generator().manual_seed(seed))
        for i in range(3):
            assert abs(got[i] - ref[i]) <= 1e-3 * abs(ref[i]), (seed, i, got, ref[:3])
    hv = _flat(hs.hvp(net, data, vectors[0], loss_fn=loss_fn))
    assert (hv - got[0] * _flat(vectors[0])).norm().item() < 0.05 * abs(got[0])   # an approximate eigenvector


def test_pyhessian_agrees_on_eigenvalues_and_trace(mid_size):
    """PyHessian 0.1 (Yao et al. 2020) on the same model and batch: top eigenvalues and Hutchinson trace.

    What of PyHessian 0.1 still runs on current torch (2.x): ``hessian(..., data=(X, y), cuda=False)``,
    ``.eigenvalues()`` and ``.trace()``, on a single batch and on a ``dataloader``. What does not:
    ``.density()`` (SLQ) calls ``torch.eig``, deprecated in torch 1.9 and removed since (it now raises
    ``RuntimeError``; ``eigen_density`` here uses ``torch.linalg.eigh``); checked below, so that a fixed PyHessian
    makes this test say so. Not about torch versions but worth knowing: ``cuda=True`` is the default (CPU users
    must pass ``cuda=False``); the model is left in eval mode; random vectors come from the global RNG in float32;
    ``normalization`` divides by ``norm(v) + 1e-6``, so each Rayleigh quotient is low by a relative 2e-6 (hence
    the tolerances below); ``trace(tol)`` divides the change of the running mean by ``mean + 1e-6``, so it stops
    after the first sample whenever that mean is negative, even with ``tol=0`` (``tol=-inf`` turns the test
    off); and its eigenvalue stopping rule (relative change below ``tol``) stops deflated power iteration early
    when eigenvalues are close, which is why ``top_eigenvalues`` uses Lanczos
    (``benchmarks/hessian_top_eigenvalues.py`` measures both).
    """
    import warnings

    from pyhessian import hessian as PyHessian

    tiny, loss_fn, tiny_data = _problem(4)
    H = exact_hessian(tiny, tiny_data, loss_fn=loss_fn)
    exact = torch.linalg.eigvalsh(H)
    exact = exact[exact.abs().argsort(descending=True)].tolist()
    net, _, data, ref = mid_size
    for model, batch, want in ((tiny, tiny_data, exact), (net, data, ref)):
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)      # backward(create_graph=True) reference-cycle warning
            theirs = PyHessian(model, loss_fn, data=batch, cuda=False)
        their_values, _ = theirs.eigenvalues(maxIter=3000, tol=1e-10, top_n=2)
        ours, _ = hs.top_eigenvalues(model, batch, loss_fn=loss_fn, k=2, max_iter=3000, tol=1e-10,
                                     generator=torch.Generator().manual_seed(0))
        for i in range(2):
            assert ours[i] == pytest.approx(want[i], rel=1e-8)
            assert their_values[i] == pytest.approx(want[i], rel=1e-5)
            assert ours[i] == pytest.approx(their_values[i], rel=1e-5)
        # trace: both Hutchinson estimates from n Rademacher vectors; PyHessian returns the samples v^T H v
        n = 300
        samples = np.array(theirs.trace(maxIter=n, tol=-math.inf))   # no early stop: exactly n samples
        assert len(samples) == n
        ours_trace = hs.hessian_trace(model, batch, loss_fn=loss_fn, n_samples=n, generator=torch.Generator().manual_seed(1))
        std_err = samples.std(ddof=1) / math.sqrt(n)                  # the same for both estimators
        assert abs(ours_trace - samples.mean()) < 4 * math.sqrt(2) * std_err, (ours_trace, samples.mean(), std_err)
        if model is tiny:
            assert abs(samples.mean() - H.trace().item()) < 4 * std_err
            assert abs(ours_trace - H.trace().item()) < 4 * std_err
    with pytest.raises(RuntimeError, match="torch.linalg.eig"):
        theirs.density(iter=5, n_v=1)


def test_top_eigenvalues_warm_start_and_errors():
    net, loss_fn, data = _problem(0)
    H = exact_hessian(net, data, loss_fn=loss_fn)
    ev, evec = torch.linalg.eigh(H)
    top = evec[:, ev.abs().argmax()]
    init = [list(torch.split(top, [p.numel() for p in net.parameters()]))]
    init = [[t.view_as(p) for t, p in zip(init[0], net.parameters())]]
    for method in hs.METHODS:
        values, _ = hs.top_eigenvalues(net, data, loss_fn=loss_fn, k=1, max_iter=3, tol=1e-12, init=init, method=method)
        assert values[0] == pytest.approx(ev[ev.abs().argmax()].item(), rel=1e-9)
    for bad_k in (0, True, 1.0):                       # k=True used to mean k=1
        with pytest.raises(ValueError, match="invalid k"):
            hs.top_eigenvalues(net, data, loss_fn=loss_fn, k=bad_k)
    with pytest.raises(ValueError, match="init"):
        hs.top_eigenvalues(net, data, loss_fn=loss_fn, k=2, init=init)
    with pytest.raises(ValueError, match="choose one of lanczos, power"):
        hs.top_eigenvalues(net, data, loss_fn=loss_fn, method="arnoldi")
    X, y = data
    net.train()
    with pytest.raises(ValueError, match="loss is nan.*diverge"):
        hs.top_eigenvalues(net, (X * math.nan, y), loss_fn=loss_fn)
    assert net.training
    for bad in (dict(tol=math.inf), dict(tol=math.nan), dict(tol=0.0), dict(tol=True), dict(max_iter=0)):
        with pytest.raises(ValueError, match="max_iter|tol"):
            hs.top_eigenvalues(net, data, loss_fn=loss_fn, **bad)


def test_hutchinson_is_the_mean_of_rademacher_quadratic_forms():
    """Exact check of the estimator: same Rademacher draws as the implementation, exact Hessian."""
    net, loss_fn, data = _problem(2)
    H = exact_hessian(net, data, loss_fn=loss_fn)
    n = 50
    got = hs.hessian_trace(net, data, loss_fn=loss_fn, n_samples=n, generator=torch.Generator().manual_seed(7), batch=n)
    V = torch.randint(0, 2, (n, H.shape[0]), generator=torch.Generator().manual_seed(7)).double() * 2 - 1
    want = torch.einsum("np,pq,nq->n", V, H, V).mean().item()
    assert got == pytest.approx(want, rel=1e-10)


def test_hutchinson_trace_is_unbiased():
    net, loss_fn, data = _problem(4)
    H = exact_hessian(net, data, loss_fn=loss_fn)
    n = 4000
    got = hs.hessian_trace(net, data, loss_fn=loss_fn, n_samples=n, generator=torch.Generator().manual_seed(1), batch=500)
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
    H = exact_hessian(net, data, loss_fn=loss_fn)
    ev = torch.linalg.eigvalsh(H).numpy()
    P = len(ev)
    out = hs.eigen_density(net, data, loss_fn=loss_fn, n_iter=P, n_runs=3, generator=torch.Generator().manual_seed(0))
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


def test_calling_convention_model_data_then_keywords():
    """``f(model, data, *, loss_fn=F.cross_entropy, ...)``: cross-entropy by default, the loss only by keyword."""
    net, _, data = _problem(1)
    gen = lambda: torch.Generator().manual_seed(0)
    default, _ = hs.top_eigenvalues(net, data, k=1, max_iter=500, tol=1e-10, generator=gen())
    explicit, _ = hs.top_eigenvalues(net, data, loss_fn=F.cross_entropy, k=1, max_iter=500, tol=1e-10,
                                     generator=gen())
    assert default == explicit
    torch.testing.assert_close(hs.exact_hessian(net, data), hs.exact_hessian(net, data, loss_fn=F.cross_entropy))
    for fn in (hs.top_eigenvalues, hs.hessian_trace, hs.eigen_density, hs.exact_hessian):
        with pytest.raises(TypeError):
            fn(net, F.cross_entropy, data)                   # the old order (model, loss_fn, data) is refused


def test_extrapolated_errors_follow_a_geometric_sequence():
    """Aitken's estimate is exact for geometric convergence, and absent while the values do not converge."""
    limit, ratio = [3.0, -2.0], [0.4, 0.6]
    history = [[lim + (0.5 if lim > 0 else -0.5) * r ** t for lim, r in zip(limit, ratio)] for t in range(3)]
    want = [abs(h - lim) for h, lim in zip(history[-1], limit)]
    assert hs.krylov._extrapolated_errors(history) == pytest.approx(want, rel=1e-9)
    assert hs.krylov._extrapolated_errors(history[1:]) is None                       # two values: no estimate
    assert hs.krylov._extrapolated_errors([[1.0, 2.0], [1.1, 2.1], [1.3, 2.11]]) is None   # steps grew


class _Diagonal:
    """A symmetric operator diag(d) with the interface of HessianOperator, and a chosen "gradient"."""

    def __init__(self, d, gradient):
        self.d, self._g, self.size, self.dtype, self.device = d, gradient, len(d), d.dtype, d.device
        self.n_products = 0

    def __call__(self, v):
        self.n_products += 1
        return self.d * v

    def gradient(self):
        return self._g


def test_lanczos_starts_from_the_gradient():
    """Without warm start the first Krylov vector is gradient + random: a gradient on the top two eigenvectors (a
    close pair, 1.0 and 0.99, above a bulk up to 0.98) needs fewer products than one on the bulk, for the same
    random part, and both find the pair to 1e-6."""
    d = torch.cat([torch.tensor([1.0, 0.99]), torch.linspace(0.0, 0.98, 3000)]).double()
    aligned = torch.zeros_like(d)
    aligned[:2] = 1.0
    bulk = torch.zeros_like(d)
    bulk[2:] = 1.0
    products = {}
    for name, g in (("aligned", aligned), ("bulk", bulk)):
        A = _Diagonal(d, g)
        values, _ = hs.krylov.lanczos_top(A, 2, 200, 1e-8, None, torch.Generator().manual_seed(0))
        assert sorted(values, reverse=True) == pytest.approx([1.0, 0.99], abs=1e-6)
        products[name] = A.n_products
    assert products["aligned"] < products["bulk"], products
