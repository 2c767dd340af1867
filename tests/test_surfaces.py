"""dldna_lite.surfaces (quadratic theory vs measured paths, trajectories, Gaussian wells) and the comparison helpers
of dldna_lite.optim.compare."""
import math

import numpy as np
import pytest
import torch

from dldna_lite import models, optim, surfaces
from dldna_lite.optim import compare

WELLS = np.array([[1.0, -1.5, -1.0, 0.5, 0.5], [0.7, 1.5, 1.0, 0.6, 0.4], [0.5, 0.0, 2.0, 0.4, 0.4]])


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
    runs = [dict(test_acc=0.8, diverged_at=None), dict(test_acc=0.9, diverged_at=None)]
    assert compare.summarize(runs) == f"0.8500 ± {np.std([0.8, 0.9], ddof=1):.4f}"
    assert compare.summarize([dict(test_acc=None, diverged_at=3)]) == "diverged at step 3"
    bad = [dict(test_acc=None, diverged_at=3), dict(test_acc=None, diverged_at=7)]
    assert compare.summarize(bad + [dict(test_acc=0.8, diverged_at=None)]) == \
        "2 of 3 seeds diverged (steps 3, 7); 0.8000 over the other 1"
    assert compare.summarize(bad) == "2 of 2 seeds diverged (steps 3, 7)"
    assert compare.summarize([bad[0]] + runs) == \
        f"1 of 3 seeds diverged (step 3); 0.8500 ± {np.std([0.8, 0.9], ddof=1):.4f} over the other 2"
    with pytest.raises(ValueError, match=r"SGD\+momentum"):
        optim.build("Nadam", models.mlp([4, 3]).parameters(), 0.1)


def test_run_and_sweep_on_a_tiny_problem():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(96, 6, generator=g), torch.randint(0, 3, (96,), generator=g)
    model_fn = lambda: models.mlp([6, 8, 3])
    r = compare.run("Sophia", 1e-2, model_fn, (X, y), (X, y), epochs=2, batch_size=32)
    assert len(r["grad_norm"]) == 2 and r["diverged_at"] is None and r["state_bytes"] == 2 * 4 * (6 * 8 + 8 + 8 * 3 + 3)
    sweep = compare.lr_sweep("SGD", (1e-3, 0.5, 1e30), model_fn, (X, y), (X, y), epochs=1, batch_size=32)
    assert sweep["runs"][1e30]["diverged_at"] >= 1 and sweep["runs"][1e30]["test_acc"] is None
    assert sweep["best_lr"] in (1e-3, 0.5)
    seeds = compare.run_over_seeds("SGD", 0.5, model_fn, (X, y), (X, y), epochs=1, seeds=(0, 1), batch_size=32)
    assert [r["seed"] for r in seeds] == [0, 1]
    assert seeds[1]["test_acc"] == compare.run("SGD", 0.5, model_fn, (X, y), (X, y), 1, 32, seed=1)["test_acc"]


# ---------------------------------------------------------------------------------------------- toy surfaces


def test_gaussian_surface_gradient_and_optimizer_path_match_closed_form():
    s = surfaces.GaussianSurface(WELLS[:1], 2.0)
    a, mx, my, sx, sy = WELLS[0]

    def grad(x, y):   # closed form of d f / d(x, y)
        e = a * np.exp(-(x - mx) ** 2 / (2 * sx ** 2) - (y - my) ** 2 / (2 * sy ** 2))
        return np.array([e * (x - mx) / sx ** 2, e * (y - my) / sy ** 2])

    lr, pos, manual = 0.2, np.array([0.3, 0.4]), [np.array([0.3, 0.4])]
    for _ in range(30):
        pos = pos - lr * grad(*pos)
        manual.append(pos)
    path, diverged_at = surfaces.optimizer_path(s, lambda p: torch.optim.SGD(p, lr=lr), (0.3, 0.4), steps=30)
    assert diverged_at is None
    np.testing.assert_allclose(path, np.array(manual), rtol=1e-10)
    assert np.linalg.norm(path[-1] - [mx, my]) < np.linalg.norm(path[0] - [mx, my])


def test_fit_gaussian_surface_recovers_the_wells():
    xs, ys = np.linspace(-3, 3, 48), np.linspace(-3, 3, 40)
    Z = surfaces.GaussianSurface(WELLS, 2.0).grid(xs, ys)
    Z = Z + 0.01 * np.random.default_rng(0).normal(size=Z.shape)
    fit, rmse = surfaces.fit_gaussian_surface(xs, ys, Z, n_wells=3)
    assert rmse < 0.02 and fit.offset == pytest.approx(2.0, abs=0.01)
    found = fit.params[np.argsort(-fit.params[:, 0])]
    np.testing.assert_allclose(found, WELLS, atol=0.03)


def test_optimizer_path_reports_divergence_and_accumulation():
    f = lambda x, y: 0.5 * (x ** 2 + y ** 2)  # noqa: E731  SGD with lr 3 multiplies x by -2 each step
    path, diverged_at = surfaces.optimizer_path(f, lambda p: torch.optim.SGD(p, lr=3.0), (1.0, 1.0), 100,
                                                blowup=1e3)
    assert diverged_at == 10 and len(path) == 10 and np.abs(path[-1]).max() == 2.0 ** 9
    plain, _ = surfaces.optimizer_path(f, lambda p: torch.optim.SGD(p, lr=0.1), (1.0, 0.0), 2)
    summed, _ = surfaces.optimizer_path(f, lambda p: torch.optim.SGD(p, lr=0.1), (1.0, 0.0), 2, zero_grad=False)
    np.testing.assert_allclose(plain[:, 0], [1.0, 0.9, 0.81])
    np.testing.assert_allclose(summed[:, 0], [1.0, 0.9, 0.71])      # the second step used 1 + 0.9


def test_build_is_the_one_factory():
    model = models.mlp([4, 3])
    sgdm = optim.build("SGD+momentum", model.parameters(), 0.1)
    assert isinstance(sgdm, optim.SGD) and sgdm.defaults["momentum"] == 0.9
    assert optim.build("SGD+momentum", model.parameters(), 0.1, momentum=0.5).defaults["momentum"] == 0.5
    sophia = optim.build("Sophia", model.parameters(), 0.1, model=model)
    assert isinstance(sophia.estimator, optim.GaussNewtonBartlett)
    sophia.estimator.remove()
    assert optim.build("Adam", model.parameters(), 0.1, betas=(0.5, 0.9)).defaults["betas"] == (0.5, 0.9)
