"""Sized for the device (issue 27): the scan engine's block budget follows the device's free memory (faked on the
CPU by monkeypatching ``torch.cuda.mem_get_info``), and Lanczos reads the device a fixed number of times per step
(counted with a ``TorchFunctionMode``), not once per Ritz value and basis vector."""
import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from dldna_lite import hessian as hs
from dldna_lite import landscape as L
from dldna_lite.hessian import krylov
from dldna_lite.landscape import engine, kernels
from landscape_helpers import TinyCNN, data, mlp

GiB = 2 ** 30


def test_block_budget_is_the_tuned_value_on_the_cpu():
    assert kernels.block_budget("cpu") == kernels.block_budget(torch.device("cpu")) == 2 ** 20 \
        == kernels.CPU_BLOCK_BUDGET


@pytest.mark.parametrize("free, want", [(140 * GiB, 2 ** 27),          # an H200: capped
                                        (4 * GiB, 2 ** 25),            # 4 GiB / 128 = 32 MiB
                                        (3 * 10 ** 9, 2 ** 24),        # 23.4 M, rounded down to a power of two
                                        (64 * 2 ** 20, 2 ** 20)])      # almost full: never below the CPU's
def test_block_budget_on_cuda_is_a_share_of_free_memory(monkeypatch, free, want):
    asked = []

    def mem_get_info(device=None):
        asked.append(device)
        return free, 141 * GiB

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    assert kernels.block_budget("cuda:0") == want
    assert asked == [torch.device("cuda:0")]


def test_the_engine_takes_its_budget_from_the_data_device(monkeypatch):
    """The engine asks :func:`block_budget` for the device it computes on and sizes its batches with the answer;
    a larger budget (as on a GPU) evaluates more points per batch and gives the same numbers."""
    X, y = data(image=True)
    torch.manual_seed(0)
    model = TinyCNN().eval()
    gen = torch.Generator().manual_seed(0)
    dirs = [L.random_direction(model, generator=gen) for _ in range(2)]
    coords = np.stack(np.meshgrid(np.linspace(-1, 1, 6), np.linspace(-1, 1, 6)), -1).reshape(-1, 2)
    small = L.point_evaluator(model, (X, y), dirs)
    asked = []
    monkeypatch.setattr(engine, "block_budget", lambda device: asked.append(device) or 2 ** 27)
    large = L.point_evaluator(model, (X, y), dirs)
    assert asked == [X.device] and large.budget == 2 ** 27 and small.budget == 2 ** 20
    assert large.chunk > small.chunk and small.path == large.path == "vmap"
    for got, want in zip(large.batch(coords), small.batch(coords)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    big_mlp = L.point_evaluator(mlp(), data(), [L.random_direction(mlp(), generator=gen)])
    assert big_mlp.path == "first-layer+bmm" and big_mlp.rows_per_block >= len(data()[0])    # one block of images


READS = {"item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__"}


class Reads(TorchFunctionMode):
    """Counts every read of a tensor's value from Python (on the CPU every tensor counts: a stand-in for the
    device reads they would be on a GPU)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.count += getattr(func, "__name__", "") in READS
        return func(*args, **(kwargs or {}))


class _Symmetric:
    def __init__(self, n=300, seed=0):
        g = torch.Generator().manual_seed(seed)
        Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
        self.eig = torch.cat([torch.tensor([5.0, -4.9, 4.8, 4.7]), torch.linspace(-4.5, 4.5, n - 4)]).double()
        self.A = Q @ torch.diag(self.eig) @ Q.T
        self.size, self.dtype, self.device, self.n_products = n, torch.float64, torch.device("cpu"), 0
        self._g = torch.randn(n, generator=g, dtype=torch.float64)

    def __call__(self, v):
        self.n_products += 1
        return self.A @ v

    def gradient(self):
        return self._g


@pytest.mark.parametrize("k", [1, 4])
def test_lanczos_reads_a_few_scalars_per_step(k):
    A = _Symmetric()
    with Reads() as reads:
        values, _ = krylov.lanczos_top(A, k, 300, 1e-10, None, torch.Generator().manual_seed(0), max_basis=12)
    want = sorted(A.eig.tolist(), key=abs, reverse=True)[:k]
    assert sorted(values, key=abs, reverse=True) == pytest.approx(want, abs=1e-7)
    assert A.n_products > 12                                          # it restarted at least once
    # per step: the re-orthogonalisation test (1-2), the column of T with ||f|| (1), three of the Ritz values
    assert reads.count <= 7 * A.n_products + 10, (reads.count, A.n_products)


def test_slq_lanczos_reads_once_per_step():
    A = _Symmetric(n=120)
    v0 = torch.randn(120, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with Reads() as reads:
        nodes, weights = hs.lanczos(A, v0, 20)
    assert len(nodes) == 20 and abs(weights.sum().item() - 1) < 1e-12
    assert reads.count <= 20 + 2, reads.count
