import math

import numpy as np

import pytest
import torch
from torch.nn import functional as F

import dldna_lite as dl
from dldna_lite import models
from dldna_lite.train import evaluate, train


def _run(fmnist_small, lr=0.05, epochs=2, optimizer="sgd", **kw):
    (X, y), test = fmnist_small
    dl.seed_everything(0)
    model = models.mlp([784, 32, 10])
    opt = (torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9) if optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=1e-3))
    return model, train(model, opt, (X, y), epochs=epochs, batch_size=64, test_data=test, **kw)


def test_loss_decreases_and_accuracy_beats_chance(fmnist_small):
    _, h = _run(fmnist_small, epochs=3)
    assert h.status == "ok"
    assert h["train_loss"][-1] < 0.8 * h["train_loss"][0]
    assert h.final("test_acc") > 0.6
    assert len(h["loss"]) == 3 * 32  # 2000 / 64 -> 32 steps per epoch


def test_same_seed_same_numbers(fmnist_small, pinned_threads):
    """seed_everything's promise: bitwise the same run at the same thread count and flush-denormal setting."""
    for threads, flush in ((1, True), (2, False)):
        with pinned_threads(threads, flush_denormal=flush):
            m1, h1 = _run(fmnist_small, epochs=1)
            m2, h2 = _run(fmnist_small, epochs=1)
        assert h1["loss"] == h2["loss"]
        assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_another_thread_count_changes_only_the_last_bits(fmnist_small, pinned_threads, optimizer):
    """seed_everything's stated tolerance: 1 and 2 threads split float32 sums differently, and 64 steps compound that.
    Measured (2-core AMD EPYC, MKL 2024.2): largest relative loss difference 5.3e-7 (SGD + momentum) and 1.7e-7
    (Adam), weights 4.4e-7 and 1.4e-7 of their largest entry; 0 with MKL_CBWR=AUTO,STRICT. Asserted: 1e-5 (20x)."""
    runs = []
    for threads in (1, 2):
        with pinned_threads(threads):
            assert torch.get_num_threads() == threads
            runs.append(_run(fmnist_small, optimizer=optimizer))
    (m1, h1), (m2, h2) = runs
    assert len(h1["loss"]) == len(h2["loss"]) == 64
    np.testing.assert_allclose(h2["loss"], h1["loss"], rtol=1e-5)
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5 * a.abs().max().item())
    assert h1.final("test_acc") == pytest.approx(h2.final("test_acc"), abs=2e-3)   # at most 2 of 1,000 images


def test_pinned_threads_restores_both_settings(pinned_threads):
    from conftest import flush_denormal_enabled

    start = torch.get_num_threads(), flush_denormal_enabled()
    with pytest.raises(RuntimeError, match="inside"):
        with pinned_threads(1, flush_denormal=True):
            assert torch.get_num_threads() == 1 and flush_denormal_enabled()
            raise RuntimeError("inside")
    assert (torch.get_num_threads(), flush_denormal_enabled()) == start
    for bad in (0, 1.0, True):
        with pytest.raises(ValueError, match="positive int"):
            with pinned_threads(bad):
                pass
    with pytest.raises(ValueError, match="calling thread only"):
        with pinned_threads(2, flush_denormal=True):
            pass


def test_divergence_is_reported_not_nan(fmnist_small):
    _, h = _run(fmnist_small, lr=1e4)
    assert h.diverged and h.status.startswith("diverged at step ")
    assert h.final("test_loss") is None
    assert h.describe("test_loss") == h.status
    assert all(torch.isfinite(torch.tensor(v)) for v in h["loss"])


def test_step_metrics_match_hand_computation():
    # one linear parameter w, loss = (w x - t)^2 with x=2, t=0, w0=1: grad = 2 (w x - t) x = 8
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    X, y = torch.tensor([[2.0]]), torch.tensor([[0.0]])
    h = train(model, torch.optim.SGD(model.parameters(), lr=0.1), (X, y), epochs=1, batch_size=1,
              loss_fn=torch.nn.functional.mse_loss, track_steps=True)
    assert h["loss"] == [4.0]
    assert h["grad_norm"] == pytest.approx([8.0])
    assert h["param_change"] == pytest.approx([0.8])  # 0.1 * 8
    assert h["weight_norm"] == pytest.approx([0.2])
    assert h["lr"] == [0.1]


def test_clipping_caps_the_update():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    X, y = torch.tensor([[2.0]]), torch.tensor([[0.0]])
    h = train(model, torch.optim.SGD(model.parameters(), lr=0.1), (X, y), epochs=1, batch_size=1,
              loss_fn=torch.nn.functional.mse_loss, track_steps=True, clip_grad_norm=1.0)
    assert h["param_change"] == pytest.approx([0.1])


def test_evaluate_restores_mode_and_bad_args(fmnist_small):
    (X, y), test = fmnist_small
    model = models.mlp([784, 16, 10], dropout=0.5)
    model.train()
    loss, acc = evaluate(model, test)
    assert model.training and 0 <= acc <= 1 and loss > 0
    with pytest.raises(ValueError, match="epochs"):
        train(model, torch.optim.SGD(model.parameters(), lr=0.1), (X, y), epochs=0)
    with pytest.raises(ValueError, match="rows"):
        train(model, torch.optim.SGD(model.parameters(), lr=0.1), (X, y[:5]), epochs=1)


def test_model_builders():
    x = torch.randn(3, 1, 28, 28)
    assert models.SimpleNetwork("prelu")(x).shape == (3, 10)
    assert models.count_parameters(models.SimpleNetwork()) == 784 * 512 + 512 + 512 * 64 + 64 + 64 * 10 + 10
    assert models.SmallCNN()(x).shape == (3, 10)
    assert models.mlp([784, 100, 10], batchnorm=True)(x).shape == (3, 10)
    with pytest.raises(ValueError, match="simple, mlp, cnn"):
        models.build("resnet")
    with pytest.raises(ValueError, match="relu"):
        models.activation("swishy")
    with pytest.raises(ValueError):
        models.mlp([784, 0, 10])


@pytest.mark.parametrize("batch_size", [300, 1000, 4096])
def test_evaluate_over_several_batches_equals_one_direct_computation(fmnist_small, batch_size):
    """300: four batches, the last one short (100 rows); 1000 and 4096: one batch. float64, so the batch-size
    weighted mean must equal the full-batch loss to rounding."""
    _, (X, y) = fmnist_small
    dl.seed_everything(0)
    model = models.mlp([784, 32, 10]).double()
    X = X.double()
    with torch.no_grad():
        out = model(X)
        want_loss = F.cross_entropy(out, y).item()
        want_acc = (out.argmax(1) == y).double().mean().item()
    loss, acc = evaluate(model, (X, y), batch_size=batch_size)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    assert acc == pytest.approx(want_acc, abs=1e-12)
    onehot = F.one_hot(y, 10).double()                        # one-hot targets: accuracy from the arg-max
    loss, acc = evaluate(model, (X, onehot), loss_fn=F.mse_loss, batch_size=batch_size)
    assert loss == pytest.approx(F.mse_loss(out, onehot).item(), rel=1e-12) and acc == pytest.approx(want_acc)


@pytest.mark.parametrize("lr", [math.inf, math.nan])
def test_a_non_finite_learning_rate_is_rejected(fmnist_small, lr):
    (X, y), _ = fmnist_small
    model = models.mlp([784, 16, 10])
    with pytest.raises(ValueError, match="learning rate.*must be finite"):
        train(model, torch.optim.SGD(model.parameters(), lr=lr), (X, y), epochs=1)


# ---------------------------------------------------------------------------------------------- several seeds
def test_mean_std_counts_diverged_seeds_instead_of_averaging_them():
    from dldna_lite.train import describe_divergence, mean_std
    assert mean_std([0.8, 0.9]) == f"0.8500 ± {np.std([0.8, 0.9], ddof=1):.4f}"
    assert mean_std([0.8]) == "0.8000" and mean_std([0.81234], fmt="{:.2f}") == "0.81"
    assert mean_std([None], [3]) == "diverged at step 3" == describe_divergence(3)
    assert describe_divergence(None) == "ok"
    assert mean_std([None, None, 0.8], [3, 7, None]) == "2 of 3 seeds diverged (steps 3, 7); 0.8000 over the other 1"
    assert mean_std([None, None], [3, 7]) == "2 of 2 seeds diverged (steps 3, 7)"
    assert mean_std([None, 0.8, 0.9], [3, None, None]) == \
        f"1 of 3 seeds diverged (step 3); 0.8500 ± {np.std([0.8, 0.9], ddof=1):.4f} over the other 2"
    with pytest.raises(ValueError, match="length"):
        mean_std([0.8, 0.9], [None])


def test_run_seeds_runs_each_seed_once_in_order():
    from dldna_lite.train import run_seeds
    assert run_seeds(lambda s: {"seed": s, "x": s * s}, (2, 0, 1), progress=False) == \
        [{"seed": 2, "x": 4}, {"seed": 0, "x": 0}, {"seed": 1, "x": 1}]
    with pytest.raises(ValueError, match="empty"):
        run_seeds(lambda s: {}, [])
