"""Tests of dldna_lite.backprop: backprop by hand, vanishing gradients, memory of backprop (chapters 06-07)."""
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dldna_lite import backprop as bp
from dldna_lite.models import chain_mlp


# ------------------------------------------------------------------------------------------ backprop by hand
@pytest.mark.parametrize("widths", [(3, 5, 2), (4, 7, 6, 3)])
def test_chain_rule_matches_autograd(widths):
    gen = torch.Generator().manual_seed(len(widths))
    layers = [(torch.randn(o, i, generator=gen, dtype=torch.float64, requires_grad=True),
               torch.randn(o, generator=gen, dtype=torch.float64, requires_grad=True))
              for i, o in zip(widths[:-1], widths[1:])]
    x = torch.randn(9, widths[0], generator=gen, dtype=torch.float64)
    y = torch.randn(9, widths[-1], generator=gen, dtype=torch.float64)
    loss, grads = bp.chain_rule_gradients(layers, (x, y))
    ref = F.mse_loss(bp.mlp_forward(layers, x)[-1], y, reduction="sum") / len(x)
    ref_grads = torch.autograd.grad(ref, [t for pair in layers for t in pair])
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    for got, want in zip([t for pair in grads for t in pair], ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_softmax_cross_entropy_grad():
    z = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, 1, 1, 2, 0])
    (want,) = torch.autograd.grad(F.cross_entropy(z, y), z)
    torch.testing.assert_close(bp.softmax_cross_entropy_grad(z.detach(), y), want)


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
    model = chain_mlp(depth=n, width=12, seed=n, dtype=torch.float64)
    x = torch.randn(5, 12, dtype=torch.float64)
    y = torch.randn(5, 12, dtype=torch.float64)
    loss_fn = lambda out, target: (out - target).pow(2).mean()  # noqa: E731
    want = torch.autograd.grad(loss_fn(model(x), y), list(model.parameters()))
    for strategy in bp.STRATEGIES:
        model.zero_grad(set_to_none=True)
        res = bp.backprop(model, (x, y), loss_fn=loss_fn, strategy=strategy)
        for p, g in zip(model.parameters(), want):
            torch.testing.assert_close(p.grad, g, rtol=1e-12, atol=1e-14, msg=f"{strategy}, n={n}")
        assert res["loss"] == pytest.approx(loss_fn(model(x), y).item(), rel=1e-12)


def test_backprop_evaluations_and_memory_follow_theory():
    x = torch.randn(4, 8)
    peaks = {}
    for n in (16, 64, 256):
        model = chain_mlp(depth=n, width=8)
        res = {s: bp.backprop(model, (x, None), loss_fn=lambda o, _: o.sum(), strategy=s) for s in bp.STRATEGIES}
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
    meter = bp.ActivationMeter()
    a = torch.randn(3)
    box1, box2 = meter.hold(a), meter.hold(a[:2])                       # a view shares the storage
    assert meter.live == 1
    box3 = meter.hold(torch.randn(3))
    assert meter.live == 2 and meter.peak == 2
    del box1, box2, box3
    assert meter.live == 0 and meter.peak == 2 and meter.live_bytes == 0


def test_bad_arguments_name_the_choices():
    with pytest.raises(ValueError, match="vanilla"):
        bp.backprop(chain_mlp(depth=2, width=4), (torch.randn(1, 4), None), strategy="magic")
    with pytest.raises(ValueError, match="segments"):
        bp.segment_bounds(4, 5)


def test_layer_grad_norms():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    x, y = torch.randn(7, 5), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    got = bp.layer_grad_norms(model, (x, y))
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad():  # by hand: delta_2 = (softmax - onehot)/N, delta_1 = (delta_2 W_2) * (1 - tanh^2)
        z1 = model[0](x)
        d2 = bp.softmax_cross_entropy_grad(model[2](torch.tanh(z1)), y)
        d1 = (d2 @ model[2].weight) * (1 - torch.tanh(z1) ** 2)
        want_w = [(d1.T @ x).norm().item(), (d2.T @ torch.tanh(z1)).norm().item()]
    np.testing.assert_allclose(got["preact"], [d1.norm().item(), d2.norm().item()], rtol=1e-5)
    np.testing.assert_allclose(got["weight"], want_w, rtol=1e-5)


def test_backprop_default_loss_is_the_mean_squared_error():
    model = chain_mlp(depth=3, width=6, dtype=torch.float64)
    x, y = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    res = bp.backprop(model, (x, y), strategy="checkpoint")
    assert res["loss"] == pytest.approx(F.mse_loss(model(x), y).item(), rel=1e-12)


def test_loglog_slope_of_a_power_law():
    ns = np.array([4, 8, 16, 32])
    assert bp.loglog_slope(ns, 3 * ns ** 1.5) == 1.5
    assert bp.loglog_slope(ns, np.full(4, 7.0)) == 0.0


def test_cuda_peak_bytes_is_none_off_cuda_and_the_profile_has_no_cuda_column():
    model = chain_mlp(depth=3, width=8)
    x = torch.randn(4, 8)
    assert bp.cuda_peak_bytes(model, (x, torch.zeros_like(x))) is None
    profile = bp.backprop_profile([2], width=8, batch=4, repeats=1)
    assert all("cuda_bytes" not in r for r in profile.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_peak_bytes_orders_the_strategies():
    profile = bp.backprop_profile([64], width=512, batch=256, repeats=1, device="cuda")
    peak = {s: r["cuda_bytes"][0] for s, r in profile.items()}
    assert peak["vanilla"] > peak["checkpoint"] > peak["memory_poor"] > 0, peak
