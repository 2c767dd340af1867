"""The numbers the optimizers chapter shows: quadratic theory vs measured paths, trajectories, comparison helpers."""
import math

import numpy as np
import pytest
import torch

from dldna_lite import models
from dldna_lite.optim import compare, surfaces


def test_quadratic_theory_matches_eigenvalues():
    th = surfaces.quadratic_theory()
    x = torch.zeros(2, dtype=torch.float64)
    H = torch.autograd.functional.hessian(lambda v: surfaces.surface("quadratic").f(v[0], v[1]), x)
    eig = torch.linalg.eigvalsh(H)
    assert th["L"] == pytest.approx(eig.max().item()) and th["mu"] == pytest.approx(eig.min().item())
    assert th["lr_max"] == pytest.approx(2 / eig.max().item())
    # heavy-ball rate = spectral radius of its 2x2 iteration matrix on the slowest and fastest modes
    for lam in (th["mu"], th["L"]):
        T = np.array([[1 + th["hb_momentum"] - th["hb_lr"] * lam, -th["hb_momentum"]], [1, 0]])
        assert max(abs(np.linalg.eigvals(T))) == pytest.approx(th["hb_rate"], rel=1e-6)


@pytest.mark.parametrize("factor", [0.5, 0.9, 1.1])
def test_gradient_descent_rate_is_one_minus_lr_times_curvature(factor):
    th = surfaces.quadratic_theory()
    lr = factor * th["lr_max"]
    path, diverged = surfaces.trajectory("quadratic", "SGD", lr, steps=60)
    assert diverged is None
    expected_y = path[0, 1] * (1 - lr * th["L"]) ** np.arange(len(path))
    expected_x = path[0, 0] * (1 - lr * th["mu"]) ** np.arange(len(path))
    np.testing.assert_allclose(path[:, 1], expected_y, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(path[:, 0], expected_x, rtol=1e-9, atol=1e-12)


def test_momentum_beats_gradient_descent_as_predicted():
    th = surfaces.quadratic_theory()
    gd, _ = surfaces.trajectory("quadratic", "SGD", th["gd_lr"], 0.0, steps=400)
    hb, _ = surfaces.trajectory("quadratic", "SGD", th["hb_lr"], th["hb_momentum"], steps=400)
    gd_steps, hb_steps = surfaces.steps_to_reach(gd), surfaces.steps_to_reach(hb)
    assert gd_steps == pytest.approx(math.log(1e-6) / math.log(th["gd_rate"]), rel=0.1)
    assert hb_steps < gd_steps / 2
    assert hb_steps >= math.log(1e-6) / math.log(th["hb_rate"]) - 1


def test_trajectory_reports_divergence_and_bad_names():
    path, diverged = surfaces.trajectory("rosenbrock", "SGD", 0.05, steps=100)
    assert diverged is not None and np.isfinite(path).all() and len(path) == diverged
    with pytest.raises(ValueError, match="quadratic"):
        surfaces.trajectory("himmelblau", "SGD", 0.1)
    with pytest.raises(ValueError, match="Lion"):
        surfaces.trajectory("quadratic", "Nadam", 0.1)


def test_sophia_with_exact_curvature_is_clipped_newton():
    """rho=1, beta1=0, exact Hessian diagonal: on the (diagonal) quadratic one unclipped step lands on the minimum."""
    path, _ = surfaces.trajectory("quadratic", "Sophia", 1.0, 0.0, steps=3, start=(0.5, 0.2))
    np.testing.assert_allclose(path[1], [0.0, 0.0], atol=1e-12)
    path, _ = surfaces.trajectory("quadratic", "Sophia", 0.1, 0.0, steps=1, start=(-4.0, 1.5))
    np.testing.assert_allclose(path[1], [-3.9, 1.4])  # |Newton step| > 1: clipped to lr per coordinate


def test_escape_step():
    path = np.array([[1, 0.0], [1, 0.3], [1, 0.6], [1, 0.9]])
    assert surfaces.escape_step(path) == 2 and surfaces.escape_step(path[:2]) is None


def test_lr_grid_and_summary():
    assert compare.lr_grid("Adam", 3) == (3e-4, 1e-3, 3e-3)
    assert compare.lr_grid("Adam", 1) == (1e-3,)
    with pytest.raises(ValueError):
        compare.lr_grid("Adam", 2)
    runs = [dict(test_acc=0.8, status="ok"), dict(test_acc=0.9, status="ok")]
    assert compare.summarize(runs) == f"0.8500 ± {np.std([0.8, 0.9], ddof=1):.4f}"
    assert compare.summarize([dict(test_acc=None, status="diverged at step 3")]) == "diverged at step 3"
    bad = [dict(test_acc=None, status="diverged at step 3"), dict(test_acc=None, status="diverged at step 7")]
    assert compare.summarize(bad + [dict(test_acc=0.8, status="ok")]) == \
        "2 of 3 seeds diverged (steps 3, 7); 0.8000 over the other 1"
    assert compare.summarize(bad) == "2 of 2 seeds diverged (steps 3, 7)"
    assert compare.summarize([bad[0]] + runs) == \
        f"1 of 3 seeds diverged (step 3); 0.8500 ± {np.std([0.8, 0.9], ddof=1):.4f} over the other 2"
    with pytest.raises(ValueError, match="Sophia"):
        compare.build_optimizer("Nadam", models.mlp([4, 3]), 0.1)


def test_run_and_sweep_on_a_tiny_problem():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(96, 6, generator=g), torch.randint(0, 3, (96,), generator=g)
    model_fn = lambda: models.mlp([6, 8, 3])
    r = compare.run("Sophia", 1e-2, model_fn, (X, y), (X, y), epochs=2, batch_size=32)
    assert len(r["grad_norm"]) == 2 and r["status"] == "ok" and r["state_bytes"] == 2 * 4 * (6 * 8 + 8 + 8 * 3 + 3)
    sweep = compare.lr_sweep("SGD", (1e-3, 0.5, 1e30), model_fn, (X, y), (X, y), epochs=1, batch_size=32)
    assert sweep["runs"][1e30]["status"].startswith("diverged at step")
    assert sweep["best_lr"] in (1e-3, 0.5)
