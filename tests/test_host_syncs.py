"""The training loops read nothing back to the host between logging points (issue 27).

A read of a device tensor from the host (``.item()``, ``bool()``, ``float()``, ``.tolist()``, ``.cpu()``, ...) makes
the CPU wait until the GPU has caught up: one per step starves a GPU. :class:`HostReads` (from scripts/gpu_check.py,
whose micro-check on a real GPU uses it too) counts them with a ``TorchFunctionMode``. The model runs on the ``meta``
device (tests/fake_device.py), a stand-in for a GPU whose tensors can be told from the host's: a call counts when
the tensor it reads lives off the CPU -- as on a real accelerator, where reading a CPU tensor (Adam's step counter, a
CPU random permutation) costs no synchronisation. The counts must not grow with the number of steps: one read per
epoch / evaluation / logging point.
"""
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

import dldna_lite as dl
from dldna_lite import dynamics as dyn
from dldna_lite import generalization as gz
from dldna_lite import models
from fake_device import META, fake_device

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from gpu_check import READS, HostReads  # noqa: E402  (the counter the GPU check's micro-check uses too)


def _data(n, d=20, classes=3):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


def _fit_reads(n_train, epochs, optimizer="sgd", test=False, onehot=False, **kw) -> int:
    X, y = _data(n_train)
    loss_fn = None
    if onehot:
        y, loss_fn = F.one_hot(y, 3).float(), F.mse_loss
    with fake_device():
        model = models.mlp([20, 8, 3]).to(META)
        opt = (torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9) if optimizer == "sgd"
               else torch.optim.Adam(model.parameters(), lr=1e-3))
        with HostReads() as reads:
            history = dl.fit(model, opt, (X, y), epochs, batch_size=8, loss_fn=loss_fn, progress=False,
                             test_data=(X[:16], y[:16]) if test else None, **kw)
    assert len(history["loss"]) == epochs * n_train // 8 and len(history.epochs) == epochs
    return reads.count


OPTIONS = {"plain": {}, "track_steps": dict(track_steps=True), "test_data": dict(test=True),
           "clipping": dict(track_steps=True, clip_grad_norm=1.0, clip_grad_value=0.5),
           "adam": dict(optimizer="adam"), "one-hot targets": dict(onehot=True, test=True)}


@pytest.mark.parametrize("option", OPTIONS)
def test_fit_reads_once_per_epoch_whatever_the_number_of_steps(option):
    kw = OPTIONS[option]
    few, many = _fit_reads(16, 2, **kw), _fit_reads(96, 2, **kw)     # 2 and 12 steps per epoch
    per_epoch = 2 if kw.get("test") else 1                          # the epoch's numbers (+ the test evaluation)
    assert few == many == 2 * per_epoch, (option, few, many)


def test_fit_on_the_cpu_reads_once_per_epoch():
    """The same count with every tensor on the host (where all reads are counted): 2 epochs, 12 steps each."""
    X, y = _data(96)
    model = models.mlp([20, 8, 3])

    class AllReads(HostReads):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") in READS - {"cpu"}:
                self.where.append(func.__name__)
            return func(*args, **(kwargs or {}))

    with AllReads() as reads:
        h = dl.fit(model, torch.optim.SGD(model.parameters(), lr=0.1), (X, y), 2, batch_size=8, track_steps=True,
                   progress=False)
    assert len(h["loss"]) == 24 and reads.count == 2, reads.where


def test_evaluate_reads_once_for_many_batches():
    X, y = _data(64)
    with fake_device():
        model = models.mlp([20, 8, 3]).to(META)
        with HostReads() as reads:
            dl.evaluate(model, (X, y), batch_size=8)                  # 8 batches
    assert reads.count == 1, reads.where


def test_grokking_reads_once_per_evaluation():
    with fake_device():
        with HostReads() as reads:
            run = gz.train_grokking(7, 0.5, 200, eval_every=50, model_options=dict(embed_dim=4, width=8), device=META)
    assert run["steps_run"] == 200 and reads.count == len(run["step"]) < 200, (reads.count, len(run["step"]))


def test_gradient_descent_with_sharpness_reads_once_per_measurement(monkeypatch):
    """The Lanczos iterations of the sharpness read on their own; stubbed here, the loop's own reads remain."""
    monkeypatch.setattr(dyn, "sharpness", lambda *a, **k: (1.0, None))
    g = torch.Generator().manual_seed(0)
    X, Y = torch.randn(16, 12, generator=g), torch.randn(16, 3, generator=g)
    with fake_device():
        model = models.tanh_mlp(in_features=12, width=6, num_classes=3, seed=0).to(META)
        with HostReads() as reads:
            run = dyn.gd_with_sharpness(model, (X, Y), 0.05, 40, every=10)
    assert len(run["loss"]) == 40 and len(run["sharpness"]) == 4
    assert reads.count == 4 + 1, reads.where                          # one per measurement, one at the end


def _reference_fit(model, opt, data, test, epochs, batch_size):
    """fit's numbers the way it computed them before issue 27: every step read back at once, summed on the host."""
    norm = lambda ts: torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(ts)))).item()  # noqa: E731
    steps, rows, gen = {k: [] for k in ("loss", "grad_norm", "param_change", "weight_norm", "lr")}, [], \
        torch.Generator().manual_seed(0)
    for epoch in range(1, epochs + 1):
        sum_loss = sum_acc = 0.0
        for xb, yb in dl.batches(*data, batch_size, shuffle=True, generator=gen):
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad()
            loss.backward()
            steps["grad_norm"].append(norm(p.grad for p in model.parameters()))
            before = [p.detach().clone() for p in model.parameters()]
            opt.step()
            now = [p.detach() for p in model.parameters()]
            steps["param_change"].append(norm(torch._foreach_sub(now, before)))
            steps["weight_norm"].append(norm(now))
            steps["lr"].append(opt.param_groups[0]["lr"])
            steps["loss"].append(loss.item())
            sum_loss += loss.item() * len(xb)
            sum_acc += (out.argmax(1) == yb).float().mean().item() * len(xb)
        with torch.no_grad():
            out = model(test[0])
        rows.append(dict(epoch=epoch, train_loss=sum_loss / len(data[0]), train_acc=sum_acc / len(data[0]),
                         test_loss=F.cross_entropy(out, test[1]).item(),
                         test_acc=int((out.argmax(1) == test[1]).sum()) / len(test[0])))
    return steps, rows


def test_the_numbers_read_once_per_epoch_equal_those_read_at_every_step():
    """Bit for bit: the device-side records change when the numbers are read, not what they are. 72 rows in
    batches of 16: the last batch of each epoch is short, so the running averages must weight by batch length."""
    X, y = _data(72)
    test = _data(40)
    results = []
    for reference in (True, False):
        dl.seed_everything(0)
        model = models.mlp([20, 8, 3])
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        if reference:
            results.append(_reference_fit(model, opt, (X, y), test, 2, 16) + (_weights(model),))
        else:
            h = dl.fit(model, opt, (X, y), 2, batch_size=16, test_data=test, track_steps=True, progress=False)
            rows = [{k: v for k, v in r.items() if k != "time"} for r in h.epochs]
            results.append((h.steps, rows, _weights(model)))
    (want_steps, want_rows, want_w), (steps, rows, w) = results
    assert steps == want_steps and rows == want_rows
    assert all(torch.equal(a, b) for a, b in zip(w, want_w))


def _weights(model):
    return [p.detach().clone() for p in model.parameters()]
