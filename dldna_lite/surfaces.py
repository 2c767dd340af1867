"""Two-dimensional toy surfaces and optimizer paths on them (chapters "Optimizers" and "Loss landscapes II", and the
optimizer exercises).

* :data:`SURFACES` -- four classic test functions (an ill-conditioned quadratic, Rosenbrock, a saddle, Beale), each
  a :class:`Surface` with a start point and a plotting window; :func:`quadratic_theory` gives the closed-form facts.
* :class:`GaussianSurface` -- an offset minus a sum of Gaussian wells, the toy *Deep Learning DNA* fits to a scanned
  loss surface; :func:`fit_gaussian_surface` fits one with SciPy.
* :func:`optimizer_path` -- the one loop that walks any ``torch.optim``-style optimizer on a function of ``(x, y)``
  (float64); :func:`trajectory` runs one of this book's optimizers on a named surface with it.

Every path is ``(points [k + 1, 2], diverged_at)``: ``diverged_at`` is the 1-based step at which the point became
non-finite or left ``|x|, |y| < blowup`` (the path stops before it), ``None`` when it never did.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from . import optim
from .data import positive_int


@dataclass(frozen=True)
class Surface:
    """A function of two variables, a start point, a plotting window and the minimiser (if any)."""

    name: str
    f: Callable  # works on torch tensors and numpy arrays: f(x, y)
    start: tuple[float, float]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    minimum: tuple[float, float] | None

    def grid(self, n: int = 120) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(X, Y, Z)`` on an ``n x n`` grid over the window, for contour plots."""
        if positive_int("n", n) < 2:
            raise ValueError(f"invalid n: {n!r} (a grid needs at least 2 points per side, e.g. n=120)")
        X, Y = np.meshgrid(np.linspace(*self.xlim, n), np.linspace(*self.ylim, n))
        return X, Y, self.f(X, Y)


def rosenbrock(x, y):
    """f(x, y) = (1 − x)² + 100 (y − x²)², minimum 0 at (1, 1); torch tensors or numpy arrays."""
    return (1 - x) ** 2 + 100 * (y - x ** 2) ** 2


#: L (largest curvature) and mu (smallest) of the ill-conditioned quadratic f = (mu x^2 + L y^2) / 2.
QUADRATIC_L, QUADRATIC_MU = 10.0, 0.5

SURFACES = {
    "quadratic": Surface("quadratic", lambda x, y: 0.5 * (QUADRATIC_MU * x ** 2 + QUADRATIC_L * y ** 2),
                         (-4.0, 1.5), (-4.5, 4.5), (-2.0, 2.0), (0.0, 0.0)),
    "rosenbrock": Surface("rosenbrock", rosenbrock,
                          (-1.5, 2.0), (-2.0, 2.0), (-1.0, 3.0), (1.0, 1.0)),
    "saddle": Surface("saddle", lambda x, y: x ** 2 - y ** 2 + 0.5 * y ** 4,
                      (1.5, 1e-3), (-2.0, 2.0), (-1.8, 1.8), (0.0, 1.0)),
    "beale": Surface("beale", lambda x, y: (1.5 - x + x * y) ** 2 + (2.25 - x + x * y ** 2) ** 2
                     + (2.625 - x + x * y ** 3) ** 2, (1.0, 1.5), (-1.0, 4.5), (-1.5, 2.5), (3.0, 0.5)),
}

TRAJECTORY_OPTIMIZERS = ("SGD", "Adam", "Lion", "Sophia")

#: Base learning rate per surface and optimizer; the figures scale it by a slider value (x0.1 ... x2).
BASE_LR = {
    "quadratic": {"SGD": 0.1, "Adam": 0.1, "Lion": 0.1, "Sophia": 0.1},
    "rosenbrock": {"SGD": 1e-3, "Adam": 0.1, "Lion": 0.1, "Sophia": 0.1},
    "saddle": {"SGD": 0.01, "Adam": 0.01, "Lion": 0.01, "Sophia": 0.01},
    "beale": {"SGD": 3e-3, "Adam": 0.1, "Lion": 0.1, "Sophia": 0.1},
}


def surface(name: str) -> Surface:
    """The surface called ``name`` (one of :data:`SURFACES`); ``ValueError`` lists the valid names."""
    if name not in SURFACES:
        raise ValueError(f"unknown surface {name!r}; choose one of {', '.join(SURFACES)}")
    return SURFACES[name]


def optimizer_path(f: Callable, make_optimizer: Callable, start: Sequence[float], steps: int, *,
                   blowup: float = math.inf, zero_grad: bool = True) -> tuple[np.ndarray, int | None]:
    """Minimise ``f(x, y)`` from ``start`` for ``steps`` steps with ``make_optimizer([xy])`` (float64).

    Returns ``(path [k + 1, 2], diverged_at)`` as described in the module docstring. ``zero_grad=False`` lets the
    gradients accumulate (the classic bug; the optimizer exercise uses it to recognise that answer). ``steps`` is an
    int >= 0 (0: the start alone) and ``blowup`` a number > 0; anything else is a ``ValueError``.
    """
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"invalid steps: {steps!r} (expected an int >= 0, e.g. steps=200)")
    if not blowup > 0:                                  # NaN fails too
        raise ValueError(f"invalid blowup: {blowup!r} (expected a number > 0, e.g. blowup=1e6, or math.inf)")
    xy = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = make_optimizer([xy])
    path = [xy.detach().numpy().copy()]
    for k in range(1, steps + 1):
        if zero_grad:
            opt.zero_grad()
        f(xy[0], xy[1]).backward()
        opt.step()
        point = xy.detach().numpy().copy()
        if not np.isfinite(point).all() or np.abs(point).max() >= blowup:
            return np.array(path), k
        path.append(point)
    return np.array(path), None


def _demo_optimizer(name: str, params, lr: float, momentum: float, f: Callable):
    """The optimizers of the 2D figures: ``momentum`` is SGD's mu or the beta_1 of Adam, Lion and Sophia; Sophia
    (rho 1, beta_2 0, no weight decay) uses the exact Hessian diagonal of the current point."""
    if name not in TRAJECTORY_OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(TRAJECTORY_OPTIMIZERS)}")
    kwargs = {"SGD": dict(momentum=momentum), "Adam": dict(betas=(momentum, 0.999)),
              "Lion": dict(betas=(momentum, 0.99)),
              "Sophia": dict(betas=(momentum, 0.0), rho=1.0, weight_decay=0.0, update_period=1)}[name]
    opt = optim.build(name, params, lr, **kwargs)
    if name == "Sophia":
        opt.estimator = lambda: [_hessian_diagonal(f, params[0])]
    return opt


def trajectory(surface_name: str, optimizer: str, lr: float, momentum: float = 0.0, steps: int = 200,
               start: tuple[float, float] | None = None, blowup: float = 1e6) -> tuple[np.ndarray, int | None]:
    """Run one of :data:`TRAJECTORY_OPTIMIZERS` on a named surface from its start point: :func:`optimizer_path`."""
    s = surface(surface_name)
    return optimizer_path(s.f, lambda params: _demo_optimizer(optimizer, params, lr, momentum, s.f),
                          start or s.start, steps, blowup=blowup)


def _hessian_diagonal(f, xy):
    """``[d2f/dx2, d2f/dy2]``: both Hessian rows in one batched double backward, keep the diagonal."""
    v = xy.detach().requires_grad_()
    (g,) = torch.autograd.grad(f(v[0], v[1]), v, create_graph=True)
    (H,) = torch.autograd.grad(g, v, grad_outputs=torch.eye(2, dtype=v.dtype), is_grads_batched=True)
    return torch.diagonal(H).clone()


def quadratic_theory(L: float = QUADRATIC_L, mu: float = QUADRATIC_MU) -> dict:
    r"""Closed-form facts for $f = \tfrac12(\mu x^2 + L y^2)$.

    GD is stable iff $\eta < 2/L$; its best rate $(\kappa-1)/(\kappa+1)$ at $\eta = 2/(L+\mu)$. Heavy ball with
    $\eta = 4/(\sqrt L + \sqrt\mu)^2$, $\beta = ((\sqrt\kappa-1)/(\sqrt\kappa+1))^2$ contracts at rate
    $(\sqrt\kappa-1)/(\sqrt\kappa+1)$ per step ($\kappa = L/\mu$).
    """
    kappa = L / mu
    sk = math.sqrt(kappa)
    return dict(L=L, mu=mu, kappa=kappa, lr_max=2 / L, gd_lr=2 / (L + mu), gd_rate=(kappa - 1) / (kappa + 1),
                hb_lr=4 / (math.sqrt(L) + math.sqrt(mu)) ** 2, hb_momentum=((sk - 1) / (sk + 1)) ** 2,
                hb_rate=(sk - 1) / (sk + 1))


def steps_to_reach(path: np.ndarray, tol: float = 1e-6) -> int | None:
    """First step at which the distance to the origin is ``<= tol`` times the starting distance."""
    dist = np.linalg.norm(path, axis=1)
    hit = np.nonzero(dist <= tol * dist[0])[0]
    return int(hit[0]) if len(hit) else None


def escape_step(path: np.ndarray, threshold: float = 0.5) -> int | None:
    """First step at which ``|y| > threshold`` (the point has left the saddle's ridge ``y = 0``)."""
    hit = np.nonzero(np.abs(path[:, 1]) > threshold)[0]
    return int(hit[0]) if len(hit) else None


# ---------------------------------------------------------------------------------------------- Gaussian wells
class GaussianSurface:
    """``f(x, y) = offset - sum_k a_k exp(-(x - mx_k)^2 / (2 sx_k^2) - (y - my_k)^2 / (2 sy_k^2))``.

    ``params``: array ``[K, 5]`` of ``(a, mx, my, sx, sy)`` rows. Call with torch tensors ``x, y`` (any shape, same
    shape) for a differentiable value, or use :meth:`grid` for numpy arrays.
    """

    def __init__(self, params, offset: float):
        params = np.atleast_2d(np.asarray(params, dtype=np.float64))
        if params.shape[1] != 5:
            raise ValueError(f"params must have rows (a, mx, my, sx, sy), got shape {params.shape}")
        self.params, self.offset = params, float(offset)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = torch.as_tensor(self.params, dtype=x.dtype)
        a, mx, my, sx, sy = (p[:, i].reshape(-1, *[1] * x.dim()) for i in range(5))
        wells = a * torch.exp(-(x - mx) ** 2 / (2 * sx ** 2) - (y - my) ** 2 / (2 * sy ** 2))
        return self.offset - wells.sum(0)

    def grid(self, xs, ys) -> np.ndarray:
        """Values ``[len(ys), len(xs)]`` on a grid (row i is ``ys[i]``)."""
        Y, X = torch.meshgrid(torch.as_tensor(ys, dtype=torch.float64), torch.as_tensor(xs, dtype=torch.float64),
                              indexing="ij")
        return self(X, Y).numpy()


def _gaussians_flat(xy, offset, *flat):
    x, y = xy
    p = np.asarray(flat).reshape(-1, 5)
    z = np.full_like(x, offset)
    for a, mx, my, sx, sy in p:
        z -= a * np.exp(-(x - mx) ** 2 / (2 * sx ** 2) - (y - my) ** 2 / (2 * sy ** 2))
    return z


def fit_gaussian_surface(xs, ys, Z, n_wells: int = 1) -> tuple[GaussianSurface, float]:
    """Least-squares fit (``scipy.optimize.curve_fit``) of a :class:`GaussianSurface` with ``n_wells`` wells to
    ``Z [len(ys), len(xs)]``. Returns ``(surface, rmse)``.

    Starting guess: one well at each of the ``n_wells`` deepest local minima of the grid (depth ``max - min``,
    width a quarter of the window). Bounds keep amplitudes non-negative, widths between 1/1000 and twice the window
    and centres within one window of it, so that a bowl is not fitted as an infinitely wide, infinitely deep well.
    """
    from scipy.ndimage import minimum_filter
    from scipy.optimize import curve_fit

    xs, ys, Z = np.asarray(xs, float), np.asarray(ys, float), np.asarray(Z, float)
    if Z.shape != (len(ys), len(xs)):
        raise ValueError(f"Z must have shape (len(ys), len(xs)) = {(len(ys), len(xs))}, got {Z.shape}")
    if not isinstance(n_wells, int) or n_wells < 1:
        raise ValueError(f"n_wells must be a positive int, got {n_wells!r}")
    Y, X = np.meshgrid(ys, xs, indexing="ij")
    local = np.flatnonzero(Z == minimum_filter(Z, size=3, mode="nearest"))
    local = local[np.argsort(Z.flat[local])]
    order = np.concatenate([local, np.argsort(Z, axis=None)])
    depth, lx, ly = Z.max() - Z.min(), xs[-1] - xs[0], ys[-1] - ys[0]
    p0, lower, upper = [Z.max()], [-np.inf], [np.inf]
    for k in range(n_wells):
        i = order[k]
        p0 += [depth / n_wells, X.flat[i], Y.flat[i], lx / 4, ly / 4]
        lower += [0.0, xs[0] - lx, ys[0] - ly, 1e-3 * lx, 1e-3 * ly]
        upper += [np.inf, xs[-1] + lx, ys[-1] + ly, 2 * lx, 2 * ly]
    popt, _ = curve_fit(_gaussians_flat, (X.ravel(), Y.ravel()), Z.ravel(), p0=p0, bounds=(lower, upper),
                        maxfev=20000)
    fitted = GaussianSurface(np.asarray(popt[1:]).reshape(-1, 5), popt[0])
    rmse = float(np.sqrt(np.mean((fitted.grid(xs, ys) - Z) ** 2)))
    return fitted, rmse
