"""The scan engine: the loss at many points ``θ* + Σ_c x_c d_c`` at once (chapters 03 and 04).

The slices of chapter 03 are

.. math::

    f(\\alpha) = L(\\theta^* + \\alpha\\,\\delta), \\qquad f(\\alpha, \\beta) = L(\\theta^* + \\alpha\\,\\delta + \\beta\\,\\eta),

along directions from :mod:`dldna_lite.landscape.directions`, or the segment between two checkpoints
(:func:`interpolate`, Goodfellow et al. 2015); chapter 04 scans its PCA and random planes with the same engine.

Speed: one working copy of the model for a whole scan (never one per grid point). The parameters of a batch of
``G`` grid points are formed with vectorised ops as stacked tensors ``[G, ...]`` and the network runs once for all
of them with ``torch.func.vmap`` over ``functional_call`` (batches sized to stay in cache). When the network is a
``Sequential`` whose first parametrised layer is a ``Linear`` (the book's MLPs, and ``ResidualMLP`` through its
``as_sequential`` view), that layer is linear in the
offset, so

.. math:: X (W + \\alpha D_1 + \\beta D_2)^\\top = XW^\\top + \\alpha\\, XD_1^\\top + \\beta\\, XD_2^\\top

is formed once from three products (then one ``[G, 3] x [3, N H]`` product per batch of points) and only the
(small) rest of the network runs per point. When that rest is ``Linear`` layers and elementwise activations and the
loss is cross-entropy (``F.cross_entropy``, or ``nn.CrossEntropyLoss()`` with its defaults: the book's MLPs), it runs
as batched matrix products ``[G, h', h] x [G, h, n]`` on blocks of ``n`` images sized to stay in cache (on a GPU: to a
share of its free memory, :func:`~dldna_lite.landscape.kernels.block_budget`), without vmap, in reused buffers
(:mod:`dldna_lite.landscape.kernels`). Default ``nn.MSELoss()`` runs as ``F.mse_loss``.
``benchmarks/landscape_scan.py`` compares with the in-place loop over points of the ``loss-landscapes`` library.
All scans run in eval mode (dropout off) and leave the model's own parameters unchanged. Every function reads
``f(model, data, <what it is about>, *, loss_fn=F.cross_entropy, ...)`` with ``data = (X, y)`` one full batch.
"""
from __future__ import annotations

import copy
import warnings
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from ..data import check_data
from ..train import on_device_of, progress_enabled
from .directions import check_direction
from .kernels import ELEMENTWISE, activate_, block_budget, cross_entropy_, standard_loss

__all__ = ["point_evaluator", "evaluate_points", "scan_1d", "scan_2d", "interpolate", "nonconvex_fraction"]

#: Grid points per batch of the plain-MLP fast path (a 2D scan passes one row of up to this many points).
POINTS_PER_BATCH = 64


# ------------------------------------------------------------------------------------------------- scan engine
def _loss_acc(out: torch.Tensor, y: torch.Tensor, loss_fn: Callable) -> tuple[float, float]:
    loss = loss_fn(out, y).item()
    acc = (out.argmax(1) == y).double().mean().item() if y.dim() == 1 and out.dim() == 2 else float("nan")
    return loss, acc


def _sequential(model: nn.Module) -> nn.Sequential | None:
    """``model`` as a Sequential when its forward is just one (``nn.Sequential``, ``SimpleNetwork``, or
    ``ResidualMLP.as_sequential()``, a view that shares its parameters)."""
    if type(model).forward is nn.Sequential.forward and isinstance(model, nn.Sequential):
        return model
    from ..models import ResidualMLP, SimpleNetwork

    if type(model) is SimpleNetwork:
        return model.layers
    if type(model) is ResidualMLP:
        return model.as_sequential()
    return None


class _Evaluator:
    """Loss/accuracy at ``origin + Σ_c coords[c] d_c`` for a batch of grid points at once.

    One working copy of the model; the perturbed parameters of ``G`` points are stacked ``[G, ...]`` and the network
    is evaluated with ``torch.func.vmap`` over ``functional_call``. With the MLP fast path (module docstring) the
    first layer's pre-activations come from the precomputed products and only the rest of the network runs.
    :attr:`path` says which of these runs: ``"first-layer+bmm"`` (the book's MLPs), ``"first-layer+vmap"`` (an MLP
    with other layers or another loss), ``"vmap"``, or, when vmap
    cannot batch the model (data-dependent control flow, ``.item()``), ``"...loop"`` (one point at a time, slower;
    announced by a ``RuntimeWarning``).
    """

    def __init__(self, model: nn.Module, data, dirs: list[list[torch.Tensor]], loss_fn: Callable,
                 fast: bool = True, budget: int | None = None):
        self.work = copy.deepcopy(model).eval()
        for p in self.work.parameters():
            p.requires_grad_(False)
        self.params = list(self.work.parameters())
        self.origin = [p.detach().clone() for p in self.params]
        self.dirs, self.loss_fn = dirs, standard_loss(loss_fn)       # nn.CrossEntropyLoss() -> F.cross_entropy
        self.X, self.y = on_device_of(model, check_data(data))
        self.budget = block_budget(self.X.device) if budget is None else budget
        self.fast = self.layers = None
        seq = _sequential(self.work) if fast else None
        if seq is not None:
            self._setup_fast(seq)
        if self.fast is None:
            self.module, self.inputs = self.work, self.X
            self.names = self._names(self.work)
            self.chunk = max(1, self.budget // max(1, len(self.X) * self.X[0].numel() * 4))
        self.buffers = dict(self.module.named_buffers())
        self._vmap_ok = True

    @property
    def path(self) -> str:
        """``"first-layer+bmm"``, ``"first-layer+vmap"``, ``"first-layer+loop"``, ``"vmap"`` or ``"loop"``: how
        points are evaluated."""
        if self.layers is not None:
            return "first-layer+bmm"
        return ("first-layer+" if self.fast is not None else "") + ("vmap" if self._vmap_ok else "loop")

    def _names(self, module: nn.Module) -> dict[str, int]:
        index = {id(p): i for i, p in enumerate(self.params)}
        return {n: index[id(p)] for n, p in module.named_parameters()}

    def _setup_fast(self, seq: nn.Sequential) -> None:
        modules = list(seq)
        first = next((i for i, m in enumerate(modules) if any(True for _ in m.parameters())), None)
        if first is None or not isinstance(modules[first], nn.Linear):
            return
        lin, index = modules[first], {id(p): i for i, p in enumerate(self.params)}
        rest = nn.Sequential(*modules[first + 1:])
        if any(p is lin.weight or p is lin.bias for p in rest.parameters()):
            return                                               # weights shared with later layers
        iw = index[id(lin.weight)]
        ib = index[id(lin.bias)] if lin.bias is not None else None
        with torch.no_grad():
            h = self.X
            for m in modules[:first]:
                h = m(h)
            # rows: X W^T + b and X D_c^T + db_c, so that z(point) = [1, coords] @ prods
            prods = torch.stack([h @ self.origin[iw].T] + [h @ d[iw].T for d in self.dirs])  # [1 + k, N, H]
            if ib is not None:
                prods[0] += self.origin[ib]
                for k, d in enumerate(self.dirs):
                    prods[k + 1] += d[ib]
        self.fast = dict(prods=prods.reshape(len(prods), -1), shape=prods.shape[1:])
        self.module, self.inputs = rest, None
        self.names = self._names(rest)
        self.chunk = max(1, self.budget // max(1, prods[0].numel()))
        self.layers = self._plain_layers(rest, index)
        if self.layers is not None:                              # whole rows at once, the data in blocks
            widths = [self.origin[i].shape[0] for kind, i, _ in self.layers if kind == "linear"]
            widest = max(prods.shape[-1], *widths)
            self.chunk = POINTS_PER_BATCH
            self.rows_per_block = max(1, self.budget // (POINTS_PER_BATCH * widest))

    def _plain_layers(self, rest: nn.Sequential, index: dict) -> list | None:
        """``rest`` as ``[("linear", weight index, bias index) | ("act", module, None)]`` when it holds only
        ``Linear`` layers and parameter-free elementwise activations and the loss is cross-entropy on class indices
        (the book's MLPs); ``None`` otherwise (then vmap runs the rest)."""
        if self.loss_fn is not F.cross_entropy or self.y.dim() != 1:
            return None
        layers = []
        for m in rest:
            if isinstance(m, nn.Linear):
                layers.append(("linear", index[id(m.weight)], None if m.bias is None else index[id(m.bias)]))
            elif type(m) in ELEMENTWISE and not any(True for _ in m.parameters()):
                layers.append(("act", m, None))
            else:
                return None
        return layers if layers and layers[-1][0] == "linear" else None

    def _plain_batch(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and accuracy ``[G]`` of the plain-MLP fast path: the first layer from the precomputed products, the
        rest with batched matrix products over blocks of ``rows_per_block`` images (so the hidden activations stay
        in cache), cross-entropy summed in float64 block by block.

        Two things make it fast on a CPU. The activations are kept features-first, ``[G, h, n]``, and each layer
        computes :math:`W_g A_g` (``[G, h', h] x [G, h, n]``): BLAS's batched kernels run several times faster with
        the long dimension (the images) as the output's columns than as its rows. And every block writes into the
        same buffers (``out=``, activations in place where torch has an in-place form): a fresh multi-megabyte
        tensor per block costs its page faults, which took longer than the arithmetic."""
        prods, (n, h) = self.fast["prods"], self.fast["shape"]
        G, rows = len(c), min(n, self.rows_per_block)
        coef = torch.cat([torch.ones(G, 1, dtype=prods.dtype, device=prods.device), c.to(prods.dtype)], 1)
        weights = [(self._stacked(i, c), None if j is None else self._stacked(j, c).unsqueeze(2))
                   if kind == "linear" else None for kind, i, j in self.layers]
        widths = [h] + [w[0].shape[1] for w in weights if w]
        buffers = [prods.new_empty(G * rows * width) for width in widths + widths[-1:]]   # the last: the logits
        loss = torch.zeros(G, dtype=torch.float64, device=prods.device)
        correct = torch.zeros(G, dtype=torch.long, device=prods.device)
        for start in range(0, n, rows):
            m = min(n, start + rows) - start
            out = torch.mm(coef, prods[:, start * h:(start + m) * h], out=buffers[0][:G * m * h].view(G, m * h))
            out, k = out.view(G, m, h).transpose(1, 2), 1                                       # [G, h, m]
            for (kind, module, _), w in zip(self.layers, weights):
                if kind == "act":
                    out = activate_(module, out)
                    continue
                into = buffers[k][:G * m * w[0].shape[1]].view(G, w[0].shape[1], m)
                out = torch.bmm(w[0], out, out=into) if w[1] is None else torch.baddbmm(w[1], w[0], out, out=into)
                k += 1
            loss_block, correct_block = cross_entropy_(out, self.y[start:start + m], buffers[-1])
            loss += loss_block
            correct += correct_block
        return loss / n, correct.double() / n

    def _stacked(self, i: int, coords: torch.Tensor) -> torch.Tensor:
        """Parameter ``i`` at ``G`` points: ``[G, *shape]`` = origin + Σ_c coords[:, c] d_c (naive's rounding)."""
        out = self.origin[i].expand(len(coords), *self.origin[i].shape)
        for c, d in enumerate(self.dirs):
            out = out + coords[:, c].reshape(-1, *[1] * d[i].dim()).to(d[i].dtype) * d[i]
        return out

    def _losses(self, out: torch.Tensor) -> torch.Tensor:
        """``loss_fn(out[g], y)`` for each ``g`` (cross-entropy written out: vmap's rule for it is slow)."""
        if self.loss_fn is F.cross_entropy and self.y.dim() == 1:
            picked = out.gather(-1, self.y.expand(len(out), -1).unsqueeze(-1)).squeeze(-1)
            return (torch.logsumexp(out, -1) - picked).mean(-1).double()
        return torch.func.vmap(lambda o: self.loss_fn(o, self.y))(out).double()

    def _forward(self, params: dict, inputs: torch.Tensor) -> torch.Tensor:
        """Outputs ``[G, N, C]`` of ``self.module`` with parameters ``params[name][g]`` on ``inputs[g]``."""
        def one(p, x):
            return torch.func.functional_call(self.module, (p, self.buffers), (x,))

        if self._vmap_ok:
            try:
                return torch.func.vmap(one)(params, inputs)
            except (RuntimeError, NotImplementedError) as err:   # data-dependent control flow, .item(), ...
                self._vmap_ok = False
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                warnings.warn(f"scan engine: torch.func.vmap cannot batch {type(self.module).__name__} ({first}); "
                              "evaluating the grid points one at a time, which is much slower", RuntimeWarning,
                              stacklevel=4)
        return torch.stack([one({n: t[g] for n, t in params.items()}, inputs[g]) for g in range(len(inputs))])

    @torch.no_grad()
    def batch(self, coords) -> tuple[np.ndarray, np.ndarray]:
        """Loss and accuracy ``[G]`` at the points ``coords [G, k]``."""
        coords = torch.as_tensor(np.asarray(coords, dtype=float), device=self.origin[0].device)
        losses, accs = [], []
        for start in range(0, len(coords), self.chunk):
            c = coords[start:start + self.chunk]
            if self.layers is not None:
                loss, acc = self._plain_batch(c)
                losses.append(loss)
                accs.append(acc)
                continue
            params = {n: self._stacked(i, c) for n, i in self.names.items()}
            if self.fast is None:
                inputs = self.inputs.expand(len(c), *self.inputs.shape)
            else:
                prods = self.fast["prods"]
                weights = torch.cat([torch.ones(len(c), 1, dtype=prods.dtype, device=prods.device),
                                     c.to(prods.dtype)], 1)
                inputs = (weights @ prods).view(len(c), *self.fast["shape"])   # first layer at G points: one matmul
            out = self._forward(params, inputs)
            losses.append(self._losses(out))
            if self.y.dim() == 1 and out.dim() == 3:
                accs.append((out.argmax(-1) == self.y).double().mean(-1))
            else:
                accs.append(torch.full((len(c),), float("nan"), dtype=torch.float64, device=c.device))
        return torch.cat(losses).cpu().numpy(), torch.cat(accs).cpu().numpy()


def point_evaluator(model: nn.Module, data, dirs, *, loss_fn: Callable = F.cross_entropy,
                    fast: bool = True) -> _Evaluator:
    """The scan engine for the ``k = len(dirs)`` directions, built once; call ``.batch(coords)`` on it.

    ``.batch(coords [G, k])`` returns numpy ``(loss [G], acc [G])`` at the points
    ``θ* + Σ_c coords[:, c] dirs[c]``; ``.chunk`` is how many points it evaluates at once; ``.path`` how
    (``"first-layer+bmm"`` for the book's MLPs, see :class:`_Evaluator`). It computes on the model's device;
    directions and ``data = (X, y)`` are moved there. Two calls with the same ``coords``
    run the same floating-point operations, so the result of a point does not depend on which process or
    call evaluates it, only on the batch it came in (:mod:`dldna_lite.landscape.cli` splits grids into fixed
    batches).
    """
    checked = [check_direction(model, d, f"dirs[{i}]") for i, d in enumerate(dirs)]
    if not checked:
        raise ValueError("dirs must hold at least one direction")
    return _Evaluator(model, data, checked, loss_fn, fast=fast)


def evaluate_points(model: nn.Module, data, dirs, coords, *, loss_fn: Callable = F.cross_entropy,
                    fast: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Loss and accuracy ``[G]`` at the points ``θ* + Σ_c coords[:, c] dirs[c]`` for ``coords [G, len(dirs)]``
    (one-shot :func:`point_evaluator`; ``model`` is unchanged)."""
    coords = np.asarray(coords, dtype=float)
    if coords.ndim != 2 or coords.shape[1] != len(dirs) or len(coords) == 0:
        raise ValueError(f"coords must have shape [G, {len(dirs)}] (one column per direction, G >= 1), got "
                         f"{coords.shape}")
    return point_evaluator(model, data, dirs, loss_fn=loss_fn, fast=fast).batch(coords)


def _grid(values, name: str) -> np.ndarray:
    """``values`` as a float array ``[A]``; ``ValueError`` unless a non-empty 1-D sequence of finite numbers."""
    grid = np.asarray(values, dtype=float)
    if grid.ndim != 1 or len(grid) == 0 or not np.isfinite(grid).all():
        raise ValueError(f"{name} must be a non-empty 1-D sequence of finite numbers, got shape {grid.shape}; "
                         f"pass e.g. {name}=np.linspace(-1, 1, 21)")
    return grid


def _progress(total: int, desc: str, progress: bool | None):
    return tqdm(total=total, desc=desc, disable=not progress_enabled(progress), leave=False)


def scan_1d(model: nn.Module, data, direction, alphas, *, loss_fn: Callable = F.cross_entropy,
            progress: bool | None = None, fast: bool = True) -> dict:
    """:math:`L(\\theta + \\alpha d)` and accuracy for each ``alpha``; ``data = (X, y)`` evaluated as one batch.

    Returns ``dict(alpha=[A], loss=[A], acc=[A])`` (numpy). ``model`` is unchanged."""
    d = check_direction(model, direction, "direction")
    alphas = _grid(alphas, "alphas")
    ev = _Evaluator(model, data, [d], loss_fn, fast=fast)
    with _progress(1, "scan 1d", progress) as bar:
        loss, acc = ev.batch(alphas[:, None])
        bar.update()
    return dict(alpha=alphas, loss=loss, acc=acc)


def scan_2d(model: nn.Module, data, d1, d2, xs, ys, *, loss_fn: Callable = F.cross_entropy,
            progress: bool | None = None, fast: bool = True) -> dict:
    """:math:`L(\\theta + x\\, d_1 + y\\, d_2)` and accuracy on the grid ``xs × ys``.

    Returns ``dict(xs=[X], ys=[Y], loss=[Y, X], acc=[Y, X])`` (numpy; row ``i`` is ``ys[i]``, as ``contour``
    expects). ``model`` is unchanged."""
    dirs = [check_direction(model, d1, "d1"), check_direction(model, d2, "d2")]
    xs, ys = _grid(xs, "xs"), _grid(ys, "ys")
    ev = _Evaluator(model, data, dirs, loss_fn, fast=fast)
    loss, acc = np.zeros((len(ys), len(xs))), np.zeros((len(ys), len(xs)))
    with _progress(len(ys), "scan 2d", progress) as bar:
        for i, b in enumerate(ys):                       # one row of the grid per batch
            loss[i], acc[i] = ev.batch(np.stack([xs, np.full_like(xs, b)], 1))
            bar.update()
    return dict(xs=xs, ys=ys, loss=loss, acc=acc)


def interpolate(model_a: nn.Module, data, model_b: nn.Module, alphas, *, loss_fn: Callable = F.cross_entropy,
                progress: bool | None = None) -> dict:
    """Loss and accuracy on the line :math:`\\theta(\\alpha) = (1-\\alpha)\\theta_a + \\alpha\\theta_b`
    from ``model_a`` towards ``model_b`` (``alpha`` may leave [0, 1]: extrapolation). Floating-point buffers
    (BatchNorm statistics) are interpolated the same way. Returns ``dict(alpha=[A], loss=[A], acc=[A])``; both
    models are unchanged."""
    pa, pb = list(model_a.parameters()), list(model_b.parameters())
    if len(pa) != len(pb) or any(a.shape != b.shape for a, b in zip(pa, pb)):
        raise ValueError("model_a and model_b must have the same architecture")
    direction, alphas = [b.detach() - a.detach() for a, b in zip(pa, pb)], _grid(alphas, "alphas")
    bufs_a = [b for b in model_a.buffers() if b.is_floating_point()]
    bufs_b = [b for b in model_b.buffers() if b.is_floating_point()]
    if not bufs_a:
        return scan_1d(model_a, data, direction, alphas, loss_fn=loss_fn, progress=progress)
    work = copy.deepcopy(model_a).eval()
    wp, wb = list(work.parameters()), [b for b in work.buffers() if b.is_floating_point()]
    X, y = on_device_of(work, check_data(data))
    loss, acc = np.zeros(len(alphas)), np.zeros(len(alphas))
    with torch.no_grad():
        for i, a in enumerate(alphas):
            for w, x, y_ in zip(wp + wb, pa + bufs_a, pb + bufs_b):
                w.copy_(torch.lerp(x.detach(), y_.detach(), float(a)))
            loss[i], acc[i] = _loss_acc(work(X), y, loss_fn)
    return dict(alpha=alphas, loss=loss, acc=acc)


# ------------------------------------------------------------------------------------------------- curvature
def nonconvex_fraction(scan: dict) -> float:
    """Share of interior grid points of a 2D slice where the finite-difference Hessian of the surface,
    :math:`\\begin{pmatrix} L_{\\alpha\\alpha} & L_{\\alpha\\beta} \\\\ L_{\\alpha\\beta} & L_{\\beta\\beta}\\end{pmatrix}`,
    has a negative eigenvalue (the surface bends down somewhere): 0 for a bowl, 1 for a saddle or a ridge.
    A cheap stand-in for Li et al.'s map of :math:`|\\lambda_{\\min}/\\lambda_{\\max}|`.

    Points whose 3x3 neighbourhood holds a non-finite loss (a region where the network overflowed) have no
    curvature and are left out: the share is over the other interior points. ``ValueError`` when none is left,
    and when ``xs`` or ``ys`` is not evenly spaced (the finite differences assume one step; use ``np.linspace``)."""
    Z = np.asarray(scan["loss"], dtype=float)
    xs, ys = np.asarray(scan["xs"], dtype=float), np.asarray(scan["ys"], dtype=float)
    if Z.shape != (len(ys), len(xs)) or min(Z.shape) < 3:
        raise ValueError(f"need a [len(ys), len(xs)] grid of at least 3x3 points, got {Z.shape}")
    finite = np.isfinite(Z)
    defined = np.ones((Z.shape[0] - 2, Z.shape[1] - 2), dtype=bool)      # all 9 stencil points finite
    for di in range(3):
        for dj in range(3):
            defined &= finite[di:di + Z.shape[0] - 2, dj:dj + Z.shape[1] - 2]
    if not defined.any():
        raise ValueError("no interior grid point has a finite loss at all 9 points around it: the curvature of "
                         "this slice is nowhere defined (did the scan leave the region where the loss is finite?)")
    Z = np.where(finite, Z, 0.0)                                          # the masked points are not used
    for name, grid in (("xs", xs), ("ys", ys)):
        if not (np.diff(grid)[0] != 0 and np.allclose(np.diff(grid), np.diff(grid)[0], rtol=1e-6, atol=0)):
            raise ValueError(f"scan[{name!r}] must be evenly spaced (the finite differences use one step), got "
                             f"steps from {np.diff(grid).min():g} to {np.diff(grid).max():g}; scan on np.linspace")
    hx, hy = np.diff(xs).mean(), np.diff(ys).mean()
    zxx = (Z[1:-1, 2:] - 2 * Z[1:-1, 1:-1] + Z[1:-1, :-2]) / hx ** 2
    zyy = (Z[2:, 1:-1] - 2 * Z[1:-1, 1:-1] + Z[:-2, 1:-1]) / hy ** 2
    zxy = (Z[2:, 2:] - Z[2:, :-2] - Z[:-2, 2:] + Z[:-2, :-2]) / (4 * hx * hy)
    min_eig = (zxx + zyy) / 2 - np.sqrt(((zxx - zyy) / 2) ** 2 + zxy ** 2)
    scale = np.abs(Z[finite]).max() / max(hx, hy) ** 2 * 1e-9            # ignore round-off on flat regions
    return float((min_eig[defined] < -scale).mean())
