"""The device rule (CONTRIBUTING.md): a function that takes a model computes on the model's device and moves the data
it is given there. Checked without a GPU by putting the model on the ``meta`` device (tests/fake_device.py), where
PyTorch refuses to mix devices as it does on CUDA."""
import pytest
import torch
from torch.nn import functional as F

import dldna_lite as dl
from dldna_lite import models
from dldna_lite.config import device_of
from fake_device import META, fake_device


def _data(n=64, d=20, classes=3):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


def _meta_model(d=20, classes=3):
    return models.mlp([d, 8, classes]).to(META)


def test_the_checker_catches_a_forgotten_to():
    X, y = _data()

    def forgets(model, data):                     # the defect the device tests look for
        return F.cross_entropy(model(data[0]), data[1])

    def remembers(model, data):
        return F.cross_entropy(model(data[0].to(device_of(model))), data[1].to(device_of(model)))

    with fake_device():
        model = _meta_model()
        with pytest.raises(RuntimeError, match="device"):
            forgets(model, (X, y))
        assert remembers(model, (X, y)).device == META


def test_device_of():
    assert device_of(models.mlp([3, 2])) == torch.device("cpu")
    assert device_of(torch.nn.ReLU()) == torch.device("cpu")
    assert device_of(models.mlp([3, 2]).to(META)) == META


def test_fit_and_evaluate_run_on_the_models_device():
    X, y = _data()
    with fake_device():
        model = _meta_model()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        history = dl.fit(model, opt, (X, y), 2, batch_size=16, test_data=(X[:32], y[:32]), track_steps=True,
                         progress=False)
        assert len(history.epochs) == 2 and all(p.device == META for p in model.parameters())
        loss, acc = dl.evaluate(model, (X, y), batch_size=16)
        assert isinstance(loss, float)


def test_load_fashion_mnist_puts_the_tensors_on_the_device():
    X, y = dl.load_fashion_mnist("test", limit=8, flatten=True, device=META)
    assert X.device == META and y.device == META and X.shape == (8, 784)


# --- chapters 05-07: dynamics, generalization, backprop ---------------------------------------------------------
def test_edge_of_stability_runs_on_the_models_device():
    from dldna_lite import dynamics as dyn

    g = torch.Generator().manual_seed(0)
    X, Y = torch.randn(16, 12, generator=g), torch.randn(16, 3, generator=g)
    with fake_device():
        model = models.tanh_mlp(in_features=12, width=6, num_classes=3, seed=0).to(META)
        run = dyn.gd_with_sharpness(model, (X, Y), 0.05, 3, every=2, power_iters=3)
        assert len(run["loss"]) == 3 and len(run["sharpness"]) == 2
        value, vector = dyn.sharpness(model, (X, Y), max_iter=3)
        assert all(v.device == META for v in vector) if isinstance(vector, (list, tuple)) else vector.device == META
    assert dyn.eos_data(4, device=META)[0].device == META


def test_grokking_runs_on_the_given_device():
    from dldna_lite import generalization as gz

    with fake_device():
        run = gz.train_grokking(7, 0.5, 3, eval_every=1, model_options=dict(embed_dim=4, width=8), device=META)
        tf = gz.train_grokking(7, 0.5, 3, eval_every=1, model="transformer", model_options=dict(width=8, heads=2),
                               device=META)
    assert run["steps_run"] == 3 and len(run["step"]) == 3
    assert tf["steps_run"] == 3 and len(tf["step"]) == 3


def test_double_descent_runs_on_the_given_device():
    from dldna_lite import generalization as gz

    X, y = _data(n=30, d=8)
    with fake_device():
        curve = gz.double_descent_curve((X, y), (X[:10], y[:10]), [5, 30, 40], num_classes=3, label_noise=0.2,
                                        generator=torch.Generator().manual_seed(0), device=META)
    assert list(curve["features"]) == [5, 30, 40]


def test_backprop_strategies_run_on_the_models_device():
    from dldna_lite import backprop as bp

    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    with fake_device():
        chain = models.chain_mlp(depth=4, width=8).to(META)
        for strategy in bp.STRATEGIES:
            chain.zero_grad(set_to_none=True)
            bp.backprop(chain, (x, torch.zeros_like(x)), strategy=strategy)
            assert all(p.grad.device == META for p in chain.parameters())
        assert bp.cuda_peak_bytes(chain, (x, x)) is None           # not a CUDA device
        profile = bp.backprop_profile([2, 4], width=8, batch=4, repeats=1, device=META)
        assert set(profile) == {"vanilla", "checkpoint", "memory_poor"} and "cuda_bytes" not in profile["vanilla"]
        norms = bp.layer_grad_norms(models.scaled_relu_mlp(depth=3, width=8, gain=1.0, in_features=20,
                                                           num_classes=3).to(META), _data())
        assert len(norms["weight"]) == 3


def test_batch_size_sweep_and_monitored_run_follow_the_device():
    from dldna_lite import dynamics as dyn

    X, y = _data()
    with fake_device():
        rows = dyn.batch_size_sweep(_meta_model, (X, y), (X[:32], y[:32]), [16, 64], 1, base_lr=0.1, base_batch=16,
                                    sharpness_data=(X[:16], y[:16]), sharpness_iters=2)
        model, h = dyn.monitored_run(lambda: models.mlp([20, 8, 3]), (X, y), device=META, epochs=1, batch_size=32,
                                     optimizer_fn=lambda p: torch.optim.SGD(p, lr=0.1), progress=False)
    assert [r["batch_size"] for r in rows] == [16, 64] and device_of(model) == META


# --- chapters 00-02: init, optim.compare, optim.large, Sophia's estimators (the device rule, on the meta device)
def _meta_simple():
    return models.mlp([20, 16, 8, 3], activation="prelu").to(META)


def test_initialize_draws_on_the_cpu_and_fills_a_model_on_any_device():
    from dldna_lite import init

    cpu = init.initialize(models.mlp([20, 16, 3]), "kaiming_normal", generator=torch.Generator().manual_seed(0))
    for method in init.METHODS:
        with fake_device():
            model = init.initialize(_meta_simple(), method, generator=torch.Generator().manual_seed(0))
            assert all(p.device == META for p in model.parameters())
    assert cpu[1].weight.device.type == "cpu"


def test_propagation_stats_and_the_analyze_run_on_the_models_device():
    from dldna_lite import init

    X, y = _data()
    with fake_device():
        stats = init.propagation_stats(_meta_simple(), X, y)
        assert len(stats["act_std"]) == 3
        run = init._one_run("kaiming_normal", 0, {}, _meta_simple, lambda p: torch.optim.SGD(p, lr=0.1), (X, y),
                            (X[:32], y[:32]), 1, 16, 0.5, False)
        assert run["diverged_at"] is None


def test_symmetry_run_on_a_device():
    from dldna_lite import init

    X, y = _data(d=20)
    with fake_device():
        r = init.symmetry_run((X, y), (X, y), method="kaiming_normal", width=8, epochs=1, batch_size=16, device=META)
        assert r["spread"].shape == (2, 2)


@pytest.mark.parametrize("label", ["SGD+momentum", "Adam", "Lion"])
def test_compare_run_and_state_memory_on_the_models_device(label):
    from dldna_lite.optim import compare

    X, y = _data()
    with fake_device():
        r = compare.run(label, 1e-3, _meta_model, (X, y), (X[:32], y[:32]), 1, batch_size=16)
        assert r["diverged_at"] is None and len(r["history"].epochs) == 1
        assert compare.state_memory(label, _meta_model(), in_features=20) >= 0


def test_large_models_train_a_step_on_the_models_device():
    from dldna_lite.optim import compare, large

    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g)
    shape = dict(in_channels=1, num_classes=10, image_size=28, width=0.25)
    with fake_device():
        for build in (lambda: large.cifar_cnn(**shape).to(META), lambda: large.PatchTransformer(**shape).to(META)):
            r = compare.run("Adam", 1e-3, build, (X, y), (X[:16], y[:16]), 1, batch_size=16)
            assert len(r["history"].epochs) == 1


def test_large_experiment_data_is_on_the_requested_device():
    from dldna_lite.optim import large

    data = large.experiment_data(16, 8, device=META)
    assert data["name"] == "Fashion-MNIST" and data["device"] == META
    assert data["train"][0].device == META and data["test"][1].device == META


def test_sophias_estimators_compute_on_the_parameters_device():
    from dldna_lite import optim

    X, y = _data()
    with fake_device():
        model = _meta_model()
        est = optim.GaussNewtonBartlett(model)          # no generator: labels sampled on the model's device
        model(X.to(META))
        assert all(h.device == META for h in est())
        loss = F.cross_entropy(model(X.to(META)), y.to(META))
        h = optim.hutchinson_diagonal(loss, list(model.parameters()), generator=torch.Generator().manual_seed(0))
        assert all(t.device == META for t in h)
        opt = optim.build("Sophia", model.parameters(), 1e-3, estimator=est)
        F.cross_entropy(model(X.to(META)), y.to(META)).backward()
        opt.step()


# --- chapters 03-04: loss landscapes (record_trajectory, directions, plane_surface, Bezier curves, sightseeing) ---
import copy  # noqa: E402


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")   # PCA of the fake (zero) copies
def test_record_trajectory_trains_and_keeps_the_weights_on_the_models_device():
    from dldna_lite import landscape

    X, y = _data()
    with fake_device():
        model = _meta_model()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        W, history = landscape.record_trajectory(model, (X, y), opt, epochs=2, every="epoch", batch_size=16)
        assert W.device == META and W.shape[0] == 3 and history.diverged_at is None
        W, _ = landscape.record_trajectory(model, (X, y), opt, epochs=1, every=2, batch_size=16)
        assert W.device == META
        pca = landscape.trajectory_pca(W.to(torch.float64))     # fitted on a CPU copy, directions back on META
        assert pca["directions"].device == META and pca["coords"].shape == (len(W), 2)


def test_random_directions_are_drawn_on_the_cpu_and_live_on_the_models_device():
    from dldna_lite import landscape

    cpu = models.mlp([20, 8, 3])
    d_cpu = landscape.random_direction(cpu, generator=torch.Generator().manual_seed(0))
    with fake_device():
        model = copy.deepcopy(cpu).to(META)
        d = landscape.random_direction(model, generator=torch.Generator().manual_seed(0))
        assert [t.device for t in d] == [META] * len(d_cpu) and [t.shape for t in d] == [t.shape for t in d_cpu]
        d1, d2 = landscape.random_plane(model, generator=torch.Generator().manual_seed(0))
        assert d1.device == META and d2.device == META


def test_plane_surface_moves_data_and_vectors_to_the_models_device():
    from dldna_lite import landscape

    X, y = _data()
    cpu = models.mlp([20, 8, 3])
    w = landscape.flat_params(cpu)                               # flat vectors and data given on the CPU
    d1, d2 = landscape.random_plane(cpu, generator=torch.Generator().manual_seed(0))
    with fake_device():
        out = landscape.plane_surface(copy.deepcopy(cpu).to(META), (X, y), w, d1, d2, [-1.0, 0.0, 1.0], [0.0, 1.0])
    assert out["loss"].shape == (2, 3)


def test_bezier_training_and_path_metrics_run_on_the_models_device():
    from dldna_lite import landscape

    X, y = _data()
    cpu = models.mlp([20, 8, 3])
    w0 = landscape.flat_params(cpu)
    w1 = w0 + 0.1 * torch.randn(w0.shape, generator=torch.Generator().manual_seed(0))
    with fake_device():
        model = copy.deepcopy(cpu).to(META)
        bezier = landscape.train_bezier(model, (X, y), w0, w1, epochs=1, batch_size=16)
        assert bezier["theta"].device == META and bezier["diverged_at"] is None
        path = landscape.path_metrics(model, (X, y), w0, bezier["theta"], w1, [0.0, 0.5, 1.0])
        assert path["loss"].shape == (3,)


def test_hessian_directions_and_sightseeing_run_on_the_models_device():
    from dldna_lite import landscape

    X, y = _data()
    with fake_device():
        model = _meta_model()
        dirs = landscape.hessian_directions(model, (X, y), k=1, max_iter=3, generator=torch.Generator().manual_seed(0))
        assert all(t.device == META for t in dirs[0])
        plane = landscape.fit_pattern(model, (X, y), steps=2, generator=torch.Generator().manual_seed(0),
                                      progress=False)
        assert all(t.device == META for t in plane["u"].values()) and plane["losses"].shape == landscape.SMILEY.shape
        assert landscape.plane_losses(model, (X, y), plane, [0.0, 0.5], [0.0, -0.5]).shape == (2,)


# ---------------------------------------------------------------------------------------------- scan engine, Hessian
@pytest.mark.parametrize("activation", ["relu", "prelu"])   # the batched-MLP path and the vmap path
def test_scans_and_interpolation_run_on_the_models_device(activation):
    from dldna_lite import landscape
    X, y = _data()
    torch.manual_seed(0)
    cpu_model = models.mlp([20, 8, 3], activation=activation)
    dirs = [landscape.random_direction(cpu_model, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    with fake_device():
        model = cpu_model.to(META)
        scan = landscape.scan_2d(model, (X, y), *dirs, [-1.0, 0.0, 1.0], [0.0, 1.0], progress=False)
        assert scan["loss"].shape == (2, 3)
        line = landscape.scan_1d(model, (X, y), dirs[0], [0.0, 0.5], progress=False)
        assert line["loss"].shape == (2,)
        other = models.mlp([20, 8, 3], activation=activation, batchnorm=True).to(META)   # buffers: own loop
        assert landscape.interpolate(other, (X, y), other, [0.0, 1.0], progress=False)["loss"].shape == (2,)


def test_hessian_tools_run_on_the_models_device():
    from dldna_lite import hessian
    X, y = _data()
    with fake_device():
        model = _meta_model()
        H = hessian.HessianOperator(model, (X, y))
        assert H(torch.ones(H.size, device=META)).device == META
        H.close()
        values, vectors = hessian.top_eigenvalues(model, (X, y), k=1, max_iter=3, method="power")
        assert vectors[0][0].device == META
        assert hessian.exact_hessian(_meta_model(d=2, classes=2), (X[:, :2], y % 2)).device == META
