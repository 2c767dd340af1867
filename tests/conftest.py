"""Shared test set-up: the quick profile, no progress bars, deterministic CPU torch.

Reproducibility (what :func:`dldna_lite.config.seed_everything` promises): the same seed gives bitwise the same
numbers only at the same intra-op thread count and flush-denormal setting. A test that compares "the same run" two
ways either runs both sides inside ``pinned_threads(n)`` (the fixture below) and compares bitwise, or compares with a
tolerance measured across 1 and 2 threads and written next to the assertion. Every test starts with torch's seed 0
and ends with the thread count and flush-denormal setting it started with, whatever it (or the code it calls) set.
"""
import contextlib
import os

os.environ.setdefault("DLDNA_PROFILE", "quick")
os.environ.setdefault("DLDNA_PROGRESS", "0")
# OpenMP threads that wait by sleeping, not spinning: set before torch loads libgomp, inherited by every subprocess
# and kernel a test starts. On a loaded 2-core machine spinning threads made a test 10-20x slower; no number changes.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

_DENORMAL = torch.tensor([1e-40])   # float32 denormal (the smallest normal float32 is 1.2e-38)


def flush_denormal_enabled() -> bool:
    """Whether the calling thread flushes denormals to zero (torch has a setter and no getter: with the flag on, a
    denormal times one reads as zero; a one-element product always runs on the calling thread)."""
    return (_DENORMAL * 1.0).item() == 0.0


@contextlib.contextmanager
def _pinned_threads(threads: int, *, flush_denormal: bool = False):
    """Run the block with ``torch.set_num_threads(threads)`` and ``torch.set_flush_denormal(flush_denormal)``,
    then restore both (also when the block raises). Flush-denormal holds for the calling thread only (torch's
    worker threads keep their own setting), so it is accepted with one thread only."""
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    if flush_denormal and threads != 1:
        raise ValueError(f"flush_denormal=True holds for the calling thread only: use threads=1, not {threads}")
    before = torch.get_num_threads(), flush_denormal_enabled()
    torch.set_num_threads(threads)
    torch.set_flush_denormal(flush_denormal)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        torch.set_flush_denormal(before[1])


@pytest.fixture
def pinned_threads():
    """The context manager ``pinned_threads(threads, *, flush_denormal=False)``: ``with pinned_threads(1): ...``."""
    return _pinned_threads


@pytest.fixture(autouse=True)
def _deterministic():
    threads, flush = torch.get_num_threads(), flush_denormal_enabled()
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
    torch.set_flush_denormal(flush)


@pytest.fixture(scope="session")
def fmnist_small():
    """2,000 training and 1,000 test images, flattened ``[N, 784]``."""
    from dldna_lite.data import load_fashion_mnist

    return load_fashion_mnist("train", limit=2000, flatten=True), load_fashion_mnist("test", limit=1000, flatten=True)
