"""Weight initialization: the rules, the spectra they produce, and how signals propagate through them.

Every initializer fills the weight of each ``nn.Linear`` / ``nn.Conv*`` layer of a model in place and sets its bias
to zero. With ``fan_in`` = inputs per output unit and ``fan_out`` = outputs per input unit, the per-entry variance
``Var(W_ij)`` of each rule is

=====================  ==========================================  ======================================
method                 distribution                                ``Var(W_ij)``
=====================  ==========================================  ======================================
``naive``              ``N(0, std²)``, ``std = 0.01``              ``std²``
``lecun``              normal                                      ``1 / fan_in``
``xavier_normal``      normal                                      ``2 / (fan_in + fan_out)``
``xavier_uniform``     ``U(-b, b)``, ``b = sqrt(3 Var)``           ``2 / (fan_in + fan_out)``
``kaiming_normal``     normal                                      ``2 / ((1 + a²) fan_in)``
``kaiming_uniform``    ``U(-b, b)``, ``b = sqrt(3 Var)``           ``2 / ((1 + a²) fan_in)``
``orthogonal``         ``gain · Q``, ``Q`` with orthonormal rows   ``gain² / max(fan_in, fan_out)``
                       (or columns)
``scaled_orthogonal``  ``Q`` rescaled to Kaiming's variance        ``2 / ((1 + a²) fan_in)``
``l_momentum``         ``Q`` rescaled to a target second moment    ``momentum² / fan_in`` (stable, default)
                                                                   or ``momentum²`` (the source's rule)
=====================  ==========================================  ======================================

``a`` is the negative slope of a leaky ReLU / PReLU (``a = 0``: ReLU). Spectral metrics (:func:`condition_number`,
:func:`spectral_norm`, :func:`effective_rank`) are computed from the singular values in float64. A conv kernel
``[out, in, k, k]`` is treated as the matrix ``[out, in·k·k]``.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Iterable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

METHODS = ("naive", "lecun", "xavier_normal", "xavier_uniform", "kaiming_normal", "kaiming_uniform",
           "orthogonal", "scaled_orthogonal", "l_momentum")
_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


# --------------------------------------------------------------------------------------------- fans and variances
def fans(W: torch.Tensor) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight ``[out, in, *kernel]``: ``in·prod(kernel)`` and ``out·prod(kernel)``."""
    if W.dim() < 2:
        raise ValueError(f"a weight needs at least 2 dimensions, got shape {tuple(W.shape)}")
    receptive = math.prod(W.shape[2:])
    return W.shape[1] * receptive, W.shape[0] * receptive


def kaiming_variance(fan_in: int, a: float = 0.0) -> float:
    """``2 / ((1 + a²) fan_in)``: keeps ``E[x²]`` constant through ``Linear -> leaky ReLU(a)``."""
    return 2.0 / ((1.0 + a * a) * fan_in)


def target_variance(method: str, shape: Sequence[int], a: float = 0.0, std: float = 0.01, gain: float = 1.0,
                    momentum: float = 0.9, scale_by_fan: bool = True) -> float:
    """The per-entry variance ``Var(W_ij)`` that ``method`` aims at for a weight of ``shape`` (table above)."""
    fan_in, fan_out = fans(torch.empty(shape, device="meta"))
    if method == "naive":
        return std ** 2
    if method == "lecun":
        return 1.0 / fan_in
    if method in ("xavier_normal", "xavier_uniform"):
        return gain ** 2 * 2.0 / (fan_in + fan_out)
    if method in ("kaiming_normal", "kaiming_uniform", "scaled_orthogonal"):
        return kaiming_variance(fan_in, a)
    if method == "orthogonal":
        return gain ** 2 / max(fan_in, fan_out)
    if method == "l_momentum":
        return momentum ** 2 / fan_in if scale_by_fan else momentum ** 2
    raise ValueError(f"unknown init method {method!r}; choose one of {', '.join(METHODS)}")


# --------------------------------------------------------------------------------------------- the initializers
def _normal(W: torch.Tensor, var: float, generator) -> torch.Tensor:
    with torch.no_grad():
        return W.normal_(0.0, math.sqrt(var), generator=generator)


def _uniform(W: torch.Tensor, var: float, generator) -> torch.Tensor:
    bound = math.sqrt(3.0 * var)  # Var(U(-b, b)) = b² / 3
    with torch.no_grad():
        return W.uniform_(-bound, bound, generator=generator)


def orthogonal_matrix(rows: int, cols: int, generator: torch.Generator | None = None,
                      dtype=torch.float32) -> torch.Tensor:
    """A random ``[rows, cols]`` matrix with orthonormal rows (``rows <= cols``) or columns (``rows > cols``).

    QR of a Gaussian matrix, with the signs of ``diag(R)`` folded into ``Q`` so that ``Q`` is Haar-distributed
    (Mezzadri 2007). Computed in float64.
    """
    A = torch.randn(max(rows, cols), min(rows, cols), generator=generator, dtype=torch.float64)
    Q, R = torch.linalg.qr(A)  # Q: [max, min], orthonormal columns
    Q = Q * torch.sign(torch.diagonal(R)).where(torch.diagonal(R) != 0, torch.ones(()))
    Q = Q if rows >= cols else Q.T
    return Q.to(dtype)


def _orthogonal(W: torch.Tensor, gain: float, generator) -> torch.Tensor:
    rows = W.shape[0]
    cols = W.numel() // rows
    with torch.no_grad():
        W.copy_(gain * orthogonal_matrix(rows, cols, generator, W.dtype).view_as(W))
    return W


def l_momentum_(W: torch.Tensor, momentum: float = 0.9, scale_by_fan: bool = True, directions: str = "orthogonal",
                generator: torch.Generator | None = None) -> torch.Tensor:
    """L-momentum initialization, in place: directions ``D``, then ``W = D · sqrt(target / mean(D²))``.

    ``target`` is the second moment that the layer's entries must have: ``momentum² / fan_in`` with
    ``scale_by_fan=True`` (our stable version: LeCun's variance shrunk by the optimizer's ``momentum²``), or
    ``momentum²`` itself (the source's rule, which ignores the layer's size). ``directions`` is ``"orthogonal"``
    (a random orthogonal matrix) or ``"uniform"`` (the source's ``U(-sqrt(6/fan_in), sqrt(6/fan_in))``).
    The empirical second moment of ``W`` equals ``target`` exactly (up to rounding).
    """
    if not 0.0 < momentum < 1.0:
        raise ValueError(f"momentum must be in (0, 1), got {momentum!r}")
    fan_in, _ = fans(W)
    if directions == "orthogonal":
        _orthogonal(W, 1.0, generator)
    elif directions == "uniform":
        _uniform(W, 2.0 / fan_in, generator)
    else:
        raise ValueError(f"unknown directions {directions!r}; choose one of orthogonal, uniform")
    target = momentum ** 2 / fan_in if scale_by_fan else momentum ** 2
    with torch.no_grad():
        W.mul_(math.sqrt(target / W.double().pow(2).mean().item()))
    return W


def init_weight_(W: torch.Tensor, method: str, a: float = 0.0, std: float = 0.01, gain: float = 1.0,
                 momentum: float = 0.9, scale_by_fan: bool = True, directions: str = "orthogonal",
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill one weight tensor ``[out, in, *kernel]`` in place with ``method`` (see the module docstring)."""
    if method not in METHODS:
        raise ValueError(f"unknown init method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "l_momentum":
        return l_momentum_(W, momentum, scale_by_fan, directions, generator)
    var = target_variance(method, W.shape, a=a, std=std, gain=gain)
    if method in ("naive", "lecun", "xavier_normal", "kaiming_normal"):
        return _normal(W, var, generator)
    if method in ("xavier_uniform", "kaiming_uniform"):
        return _uniform(W, var, generator)
    if method == "orthogonal":
        return _orthogonal(W, gain, generator)
    # scaled_orthogonal: Q has mean square 1/max(fan_in, fan_out); rescale it to Kaiming's variance
    fan_in, fan_out = fans(W)
    return _orthogonal(W, math.sqrt(var * max(fan_in, fan_out)), generator)


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every Linear/Conv layer, in registration order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _LAYERS)]


def initialize(model: nn.Module, method: str, generator: torch.Generator | None = None, **kw) -> nn.Module:
    """Initialize every Linear/Conv weight of ``model`` in place with ``method`` (biases to zero); return ``model``.

    Keywords: ``a`` (leaky/PReLU slope for the Kaiming rules, default 0), ``std`` (``naive``), ``gain``
    (``xavier_*``, ``orthogonal``), ``momentum``, ``scale_by_fan``, ``directions`` (``l_momentum``).
    """
    if method not in METHODS:
        raise ValueError(f"unknown init method {method!r}; choose one of {', '.join(METHODS)}")
    unknown = set(kw) - {"a", "std", "gain", "momentum", "scale_by_fan", "directions"}
    if unknown:
        raise ValueError(f"unknown keyword(s) {sorted(unknown)}; choose from a, std, gain, momentum, "
                         "scale_by_fan, directions")
    for _, layer in weight_layers(model):
        init_weight_(layer.weight, method, generator=generator, **kw)
        if layer.bias is not None:
            with torch.no_grad():
                layer.bias.zero_()
    return model


# --------------------------------------------------------------------------------------------- spectral metrics
def singular_values(W: torch.Tensor) -> torch.Tensor:
    """Singular values (descending, float64) of ``W`` viewed as ``[out, rest]``."""
    if W.dim() < 2:
        raise ValueError(f"singular values need a matrix, got shape {tuple(W.shape)}")
    return torch.linalg.svdvals(W.detach().reshape(W.shape[0], -1).double())


def spectral_norm(W: torch.Tensor) -> float:
    """``σ_max(W)``, the largest singular value = the operator 2-norm."""
    return singular_values(W)[0].item()


def condition_number(W: torch.Tensor) -> float:
    """``κ(W) = σ_max / σ_min`` over the ``min(m, n)`` singular values (``inf`` when ``W`` is rank-deficient)."""
    s = singular_values(W)
    return math.inf if s[-1].item() == 0.0 else (s[0] / s[-1]).item()


def effective_rank(W: torch.Tensor) -> float:
    """``exp(-Σ p_i log p_i)`` with ``p_i = σ_i / Σ_j σ_j`` (Roy & Vetterli 2007): between 1 and ``min(m, n)``."""
    return _erank(singular_values(W))


def _erank(s: torch.Tensor) -> float:
    p = s / s.sum()
    p = p[p > 0]
    return math.exp(-(p * p.log()).sum().item())


def layer_stats(model: nn.Module) -> list[dict]:
    """One row per Linear/Conv layer: name, shape, weight std, spectral norm, condition number, effective rank and
    effective-rank ratio (``erank / min(m, n)``, 1 when all singular values are equal)."""
    rows = []
    for name, layer in weight_layers(model):
        W = layer.weight.detach()
        s = singular_values(W)
        erank = _erank(s)
        rows.append(dict(layer=name, shape=tuple(W.shape), std=W.double().std().item(), spectral_norm=s[0].item(),
                         condition_number=math.inf if s[-1] == 0 else (s[0] / s[-1]).item(),
                         effective_rank=erank, erank_ratio=erank / len(s)))
    return rows


# --------------------------------------------------------------------------------------------- signal propagation
def propagation_stats(model: nn.Module, X: torch.Tensor, y: torch.Tensor,
                      loss_fn: Callable | None = None) -> dict[str, list[float]]:
    """Per Linear/Conv layer ``l``: ``act_std`` = std of its output ``z_l`` (pre-activation) on the batch ``X`` and
    ``grad_std`` = std of ``∂L/∂z_l`` after one backward pass of ``loss_fn(model(X), y)`` (cross-entropy by
    default). Both lists have one entry per layer, input side first. Parameter gradients are left untouched."""
    loss_fn = loss_fn or F.cross_entropy
    outputs: list[torch.Tensor] = []

    def keep(_module, _inp, out):
        out.retain_grad()
        outputs.append(out)

    handles = [layer.register_forward_hook(keep) for _, layer in weight_layers(model)]
    saved = [p.grad for p in model.parameters()]
    try:
        loss = loss_fn(model(X), y)
        grads = torch.autograd.grad(loss, outputs, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    for p, g in zip(model.parameters(), saved):
        p.grad = g
    return dict(act_std=[z.detach().std().item() for z in outputs],
                grad_std=[0.0 if g is None else g.std().item() for g in grads])


def deep_mlp(depth: int, width: int = 128, activation: str = "relu", batchnorm: bool = False,
             n_in: int = 784, n_out: int = 10) -> nn.Sequential:
    """A plain MLP with ``depth`` weight layers: ``n_in -> width × (depth - 1) -> n_out``."""
    from .models import mlp

    if not isinstance(depth, int) or depth < 2:
        raise ValueError(f"depth must be an int >= 2, got {depth!r}")
    return mlp([n_in] + [width] * (depth - 1) + [n_out], activation, batchnorm=batchnorm)


# --------------------------------------------------------------------------------------------- the comparison
def steps_to_target(losses: Sequence[float], target: float, window: int = 20) -> int | None:
    """First (1-based) step at which the moving average of the last ``window`` step losses is ``<= target``."""
    t = torch.as_tensor(list(losses), dtype=torch.float64)
    if len(t) < window:
        return None
    avg = t.unfold(0, window, 1).mean(1)
    hit = (avg <= target).nonzero()
    return None if len(hit) == 0 else int(hit[0]) + window


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    t = torch.tensor(values, dtype=torch.float64)
    return t.mean().item(), (t.std().item() if len(t) > 1 else 0.0)


def analyze(methods: Iterable[str], train_data, test_data, epochs: int, seeds: Sequence[int] = (0,),
            target_loss: float = 0.6, model_fn: Callable[[], nn.Module] | None = None,
            optimizer_fn: Callable | None = None, batch_size: int = 128, init_kw: dict | None = None,
            progress: bool | None = None) -> list[dict]:
    """Train one model per (method, seed) under identical conditions; one summary row per method.

    ``model_fn()`` builds the network (default: the source's ``SimpleNetwork`` with PReLU), ``optimizer_fn(params)``
    the optimizer (default: SGD, lr 0.01, momentum 0.9). ``init_kw[method]`` holds extra keywords for
    :func:`initialize` (default for every method: ``a=0.25``, PReLU's initial slope, where it applies).
    Row keys: ``method``, ``status`` ("ok"; "diverged at step k (seed s)" for a single seed; "2 of 3 seeds
    diverged: seed 0 at step 4, seed 2 at step 9" for several),
    ``test_loss``/``test_acc`` and their ``*_std`` over the seeds that did not diverge (``None`` if all did),
    ``steps_to_target`` (mean over seeds that reached ``target_loss``; ``None`` if none did) and ``reached``
    (how many seeds did), the init spectra ``condition_number`` (mean over layers), ``spectral_norm`` (mean over
    layers) and ``erank_ratio`` (mean over layers), and ``time`` (s per run).
    """
    from .config import seed_everything
    from .models import SimpleNetwork
    from .train import train

    model_fn = model_fn or (lambda: SimpleNetwork(act_func=nn.PReLU()))
    optimizer_fn = optimizer_fn or (lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9))
    init_kw = init_kw or {}
    rows = []
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"unknown init method {method!r}; choose one of {', '.join(METHODS)}")
        kw = init_kw.get(method, {"a": 0.25} if method in ("kaiming_normal", "kaiming_uniform",
                                                             "scaled_orthogonal") else {})
        losses, accs, steps, times, spectra, diverged = [], [], [], [], [], []
        for seed in seeds:
            generator = seed_everything(seed)
            model = initialize(model_fn(), method, generator=generator, **kw)
            stats = layer_stats(model)
            spectra.append([sum(r[k] for r in stats) / len(stats)
                            for k in ("condition_number", "spectral_norm", "erank_ratio")])
            start = time.perf_counter()
            history = train(model, optimizer_fn(model.parameters()), train_data, epochs, batch_size=batch_size,
                            test_data=test_data, seed=seed, progress=progress, desc=f"{method} seed {seed}")
            times.append(time.perf_counter() - start)
            if history.diverged:
                diverged.append((seed, history.diverged_at))
                continue
            losses.append(history.final("test_loss"))
            accs.append(history.final("test_acc"))
            hit = steps_to_target(history["loss"], target_loss)
            if hit is not None:
                steps.append(hit)
        status = ("ok" if not diverged else f"diverged at step {diverged[0][1]} (seed {diverged[0][0]})"
                  if len(seeds) == 1 else f"{len(diverged)} of {len(seeds)} seeds diverged: "
                  + ", ".join(f"seed {s} at step {k}" for s, k in diverged))
        row = dict(method=method, status=status, seeds=len(seeds), reached=len(steps))
        row["test_loss"], row["test_loss_std"] = _mean_std(losses)
        row["test_acc"], row["test_acc_std"] = _mean_std(accs)
        row["steps_to_target"], row["steps_to_target_std"] = _mean_std([float(s) for s in steps])
        cond, snorm, ratio = (sum(c) / len(c) for c in zip(*spectra))
        row.update(condition_number=cond, spectral_norm=snorm, erank_ratio=ratio,
                   time=sum(times) / len(times))
        rows.append(row)
    return rows


def _pm(mean, std, fmt: str) -> str:
    if mean is None:
        return "–"
    return fmt.format(mean) + ("" if not std else " ± " + fmt.format(std))


def results_table(rows: list[dict]) -> str:
    """The rows of :func:`analyze` as a Markdown table (divergence as text, never NaN)."""
    head = ("| method | final test loss | test accuracy | steps to target | mean κ | mean σ_max | erank ratio "
            "| time (s) | status |\n|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        reached = (_pm(r["steps_to_target"], r["steps_to_target_std"], "{:.0f}")
                   + (f" ({r['reached']}/{r['seeds']} seeds)" if 0 < r["reached"] < r["seeds"] else "")
                   if r["reached"] else "not reached")
        lines.append(f"| {r['method']} | {_pm(r['test_loss'], r['test_loss_std'], '{:.3f}')} "
                     f"| {_pm(r['test_acc'], r['test_acc_std'], '{:.3f}')} | {reached} "
                     f"| {r['condition_number']:.2f} | {r['spectral_norm']:.2f} | {r['erank_ratio']:.3f} "
                     f"| {r['time']:.1f} | {r['status']} |")
    return "\n".join(lines)
