"""Benchmark: a 41×41 filter-normalised loss-surface scan of the Fashion-MNIST MLP (784-100-10, 79,510 parameters).

Contenders, all on the same trained model, the same two directions and the same 2,000 training images:

* ``scan_2d``: :func:`dldna_lite.landscape.scan_2d` (one working model, first layer from three precomputed
  products, the rest as batched matrix products over grid rows and blocks of images, engine path
  ``"first-layer+bmm"``), with ``loss_fn=F.cross_entropy`` (its default);
* ``scan_2d, nn.CrossEntropyLoss()``: the same with the loss as a module, the usual PyTorch idiom (PyHessian's),
  which must take the same path (it used to take the general one, 2.5x slower);
* ``in place``: the fair baseline, what the ``loss-landscapes`` library does: one model whose parameters are
  overwritten in place with :math:`\\theta^* + x d_1 + y d_2` at every grid point, then a forward pass
  (``torch.no_grad``, eval mode; no copy, no allocation of parameters). The slower reference with a fresh
  ``deepcopy`` of the model per point lives in the tests (``tests/landscape_helpers.py``), which check ``scan_2d``
  against it; chapter 03 times it on a 5×5 grid.

What is checked: every contender's loss grid equals ``scan_2d``'s to 1e-5 relative (largest difference over the
grid, divided by the largest loss) and its accuracy grid to one image in ``n``; the module spelling's bitwise
(asserted).

Timing: one untimed warm-up scan of each (a 3×3 grid), then ``--repeats`` timed scans per contender, the order
rotating between repetitions; median, min and max, and the ratios of the medians (baseline / ``scan_2d``, one
summary line per spelling of the loss; goal >= 10x against the in-place loop). Usage: ``python benchmarks/landscape_scan.py [--grid 41] [--n 2000]``.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import dldna_lite as dl
from dldna_lite import landscape, models
from _common import add_timing_args, apply_timing_args  # benchmarks/_common.py

LOSS_TOL = 1e-5
MODULE = "scan_2d, nn.CrossEntropyLoss()"


@torch.no_grad()
def scan_in_place(model, data, d1, d2, xs, ys, loss_fn=F.cross_entropy) -> dict:
    """The ``loss-landscapes`` way: one model, its parameters set in place at each grid point, a forward pass."""
    X, y = data
    was_training = model.training
    model.eval()
    params = list(model.parameters())
    origin = [p.detach().clone() for p in params]
    loss, acc = np.zeros((len(ys), len(xs))), np.zeros((len(ys), len(xs)))
    try:
        for i, b in enumerate(ys):
            for j, a in enumerate(xs):
                for p, o, u, v in zip(params, origin, d1, d2):
                    torch.add(o, u, alpha=float(a), out=p)
                    p.add_(v, alpha=float(b))
                out = model(X)
                loss[i, j] = loss_fn(out, y).item()
                acc[i, j] = (out.argmax(1) == y).double().mean().item()
    finally:
        for p, o in zip(params, origin):
            p.copy_(o)
        model.train(was_training)
    return dict(xs=np.asarray(xs, float), ys=np.asarray(ys, float), loss=loss, acc=acc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=41, help="points per axis (default 41)")
    parser.add_argument("--n", type=int, default=2000, help="evaluation images (default 2000)")
    parser.add_argument("--train-steps", type=int, default=200, help="SGD steps before scanning (default 200)")
    add_timing_args(parser, "timed scans per contender")
    args = parser.parse_args()
    apply_timing_args(parser, args)

    X, y = dl.load_fashion_mnist("train", limit=max(args.n, 6000), flatten=True)
    dl.seed_everything(0)
    model = models.mlp([784, 100, 10])
    dl.fit(model, torch.optim.SGD(model.parameters(), lr=0.1), (X, y), epochs=1, max_steps=args.train_steps,
           progress=False)
    data = (X[:args.n], y[:args.n])
    gen = torch.Generator().manual_seed(1)
    d1 = landscape.random_direction(model, norm="filter", generator=gen)
    d2 = landscape.random_direction(model, norm="filter", generator=gen)
    xs = ys = np.linspace(-1, 1, args.grid)
    before = [p.detach().clone() for p in model.parameters()]
    contenders = {
        "scan_2d": lambda g: landscape.scan_2d(model, data, d1, d2, g, g, progress=False),
        MODULE: lambda g: landscape.scan_2d(model, data, d1, d2, g, g, loss_fn=nn.CrossEntropyLoss(), progress=False),
        "in place (fair baseline)": lambda g: scan_in_place(model, data, d1, d2, g, g),
    }
    names = list(contenders)
    for name in names:
        contenders[name](xs[:3])                              # warm-up
    times, results = {name: [] for name in names}, {}
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:       # rotate who goes first
            start = time.perf_counter()
            out = contenders[name](xs)
            times[name].append(time.perf_counter() - start)
            results.setdefault(name, out)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())), "a contender changed the model"
    fast = results["scan_2d"]
    print(f"grid {args.grid}x{args.grid} on {args.n} images, {models.count_parameters(model):,} parameters, "
          f"{torch.get_num_threads()} threads, {args.repeats} rotated scans each after a warm-up")
    print(f"  {'contender':<31} {'median s':>9} {'min-max s':>13} {'max rel. loss diff':>19} {'max acc diff':>13}")
    for name in names:
        t, other = times[name], results[name]
        err = np.abs(other["loss"] - fast["loss"]).max() / np.abs(fast["loss"]).max()
        acc_err = np.abs(other["acc"] - fast["acc"]).max()
        assert np.isfinite(fast["loss"]).all() and err <= LOSS_TOL, f"{name}: losses differ by {err:.1e}"
        assert acc_err <= 1.0 / args.n + 1e-12, f"{name}: accuracies differ by {acc_err}"
        print(f"  {name:<31} {statistics.median(t):>9.2f} {min(t):>6.2f}-{max(t):<6.2f} {err:>19.1e} {acc_err:>13.1e}")
    assert np.array_equal(results[MODULE]["loss"], fast["loss"]), "nn.CrossEntropyLoss() changed the numbers"
    print(f"checked: every contender's losses within {LOSS_TOL:g} (relative) of scan_2d's, accuracies within "
          f"1/{args.n}; with nn.CrossEntropyLoss() bitwise the same")
    baseline = statistics.median(times["in place (fair baseline)"])
    for label, name in (("landscape_scan", "scan_2d"), ("landscape_scan, loss_fn=nn.CrossEntropyLoss()", MODULE)):
        print(f"{label}: ratio {baseline / statistics.median(times[name]):.1f}x (median of {args.repeats})")


if __name__ == "__main__":
    main()
