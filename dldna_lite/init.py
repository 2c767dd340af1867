"""Weight initialization (chapter 01, its exercises and solutions): the rules, the spectra they produce, and how
signals propagate through them.

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
``orthogonal``         ``gain · Q``, ``Q`` with orthonormal rows   ``gain² / max(rows, cols)``
                       (or columns)
``scaled_orthogonal``  ``Q`` rescaled to Kaiming's variance        ``2 / ((1 + a²) fan_in)``
``l_momentum``         ``Q`` rescaled to a target second moment    ``momentum² / fan_in`` (stable, default)
                                                                   or ``momentum²`` (the source's rule)
=====================  ==========================================  ======================================

``a`` is the negative slope of a leaky ReLU / PReLU (``a = 0``: ReLU). Spectral metrics (:func:`condition_number`,
:func:`spectral_norm`, :func:`effective_rank`) are computed from the singular values in float64. A conv kernel
``[out, in, k, k]`` is treated as the matrix ``[out, in·k·k]``.

Devices: a weight may live on any device; its random numbers are drawn on the CPU (with a CPU ``generator``) and
copied there, so a seed gives the same weights everywhere. :func:`propagation_stats` and :func:`analyze` compute on
the model's device. Symmetry breaking (:func:`constant_`, :func:`unit_spread`, :func:`symmetry_run`) lives in
:mod:`dldna_lite.init_symmetry` and is re-exported here.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Iterable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .data import positive_int

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
    if method == "orthogonal":    # Q is the weight as [rows, cols] = [out, in·kernel]: mean square 1/max(rows, cols)
        return gain ** 2 / max(shape[0], math.prod(shape[1:]))
    if method == "l_momentum":
        return momentum ** 2 / fan_in if scale_by_fan else momentum ** 2
    raise ValueError(f"unknown init method {method!r}; choose one of {', '.join(METHODS)}")


# --------------------------------------------------------------------------------------------- the initializers
def _on_cpu(W: torch.Tensor) -> torch.Tensor:
    """An empty CPU tensor like ``W``: the draws are made on the CPU (with the CPU ``generator``), then copied to
    ``W``'s device, so that a seed gives the same weights on every device."""
    return torch.empty(W.shape, dtype=W.dtype)


def _normal(W: torch.Tensor, var: float, generator) -> torch.Tensor:
    with torch.no_grad():
        return W.copy_(_on_cpu(W).normal_(0.0, math.sqrt(var), generator=generator))


def _uniform(W: torch.Tensor, var: float, generator) -> torch.Tensor:
    bound = math.sqrt(3.0 * var)  # Var(U(-b, b)) = b² / 3
    with torch.no_grad():
        return W.copy_(_on_cpu(W).uniform_(-bound, bound, generator=generator))


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
    """Fill one weight tensor ``[out, in, *kernel]`` in place with ``method`` (see the module docstring).

    ``W`` may live on any device; the random numbers are drawn on the CPU (``generator`` is a CPU generator) and
    copied there, so the same seed gives bitwise the same weights on a CPU and on a GPU."""
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
    # scaled_orthogonal: Q, the weight as [out, in·kernel], has mean square 1/max(rows, cols); rescale it to Kaiming's
    # variance (for a conv with out > in, max(fan_in, fan_out) would be kernel times too large)
    return _orthogonal(W, math.sqrt(var * max(W.shape[0], W.numel() // W.shape[0])), generator)


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every Linear/Conv layer, in registration order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _LAYERS)]


def initialize(model: nn.Module, method: str, generator: torch.Generator | None = None, **kw) -> nn.Module:
    """Initialize every Linear/Conv weight of ``model`` in place with ``method`` (biases to zero); return ``model``.

    Keywords: ``a`` (leaky/PReLU slope for the Kaiming rules, default 0), ``std`` (``naive``), ``gain``
    (``xavier_*``, ``orthogonal``), ``momentum``, ``scale_by_fan``, ``directions`` (``l_momentum``).
    ``ValueError`` when ``model`` holds no such layer (an activation, a LayerNorm): nothing would change.
    """
    if method not in METHODS:
        raise ValueError(f"unknown init method {method!r}; choose one of {', '.join(METHODS)}")
    unknown = set(kw) - {"a", "std", "gain", "momentum", "scale_by_fan", "directions"}
    if unknown:
        raise ValueError(f"unknown keyword(s) {sorted(unknown)}; choose from a, std, gain, momentum, "
                         "scale_by_fan, directions")
    if not weight_layers(model):
        raise ValueError(f"initialize found no nn.Linear/nn.Conv layer in {type(model).__name__} (it has "
                         f"{sum(p.numel() for p in model.parameters())} parameters): nothing to initialize; pass the "
                         "model that holds the layers (e.g. the whole nn.Sequential, not an activation)")
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
    if s.sum().item() == 0.0:
        return 1.0
    p = s / s.sum()
    return math.exp(-torch.xlogy(p, p).sum().item())  # xlogy(0, 0) = 0: zero singular values add nothing


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
    default). Both lists have one entry per layer, input side first. Parameter gradients are left untouched.
    Computed on the model's device (``X`` and ``y`` are moved there)."""
    from .train import on_device_of

    loss_fn = loss_fn or F.cross_entropy
    X, y = on_device_of(model, (X, y))
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


# --------------------------------------------------------------------------------------------- the comparison
def steps_to_target(losses: Sequence[float], target: float, window: int = 20) -> int | None:
    """First (1-based) step at which the moving average of the last ``window`` step losses is ``<= target``."""
    t, window = torch.as_tensor(list(losses), dtype=torch.float64), positive_int("window", window)
    if len(t) < window:
        return None
    avg = t.unfold(0, window, 1).mean(1)
    hit = (avg <= target).nonzero()
    return None if len(hit) == 0 else int(hit[0]) + window


def _mean_and_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    t = torch.tensor(values, dtype=torch.float64)
    return t.mean().item(), (t.std().item() if len(t) > 1 else 0.0)


def _default_kw(method: str) -> dict:
    return {"a": 0.25} if method in ("kaiming_normal", "kaiming_uniform", "scaled_orthogonal") else {}


def _one_run(method: str, seed: int, kw: dict, model_fn: Callable[[], nn.Module], optimizer_fn: Callable,
             train_data, test_data, epochs: int, batch_size: int, target_loss: float, progress) -> dict:
    """One seed of :func:`analyze`: initialize (seeded), measure the spectra, train; what the row averages."""
    from .config import seed_everything
    from .train import train

    generator = seed_everything(seed)  # before model_fn(): the model's own init draws come from the seed too
    model = initialize(model_fn(), method, generator=generator, **kw)
    stats = layer_stats(model)
    spectra = {k: sum(r[k] for r in stats) / len(stats) for k in ("condition_number", "spectral_norm", "erank_ratio")}
    start = time.perf_counter()
    history = train(model, optimizer_fn(model.parameters()), train_data, epochs, batch_size=batch_size,
                    test_data=test_data, seed=seed, progress=progress, desc=f"{method} seed {seed}")
    elapsed = time.perf_counter() - start
    hit = None if history.diverged else steps_to_target(history["loss"], target_loss)
    return dict(seed=seed, diverged_at=history.diverged_at, test_loss=history.final("test_loss"),
                test_acc=history.final("test_acc"), steps_to_target=hit, time=elapsed, **spectra)


def _summary(method: str, runs: list[dict]) -> dict:
    """The row of :func:`analyze` for ``method`` from its per-seed ``runs``."""
    from .train import mean_std

    diverged = [r["diverged_at"] for r in runs if r["diverged_at"] is not None]
    steps = [float(r["steps_to_target"]) for r in runs if r["steps_to_target"] is not None]
    status = "ok" if not diverged else mean_std([r["test_acc"] for r in runs], [r["diverged_at"] for r in runs],
                                                "{:.3f}")
    row = dict(method=method, status=status, diverged_at=diverged[0] if diverged else None, seeds=len(runs),
               reached=len(steps), runs=runs)
    for key, values in (("test_loss", [r["test_loss"] for r in runs if r["diverged_at"] is None]),
                        ("test_acc", [r["test_acc"] for r in runs if r["diverged_at"] is None]),
                        ("steps_to_target", steps)):
        row[key], row[f"{key}_std"] = _mean_and_std(values)
    row.update({k: sum(r[k] for r in runs) / len(runs)
                for k in ("condition_number", "spectral_norm", "erank_ratio", "time")})
    return row


def analyze(methods: Iterable[str], train_data, test_data, epochs: int, seeds: Sequence[int] = (0,),
            target_loss: float = 0.6, model_fn: Callable[[], nn.Module] | None = None,
            optimizer_fn: Callable | None = None, batch_size: int = 128, init_kw: dict | None = None,
            progress: bool | None = None, device: torch.device | str | None = None) -> list[dict]:
    """Train one model per (method, seed) under identical conditions (:func:`~dldna_lite.train.run_seeds`); one
    summary row per method.

    ``model_fn()`` builds the network on the device it computes on (default: *Deep Learning DNA*'s ``SimpleNetwork``
    with PReLU, built on ``device``, default the CPU; the data go to the model's device), ``optimizer_fn(params)``
    the optimizer (default: SGD, lr 0.01, momentum 0.9). ``init_kw[method]`` holds extra keywords for
    :func:`initialize` (default for every method: ``a=0.25``, PReLU's initial slope, where it applies).
    Row keys: ``method``; ``runs``, one dict per seed (``seed``, ``diverged_at``, ``test_loss``, ``test_acc``,
    ``steps_to_target``, the spectra below, ``time``); ``diverged_at`` (the step of the first seed that diverged,
    ``None`` if none did) and ``status`` ("ok", else :func:`~dldna_lite.train.mean_std` of the test accuracy:
    "diverged at step k" for a single seed, "2 of 3 seeds diverged (steps 4, 9); ..." for several);
    ``test_loss``/``test_acc`` and their ``*_std`` over the seeds that did not diverge (``None`` if all did),
    ``steps_to_target`` (mean over seeds that reached ``target_loss``; ``None`` if none did) and ``reached``
    (how many seeds did), the init spectra ``condition_number`` (mean over layers), ``spectral_norm`` (mean over
    layers) and ``erank_ratio`` (mean over layers), and ``time`` (s per run); all means over the seeds.
    """
    from .models import SimpleNetwork
    from .train import run_seeds

    model_fn = model_fn or (lambda: SimpleNetwork(act_func=nn.PReLU()).to(device or "cpu"))
    optimizer_fn = optimizer_fn or (lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9))
    init_kw = init_kw or {}
    rows = []
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"unknown init method {method!r}; choose one of {', '.join(METHODS)}")
        kw = init_kw.get(method, _default_kw(method))
        runs = run_seeds(lambda seed: _one_run(method, seed, kw, model_fn, optimizer_fn, train_data, test_data,
                                               epochs, batch_size, target_loss, progress),
                         seeds, progress=progress, desc=method)
        rows.append(_summary(method, runs))
    return rows


def results_table(rows: list[dict]) -> str:
    """The rows of :func:`analyze` as a Markdown table: every mean ± std (and every divergence, never a NaN) from
    :func:`~dldna_lite.train.mean_std` over the row's ``runs``."""
    from .train import mean_std

    head = ("| method | final test loss | test accuracy | steps to target | mean κ | mean σ_max | erank ratio "
            "| time (s) | status |\n|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        over_seeds = lambda key, fmt: mean_std([x[key] for x in r["runs"]], [x["diverged_at"] for x in r["runs"]], fmt)
        steps = [x["steps_to_target"] for x in r["runs"] if x["steps_to_target"] is not None]
        reached = (mean_std(steps, fmt="{:.0f}") + (f" ({r['reached']}/{r['seeds']} seeds)"
                                                    if 0 < r["reached"] < r["seeds"] else "")
                   if r["reached"] else "not reached")
        lines.append(f"| {r['method']} | {over_seeds('test_loss', '{:.3f}')} | {over_seeds('test_acc', '{:.3f}')} "
                     f"| {reached} | {r['condition_number']:.2f} | {r['spectral_norm']:.2f} | {r['erank_ratio']:.3f} "
                     f"| {r['time']:.1f} | {r['status']} |")
    return "\n".join(lines)


# symmetry breaking (a chapter-01 section) lives in its own module to keep this one short; it is part of `init`.
from .init_symmetry import constant_, symmetry_run, unit_spread  # noqa: E402  (needs the names above)
