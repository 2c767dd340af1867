"""Every script of ``benchmarks/`` runs end to end at tiny sizes and prints its summary line (``make benchmarks``
runs them at full size; nothing else would notice an API change that breaks one). The ratios at these sizes mean
nothing; the scripts' own equality checks (same batches, same losses, same eigenvalues) do run and must pass."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SMOKE = {
    "train_throughput.py": (["--n", "512"], r"^train_throughput: ratio [\d.]+x \(median of 5\)$"),
    "landscape_scan.py": (["--grid", "3", "--n", "100", "--train-steps", "5"],
                          r"^landscape_scan: ratio [\d.]+x \(median of 5\)$"),
    "hessian_top_eigenvalues.py": (["--n", "64"], r"^hessian_top_eigenvalues: ratio [\d.]+x \(median of 5\)$"),
    "scan_distributed.py": (["--grid", "5", "--n", "200", "--train-steps", "5"],
                            r"^ratio 1 process / 2 processes: .*results identical \(bitwise\): (True|False)$"),
}


def test_every_benchmark_is_covered():
    scripts = {p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(SMOKE), "add the new benchmark to SMOKE (and to `make benchmarks`)"


@pytest.mark.parametrize("script", sorted(SMOKE))
def test_benchmark_runs_at_tiny_size(script):
    args, summary = SMOKE[script]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          cwd=BENCHMARKS, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(summary, done.stdout, re.M), done.stdout[-2000:]
