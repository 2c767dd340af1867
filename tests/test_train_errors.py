"""Mistakes ``dl.fit`` / ``dl.evaluate`` must name instead of training wrongly or failing obscurely (issue 26), and
where a run that diverges mid-epoch stops (issue 27: the loss is read once per epoch)."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import dldna_lite as dl
from dldna_lite import generalization as gz
from dldna_lite import models


def _data(n=64, d=20, classes=3):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


def _model(seed=0):
    dl.seed_everything(seed)
    return models.mlp([20, 8, 3])


def _weights(model):
    return [p.detach().clone() for p in model.parameters()]


def _unchanged(model, before) -> bool:
    return all(torch.equal(a, b) for a, b in zip(model.parameters(), before))


# --- an optimizer of another model ---------------------------------------------------------------------------------
def test_an_optimizer_built_before_the_model_was_rebuilt_is_refused():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model = _model(1)                                   # the notebook cell that builds the model was run again
    before = _weights(model)
    with pytest.raises(ValueError, match=r"optimizer's parameters are not the model's.*Rebuild the optimizer after "
                                         r"the model"):
        dl.fit(model, opt, _data(), 1, progress=False)
    assert _unchanged(model, before)


def test_an_optimizer_missing_a_replaced_layer_is_refused():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model[-1] = nn.Linear(8, 3)                          # one layer replaced after the optimizer was built
    with pytest.raises(ValueError, match=r"2 of 4 of them are not, and 2 of the model's are missing.*Rebuild"):
        dl.fit(model, opt, _data(), 1, progress=False)


def test_optimizers_over_part_of_the_model_or_with_extra_parameters_are_fine():
    X, y = _data()
    model = _model()
    frozen = list(model.parameters())[:2]
    for p in frozen:
        p.requires_grad_(False)
    h = dl.fit(model, torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1), (X, y), 1,
               progress=False)
    assert h.status == "ok"
    model = _model()
    temperature = nn.Parameter(torch.ones(()))          # a learnable parameter of the loss, next to the model's
    h = dl.fit(model, torch.optim.SGD([*model.parameters(), temperature], lr=0.1), (X, y), 1,
               loss_fn=lambda out, t: F.cross_entropy(out / temperature, t), progress=False)
    assert h.status == "ok" and temperature.item() != 1.0


# --- empty data ----------------------------------------------------------------------------------------------------
def test_empty_data_is_a_value_error():
    X, y = _data()
    model = _model()
    before = _weights(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="train_data is empty"):
        dl.fit(model, opt, (X[:0], y[:0]), 1, progress=False)
    with pytest.raises(ValueError, match="test_data is empty"):
        dl.fit(model, opt, (X, y), 1, test_data=(X[:0], y[:0]), progress=False)
    assert _unchanged(model, before)                     # refused before any step
    with pytest.raises(ValueError, match="data is empty"):
        dl.evaluate(model, (X[:0], y[:0]))


# --- max_steps -----------------------------------------------------------------------------------------------------
def test_max_steps_zero_trains_nothing():
    model = _model()
    before = _weights(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    h = dl.fit(model, opt, _data(), 3, max_steps=0, track_steps=True, progress=False)
    assert h["loss"] == [] and h["grad_norm"] == [] and h.epochs == [] and h.status == "ok"
    assert h.final("train_loss") is None and h.describe("train_loss") == "n/a"
    assert _unchanged(model, before) and not opt.state


@pytest.mark.parametrize("steps", [1, 5, 8, 13])
def test_max_steps_caps_the_steps_across_epochs(steps):
    model = _model()
    h = dl.fit(model, torch.optim.SGD(model.parameters(), lr=0.1), _data(), 3, batch_size=8, max_steps=steps,
               progress=False)
    assert len(h["loss"]) == steps and len(h.epochs) == -(-steps // 8)     # 8 steps per epoch


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_bad_max_steps_is_a_value_error(bad):
    model = _model()
    with pytest.raises(ValueError, match="max_steps must be an int >= 0"):
        dl.fit(model, torch.optim.SGD(model.parameters(), lr=0.1), _data(), 1, max_steps=bad, progress=False)


# --- where a divergence stops --------------------------------------------------------------------------------------
class _BlowUpAt:
    """Cross-entropy, made infinite at call ``at`` (1-based); counts its calls."""

    def __init__(self, at):
        self.at, self.calls = at, 0

    def __call__(self, out, target):
        self.calls += 1
        return F.cross_entropy(out, target) * (float("inf") if self.calls == self.at else 1.0)


@pytest.mark.parametrize("track_steps", [False, True])
def test_a_divergence_mid_epoch_is_reported_at_its_step_and_stops_at_the_epochs_end(track_steps):
    """8 steps per epoch; the loss of step 11 (epoch 2) is infinite. The history is that of the clean run up to step
    10 and says "diverged at step 11"; the run went on to the end of epoch 2 (step 16) and stopped there."""
    X, y = _data()
    model = _model()
    clean = dl.fit(model, torch.optim.SGD(model.parameters(), lr=0.1), (X, y), 3, batch_size=8,
                   track_steps=track_steps, progress=False)
    model = _model()
    loss_fn = _BlowUpAt(11)
    h = dl.fit(model, torch.optim.SGD(model.parameters(), lr=0.1), (X, y), 3, batch_size=8, loss_fn=loss_fn,
               track_steps=track_steps, progress=False)
    assert h.diverged_at == 11 and h.status == "diverged at step 11" and len(h.epochs) == 1
    assert h.epochs[0] == {**clean.epochs[0], "time": h.epochs[0]["time"]}
    for key in h.steps:
        assert h[key] == clean[key][:10], key
    assert loss_fn.calls == 16                           # the end of epoch 2, not epoch 3


def test_a_grokking_run_diverging_between_evaluations_reports_its_step():
    class BlowUp(torch.optim.AdamW):                     # makes the loss of step 31 infinite
        steps = 0

        def step(self, closure=None):
            super().step(closure)
            BlowUp.steps += 1
            if BlowUp.steps == 30:
                with torch.no_grad():
                    self.param_groups[0]["params"][0].fill_(float("inf"))

    kw = dict(seed=0, eval_every=20, model_options=dict(embed_dim=8, width=16))
    run = gz.train_grokking(7, 0.5, 300, optimizer=BlowUp, **kw)
    clean = gz.train_grokking(7, 0.5, 300, **kw)
    assert run["diverged_at"] == run["steps_run"] == 31
    assert not {30, 31} & set(gz.eval_schedule(300, every=20).tolist())   # between the evaluations at 29 and 32
    kept = clean["step"] < 31
    assert list(run["step"]) == list(clean["step"][kept])
    assert list(run["val_acc"]) == list(clean["val_acc"][kept])
