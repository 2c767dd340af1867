"""Adafactor (Shazeer & Stern 2018): factored second moments, relative step sizes (chapter 02)."""
from __future__ import annotations

import torch

from .base import Optimizer, check_hyperparameters


class Adafactor(Optimizer):
    r"""Adafactor as in ``torch.optim.Adafactor`` (no first moment).

    For a matrix gradient $G_t \in \mathbb R^{n\times m}$ keep only row and column means of $G_t^2$:
    $R_t = (1-\hat\beta_{2t}) R_{t-1} + \hat\beta_{2t}\,\text{mean}_{\text{cols}}(G_t^2)$ ($n$ numbers),
    $C_t$ likewise over rows ($m$ numbers), and use the rank-1 estimate $\hat V_t = R_t C_t / \text{mean}(R_t)$.
    Vectors keep a full $v_t$. With $\hat\beta_{2t} = t^{\text{beta2\_decay}}$ (= $t^{-0.8}$), the step is
    $U_t = G_t/\sqrt{\hat V_t}$ clipped to RMS $\le d$, scaled by $\alpha_t = \max(\epsilon_2, \text{RMS}(\theta))
    \cdot \min(\eta, 1/\sqrt t)$. State: ``R``, ``C`` (matrices) or ``v`` (vectors): $n + m$ instead of $nm$ numbers.
    """

    def __init__(self, params, lr: float = 1e-2, beta2_decay: float = -0.8, eps=(None, 1e-3), d: float = 1.0,
                 weight_decay: float = 0.0, *, maximize: bool = False):
        super().__init__(params, check_hyperparameters(lr=lr, beta2_decay=beta2_decay, eps_pair=eps, d=d,
                                                       weight_decay=weight_decay, maximize=maximize))

    @staticmethod
    def _init_state(state: dict, g: torch.Tensor) -> None:
        """A new parameter's state: factored row and column moments for a matrix, a full one otherwise."""
        state["step"] = 0
        if g.dim() > 1:
            state["R"] = g.new_zeros(g.shape[:-1] + (1,))
            state["C"] = g.new_zeros(g.shape[:-2] + (1, g.shape[-1]))
        else:
            state["v"] = torch.zeros_like(g)

    @torch.no_grad()
    def step(self, closure=None):
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr, (eps1, eps2) = group["lr"], group["eps"]
            for p, g in self.params_with_grad(group):
                state = self.state[p]
                eps1 = torch.finfo(p.dtype).eps if eps1 is None else eps1
                if not state:
                    self._init_state(state, g)
                state["step"] += 1
                t = state["step"]
                beta2_hat = t ** group["beta2_decay"]
                alpha = max(eps2, p.norm().item() / p.numel() ** 0.5) * min(lr, t ** -0.5)
                if group["weight_decay"]:
                    p.mul_(1 - lr * group["weight_decay"])
                if g.dim() > 1:
                    R, C = state["R"], state["C"]
                    R.lerp_((g * g).mean(dim=-1, keepdim=True), beta2_hat)
                    C.lerp_((g * g).mean(dim=-2, keepdim=True), beta2_hat)
                    v_hat = R @ C / R.mean(dim=-2, keepdim=True).clamp(min=eps1)
                else:
                    v_hat = state["v"].lerp_(g * g, beta2_hat).clone()
                u = g * v_hat.clamp_(min=eps1 ** 2).rsqrt_()
                u_rms = u.norm().item() / u.numel() ** 0.5
                p.add_(u, alpha=-alpha / max(1.0, u_rms / group["d"]))
        return loss
