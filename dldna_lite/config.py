"""Run profiles, device choice and seeding.

Every experiment in the book reads its sizes (epochs, subset sizes, grid sizes) from :data:`SIZES`
through :func:`sizes`, so that one environment variable, ``DLDNA_PROFILE``, scales the whole book:

* ``quick`` -- what the tests and nbval run (the whole book in a few minutes on 2 CPU cores);
* ``cpu``   -- the default book build on a laptop CPU;
* ``gpu``   -- the source's full sizes, meant for a CUDA device.

Same code, different sizes: a chapter never branches on the profile except through these numbers.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

PROFILES = ("quick", "cpu", "gpu")
DEFAULT_PROFILE = "cpu"

#: Sizes per chapter (section) and profile. A chapter owns exactly one section.
SIZES: dict[str, dict[str, dict]] = {
    "quickstart": {
        "quick": dict(train_limit=6000, test_limit=2000, epochs=2, batch_size=128, lrs=(0.01, 0.1, 0.5)),
        "cpu": dict(train_limit=None, test_limit=None, epochs=5, batch_size=128, lrs=(0.003, 0.01, 0.03, 0.1, 0.3, 1.0)),
        "gpu": dict(train_limit=None, test_limit=None, epochs=10, batch_size=128, lrs=(0.003, 0.01, 0.03, 0.1, 0.3, 1.0)),
    },
}


def profile() -> str:
    """The active profile name, from ``$DLDNA_PROFILE`` (default ``cpu``).

    Raises ``ValueError`` naming the valid choices when the variable holds anything else.
    """
    name = os.environ.get("DLDNA_PROFILE", DEFAULT_PROFILE).strip().lower() or DEFAULT_PROFILE
    if name not in PROFILES:
        raise ValueError(f"DLDNA_PROFILE={name!r} is not a profile; choose one of {', '.join(PROFILES)}")
    return name


def sizes(section: str, profile_name: str | None = None) -> dict:
    """The sizes of one chapter's experiments in the active (or given) profile, as a fresh dict."""
    if section not in SIZES:
        raise ValueError(f"unknown size section {section!r}; choose one of {', '.join(sorted(SIZES))}")
    name = profile() if profile_name is None else profile_name
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return dict(SIZES[section][name])


def device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a CPU ``torch.Generator`` seeded the same way.

    With the same seed, the same code gives identical numbers on the CPU.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
