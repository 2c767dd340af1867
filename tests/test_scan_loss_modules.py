"""The scan engine's fast paths take the loss *modules* users pass (issue 27): ``nn.CrossEntropyLoss()`` and
``nn.MSELoss()`` with their defaults run exactly as ``F.cross_entropy`` / ``F.mse_loss`` (same numbers, bitwise: the
same operations in the same process), on the same path (a spy on the batched cross-entropy kernel; the modules'
``forward`` is never called); any other setting of theirs (weights, label smoothing, an ignored index, another
reduction, a hook, a subclass) falls back to the general path and still equals the naive loop."""
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dldna_lite import landscape as L
from dldna_lite.landscape import engine, kernels
from landscape_helpers import data, mlp, scan_2d_naive

XS, YS = np.linspace(-1, 1, 5), np.linspace(-0.5, 1, 4)


def _dirs(model):
    gen = torch.Generator().manual_seed(0)
    return [L.random_direction(model, norm="filter", generator=gen) for _ in range(2)]


def _regression(n=64):
    X, _ = data(n=n)
    return X, torch.randn(n, 4, generator=torch.Generator().manual_seed(3))


def _forbid_forward(monkeypatch, cls):
    def forward(self, *args):
        raise AssertionError(f"{cls.__name__}.forward ran: the module did not take the fast path")

    monkeypatch.setattr(cls, "forward", forward)


def test_cross_entropy_module_takes_the_fast_path_with_the_same_numbers(monkeypatch):
    model, (X, y) = mlp(), data()
    d1, d2 = _dirs(model)
    want = L.scan_2d(model, (X, y), d1, d2, XS, YS, progress=False)
    calls = []

    def spy(*args):
        calls.append(1)
        return kernels.cross_entropy_(*args)

    monkeypatch.setattr(engine, "cross_entropy_", spy)
    _forbid_forward(monkeypatch, nn.CrossEntropyLoss)
    assert L.point_evaluator(model, (X, y), [d1, d2], loss_fn=nn.CrossEntropyLoss()).path == "first-layer+bmm"
    got = L.scan_2d(model, (X, y), d1, d2, XS, YS, loss_fn=nn.CrossEntropyLoss(), progress=False)
    assert calls, "the batched cross-entropy kernel never ran"
    assert np.array_equal(got["loss"], want["loss"]) and np.array_equal(got["acc"], want["acc"])


def test_mse_module_runs_as_f_mse_loss(monkeypatch):
    model, (X, y) = mlp(), _regression()
    d1, d2 = _dirs(model)
    want = L.scan_2d(model, (X, y), d1, d2, XS, YS, loss_fn=F.mse_loss, progress=False)
    _forbid_forward(monkeypatch, nn.MSELoss)
    ev = L.point_evaluator(model, (X, y), [d1, d2], loss_fn=nn.MSELoss())
    assert ev.loss_fn is F.mse_loss and ev.path == "first-layer+vmap"
    got = L.scan_2d(model, (X, y), d1, d2, XS, YS, loss_fn=nn.MSELoss(), progress=False)
    assert np.array_equal(got["loss"], want["loss"])


class _MyCrossEntropy(nn.CrossEntropyLoss):
    def forward(self, out, y):
        return super().forward(out, y) + 0.5


def _hooked():
    loss = nn.CrossEntropyLoss()
    loss.register_forward_hook(lambda module, args, out: out * 2)
    return loss


OTHERS = {
    "weight": lambda: nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 0.5, 1.5])),
    "label_smoothing": lambda: nn.CrossEntropyLoss(label_smoothing=0.1),
    "ignore_index": lambda: nn.CrossEntropyLoss(ignore_index=2),
    "sum": lambda: nn.CrossEntropyLoss(reduction="sum"),
    "hook": _hooked,
    "subclass": _MyCrossEntropy,
}


@pytest.mark.parametrize("case", list(OTHERS))
def test_other_cross_entropy_settings_take_the_general_path(case):
    model, (X, y) = mlp(), data()
    d1, d2 = _dirs(model)
    loss_fn = OTHERS[case]()
    ev = L.point_evaluator(model, (X, y), [d1, d2], loss_fn=loss_fn)
    assert ev.loss_fn is loss_fn and ev.path == "first-layer+vmap"
    got = L.scan_2d(model, (X, y), d1, d2, XS, YS, loss_fn=loss_fn, progress=False)
    want = scan_2d_naive(model, (X, y), d1, d2, XS, YS, loss_fn=loss_fn)
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5, atol=1e-6)


def test_mse_with_another_reduction_takes_the_general_path():
    model, (X, y) = mlp(), _regression()
    d1, d2 = _dirs(model)
    loss_fn = nn.MSELoss(reduction="sum")
    assert L.point_evaluator(model, (X, y), [d1, d2], loss_fn=loss_fn).loss_fn is loss_fn
    got = L.scan_2d(model, (X, y), d1, d2, XS, YS, loss_fn=loss_fn, progress=False)
    want = np.zeros((len(YS), len(XS)))
    with torch.no_grad():
        for i, b in enumerate(YS):
            for j, a in enumerate(XS):
                point = [p + float(a) * u + float(b) * v for p, u, v in zip(model.parameters(), d1, d2)]
                out = torch.func.functional_call(model, dict(zip(dict(model.named_parameters()), point)), (X,))
                want[i, j] = loss_fn(out, y).item()
    np.testing.assert_allclose(got["loss"], want, rtol=1e-5, atol=1e-6)
