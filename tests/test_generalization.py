"""Tests of dldna_lite.generalization: grokking and double descent (chapter 06)."""
import numpy as np
import pytest
import torch

import dldna_lite as dl
from dldna_lite import generalization as gz
from dldna_lite.models import ModularMLP, ModularTransformer


# ------------------------------------------------------------------------------------------ grokking
def test_modular_addition_table():
    (X_tr, y_tr), (X_val, y_val) = gz.modular_addition(11, 0.4, seed=3)
    assert len(y_tr) == round(0.4 * 121) and len(y_tr) + len(y_val) == 121
    X = torch.cat([X_tr, X_val])
    assert len({tuple(r) for r in X.tolist()}) == 121                       # every pair exactly once
    torch.testing.assert_close(torch.cat([y_tr, y_val]), (X[:, 0] + X[:, 1]) % 11)
    with pytest.raises(ValueError, match="train_fraction"):
        gz.modular_addition(11, 1.5)


def test_first_step_reaching_needs_to_stay():
    steps = [1, 2, 3, 4, 5]
    assert gz.first_step_reaching(steps, [0.1, 0.99, 0.5, 0.99, 1.0], 0.95) == 4
    assert gz.first_step_reaching(steps, [1.0] * 5, 0.95) == 1
    assert gz.first_step_reaching(steps, [0.1, 0.99, 0.99, 0.99, 0.5], 0.95) is None
    assert gz.first_step_reaching(steps, [0.1, 0.99, 0.5, 0.99, 1.0], 0.95, stay=False) == 2   # the first time
    assert gz.first_step_reaching(steps, [0.1, 0.99, 0.99, 0.99, 0.5], 0.95, stay=False) == 2
    assert gz.first_step_reaching(steps, [0.1] * 5, 0.95, stay=False) is None


def test_grokking_quick_run_generalises_after_memorising():
    s = dl.sizes("stories", "quick")
    run = gz.train_grokking(s["grok_p"], s["grok_fraction"], s["grok_steps"], lr=s["grok_lr"],
                            weight_decay=s["grok_wd"], seed=s["grok_seed"], stop_at=0.95)
    memorised = gz.first_step_reaching(run["step"], run["train_acc"], 0.99)
    grokked = gz.first_step_reaching(run["step"], run["val_acc"], 0.95)
    assert gz.grokking_steps(run) == (memorised, grokked)
    assert memorised is not None and grokked is not None
    assert grokked >= 2 * memorised                                   # a long plateau between the two
    at_memorised = run["val_acc"][list(run["step"]).index(memorised)]
    assert at_memorised < 0.2                                         # memorised, not yet generalised
    assert run["diverged_at"] is None


@pytest.mark.parametrize("depth", [1, 2])
def test_transformer_reads_out_the_last_position_of_the_full_blocks(depth):
    """ModularTransformer computes only the "=" position in its last block: the logits must equal those of the full
    ``nn.TransformerEncoderLayer`` stack read at that position."""
    torch.manual_seed(depth)
    model = ModularTransformer(num_classes=11, width=16, depth=depth, heads=4).double()
    x = torch.randint(0, 11, (40, 2))
    h = model.embed(torch.cat([x, torch.full_like(x[:, :1], 11)], 1)) + model.position
    for block in model.blocks:
        h = block(h)
    torch.testing.assert_close(model(x), model.unembed(model.norm(h[:, -1])), rtol=1e-12, atol=1e-12)
    assert model(x).shape == (40, 11)


def test_train_grokking_names_the_models():
    with pytest.raises(ValueError, match="mlp, transformer"):
        gz.train_grokking(7, 0.5, 2, model="lstm")
    run = gz.train_grokking(7, 0.5, 2, eval_every=1, model="transformer", model_options=dict(width=8, heads=2))
    assert run["config"]["model"] == "transformer" and run["steps_run"] == 2


# ------------------------------------------------------------------------------------------ double descent
@pytest.mark.parametrize("k", [7, 20, 45])
def test_min_norm_fit_is_the_pseudoinverse_solution(k):
    gen = torch.Generator().manual_seed(k)
    Phi = torch.relu(torch.randn(20, k, generator=gen, dtype=torch.float64))
    Y = torch.randn(20, 3, generator=gen, dtype=torch.float64)
    B = gz.min_norm_fit(Phi, Y)
    torch.testing.assert_close(B, torch.linalg.pinv(Phi) @ Y, rtol=1e-7, atol=1e-9)
    if k > 20:  # interpolates, and any other interpolating solution is longer
        torch.testing.assert_close(Phi @ B, Y, rtol=1e-8, atol=1e-8)
        null = torch.linalg.svd(Phi).Vh[20:].T                          # basis of the null space, [k, k - 20]
        other = B + null @ torch.randn(k - 20, 3, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(Phi @ other, Y, rtol=1e-8, atol=1e-8)
        assert other.norm() > B.norm()


@pytest.mark.parametrize("k", [7, 20, 45])
def test_ridge_fit_solves_the_regularised_normal_equations(k):
    """Primal (K <= N) or dual (K > N), the ridge solution satisfies (Phi^T Phi + lam I) B = Phi^T Y; lam = 0 is the
    minimum-norm fit, and a tiny lam approaches it above the threshold (where the dual form is used)."""
    gen = torch.Generator().manual_seed(k)
    Phi = torch.relu(torch.randn(20, k, generator=gen, dtype=torch.float64))
    Y = torch.randn(20, 3, generator=gen, dtype=torch.float64)
    for lam in (1e-3, 1.0, 30.0):
        B = gz.ridge_fit(Phi, Y, lam)
        torch.testing.assert_close((Phi.T @ Phi + lam * torch.eye(k, dtype=Phi.dtype)) @ B, Phi.T @ Y,
                                   rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(gz.ridge_fit(Phi, Y, 0.0), gz.min_norm_fit(Phi, Y))
    if k > 20:
        torch.testing.assert_close(gz.ridge_fit(Phi, Y, 1e-10), gz.min_norm_fit(Phi, Y), rtol=1e-5, atol=1e-6)
    assert gz.ridge_fit(Phi, Y, 30.0).norm() < gz.ridge_fit(Phi, Y, 1.0).norm() < gz.min_norm_fit(Phi, Y).norm()
    for bad in (-1.0, float("nan"), float("inf"), "1", True):
        with pytest.raises(ValueError, match="lam must be"):
            gz.ridge_fit(Phi, Y, bad)


def test_ridge_shrinks_the_double_descent_peak(fmnist_small):
    (X_tr, y_tr), (X_te, y_te) = fmnist_small
    n, grid = 150, gz.feature_grid(150, 1500)
    curves = {lam: gz.double_descent_curve((X_tr[:n], y_tr[:n]), (X_te, y_te), grid, ridge=lam,
                                           generator=torch.Generator().manual_seed(0)) for lam in (0.0, 1.0)}
    at_n = {lam: c["test_error"][c["features"] == n][0] for lam, c in curves.items()}
    assert at_n[1.0] < 0.6 * at_n[0.0]
    with pytest.raises(ValueError, match="ridge must be"):
        gz.double_descent_curve((X_tr[:n], y_tr[:n]), (X_te, y_te), grid, ridge=-1.0)


def test_noisy_labels_flips_to_other_classes():
    y = torch.arange(10).repeat(100)
    z = gz.noisy_labels(y, 0.3, generator=torch.Generator().manual_seed(0))
    changed = (z != y).float().mean().item()
    assert 0.25 < changed < 0.35 and z.min() >= 0 and z.max() <= 9
    assert torch.equal(gz.noisy_labels(y, 0.0), y)


def test_double_descent_peaks_at_the_interpolation_threshold(fmnist_small):
    (X_tr, y_tr), (X_te, y_te) = fmnist_small
    n = 150
    curve = gz.double_descent_curve((X_tr[:n], y_tr[:n]), (X_te, y_te), gz.feature_grid(n, 1500),
                                    generator=torch.Generator().manual_seed(0))
    k_peak = curve["features"][curve["test_error"].argmax()]
    assert 0.9 * n <= k_peak <= 1.1 * n
    assert gz.describe_curve(curve)["k_peak"] == k_peak
    assert curve["train_error"][curve["features"] >= n].max() == 0          # interpolation past the threshold
    # the second descent: far past the threshold the error is far below the peak
    assert curve["test_error"][-1] < 0.5 * curve["test_error"].max()




def test_modular_mlp_shapes():
    model = ModularMLP(num_classes=7, embed_dim=4, width=8)
    X = torch.tensor([[0, 1], [6, 6]])
    assert model(X).shape == (2, 7)


@pytest.mark.parametrize("shape", [(30, 10), (30, 30), (30, 80)])
def test_the_pseudo_inverse_of_the_cuda_branch_matches_gelsd(shape):
    """min_norm_fit uses gelsd on the CPU and torch.linalg.pinv elsewhere (CUDA has no SVD-based lstsq driver):
    both give the minimum-norm least-squares solution, below, at and above the threshold."""
    g = torch.Generator().manual_seed(0)
    Phi = torch.relu(torch.randn(*shape, generator=g, dtype=torch.float64))
    Y = torch.randn(shape[0], 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(torch.linalg.pinv(Phi) @ Y, gz.min_norm_fit(Phi, Y), rtol=1e-6, atol=1e-8)


def test_double_descent_runs_on_the_cpu_by_default(pinned_threads):
    X = torch.randn(20, 5, generator=torch.Generator().manual_seed(0))
    y = torch.arange(20) % 3
    with pinned_threads(1):   # the same run two ways: bitwise at one thread count
        a = gz.double_descent_curve((X, y), (X, y), [4, 20], num_classes=3,
                                    generator=torch.Generator().manual_seed(0))
        b = gz.double_descent_curve((X, y), (X, y), [4, 20], num_classes=3,
                                    generator=torch.Generator().manual_seed(0), device="cpu")
    np.testing.assert_array_equal(a["test_error"], b["test_error"])


def test_grokking_runs_side_by_side_give_the_numbers_of_one_after_the_other():
    from dldna_lite import generalization
    runs = {"wd": dict(weight_decay=1.0), "no wd": dict(weight_decay=0.0)}
    common = dict(p=11, train_fraction=0.5, steps=60, lr=3e-3, seed=0, eval_every=20)
    # Bitwise, across processes: train_grokking pins itself to one thread with flush-denormal on, in the spawned
    # workers as here, so both sides run at the same settings (seed_everything's promise).
    together = generalization.train_grokking_runs(runs, parallel=True, **common)
    alone = generalization.train_grokking_runs(runs, parallel=False, progress=False, **common)
    assert list(together) == ["wd", "no wd"]
    for label in runs:
        for key in ("step", "train_loss", "val_acc", "weight_norm"):
            np.testing.assert_array_equal(together[label][key], alone[label][key])
    assert together["wd"]["config"]["weight_decay"] == 1.0 and together["no wd"]["config"]["weight_decay"] == 0.0
