"""Two-dimensional test functions and optimizer trajectories on them (for the interactive figures)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .lion import Lion
from .adaptive import Adam
from .sgd import SGD
from .sophia import Sophia


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
        X, Y = np.meshgrid(np.linspace(*self.xlim, n), np.linspace(*self.ylim, n))
        return X, Y, self.f(X, Y)


#: L (largest curvature) and mu (smallest) of the ill-conditioned quadratic f = (mu x^2 + L y^2) / 2.
QUADRATIC_L, QUADRATIC_MU = 10.0, 0.5

SURFACES = {
    "quadratic": Surface("quadratic", lambda x, y: 0.5 * (QUADRATIC_MU * x ** 2 + QUADRATIC_L * y ** 2),
                         (-4.0, 1.5), (-4.5, 4.5), (-2.0, 2.0), (0.0, 0.0)),
    "rosenbrock": Surface("rosenbrock", lambda x, y: (1 - x) ** 2 + 100 * (y - x ** 2) ** 2,
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
    if name not in SURFACES:
        raise ValueError(f"unknown surface {name!r}; choose one of {', '.join(SURFACES)}")
    return SURFACES[name]


def _optimizer(name: str, params, lr: float, momentum: float):
    """The 2D-demo optimizer: ``momentum`` is SGD's mu or the beta_1 of Adam, Lion and Sophia."""
    if name == "SGD":
        return SGD(params, lr=lr, momentum=momentum)
    if name == "Adam":
        return Adam(params, lr=lr, betas=(momentum, 0.999))
    if name == "Lion":
        return Lion(params, lr=lr, betas=(momentum, 0.99))
    if name == "Sophia":
        return Sophia(params, lr=lr, betas=(momentum, 0.0), rho=1.0, weight_decay=0.0, update_period=1)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(TRAJECTORY_OPTIMIZERS)}")


def trajectory(surface_name: str, optimizer: str, lr: float, momentum: float = 0.0, steps: int = 200,
               start: tuple[float, float] | None = None, blowup: float = 1e6) -> tuple[np.ndarray, int | None]:
    """Run ``optimizer`` on a surface from its start point (float64).

    Returns ``(path [k+1, 2], diverged_at)``: the points visited and the (1-based) step at which the point left
    ``|x| < blowup`` or became non-finite (``None`` if it never did; the path stops there).
    Sophia (rho = 1, beta_2 = 0, no weight decay) uses the exact Hessian diagonal of the current point.
    """
    s = surface(surface_name)
    xy = torch.tensor(start or s.start, dtype=torch.float64, requires_grad=True)
    estimator = (lambda: [_hessian_diagonal(s.f, xy)]) if optimizer == "Sophia" else None
    opt = _optimizer(optimizer, [xy], lr, momentum)
    if estimator is not None:
        opt.estimator = estimator
    path = [xy.detach().numpy().copy()]
    for k in range(1, steps + 1):
        opt.zero_grad()
        s.f(xy[0], xy[1]).backward()
        opt.step()
        point = xy.detach().numpy().copy()
        if not np.isfinite(point).all() or np.abs(point).max() > blowup:
            return np.array(path), k
        path.append(point)
    return np.array(path), None


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
