"""Benchmark: top-k Hessian eigenvalues, ``dldna_lite.hessian.top_eigenvalues`` (Lanczos) against PyHessian 0.1.

Model and batch: the MLP 784-512-64-10 (``models.mlp``, 435,402 parameters, seed 0) and the first 2,048 Fashion-MNIST
test images, cross-entropy; first at its initialization (the summary line), then after one epoch of SGD on 6,000
training images. Both contenders get the same model object, the same batch, ``k`` (``top_n``), ``max_iter``
(``maxIter``) and ``tol``; repetition ``r`` seeds both with ``r`` (our generator, PyHessian's global RNG). Both
build the gradient graph once and reuse it for every Hessian-vector product (HVP), so the time is mostly HVPs.

What is checked: both compute the top-k eigenvalues of the same Hessian. The reference is ARPACK
(``scipy.sparse.linalg.eigsh``, ``tol=1e-10``) on float64 HVPs of a float64 copy of the model and batch; every
eigenvalue of every run of ours must be within 1e-3 relative of it (asserted), PyHessian's within 5e-2 (asserted:
a power iteration stopped by its own ``tol`` is that loose when eigenvalues are close; its errors are printed).

Timing: one untimed warm-up run of each, then ``--repeats`` timed runs per contender, alternating which goes first;
the median, min and max of each, their HVP counts, and the ratio of the medians (ours / PyHessian; goal <= 0.5).
Usage: ``python benchmarks/hessian_top_eigenvalues.py [--k 2] [--tol 1e-4] [--repeats 5] [--n 2048]``.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh
from torch.nn import functional as F

import dldna_lite as dl
from dldna_lite import hessian, models
from _common import add_timing_args, apply_timing_args  # benchmarks/_common.py

OURS_TOL, THEIRS_TOL = 1e-3, 5e-2          # relative accuracy asserted against the float64 ARPACK reference


def reference(model, data, k: int) -> list[float]:
    """The ``k`` eigenvalues of largest magnitude by ARPACK on float64 Hessian-vector products."""
    model64 = copy.deepcopy(model).double()
    data64 = (data[0].double(), data[1])
    with hessian.HessianOperator(model64, data64) as H:
        op = LinearOperator((H.size, H.size), dtype=np.float64,
                            matvec=lambda v: H(torch.from_numpy(np.asarray(v, dtype=np.float64).ravel())).numpy())
        values = eigsh(op, k=k + 2, which="LM", tol=1e-10, v0=np.random.default_rng(0).standard_normal(H.size))[0]
    return sorted(values.tolist(), key=abs, reverse=True)[:k]


class Counter:
    """Counts Hessian-vector products of both contenders (one integer increment per ~50 ms product)."""

    def __init__(self):
        self.n = 0
        ph = sys.modules["pyhessian.hessian"]
        ours, theirs = hessian.HessianOperator.__call__, ph.hessian_vector_product

        def counted_ours(op, v):
            self.n += 1
            return ours(op, v)

        def counted_theirs(*args):
            self.n += 1
            return theirs(*args)

        hessian.HessianOperator.__call__ = counted_ours
        ph.hessian_vector_product = counted_theirs


def run_ours(model, data, args, seed: int) -> list[float]:
    values, _ = hessian.top_eigenvalues(model, data, k=args.k, max_iter=args.max_iter, tol=args.tol,
                                        generator=torch.Generator().manual_seed(seed))
    return values


def run_theirs(model, data, args, seed: int) -> list[float]:
    from pyhessian import hessian as PyHessian

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)          # backward(create_graph=True) reference-cycle warning
        values, _ = PyHessian(model, F.cross_entropy, data=data, cuda=False).eigenvalues(
            maxIter=args.max_iter, tol=args.tol, top_n=args.k)
    model.zero_grad(set_to_none=True)
    model.train()                                             # PyHessian leaves the model in eval mode
    return values


def compare(label: str, model, data, args, counter: Counter) -> float:
    """Time both contenders on ``model``; print the table; return the ratio of the medians."""
    ref = reference(model, data, args.k)
    contenders = {"dldna_lite (Lanczos)": run_ours, "PyHessian 0.1 (power)": run_theirs}
    for run in contenders.values():
        run(model, data, args, seed=10_000)                    # warm-up: allocator, kernels, first-call costs
    times = {name: [] for name in contenders}
    errors = {name: [] for name in contenders}
    products = {name: [] for name in contenders}
    for r in range(args.repeats):
        names = list(contenders) if r % 2 == 0 else list(contenders)[::-1]
        for name in names:
            counter.n = 0
            start = time.perf_counter()
            values = contenders[name](model, data, args, seed=r)
            times[name].append(time.perf_counter() - start)
            products[name].append(counter.n)
            errors[name].append(max(abs(v - w) / abs(w) for v, w in zip(values, ref)))
    print(f"\n{label}: top {args.k} eigenvalues, reference (float64 ARPACK) "
          + ", ".join(f"{v:.6g}" for v in ref))
    print(f"  {'contender':<24} {'median s':>9} {'min-max s':>13} {'HVPs (median)':>14} {'max rel. error':>15}")
    for name in contenders:
        t = times[name]
        print(f"  {name:<24} {statistics.median(t):>9.2f} {min(t):>6.2f}-{max(t):<6.2f} "
              f"{statistics.median(products[name]):>14.0f} {max(errors[name]):>15.1e}")
    ours, theirs = (errors[name] for name in contenders)
    assert max(ours) <= OURS_TOL, f"dldna_lite is off the reference by {max(ours):.1e} > {OURS_TOL}"
    assert max(theirs) <= THEIRS_TOL, f"PyHessian is off the reference by {max(theirs):.1e} > {THEIRS_TOL}"
    print(f"  checked: every run of ours within {OURS_TOL:g} of the reference, of PyHessian within {THEIRS_TOL:g}")
    a, b = (times[name] for name in contenders)
    return statistics.median(a) / statistics.median(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=2, help="eigenvalues (default 2)")
    parser.add_argument("--tol", type=float, default=1e-4, help="tolerance given to both (default 1e-4)")
    parser.add_argument("--max-iter", type=int, default=100, help="max_iter / maxIter given to both (default 100)")
    parser.add_argument("--n", type=int, default=2048, help="images in the batch (default 2048)")
    add_timing_args(parser, "timed runs per contender")
    args = parser.parse_args()
    apply_timing_args(parser, args)
    import pyhessian  # noqa: F401  (the test extra: pip install -e ".[test]")

    counter = Counter()
    data = dl.load_fashion_mnist("test", limit=args.n, flatten=True)
    dl.seed_everything(0)
    model = models.mlp([784, 512, 64, 10])
    print(f"MLP 784-512-64-10 ({models.count_parameters(model):,} parameters), {args.n} images, k={args.k}, "
          f"tol={args.tol:g}, max_iter={args.max_iter}, {args.repeats} alternated runs each after a warm-up, "
          f"{torch.get_num_threads()} threads")
    ratio = compare("at initialization", model, data, args, counter)
    X, y = dl.load_fashion_mnist("train", limit=6000, flatten=True)
    dl.fit(model, torch.optim.SGD(model.parameters(), lr=0.1), (X, y), epochs=1, progress=False)
    trained = compare("after one epoch of SGD", model, data, args, counter)
    print(f"\n(after one epoch of SGD: ratio {trained:.2f}x)")
    print(f"hessian_top_eigenvalues: ratio {ratio:.2f}x (median of {args.repeats})")


if __name__ == "__main__":
    main()
