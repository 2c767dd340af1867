r"""Stories from modern ML, as experiments that run on a CPU (chapter ``book/06-modern-stories``).

Four pieces, each a handful of plain functions:

* **Backprop by hand.** :func:`mlp_forward` / :func:`chain_rule_gradients` compute the gradients of a tanh MLP
  with the chain rule, layer by layer, so the chapter can check them against autograd.
* **Grokking** (Power et al. 2022). :func:`modular_addition` builds the table of :math:`a + b \bmod p`,
  :class:`ModularMLP` embeds both operands, and :func:`train_grokking` runs full-batch AdamW and records train and
  validation accuracy; :func:`first_step_reaching` reads the step of the jump off the history.
* **Double descent** (Belkin et al. 2019). :func:`random_features` and :func:`min_norm_fit` (minimum-norm least
  squares in float64); :func:`double_descent_curve` sweeps the number of features through the interpolation
  threshold (#features = #training samples).
* **Memory of backprop** (Chen et al. 2016). :func:`backprop` runs one backward pass of a chain of blocks with
  three strategies, ``"vanilla"`` (store every activation), ``"memory_poor"`` (store only the input, recompute
  everything: :math:`O(n^2)` block evaluations) and ``"checkpoint"`` (store every :math:`k`-th activation,
  recompute one segment at a time), while an :class:`ActivationMeter` counts the activations alive at once.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .train import progress_enabled

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


def chain_rule_gradients(layers: Sequence[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor, y: torch.Tensor
                         ) -> tuple[float, list[tuple[torch.Tensor, torch.Tensor]]]:
    r"""Loss :math:`\frac{1}{N}\sum_i \lVert f(x_i) - y_i\rVert^2` of :func:`mlp_forward` and its gradients by the
    chain rule (no autograd).

    Backward recursion with :math:`\delta_L = \tfrac{2}{N}(h_L - y)`:
    :math:`\nabla W_\ell = \delta_\ell^\top h_{\ell-1}`, :math:`\nabla b_\ell = \mathbf 1^\top \delta_\ell`,
    :math:`\delta_{\ell-1} = (\delta_\ell W_\ell) \odot (1 - h_{\ell-1}^2)`.
    Returns ``(loss, [(dW [out, in], db [out]), ...])``.
    """
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


# ============================================================================================ grokking
def modular_addition(p: int, train_fraction: float, seed: int = 0):
    r"""All :math:`p^2` pairs ``(a, b)`` labelled :math:`(a + b) \bmod p`, split at random into train and validation.

    Returns ``((X_train [n, 2], y_train [n]), (X_val [p² − n, 2], y_val))``, int64, with
    ``n = round(train_fraction · p²)``.
    """
    if not isinstance(p, int) or p < 2:
        raise ValueError(f"p must be an int >= 2, got {p!r}")
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    X = torch.stack([a.flatten(), b.flatten()], 1)
    y = (X[:, 0] + X[:, 1]) % p
    perm = torch.randperm(p * p, generator=torch.Generator().manual_seed(seed))
    n = round(train_fraction * p * p)
    return (X[perm[:n]], y[perm[:n]]), (X[perm[n:]], y[perm[n:]])


class ModularMLP(nn.Module):
    """One embedding table for both operands (``p → dim``), concatenated, then ``Linear(2·dim, width) → ReLU →
    Linear(width, p)``. ``[N, 2]`` int64 → ``[N, p]`` logits."""

    def __init__(self, p: int, dim: int = 64, width: int = 128):
        super().__init__()
        self.embed = nn.Embedding(p, dim)
        self.mlp = nn.Sequential(nn.Linear(2 * dim, width), nn.ReLU(), nn.Linear(width, p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.embed(x).flatten(1))


def eval_schedule(steps: int, n_log: int = 60, every: int = 50) -> np.ndarray:
    """Steps at which to evaluate: log-spaced early on (for a log-step axis) plus every ``every`` steps."""
    log = np.unique(np.geomspace(1, steps, n_log).round().astype(int))
    return np.unique(np.r_[log, np.arange(every, steps + 1, every), steps])


@torch.no_grad()
def _loss_acc(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    logits = model(X)
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def train_grokking(p: int, train_fraction: float, steps: int, lr: float = 1e-3, weight_decay: float = 1.0,
                   betas=(0.9, 0.98), seed: int = 0, dim: int = 64, width: int = 128, eval_every: int = 50,
                   optimizer: type | None = None, stop_at: float | None = None, progress: bool | None = None) -> dict:
    """Full-batch AdamW on :func:`modular_addition`, evaluated on :func:`eval_schedule`.

    A live notebook shows a ``tqdm`` bar over the steps (``progress``, default ``$DLDNA_PROGRESS``; off in the book
    build and the tests).

    ``optimizer`` defaults to ``torch.optim.AdamW`` (any class with its signature works, e.g.
    ``dldna_lite.optim.AdamW``). With ``stop_at``, training stops once validation accuracy reaches it.
    Returns ``dict(step, train_loss, train_acc, val_loss, val_acc, weight_norm)`` (numpy arrays, one entry per
    evaluation; ``weight_norm`` is ‖θ‖₂ over all parameters),
    ``time`` (s), ``steps_run``, ``diverged_at`` (step or ``None``) and the ``config``.
    """
    from .config import seed_everything

    (X_tr, y_tr), (X_val, y_val) = modular_addition(p, train_fraction, seed=seed)
    seed_everything(seed)
    model = ModularMLP(p, dim, width)
    opt = (optimizer or torch.optim.AdamW)(model.parameters(), lr=lr, betas=betas, weight_decay=weight_decay)
    todo = set(eval_schedule(steps, every=eval_every).tolist())
    rows, diverged_at, step = [], None, 0
    # Without weight decay the logits grow and the gradients of a memorised training set underflow into denormal
    # floats, which x86 CPUs process many times slower. We flush them to zero (nothing visible changes); the flag
    # holds for the calling thread only, so the small model runs on one thread while it is set.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    start = time.perf_counter()
    bar = tqdm(range(1, steps + 1), desc=f"grokking, weight decay {weight_decay:g}", leave=False,
               disable=not progress_enabled(progress))
    try:
        for step in bar:
            loss = F.cross_entropy(model(X_tr), y_tr)
            if not torch.isfinite(loss):
                diverged_at = step
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step in todo:
                norm = torch.sqrt(sum(q.detach().pow(2).sum() for q in model.parameters())).item()
                rows.append((step, *_loss_acc(model, X_tr, y_tr), *_loss_acc(model, X_val, y_val), norm))
                if stop_at is not None and rows[-1][4] >= stop_at:
                    break
    finally:
        bar.close()
        torch.set_flush_denormal(False)  # PyTorch's defaults
        torch.set_num_threads(threads)
    cols = np.array(rows, dtype=float).reshape(-1, 6)
    return dict(step=cols[:, 0].astype(int), train_loss=cols[:, 1], train_acc=cols[:, 2], val_loss=cols[:, 3],
                val_acc=cols[:, 4], weight_norm=cols[:, 5], time=time.perf_counter() - start, steps_run=step,
                diverged_at=diverged_at,
                config=dict(p=p, train_fraction=train_fraction, lr=lr, weight_decay=weight_decay, seed=seed,
                            n_train=len(y_tr), n_val=len(y_val)))


def first_step_reaching(steps, values, threshold: float) -> int | None:
    """The first step at which ``values`` is ``>= threshold`` and stays so until the end; ``None`` if never."""
    values = np.asarray(values, dtype=float)
    below = np.flatnonzero(values < threshold)
    first = 0 if below.size == 0 else below[-1] + 1
    return int(np.asarray(steps)[first]) if first < len(values) else None


# ============================================================================================ double descent
def random_features(X: torch.Tensor, n_features: int, generator: torch.Generator | None = None,
                    mean: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    r"""ReLU random features :math:`\phi(x) = \max(0, (x - \mu) W)`, :math:`W_{ij} \sim N(0, 1/d)`, in float64.

    ``X``: ``[N, d]``. Returns ``(W [d, n_features], mean [d])``; apply them with :func:`apply_features`.
    ``mean`` defaults to the mean of ``X`` (pass the training mean for test data).
    """
    d = X.shape[1]
    W = torch.randn(d, n_features, generator=generator, dtype=torch.float64) / math.sqrt(d)
    return W, (X.double().mean(0) if mean is None else mean)


def apply_features(X: torch.Tensor, W: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """``relu((X − mean) @ W)`` in float64: ``[N, d] → [N, K]``."""
    return torch.relu((X.double() - mean) @ W)


def min_norm_fit(Phi: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    r"""The minimum-norm least-squares solution :math:`B = \Phi^+ Y` (``[K, C]``) of
    :math:`\min \lVert \Phi B - Y\rVert`.

    Below the threshold (K < N) it is the ordinary least-squares fit; above it, the interpolating solution of
    smallest Frobenius norm. SVD-based (``gelsd``), float64.
    """
    return torch.linalg.lstsq(Phi.double(), Y.double(), driver="gelsd").solution


def noisy_labels(y: torch.Tensor, fraction: float, n_classes: int = 10, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
    """A copy of ``y`` where a random ``fraction`` of the entries is replaced by a *different* random class."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    y = y.clone()
    flip = torch.rand(len(y), generator=generator) < fraction
    shift = torch.randint(1, n_classes, (int(flip.sum()),), generator=generator)
    y[flip] = (y[flip] + shift) % n_classes
    return y


def double_descent_curve(train_data, test_data, feature_counts: Sequence[int], seed: int = 0,
                         label_noise: float = 0.0, n_classes: int = 10) -> dict:
    """Train/test error and test MSE of :func:`min_norm_fit` on the first ``k`` of ``max(feature_counts)`` random
    features, for each ``k`` (nested models: one draw of ``W``).

    ``train_data``/``test_data``: ``(X [N, d], y [N])``. With ``label_noise`` a fraction of the *training* labels is
    flipped (:func:`noisy_labels`). Returns numpy arrays ``features, train_error, test_error, test_mse,
    weight_norm`` plus ``n_train`` (the interpolation threshold) and ``time`` (s).
    """
    start = time.perf_counter()
    (X_tr, y_tr), (X_te, y_te) = train_data, test_data
    gen = torch.Generator().manual_seed(seed)
    if label_noise:
        y_tr = noisy_labels(y_tr, label_noise, n_classes, generator=gen)
    ks = sorted(int(k) for k in feature_counts)
    W, mean = random_features(X_tr, ks[-1], generator=gen)
    P_tr, P_te = apply_features(X_tr, W, mean), apply_features(X_te, W, mean)
    Y_tr, Y_te = F.one_hot(y_tr, n_classes).double(), F.one_hot(y_te, n_classes).double()
    rows = []
    for k in ks:
        B = min_norm_fit(P_tr[:, :k], Y_tr)
        out_tr, out_te = P_tr[:, :k] @ B, P_te[:, :k] @ B
        rows.append((k, out_tr.argmax(1).ne(y_tr).double().mean().item(),
                     out_te.argmax(1).ne(y_te).double().mean().item(),
                     (out_te - Y_te).pow(2).sum(1).mean().item(), B.norm().item()))
    cols = np.array(rows)
    return dict(features=cols[:, 0].astype(int), train_error=cols[:, 1], test_error=cols[:, 2],
                test_mse=cols[:, 3], weight_norm=cols[:, 4], n_train=len(y_tr), time=time.perf_counter() - start)


def feature_grid(n_train: int, max_features: int, n_points: int = 17) -> list[int]:
    """Feature counts for a sweep: log-spaced from ``n_train/20`` to ``max_features``, dense around ``n_train``
    (±5%, ±20%) and including ``n_train`` itself."""
    logs = np.geomspace(max(2, n_train // 20), max_features, n_points)
    near = n_train * np.array([0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25])
    return sorted({int(round(k)) for k in np.r_[logs, near] if 1 <= round(k) <= max_features})


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


def chain_mlp(n_layers: int, width: int = 256, seed: int = 0, dtype=torch.float32) -> nn.Sequential:
    """``n_layers`` blocks ``Linear(width, width) → ReLU``, each block one ``nn.Sequential`` (one node of the
    chain)."""
    if not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(f"n_layers must be a positive int, got {n_layers!r}")
    gen = torch.Generator().manual_seed(seed)
    blocks = []
    for _ in range(n_layers):
        lin = nn.Linear(width, width).to(dtype)
        with torch.no_grad():  # Kaiming-normal weights, zero bias: the signal keeps its scale through the chain
            lin.weight.copy_(torch.randn(width, width, generator=gen, dtype=dtype) * math.sqrt(2 / width))
            lin.bias.zero_()
        blocks.append(nn.Sequential(lin, nn.ReLU()))
    return nn.Sequential(*blocks)


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


def backprop(model: nn.Sequential, x: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor],
             strategy: str = "vanilla", segments: int | None = None, meter: ActivationMeter | None = None) -> dict:
    r"""One forward and backward pass through the chain ``model`` (an ``nn.Sequential`` of ``n`` blocks);
    gradients are *accumulated* into the parameters' ``.grad`` as ``loss.backward()`` would.

    Strategies (``x`` is stored by all of them):

    * ``"vanilla"``: autograd stores every block's activations; :math:`n` block evaluations.
    * ``"memory_poor"``: nothing but ``x`` is stored; to back-propagate through block :math:`i` its input is
      recomputed from ``x`` (no grad), so :math:`n(n+1)/2` evaluations and :math:`O(1)` stored activations.
    * ``"checkpoint"``: the forward pass (no grad) keeps only the input of each of ``segments`` segments (default
      :math:`\lceil\sqrt n\,\rceil`); the last segment runs with grad at once, the others are recomputed with grad
      one at a time during the backward pass: about :math:`2n` evaluations, ``segments`` + segment length stored.
    * ``"torch_checkpoint"``: the same with ``torch.utils.checkpoint.checkpoint_sequential`` (``use_reentrant=False``).

    Returns ``dict(loss, evaluations, peak, peak_bytes)`` (peak = stored activations alive at once, from
    ``meter`` or a fresh :class:`ActivationMeter`).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    blocks, n = list(model), len(model)
    meter = meter or ActivationMeter(list(model.parameters()))
    segments = segments or math.ceil(math.sqrt(n))
    evals = 0
    if strategy == "vanilla":
        with meter.saving():
            loss = loss_fn(_run(blocks, x, 0, n))
        loss.backward()
        evals = n
    elif strategy == "torch_checkpoint":
        from torch.utils.checkpoint import checkpoint_sequential

        with meter.saving():
            loss = loss_fn(checkpoint_sequential(model, segments, x, use_reentrant=False))
        loss.backward()
        evals = None  # torch does not report it
    elif strategy == "memory_poor":
        stored = meter.hold(x)
        grad = None
        for i in range(n - 1, -1, -1):
            with torch.no_grad():
                h = _run(blocks, stored.tensor, 0, i)
            evals += i + 1
            current = meter.hold(h)  # the one recomputed activation alive now
            h = h.detach().requires_grad_(i > 0)
            with meter.saving():
                out = blocks[i](h)
                if grad is None:
                    loss = loss_fn(out)
            (loss if grad is None else out).backward(None if grad is None else grad)
            grad = h.grad
            del out, current, h
        del stored
    else:  # checkpoint
        bounds = segment_bounds(n, segments)
        kept = [meter.hold(x)]
        h = x
        with torch.no_grad():
            for start, stop in bounds[:-1]:
                h = _run(blocks, h, start, stop)
                kept.append(meter.hold(h))
        evals += bounds[-1][0]
        grad = None
        for j in range(len(bounds) - 1, -1, -1):
            start, stop = bounds[j]
            h = kept[j].tensor.detach().requires_grad_(j > 0)
            with meter.saving():
                out = _run(blocks, h, start, stop)
                if grad is None:
                    loss = loss_fn(out)
            evals += stop - start
            (loss if grad is None else out).backward(None if grad is None else grad)
            grad = h.grad
            del out, h
            kept.pop()
    return dict(loss=loss.item(), evaluations=evals, peak=meter.peak, peak_bytes=meter.peak_bytes)


def backprop_profile(depths: Sequence[int], strategies: Sequence[str] = ("vanilla", "checkpoint", "memory_poor"),
                     width: int = 256, batch: int = 128, repeats: int = 3, seed: int = 0) -> dict:
    """Peak stored activations, block evaluations and best-of-``repeats`` wall time (s) of :func:`backprop` for each
    strategy and depth. Returns ``{strategy: dict(depth=[...], peak=[...], evaluations=[...], time=[...])}``."""
    x = torch.randn(batch, width, generator=torch.Generator().manual_seed(seed))
    out = {s: dict(depth=[], peak=[], peak_bytes=[], evaluations=[], time=[]) for s in strategies}
    for n in depths:
        model = chain_mlp(n, width, seed=seed)
        for s in strategies:
            times = []
            for _ in range(repeats + 1):  # the first run warms up
                model.zero_grad(set_to_none=True)
                t0 = time.perf_counter()
                res = backprop(model, x, lambda o: o.pow(2).mean(), s)
                times.append(time.perf_counter() - t0)
            for key in ("peak", "peak_bytes", "evaluations"):
                out[s][key].append(res[key])
            out[s]["depth"].append(n)
            out[s]["time"].append(min(times[1:]))
    return out


# ============================================================================================ vanishing gradients
def layer_grad_norms(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> dict[str, np.ndarray]:
    r"""Gradient norms per ``nn.Linear`` layer of ``model`` (first layer first) for the cross-entropy on ``(x, y)``:

    * ``"preact"``: :math:`\lVert \partial L / \partial z_\ell \rVert_F`, the backward signal :math:`\delta_\ell` at
      the layer's output (pre-activation), ``[n_linear]``;
    * ``"weight"``: :math:`\lVert \partial L / \partial W_\ell \rVert_F`, ``[n_linear]``.

    The model's ``.grad`` fields are left untouched.
    """
    zs, h = [], x
    for module in model:
        h = module(h)
        if isinstance(module, nn.Linear):
            zs.append(h)
    weights = [m.weight for m in model if isinstance(m, nn.Linear)]
    grads = torch.autograd.grad(F.cross_entropy(h, y), zs + weights)
    norms = np.array([g.norm().item() for g in grads])
    return dict(preact=norms[:len(zs)], weight=norms[len(zs):])


def scaled_relu_mlp(depth: int, width: int, gain: float, d_in: int = 784, n_classes: int = 10, seed: int = 0
                    ) -> nn.Sequential:
    r"""``depth`` Linear layers (``d_in → width → ... → width → n_classes``) with ReLU between them, weights
    :math:`N(0, \text{gain}^2 \cdot 2/\text{fan\_in})` (``gain = 1`` is Kaiming's rule) and zero biases."""
    gen = torch.Generator().manual_seed(seed)
    dims = [d_in] + [width] * (depth - 1) + [n_classes]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        lin = nn.Linear(a, b)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(b, a, generator=gen) * gain * math.sqrt(2 / a))
            lin.bias.zero_()
        layers += [lin, nn.ReLU()] if i < depth - 1 else [lin]
    return nn.Sequential(*layers)
