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
        "cpu": dict(train_limit=None, test_limit=None, epochs=4, batch_size=128, lrs=(0.003, 0.01, 0.03, 0.1, 0.3, 1.0)),
        "gpu": dict(train_limit=None, test_limit=None, epochs=10, batch_size=128, lrs=(0.003, 0.01, 0.03, 0.1, 0.3, 1.0)),
    },
    "analysis": {
        "quick": dict(train_limit=10000, eval_limit=1000, hidden=100, batch_size=128, traj_epochs=2, traj_every=5,
                      plane_grid=21, scan_grid=32, scan_span=1.0, deep_depth=8, deep_epochs=2, mc_epochs=3,
                      bezier_epochs=3,
                      mc_points=21, toy_steps=100, sight_images=32, sight_hidden=16, sight_steps=300, sight_lr=1e-2),
        "cpu": dict(train_limit=None, eval_limit=2500, hidden=100, batch_size=128, traj_epochs=4, traj_every=50,
                    plane_grid=41, scan_grid=48, scan_span=1.0, deep_depth=8, deep_epochs=2, mc_epochs=4,
                    bezier_epochs=4,
                    mc_points=41, toy_steps=150, sight_images=256, sight_hidden=32, sight_steps=200, sight_lr=5e-3),
        "gpu": dict(train_limit=None, eval_limit=2500, hidden=100, batch_size=128, traj_epochs=10, traj_every=100,
                    plane_grid=61, scan_grid=64, scan_span=1.0, deep_depth=8, deep_epochs=5, mc_epochs=10,
                    bezier_epochs=10,
                    mc_points=41, toy_steps=200, sight_images=512, sight_hidden=32, sight_steps=400, sight_lr=3e-3),
    },
    "optim": {
        "quick": dict(traj_steps=150, sweep_train=4000, val_size=1000, sweep_epochs=2, train_limit=6000,
                      test_limit=2000, epochs=2, seeds=(0,), batch_size=128, lr_grid=3, large_epochs=1,
                      large_train=1000, large_test=500, large_width=0.25),
        "cpu": dict(traj_steps=200, sweep_train=6000, val_size=4000, sweep_epochs=2, train_limit=20000,
                    test_limit=None, epochs=2, seeds=(0, 1, 2), batch_size=128, lr_grid=5, large_epochs=2,
                    large_train=2000, large_test=1000, large_width=0.25),
        "gpu": dict(traj_steps=300, sweep_train=10000, val_size=5000, sweep_epochs=2, train_limit=None,
                    test_limit=None, epochs=2, seeds=(0, 1, 2), batch_size=128, lr_grid=5, large_epochs=2,
                    large_train=None, large_test=None, large_width=1.0),
    },
    "init": {
        "quick": dict(train_limit=6000, test_limit=2000, batch_size=128, lr=0.01, deep_width=128, depths=(22, 30),
                      deep_epochs=3, compare_epochs=2, seeds=(0,), target_loss=0.6, probe_batch=256,
                      widget_depths=(5, 10, 20, 30), symmetry_train=4096, symmetry_epochs=3),
        "cpu": dict(train_limit=20000, test_limit=None, batch_size=128, lr=0.01, deep_width=128, depths=(22, 30),
                    deep_epochs=3, compare_epochs=2, seeds=(0, 1, 2), target_loss=0.5, probe_batch=512,
                    widget_depths=(5, 10, 20, 30), symmetry_train=4096, symmetry_epochs=3),
        "gpu": dict(train_limit=None, test_limit=None, batch_size=128, lr=0.01, deep_width=256, depths=(22, 30),
                    deep_epochs=2, compare_epochs=1, seeds=(0, 1, 2), target_loss=0.5, probe_batch=1024,
                    widget_depths=(5, 10, 20, 30), symmetry_train=None, symmetry_epochs=5),
    },
    "landscape": {
        "quick": dict(train_limit=6000, eval_limit=1000, epochs=3, batch_size=128, lr=1e-3, line_points=31,
                      grid=15, interp_points=31, hess_limit=1000, hess_grid=9, hess_span=0.2, power_iters=20,
                      trace_samples=20, density_iters=40, density_runs=1, skip_depth=6, skip_width=48,
                      skip_epochs=2, skip_grid=11, batch_sizes=(32, 512), sharp_epochs=2, widget_points=9,
                      scan_demo_train=2000, scan_demo_epochs=1),
        "cpu": dict(train_limit=None, eval_limit=2000, epochs=10, batch_size=128, lr=1e-3, line_points=61,
                    grid=31, interp_points=41, hess_limit=2000, hess_grid=21, hess_span=0.2, power_iters=50,
                    trace_samples=50, density_iters=80, density_runs=2, skip_depth=6, skip_width=64,
                    skip_epochs=4, skip_grid=21, batch_sizes=(32, 128, 512), sharp_epochs=4, widget_points=9,
                    scan_demo_train=5000, scan_demo_epochs=2),
        "gpu": dict(train_limit=None, eval_limit=5000, epochs=15, batch_size=128, lr=1e-3, line_points=101,
                    grid=51, interp_points=61, hess_limit=5000, hess_grid=40, hess_span=0.2, power_iters=100,
                    trace_samples=100, density_iters=100, density_runs=3, skip_depth=8, skip_width=128,
                    skip_epochs=15, skip_grid=41, batch_sizes=(32, 128, 512), sharp_epochs=10, widget_points=9,
                    scan_demo_train=None, scan_demo_epochs=2),
    },
    "dynamics": {
        "quick": dict(train_limit=4000, test_limit=1000, width=128, batch_size=64, monitor_epochs=2,
                      monitor_lrs=(0.002, 0.05, 1.0), clip_lr=1.0, clip_norm=1.0, clip_value=0.05, sched_epochs=2,
                      peak_lrs=(0.05, 0.1, 0.2), warmups=(0.0, 0.1, 0.3), exp_epochs=2, exp_lr=0.1, exp_wd=0.01,
                      eos_n=500, eos_width=100, eos_lrs=(0.05, 1 / 30), eos_steps=1500, eos_every=50,
                      eos_power_iters=10, lb_batch_sizes=(32, 128, 512, 1024), lb_epochs=3, lb_base_lr=0.01,
                      lb_base_batch=32, lb_warmup=1.0, sharp_n=500, bn_epochs=2, bn_depth=6, pretrained_lr=1e-3),
        "cpu": dict(train_limit=20000, test_limit=5000, width=128, batch_size=64, monitor_epochs=3,
                    monitor_lrs=(0.002, 0.05, 1.0), clip_lr=1.0, clip_norm=1.0, clip_value=0.05, sched_epochs=3,
                    peak_lrs=(0.05, 0.1, 0.2, 0.4), warmups=(0.0, 0.1, 0.3), exp_epochs=4, exp_lr=0.1,
                    exp_wd=0.01, eos_n=1000, eos_width=100, eos_lrs=(0.05, 1 / 30), eos_steps=2500,
                    eos_every=50, eos_power_iters=10, lb_batch_sizes=(32, 128, 512, 2048), lb_epochs=5,
                    lb_base_lr=0.01, lb_base_batch=32, lb_warmup=1.0, sharp_n=1000, bn_epochs=3, bn_depth=6,
                    pretrained_lr=1e-3),
        "gpu": dict(train_limit=None, test_limit=None, width=256, batch_size=64, monitor_epochs=4,
                    monitor_lrs=(0.002, 0.05, 1.0), clip_lr=1.0, clip_norm=1.0, clip_value=0.05, sched_epochs=3,
                    peak_lrs=(0.05, 0.1, 0.2, 0.4), warmups=(0.0, 0.1, 0.2, 0.3), exp_epochs=6, exp_lr=0.1,
                    exp_wd=0.01, eos_n=5000, eos_width=200, eos_lrs=(0.05, 1 / 30, 0.02), eos_steps=10000,
                    eos_every=50, eos_power_iters=10, lb_batch_sizes=(32, 128, 512, 2048, 8192), lb_epochs=8,
                    lb_base_lr=0.01, lb_base_batch=32, lb_warmup=2.0, sharp_n=5000, bn_epochs=5, bn_depth=6,
                    pretrained_lr=1e-3),
    },
    "stories": {
        "quick": dict(grok_p=71, grok_fraction=0.5, grok_lr=5e-3, grok_wd=2.0, grok_steps=800, grok_seed=0,
                      tf_p=47, tf_fraction=0.5, tf_lr=1e-2, tf_wd=1.0, tf_width=64, tf_depth=1, tf_steps=3000,
                      dd_train=200, dd_test=2000, dd_max_features=2000, dd_noise=0.2, mem_depths=(4, 8, 16, 32),
                      mem_width=256, mem_batch=128, mem_repeats=2, vg_depth=30, vg_width=128, vg_batch=256),
        "cpu": dict(grok_p=97, grok_fraction=0.3, grok_lr=3e-3, grok_wd=1.0, grok_steps=7000, grok_seed=0,
                    tf_p=47, tf_fraction=0.5, tf_lr=3e-3, tf_wd=1.0, tf_width=64, tf_depth=1, tf_steps=2500,
                    dd_train=1000, dd_test=5000, dd_max_features=5000, dd_noise=0.2,
                    mem_depths=(4, 8, 16, 32, 64), mem_width=256, mem_batch=128, mem_repeats=5, vg_depth=30,
                    vg_width=128, vg_batch=512),
        "gpu": dict(grok_p=97, grok_fraction=0.3, grok_lr=1e-3, grok_wd=1.0, grok_steps=30000, grok_seed=0,
                    tf_p=97, tf_fraction=0.3, tf_lr=1e-3, tf_wd=1.0, tf_width=128, tf_depth=2, tf_steps=30000,
                    dd_train=2000, dd_test=10000, dd_max_features=20000, dd_noise=0.2,
                    mem_depths=(4, 8, 16, 32, 64, 128), mem_width=1024, mem_batch=256, mem_repeats=3, vg_depth=50,
                    vg_width=256, vg_batch=1024),
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


def env_flag(name: str, default: bool) -> bool:
    """A yes/no environment variable: unset means ``default``; ``0``, ``false``, ``no`` or empty mean no."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() not in ("0", "", "false", "no")


def available_cores() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def device() -> torch.device:
    """CUDA when present, else CPU: the default device of every chapter (``model.to(dl.device())``)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_of(model: torch.nn.Module) -> torch.device:
    """The device a model lives on (its first parameter's, else its first buffer's, else the CPU). Every function
    of the package that takes a model computes there and moves the data it is given there, never the model."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def training_modes(model: torch.nn.Module) -> list[tuple[torch.nn.Module, bool]]:
    """Each module of ``model`` with its own training flag (a frozen batch norm inside a training model included)."""
    return [(m, m.training) for m in model.modules()]


def restore_modes(modes: list[tuple[torch.nn.Module, bool]]) -> None:
    """Put back the flags :func:`training_modes` saved (``model.train(flag)`` would overwrite every submodule's)."""
    for module, training in modes:
        module.training = training


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a CPU ``torch.Generator`` seeded the same way.

    **What a seed promises.** On the CPU, the same seed and code give *bitwise* identical numbers, run after run and
    in a fresh process, when four more things are the same: the intra-op thread count (``torch.set_num_threads``;
    torch's default, one per core, differs between machines), the flush-denormal setting
    (``torch.set_flush_denormal``), the CPU model and the torch build (its MKL). Change one and float32 sums are split
    or vectorised differently and round differently in the last bit, ~1e-7 relative for one evaluation, which
    training compounds step by step. Measured between 1 and 2 threads: 5e-7 relative in the losses of 64 steps of
    SGD with momentum on a small MLP, 2e-7 with Adam (2-core AMD EPYC); 1.2e-3 in the weight norm after a 350-step
    full-batch grokking run (2-core Intel Xeon, flush-denormal differing too). So compare two runs bitwise only with
    the thread count and flush-denormal pinned (in the tests: the ``pinned_threads`` fixture), otherwise with a
    tolerance measured for that run across 1 and 2 threads. Flush-denormal holds for the calling thread only (torch's
    worker threads keep their own): turn it on at one thread, as :func:`dldna_lite.generalization.train_grokking`
    does. ``MKL_CBWR=AUTO,STRICT`` (:func:`dldna_lite.distributed.reproducible_blas`) makes MKL's matrix products
    independent of the thread count, but not torch's own reductions (a ``sum``, ``mean`` or ``dot`` of more than
    32,768 elements); and at two or more threads under load a process's first ``exp`` or ``log`` can race in MKL
    (:func:`dldna_lite.distributed.warm_up_serially` settles it). GPUs promise less: see
    ``torch.use_deterministic_algorithms``.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
