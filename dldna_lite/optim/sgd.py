"""Gradient descent with (Nesterov) momentum (chapter 02)."""
from __future__ import annotations

import torch

from .base import Optimizer, check_hyperparameters


class SGD(Optimizer):
    r"""Stochastic gradient descent, optionally with heavy-ball or Nesterov momentum.

    With weight decay $\lambda$ added to the gradient, $g_t \leftarrow g_t + \lambda\theta_t$:

    * plain: $\theta_{t+1} = \theta_t - \eta\,g_t$;
    * momentum: $v_t = \mu v_{t-1} + (1-\tau) g_t$ (with $v_1 = g_1$), $\theta_{t+1} = \theta_t - \eta v_t$;
    * Nesterov: step along $g_t + \mu v_t$ instead of $v_t$.

    Same arguments and numbers as ``torch.optim.SGD``. State: ``v`` (one tensor per parameter, if momentum).
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False):
        defaults = check_hyperparameters(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                         nesterov=nesterov, maximize=maximize)
        if nesterov and (defaults["momentum"] == 0 or defaults["dampening"] != 0):
            raise ValueError(f"invalid nesterov=True with momentum={momentum!r}, dampening={dampening!r}: Nesterov "
                             "momentum needs momentum > 0 and dampening=0 (e.g. momentum=0.9, dampening=0)")
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr, mu, tau, wd = group["lr"], group["momentum"], group["dampening"], group["weight_decay"]
            for p, g in self.params_with_grad(group):
                if wd:
                    g = g + wd * p
                if mu:
                    state = self.state[p]
                    if "v" not in state:
                        state["v"] = g.clone()
                    else:
                        state["v"].mul_(mu).add_(g, alpha=1 - tau)
                    g = g + mu * state["v"] if group["nesterov"] else state["v"]
                p.add_(g, alpha=-lr)
        return loss
