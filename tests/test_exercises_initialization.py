"""Checkers of ``exercises/01-initialization`` (``dldna_lite/exercises/initialization.py``): the solutions pass, the
usual mistakes (and typed numbers) fail with the intended message."""
from __future__ import annotations

import math

import pytest
import torch
from test_exercises import expect_fail, solutions_namespace, stub
from torch import nn

import dldna_lite as dl
from dldna_lite import init, models
from dldna_lite.exercises import check
from dldna_lite.exercises import initialization as init_ex


@pytest.fixture(scope="module")
def sol():
    return solutions_namespace("ex-init-variance", "ex-batchnorm", "ex-init-experiment")


# --------------------------------------------------------------------------------------------- 1. Xavier and Kaiming
def test_init_variance_solution_and_torch_reference(sol):
    assert check.init_variance(sol["xavier_normal_"], sol["kaiming_normal_"])
    # independent reference: torch.nn.init's own functions pass
    assert check.init_variance(nn.init.xavier_normal_, lambda W: nn.init.kaiming_normal_(W, nonlinearity="relu"))


def test_the_normality_bounds_hold_for_many_normal_samples():
    """The tolerances' comment: torch's normal_ stays well inside them, seed after seed."""
    for seed in range(5):
        W = torch.empty(300, 1200).normal_(0, 1, generator=torch.Generator().manual_seed(seed))
        kurtosis, ks = init_ex._shape_stats(W)
        assert abs(kurtosis) < init_ex.KURTOSIS_TOL / 2 and ks < init_ex.KS_TOL / 2


def test_init_variance_wrong_variance(sol):
    xavier, kaiming = sol["xavier_normal_"], sol["kaiming_normal_"]
    fan_out = lambda W: nn.init.kaiming_normal_(W, mode="fan_out", nonlinearity="relu")  # noqa: E731
    expect_fail(check.init_variance(xavier, fan_out), "kaiming_normal_", "fan_out", "fan_in = W.shape[1]")
    lecun = lambda W: nn.init.normal_(W, std=1 / math.sqrt(W.shape[1]))  # noqa: E731
    expect_fail(check.init_variance(lecun, kaiming), "xavier_normal_", "LeCun")
    expect_fail(check.init_variance(xavier, lambda W: nn.init.normal_(W)), "that is 1 (torch.randn")
    expect_fail(check.init_variance(lambda W: nn.init.normal_(W, mean=0.1, std=0.03), kaiming), "mean 0")


def test_init_variance_not_in_place_or_not_gaussian(sol):
    xavier, kaiming = sol["xavier_normal_"], sol["kaiming_normal_"]
    new_tensor = lambda W: torch.randn(W.shape) * math.sqrt(2 / W.shape[1])  # noqa: E731  W itself left unfilled
    expect_fail(check.init_variance(xavier, new_tensor), "kaiming_normal_", "leaves W unfilled")

    def uniform(W):  # the right variance, the wrong distribution
        bound = math.sqrt(3 * 2 / W.shape[1])
        with torch.no_grad():
            return W.uniform_(-bound, bound)

    def laplace(W):
        with torch.no_grad():
            return W.copy_(torch.distributions.Laplace(0.0, math.sqrt(1 / W.shape[1])).sample(W.shape))

    def returns_none(W):
        kaiming(W)

    def no_grad_forgotten(W):
        return W.normal_(0, math.sqrt(2 / W.shape[1]))

    def reseeds(W):  # the same "random" weights at every call
        torch.manual_seed(0)
        return kaiming(W)

    def half_filled(W):
        with torch.no_grad():
            W[: len(W) // 2].normal_(0, math.sqrt(2 / W.shape[1]))
        return W

    expect_fail(check.init_variance(xavier, uniform), "not Gaussian", "−1.2", "uniform")
    expect_fail(check.init_variance(xavier, laplace), "not Gaussian")
    expect_fail(check.init_variance(xavier, returns_none), "returns None")
    expect_fail(check.init_variance(xavier, no_grad_forgotten), "torch.no_grad()")
    expect_fail(check.init_variance(xavier, reseeds), "identical weights")
    expect_fail(check.init_variance(xavier, half_filled), "partly unfilled")
    expect_fail(check.init_variance(xavier, lambda W: W.detach().clone().normal_()), "leaves W unfilled")
    expect_fail(check.init_variance(lambda W: torch.zeros(3), kaiming), "unfilled")
    expect_fail(check.init_variance(stub, stub), "not done yet")


# --------------------------------------------------------------------------------------------- 2. BatchNorm
def test_batchnorm_solution(sol):
    result = check.batchnorm_init(sol["make_network"], sol["train_network"])
    assert result and "ln 10" in result.message
    # the story the check tells, measured on the solution's networks
    plain, bn = (init_ex._training_loss(sol["train_network"](b)) for b in (False, True))
    assert abs(plain - math.log(10)) < 0.01 and bn < math.log(10) - 0.5


def _builder(weights="bad", biases="zero", batchnorm_flag=True):
    s = init_ex.BATCHNORM_SETUP

    def make_network(batchnorm):
        net = models.mlp([784] + [s["width"]] * (s["depth"] - 1) + [10], batchnorm=batchnorm and batchnorm_flag)
        for k, layer in enumerate(m for m in net.modules() if isinstance(m, nn.Linear)):
            if weights == "bad" or (weights == "first only" and k == 0):
                nn.init.normal_(layer.weight, std=s["init_std"])
            if biases == "zero":
                nn.init.zeros_(layer.bias)
        return net
    return make_network


def _trainer(make_network, optimizer=torch.optim.SGD, epochs=None, seed=True, train=True, lr=None):
    s = init_ex.BATCHNORM_SETUP
    data = init_ex._batchnorm_data()

    def train_network(batchnorm):
        if seed:
            dl.seed_everything(s["seed"])
        net = make_network(batchnorm)
        if train:
            dl.fit(net, optimizer(net.parameters(), lr=lr or s["lr"]), data, epochs=epochs or s["epochs"],
                   batch_size=s["batch_size"])
        return net
    return train_network


def test_batchnorm_wrong_networks():
    for make_network, message in ((_builder(weights="default"), "std"), (_builder(weights="first only"), "layer 2"),
                                  (_builder(biases="default"), "non-zero biases"),
                                  (_builder(batchnorm_flag=False), "BatchNorm layers"),
                                  (lambda bn: models.mlp([784, 128, 10], batchnorm=bn), "10 Linear layers"),
                                  (lambda bn: None, "nn.Module")):
        expect_fail(check.batchnorm_init(make_network, _trainer(make_network)), message)


def test_batchnorm_wrong_training():
    make = _builder()
    expect_fail(check.batchnorm_init(2.3026, 1.7), "expected a function")  # typed numbers
    for train_network in (_trainer(make, optimizer=torch.optim.Adam), _trainer(make, epochs=1),
                          _trainer(make, seed=False), _trainer(make, train=False), _trainer(make, lr=0.01)):
        expect_fail(check.batchnorm_init(make, train_network), "does not follow the setup")
    expect_fail(check.batchnorm_init(make, lambda bn: dl.History()), "trained torch.nn.Module")
    expect_fail(check.batchnorm_init(make, stub), "not done yet")


# --------------------------------------------------------------------------------------------- 3. init experiment
@pytest.fixture(scope="module")
def init_data():
    s = init_ex.INIT_EXPERIMENT
    return (dl.load_fashion_mnist("train", limit=s["train_limit"], flatten=True),
            dl.load_fashion_mnist("test", limit=s["test_limit"], flatten=True))


def _analyze(data, methods=("naive", "kaiming_normal"), **kw):
    kw = {"epochs": init_ex.INIT_EXPERIMENT["epochs"], "target_loss": init_ex.INIT_TARGET_LOSS, **kw}
    return init.analyze(list(methods), *data, **kw)


def test_init_experiment_solution(sol, init_data):
    assert check.init_experiment(sol["rows"], sol["first"])
    rows = _analyze(init_data, ("kaiming_normal", "xavier_normal"))
    best = min((r for r in rows if r["reached"]), key=lambda r: r["steps_to_target"])["method"]
    assert check.init_experiment(rows, best)


def test_init_experiment_wrong_rows(sol, init_data):
    rows, first = sol["rows"], sol["first"]
    typed = [dict(method="naive", steps_to_target=None, reached=0),
             dict(method="kaiming_normal", steps_to_target=29.0, reached=1)]
    expect_fail(check.init_experiment(typed, "kaiming_normal"), "hand in the list that init.analyze returned")
    forged = [dict(r) for r in rows]
    forged[1]["steps_to_target"] = 3.0  # a typed number in a real row
    expect_fail(check.init_experiment(forged, first), "steps_to_target 3.0")
    renamed = [dict(rows[0]), dict(rows[1], method="xavier_normal")]
    expect_fail(check.init_experiment(renamed, "xavier_normal"), "does not come from 'xavier_normal''s initialization")
    expect_fail(check.init_experiment([rows[1], rows[1]], first), "two different methods")
    expect_fail(check.init_experiment(rows[1:], first), "two different methods")
    expect_fail(check.init_experiment(_analyze(init_data, epochs=1), first), "epochs=2")
    expect_fail(check.init_experiment(_analyze(init_data, batch_size=64), first), "ex.INIT_EXPERIMENT")
    expect_fail(check.init_experiment(_analyze(init_data, target_loss=0.6), first), "target_loss=ex.INIT_TARGET_LOSS")
    expect_fail(check.init_experiment(_analyze(init_data, seeds=(0, 1)), first), "default seeds")
    expect_fail(check.init_experiment("rows", first), "list of dicts")


def test_init_experiment_wrong_first(sol):
    rows = sol["rows"]
    expect_fail(check.init_experiment(rows, "naive"), "never reached it")
    expect_fail(check.init_experiment(rows, "orthogonal"), "not one of the methods")
    expect_fail(check.init_experiment(rows, None), "no answer yet")
