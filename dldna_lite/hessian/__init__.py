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

from ..config import restore_modes, training_modes
from ..data import check_data, positive_int
from ..landscape.flat import flatten, split, trainable
from ..optim.base import Interval, check_number
from ..train import on_device_of
from . import krylov
from .krylov import lanczos

__all__ = ["hvp", "top_eigenvalues", "hessian_trace", "eigen_density", "lanczos", "density_on_grid",
           "HessianOperator", "exact_hessian"]


class HessianOperator:
    """The map :math:`v \\mapsto Hv` of ``loss_fn(model(X), y)`` at the current parameters, on flat vectors ``[P]``.

    The gradient graph is built once (``create_graph=True``) and every product reuses it, so a product costs one
    extra backward pass. Use as a context manager, or call :meth:`close` to restore the model's training mode.
    """

    def __init__(self, model: nn.Module, data, *, loss_fn: Callable = F.cross_entropy):
        X, y = on_device_of(model, check_data(data))
        self.model, self.params = model, [p for _, p in trainable(model)]
        if not self.params:
            raise ValueError("the model has no trainable parameters")
        self._modes = training_modes(model)
        model.eval()
        with torch.enable_grad():
            loss = loss_fn(model(X), y)
            if loss.dim() != 0:
                restore_modes(self._modes)
                raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
            if not torch.isfinite(loss):
                restore_modes(self._modes)
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

    def gradient(self) -> torch.Tensor:
        """The flat gradient ``[P]`` of the loss at these parameters (already computed for the products)."""
        return flatten([g.detach() for g in self._grads])

    def close(self) -> None:
        self._grads = None
        restore_modes(self._modes)

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


METHODS = ("lanczos", "power")


def top_eigenvalues(model: nn.Module, data, *, loss_fn: Callable = F.cross_entropy, k: int = 1, max_iter: int = 100,
                    tol: float = 1e-4, init: Sequence[Sequence[torch.Tensor]] | None = None,
                    generator: torch.Generator | None = None, method: str = "lanczos"
                    ) -> tuple[list[float], list[list[torch.Tensor]]]:
    """The ``k`` eigenpairs of largest magnitude of the Hessian, from at most ``k * max_iter`` Hessian-vector products.

    ``method="lanczos"`` (default, :func:`.krylov.lanczos_top`): Rayleigh-Ritz on the Krylov space
    :math:`\\operatorname{span}\\{v, Hv, H^2 v, \\dots\\}`, stopped when the error of every one of the ``k``
    eigenvalues, estimated from the residuals :math:`\\lVert H y - \\theta y \\rVert` or extrapolated from the
    last three Ritz values, is at most ``tol`` :math:`\\cdot |\\theta|`.
    ``method="power"`` (:func:`.krylov.power_top`): power iteration with deflation, stopped when the Rayleigh
    quotient changes by less than ``tol`` relative (PyHessian's test), at most ``max_iter`` products per
    eigenvector.
    ``init`` (``k`` vectors) warm-starts either, e.g. from the previous call during training. Returns
    ``(eigenvalues, eigenvectors)`` sorted by decreasing ``|λ|``; each eigenvector is a unit-norm list of tensors
    shaped like the trainable parameters.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    k, max_iter = positive_int("k", k), positive_int("max_iter", max_iter)     # bools refused: k=True is not 1
    if not (isinstance(tol, numbers.Real) and not isinstance(tol, bool) and 0 < tol < math.inf):
        raise ValueError(f"tol must be a finite number > 0, got {tol!r}")
    if init is not None and len(init) != k:
        raise ValueError(f"init must hold k={k} starting vectors, got {len(init)}")
    tol = float(tol)
    with HessianOperator(model, data, loss_fn=loss_fn) as H:
        if k > H.size:
            raise ValueError(f"k={k} exceeds the number of parameters {H.size}")
        starts = None if init is None else [flatten(v).to(device=H.device, dtype=H.dtype) for v in init]
        solve = krylov.lanczos_top if method == "lanczos" else krylov.power_top
        values, vectors = solve(H, k, max_iter, tol, starts, generator)
    order = sorted(range(k), key=lambda j: -abs(values[j]))
    return [values[j] for j in order], [split(vectors[j], H.params) for j in order]


def hessian_trace(model: nn.Module, data, *, loss_fn: Callable = F.cross_entropy, n_samples: int = 100,
                  generator: torch.Generator | None = None, batch: int = 32) -> float:
    """Hutchinson's estimate :math:`\\operatorname{tr} H \\approx \\frac1n \\sum_{i=1}^n v_i^\\top H v_i` with
    Rademacher :math:`v_i \\in \\{\\pm 1\\}^P` (unbiased; variance :math:`2\\sum_{i \\ne j} H_{ij}^2 / n`).

    Products are computed ``batch`` at a time (batched double backward): a positive int, as ``n_samples``."""
    n_samples, batch = positive_int("n_samples", n_samples), positive_int("batch", batch)
    total = torch.zeros((), dtype=torch.float64)
    with HessianOperator(model, data, loss_fn=loss_fn) as H:
        done, total = 0, total.to(H.device)
        while done < n_samples:
            b = min(batch, n_samples - done)
            V = (torch.randint(0, 2, (b, H.size), generator=generator).to(H.dtype) * 2 - 1).to(H.device)
            total += (V * H(V)).sum().double()         # summed in float64 on the device, read once at the end
            done += b
    return total.item() / n_samples


def density_on_grid(nodes, weights, grid, sigma: float) -> np.ndarray:
    """Smooth quadrature(s) into a density: :math:`\\phi(t) = \\frac1R\\sum_{r,j} w_{rj}\\,
    \\mathcal N(t; \\theta_{rj}, \\sigma^2)`; ``nodes``/``weights`` ``[R, m]`` (or ``[m]``), ``grid [G]``."""
    nodes = np.atleast_2d(np.asarray(nodes, dtype=float))
    weights = np.atleast_2d(np.asarray(weights, dtype=float))
    grid = np.asarray(grid, dtype=float)
    check_number("sigma", sigma, Interval(0.0, low_open=True), 0.01)
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
    n_iter, n_runs = positive_int("n_iter", n_iter), positive_int("n_runs", n_runs)
    grid_size = positive_int("grid_size", grid_size)
    if sigma is not None:
        check_number("sigma", sigma, Interval(0.0, low_open=True), 0.01)
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
    X, y = on_device_of(model, check_data(data))
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat0 = torch.cat([p.detach().flatten() for p in model.parameters()])

    def loss_of(flat):
        parts = torch.split(flat, [math.prod(s) for s in shapes])
        params = {n: t.view(s) for n, t, s in zip(names, parts, shapes)}
        return loss_fn(torch.func.functional_call(model, params, (X,)), y)

    modes = training_modes(model)
    model.eval()                                     # the package's convention: dropout off, running statistics
    try:
        return torch.autograd.functional.hessian(loss_of, flat0)
    finally:
        restore_modes(modes)
