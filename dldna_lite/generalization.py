r"""Generalisation against the classical story, as experiments that run on a CPU (chapter ``book/06-modern-stories``).

* **Grokking** (Power et al. 2022). :func:`modular_addition` builds the table of :math:`a + b \bmod p`,
  :class:`dldna_lite.models.ModularMLP` embeds both operands (:class:`~dldna_lite.models.ModularTransformer` reads
  the sequence ``a b =``), and :func:`train_grokking` runs full-batch AdamW and records train and validation
  accuracy; :func:`first_step_reaching` and :func:`grokking_steps` read the steps of memorisation and of the jump
  off the history.
* **Double descent** (Belkin et al. 2019). :func:`random_features` and :func:`min_norm_fit` (minimum-norm least
  squares in float64; :func:`ridge_fit` for the regularised fit); :func:`double_descent_curve` sweeps the number
  of features through the interpolation threshold (#features = #training samples), and :func:`describe_curve`
  reads its peak off.

Devices: both experiments build what they train, so they take ``device=`` (default: the CPU). Everything random
(the split, the initial weights, the label noise, the random features) is drawn on the CPU and then moved, so a seed
gives the same experiment on every device.
"""
from __future__ import annotations

import math
import numbers
import time
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from .models import ModularMLP, ModularTransformer
from .train import progress_enabled


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


def eval_schedule(steps: int, n_log: int = 60, every: int = 50) -> np.ndarray:
    """Steps at which to evaluate: log-spaced early on (for a log-step axis) plus every ``every`` steps."""
    log = np.unique(np.geomspace(1, steps, n_log).round().astype(int))
    return np.unique(np.r_[log, np.arange(every, steps + 1, every), steps])


@torch.no_grad()
def _loss_acc(model, data) -> list[torch.Tensor]:
    """``[loss, accuracy]`` of ``model`` on ``data``, as 0-d tensors on the device (read back with the rest)."""
    X, y = data
    logits = model(X)
    return [F.cross_entropy(logits, y), (logits.argmax(1) == y).float().mean()]


def _weight_norm(model) -> torch.Tensor:
    return torch.sqrt(sum(q.detach().pow(2).sum() for q in model.parameters()))


def _read(pending: list, evaluated: list) -> tuple[int | None, list[float]]:
    """The one host read at an evaluation: ``(index of the first non-finite loss in pending or None, evaluated)``."""
    values = torch.stack([t.double().reshape(()) for t in pending + evaluated]).tolist()
    bad = next((i for i, v in enumerate(values[:len(pending)]) if not math.isfinite(v)), None)
    return bad, values[len(pending):]


def _full_batch_steps(model, opt, train_data, val_data, todo: set, stop_at, bar) -> tuple[list, int | None, int]:
    """The training loop of :func:`train_grokking`: ``(rows, diverged_at, last step)``.

    No host read between evaluations: the losses wait on the device, and each evaluation reads them back with its
    own numbers, once. A non-finite loss at step k is seen there; the rows stop before it, ``diverged_at = k``."""
    rows, pending, step = [], [], 0
    for step in bar:
        loss = F.cross_entropy(model(train_data[0]), train_data[1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        pending.append(loss.detach())
        if step in todo:
            evaluated = [*_loss_acc(model, train_data), *_loss_acc(model, val_data), _weight_norm(model)]
            bad, values = _read(pending, evaluated)
            if bad is not None:
                diverged_at = step - len(pending) + bad + 1
                return rows, diverged_at, diverged_at
            pending = []
            rows.append((step, *values))
            if stop_at is not None and rows[-1][4] >= stop_at:
                break
    bad = _read(pending, [])[0] if pending else None     # steps after the last evaluation (none from train_grokking)
    if bad is None:
        return rows, None, step
    diverged_at = step - len(pending) + bad + 1
    return rows, diverged_at, diverged_at


MODELS = {"mlp": ModularMLP, "transformer": ModularTransformer}


def train_grokking(p: int, train_fraction: float, steps: int, *, lr: float = 1e-3, weight_decay: float = 1.0,
                   betas=(0.9, 0.98), seed: int = 0, model: str = "mlp", model_options: dict | None = None,
                   eval_every: int = 50, optimizer: type | None = None, stop_at: float | None = None,
                   progress: bool | None = None, device: torch.device | str | None = None) -> dict:
    """Full-batch AdamW on :func:`modular_addition` with a ``model`` from :data:`MODELS`
    (:class:`dldna_lite.models.ModularMLP` or :class:`~dldna_lite.models.ModularTransformer`, built with
    ``num_classes=p`` and ``model_options``), evaluated on :func:`eval_schedule`; ``seed`` draws the split and the
    initial weights (on the CPU), which then go to ``device`` (default: the CPU), where the run computes. It runs on
    one thread with flush-denormal on (then restores the thread count and turns flush-denormal off), so on the CPU
    its numbers depend only on the seed, the CPU and the torch build; the same loop at another thread count agrees
    to a tolerance only (:func:`~dldna_lite.config.seed_everything`).

    A live notebook shows a ``tqdm`` bar over the steps (``progress``, default ``$DLDNA_PROGRESS``; off in the book
    build and the tests).

    ``optimizer`` defaults to ``torch.optim.AdamW`` (any class with its signature works, e.g.
    ``dldna_lite.optim.AdamW``). With ``stop_at``, training stops once validation accuracy reaches it.
    Returns ``dict(step, train_loss, train_acc, val_loss, val_acc, weight_norm)`` (numpy arrays, one entry per
    evaluation; ``weight_norm`` is ‖θ‖₂ over all parameters),
    ``time`` (s), ``steps_run``, ``diverged_at`` (step or ``None``) and the ``config``.

    The loop reads nothing back to the host between evaluations (one read per evaluation), so a non-finite loss at
    step k is noticed at the next evaluation: the run stops there, the rows end before step k and ``diverged_at`` =
    ``steps_run`` = k, as if it had stopped at once (the model itself went on to that evaluation).
    """
    from .config import seed_everything

    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    device = torch.device("cpu") if device is None else torch.device(device)
    train_data, val_data = ((X.to(device), y.to(device)) for X, y in modular_addition(p, train_fraction, seed=seed))
    seed_everything(seed)
    net = MODELS[model](num_classes=p, **(model_options or {})).to(device)
    opt = (optimizer or torch.optim.AdamW)(net.parameters(), lr=lr, betas=betas, weight_decay=weight_decay)
    todo = set(eval_schedule(steps, every=eval_every).tolist())
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
        rows, diverged_at, step = _full_batch_steps(net, opt, train_data, val_data, todo, stop_at, bar)
    finally:
        bar.close()
        torch.set_flush_denormal(False)  # PyTorch's defaults
        torch.set_num_threads(threads)
    cols = np.array(rows, dtype=float).reshape(-1, 6)
    return dict(step=cols[:, 0].astype(int), train_loss=cols[:, 1], train_acc=cols[:, 2], val_loss=cols[:, 3],
                val_acc=cols[:, 4], weight_norm=cols[:, 5], time=time.perf_counter() - start, steps_run=step,
                diverged_at=diverged_at,
                config=dict(p=p, train_fraction=train_fraction, lr=lr, weight_decay=weight_decay, seed=seed,
                            model=model, n_train=len(train_data[1]), n_val=len(val_data[1])))


def train_grokking_runs(runs: dict[str, dict], *, progress: bool | None = None, parallel: bool | None = None,
                        **common) -> dict[str, dict]:
    """:func:`train_grokking` once per entry of ``runs`` (label -> its own keyword arguments, added to ``common``).

    The runs are independent and each uses one thread, so on a CPU with two or more cores they run side by side in
    fresh (spawned) processes, with the same numbers as one after the other. ``parallel`` defaults to: yes when no
    progress bar is shown (the book build, the tests) and the runs compute on the CPU; a live notebook runs them one
    after the other with their progress bars.
    """
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    from .config import available_cores

    settings = {label: {**common, **kwargs} for label, kwargs in runs.items()}
    on_cpu = all(torch.device(s.get("device") or "cpu").type == "cpu" for s in settings.values())
    if parallel is None:
        parallel = not progress_enabled(progress) and on_cpu and available_cores() >= 2 and len(settings) > 1
    if not parallel:
        return {label: train_grokking(**s, progress=progress) for label, s in settings.items()}
    workers = min(len(settings), available_cores())
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {label: pool.submit(train_grokking, **s, progress=False) for label, s in settings.items()}
        return {label: future.result() for label, future in futures.items()}


def first_step_reaching(steps, values, threshold: float, *, stay: bool = True) -> int | None:
    """The first step at which ``values`` is ``>= threshold`` and stays so until the end (``stay=False``: the first
    time it gets there, whatever follows); ``None`` if never."""
    values = np.asarray(values, dtype=float)
    if not stay:
        hit = np.flatnonzero(values >= threshold)
        return int(np.asarray(steps)[hit[0]]) if hit.size else None
    below = np.flatnonzero(values < threshold)
    first = 0 if below.size == 0 else below[-1] + 1
    return int(np.asarray(steps)[first]) if first < len(values) else None


def grokking_steps(run: dict, memorised: float = 0.99, generalised: float = 0.95) -> tuple[int | None, int | None]:
    """``(memorised, generalised)`` of a :func:`train_grokking` run: the first steps from which the training accuracy
    stays ``>= memorised`` and the validation accuracy stays ``>= generalised`` (``None`` if never)."""
    return (first_step_reaching(run["step"], run["train_acc"], memorised),
            first_step_reaching(run["step"], run["val_acc"], generalised))


def at_step(run: dict, key: str, step: int | None):
    """``run[key]`` at evaluation step ``step`` of a :func:`train_grokking` run; its last value when ``step`` is
    ``None``."""
    return run[key][list(run["step"]).index(step)] if step else run[key][-1]


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
    smallest Frobenius norm. SVD-based, float64: LAPACK's ``gelsd`` on the CPU; elsewhere (CUDA offers only ``gels``,
    which assumes full rank) the pseudo-inverse ``torch.linalg.pinv``, with the same default cut-off for small
    singular values.
    """
    Phi, Y = Phi.double(), Y.double()
    if Phi.device.type == "cpu":
        return torch.linalg.lstsq(Phi, Y, driver="gelsd").solution
    return torch.linalg.pinv(Phi) @ Y


def _nonnegative(name: str, value, note: str = "") -> float:
    """``float(value)``, or a ``ValueError`` naming ``name`` unless it is a finite real number >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0{note}, got {value!r}")
    return float(value)


def ridge_fit(Phi: torch.Tensor, Y: torch.Tensor, lam: float) -> torch.Tensor:
    r"""Ridge regression :math:`B = (\Phi^\top \Phi + \lambda I)^{-1} \Phi^\top Y` (``[K, C]``), float64.

    Solved in whichever of the two equivalent forms is smaller: the primal ``[K, K]`` system for ``K <= N``, the dual
    :math:`B = \Phi^\top (\Phi \Phi^\top + \lambda I)^{-1} Y` (an ``[N, N]`` system) above. ``lam = 0`` is
    :func:`min_norm_fit`, its limit as :math:`\lambda \to 0`.
    """
    lam = _nonnegative("lam", lam)
    if lam == 0:
        return min_norm_fit(Phi, Y)
    Phi, Y = Phi.double(), Y.double()
    n, k = Phi.shape
    if k <= n:
        eye = torch.eye(k, dtype=Phi.dtype, device=Phi.device)
        return torch.linalg.solve(Phi.T @ Phi + lam * eye, Phi.T @ Y)
    eye = torch.eye(n, dtype=Phi.dtype, device=Phi.device)
    return Phi.T @ torch.linalg.solve(Phi @ Phi.T + lam * eye, Y)


def noisy_labels(y: torch.Tensor, fraction: float, num_classes: int = 10, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
    """A copy of ``y`` where a random ``fraction`` of the entries is replaced by a *different* random class."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    y = y.clone()
    flip = torch.rand(len(y), generator=generator) < fraction
    shift = torch.randint(1, num_classes, (int(flip.sum()),), generator=generator)
    y[flip] = (y[flip] + shift) % num_classes
    return y


def double_descent_curve(train_data, test_data, feature_counts: Sequence[int], *, label_noise: float = 0.0,
                         num_classes: int = 10, generator: torch.Generator | None = None,
                         device: torch.device | str | None = None, ridge: float = 0.0) -> dict:
    """Train/test error and test MSE of :func:`min_norm_fit` on the first ``k`` of ``max(feature_counts)`` random
    features, for each ``k`` (nested models: one draw of ``W`` from ``generator``); with ``ridge`` > 0, of
    :func:`ridge_fit` with that :math:`\\lambda` instead.

    ``train_data``/``test_data``: ``(X [N, d], y [N])``. With ``label_noise`` a fraction of the *training* labels is
    flipped (:func:`noisy_labels`, drawn first). The label noise and the features are drawn on the CPU; the fits run on
    ``device`` (default: the CPU). Returns numpy arrays ``features, train_error, test_error, test_mse,
    weight_norm`` plus ``n_train`` (the interpolation threshold) and ``time`` (s).
    """
    ridge = _nonnegative("ridge", ridge, " (0: the minimum-norm fit)")
    start = time.perf_counter()
    (X_tr, y_tr), (X_te, y_te) = train_data, test_data
    if label_noise:
        y_tr = noisy_labels(y_tr.cpu(), label_noise, num_classes, generator=generator)
    ks = sorted(int(k) for k in feature_counts)
    W, mean = random_features(X_tr.cpu(), ks[-1], generator=generator)
    dev = torch.device("cpu") if device is None else torch.device(device)
    X_tr, y_tr, X_te, y_te, W, mean = (t.to(dev) for t in (X_tr, y_tr, X_te, y_te, W, mean))
    P_tr, P_te = apply_features(X_tr, W, mean), apply_features(X_te, W, mean)
    Y_tr, Y_te = F.one_hot(y_tr, num_classes).double(), F.one_hot(y_te, num_classes).double()
    rows = []
    for k in ks:
        B = ridge_fit(P_tr[:, :k], Y_tr, ridge)
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


def describe_curve(curve: dict) -> dict:
    """What the chapter reads off a :func:`double_descent_curve`: the peak ``k_peak`` and its test error ``err_peak``,
    the best error below the threshold ``err_best_below``, the error at the largest ``k`` ``err_last`` (errors in
    percent) and the ``k`` of the largest ``‖B‖``, ``norm_peak_k``."""
    i = int(np.argmax(curve["test_error"]))
    below = curve["features"] < curve["n_train"]
    return dict(k_peak=int(curve["features"][i]), err_peak=float(100 * curve["test_error"][i]),
                err_best_below=float(100 * curve["test_error"][below].min()),
                err_last=float(100 * curve["test_error"][-1]),
                norm_peak_k=int(curve["features"][np.argmax(curve["weight_norm"])]))
