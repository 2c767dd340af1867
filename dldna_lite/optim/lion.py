"""Lion (Chen et al. 2023): the sign of an interpolated momentum (chapter 02)."""
from __future__ import annotations

import torch

from .base import Optimizer, check_hyperparameters


class Lion(Optimizer):
    r"""Lion, "EvoLved Sign Momentum", found by program search (Chen et al. 2023).

    $c_t = \beta_1 m_{t-1} + (1-\beta_1) g_t$, $\theta_{t+1} = (1-\eta\lambda)\theta_t - \eta\,\text{sign}(c_t)$,
    $m_t = \beta_2 m_{t-1} + (1-\beta_2) g_t$.
    Every coordinate moves by exactly $\pm\eta$, so Lion wants a learning rate 3-10x smaller than AdamW and a
    weight decay 3-10x larger. Defaults as in ``lion-pytorch``. State: ``m`` (one tensor per parameter).
    """

    def __init__(self, params, lr: float = 1e-4, betas=(0.9, 0.99), weight_decay: float = 0.0, *,
                 maximize: bool = False):
        super().__init__(params, check_hyperparameters(lr=lr, betas=betas, weight_decay=weight_decay,
                                                       maximize=maximize))

    @torch.no_grad()
    def step(self, closure=None):
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
            for p, g in self.params_with_grad(group):
                m = self.state[p].setdefault("m", torch.zeros_like(p))
                c = m.mul(beta1).add_(g, alpha=1 - beta1)
                p.mul_(1 - lr * wd).add_(c.sign_(), alpha=-lr)
                m.mul_(beta2).add_(g, alpha=1 - beta2)
        return loss
