"""Matrix-free eigen-solvers for a symmetric operator ``A`` (in this book, the Hessian of :mod:`dldna_lite.hessian`).

``A`` is any callable ``A(v) -> Av`` on flat vectors ``[P]`` with attributes ``size`` (P), ``dtype`` and
``device`` (and, for the default start of :func:`lanczos_top`, a method ``gradient()``), as
:class:`dldna_lite.hessian.HessianOperator` is:

* :func:`lanczos_top` -- the ``k`` eigenpairs of largest magnitude by Lanczos with full reorthogonalisation and
  Krylov-Schur restarts;
* :func:`power_top` -- the same by power iteration with deflation, as PyHessian does it;
* :func:`lanczos` -- plain Lanczos steps from one vector, returning the Gauss quadrature of its spectral measure
  (the building block of stochastic Lanczos quadrature).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from ..data import positive_int

__all__ = ["lanczos_top", "power_top", "lanczos"]


def lanczos_top(H, k: int, max_iter: int, tol: float, starts: list[torch.Tensor] | None,
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
    \\rVert` (the two classical bounds for symmetric matrices), or else twice Aitken's extrapolation from the last
    three Ritz values (:func:`_extrapolated_errors`, once they converge geometrically), is at most ``tol``
    :math:`\\cdot |\\theta_i|`;
    and the next Ritz value at either end of the spectrum, moved outwards by its residual, stays below the k-th
    :math:`|\\theta|` (so that an eigenvalue the Krylov space has not resolved yet is not skipped).

    At ``max_basis`` vectors (fewer if they would exceed ``memory`` bytes) :math:`Q` is replaced by its
    ``max_basis // 2`` Ritz vectors of largest :math:`|\\theta|` and :math:`T` by their :math:`\\Theta`
    (a Krylov-Schur restart: the next step's column couples them to :math:`f`). ``starts`` (warm start) are
    summed into the first vector; without them it is the normalised gradient plus a normalised random vector (the
    gradient lies mostly in the top eigenspace, Gur-Ari et al. 2018; the random part reaches every other
    direction). Vectors stay on the model's device and dtype; the small eigenproblems are
    float64 on the CPU. Per step the host reads the device once (the new column of :math:`T` with
    :math:`\\lVert f \\rVert`, together) besides the re-orthogonalisation test; the stopping test then runs on
    host floats (it used to read :math:`O(k m)` scalars one by one).
    """
    P, budget = H.size, k * max_iter
    itemsize = torch.finfo(H.dtype).bits // 8
    cap = min(P, max(2 * k + 2, min(max_basis, memory // (P * itemsize))))
    Q = torch.empty(cap, P, dtype=H.dtype, device=H.device)             # rows 0..m-1: the basis
    T = torch.zeros(cap, cap, dtype=torch.float64)

    def random_vector():
        return torch.randn(P, generator=generator, dtype=H.dtype).to(H.device)

    if starts is None:                                          # the gradient lies mostly in the top eigenspace
        g, r = H.gradient(), random_vector()                    # (Gur-Ari et al. 2018); r keeps every direction
        starts = [g, r] if torch.isfinite(g).all() and g.norm() > 0 else [r]
    f = sum(v / v.norm() for v in starts)
    f_norm, m, products = f.norm(), 0, 0
    f_host = f_norm.item()                                      # ||f|| on the host: the one number the loop tests
    theta = S = None
    values, top, history = [], [], []
    while products < budget and m < P:
        if not (math.isfinite(f_host) and f_host > 1e-10 * max(1.0, abs(values[0]) if values else 1.0)):
            f, _, f_norm = _orthogonalize(Q, random_vector(), m)   # invariant subspace (or nothing yet): leave it
        if m == cap:                                            # Krylov-Schur restart on the largest |θ|
            m = _restart(Q, T, theta, S, max(k, cap // 2))
        Q[m] = f / f_norm
        w = H(Q[m])
        products += 1
        f, coef, f_norm = _orthogonalize(Q, w, m + 1)
        host = torch.cat([coef, f_norm.reshape(1)]).double().cpu()   # one read: the new column of T and ||f||
        col, f_host = host[:-1], host[-1].item()
        T[:m + 1, m], T[m, :m + 1] = col, col
        m += 1
        theta, S = torch.linalg.eigh(T[:m, :m])
        res = f_host * S[m - 1].abs()                           # ||H y_j - θ_j y_j|| for every Ritz pair
        top = theta.abs().argsort(descending=True)[:k].tolist()
        thetas = theta.tolist()
        values = [thetas[i] for i in top]
        history = (history + [values])[-3:] if len(top) == k else []
        if len(top) == k and _ritz_converged(thetas, res.tolist(), top, tol, _extrapolated_errors(history)):
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


def _extrapolated_errors(history: list[list[float]]) -> list[float] | None:
    """Aitken's estimate of the error left in each of the k top Ritz values from their last three values
    :math:`\\theta^{(t-2)}, \\theta^{(t-1)}, \\theta^{(t)}`: with steps :math:`d_1, d_2` shrinking geometrically
    (Lanczos converges linearly once an eigenvalue is resolved), the rest of the way is
    :math:`d_2^2 / (d_1 - d_2)`. ``None`` (no estimate) unless both steps shrink for every one of the k."""
    if len(history) < 3:
        return None
    errors = []
    for a, b, c in zip(*history):
        d1, d2 = abs(b - a), abs(c - b)
        if not d2 < 0.7 * d1:
            return None
        errors.append(d2 * d2 / (d1 - d2))
    return errors


def _ritz_converged(theta: list[float], res: list[float], top: list[int], tol: float,
                    extrapolated: list[float] | None = None) -> bool:
    """The stopping test of :func:`lanczos_top` for the Ritz values ``theta [m]`` with residual norms ``res [m]``
    (host floats, read from the device once per step), the indices ``top`` of the ``k`` largest
    :math:`|\\theta|` and the extrapolated errors of those k (in the order of ``top``) from
    :func:`_extrapolated_errors`."""
    m, k = len(theta), len(top)
    converged = True
    for n, i in enumerate(top):
        others = [j for j in range(m) if j != i]
        gap = min(abs(theta[i] - theta[j]) - res[j] for j in others) if others else 0.0
        error = res[i] ** 2 / gap if gap > res[i] else res[i]
        if extrapolated is not None:
            error = min(error, 2 * extrapolated[n])
        converged &= error <= tol * abs(theta[i])
    # the next Ritz value at either end must not be able to overtake the k-th, even moved by its residual
    n_pos = sum(1 for i in top if theta[i] >= 0)
    smallest = min(abs(theta[i]) for i in top)
    for j in (m - 1 - n_pos, k - n_pos):
        if 0 <= j < m and j not in top:
            converged &= abs(theta[j]) + res[j] <= smallest
    return converged


def power_top(H, k: int, max_iter: int, tol: float, starts: list[torch.Tensor] | None,
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


def lanczos(matvec: Callable[[torch.Tensor], torch.Tensor], v0: torch.Tensor, n_iter: int
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_iter`` Lanczos steps with full reorthogonalisation from ``v0 [P]`` for a symmetric operator.

    Returns the Gauss quadrature ``(nodes [m], weights [m])`` of the spectral measure of ``v0``: the eigenvalues of
    the tridiagonal :math:`T_m` and the squared first components of its eigenvectors (they sum to 1), so that
    :math:`\\sum_j w_j f(\\theta_j) \\approx \\hat v_0^\\top f(H) \\hat v_0`, exactly for polynomials of degree
    :math:`< 2m`. Stops early (``m < n_iter``) when the Krylov space is exhausted.
    """
    n_iter = positive_int("n_iter", n_iter)
    v = v0 / v0.norm()
    basis, alphas, betas = [v], [], []
    for j in range(n_iter):
        w = matvec(v)
        alpha = w @ v
        Q = torch.stack(basis)
        w = w - Q.T @ (Q @ w)                 # full reorthogonalisation (twice is enough)
        w = w - Q.T @ (Q @ w)
        alpha, beta = torch.stack([alpha, w.norm()]).tolist()     # one host read per step
        alphas.append(alpha)
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
