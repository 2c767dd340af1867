r"""Backpropagation: the chain rule by hand, vanishing gradients, and what backprop keeps in memory (chapter
``book/07-backprop-memory``).

* **Backprop by hand.** :func:`mlp_forward` / :func:`chain_rule_gradients` compute the gradients of a tanh MLP
  with the chain rule, layer by layer, so the chapter can check them against autograd;
  :func:`softmax_cross_entropy_grad` is the cross-entropy's gradient at the logits (``book/06-modern-stories``).
* **Vanishing gradients.** :func:`layer_grad_norms` measures the backward signal and the weight gradient per layer.
* **Memory of backprop** (Chen et al. 2016). :func:`backprop` runs one backward pass of a chain of blocks with
  three strategies, ``"vanilla"`` (store every activation), ``"memory_poor"`` (store only the input, recompute
  everything: :math:`O(n^2)` block evaluations) and ``"checkpoint"`` (store every :math:`k`-th activation,
  recompute one segment at a time), while an :class:`ActivationMeter` counts the activations alive at once;
  :func:`backprop_profile` measures them against depth and :func:`loglog_slope` fits the power laws; on a CUDA
  device :func:`cuda_peak_bytes` also reads what the allocator really held (``torch.cuda.max_memory_allocated``).

Devices: :func:`layer_grad_norms` and :func:`backprop` compute on the model's device and move the data there;
:func:`backprop_profile` builds its chains and takes ``device=`` (inputs and weights are drawn on the CPU and moved).

The chains are built by :func:`dldna_lite.models.chain_mlp`, the deep ReLU networks by
:func:`dldna_lite.models.scaled_relu_mlp`.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .config import device_of
from .models import chain_mlp
from .train import on_device_of

STRATEGIES = ("vanilla", "memory_poor", "checkpoint", "torch_checkpoint")


# ============================================================================================ backprop by hand
def mlp_forward(layers: Sequence[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor) -> list[torch.Tensor]:
    r"""Activations of a tanh MLP: ``[h_0 = x, h_1, ..., h_L]`` with :math:`h_\ell = \tanh(W_\ell h_{\ell-1} + b_\ell)`
    for hidden layers and a linear last layer.

    ``layers``: ``[(W [out, in], b [out]), ...]``; ``x``: ``[N, in]``. Returns ``L + 1`` tensors ``[N, width_l]``.
    """
    hs = [x]
    for i, (W, b) in enumerate(layers):
        z = hs[-1] @ W.T + b
        hs.append(z if i == len(layers) - 1 else torch.tanh(z))
    return hs


def chain_rule_gradients(layers: Sequence[tuple[torch.Tensor, torch.Tensor]], data
                         ) -> tuple[float, list[tuple[torch.Tensor, torch.Tensor]]]:
    r"""Loss :math:`\frac{1}{N}\sum_i \lVert f(x_i) - y_i\rVert^2` of :func:`mlp_forward` on ``data = (x, y)`` and
    its gradients by the chain rule (no autograd).

    Backward recursion with :math:`\delta_L = \tfrac{2}{N}(h_L - y)`:
    :math:`\nabla W_\ell = \delta_\ell^\top h_{\ell-1}`, :math:`\nabla b_\ell = \mathbf 1^\top \delta_\ell`,
    :math:`\delta_{\ell-1} = (\delta_\ell W_\ell) \odot (1 - h_{\ell-1}^2)`.
    Returns ``(loss, [(dW [out, in], db [out]), ...])``.
    """
    x, y = data
    hs = mlp_forward(layers, x)
    n = x.shape[0]
    loss = (hs[-1] - y).pow(2).sum() / n
    delta = 2 * (hs[-1] - y) / n                                   # dL/dz_L, [N, out]
    grads = []
    for ell in range(len(layers) - 1, -1, -1):
        W, _ = layers[ell]
        grads.append((delta.T @ hs[ell], delta.sum(0)))
        if ell > 0:
            delta = (delta @ W) * (1 - hs[ell].pow(2))             # tanh'(z) = 1 - tanh(z)^2
    return loss.item(), grads[::-1]


def softmax_cross_entropy_grad(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Gradient of the mean cross-entropy with respect to the logits: :math:`(\mathrm{softmax}(z) - e_y)/N`.

    ``logits``: ``[N, C]``, ``y``: int64 ``[N]``. Returns ``[N, C]``.
    """
    return (torch.softmax(logits, 1) - F.one_hot(y, logits.shape[1]).to(logits.dtype)) / logits.shape[0]


# ============================================================================================ vanishing gradients
def layer_grad_norms(model: nn.Sequential, data, *, loss_fn: Callable = F.cross_entropy) -> dict[str, np.ndarray]:
    r"""Gradient norms per ``nn.Linear`` layer of ``model`` (first layer first) for ``loss_fn`` on ``data = (x, y)``:

    * ``"preact"``: :math:`\lVert \partial L / \partial z_\ell \rVert_F`, the backward signal :math:`\delta_\ell` at
      the layer's output (pre-activation), ``[n_linear]``;
    * ``"weight"``: :math:`\lVert \partial L / \partial W_\ell \rVert_F`, ``[n_linear]``.

    The model's ``.grad`` fields are left untouched. Computed on the model's device (``data`` is moved there).
    """
    (x, y), zs = on_device_of(model, data), []
    h = x
    for module in model:
        h = module(h)
        if isinstance(module, nn.Linear):
            zs.append(h)
    weights = [m.weight for m in model if isinstance(m, nn.Linear)]
    grads = torch.autograd.grad(loss_fn(h, y), zs + weights)
    norms = np.array([g.norm().item() for g in grads])
    return dict(preact=norms[:len(zs)], weight=norms[len(zs):])


# ============================================================================================ memory of backprop
class _Box:
    """What the meter hands autograd instead of a saved tensor; dying releases one reference."""

    __slots__ = ("meter", "ptr", "tensor")

    def __init__(self, meter: "ActivationMeter", tensor: torch.Tensor):
        self.meter, self.tensor = meter, tensor
        self.ptr = tensor.untyped_storage().data_ptr()
        meter._acquire(self.ptr, tensor.untyped_storage().nbytes())

    def __del__(self):
        self.meter._release(self.ptr)


class ActivationMeter:
    """Counts the distinct activation storages alive at once: tensors autograd saves for backward (seen through
    ``torch.autograd.graph.saved_tensors_hooks``, used as ``with meter.saving(): ...``) plus checkpoints a strategy
    keeps itself (:meth:`hold`). Parameters are skipped; a storage saved twice (a ReLU output is also the next
    Linear's input) counts once. ``peak`` / ``peak_bytes`` are the maxima over the meter's life.

    Gradient buffers are not counted: every strategy needs the same few of them.
    """

    def __init__(self, params: Sequence[torch.Tensor] = ()):
        self.skip = {p.untyped_storage().data_ptr() for p in params}
        self.refs: dict[int, int] = {}
        self.sizes: dict[int, int] = {}
        self.live = self.live_bytes = self.peak = self.peak_bytes = 0

    def _acquire(self, ptr: int, nbytes: int):
        if self.refs.get(ptr, 0) == 0:
            self.refs[ptr], self.sizes[ptr] = 0, nbytes
            self.live += 1
            self.live_bytes += nbytes
            self.peak, self.peak_bytes = max(self.peak, self.live), max(self.peak_bytes, self.live_bytes)
        self.refs[ptr] += 1

    def _release(self, ptr: int):
        self.refs[ptr] -= 1
        if self.refs[ptr] == 0:
            del self.refs[ptr]
            self.live -= 1
            self.live_bytes -= self.sizes.pop(ptr)

    def hold(self, tensor: torch.Tensor) -> _Box:
        """Count ``tensor`` as stored until the returned box is dropped (read it back as ``box.tensor``)."""
        return _Box(self, tensor)

    def saving(self):
        """Context manager: count what autograd saves for backward inside it."""
        def pack(t):
            if t.untyped_storage().data_ptr() in self.skip:
                return t
            return _Box(self, t)

        def unpack(packed):
            return packed.tensor if isinstance(packed, _Box) else packed

        return torch.autograd.graph.saved_tensors_hooks(pack, unpack)


def segment_bounds(n: int, segments: int) -> list[tuple[int, int]]:
    """Split ``range(n)`` into ``segments`` contiguous pieces of near-equal length: ``[(start, stop), ...]``."""
    if not 1 <= segments <= n:
        raise ValueError(f"segments must be between 1 and n = {n}, got {segments!r}")
    edges = np.linspace(0, n, segments + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _run(blocks, x, start, stop):
    for i in range(start, stop):
        x = blocks[i](x)
    return x


def _backward_segment(blocks, stored: torch.Tensor, start: int, stop: int, targets, loss_fn, grad, meter):
    """Run ``blocks[start:stop]`` from the stored input with autograd recording (counted by ``meter``) and
    back-propagate: from the loss when ``grad`` is ``None`` (the last segment), else from ``grad`` at the segment's
    output. Returns ``(loss or None, gradient at the segment's input)``."""
    h = stored.detach().requires_grad_(start > 0)
    with meter.saving():
        out = _run(blocks, h, start, stop)
    loss = loss_fn(out, targets) if grad is None else None
    (loss if grad is None else out).backward(grad)
    return loss, h.grad


def _vanilla(model, x, targets, loss_fn, meter, segments):
    with meter.saving():
        out = _run(list(model), x, 0, len(model))
    loss = loss_fn(out, targets)
    loss.backward()
    return loss, len(model)


def _torch_checkpoint(model, x, targets, loss_fn, meter, segments):
    from torch.utils.checkpoint import checkpoint_sequential

    with meter.saving():
        out = checkpoint_sequential(model, segments, x, use_reentrant=False)
    loss = loss_fn(out, targets)
    loss.backward()
    return loss, None  # torch does not report the evaluations


def _memory_poor(model, x, targets, loss_fn, meter, segments):
    blocks, n = list(model), len(model)
    stored, grad, loss, evals = meter.hold(x), None, None, 0
    for i in range(n - 1, -1, -1):
        with torch.no_grad():
            h = _run(blocks, stored.tensor, 0, i)
        evals += i + 1
        current = meter.hold(h)  # the one recomputed activation alive now
        first, grad = _backward_segment(blocks, h, i, i + 1, targets, loss_fn, grad, meter)
        loss = loss if first is None else first
        del current, h
    return loss, evals


def _checkpoint(model, x, targets, loss_fn, meter, segments):
    blocks, bounds = list(model), segment_bounds(len(model), segments)
    kept, h = [meter.hold(x)], x
    with torch.no_grad():
        for start, stop in bounds[:-1]:
            h = _run(blocks, h, start, stop)
            kept.append(meter.hold(h))
    evals, grad, loss = bounds[-1][0], None, None
    for start, stop in reversed(bounds):
        first, grad = _backward_segment(blocks, kept[-1].tensor, start, stop, targets, loss_fn, grad, meter)
        loss = loss if first is None else first
        evals += stop - start
        kept.pop()
    return loss, evals


_STRATEGY = {"vanilla": _vanilla, "memory_poor": _memory_poor, "checkpoint": _checkpoint,
             "torch_checkpoint": _torch_checkpoint}


def backprop(model: nn.Sequential, data, *, loss_fn: Callable = F.mse_loss, strategy: str = "vanilla",
             segments: int | None = None, meter: ActivationMeter | None = None) -> dict:
    r"""One forward and backward pass of ``loss_fn(model(x), y)``, ``data = (x, y)``, through the chain ``model`` (an
    ``nn.Sequential`` of ``n`` blocks); gradients are *accumulated* into the parameters' ``.grad`` as
    ``loss.backward()`` would.

    Strategies (``x`` is stored by all of them):

    * ``"vanilla"``: autograd stores every block's activations; :math:`n` block evaluations.
    * ``"memory_poor"``: nothing but ``x`` is stored; to back-propagate through block :math:`i` its input is
      recomputed from ``x`` (no grad), so :math:`n(n+1)/2` evaluations and :math:`O(1)` stored activations.
    * ``"checkpoint"``: the forward pass (no grad) keeps only the input of each of ``segments`` segments (default
      :math:`\lceil\sqrt n\,\rceil`); the last segment runs with grad at once, the others are recomputed with grad
      one at a time during the backward pass: about :math:`2n` evaluations, ``segments`` + segment length stored.
    * ``"torch_checkpoint"``: the same with ``torch.utils.checkpoint.checkpoint_sequential`` (``use_reentrant=False``).

    Returns ``dict(loss, evaluations, peak, peak_bytes)`` (peak = stored activations of the chain alive at once, from
    ``meter`` or a fresh :class:`ActivationMeter`; what ``loss_fn`` itself saves is not counted). Runs on the model's
    device (``data`` is moved there).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    x, targets = on_device_of(model, data) if data[1] is not None else (data[0].to(device_of(model)), None)
    meter = meter or ActivationMeter(list(model.parameters()))
    segments = segments or math.ceil(math.sqrt(len(model)))
    loss, evals = _STRATEGY[strategy](model, x, targets, loss_fn, meter, segments)
    return dict(loss=loss.item(), evaluations=evals, peak=meter.peak, peak_bytes=meter.peak_bytes)


def cuda_peak_bytes(model: nn.Sequential, data, *, strategy: str = "vanilla", segments: int | None = None
                    ) -> int | None:
    """Bytes the CUDA allocator held at its peak during one :func:`backprop` of ``model`` (on a CUDA device) beyond
    what was allocated before (parameters, inputs): ``torch.cuda.max_memory_allocated`` after
    ``torch.cuda.reset_peak_memory_stats``. It includes the gradient buffers, which every strategy needs alike.
    ``None`` when the model is not on a CUDA device (PyTorch keeps no such statistic for the CPU)."""
    device = device_of(model)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    x, targets = data[0].to(device), None if data[1] is None else data[1].to(device)  # before the measurement
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    backprop(model, (x, targets), strategy=strategy, segments=segments)
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device) - before)


def _timed_backprop(model, data, strategy: str, device: torch.device) -> tuple[dict, float]:
    model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    res = backprop(model, data, strategy=strategy)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return res, time.perf_counter() - t0


def backprop_profile(depths: Sequence[int], *, strategies: Sequence[str] = ("vanilla", "checkpoint", "memory_poor"),
                     width: int = 256, batch: int = 128, repeats: int = 3, seed: int = 0,
                     device: torch.device | str | None = None) -> dict:
    """Peak stored activations, block evaluations and best-of-``repeats`` wall time (s) of :func:`backprop` (the mean
    squared output as the loss) for each strategy and depth, on :func:`dldna_lite.models.chain_mlp` chains built on
    the CPU and moved to ``device`` (default: the CPU) with the input.
    Returns ``{strategy: dict(depth=[...], peak=[...], peak_bytes=[...], evaluations=[...], time=[...])}``; on a CUDA
    device each also has ``cuda_bytes=[...]`` (:func:`cuda_peak_bytes`)."""
    device = torch.device("cpu") if device is None else torch.device(device)
    x = torch.randn(batch, width, generator=torch.Generator().manual_seed(seed)).to(device)
    data = (x, torch.zeros_like(x))
    keys = ("depth", "peak", "peak_bytes", "evaluations", "time") + (("cuda_bytes",) if device.type == "cuda" else ())
    out = {s: {k: [] for k in keys} for s in strategies}
    for n in depths:
        model = chain_mlp(depth=n, width=width, seed=seed).to(device)
        for s in strategies:
            runs = [_timed_backprop(model, data, s, device) for _ in range(repeats + 1)]  # the first warms up
            for key in ("peak", "peak_bytes", "evaluations"):
                out[s][key].append(runs[-1][0][key])
            out[s]["depth"].append(n)
            out[s]["time"].append(min(t for _, t in runs[1:]))
            if "cuda_bytes" in out[s]:
                out[s]["cuda_bytes"].append(cuda_peak_bytes(model, data, strategy=s))
    return out


def loglog_slope(ns, values) -> float:
    """Least-squares slope of ``log(values)`` against ``log(ns)``, rounded to 2 decimals (the exponent ``a`` of a
    power law ``c n^a``)."""
    return round(float(np.polyfit(np.log(ns), np.log(values), 1)[0]), 2) + 0.0  # + 0.0 turns -0.0 into 0.0
