"""Benchmark: the same ``python -m dldna_lite.landscape`` run as 1 process and under ``torchrun`` with 2 processes (gloo).

The model is the Fashion-MNIST MLP (784-100-10) after a few SGD steps, saved with ``landscape.save_checkpoint``; the scan
is a 51×51 filter-normalized plane on the 10,000 test images (big enough that start-up is not all of it). Each
process uses ``cores // processes`` threads (the CLI's default), so on a 2-core machine it is 1 process × 2 threads
against 2 processes × 1 thread; a third run, 1 process × 1 thread, shows what one core does alone. Prints the wall
time of each command (including Python and torch start-up and, for torchrun, the rendezvous) and the scan time the
CLI reports, the ratios, and checks that the three result files are identical. With CUDA the CLI's device "auto"
puts every process on a GPU (two processes share one GPU over gloo on a 1-GPU machine). Usage: ``python
benchmarks/scan_distributed.py [--grid 51] [--n 10000] [--nproc 2]``.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import dldna_lite as dl
from dldna_lite import distributed, landscape, models

TIMEOUT = 1800      # seconds per command: a hung run fails the benchmark instead of blocking it


def run(label: str, launcher: list[str], args: list[str]) -> tuple[float, float, Path]:
    """Run the CLI once; return (wall seconds of the command, scan seconds it printed, result file)."""
    out = Path(args[args.index("--out") + 1])
    start = time.perf_counter()
    try:
        proc = subprocess.run([*launcher, "-m", "dldna_lite.landscape", *args], capture_output=True, text=True,
                              env=dict(os.environ, DLDNA_PROGRESS="0"), timeout=TIMEOUT)
    except subprocess.TimeoutExpired as err:
        sys.exit(f"{label} did not end within {TIMEOUT} s (a hang?):\n{err.stdout or ''}\n{err.stderr or ''}")
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{label} failed:\n{proc.stdout}\n{proc.stderr}")
    found = re.search(r"in ([0-9.]+) s", proc.stdout)
    print(f"  {label:<30} {proc.stdout.strip()}")
    return wall, float(found.group(1)) if found else float("nan"), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=51, help="points per axis (default 51)")
    parser.add_argument("--n", type=int, default=10000, help="evaluation images (default 10000)")
    parser.add_argument("--nproc", type=int, default=2, help="torchrun processes (default 2)")
    parser.add_argument("--train-steps", type=int, default=200, help="SGD steps before scanning (default 200)")
    args = parser.parse_args()

    X, y = dl.load_fashion_mnist("train", limit=6000, flatten=True)
    dl.seed_everything(0)
    model = models.mlp([784, 100, 10])
    dl.fit(model, torch.optim.SGD(model.parameters(), lr=0.1), (X, y), epochs=1, max_steps=args.train_steps,
           progress=False)
    cores = distributed.threads_per_process(1)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = landscape.save_checkpoint(model, Path(tmp) / "mlp.pt", "mlp", widths=[784, 100, 10])
        common = ["--checkpoint", str(ckpt), "--grid", str(args.grid), "--n-eval", str(args.n)]
        print(f"grid {args.grid}x{args.grid} on {args.n} images, {cores} cores:")
        one = run(f"1 process x {cores} threads", [sys.executable], [*common, "--out", f"{tmp}/one.npz"])
        many = run(f"{args.nproc} processes (torchrun)",
                   [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}"],
                   [*common, "--out", f"{tmp}/many.npz"])
        single = run("1 process x 1 thread", [sys.executable], [*common, "--out", f"{tmp}/single.npz",
                                                                 "--threads", "1"])
        files = [np.load(r[2]) for r in (one, many, single)]
        same = all(np.array_equal(files[0][k], f[k]) for f in files[1:] for k in files[0].files)
    print(f"{'run':<32} {'command wall (s)':>16} {'scan (s)':>9}")
    for label, (wall, inner, _) in ((f"1 process x {cores} threads", one), (f"{args.nproc} processes", many),
                                    ("1 process x 1 thread", single)):
        print(f"{label:<32} {wall:>16.2f} {inner:>9.2f}")
    print(f"ratio 1 process / {args.nproc} processes: command {one[0] / many[0]:.2f}x, scan {one[1] / many[1]:.2f}x; "
          f"results identical (bitwise): {same}")
    assert same, "the scans differ"


if __name__ == "__main__":
    main()
