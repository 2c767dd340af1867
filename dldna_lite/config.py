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
    "analysis": {
        "quick": dict(train_limit=10000, eval_limit=1000, hidden=100, batch_size=128, traj_epochs=2, traj_every=5,
                      plane_grid=21, scan_grid=32, scan_span=1.0, deep_depth=8, mc_epochs=3, bezier_epochs=3,
                      mc_points=21, toy_steps=100),
        "cpu": dict(train_limit=None, eval_limit=5000, hidden=100, batch_size=128, traj_epochs=5, traj_every=50,
                    plane_grid=41, scan_grid=64, scan_span=1.0, deep_depth=8, mc_epochs=10, bezier_epochs=10,
                    mc_points=41, toy_steps=150),
        "gpu": dict(train_limit=None, eval_limit=10000, hidden=100, batch_size=128, traj_epochs=20, traj_every=100,
                    plane_grid=81, scan_grid=128, scan_span=1.0, deep_depth=8, mc_epochs=20, bezier_epochs=20,
                    mc_points=61, toy_steps=200),
    },
    "exercises": {
        "quick": dict(init_train_limit=4000, init_test_limit=1000, init_epochs=2),
        "cpu": dict(init_train_limit=10000, init_test_limit=2000, init_epochs=3),
        "gpu": dict(init_train_limit=None, init_test_limit=None, init_epochs=5),
    },
    "optim": {
        "quick": dict(traj_steps=150, sweep_train=4000, val_size=1000, sweep_epochs=2, train_limit=6000,
                      test_limit=2000, epochs=2, seeds=(0,), batch_size=128, lr_grid=3, large_epochs=1,
                      large_train=2000, large_test=500, large_width=0.25),
        "cpu": dict(traj_steps=200, sweep_train=10000, val_size=5000, sweep_epochs=2, train_limit=None,
                    test_limit=None, epochs=5, seeds=(0, 1, 2), batch_size=128, lr_grid=5, large_epochs=2,
                    large_train=10000, large_test=2000, large_width=0.5),
        "gpu": dict(traj_steps=300, sweep_train=None, val_size=5000, sweep_epochs=3, train_limit=None,
                    test_limit=None, epochs=20, seeds=(0, 1, 2), batch_size=128, lr_grid=5, large_epochs=40,
                    large_train=None, large_test=None, large_width=1.0),
    },
    "init": {
        "quick": dict(train_limit=6000, test_limit=2000, batch_size=128, lr=0.01, deep_width=128, depths=(22, 30),
                      deep_epochs=3, compare_epochs=2, seeds=(0,), target_loss=0.6, probe_batch=256,
                      widget_depths=(5, 10, 20, 30)),
        "cpu": dict(train_limit=20000, test_limit=None, batch_size=128, lr=0.01, deep_width=128, depths=(22, 30),
                    deep_epochs=3, compare_epochs=3, seeds=(0, 1, 2), target_loss=0.5, probe_batch=512,
                    widget_depths=(5, 10, 20, 30)),
        "gpu": dict(train_limit=None, test_limit=None, batch_size=128, lr=0.01, deep_width=256, depths=(22, 30),
                    deep_epochs=10, compare_epochs=3, seeds=(0, 1, 2, 3, 4), target_loss=0.5, probe_batch=1024,
                    widget_depths=(5, 10, 20, 30)),
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
