"""dldna_lite.distributed.setup / teardown: which device and backend each torchrun rank gets (faked GPU worlds on the
CPU), the process-group timeout, the collectives' handles kept until the group is gone (the torch 2.5-2.7 exit
deadlock), and the watchdog that ends a teardown that never returns."""
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from dldna_lite import distributed

ROOT = Path(__file__).resolve().parents[1]
SUBPROCESS_TIMEOUT = 300                  # a loaded 2-core machine: a hang becomes a failure, with margin


def _rank_env(monkeypatch, rank, world, port=29500):
    for name, value in dict(RANK=rank, WORLD_SIZE=world, LOCAL_RANK=rank, LOCAL_WORLD_SIZE=world,
                            MASTER_ADDR="127.0.0.1", MASTER_PORT=port).items():
        monkeypatch.setenv(name, str(value))


@pytest.fixture
def fake_world(monkeypatch):
    """``gpus(n)`` fakes a machine with ``n`` GPUs (0: none); ``init_process_group`` is recorded, not run."""
    calls = []
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: calls.append((backend, kw)))
    monkeypatch.setattr(torch.cuda, "set_device", lambda dev: calls.append(("set_device", dev)))

    def gpus(n):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        return calls
    return gpus


def test_two_ranks_on_one_gpu_share_it_over_gloo(fake_world, monkeypatch):
    calls = fake_world(1)
    _rank_env(monkeypatch, rank=1, world=2)
    for device in ("auto", "cuda"):
        calls.clear()
        ctx = distributed.setup(device)
        assert ctx.device == torch.device("cuda:0")           # not cuda:1, which this machine does not have
        assert ctx.backend == "gloo" and (ctx.rank, ctx.world_size, ctx.local_world_size) == (1, 2, 2)
        (_, dev), (backend, kw) = calls
        assert dev == torch.device("cuda:0") and backend == "gloo" and kw["device_id"] is None  # NCCL: 1 rank/GPU
        assert kw["rank"] == 1 and kw["world_size"] == 2


def test_one_gpu_per_rank_uses_nccl_on_its_own_gpu(fake_world, monkeypatch):
    calls = fake_world(2)
    _rank_env(monkeypatch, rank=1, world=2)
    ctx = distributed.setup("auto")
    assert ctx.device == torch.device("cuda:1") and ctx.backend == "nccl"
    assert calls[-1] == ("nccl", dict(rank=1, world_size=2, timeout=timedelta(seconds=distributed.TIMEOUT),
                                      device_id=torch.device("cuda:1")))


def test_cpu_ranks_use_gloo_with_the_timeout(fake_world, monkeypatch):
    calls = fake_world(0)
    _rank_env(monkeypatch, rank=0, world=2)
    ctx = distributed.setup("auto", timeout=42)
    assert ctx.device == torch.device("cpu") and ctx.backend == "gloo"
    assert calls == [("gloo", dict(rank=0, world_size=2, timeout=timedelta(seconds=42), device_id=None))]
    with pytest.raises(ValueError, match="CUDA is not available; use --device cpu"):
        distributed.setup("cuda")
    for bad in (0, -1.0, float("inf"), "600"):
        with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
            distributed.setup("cpu", timeout=bad)


def test_a_plain_process_joins_no_group(fake_world, monkeypatch):
    calls = fake_world(1)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    ctx = distributed.setup("auto")
    assert ctx.backend is None and ctx.device == torch.device("cuda:0") and calls == [("set_device", ctx.device)]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_collectives_keep_their_handles_until_the_group_is_destroyed(monkeypatch):
    """A real one-rank gloo group. Up to torch 2.7 a gloo worker thread that frees the last reference to a finished
    collective needs the GIL, which destroy_process_group holds while it joins that thread: a deadlock at exit.
    So every handle must still be alive when the group is destroyed, and be released only afterwards."""
    _rank_env(monkeypatch, rank=0, world=1, port=_free_port())
    ctx = distributed.setup("cpu", timeout=60)
    seen = []
    destroy = dist.destroy_process_group
    monkeypatch.setattr(dist, "destroy_process_group", lambda: (seen.append(len(distributed._IN_FLIGHT)), destroy()))
    try:
        assert distributed.broadcast(ctx, {"todo": [1, 2]}) == {"todo": [1, 2]}
        distributed.check_same(ctx, "hash", "the hashes")
        got = distributed.gather_chunks(ctx, 3, np.array([0.1, np.nan]), np.array([1.0, 0.5]))
        assert len(got) == 1 and got[0][0] == 3 and np.array_equal(got[0][1], [0.1, np.nan], equal_nan=True)
        assert len(distributed._IN_FLIGHT) == 6                   # two all-gathers (sizes, bytes) per exchange
    finally:
        distributed.teardown(ctx)
    assert seen == [6] and distributed._IN_FLIGHT == [] and not dist.is_initialized()


_HUNG_TEARDOWN = """
import time
import torch.distributed as dist
from dldna_lite import distributed

def never_returns():                              # stands for the deadlocked destructor (it holds the GIL too)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        pass
    print("teardown returned", flush=True)

dist.is_initialized = lambda: True
dist.destroy_process_group = never_returns
distributed.teardown(distributed.Context(world_size=2, backend="gloo"), timeout=1)
"""


def test_a_teardown_that_never_returns_ends_the_process():
    proc = subprocess.run([sys.executable, "-c", _HUNG_TEARDOWN], cwd=ROOT, capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT)
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "teardown returned" not in proc.stdout
    assert "Timeout" in proc.stderr and "never_returns" in proc.stderr     # faulthandler's dump: where it hung


_LIFETIMES = """
import faulthandler, os, sys, tempfile
import numpy as np
import torch.distributed as dist
from dldna_lite import distributed

folder = tempfile.mkdtemp()
for i in range(int(sys.argv[1])):
    faulthandler.dump_traceback_later(30, exit=True)     # a hung exit becomes exit code 1 with the stacks
    dist.init_process_group("gloo", init_method=f"file://{folder}/store{i}", rank=0, world_size=1)
    ctx = distributed.Context(backend="gloo")
    distributed.gather_chunks(ctx, i, np.arange(15.0), np.ones(15))
    distributed.teardown(ctx)
    faulthandler.cancel_dump_traceback_later()
print("all exits clean", flush=True)
"""


def test_many_exchange_then_teardown_cycles_never_hang():
    """The exit race itself: with torch 2.5.1 the former code (``dist.all_gather_object`` then
    ``destroy_process_group``) hung within 3-30 such cycles; the handles kept until teardown make it impossible.
    (torch >= 2.8 releases the GIL in the destructor, so there this guards against a regression only.)"""
    proc = subprocess.run([sys.executable, "-c", _LIFETIMES, "100"], cwd=ROOT, capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT)
    assert proc.returncode == 0 and "all exits clean" in proc.stdout, (proc.returncode, proc.stderr[-3000:])
