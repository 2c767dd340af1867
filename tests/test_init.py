"""dldna_lite.init against closed forms, torch.nn.init and numpy.linalg."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from dldna_lite import init, models

OUT, IN = 600, 1500  # a large rectangular layer: fan_in != fan_out, so swapping them is caught


def _filled(method, shape=(OUT, IN), seed=0, **kw):
    W = torch.empty(shape)
    return init.init_weight_(W, method, generator=torch.Generator().manual_seed(seed), **kw)


@pytest.mark.parametrize("method", init.METHODS)
def test_variance_matches_theory_within_5_percent(method):
    a = 0.25
    W = _filled(method, a=a)
    closed_form = {
        "naive": 0.01 ** 2, "lecun": 1 / IN, "xavier_normal": 2 / (IN + OUT), "xavier_uniform": 2 / (IN + OUT),
        "kaiming_normal": 2 / ((1 + a * a) * IN), "kaiming_uniform": 2 / ((1 + a * a) * IN),
        "orthogonal": 1 / IN, "scaled_orthogonal": 2 / ((1 + a * a) * IN), "l_momentum": 0.81 / IN,
    }[method]
    assert W.shape == (OUT, IN)
    assert abs(W.double().var().item() / closed_form - 1) < 0.05
    assert abs(W.double().mean().item()) < 0.05 * math.sqrt(closed_form)
    assert init.target_variance(method, (OUT, IN), a=a) == pytest.approx(closed_form)


@pytest.mark.parametrize("ours, reference", [
    ("xavier_normal", lambda W: nn.init.xavier_normal_(W)),
    ("xavier_uniform", lambda W: nn.init.xavier_uniform_(W)),
    ("kaiming_normal", lambda W: nn.init.kaiming_normal_(W, a=0.25, nonlinearity="leaky_relu")),
    ("kaiming_uniform", lambda W: nn.init.kaiming_uniform_(W, a=0.25, nonlinearity="leaky_relu")),
])
def test_agrees_with_torch_nn_init(ours, reference):
    W = _filled(ours, a=0.25)
    R = reference(torch.empty(OUT, IN))
    assert W.std().item() == pytest.approx(R.std().item(), rel=0.01)
    if ours.endswith("uniform"):  # same support
        assert W.abs().max().item() == pytest.approx(R.abs().max().item(), rel=1e-3)


@pytest.mark.parametrize("shape", [(64, 256), (256, 64), (128, 128), (16, 8, 3, 3)])
def test_orthogonal_is_orthogonal(shape):
    W = _filled("orthogonal", shape).reshape(shape[0], -1).double()
    gram = W @ W.T if W.shape[0] <= W.shape[1] else W.T @ W
    assert torch.allclose(gram, torch.eye(len(gram), dtype=torch.float64), atol=1e-5)


@pytest.mark.parametrize("method, scale2", [("scaled_orthogonal", 2 / (1 + 0.0625) / 64 * 256),
                                            ("l_momentum", 0.81 / 64 * 256)])
def test_scaled_orthogonal_variants_have_equal_singular_values(method, scale2):
    W = _filled(method, (256, 64), a=0.25)  # tall: fan_in 64, orthonormal columns times a scale
    s = init.singular_values(W)
    assert torch.allclose(s, torch.full_like(s, math.sqrt(scale2)), rtol=1e-5)


def test_l_momentum_second_moment_is_exact_and_source_rule_ignores_fan_in():
    for directions in ("orthogonal", "uniform"):
        W = _filled("l_momentum", momentum=0.8, directions=directions)
        assert W.double().pow(2).mean().item() == pytest.approx(0.64 / IN, rel=1e-5)
    W = _filled("l_momentum", momentum=0.9, scale_by_fan=False, directions="uniform")
    assert W.double().pow(2).mean().item() == pytest.approx(0.81, rel=1e-5)
    with pytest.raises(ValueError, match="orthogonal, uniform"):
        _filled("l_momentum", directions="gaussian")
    with pytest.raises(ValueError, match="momentum"):
        _filled("l_momentum", momentum=1.5)


def test_bad_names_list_the_methods():
    with pytest.raises(ValueError, match="lecun, xavier_normal"):
        init.initialize(nn.Linear(3, 3), "he")
    with pytest.raises(ValueError, match="kaiming_uniform"):
        init.init_weight_(torch.empty(3, 3), "glorot")
    with pytest.raises(ValueError, match="momentum"):
        init.initialize(nn.Linear(3, 3), "lecun", slope=0.1)


def test_initialize_in_place_zero_bias_and_seeded():
    net = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Conv1d(30, 5, 3), nn.Linear(5, 2, bias=False))
    for b in (net[0].bias, net[2].bias):
        nn.init.constant_(b, 1.0)
    out = init.initialize(net, "kaiming_normal", generator=torch.Generator().manual_seed(1))
    assert out is net
    assert net[0].bias.abs().sum() == 0 and net[2].bias.abs().sum() == 0
    first = [p.clone() for p in net.parameters()]
    init.initialize(net, "kaiming_normal", generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(first, net.parameters()))


@pytest.mark.parametrize("shape", [(7, 5), (5, 9), (12, 12), (6, 2, 3, 3)])
def test_metrics_against_numpy(shape):
    W = torch.randn(shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    M = W.reshape(shape[0], -1).numpy()
    s = np.linalg.svd(M, compute_uv=False)
    p = s / s.sum()
    assert init.spectral_norm(W) == pytest.approx(np.linalg.norm(M, 2), rel=1e-10)
    assert init.condition_number(W) == pytest.approx(np.linalg.cond(M), rel=1e-8)
    assert init.effective_rank(W) == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-10)
    row = init.layer_stats(nn.Sequential(nn.Linear(4, 4)))[0]
    assert set(row) >= {"layer", "shape", "spectral_norm", "condition_number", "effective_rank", "erank_ratio"}


def test_metric_edge_cases():
    assert init.effective_rank(torch.eye(6)) == pytest.approx(6.0)
    assert init.effective_rank(torch.outer(torch.arange(1.0, 5), torch.ones(3))) == pytest.approx(1.0)
    assert init.condition_number(torch.zeros(3, 3).fill_diagonal_(1.0).index_fill_(0, torch.tensor([2]), 0.0)) \
        == math.inf
    with pytest.raises(ValueError, match="matrix"):
        init.spectral_norm(torch.ones(4))


def test_propagation_stats_match_manual_backprop():
    torch.manual_seed(0)
    net = models.deep_mlp(depth=4, width=16, in_features=10, num_classes=3)
    X, y = torch.randn(32, 10), torch.randint(0, 3, (32,))
    stats = init.propagation_stats(net, X, y)
    zs, h = [], X
    for layer in net:
        h = layer(h)
        if isinstance(layer, nn.Linear):
            h.retain_grad()
            zs.append(h)
    nn.functional.cross_entropy(h, y).backward()
    assert stats["act_std"] == pytest.approx([z.std().item() for z in zs], rel=1e-5)
    assert stats["grad_std"] == pytest.approx([z.grad.std().item() for z in zs], rel=1e-5)


def test_kaiming_preserves_the_second_moment_through_relu_layers():
    """He et al.: with Var(W) = 2/n_in the pre-activations keep E[z²] through ReLU layers; with 1/n_in it halves."""
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(2000, 512, generator=gen)
    y = torch.zeros(2000, dtype=torch.long)
    for method, ratio in (("kaiming_normal", 1.0), ("lecun", 0.5)):
        net = init.initialize(models.deep_mlp(depth=8, width=512, in_features=512), method, generator=gen)
        sd = init.propagation_stats(net, X, y)["act_std"][1:-1]  # hidden layers 2..7
        per_layer = [(b / a) ** 2 for a, b in zip(sd[:-1], sd[1:])]
        assert np.mean(per_layer) == pytest.approx(ratio, rel=0.1)


def test_steps_to_target_against_a_loop():
    rng = np.random.default_rng(0)
    losses = list(2.3 * np.exp(-np.arange(300) / 60) + 0.05 * rng.standard_normal(300))
    window, target = 20, 0.5
    expected = next(t + 1 for t in range(window - 1, 300) if np.mean(losses[t - window + 1:t + 1]) <= target)
    assert init.steps_to_target(losses, target, window) == expected
    assert init.steps_to_target(losses, -1.0, window) is None


def test_analyze_reports_divergence_never_nan(fmnist_small):
    train, test = fmnist_small
    rows = init.analyze(["kaiming_normal", "l_momentum"], train, test, epochs=2, seeds=(0,), target_loss=1.5,
                        init_kw={"l_momentum": dict(scale_by_fan=False, directions="uniform")})
    ok, bad = rows
    assert ok["status"] == "ok" and 0.5 < ok["test_acc"] <= 1 and ok["reached"] == 1
    assert bad["status"] == f"diverged at step {bad['diverged_at']}" and bad["diverged_at"] >= 1
    assert ok["diverged_at"] is None and [r["seed"] for r in ok["runs"]] == [0]
    assert bad["test_loss"] is None
    several, = init.analyze(["l_momentum"], train, test, epochs=1, seeds=(0, 1), target_loss=1.5,
                            init_kw={"l_momentum": dict(scale_by_fan=False, directions="uniform")})
    steps = [r["diverged_at"] for r in several["runs"]]
    assert several["status"] == f"2 of 2 seeds diverged (steps {steps[0]}, {steps[1]})"
    table = init.results_table(rows)
    assert "nan" not in table.lower() and "diverged at step" in table
    assert ok["condition_number"] >= 1 and 0 < ok["erank_ratio"] <= 1


def test_orthogonal_products_are_isometries_and_gaussian_products_are_not():
    """The chapter's dynamical-isometry claim, in float64: a product of 20 orthogonal matrices is orthogonal."""
    gen = torch.Generator().manual_seed(0)
    for method, isometric in (("orthogonal", True), ("lecun", False)):
        J = torch.eye(64, dtype=torch.float64)
        for _ in range(20):
            J = init.init_weight_(torch.empty(64, 64, dtype=torch.float64), method, generator=gen) @ J
        s = torch.linalg.svdvals(J)
        assert torch.allclose(s, torch.ones_like(s), atol=1e-10) == isometric


def test_deep_mlp_and_analyze_validate_arguments():
    net = models.deep_mlp(depth=5, width=8)
    assert len(init.weight_layers(net)) == 5
    with pytest.raises(ValueError, match="depth"):
        models.deep_mlp(depth=1)
    with pytest.raises(TypeError):
        models.deep_mlp(5)  # sizes are keyword-only
    with pytest.raises(ValueError, match="kaiming_normal"):
        init.analyze(["he"], (torch.zeros(4, 784), torch.zeros(4, dtype=torch.long)), None, epochs=1)


# ---------------------------------------------------------------------------------------------- symmetry breaking
def test_constant_sets_one_over_fan_in_and_zero_bias():
    net = init.constant_(models.mlp([12, 5, 3]))
    layers = [m for _, m in init.weight_layers(net)]
    assert torch.all(layers[0].weight == 1 / 12) and torch.all(layers[1].weight == 1 / 5)
    assert all(torch.all(m.bias == 0) for m in layers)
    assert torch.all(init.constant_(models.mlp([4, 2]), 0.3)[1].weight == 0.3)


def test_unit_spread_is_zero_for_copies_and_positive_for_random_rows():
    assert init.unit_spread(torch.ones(6, 4)) == 0.0
    assert init.unit_spread(torch.randn(6, 4, generator=torch.Generator().manual_seed(0))) > 0.5


def test_constant_init_keeps_the_units_identical_through_training():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(256, 20, generator=g)
    y = (X[:, 0] > 0).long() + (X[:, 1] > 0).long()
    const = init.symmetry_run((X, y), (X, y), method="constant", width=8, epochs=2, lr=0.1, batch_size=32)
    rand = init.symmetry_run((X, y), (X, y), method="kaiming_normal", width=8, epochs=2, lr=0.1, batch_size=32)
    assert const["spread"].shape == (3, 2) and np.all(const["spread"] == 0.0)
    assert np.all(rand["spread"] > 0.5) and const["diverged_at"] is None and rand["test_acc"] is not None
