"""Per-coordinate step sizes: AdaGrad -> RMSprop -> Adam -> AdamW (chapter 02, shown there with ``dl.show_source``)."""
from __future__ import annotations

import math

import torch

from .base import Optimizer, check_hyperparameters


class Adagrad(Optimizer):
    r"""AdaGrad (Duchi et al. 2011): divide by the root of the *sum* of squared gradients.

    $G_t = G_{t-1} + g_t^2$, $\theta_{t+1} = \theta_t - \eta_t\, g_t / (\sqrt{G_t} + \epsilon)$ with
    $\eta_t = \eta / (1 + (t-1)\,\text{lr\_decay})$. Same arguments as ``torch.optim.Adagrad``. State: ``G``.
    """

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, *, maximize: bool = False):
        super().__init__(params, check_hyperparameters(
            lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps,
            initial_accumulator_value=initial_accumulator_value, maximize=maximize))

    @torch.no_grad()
    def step(self, closure=None):
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            for p, g in self.params_with_grad(group):
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["G"] = torch.full_like(p, group["initial_accumulator_value"])
                state["step"] += 1
                if group["weight_decay"]:
                    g = g + group["weight_decay"] * p
                lr_t = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
                state["G"].addcmul_(g, g)
                p.addcdiv_(g, state["G"].sqrt().add_(group["eps"]), value=-lr_t)
        return loss


class RMSprop(Optimizer):
    r"""RMSprop (Hinton 2012): AdaGrad with a *moving average* of squared gradients.

    $v_t = \alpha v_{t-1} + (1-\alpha) g_t^2$, $\theta_{t+1} = \theta_t - \eta\, g_t / (\sqrt{v_t} + \epsilon)$.
    ``centered`` divides by an estimate of the standard deviation, $\sqrt{v_t - \bar g_t^2}$; ``momentum`` keeps
    $b_t = \mu b_{t-1} + g_t/(\sqrt{v_t}+\epsilon)$ and steps $-\eta b_t$. Same arguments as ``torch.optim.RMSprop``.
    State: ``v`` (+ ``g_avg`` when centered, ``b`` with momentum).
    """

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.0, centered: bool = False, *, maximize: bool = False):
        super().__init__(params, check_hyperparameters(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                                       momentum=momentum, centered=centered, maximize=maximize))

    @staticmethod
    def _init_state(state: dict, p: torch.Tensor, group: dict) -> None:
        """A new parameter's state: the squared-gradient average, the gradient average if ``centered``, the
        momentum buffer if ``momentum > 0``."""
        state["v"] = torch.zeros_like(p)
        if group["centered"]:
            state["g_avg"] = torch.zeros_like(p)
        if group["momentum"] > 0:
            state["b"] = torch.zeros_like(p)

    @torch.no_grad()
    def step(self, closure=None):
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            a, mu = group["alpha"], group["momentum"]
            for p, g in self.params_with_grad(group):
                state = self.state[p]
                if not state:
                    self._init_state(state, p, group)
                if group["weight_decay"]:
                    g = g + group["weight_decay"] * p
                state["v"].mul_(a).addcmul_(g, g, value=1 - a)
                if group["centered"]:
                    state["g_avg"].lerp_(g, 1 - a)
                    denom = (state["v"] - state["g_avg"] ** 2).sqrt_().add_(group["eps"])
                else:
                    denom = state["v"].sqrt().add_(group["eps"])
                if mu > 0:
                    state["b"].mul_(mu).addcdiv_(g, denom)
                    p.add_(state["b"], alpha=-group["lr"])
                else:
                    p.addcdiv_(g, denom, value=-group["lr"])
        return loss


class Adam(Optimizer):
    r"""Adam (Kingma & Ba 2015): momentum on $g$ and RMSprop on $g^2$, both bias-corrected.

    $m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t$, $v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2$,
    $\hat m_t = m_t/(1-\beta_1^t)$, $\hat v_t = v_t/(1-\beta_2^t)$,
    $\theta_{t+1} = \theta_t - \eta\,\hat m_t/(\sqrt{\hat v_t} + \epsilon)$.
    ``amsgrad`` uses the running maximum of $v_t$. ``weight_decay`` is added to the gradient (L2); see
    :class:`AdamW` for the decoupled form. Same arguments as ``torch.optim.Adam``. State: ``m``, ``v``
    (+ ``v_max``).
    """

    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 amsgrad: bool = False, *, maximize: bool = False):
        super().__init__(params, check_hyperparameters(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                                       amsgrad=amsgrad, maximize=maximize))

    @torch.no_grad()
    def step(self, closure=None):
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
            for p, g in self.params_with_grad(group):
                state = self.state[p]
                if not state:
                    state.update(step=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                    if group["amsgrad"]:
                        state["v_max"] = torch.zeros_like(p)
                state["step"] += 1
                t, m, v = state["step"], state["m"], state["v"]
                if wd and self.decoupled:
                    p.mul_(1 - lr * wd)
                elif wd:
                    g = g + wd * p
                m.lerp_(g, 1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                if group["amsgrad"]:
                    v = torch.maximum(state["v_max"], v, out=state["v_max"])
                m_hat_scale = 1 / (1 - beta1 ** t)
                denom = (v.sqrt() / math.sqrt(1 - beta2 ** t)).add_(group["eps"])
                p.addcdiv_(m, denom, value=-lr * m_hat_scale)
        return loss


class AdamW(Adam):
    r"""AdamW (Loshchilov & Hutter 2019): Adam with *decoupled* weight decay.

    First $\theta_t \leftarrow (1 - \eta\lambda)\,\theta_t$, then the Adam step on the raw gradient, so the decay
    is not rescaled by $1/\sqrt{\hat v_t}$. Same arguments and defaults as ``torch.optim.AdamW``.
    """

    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2,
                 amsgrad: bool = False, *, maximize: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)
