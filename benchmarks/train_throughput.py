"""Benchmark: one epoch of Fashion-MNIST training, torchvision Dataset + DataLoader against in-memory tensors.

Contenders, each training the same initial weights (MLP 784-512-64-10, ``models.SimpleNetwork``) for one epoch of
the 60,000 training images, batch 256, SGD with momentum 0.9, on the same batches in the same order:

* ``DataLoader, workers 0``: ``torchvision.datasets.FashionMNIST`` with ``ToTensor`` + ``Normalize``, batched by a
  ``DataLoader`` in the training process: the baseline of the goal;
* ``DataLoader, workers 2``: the same with ``num_workers=2`` (the workers start with every epoch, as they do by
  default, and that start-up is part of the epoch);
* ``dl.batches``: ``dl.load_fashion_mnist`` tensors sliced by ``dl.batches`` with the same seeded generator.

What is checked: the DataLoader samples the permutation ``torch.randperm(60000)`` of a generator seeded with 0 (its
``sampler``), the one ``dl.batches`` draws from the same seed, so the batches are the same images: labels equal,
pixels equal to 1e-6 (``ToTensor`` divides by 255, ``load_fashion_mnist`` multiplies by 1/255: they may differ in
the last bit). (``shuffle=True`` with that generator would not do: the DataLoader draws a seed from it first.)
The three runs' losses must agree to 1e-5 relative over the first 20 steps (the same computation, up to those last
bits) and their epoch means to 1e-2 relative (asserted: SGD with momentum amplifies those 1e-7 input differences to
a few percent at single steps by the end of the epoch).

Timing: one untimed warm-up epoch of each, then ``--repeats`` timed epochs per contender, the order rotating
between repetitions; median, min and max of each and the ratios of the medians (DataLoader / tensors; goal >= 5x
with workers 0). Usage: ``python benchmarks/train_throughput.py [--repeats 5] [--n 60000]``.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch.nn import functional as F

import dldna_lite as dl
from dldna_lite import models
from _common import add_timing_args, apply_timing_args  # benchmarks/_common.py

BATCH, SEED = 256, 0
PIXEL_TOL, STEP_TOL, FIRST_STEPS, MEAN_TOL = 1e-6, 1e-5, 20, 1e-2


def one_epoch(model, batches) -> tuple[float, torch.Tensor]:
    """Train ``model`` for one pass over ``batches`` with SGD; return the wall time (s) and the per-step losses."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    start = time.perf_counter()
    for xb, yb in batches:
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return time.perf_counter() - start, torch.stack(losses)


def loader(workers: int, n: int):
    from torch.utils.data import DataLoader, Subset
    from torchvision import transforms
    from torchvision.datasets import FashionMNIST

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((dl.data.MEAN,), (dl.data.STD,))])
    ds = FashionMNIST(str(dl.data.torchvision_root()), train=True, download=False, transform=tf)
    ds = Subset(ds, range(n)) if n < len(ds) else ds                 # the first n images, as load_fashion_mnist's limit
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(SEED)).tolist()   # = dl.batches'
    return DataLoader(ds, batch_size=BATCH, sampler=order, num_workers=workers)


def check_same_batches(X: torch.Tensor, y: torch.Tensor, n_batches: int = 5) -> float:
    """The first batches of the DataLoader and of ``dl.batches`` hold the same images; returns max |Δpixel|."""
    worst = 0.0
    ours = dl.batches(X, y, BATCH, generator=torch.Generator().manual_seed(SEED))
    for (xa, ya), (xb, yb), _ in zip(loader(0, len(X)), ours, range(n_batches)):
        assert torch.equal(ya, yb), "the DataLoader and dl.batches draw different images"
        worst = max(worst, (xa - xb).abs().max().item())
    assert worst <= PIXEL_TOL, f"pixels differ by {worst:.1e} > {PIXEL_TOL}"
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60000, help="training images (default all 60000)")
    add_timing_args(parser, "timed epochs per contender")
    args = parser.parse_args()
    apply_timing_args(parser, args)
    dl.seed_everything(0)
    model = models.SimpleNetwork("relu", widths=(512, 64))
    X, y = dl.load_fashion_mnist("train", limit=args.n)
    pixel_diff = check_same_batches(X, y)
    contenders = {
        "DataLoader, workers 0": lambda: loader(0, len(X)),
        "DataLoader, workers 2": lambda: loader(2, len(X)),
        "dl.batches (tensors)": lambda: dl.batches(X, y, BATCH, generator=torch.Generator().manual_seed(SEED)),
    }
    names = list(contenders)
    for name in names:                                        # warm-up: page cache, allocator, thread pools
        one_epoch(copy.deepcopy(model), contenders[name]())
    times = {name: [] for name in names}
    losses = {}
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:       # rotate who goes first
            seconds, trace = one_epoch(copy.deepcopy(model), contenders[name]())
            times[name].append(seconds)
            losses.setdefault(name, trace)
    ref = losses[names[-1]]
    assert all(len(trace) == len(ref) for trace in losses.values()), "different numbers of steps"
    step_diff = max(((t[:FIRST_STEPS] - ref[:FIRST_STEPS]).abs() / ref[:FIRST_STEPS]).max().item()
                    for t in losses.values())
    mean_diff = max(abs(t.mean().item() - ref.mean().item()) / ref.mean().item() for t in losses.values())
    assert step_diff <= STEP_TOL, f"losses of the first {FIRST_STEPS} steps differ by {step_diff:.1e} > {STEP_TOL}"
    assert mean_diff <= MEAN_TOL, f"the epochs' mean losses differ by {mean_diff:.1e} relative > {MEAN_TOL}"

    print(f"one epoch, {len(X):,} images, batch {BATCH}, MLP 784-512-64-10, {torch.get_num_threads()} threads, "
          f"{args.repeats} rotated epochs each after a warm-up")
    print(f"checked: same images in the same order (labels equal, pixels within {pixel_diff:.1e}); losses of the "
          f"first {FIRST_STEPS} steps within {step_diff:.1e} relative (<= {STEP_TOL:g}), mean losses of the "
          f"{len(ref)}-step epochs within {mean_diff:.1e} (<= {MEAN_TOL:g})")
    print(f"  {'contender':<24} {'median s':>9} {'min-max s':>13}")
    for name in names:
        t = times[name]
        print(f"  {name:<24} {statistics.median(t):>9.2f} {min(t):>6.2f}-{max(t):<6.2f}")
    tensor = statistics.median(times[names[-1]])
    workers2 = statistics.median(times[names[1]]) / tensor
    print(f"(DataLoader with 2 workers / tensors: ratio {workers2:.1f}x)")
    print(f"train_throughput: ratio {statistics.median(times[names[0]]) / tensor:.1f}x (median of {args.repeats})")


if __name__ == "__main__":
    main()
