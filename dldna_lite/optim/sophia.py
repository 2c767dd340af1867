"""Sophia (Liu et al. 2023): clipped diagonal Newton with a cheap, infrequent Hessian estimate (chapter 02)."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..data import positive_int
from .base import Optimizer, check_hyperparameters


class Sophia(Optimizer):
    r"""Sophia: a per-coordinate Newton step $m_t / h_t$, clipped to $[-1, 1]$.

    $m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t$; every ``update_period`` ($k$) steps
    $h_t = \beta_2 h_{t-k} + (1-\beta_2)\hat h_t$ with a diagonal-Hessian estimate $\hat h_t$ (else $h_t = h_{t-1}$);
    $\theta_t \leftarrow (1-\eta\lambda)\theta_t$;
    $\theta_{t+1} = \theta_t - \eta\,\text{clip}\big(m_t / \max(\rho\, h_t, \epsilon),\, 1\big)$.

    $\hat h_t$ comes from ``estimator()`` (called inside :meth:`step` on steps $1, k+1, 2k+1, \dots$; it returns one
    tensor per parameter): :class:`GaussNewtonBartlett` gives **SophiaG**, :func:`hutchinson_diagonal` **SophiaH**.
    Without an estimator, feed estimates with :meth:`update_hessian`. Where $h = 0$ (before any estimate, or
    where the curvature is negative) the step is $\eta\,\text{sign}(m_t)$, as in Lion.
    State: ``m``, ``h`` (two tensors per parameter, like Adam).
    """

    def __init__(self, params, lr: float = 1e-4, betas=(0.965, 0.99), rho: float = 0.04, weight_decay: float = 1e-1,
                 eps: float = 1e-15, update_period: int = 10, estimator: Callable[[], Sequence[torch.Tensor]] | None = None,
                 *, maximize: bool = False):
        defaults = check_hyperparameters(lr=lr, betas=betas, rho=rho, weight_decay=weight_decay, eps=eps,
                                         maximize=maximize)
        super().__init__(params, defaults)
        self.update_period, self.estimator = positive_int("update_period", update_period), estimator
        for group in self.param_groups:
            group.setdefault("step", 0)

    def _state(self, p):
        state = self.state[p]
        if not state:
            state.update(m=torch.zeros_like(p), h=torch.zeros_like(p))
        return state

    @torch.no_grad()
    def update_hessian(self, h_hat: Sequence[torch.Tensor]) -> None:
        """$h \\leftarrow \\beta_2 h + (1-\\beta_2)\\hat h$; ``h_hat`` has one tensor per parameter, in group order."""
        pairs = [(p, group["betas"][1]) for group in self.param_groups for p in group["params"]]
        if len(h_hat) != len(pairs):
            raise ValueError(f"got {len(h_hat)} Hessian estimates for {len(pairs)} parameters")
        for (p, beta2), h_hat_p in zip(pairs, h_hat):
            self._state(p)["h"].lerp_(h_hat_p.to(p), 1 - beta2)

    def _refresh_hessian(self) -> None:
        """Every ``update_period`` steps, when an estimator was given: a new Hessian estimate into the average."""
        if self.estimator is not None and self.param_groups[0]["step"] % self.update_period == 0:
            with torch.enable_grad():
                self.update_hessian(self.estimator())

    @torch.no_grad()
    def step(self, closure=None):
        loss = self._closure_loss(closure)
        self._refresh_hessian()
        for group in self.param_groups:
            group["step"] += 1
            lr, (beta1, _), wd = group["lr"], group["betas"], group["weight_decay"]
            for p, g in self.params_with_grad(group):
                state = self._state(p)
                m, h = state["m"], state["h"]
                m.lerp_(g, 1 - beta1)
                p.mul_(1 - lr * wd)
                ratio = m / (group["rho"] * h).clamp_(min=group["eps"])
                p.add_(ratio.clamp_(-1, 1), alpha=-lr)
        return loss


def hutchinson_diagonal(loss: torch.Tensor, params: Sequence[torch.Tensor], generator: torch.Generator | None = None,
                        n_samples: int = 1) -> list[torch.Tensor]:
    r"""Hutchinson's unbiased estimate of $\text{diag}(H)$: $u \odot (H u)$, $u$ Rademacher, averaged over samples.

    ``loss`` must still have its graph (a scalar computed from ``params``). Returns one tensor per parameter, on
    its device. The signs ``u`` are drawn on the CPU (``generator`` is a CPU generator) and copied to each parameter's
    device, so a seed gives the same estimate on every device.
    """
    n_samples, params = positive_int("n_samples", n_samples), list(params)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    total = [torch.zeros_like(p) for p in params]
    for k in range(n_samples):
        us = [torch.randint(0, 2, p.shape, generator=generator, dtype=p.dtype).mul_(2).sub_(1).to(p.device)
              for p in params]
        hvs = torch.autograd.grad(grads, params, grad_outputs=us, retain_graph=k < n_samples - 1)
        for acc, u, hv in zip(total, us, hvs):
            acc.add_(u * hv / n_samples)
    return total


class GaussNewtonBartlett:
    r"""The Gauss-Newton-Bartlett estimator of SophiaG for a classifier trained with cross-entropy.

    On the last batch $x_{1..B}$ the model saw (a forward pre-hook keeps it), sample labels
    $\hat y_b \sim \text{softmax}(f(x_b))$ from the model itself and return $B\,\hat g \odot \hat g$ with
    $\hat g = \nabla_\theta \frac1B\sum_b \text{CE}(f(x_b), \hat y_b)$. Its expectation is the diagonal of the
    Gauss-Newton matrix (Bartlett's identity), which is positive, unlike the Hessian's diagonal.
    Call :meth:`remove` to detach the hook. The estimate is computed on the model's device; with a CPU
    ``generator`` (as :func:`~dldna_lite.optim.build` gives) the labels are sampled on the CPU and copied there, so a
    seed samples the same labels on every device.
    """

    def __init__(self, model: nn.Module, generator: torch.Generator | None = None):
        self.model, self.generator, self.inputs = model, generator, None
        self.params = [p for p in model.parameters() if p.requires_grad]
        self._hook = model.register_forward_pre_hook(self._keep)

    def _keep(self, _module, args):
        self.inputs = args[0].detach()

    def __call__(self) -> list[torch.Tensor]:
        if self.inputs is None:
            raise ValueError("GaussNewtonBartlett needs one forward pass of the model before its first estimate")
        x = self.inputs
        with torch.enable_grad():
            logits = self.model(x)
            probs = F.softmax(logits.detach().double(), dim=1)
            y_hat = self._sample(probs)
            g_hat = torch.autograd.grad(F.cross_entropy(logits, y_hat), self.params)
        return [len(x) * g * g for g in g_hat]

    def _sample(self, probs: torch.Tensor) -> torch.Tensor:
        """One label per row of ``probs``, drawn where the generator lives, returned on ``probs``' device."""
        where = self.generator.device if self.generator is not None else probs.device
        return torch.multinomial(probs.to(where), 1, generator=self.generator).squeeze(1).to(probs.device)

    def remove(self) -> None:
        self._hook.remove()
