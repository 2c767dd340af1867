"""Checkers of ``exercises/04-modern-ml`` (``dldna_lite/exercises/modern_ml.py``): the solutions pass, the usual
mistakes (and typed numbers) fail with the intended message."""
from __future__ import annotations

import contextlib
import math

import pytest
import torch
from test_exercises import expect_fail, solutions_namespace, stub
from torch import nn
from torch.nn import functional as F

from dldna_lite import exercises as ex
from dldna_lite.exercises import check
from dldna_lite.exercises import modern_ml as mm


@contextlib.contextmanager
def pinned_cpu():
    """The settings generalization.train_grokking (the check's reference) trains under: one thread, denormals
    flushed; restored after. The solution's training loop runs under them too, so that both sides are the same run
    on any CPU and at any default thread count (issue 26: at 2 threads the solution's ‖θ‖ left the 1e-3 window)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)  # PyTorch's default
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sol():
    with pinned_cpu():
        return solutions_namespace("ex-checkpointing", "ex-grokking", "ex-double-descent")


# --------------------------------------------------------------------------------------------- 1. checkpointing
def test_checkpoint_reference_counts():
    for layers, segments in ((4, 2), (12, 2), (12, 4), (16, 4)):
        plain, ckpt = mm.checkpoint_counts(layers, segments, width=32, batch=8)
        assert plain == layers + 1  # the input and one ReLU output per layer
        assert ckpt == segments + layers // segments  # segment inputs, then the last segment stored in full


def test_checkpoint_memory(sol):
    count_saved, Checkpointed = sol["count_saved"], sol["Checkpointed"]
    assert check.checkpoint_memory(count_saved, Checkpointed)

    def every_pack(model, x):
        n = 0

        def pack(t):
            nonlocal n
            n += 1
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x)
        return n

    def with_parameters(model, x):
        seen = set()

        def pack(t):
            seen.add(t.untyped_storage().data_ptr())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x)
        return len(seen)

    expect_fail(check.checkpoint_memory(every_pack, Checkpointed), "count each storage once")
    expect_fail(check.checkpoint_memory(with_parameters, Checkpointed), "skip parameters")
    expect_fail(check.checkpoint_memory(lambda m, x: 3.0, Checkpointed), "should return an int")
    expect_fail(check.checkpoint_memory(count_saved, 17), "expected a function")  # typed numbers
    expect_fail(check.checkpoint_memory(stub, Checkpointed), "not done yet")


def test_checkpoint_memory_wrong_wrappers(sol):
    from torch.utils.checkpoint import checkpoint_sequential

    count_saved = sol["count_saved"]

    class Plain(nn.Module):  # forgets to checkpoint
        def __init__(self, net, segments):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)

    class FourSegments(nn.Module):  # ignores the segments argument
        def __init__(self, net, segments):
            super().__init__()
            self.net = net

        def forward(self, x):
            return checkpoint_sequential(self.net, 4, x, use_reentrant=False)

    class Identity(nn.Module):
        def __init__(self, net, segments):
            super().__init__()
            self.net = net

        def forward(self, x):
            return x * 1.0

    expect_fail(check.checkpoint_memory(count_saved, Plain), "nothing is checkpointed")
    expect_fail(check.checkpoint_memory(count_saved, FourSegments), "with 2 segments")
    expect_fail(check.checkpoint_memory(count_saved, Identity), "differs from net(x)")
    expect_fail(check.checkpoint_memory(count_saved, lambda net, segments: None), "nn.Module")


# --------------------------------------------------------------------------------------------- 2. grokking
def _train(weight_decay, steps=None, optimizer=torch.optim.AdamW, all_pairs=False, seed=None):
    gs = ex.GROKKING_SETUP
    (X, y), (X_val, y_val) = ex.modular_addition_data()
    if all_pairs:
        X, y = torch.cat([X, X_val]), torch.cat([y, y_val])
    with pinned_cpu(), ex._isolated_rng(gs["seed"] if seed is None else seed):  # a small model: one thread is fastest
        model = ex.ModularAdditionMLP()
        opt = optimizer(model.parameters(), lr=gs["lr"], betas=(0.9, 0.98), weight_decay=weight_decay)
        for _ in range(gs["steps"] if steps is None else steps):
            opt.zero_grad()
            F.cross_entropy(model(X), y).backward()
            opt.step()
    return model


def test_grokking_setup_data_and_model():
    (X_tr, y_tr), (X_val, y_val) = ex.modular_addition_data()
    p = ex.GROKKING_SETUP["p"]
    assert len(X_tr) + len(X_val) == p * p and torch.equal((X_tr.sum(1) % p), y_tr)
    assert ex.ModularAdditionMLP()(X_val[:5]).shape == (5, p)


def test_grokking_solution_and_reference(sol):
    assert check.grokking_weight_decay(sol["model_wd"], sol["model_no_wd"], sol["grokked_without_wd"])
    ref = mm._grokking_reference()
    assert ref[True]["val_acc"] > 0.9 > 0.1 > ref[False]["val_acc"]  # the story the exercise tells
    # the reference (generalization.train_grokking) and the solution (the page's loop) are the same run, both under
    # pinned_cpu(): one thread, denormals flushed; 1e-3 leaves room for the two loops' float summation order only
    assert math.isclose(mm._grokking_stats(sol["model_wd"])["norm"], ref[True]["norm"], rel_tol=1e-3)
    assert check.grokking_weight_decay(_train(ex.GROKKING_SETUP["weight_decay"], seed=3), sol["model_no_wd"], False)


def test_grokking_wrong_answers(sol):
    wd, no = sol["model_wd"], sol["model_no_wd"]
    expect_fail(check.grokking_weight_decay(0.92, 0.45, False), "trained torch.nn.Module")  # typed numbers
    expect_fail(check.grokking_weight_decay(wd, no, True), "the models say otherwise")
    expect_fail(check.grokking_weight_decay(wd, no, "False"), "True or False")
    expect_fail(check.grokking_weight_decay(wd, wd, False), "same network")
    expect_fail(check.grokking_weight_decay(no, wd, False), "swapped")
    expect_fail(check.grokking_weight_decay(wd, ex.ModularAdditionMLP(), False), "model_no_wd", "not fitted")
    expect_fail(check.grokking_weight_decay(nn.Linear(2, 3), no, False), "ex.ModularAdditionMLP()")
    expect_fail(check.grokking_weight_decay(_train(1.0), no, False), "model_wd has weight norm")
    expect_fail(check.grokking_weight_decay(_train(2.0, steps=150), no, False), "model_wd reaches validation")
    expect_fail(check.grokking_weight_decay(_train(2.0, optimizer=torch.optim.Adam), no, False), "not Adam")
    expect_fail(check.grokking_weight_decay(wd, _train(0.0, all_pairs=True), False), "only on the training split")
    expect_fail(check.grokking_weight_decay(_train(2.0, all_pairs=True), no, False), "trained on the validation pairs")


# --------------------------------------------------------------------------------------------- 3. double descent
def _fit_error(fit, train=False):
    F_tr, y_tr, F_te, y_te = ex.double_descent_data()
    Y = F.one_hot(y_tr, 10).double()

    def error(k):
        B = fit(F_tr[:, :k], Y)
        X, y = (F_tr, y_tr) if train else (F_te, y_te)
        return (X[:, :k] @ B).argmax(1).ne(y).double().mean().item()
    return error


def ridge(lam):
    return lambda A, Y: torch.linalg.solve(A.T @ A + lam * torch.eye(A.shape[1], dtype=A.dtype), A.T @ Y)


def test_double_descent_solution_and_reference(sol):
    assert check.double_descent(sol["test_error"], sol["k_peak"])
    assert sol["k_peak"] == ex.DOUBLE_DESCENT_SETUP["n_train"]  # the peak sits at the interpolation threshold
    # independent reference: the pseudo-inverse gives the same minimum-norm curve, peak included
    pinv = _fit_error(lambda A, Y: torch.linalg.pinv(A) @ Y)
    for k in ex.DOUBLE_DESCENT_SETUP["features"]:
        assert math.isclose(pinv(k), mm.double_descent_reference(k), abs_tol=1e-3), k
    assert check.double_descent(pinv, 200)


def test_double_descent_wrong_answers(sol):
    test_error = sol["test_error"]
    expect_fail(check.double_descent(_fit_error(ridge(1e-3)), 200), "test_error(200)", "ridge")  # typed k_peak
    expect_fail(check.double_descent(_fit_error(ridge(1.0)), 200), "ridge")
    expect_fail(check.double_descent(_fit_error(lambda A, Y: torch.linalg.lstsq(A, Y).solution, train=True), 200),
                "test_error(20)")
    expect_fail(check.double_descent(lambda k: 1 - test_error(k), 200), "accuracy")
    expect_fail(check.double_descent(lambda k: test_error(2000), 200), "test_error(20)")  # ignores k
    expect_fail(check.double_descent(test_error, ex.DOUBLE_DESCENT_SETUP["max_features"]), "*best* k")
    expect_fail(check.double_descent(test_error, 150), "worst at k = 200")
    expect_fail(check.double_descent(test_error, None), "no answer yet")
    expect_fail(check.double_descent(0.839, 200), "expected a function")  # a typed number
    table = {k: mm.double_descent_reference(k) for k in ex.DOUBLE_DESCENT_SETUP["features"]}  # typed curve
    expect_fail(check.double_descent(table.get, 200), "test_error(75)")
    expect_fail(check.double_descent(stub, 200), "not done yet")
