"""Tests of dldna_lite.stories: backprop by hand, grokking, double descent, memory of backprop."""
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import dldna_lite as dl
from dldna_lite import stories as st


# ------------------------------------------------------------------------------------------ backprop by hand
@pytest.mark.parametrize("widths", [(3, 5, 2), (4, 7, 6, 3)])
def test_chain_rule_matches_autograd(widths):
    gen = torch.Generator().manual_seed(len(widths))
    layers = [(torch.randn(o, i, generator=gen, dtype=torch.float64, requires_grad=True),
               torch.randn(o, generator=gen, dtype=torch.float64, requires_grad=True))
              for i, o in zip(widths[:-1], widths[1:])]
    x = torch.randn(9, widths[0], generator=gen, dtype=torch.float64)
    y = torch.randn(9, widths[-1], generator=gen, dtype=torch.float64)
    loss, grads = st.chain_rule_gradients(layers, x, y)
    ref = F.mse_loss(st.mlp_forward(layers, x)[-1], y, reduction="sum") / len(x)
    ref_grads = torch.autograd.grad(ref, [t for pair in layers for t in pair])
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    for got, want in zip([t for pair in grads for t in pair], ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_softmax_cross_entropy_grad():
    z = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, 1, 1, 2, 0])
    (want,) = torch.autograd.grad(F.cross_entropy(z, y), z)
    torch.testing.assert_close(st.softmax_cross_entropy_grad(z.detach(), y), want)


# ------------------------------------------------------------------------------------------ grokking
def test_modular_addition_table():
    (X_tr, y_tr), (X_val, y_val) = st.modular_addition(11, 0.4, seed=3)
    assert len(y_tr) == round(0.4 * 121) and len(y_tr) + len(y_val) == 121
    X = torch.cat([X_tr, X_val])
    assert len({tuple(r) for r in X.tolist()}) == 121                       # every pair exactly once
    torch.testing.assert_close(torch.cat([y_tr, y_val]), (X[:, 0] + X[:, 1]) % 11)
    with pytest.raises(ValueError, match="train_fraction"):
        st.modular_addition(11, 1.5)


def test_first_step_reaching_needs_to_stay():
    steps = [1, 2, 3, 4, 5]
    assert st.first_step_reaching(steps, [0.1, 0.99, 0.5, 0.99, 1.0], 0.95) == 4
    assert st.first_step_reaching(steps, [1.0] * 5, 0.95) == 1
    assert st.first_step_reaching(steps, [0.1, 0.99, 0.99, 0.99, 0.5], 0.95) is None


def test_grokking_quick_run_generalises_after_memorising():
    s = dl.sizes("stories", "quick")
    run = st.train_grokking(s["grok_p"], s["grok_fraction"], s["grok_steps"], lr=s["grok_lr"],
                            weight_decay=s["grok_wd"], seed=s["grok_seed"], stop_at=0.95)
    memorised = st.first_step_reaching(run["step"], run["train_acc"], 0.99)
    grokked = st.first_step_reaching(run["step"], run["val_acc"], 0.95)
    assert memorised is not None and grokked is not None
    assert grokked >= 2 * memorised                                   # a long plateau between the two
    at_memorised = run["val_acc"][list(run["step"]).index(memorised)]
    assert at_memorised < 0.2                                         # memorised, not yet generalised
    assert run["diverged_at"] is None


# ------------------------------------------------------------------------------------------ double descent
@pytest.mark.parametrize("k", [7, 20, 45])
def test_min_norm_fit_is_the_pseudoinverse_solution(k):
    gen = torch.Generator().manual_seed(k)
    Phi = torch.relu(torch.randn(20, k, generator=gen, dtype=torch.float64))
    Y = torch.randn(20, 3, generator=gen, dtype=torch.float64)
    B = st.min_norm_fit(Phi, Y)
    torch.testing.assert_close(B, torch.linalg.pinv(Phi) @ Y, rtol=1e-7, atol=1e-9)
    if k > 20:  # interpolates, and any other interpolating solution is longer
        torch.testing.assert_close(Phi @ B, Y, rtol=1e-8, atol=1e-8)
        null = torch.linalg.svd(Phi).Vh[20:].T                          # basis of the null space, [k, k - 20]
        other = B + null @ torch.randn(k - 20, 3, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(Phi @ other, Y, rtol=1e-8, atol=1e-8)
        assert other.norm() > B.norm()


def test_noisy_labels_flips_to_other_classes():
    y = torch.arange(10).repeat(100)
    z = st.noisy_labels(y, 0.3, generator=torch.Generator().manual_seed(0))
    changed = (z != y).float().mean().item()
    assert 0.25 < changed < 0.35 and z.min() >= 0 and z.max() <= 9
    assert torch.equal(st.noisy_labels(y, 0.0), y)


def test_double_descent_peaks_at_the_interpolation_threshold(fmnist_small):
    (X_tr, y_tr), (X_te, y_te) = fmnist_small
    n = 150
    curve = st.double_descent_curve((X_tr[:n], y_tr[:n]), (X_te, y_te), st.feature_grid(n, 1500), seed=0)
    k_peak = curve["features"][curve["test_error"].argmax()]
    assert 0.9 * n <= k_peak <= 1.1 * n
    assert curve["train_error"][curve["features"] >= n].max() == 0          # interpolation past the threshold
    # the second descent: far past the threshold the error is far below the peak
    assert curve["test_error"][-1] < 0.5 * curve["test_error"].max()


# ------------------------------------------------------------------------------------------ memory of backprop
def _reference_saved(model, x):
    """Distinct non-parameter storages autograd saves in a plain forward (an independent count)."""
    skip = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = set()

    def pack(t):
        if t.untyped_storage().data_ptr() not in skip:
            seen.add(t.untyped_storage().data_ptr())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x).pow(2).mean()
    del out
    return len(seen)


@pytest.mark.parametrize("n", [1, 3, 9, 16])
def test_backprop_strategies_agree_with_autograd(n):
    model = st.chain_mlp(n, width=12, seed=n, dtype=torch.float64)
    x = torch.randn(5, 12, dtype=torch.float64)
    loss_fn = lambda out: out.pow(2).mean()  # noqa: E731
    want = torch.autograd.grad(loss_fn(model(x)), list(model.parameters()))
    for strategy in st.STRATEGIES:
        model.zero_grad(set_to_none=True)
        res = st.backprop(model, x, loss_fn, strategy)
        for p, g in zip(model.parameters(), want):
            torch.testing.assert_close(p.grad, g, rtol=1e-12, atol=1e-14, msg=f"{strategy}, n={n}")
        assert res["loss"] == pytest.approx(loss_fn(model(x)).item(), rel=1e-12)


def test_backprop_evaluations_and_memory_follow_theory():
    x = torch.randn(4, 8)
    peaks = {}
    for n in (16, 64, 256):
        model = st.chain_mlp(n, width=8)
        res = {s: st.backprop(model, x, lambda o: o.sum(), s) for s in st.STRATEGIES}
        assert res["vanilla"]["peak"] == n + 1 == _reference_saved(model, x)
        assert res["vanilla"]["evaluations"] == n
        assert res["memory_poor"]["peak"] == 3                          # x, one recomputed input, one output
        assert res["memory_poor"]["evaluations"] == n * (n + 1) // 2
        r = math.isqrt(n)
        assert res["checkpoint"]["evaluations"] == 2 * n - n // r       # the last segment runs once
        assert res["checkpoint"]["peak"] == 2 * r                        # r checkpoints + a segment of n/r
        peaks[n] = (res["checkpoint"]["peak"], res["torch_checkpoint"]["peak"])
    for k in (0, 1):  # ~sqrt(n): 16x deeper -> about 4x the memory
        ratio = peaks[256][k] / peaks[16][k]
        assert 3 <= ratio <= 5, (k, peaks)


def test_meter_counts_live_storages_once():
    meter = st.ActivationMeter()
    a = torch.randn(3)
    box1, box2 = meter.hold(a), meter.hold(a[:2])                       # a view shares the storage
    assert meter.live == 1
    box3 = meter.hold(torch.randn(3))
    assert meter.live == 2 and meter.peak == 2
    del box1, box2, box3
    assert meter.live == 0 and meter.peak == 2 and meter.live_bytes == 0


def test_bad_arguments_name_the_choices():
    with pytest.raises(ValueError, match="vanilla"):
        st.backprop(st.chain_mlp(2, 4), torch.randn(1, 4), lambda o: o.sum(), "magic")
    with pytest.raises(ValueError, match="segments"):
        st.segment_bounds(4, 5)


def test_layer_grad_norms():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    x, y = torch.randn(7, 5), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    got = st.layer_grad_norms(model, x, y)
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad():  # by hand: delta_2 = (softmax - onehot)/N, delta_1 = (delta_2 W_2) * (1 - tanh^2)
        z1 = model[0](x)
        d2 = st.softmax_cross_entropy_grad(model[2](torch.tanh(z1)), y)
        d1 = (d2 @ model[2].weight) * (1 - torch.tanh(z1) ** 2)
        want_w = [(d1.T @ x).norm().item(), (d2.T @ torch.tanh(z1)).norm().item()]
    np.testing.assert_allclose(got["preact"], [d1.norm().item(), d2.norm().item()], rtol=1e-5)
    np.testing.assert_allclose(got["weight"], want_w, rtol=1e-5)
