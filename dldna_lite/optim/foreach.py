"""Multi-tensor versions of the from-scratch optimizers: the same update rules, one ``torch._foreach_*`` call per
operation for all the parameters of a group instead of a Python loop over them (chapter 02's long comparisons).

The readable classes (:class:`~dldna_lite.optim.Adam`, ...) loop over the parameters: one kernel launch per
operation per parameter, about 550 per Adam step on the CIFAR transformer, which keeps a GPU waiting for Python. Each

class here subclasses its readable one (same constructor, checks, state keys and :meth:`state_bytes`, so a state
dict moves between the two) and replaces only ``step()`` by the same arithmetic on lists of tensors, in the same
order of operations; tests/test_foreach_optimizers.py proves every option equal to the readable ``step()`` in float64.
:func:`~dldna_lite.optim.build` picks these with ``foreach=True``; :func:`default_foreach` says when that pays.

:class:`AdafactorForeach` also keeps its two norms per parameter on the device (the readable one reads them with
``.item()``, two host synchronisations per parameter per step).
"""
from __future__ import annotations

import math

import torch

from .adafactor import Adafactor
from .adaptive import Adagrad, Adam, AdamW, RMSprop
from .lion import Lion
from .sgd import SGD
from .sophia import Sophia

__all__ = ["SGDForeach", "AdagradForeach", "RMSpropForeach", "AdamForeach", "AdamWForeach", "AdafactorForeach",
           "LionForeach", "SophiaForeach", "FOREACH", "CPU_READABLE", "default_foreach"]


#: Optimizers whose readable ``step()`` stays the default on the CPU: Adafactor's multi-tensor version was measured
#: 0.83-1.09x the readable one's speed there (its host reads cost nothing on a CPU, its per-tensor means remain).
CPU_READABLE = ("Adafactor",)


def default_foreach(device: torch.device | str, label: str | None = None) -> bool:
    """Whether the long comparisons (:func:`~dldna_lite.optim.compare.run`) use the multi-tensor version of the
    optimizer ``label`` (a name of :func:`~dldna_lite.optim.build`) on ``device``. On CUDA always (one launch per
    operation instead of one per parameter). On the CPU too, where it was measured 1.0-1.2x faster on a 4-tensor MLP
    and 1.4-1.9x on models of 43-200 tensors (the Python loop costs more than the per-tensor dispatch the foreach
    ops do in C++), except for :data:`CPU_READABLE`; elsewhere (MPS, ...) the readable one."""
    kind = torch.device(device).type
    return kind == "cuda" or (kind == "cpu" and label not in CPU_READABLE)


def _with_grad(group: dict) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The parameters of ``group`` that have a gradient, and their gradients (negated when maximizing)."""
    params = [p for p in group["params"] if p.grad is not None]
    grads = [p.grad for p in params]
    if group.get("maximize", False) and grads:
        grads = torch._foreach_neg(grads)
    return params, grads


def _l2(grads: list, params: list, wd: float) -> list:
    """``g + wd * p`` for every pair (coupled weight decay, rounded as the readable ``g = g + wd * p``)."""
    return torch._foreach_add(grads, torch._foreach_mul(params, wd)) if wd else grads


def _rms(tensors: list) -> list:
    """``‖t‖₂ / √numel`` of each tensor, as 0-dim tensors on its device (no host read)."""
    norms = torch._foreach_norm(tensors)
    torch._foreach_div_(norms, [t.numel() ** 0.5 for t in tensors])
    return norms


def _rsqrt_(tensors: list[torch.Tensor]) -> None:
    """``torch._foreach_rsqrt_`` where torch has it (not in 2.5, the oldest torch allowed): the same kernel per tensor."""
    if hasattr(torch, "_foreach_rsqrt_"):
        torch._foreach_rsqrt_(tensors)
    else:
        for t in tensors:
            t.rsqrt_()


class _MultiTensor:
    """The loop every multi-tensor ``step()`` shares: the closure, then :meth:`_group_step` on each parameter group
    with the parameters that have a gradient and those gradients (groups without any are skipped)."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            params, grads = _with_grad(group)
            if params:
                self._group_step(group, params, grads)
        return loss


class SGDForeach(_MultiTensor, SGD):
    """:class:`~dldna_lite.optim.SGD` with multi-tensor updates."""

    def _group_step(self, group: dict, params: list, grads: list) -> None:
        mu, tau = group["momentum"], group["dampening"]
        grads = _l2(grads, params, group["weight_decay"])
        if mu:
            states = [self.state[p] for p in params]
            old = [(s["v"], g) for s, g in zip(states, grads) if "v" in s]
            for s, g in zip(states, grads):
                if "v" not in s:
                    s["v"] = g.clone()
            if old:
                vs, gs = map(list, zip(*old))
                torch._foreach_mul_(vs, mu)
                torch._foreach_add_(vs, gs, alpha=1 - tau)
            vs = [s["v"] for s in states]
            grads = torch._foreach_add(grads, torch._foreach_mul(vs, mu)) if group["nesterov"] else vs
        torch._foreach_add_(params, grads, alpha=-group["lr"])


class AdagradForeach(_MultiTensor, Adagrad):
    """:class:`~dldna_lite.optim.Adagrad` with multi-tensor updates."""

    def _group_step(self, group: dict, params: list, grads: list) -> None:
        states = [self.state[p] for p in params]
        for p, state in zip(params, states):
            if not state:
                state["step"] = 0
                state["G"] = torch.full_like(p, group["initial_accumulator_value"])
            state["step"] += 1
        grads = _l2(grads, params, group["weight_decay"])
        Gs = [s["G"] for s in states]
        torch._foreach_addcmul_(Gs, grads, grads)
        denom = torch._foreach_sqrt(Gs)
        torch._foreach_add_(denom, group["eps"])
        lrs = [-(group["lr"] / (1 + (s["step"] - 1) * group["lr_decay"])) for s in states]
        torch._foreach_addcdiv_(params, grads, denom, lrs)


class RMSpropForeach(_MultiTensor, RMSprop):
    """:class:`~dldna_lite.optim.RMSprop` with multi-tensor updates."""

    def _group_step(self, group: dict, params: list, grads: list) -> None:
        a, mu = group["alpha"], group["momentum"]
        states = [self.state[p] for p in params]
        for p, state in zip(params, states):
            if not state:
                self._init_state(state, p, group)
        grads, vs = _l2(grads, params, group["weight_decay"]), [s["v"] for s in states]
        torch._foreach_mul_(vs, a)
        torch._foreach_addcmul_(vs, grads, grads, value=1 - a)
        if group["centered"]:
            g_avg = [s["g_avg"] for s in states]
            torch._foreach_lerp_(g_avg, grads, 1 - a)
            denom = torch._foreach_sub(vs, torch._foreach_pow(g_avg, 2))
            torch._foreach_sqrt_(denom)
        else:
            denom = torch._foreach_sqrt(vs)
        torch._foreach_add_(denom, group["eps"])
        if mu > 0:
            bs = [s["b"] for s in states]
            torch._foreach_mul_(bs, mu)
            torch._foreach_addcdiv_(bs, grads, denom)
            torch._foreach_add_(params, bs, alpha=-group["lr"])
        else:
            torch._foreach_addcdiv_(params, grads, denom, value=-group["lr"])


class _AdamStep(_MultiTensor):
    """``step()`` of :class:`AdamForeach` and :class:`AdamWForeach` (``decoupled`` comes from the readable class)."""

    def _group_step(self, group: dict, params: list, grads: list) -> None:
        lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
        states = [self.state[p] for p in params]
        for p, state in zip(params, states):
            if not state:
                state.update(step=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                if group["amsgrad"]:
                    state["v_max"] = torch.zeros_like(p)
            state["step"] += 1
        if wd and self.decoupled:
            torch._foreach_mul_(params, 1 - lr * wd)
        else:
            grads = _l2(grads, params, wd)
        ms, vs = [s["m"] for s in states], [s["v"] for s in states]
        torch._foreach_lerp_(ms, grads, 1 - beta1)
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, grads, grads, value=1 - beta2)
        if group["amsgrad"]:
            vs = [s["v_max"] for s in states]
            torch._foreach_maximum_(vs, [s["v"] for s in states])
        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, [math.sqrt(1 - beta2 ** s["step"]) for s in states])
        torch._foreach_add_(denom, group["eps"])
        torch._foreach_addcdiv_(params, ms, denom, [-lr * (1 / (1 - beta1 ** s["step"])) for s in states])


class AdamForeach(_AdamStep, Adam):
    """:class:`~dldna_lite.optim.Adam` with multi-tensor updates."""


class AdamWForeach(_AdamStep, AdamW):
    """:class:`~dldna_lite.optim.AdamW` with multi-tensor updates."""


class AdafactorForeach(Adafactor):
    """:class:`~dldna_lite.optim.Adafactor` with multi-tensor updates and no host reads: parameters are updated
    together when they share the step count, the kind of second moment (factored for matrices) and the dtype."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            parts = {}
            for p, g in zip(*_with_grad(group)):
                state = self.state[p]
                if not state:
                    self._init_state(state, g)
                state["step"] += 1
                same = parts.setdefault((state["step"], g.dim() > 1, p.dtype), ([], []))
                same[0].append(p)
                same[1].append(g)
            for (t, matrix, dtype), (params, grads) in parts.items():
                self._update(group, t, matrix, dtype, params, grads)
        return loss

    def _update(self, group: dict, t: int, matrix: bool, dtype: torch.dtype, params: list, grads: list) -> None:
        lr, (eps1, eps2), beta2_hat = group["lr"], group["eps"], t ** group["beta2_decay"]
        eps1 = torch.finfo(dtype).eps if eps1 is None else eps1
        alphas = _rms(params)
        torch._foreach_clamp_min_(alphas, eps2)
        torch._foreach_mul_(alphas, min(lr, t ** -0.5))
        if group["weight_decay"]:
            torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
        squares = torch._foreach_mul(grads, grads)
        if matrix:
            Rs, Cs = [self.state[p]["R"] for p in params], [self.state[p]["C"] for p in params]
            torch._foreach_lerp_(Rs, [s.mean(dim=-1, keepdim=True) for s in squares], beta2_hat)
            torch._foreach_lerp_(Cs, [s.mean(dim=-2, keepdim=True) for s in squares], beta2_hat)
            v_hat = [R @ C / R.mean(dim=-2, keepdim=True).clamp(min=eps1) for R, C in zip(Rs, Cs)]
            torch._foreach_clamp_min_(v_hat, eps1 ** 2)
        else:
            vs = [self.state[p]["v"] for p in params]
            torch._foreach_lerp_(vs, squares, beta2_hat)
            v_hat = torch._foreach_clamp_min(vs, eps1 ** 2)
        _rsqrt_(v_hat)
        us = torch._foreach_mul(grads, v_hat)
        scales = _rms(us)
        torch._foreach_div_(scales, group["d"])
        torch._foreach_clamp_min_(scales, 1.0)
        scales = torch._foreach_div(alphas, scales)               # alpha / max(1, rms(u) / d)
        torch._foreach_neg_(scales)
        torch._foreach_addcmul_(params, us, scales)


class LionForeach(_MultiTensor, Lion):
    """:class:`~dldna_lite.optim.Lion` with multi-tensor updates."""

    def _group_step(self, group: dict, params: list, grads: list) -> None:
        lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
        for p in params:
            if "m" not in self.state[p]:
                self.state[p]["m"] = torch.zeros_like(p)
        ms = [self.state[p]["m"] for p in params]
        c = torch._foreach_mul(ms, beta1)
        torch._foreach_add_(c, grads, alpha=1 - beta1)
        torch._foreach_sign_(c)
        torch._foreach_mul_(params, 1 - lr * wd)
        torch._foreach_add_(params, c, alpha=-lr)
        torch._foreach_mul_(ms, beta2)
        torch._foreach_add_(ms, grads, alpha=1 - beta2)


class SophiaForeach(Sophia):
    """:class:`~dldna_lite.optim.Sophia` with multi-tensor updates (the Hessian estimate as in the readable one)."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = self._closure_loss(closure)
        self._refresh_hessian()
        for group in self.param_groups:
            group["step"] += 1
            params, grads = _with_grad(group)
            if not params:
                continue
            lr, (beta1, _), wd = group["lr"], group["betas"], group["weight_decay"]
            states = [self._state(p) for p in params]
            ms = [s["m"] for s in states]
            torch._foreach_lerp_(ms, grads, 1 - beta1)
            torch._foreach_mul_(params, 1 - lr * wd)
            denom = torch._foreach_mul([s["h"] for s in states], group["rho"])
            torch._foreach_clamp_min_(denom, group["eps"])
            ratio = torch._foreach_div(ms, denom)
            torch._foreach_clamp_min_(ratio, -1.0)
            torch._foreach_clamp_max_(ratio, 1.0)
            torch._foreach_add_(params, ratio, alpha=-lr)
        return loss


#: readable class -> its multi-tensor version.
FOREACH = {SGD: SGDForeach, Adagrad: AdagradForeach, RMSprop: RMSpropForeach, Adam: AdamForeach,
           AdamW: AdamWForeach, Adafactor: AdafactorForeach, Lion: LionForeach, Sophia: SophiaForeach}
