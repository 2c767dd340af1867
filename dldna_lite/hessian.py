"""Curvature of the loss: Hessian-vector products, top eigenvalues, trace and spectral density.

The Hessian :math:`H = \\nabla^2_\\theta L(\\theta)` of a network with :math:`P` parameters has :math:`P^2` entries
(6.3 billion for the 79,510-parameter MLP of the book), so nothing here forms it. Everything is built on the
Hessian-vector product (Pearlmutter's trick, double backpropagation)

.. math:: Hv = \\nabla_\\theta \\big( \\nabla_\\theta L(\\theta)^\\top v \\big),

which costs about two backward passes. As in PyHessian (Yao et al. 2020), three quantities follow:

* :func:`top_eigenvalues` -- Lanczos: Rayleigh-Ritz on the Krylov space :math:`\\{v, Hv, H^2 v, \\dots\\}`
  (PyHessian uses power iteration with deflation, :math:`v \\leftarrow Hv/\\lVert Hv \\rVert`, still available
  as ``method="power"``; Lanczos needs far fewer products when eigenvalues are close);
* :func:`hessian_trace` -- Hutchinson's estimator :math:`\\operatorname{tr} H = \\mathbb E_v[v^\\top H v]` with
  Rademacher :math:`v`;
* :func:`eigen_density` -- stochastic Lanczos quadrature (SLQ): :math:`m` Lanczos steps from a random unit vector
  give a tridiagonal :math:`T_m` whose eigenvalues (nodes) and squared first eigenvector components (weights) form
  a Gauss quadrature of the spectral density.

Conventions: ``data = (X, y)`` is evaluated as one full batch with the model in eval mode (dropout off; training
mode is restored afterwards); every function reads ``f(model, data, ..., *, loss_fn=F.cross_entropy, ...)`` and
``loss_fn(outputs, targets)`` returns a scalar; a "vector" is a list of tensors shaped like the trainable parameters
(flattened by :mod:`dldna_lite.landscape.flat`). Parameters are never modified. Used by chapters 03 and 05.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .landscape.flat import flatten, split, trainable
from .train import on_device_of

__all__ = ["hvp", "top_eigenvalues", "hessian_trace", "eigen_density", "lanczos", "density_on_grid",
           "HessianOperator", "exact_hessian"]


class HessianOperator:
    """The map :math:`v \\mapsto Hv` of ``loss_fn(model(X), y)`` at the current parameters, on flat vectors ``[P]``.

    The gradient graph is built once (``create_graph=True``) and every product reuses it, so a product costs one
    extra backward pass. Use as a context manager, or call :meth:`close` to restore the model's training mode.
    """

    def __init__(self, model: nn.Module, data, *, loss_fn: Callable = F.cross_entropy):
        X, y = on_device_of(model, data)
        self.model, self.params = model, [p for _, p in trainable(model)]
        if not self.params:
            raise ValueError("the model has no trainable parameters")
        self._was_training = model.training
        model.eval()
        with torch.enable_grad():
            loss = loss_fn(model(X), y)
            if loss.dim() != 0:
                model.train(self._was_training)
                raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
            if not torch.isfinite(loss):
                model.train(self._was_training)
                raise ValueError(f"the loss is {loss.item()} at these parameters: its Hessian is not defined "
                                 "(did training diverge?)")
            self.loss = loss.item()
            self._grads = torch.autograd.grad(loss, self.params, create_graph=True)
        self.size = sum(p.numel() for p in self.params)
        self.dtype, self.device = self.params[0].dtype, self.params[0].device
        self.n_products = 0

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for a flat vector ``v [P]`` (or a batch ``[B, P]``, one product per row)."""
        batched = v.dim() == 2
        outputs = split(v, self.params) if not batched else [t.reshape(len(v), *p.shape) for t, p in
                                                              zip(torch.split(v, [p.numel() for p in self.params], 1),
                                                                  self.params)]
        with torch.enable_grad():
            hv = torch.autograd.grad(self._grads, self.params, grad_outputs=outputs, retain_graph=True,
                                     allow_unused=True, is_grads_batched=batched)
        hv = [torch.zeros_like(o) if h is None else h for h, o in zip(hv, outputs)]
        self.n_products += len(v) if batched else 1
        if batched:
            return torch.cat([h.reshape(len(v), -1) for h in hv], 1).detach()
        return flatten(hv).detach()

    def close(self) -> None:
        self._grads = None
        self.model.train(self._was_training)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def hvp(model: nn.Module, data, vectors: Sequence[torch.Tensor], *, loss_fn: Callable = F.cross_entropy
        ) -> list[torch.Tensor]:
    """The Hessian-vector product :math:`Hv` as a list of tensors shaped like the trainable parameters."""
    with HessianOperator(model, data, loss_fn=loss_fn) as H:
        if len(vectors) != len(H.params):
            raise ValueError(f"vectors has {len(vectors)} tensors but the model has {len(H.params)} trainable ones")
        return split(H(flatten([v.to(H.dtype) for v in vectors])), H.params)


def _random_unit(size: int, generator, dtype, device) -> torch.Tensor:
    v = torch.randn(size, generator=generator, dtype=dtype).to(device)
    return v / v.norm()


METHODS = ("lanczos", "power")


def top_eigenvalues(model: nn.Module, data, *, loss_fn: Callable = F.cross_entropy, k: int = 1, max_iter: int = 100,
                    tol: float = 1e-4, init: Sequence[Sequence[torch.Tensor]] | None = None,
                    generator: torch.Generator | None = None, method: str = "lanczos"
                    ) -> tuple[list[float], list[list[torch.Tensor]]]:
    """The ``k`` eigenpairs of largest magnitude of the Hessian, from at most ``k * max_iter`` Hessian-vector products.

    ``method="lanczos"`` (default, :func:`_lanczos_top`): Rayleigh-Ritz on the Krylov space
    :math:`\\operatorname{span}\\{v, Hv, H^2 v, \\dots\\}`, stopped when the error of every one of the ``k``
    eigenvalues, estimated from the residuals :math:`\\lVert H y - \\theta y \\rVert`, is at most ``tol``
    :math:`\\cdot |\\theta|`.
    ``method="power"`` (:func:`_power_top`): power iteration with deflation, stopped when the Rayleigh quotient
    changes by less than ``tol`` relative (PyHessian's test), at most ``max_iter`` products per eigenvector.
    ``init`` (``k`` vectors) warm-starts either, e.g. from the previous call during training. Returns
    ``(eigenvalues, eigenvectors)`` sorted by decreasing ``|λ|``; each eigenvector is a unit-norm list of tensors
    shaped like the trainable parameters.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if not (isinstance(max_iter, numbers.Integral) and max_iter >= 1 and isinstance(tol, numbers.Real)
            and 0 < tol < math.inf):
        raise ValueError(f"max_iter must be an int >= 1 and tol a finite number > 0, got {max_iter!r}, {tol!r}")
    if init is not None and len(init) != k:
        raise ValueError(f"init must hold k={k} starting vectors, got {len(init)}")
    k, max_iter, tol = int(k), int(max_iter), float(tol)
    with HessianOperator(model, data, loss_fn=loss_fn) as H:
        if k > H.size:
            raise ValueError(f"k={k} exceeds the number of parameters {H.size}")
        starts = None if init is None else [flatten(v).to(device=H.device, dtype=H.dtype) for v in init]
        solve = _lanczos_top if method == "lanczos" else _power_top
        values, vectors = solve(H, k, max_iter, tol, starts, generator)
    order = sorted(range(k), key=lambda j: -abs(values[j]))
    return [values[j] for j in order], [split(vectors[j], H.params) for j in order]


def _lanczos_top(H: HessianOperator, k: int, max_iter: int, tol: float, starts: list[torch.Tensor] | None,
                 generator: torch.Generator | None, max_basis: int = 64, memory: int = 2 ** 28
                 ) -> tuple[list[float], list[torch.Tensor]]:
    """Lanczos with full reorthogonalisation and Krylov-Schur restarts, for the ``k`` eigenpairs of largest
    magnitude, one Hessian-vector product per step.

    Invariant after each step: :math:`H Q^\\top = Q^\\top T + f e_m^\\top` with orthonormal rows :math:`Q`
    ``[m, P]``, symmetric :math:`T` ``[m, m]`` and a remainder :math:`f \\perp Q`. A step appends :math:`q =
    f/\\lVert f \\rVert`, computes :math:`w = Hq`, the new column :math:`Q w` of :math:`T` and the new remainder
    :math:`f = w - Q^\\top (Q w)` (orthogonalised again when that cancelled much): from one start vector, Lanczos
    with full reorthogonalisation. With :math:`T = S \\Theta S^\\top`, the Ritz pairs :math:`(\\theta_i, y_i =
    Q^\\top s_i)` have residuals :math:`r_i = H y_i - \\theta_i y_i = f\\, S_{mi}`, so their norms cost nothing.

    Stopping test: for each of the ``k`` pairs, the eigenvalue error estimate :math:`e_i = \\lVert r_i
    \\rVert^2 / \\delta_i` when the gap :math:`\\delta_i = \\min_{j \\ne i} (|\\theta_i - \\theta_j| - \\lVert
    r_j \\rVert)` to the other Ritz values exceeds :math:`\\lVert r_i \\rVert`, else :math:`e_i = \\lVert r_i
    \\rVert` (the two classical bounds for symmetric matrices), is at most ``tol`` :math:`\\cdot |\\theta_i|`;
    and the next Ritz value at either end of the spectrum, moved outwards by its residual, stays below the k-th
    :math:`|\\theta|` (so that an eigenvalue the Krylov space has not resolved yet is not skipped).

    At ``max_basis`` vectors (fewer if they would exceed ``memory`` bytes) :math:`Q` is replaced by its
    ``max_basis // 2`` Ritz vectors of largest :math:`|\\theta|` and :math:`T` by their :math:`\\Theta`
    (a Krylov-Schur restart: the next step's column couples them to :math:`f`). ``starts`` (warm start) are
    summed into the first vector. Vectors stay on the model's device and dtype; the small eigenproblems are
    float64 on the CPU.
    """
    P, budget = H.size, k * max_iter
    itemsize = torch.finfo(H.dtype).bits // 8
    cap = min(P, max(2 * k + 2, min(max_basis, memory // (P * itemsize))))
    Q = torch.empty(cap, P, dtype=H.dtype, device=H.device)             # rows 0..m-1: the basis
    T = torch.zeros(cap, cap, dtype=torch.float64)

    def random_vector():
        return torch.randn(P, generator=generator, dtype=H.dtype).to(H.device)

    f = (sum(v / v.norm() for v in starts) if starts is not None else random_vector())
    f_norm, m, products = f.norm(), 0, 0
    theta = S = None
    values, top = [], []
    while products < budget and m < P:
        if not (torch.isfinite(f_norm) and f_norm > 1e-10 * max(1.0, abs(values[0]) if values else 1.0)):
            f, _, f_norm = _orthogonalize(Q, random_vector(), m)   # invariant subspace (or nothing yet): leave it
        if m == cap:                                            # Krylov-Schur restart on the largest |θ|
            m = _restart(Q, T, theta, S, max(k, cap // 2))
        Q[m] = f / f_norm
        w = H(Q[m])
        products += 1
        f, coef, f_norm = _orthogonalize(Q, w, m + 1)
        col = coef.double().cpu()
        T[:m + 1, m], T[m, :m + 1] = col, col
        m += 1
        theta, S = torch.linalg.eigh(T[:m, :m])
        res = f_norm.item() * S[m - 1].abs()                   # ||H y_j - θ_j y_j|| for every Ritz pair
        top = theta.abs().argsort(descending=True)[:k].tolist()
        values = theta[top].tolist()
        if len(top) == k and _ritz_converged(theta, res, top, tol):
            break
    Y = S[:, top].to(device=H.device, dtype=H.dtype).T @ Q[:m]
    return values, [v / v.norm() for v in Y]


def _orthogonalize(Q: torch.Tensor, v: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``v`` minus its projection on the rows ``Q[:m]`` (classical Gram-Schmidt, repeated when it cancelled much),
    the total projection coefficients, and the norm of what is left."""
    coef = torch.zeros(m, dtype=v.dtype, device=v.device)
    norm = v.norm()
    for _ in range(2):
        c = Q[:m] @ v
        v, coef = v - Q[:m].T @ c, coef + c
        before, norm = norm, v.norm()
        if not norm < 0.7 * before:
            break
    return v, coef, norm


def _restart(Q: torch.Tensor, T: torch.Tensor, theta: torch.Tensor, S: torch.Tensor, n_keep: int) -> int:
    """Krylov-Schur restart in place: the rows of ``Q`` become the ``n_keep`` Ritz vectors of largest
    :math:`|\\theta|` and ``T`` their diagonal :math:`\\Theta`; returns the new basis size."""
    keep = theta.abs().argsort(descending=True)[:n_keep]
    m = len(S)
    Q[:len(keep)] = S[:, keep].to(device=Q.device, dtype=Q.dtype).T @ Q[:m]
    T.zero_()
    T[:len(keep), :len(keep)] = torch.diag(theta[keep])
    return len(keep)


def _ritz_converged(theta: torch.Tensor, res: torch.Tensor, top: list[int], tol: float) -> bool:
    """The stopping test of :func:`_lanczos_top` for the Ritz values ``theta [m]`` with residual norms ``res [m]``
    and the indices ``top`` of the ``k`` largest :math:`|\\theta|`."""
    m, k = len(theta), len(top)
    converged = True
    for i in top:
        others = [j for j in range(m) if j != i]
        gap = min(((theta[i] - theta[j]).abs() - res[j]).item() for j in others) if others else 0.0
        error = res[i].item() ** 2 / gap if gap > res[i] else res[i].item()
        converged &= error <= tol * abs(theta[i].item())
    # the next Ritz value at either end must not be able to overtake the k-th, even moved by its residual
    n_pos = sum(1 for i in top if theta[i] >= 0)
    smallest = min(abs(theta[i].item()) for i in top)
    for j in (m - 1 - n_pos, k - n_pos):
        if 0 <= j < m and j not in top:
            converged &= (theta[j].abs() + res[j]).item() <= smallest
    return converged


def _power_top(H: HessianOperator, k: int, max_iter: int, tol: float, starts: list[torch.Tensor] | None,
               generator: torch.Generator | None) -> tuple[list[float], list[torch.Tensor]]:
    """Power iteration with deflation (as PyHessian): :math:`v \\leftarrow Hv/\\lVert Hv \\rVert`, kept
    orthogonal to the eigenvectors already found, until the Rayleigh quotient :math:`v^\\top H v` changes by less
    than ``tol`` relative (or ``max_iter`` products), one eigenvector after the other."""
    values, vectors = [], []
    for i in range(k):
        v = (starts[i].clone() if starts is not None
             else torch.randn(H.size, generator=generator, dtype=H.dtype).to(H.device))
        eig = None
        for _ in range(max_iter):
            for u in vectors:                       # deflation: stay orthogonal to the pairs found
                v = v - (u @ v) * u
            v = v / v.norm().clamp_min(1e-30)
            hv = H(v)
            new = (v @ hv).item()
            converged = eig is not None and abs(new - eig) <= tol * (abs(eig) + 1e-12)
            eig, v = new, hv
            if converged:
                break
        for u in vectors:
            v = v - (u @ v) * u
        v = v / v.norm().clamp_min(1e-30)
        values.append(eig)
        vectors.append(v)
    return values, vectors


def hessian_trace(model: nn.Module, data, *, loss_fn: Callable = F.cross_entropy, n_samples: int = 100,
                  generator: torch.Generator | None = None, batch: int = 32) -> float:
    """Hutchinson's estimate :math:`\\operatorname{tr} H \\approx \\frac1n \\sum_{i=1}^n v_i^\\top H v_i` with
    Rademacher :math:`v_i \\in \\{\\pm 1\\}^P` (unbiased; variance :math:`2\\sum_{i \\ne j} H_{ij}^2 / n`).

    Products are computed ``batch`` at a time (batched double backward)."""
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
    total = 0.0
    with HessianOperator(model, data, loss_fn=loss_fn) as H:
        done = 0
        while done < n_samples:
            b = min(batch, n_samples - done)
            V = (torch.randint(0, 2, (b, H.size), generator=generator).to(H.dtype) * 2 - 1).to(H.device)
            total += (V * H(V)).sum().item()
            done += b
    return total / n_samples


def lanczos(matvec: Callable[[torch.Tensor], torch.Tensor], v0: torch.Tensor, n_iter: int
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_iter`` Lanczos steps with full reorthogonalisation from ``v0 [P]`` for a symmetric operator.

    Returns the Gauss quadrature ``(nodes [m], weights [m])`` of the spectral measure of ``v0``: the eigenvalues of
    the tridiagonal :math:`T_m` and the squared first components of its eigenvectors (they sum to 1), so that
    :math:`\\sum_j w_j f(\\theta_j) \\approx \\hat v_0^\\top f(H) \\hat v_0`, exactly for polynomials of degree
    :math:`< 2m`. Stops early (``m < n_iter``) when the Krylov space is exhausted.
    """
    v = v0 / v0.norm()
    basis, alphas, betas = [v], [], []
    for j in range(n_iter):
        w = matvec(v)
        alpha = (w @ v).item()
        alphas.append(alpha)
        Q = torch.stack(basis)
        w = w - Q.T @ (Q @ w)                 # full reorthogonalisation (twice is enough)
        w = w - Q.T @ (Q @ w)
        beta = w.norm().item()
        if j == n_iter - 1 or beta <= 1e-10 * max(1.0, abs(alpha)):
            break
        betas.append(beta)
        v = w / beta
        basis.append(v)
    m = len(alphas)
    T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if m > 1:
        off = torch.tensor(betas[:m - 1], dtype=torch.float64)
        T += torch.diag(off, 1) + torch.diag(off, -1)
    nodes, vecs = torch.linalg.eigh(T)
    return nodes, vecs[0] ** 2


def density_on_grid(nodes, weights, grid, sigma: float) -> np.ndarray:
    """Smooth quadrature(s) into a density: :math:`\\phi(t) = \\frac1R\\sum_{r,j} w_{rj}\\,
    \\mathcal N(t; \\theta_{rj}, \\sigma^2)`; ``nodes``/``weights`` ``[R, m]`` (or ``[m]``), ``grid [G]``."""
    nodes = np.atleast_2d(np.asarray(nodes, dtype=float))
    weights = np.atleast_2d(np.asarray(weights, dtype=float))
    grid = np.asarray(grid, dtype=float)
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    kernel = np.exp(-0.5 * ((grid[:, None, None] - nodes[None]) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    return (kernel * weights[None]).sum(axis=(1, 2)) / len(nodes)


def eigen_density(model: nn.Module, data, *, loss_fn: Callable = F.cross_entropy, n_iter: int = 100,
                  n_runs: int = 1, generator: torch.Generator | None = None, grid_size: int = 1000,
                  sigma: float | None = None) -> dict:
    """The Hessian's spectral density by stochastic Lanczos quadrature (``n_runs`` random starts, ``n_iter`` steps).

    Returns ``dict(nodes [R, m], weights [R, m], grid [G], density [G], sigma)`` (numpy): the Ritz values and
    their weights per run, and their Gaussian-smoothed average on a grid spanning the nodes (``sigma`` defaults to
    1% of the spread). ``density`` integrates to ~1. Unlike PyHessian 0.1's ``density()`` (which calls the removed
    ``torch.eig``), the tridiagonal matrix is diagonalised with ``torch.linalg.eigh``.
    """
    if n_iter < 1 or n_runs < 1:
        raise ValueError(f"n_iter and n_runs must be >= 1, got {n_iter!r}, {n_runs!r}")
    runs = []
    with HessianOperator(model, data, loss_fn=loss_fn) as H:
        m = min(n_iter, H.size)
        for _ in range(n_runs):
            v0 = (torch.randint(0, 2, (H.size,), generator=generator).to(H.dtype) * 2 - 1).to(H.device)
            runs.append(lanczos(H, v0, m))
    width = max(len(n) for n, _ in runs)
    nodes = np.zeros((n_runs, width))
    weights = np.zeros((n_runs, width))
    for r, (n, w) in enumerate(runs):             # runs that stopped early are padded with zero weight
        nodes[r, :len(n)], weights[r, :len(w)] = n.numpy(), w.numpy()
        nodes[r, len(n):] = n[-1].item()
    lo, hi = nodes.min(), nodes.max()
    spread = max(hi - lo, 1e-12)
    sigma = 0.01 * spread if sigma is None else sigma
    grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, grid_size)
    return dict(nodes=nodes, weights=weights, grid=grid, density=density_on_grid(nodes, weights, grid, sigma),
                sigma=sigma)


def exact_hessian(model: nn.Module, data, *, loss_fn: Callable = F.cross_entropy) -> torch.Tensor:
    """The full Hessian ``[P, P]`` of ``loss_fn(model(X), y)`` w.r.t. all parameters (flattened, in order).

    The dense reference for tiny networks (P of a few hundred at most), built by
    ``torch.autograd.functional.hessian`` independently of the Hessian-vector products above; tests and exercise
    checkers compare the matrix-free estimates with it.
    """
    X, y = on_device_of(model, data)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat0 = torch.cat([p.detach().flatten() for p in model.parameters()])

    def loss_of(flat):
        parts = torch.split(flat, [math.prod(s) for s in shapes])
        params = {n: t.view(s) for n, t, s in zip(names, parts, shapes)}
        return loss_fn(torch.func.functional_call(model, params, (X,)), y)

    return torch.autograd.functional.hessian(loss_of, flat0)
