"""Shared test set-up: the quick profile, no progress bars, deterministic CPU torch."""
import os

os.environ.setdefault("DLDNA_PROFILE", "quick")
os.environ.setdefault("DLDNA_PROGRESS", "0")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def fmnist_small():
    """2,000 training and 1,000 test images, flattened ``[N, 784]``."""
    from dldna_lite.data import load_fashion_mnist

    return load_fashion_mnist("train", limit=2000, flatten=True), load_fashion_mnist("test", limit=1000, flatten=True)
