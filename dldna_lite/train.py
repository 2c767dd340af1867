"""Training and evaluation over in-memory tensors.

``train(model, optimizer, (X, y), epochs)`` runs minibatch training and returns a :class:`History`:

* per epoch: ``train_loss``, ``train_acc`` (running averages over the epoch's batches), ``test_loss``,
  ``test_acc`` (when ``test_data`` is given) and wall ``time`` (s, cumulative);
* per step: ``loss`` always; with ``track_steps=True`` also ``grad_norm`` (‖∇θL‖₂ before clipping),
  ``param_change`` (‖θ_{t+1} − θ_t‖₂), ``weight_norm`` (‖θ_{t+1}‖₂) and ``lr``.

A non-finite loss stops training; ``history.diverged_at`` holds the (1-based) step and ``history.status`` reads
``"diverged at step k"``, so tables say that instead of showing NaN. The per-step numbers stay on the model's device
during an epoch and are read back once at its end (no host synchronisation per step), so the stop comes at the end
of the epoch in which the loss became non-finite; the history is the same as if it had stopped at once.
"""
from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .config import device_of, env_flag, restore_modes, training_modes
from .data import batches

STEP_METRICS = ("loss", "grad_norm", "param_change", "weight_norm", "lr")
EPOCH_METRICS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "time")


@dataclass
class History:
    """What happened during :func:`train`. ``history["test_acc"]`` is the per-epoch list of a metric."""

    epochs: list[dict] = field(default_factory=list)
    steps: dict[str, list[float]] = field(default_factory=lambda: {"loss": []})
    diverged_at: int | None = None

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    @property
    def status(self) -> str:
        """``"ok"`` or ``"diverged at step k"``."""
        return describe_divergence(self.diverged_at)

    def __getitem__(self, key: str) -> list:
        if key in self.steps:
            return self.steps[key]
        if key in EPOCH_METRICS:
            return [row.get(key) for row in self.epochs]
        raise KeyError(f"unknown metric {key!r}; per-step: {', '.join(self.steps)}; per-epoch: {', '.join(EPOCH_METRICS)}")

    def final(self, key: str):
        """Last epoch's value of ``key``, or ``None`` when training diverged or ran no epoch."""
        if self.diverged or not self.epochs:
            return None
        return self.epochs[-1].get(key)

    def describe(self, key: str, fmt: str = "{:.4f}") -> str:
        """The final value formatted for a table, or ``"diverged at step k"``."""
        value = self.final(key)
        if self.diverged:
            return self.status
        return "n/a" if value is None else fmt.format(value)


def _hits(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """Per-row arg-max matches of ``logits`` against ``y`` (class indices ``[N]`` or one-hot ``[N, C]``), as a bool
    tensor on the device (nothing is read back); ``None`` for other targets."""
    if y.dtype == torch.long and y.dim() == 1:
        return logits.argmax(1) == y
    if y.dim() == 2 and y.shape == logits.shape:
        return logits.argmax(1) == y.argmax(1)
    return None


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float | None:
    """Fraction of rows whose arg-max matches ``y`` (class indices ``[N]`` or one-hot ``[N, C]``)."""
    hits = _hits(logits, y)
    return None if hits is None else hits.float().mean().item()


def on_device_of(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``data = (X, y)`` on the model's device (no copy when it is there already); anything else than an ``(X, y)``
    pair of tensors with the same number of rows raises (:func:`dldna_lite.data.check_data`)."""
    from .data import check_data

    X, y = check_data(data)
    dev = device_of(model)
    return X.to(dev), y.to(dev)


def _check_not_empty(data, name: str) -> None:
    if len(data[0]) == 0:
        raise ValueError(f"{name} is empty (0 rows): give at least one example")


@torch.no_grad()
def evaluate(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], *, loss_fn: Callable | None = None,
             batch_size: int = 4096) -> tuple[float, float | None]:
    """Mean loss and accuracy of ``model`` on ``data = (X, y)`` in eval mode (training mode restored after), on the
    model's device.

    Evaluated ``batch_size`` rows at a time: the loss is the batch losses weighted by batch length (``loss_fn``
    must average over its batch, as the torch losses do by default), the accuracy counts correct rows exactly.
    The batches' numbers stay on the device and are read back once, at the end. Empty ``data``: ``ValueError``."""
    loss_fn = loss_fn or F.cross_entropy
    _check_not_empty(data, "data")
    X, y = on_device_of(model, data)
    modes = training_modes(model)     # each module's flag: model.train(flag) would unfreeze a frozen batch norm
    model.eval()
    losses, hits, sizes = [], [], []
    try:
        for xb, yb in batches(X, y, batch_size, shuffle=False):
            out = model(xb)
            losses.append(loss_fn(out, yb).double().reshape(()))
            hit = _hits(out, yb)
            hits.append(None if hit is None else hit.sum().double())
            sizes.append(len(xb))
    finally:
        restore_modes(modes)
    counted = all(h is not None for h in hits)
    values = torch.stack(losses + (hits if counted else [])).tolist()          # the one read
    total_loss = 0.0
    for value, size in zip(values, sizes):                                     # the host sum, in batch order
        total_loss += value * size
    n = len(X)
    return total_loss / n, (int(sum(values[len(sizes):])) / n if counted else None)


def progress_enabled(progress: bool | None) -> bool:
    """``progress`` if given, else ``$DLDNA_PROGRESS`` (default on); the book build and tests set it to 0."""
    if progress is not None:
        return progress
    return env_flag("DLDNA_PROGRESS", default=True)


def _global_norm(tensors, device=None) -> torch.Tensor:
    """‖(t_1, ..., t_n)‖₂ as a 0-d tensor on the tensors' device (read back later, with the epoch's numbers)."""
    tensors = [t for t in tensors if t is not None]
    if not tensors:
        return torch.zeros((), device=device)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))


def _check_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """The optimizer must hold the model's parameters: one built before the model was rebuilt holds the old ones."""
    own = {id(p) for p in model.parameters()}
    held = [p for group in optimizer.param_groups for p in group["params"]]
    foreign = sum(id(p) not in own for p in held)
    untrained = {id(p) for p in model.parameters() if p.requires_grad} - {id(p) for p in held}
    if foreign == len(held) or (foreign and untrained):
        what = ("none of them" if foreign == len(held)
                else f"{foreign} of {len(held)} of them are not, and {len(untrained)} of the model's are missing")
        raise ValueError(f"the optimizer's parameters are not the model's ({what}): it was built for another "
                         "model, e.g. before the model was rebuilt. Rebuild the optimizer after the model: "
                         "optimizer = torch.optim.SGD(model.parameters(), lr=...)")


def _check_train_args(model, optimizer, train_data, epochs, clip_grad_norm, clip_grad_value, max_steps) -> None:
    if not isinstance(epochs, int) or epochs <= 0:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, numbers.Integral)
                                  or max_steps < 0):
        raise ValueError(f"max_steps must be an int >= 0 (0: no step) or None (no limit), got {max_steps!r}")
    for name, value in (("clip_grad_norm", clip_grad_norm), ("clip_grad_value", clip_grad_value)):
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be positive or None, got {value!r}")
    for i, group in enumerate(optimizer.param_groups):
        lr = group.get("lr")
        if lr is not None and not math.isfinite(float(lr)):
            raise ValueError(f"the optimizer's learning rate (param group {i}) must be finite, got {lr!r}")
    X, y = train_data
    if len(X) != len(y):
        raise ValueError(f"train_data: X has {len(X)} rows but y has {len(y)}")
    _check_not_empty(train_data, "train_data")
    _check_optimizer(model, optimizer)


TRACKED = STEP_METRICS[1:4]   # the per-step norms, kept on the device until the epoch's read


@dataclass
class _Run:
    """What one :func:`train` call needs at every step (so the per-epoch loop stays short).

    Nothing is read back to the host inside an epoch: each step appends its loss, accuracy and (``track_steps``)
    norms as device tensors to ``record``; :meth:`read` brings them back in one transfer at the end of the epoch."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: Callable
    params: list
    history: History
    track_steps: bool
    clip_grad_norm: float | None
    clip_grad_value: float | None
    scheduler: object
    step: int = 0
    previous: list | None = None        # θ_t, for ‖θ_{t+1} − θ_t‖ (track_steps), updated in place every step

    def update(self, loss: torch.Tensor, record: dict) -> None:
        """Backward, (clip), optimizer and scheduler step for one minibatch; record the per-step metrics."""
        params = self.params
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.track_steps:
            record["grad_norm"].append(_global_norm([p.grad for p in params], loss.device))
        if self.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(params, self.clip_grad_norm)
        if self.clip_grad_value is not None:
            nn.utils.clip_grad_value_(params, self.clip_grad_value)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        if self.track_steps:
            with torch.no_grad():
                now = [p.detach() for p in params]
                torch._foreach_sub_(self.previous, now)     # θ_t − θ_{t+1}: the same norm, bit for bit
                record["param_change"].append(_global_norm(self.previous, loss.device))
                torch._foreach_copy_(self.previous, now)
                record["weight_norm"].append(_global_norm(now, loss.device))
            record["lr"].append(self.optimizer.param_groups[0]["lr"])

    def epoch(self, batch_iter, max_steps: int | None) -> dict | None:
        """One pass over ``batch_iter``; the epoch's running averages, or ``None`` when the loss became non-finite."""
        first = self.step
        record = {"loss": [], "hits": [], "sizes": [], **({k: [] for k in STEP_METRICS[1:]} if self.track_steps
                                                          else {})}
        for xb, yb in batch_iter:
            self.step += 1
            out = self.model(xb)
            loss = self.loss_fn(out, yb)
            self.update(loss, record)
            record["loss"].append(loss.detach())
            hits = _hits(out.detach(), yb)
            record["hits"].append(None if hits is None else hits.float().mean())
            record["sizes"].append(len(xb))
            if max_steps is not None and self.step >= max_steps:
                break
        return self.read(first, record)

    def read(self, first: int, record: dict) -> dict | None:
        """The epoch's one read: its per-step numbers into the history (up to the first non-finite loss, whose step
        becomes ``diverged_at``; then ``None``), and its running averages (summed on the host, in step order)."""
        sizes, counted = record["sizes"], all(a is not None for a in record["hits"])
        columns = [record["loss"]] + ([record["hits"]] if counted else []) + [record[k] for k in TRACKED
                                                                              if k in record]
        values = torch.stack([torch.stack(c).reshape(-1).double() for c in columns]).tolist()
        losses, tracked = values[0], values[1 + int(counted):]
        bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
        keep = len(losses) if bad is None else bad
        steps = self.history.steps
        steps["loss"].extend(losses[:keep])
        for key, column in zip(TRACKED, tracked):
            steps[key].extend(column[:keep])
        if self.track_steps:
            steps["lr"].extend(record["lr"][:keep])
        if bad is not None:
            self.history.diverged_at = first + bad + 1
            return None
        sum_loss, sum_correct = 0.0, (0.0 if counted else None)
        for i, size in enumerate(sizes):
            sum_loss += losses[i] * size
            if counted:
                sum_correct += values[1][i] * size
        seen = sum(sizes)
        return {"train_loss": sum_loss / seen, "train_acc": None if sum_correct is None else sum_correct / seen}


def train(model: nn.Module, optimizer: torch.optim.Optimizer, train_data: tuple[torch.Tensor, torch.Tensor],
          epochs: int, *, batch_size: int = 128, loss_fn: Callable | None = None,
          test_data: tuple[torch.Tensor, torch.Tensor] | None = None, track_steps: bool = False,
          clip_grad_norm: float | None = None, clip_grad_value: float | None = None,
          scheduler=None, seed: int = 0, progress: bool | None = None, max_steps: int | None = None,
          desc: str = "train") -> History:
    """Train ``model`` in place with ``optimizer`` on ``train_data = (X [N, ...], y [N])``; return a :class:`History`.
    Runs on the model's device; the data are moved there once (keep them there to avoid the copy).

    ``scheduler`` (any ``torch.optim.lr_scheduler``) is stepped after every optimizer step. Batch order comes from a
    generator seeded with ``seed``: with the same model init and seed, two runs give bitwise identical numbers on the
    CPU at the same thread count and flush-denormal setting (:func:`~dldna_lite.config.seed_everything`).
    ``max_steps`` caps the optimizer steps over all epochs (``0``: none at all; the history is empty and the model
    untouched).

    Host reads: none inside an epoch. The steps' numbers stay on the device and are read back once per epoch (and
    once per evaluation of ``test_data``), so a GPU never waits for the host mid-epoch. Hence a non-finite loss at
    step k is noticed at the end of its epoch: training stops there, the history holds steps 1..k−1 and
    ``diverged_at = k`` (exactly what an immediate stop would record), but the model has gone on through the rest of
    that epoch, so its parameters may be non-finite.

    ``ValueError`` for an optimizer that does not hold the model's parameters (built before the model was
    rebuilt), empty data, ``epochs < 1`` or ``max_steps < 0``.
    """
    _check_train_args(model, optimizer, train_data, epochs, clip_grad_norm, clip_grad_value, max_steps)
    if test_data is not None:
        _check_not_empty(test_data, "test_data")
    loss_fn = loss_fn or F.cross_entropy
    history = History()
    if track_steps:
        history.steps.update({k: [] for k in STEP_METRICS[1:]})
    if max_steps == 0:
        return history
    params = [p for p in model.parameters() if p.requires_grad]
    run = _Run(model, optimizer, loss_fn, params, history, track_steps, clip_grad_norm, clip_grad_value, scheduler,
               previous=[p.detach().clone() for p in params] if track_steps else None)
    train_data = on_device_of(model, train_data)
    test_data = None if test_data is None else on_device_of(model, test_data)
    generator = torch.Generator().manual_seed(seed)   # on the CPU: the same batch order on every device
    start = time.perf_counter()
    model.train()
    bar = tqdm(range(1, epochs + 1), desc=desc, disable=not progress_enabled(progress), leave=False)
    for epoch in bar:
        row = run.epoch(batches(*train_data, batch_size, shuffle=True, generator=generator), max_steps)
        if row is None:
            break
        row = {"epoch": epoch, **row}
        if test_data is not None:
            row["test_loss"], row["test_acc"] = evaluate(model, test_data, loss_fn=loss_fn)
            if not math.isfinite(row["test_loss"]):
                history.diverged_at = run.step
                break
        row["time"] = time.perf_counter() - start
        history.epochs.append(row)
        bar.set_postfix(loss=f"{row['train_loss']:.3f}")
        if max_steps is not None and run.step >= max_steps:
            break
    bar.close()
    return history


# ---------------------------------------------------------------------------------------------- several seeds
def describe_divergence(diverged_at: int | None) -> str:
    """``"ok"`` or ``"diverged at step k"``: how every table of the book reports a run that blew up."""
    return "ok" if diverged_at is None else f"diverged at step {diverged_at}"


def run_seeds(run: Callable[[int], dict], seeds: Sequence[int], *, progress: bool | None = None,
              desc: str = "seeds") -> list[dict]:
    """``[run(seed) for seed in seeds]``, with a progress bar over the seeds in a live notebook. Each ``run``
    seeds its own experiment (model, batches) from ``seed``, so any one seed can be re-run on its own."""
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must not be empty")
    bar = tqdm(seeds, desc=desc, disable=not progress_enabled(progress) or len(seeds) < 2, leave=False)
    return [run(seed) for seed in bar]


def mean_std(values: Sequence[float | None], diverged_at: Sequence[int | None] | None = None,
             fmt: str = "{:.4f}") -> str:
    """One summary of a metric over seeds, as the chapters print it.

    ``values[i]`` is seed i's number, ``None`` where that run diverged (``diverged_at[i]`` then says at which step).
    All finished: ``"m ± s"`` (sample std), or ``"m"`` for one seed. Some diverged: ``"diverged at step k"`` for a
    single seed, else ``"2 of 3 seeds diverged (steps 4, 9); m ± s over the other 1"`` -- never a NaN mean.
    """
    values = list(values)
    steps = list(diverged_at) if diverged_at is not None else [None] * len(values)
    if len(steps) != len(values):
        raise ValueError(f"values and diverged_at differ in length: {len(values)} and {len(steps)}")
    done = np.array([v for v in values if v is not None], dtype=float)
    stats = ("" if not len(done) else fmt.format(done.mean()) if len(done) == 1
             else f"{fmt.format(done.mean())} ± {fmt.format(done.std(ddof=1))}")
    bad = [s for v, s in zip(values, steps) if v is None]
    if not bad:
        return stats
    if len(values) == 1:
        return describe_divergence(bad[0]) if bad[0] is not None else "diverged"
    where = ", ".join("?" if s is None else str(s) for s in bad)
    text = f"{len(bad)} of {len(values)} seeds diverged (step{'s' if len(bad) > 1 else ''} {where})"
    return text + (f"; {stats} over the other {len(done)}" if len(done) else "")
