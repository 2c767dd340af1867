"""dldna_lite.dynamics against hand computations, torch.nn.utils and an exact Hessian."""
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import dldna_lite as dl
from dldna_lite import dynamics as dyn
from dldna_lite import models, schedules
from dldna_lite.hessian import exact_hessian
from dldna_lite.train import History


# --- monitor ------------------------------------------------------------------------------------------------------

def test_monitor_matches_hand_computation_on_a_two_parameter_model():
    """y = w x + b with MSE, full-batch SGD: every monitor metric by hand, in float64."""
    X = torch.tensor([[1.0], [2.0], [-1.0], [0.5]], dtype=torch.float64)
    Y = torch.tensor([[2.0], [3.0], [-2.0], [1.0]], dtype=torch.float64)
    model = nn.Linear(1, 1).double()
    with torch.no_grad():
        model.weight.fill_(0.3)
        model.bias.fill_(-0.2)
    lr, steps = 0.1, 5
    h = dl.fit(model, torch.optim.SGD(model.parameters(), lr=lr), (X, Y), epochs=steps, batch_size=4,
               loss_fn=F.mse_loss, track_steps=True)
    mon = dyn.monitor(h)
    x, y = X[:, 0].numpy(), Y[:, 0].numpy()
    w, b = 0.3, -0.2
    expect = {k: [] for k in ("loss", "grad_norm", "param_change", "weight_norm", "relative_update")}
    for _ in range(steps):
        r = w * x + b - y
        gw, gb = np.mean(2 * r * x), np.mean(2 * r)
        expect["loss"].append(np.mean(r ** 2))
        expect["grad_norm"].append(math.hypot(gw, gb))
        expect["param_change"].append(lr * math.hypot(gw, gb))
        w, b = w - lr * gw, b - lr * gb
        expect["weight_norm"].append(math.hypot(w, b))
        expect["relative_update"].append(lr * math.hypot(gw, gb) / math.hypot(w, b))
    for key, values in expect.items():
        np.testing.assert_allclose(mon[key], values, rtol=1e-10, err_msg=key)
    np.testing.assert_allclose(mon["loss_improvement"], -np.diff(expect["loss"]), rtol=1e-10)
    np.testing.assert_array_equal(mon["step"], np.arange(1, steps + 1))
    assert np.all(mon["loss_improvement"] > 0)  # a convex problem at a small lr: the loss falls every step


def test_monitor_needs_tracked_steps():
    h = History()
    h.steps["loss"] = [1.0, 0.5]
    with pytest.raises(ValueError, match="track_steps=True"):
        dyn.monitor(h)


# --- clipping -----------------------------------------------------------------------------------------------------

def _params_with_grads(seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    params = [nn.Parameter(torch.zeros(s, dtype=torch.float64)) for s in ((3, 4), (4,), (2, 2, 2))]
    for p in params:
        p.grad = scale * torch.randn(p.shape, generator=g, dtype=torch.float64)
    return params


@pytest.mark.parametrize("max_norm", [0.01, 0.7, 1e3])
def test_clip_grad_norm_caps_exactly_and_matches_torch(max_norm):
    ours, ref = _params_with_grads(1, 3.0), _params_with_grads(1, 3.0)
    before = dyn.clip_grad_norm_(ours, max_norm)
    ref_before = nn.utils.clip_grad_norm_(ref, max_norm).item()
    assert before == pytest.approx(ref_before, rel=1e-12)
    after = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in ours])).item()
    assert after == pytest.approx(min(before, max_norm), rel=1e-12)   # exactly the cap (or untouched)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=0)   # torch divides by norm + 1e-6


def test_clip_grad_value_matches_torch_and_bad_arguments():
    ours, ref = _params_with_grads(2), _params_with_grads(2)
    dyn.clip_grad_value_(ours, 0.5)
    nn.utils.clip_grad_value_(ref, 0.5)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)
        assert a.grad.abs().max() <= 0.5
    with pytest.raises(ValueError):
        dyn.clip_grad_norm_(ours, 0.0)
    with pytest.raises(ValueError):
        dyn.clip_grad_value_(ours, -1.0)


def test_fit_with_norm_clipping_moves_sgd_by_at_most_lr_times_cap():
    dl.seed_everything(0)
    X, y = torch.randn(256, 20), torch.randint(0, 3, (256,))
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 3))
    lr, cap = 0.5, 0.25
    h = dl.fit(model, torch.optim.SGD(model.parameters(), lr=lr), (X, y), epochs=2, batch_size=32,
               track_steps=True, clip_grad_norm=cap)
    mon = dyn.monitor(h)
    assert mon["grad_norm"].max() > cap  # clipping was active
    np.testing.assert_allclose(mon["param_change"], lr * np.minimum(mon["grad_norm"], cap), rtol=1e-4)


def test_non_finite_learning_rates_are_rejected_by_gd():
    for lr in (math.nan, math.inf):
        with pytest.raises(ValueError, match="finite lr"):
            dyn.gd_with_sharpness(models.tanh_mlp(width=4, seed=0), dyn.eos_data(8), lr, 2)


def test_exponential_lr_is_equivalent_to_weight_decay_for_a_scale_invariant_net():
    """Li & Arora: SGD + wd at constant lr == SGD with lr * alpha^(-2t-1) and no wd, up to the scale alpha^-t."""
    torch.manual_seed(0)
    X, y = torch.randn(96, 12, dtype=torch.float64), torch.randint(0, 3, (96,))
    lr, wd, epochs = 0.2, 0.05, 4
    model_fn = lambda: models.scale_invariant_mlp(widths=[12, 16, 16, 3], eps=1e-14, seed=3).double()
    steps = epochs * 3
    _, h_wd = dyn.monitored_run(model_fn, (X, y), optimizer_fn=lambda p: torch.optim.SGD(p, lr=lr, weight_decay=wd),
                                epochs=epochs, batch_size=32)
    _, h_exp = dyn.monitored_run(model_fn, (X, y), optimizer_fn=lambda p: torch.optim.SGD(p, lr=lr), epochs=epochs,
                                 batch_size=32, lrs=schedules.li_arora_lrs(lr, wd, steps))
    np.testing.assert_allclose(h_exp["loss"], h_wd["loss"], rtol=1e-9)
    alpha = 1 - lr * wd
    ratio = np.array(h_exp["weight_norm"]) / np.array(h_wd["weight_norm"])
    np.testing.assert_allclose(ratio, alpha ** -np.arange(1, steps + 1), rtol=1e-9)
    assert h_wd["loss"][-1] < h_wd["loss"][0]


# --- edge of stability --------------------------------------------------------------------------------------------

def test_sharpness_matches_exact_hessian():
    torch.manual_seed(0)
    model = models.tanh_mlp(width=5, depth=2, seed=1, in_features=4, num_classes=3).double()
    X = torch.randn(30, 4, dtype=torch.float64)
    Y = F.one_hot(torch.randint(0, 3, (30,)), 3).double()
    H = exact_hessian(model, (X, Y), loss_fn=dyn.half_mse)
    exact = torch.linalg.eigvalsh(H)
    top = exact[exact.abs().argmax()].item()
    value, _ = dyn.sharpness(model, (X, Y), max_iter=2000, tol=1e-12)
    assert value == pytest.approx(top, rel=1e-6)


def test_gd_with_sharpness_is_plain_gradient_descent():
    data = (torch.randn(40, 6), F.one_hot(torch.randint(0, 3, (40,)), 3).float())
    a = models.tanh_mlp(width=8, seed=2, in_features=6, num_classes=3)
    b = models.tanh_mlp(width=8, seed=2, in_features=6, num_classes=3)
    run = dyn.gd_with_sharpness(a, data, lr=0.1, steps=7, every=3, power_iters=5)
    opt = torch.optim.SGD(b.parameters(), lr=0.1)
    for t in range(7):
        loss = dyn.half_mse(b(data[0]), data[1])
        assert run["loss"][t] == pytest.approx(loss.item(), rel=1e-6)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)
    np.testing.assert_array_equal(run["sharp_step"], [0, 3, 6])
    assert run["diverged_at"] is None


def test_gd_with_sharpness_reports_divergence():
    data = (torch.randn(40, 6), F.one_hot(torch.randint(0, 3, (40,)), 3).float())
    run = dyn.gd_with_sharpness(models.tanh_mlp(width=8, in_features=6, num_classes=3), data, lr=50.0, steps=500,
                                every=100)
    assert run["diverged_at"] is not None and len(run["loss"]) == run["diverged_at"] - 1
    assert np.all(np.isfinite(run["loss"]))


def test_edge_of_stability_sharpness_plateaus_at_two_over_lr():
    """Cohen et al. (2021): full-batch GD drives the sharpness up to 2/lr and keeps it there (quick-profile sizes)."""
    size = dl.sizes("dynamics")
    data = dyn.eos_data(size["eos_n"])
    lr = size["eos_lrs"][0]
    run = dyn.gd_with_sharpness(models.tanh_mlp(width=size["eos_width"], seed=0), data, lr, size["eos_steps"],
                                every=size["eos_every"], power_iters=size["eos_power_iters"])
    assert run["diverged_at"] is None
    assert run["sharpness"][0] < 0.9 * 2 / lr        # it starts well below the edge ...
    assert dyn.edge_plateau(run) == pytest.approx(2 / lr, rel=0.10)   # ... and ends on it
    assert run["loss"][-1] < 0.5 * run["loss"][0]     # while the loss keeps going down
    assert np.any(np.diff(run["loss"]) > 0)           # non-monotonically


# --- large batches ------------------------------------------------------------------------------------------------

def test_batch_size_sweep_scales_lr_and_counts_steps():
    torch.manual_seed(0)
    X, y = torch.randn(200, 10), torch.randint(0, 3, (200,))
    model_fn = lambda: nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))
    rows = dyn.batch_size_sweep(model_fn, (X, y), (X[:50], y[:50]), [20, 100], epochs=2, base_lr=0.05,
                                base_batch=20, rule="linear", warmup_epochs=1, sharpness_data=(X, y))
    assert [r["lr"] for r in rows] == pytest.approx([0.05, 0.25])
    assert [r["steps"] for r in rows] == [20, 4]
    assert all(r["diverged_at"] is None and r["sharpness"] > 0 for r in rows)
    assert rows[0]["gap"] == pytest.approx(rows[0]["test_loss"] - rows[0]["train_loss"])
    flat = dyn.batch_size_sweep(model_fn, (X, y), (X, y), [20, 100], epochs=1, base_lr=0.05, base_batch=20,
                                rule="none")
    assert [r["lr"] for r in flat] == [0.05, 0.05]
    with pytest.raises(ValueError, match="linear, none"):
        dyn.batch_size_sweep(model_fn, (X, y), (X, y), [20], 1, base_lr=0.1, base_batch=20, rule="sqrt")


# --- the training doctor ------------------------------------------------------------------------------------------

def _history(loss, grad_norm=None, rel_update=1e-2):
    h = History()
    h.steps["loss"] = list(map(float, loss))
    if grad_norm is not None:
        n = len(loss)
        h.steps["grad_norm"] = list(map(float, grad_norm))
        h.steps["weight_norm"] = [10.0] * n
        h.steps["param_change"] = [10.0 * rel_update] * n
        h.steps["lr"] = [0.1] * n
    return h


def _names(h):
    return [name for name, _ in dyn.diagnose(h)]


def test_diagnose_synthetic_histories():
    rng = np.random.default_rng(0)
    t = np.arange(300)
    noise = 1 + 0.05 * rng.standard_normal(300)
    healthy = 2.3 * np.exp(-t / 60) * noise + 0.05
    assert _names(_history(healthy, np.ones(300))) == []
    assert _names(_history(healthy)) == []   # loss-only rules without tracked steps

    nan = History()
    nan.steps["loss"] = [2.3, 2.0]
    nan.diverged_at = 3
    assert dyn.diagnose(nan) == [("diverged", "the loss became non-finite at step 3")]
    assert _names(_history(2.3 * np.exp(t / 50))) == ["diverged"]

    spikes = np.ones(300)
    spikes[150] = 80.0
    assert "exploding gradients" in _names(_history(healthy, spikes))

    bouncy = np.concatenate([healthy[:150], 0.6 * noise[150:] + healthy[150:]])
    assert "lr too high" in _names(_history(bouncy, np.ones(300)))

    stuck = np.concatenate([healthy[:100], np.full(200, healthy[100]) * noise[100:] ** 0.01])
    assert _names(_history(stuck, np.ones(300))) == ["plateau"]

    slow = 2.3 - 1e-4 * t
    assert _names(_history(slow, np.ones(300), rel_update=1e-6)) == ["lr too small"]

    with pytest.raises(ValueError, match="at least"):
        dyn.diagnose(_history(healthy[:5]))
