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
# Wall time is CPU time times the load: on a 2-core machine at load average 10-12 the slowest script (hessian, k=1)
# took 213 s, the others 35-91 s (with k=2 the hessian script ran past 600 s there). A timeout only turns a hang
# into a failure, so it leaves room for twice that load.
TIMEOUT = 1200
SMOKE = {
    "train_throughput.py": (["--n", "512"], r"^train_throughput: ratio [\d.]+x \(median of 5\)$"),
    "landscape_scan.py": (["--grid", "3", "--n", "100", "--train-steps", "5"],
                          r"^landscape_scan: ratio [\d.]+x \(median of 5\)$"),
    # k=1: half the work of the default k=2 (the 435,402-parameter model is fixed): 62 s CPU instead of 143 s
    "hessian_top_eigenvalues.py": (["--n", "64", "--k", "1"],
                                   r"^hessian_top_eigenvalues: ratio [\d.]+x \(median of 5\)$"),
    # bitwise, as the script asserts: 1 process x 2 threads, 2 x 1 and 1 x 1 (the CLI sets MKL_CBWR=AUTO,STRICT)
    "scan_distributed.py": (["--grid", "5", "--n", "200", "--train-steps", "5"],
                            r"^ratio 1 process / 2 processes: .*results identical \(bitwise\): True$"),
}


def test_every_benchmark_is_covered():
    scripts = {p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(SMOKE), "add the new benchmark to SMOKE (and to `make benchmarks`)"


@pytest.mark.parametrize("script", sorted(SMOKE))
def test_benchmark_runs_at_tiny_size(script):
    args, summary = SMOKE[script]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          cwd=BENCHMARKS, env=env, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(summary, done.stdout, re.M), done.stdout[-2000:]
