"""Benchmark: a 41×41 filter-normalised loss-surface scan of the Fashion-MNIST MLP (784-100-10, 79,510 parameters).

Fast engine (``dldna_lite.landscape.scan_2d``: one working model, first layer from three precomputed products,
grid rows evaluated in batches with ``torch.func.vmap``) against the naive loop (``deepcopy`` of the model per grid
point, parameters set, full forward pass). Checks that both give the same values (1e-5) and prints both times and
the ratio. Usage: ``python benchmarks/landscape_scan.py [--grid 41] [--n 2000]``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.nn import functional as F

import dldna_lite as dl
from dldna_lite import landscape, models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=41, help="points per axis (default 41)")
    parser.add_argument("--n", type=int, default=2000, help="evaluation images (default 2000)")
    parser.add_argument("--train-steps", type=int, default=200, help="SGD steps before scanning (default 200)")
    args = parser.parse_args()

    X, y = dl.load_fashion_mnist("train", limit=max(args.n, 6000), flatten=True)
    dl.seed_everything(0)
    model = models.mlp([784, 100, 10])
    dl.fit(model, torch.optim.SGD(model.parameters(), lr=0.1), (X, y), epochs=1, max_steps=args.train_steps,
           progress=False)
    data = (X[:args.n], y[:args.n])
    gen = torch.Generator().manual_seed(1)
    d1 = landscape.random_direction(model, "filter", generator=gen)
    d2 = landscape.random_direction(model, "filter", generator=gen)
    xs = ys = np.linspace(-1, 1, args.grid)
    landscape.scan_2d(model, d1, d2, xs[:3], ys[:3], F.cross_entropy, data, progress=False)  # warm-up

    start = time.perf_counter()
    fast = landscape.scan_2d(model, d1, d2, xs, ys, F.cross_entropy, data, progress=False)
    t_fast = time.perf_counter() - start
    start = time.perf_counter()
    naive = landscape.scan_2d_naive(model, d1, d2, xs, ys, F.cross_entropy, data)
    t_naive = time.perf_counter() - start

    err = np.abs(fast["loss"] - naive["loss"]).max() / np.abs(naive["loss"]).max()
    acc_err = np.abs(fast["acc"] - naive["acc"]).max()
    print(f"grid {args.grid}x{args.grid} on {args.n} images, {models.count_parameters(model):,} parameters, "
          f"{torch.get_num_threads()} threads")
    print(f"naive (deepcopy per point): {t_naive:8.2f} s")
    print(f"fast  (scan_2d)           : {t_fast:8.2f} s")
    print(f"speed-up: {t_naive / t_fast:.1f}x; max relative loss difference {err:.1e}, max accuracy difference "
          f"{acc_err:.1e}")
    assert err < 1e-5, f"fast and naive scans differ by {err:.2e}"
    assert acc_err <= 1.0 / args.n + 1e-12, f"accuracies differ by {acc_err}"


if __name__ == "__main__":
    main()
