"""Where training goes: trajectories of flat weights and the planes they span (chapter 04).

* :func:`record_trajectory` keeps flattened weights ``[T, P]`` during :func:`dldna_lite.fit`;
* :func:`trajectory_pca` projects them on their top principal directions (an exact PCA, as in Li et al. 2018 §7);
* :func:`random_walks` gives random walks of the same size, the baseline for that PCA's explained variance;
* :func:`tsne_embedding` embeds checkpoints with t-SNE (not an isometry);
* :func:`plane_surface` scans the loss on a plane of flat directions with the scan engine
  (:func:`dldna_lite.landscape.scan_2d`).

Flat vectors: a model's trainable parameters concatenated in ``model.parameters()`` order, shape ``[P]``
(:mod:`dldna_lite.landscape.flat`).

Devices (CONTRIBUTING.md): a function that takes a model computes on its device and moves the data and flat
vectors it is given there; it never moves the model. The PCA and t-SNE run on the CPU (scikit-learn) whatever the
device of the checkpoints.
"""
from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..config import device_of
from ..train import History, on_device_of
from ..train import train as _fit
from .directions import full_direction
from .engine import scan_2d
from .flat import flat_params, set_flat

__all__ = ["record_trajectory", "trajectory_pca", "random_walks", "tsne_embedding", "plane_surface"]


def record_trajectory(model: nn.Module, data, optimizer: torch.optim.Optimizer, *, epochs: int,
                      every: int | str = 1, seed: int = 0, **fit_kwargs) -> tuple[torch.Tensor, History]:
    """Train with :func:`dldna_lite.fit` and keep the flat weights every ``every`` optimizer steps.

    Returns ``(W, history)`` with ``W`` of shape ``[T, P]``: row 0 is the initial point, then one row per ``every``
    steps (and the final point if it was not recorded). ``every="epoch"`` keeps one row per epoch (chapter 03's
    checkpoints, ``W[e]`` = after epoch ``e``) and trains one epoch per :func:`dldna_lite.fit` call, epoch ``e``
    (1-based) shuffled with seed ``seed + e - 1``; otherwise one call shuffles every epoch from ``seed``.
    ``data = (X, y)`` are the training data; ``fit_kwargs`` (``batch_size``, ``loss_fn``, ...) go to
    :func:`dldna_lite.fit`. ``history.diverged_at`` says whether (and at which step) the run blew up; training stops
    there. Training runs on the model's device (the data are moved there) and ``W`` lives there too.
    """
    per_epoch = every == "epoch"
    if not per_epoch and (isinstance(every, bool) or not isinstance(every, int) or every <= 0):
        raise ValueError(f"every must be a positive int or 'epoch', got {every!r}")
    points, counter = [flat_params(model)], [0]

    def keep(_opt, _args, _kwargs):
        counter[0] += 1
        if not per_epoch and counter[0] % every == 0:
            points.append(flat_params(model))

    handle = optimizer.register_step_post_hook(keep)
    try:
        if per_epoch:
            history = _epoch_by_epoch(model, data, optimizer, epochs, seed, points, counter, fit_kwargs)
        else:
            history = _fit(model, optimizer, data, epochs, seed=seed, **fit_kwargs)
    finally:
        handle.remove()
    if not per_epoch and counter[0] % every:
        points.append(flat_params(model))
    return torch.stack(points), history


def _epoch_by_epoch(model, data, optimizer, epochs: int, seed: int, points: list, counter: list,
                    fit_kwargs: dict) -> History:
    """One :func:`dldna_lite.fit` call per epoch (epoch ``e`` shuffled with ``seed + e - 1``), the flat weights
    appended to ``points`` after each; the histories joined into one (epochs renumbered, steps concatenated)."""
    if not isinstance(epochs, int) or epochs <= 0:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    joined = History()
    for epoch in range(1, epochs + 1):
        before = counter[0]
        h = _fit(model, optimizer, data, 1, seed=seed + epoch - 1, **fit_kwargs)
        joined.epochs += [{**row, "epoch": epoch} for row in h.epochs]
        for key, values in h.steps.items():
            joined.steps.setdefault(key, []).extend(values)
        if h.diverged_at is not None:
            joined.diverged_at = before + h.diverged_at
            break
        points.append(flat_params(model))
    return joined


def trajectory_pca(trajectories: dict[str, torch.Tensor] | torch.Tensor, *, origin: torch.Tensor | None = None,
                   n_components: int = 2) -> dict:
    """PCA of checkpoints relative to ``origin`` (Li et al. 2018 §7), exact, in float64.

    ``trajectories``: one ``[T, P]`` tensor or a dict of them (fitted jointly, e.g. several optimizers from one
    init). ``origin`` ``[P]`` defaults to the last point of the (first) trajectory. The PCA is fitted on the rows of
    ``W - origin``, centred; the returned coordinates are ``(W - origin) @ directions.T``, so the origin sits at
    ``(0, 0)``. Returns ``dict(directions=[k, P] tensor (orthonormal rows), coords={name: [T, k]},
    explained_variance_ratio=[k] array)``. The trajectories may live on any device: the PCA runs on a CPU copy and
    ``directions`` come back on the device of the first trajectory.

    A trajectory has far fewer points than parameters (T ~ 10-1000, P ~ 1e5), so the PCA diagonalises the
    ``[T, T]`` Gram matrix of the centred rows instead of taking the SVD of the ``[T, P]`` matrix: the same
    principal directions and variances (tests/test_landscape_trajectories.py holds it against NumPy's SVD), at
    ``T^2 P`` operations (a 124 x 79,510 trajectory: 0.4-0.6 s here, against 2.8-3.2 s for scikit-learn's
    randomized PCA and 8 s for the full SVD, on a loaded 2-core machine). Signs follow
    scikit-learn's convention: the largest entry of each direction is positive.
    """
    single = isinstance(trajectories, torch.Tensor)
    trajs = {"path": trajectories} if single else dict(trajectories)
    if not trajs:
        raise ValueError("give at least one trajectory")
    first = next(iter(trajs.values()))
    trajs = {name: w.detach().cpu() for name, w in trajs.items()}
    origin = next(iter(trajs.values()))[-1] if origin is None else origin.detach().cpu()
    stacked = torch.cat([w - origin for w in trajs.values()]).double()
    if n_components > min(stacked.shape):
        raise ValueError(f"n_components={n_components} exceeds min(#points, P) = {min(stacked.shape)}")
    centred = stacked - stacked.mean(0)
    variances, vectors = torch.linalg.eigh(centred @ centred.T)         # ascending; the Gram matrix is [T, T]
    top = variances.flip(0)[:n_components].clamp_min(0)
    directions = (vectors.flip(1)[:, :n_components].T @ centred) / top.sqrt().clamp_min(1e-300)[:, None]
    largest = directions.gather(1, directions.abs().argmax(1, keepdim=True))
    directions = directions * torch.where(largest < 0, -1.0, 1.0)
    total = variances.clamp_min(0).sum()
    directions = directions.to(first.dtype)
    coords = {name: ((w - origin) @ directions.T).numpy() for name, w in trajs.items()}
    return dict(directions=directions.to(first.device), coords=coords["path"] if single else coords,
                explained_variance_ratio=(top / total).numpy().copy())


def random_walks(W: torch.Tensor, *, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Two random walks to hold a trajectory's PCA against (Antognini & Sohl-Dickstein 2018), float64 on the CPU.

    Both have ``len(W) - 1`` steps in ``W.shape[1]`` dimensions and start at 0: ``"gaussian"`` takes i.i.d.
    standard Gaussian steps; ``"signs"`` takes the trajectory's own steps ``W[t+1] - W[t]`` in order, each multiplied
    by a random sign (same step lengths and directions, the correlations between steps destroyed). Returns
    ``{"gaussian": [T-1, P], "signs": [T-1, P]}``; ``generator`` (CPU) draws the signs, then the Gaussian steps.
    """
    steps = torch.diff(W.detach().cpu().double(), dim=0)
    if len(steps) < 2:
        raise ValueError(f"need a trajectory of at least 3 points, got {len(W)}")
    signs = torch.randint(0, 2, (len(steps), 1), generator=generator, dtype=torch.float64) * 2 - 1
    gauss = torch.randn(steps.shape, generator=generator, dtype=torch.float64)
    return {"gaussian": gauss.cumsum(0), "signs": (signs * steps).cumsum(0)}


def tsne_embedding(points: torch.Tensor | np.ndarray, *, perplexity: float = 5.0, seed: int = 0) -> np.ndarray:
    """2D t-SNE embedding ``[T, 2]`` of checkpoints ``[T, P]`` (scikit-learn, on a CPU copy of tensors on any
    device). Distances in it are not metric."""
    from sklearn.manifold import TSNE

    if isinstance(points, torch.Tensor):
        points = points.detach().cpu()
    points = np.asarray(points, dtype=np.float64)
    if not 0 < perplexity < len(points):
        raise ValueError(f"perplexity must be in (0, {len(points)}) for {len(points)} points, got {perplexity}")
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)


def plane_surface(model: nn.Module, data, origin: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor, xs, ys, *,
                  loss_fn: Callable = F.cross_entropy) -> dict:
    """Loss and accuracy on the plane ``origin + x d1 + y d2`` (flat vectors ``[P]``), via :func:`scan_2d`.

    ``model`` gives the architecture and the device (its weights are not used): ``data``, ``origin``, ``d1`` and
    ``d2`` are moved to the model's device and the scan runs there. Returns ``dict(xs, ys, loss=[len(ys), len(xs)],
    acc=[len(ys), len(xs)])`` (row i is ``ys[i]``); ``model`` is unchanged.
    """
    dev = device_of(model)
    probe = set_flat(copy.deepcopy(model), origin.to(dev))
    return scan_2d(probe, on_device_of(model, data), full_direction(probe, d1.to(dev)),
                   full_direction(probe, d2.to(dev)), list(xs), list(ys), loss_fn=loss_fn)
