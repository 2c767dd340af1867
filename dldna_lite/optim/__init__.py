"""Eight optimizers written from their update rules, each a drop-in ``torch.optim.Optimizer`` (chapter 02 "Optimizers
from scratch"; used by chapters 03-05 and the exercises through :func:`build`).

``SGD`` (momentum, Nesterov) -> ``Adagrad`` -> ``RMSprop`` -> ``Adam`` (AMSGrad) -> ``AdamW``; ``Adafactor``
(factored second moments), ``Lion`` (sign momentum), ``Sophia`` (clipped diagonal Newton). Where torch has the
algorithm the constructor arguments, defaults and numbers are torch's (tests/test_optim.py proves it to 1e-6 in
float64). Every optimizer has ``state_bytes()``: the memory its state holds.
"""
import torch

from .adafactor import Adafactor
from .adaptive import Adagrad, Adam, AdamW, RMSprop
from .base import Optimizer
from .lion import Lion
from .sgd import SGD
from .sophia import GaussNewtonBartlett, Sophia, hutchinson_diagonal

#: name -> class, in the order the chapter derives them.
OPTIMIZERS = {"SGD": SGD, "Adagrad": Adagrad, "RMSprop": RMSprop, "Adam": Adam, "AdamW": AdamW,
              "Adafactor": Adafactor, "Lion": Lion, "Sophia": Sophia}


#: Names :func:`build` accepts: the classes, plus "SGD+momentum" (SGD with momentum 0.9 unless given).
NAMES = (*OPTIMIZERS, "SGD+momentum")


def get(name: str):
    """The optimizer class called ``name``; ``ValueError`` lists the valid names."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name]


def build(name: str, params, lr: float, *, model=None, seed: int = 0, **kwargs) -> Optimizer:
    """The one optimizer factory of the book: ``name`` (one of :data:`NAMES`) on ``params`` at learning rate ``lr``;
    other keyword arguments go to the constructor.

    Sophia without an ``estimator`` gets SophiaG's Gauss-Newton-Bartlett estimate when ``model`` is given (seeded by
    ``seed``); with neither it is the caller's job to set ``opt.estimator`` before the first step.
    """
    if name not in NAMES:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(NAMES)}")
    if name == "SGD+momentum":
        name, kwargs = "SGD", {"momentum": 0.9, **kwargs}
    if name == "Sophia" and model is not None and "estimator" not in kwargs:
        kwargs["estimator"] = GaussNewtonBartlett(model, generator=torch.Generator().manual_seed(seed))
    return OPTIMIZERS[name](params, lr=lr, **kwargs)


__all__ = ["Optimizer", "OPTIMIZERS", "NAMES", "get", "build", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "Adafactor",
           "Lion", "Sophia", "GaussNewtonBartlett", "hutchinson_diagonal"]
