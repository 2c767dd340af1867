"""Eight optimizers written from their update rules, each a drop-in ``torch.optim.Optimizer`` (chapter 02 "Optimizers
from scratch"; used by chapters 03-05 and the exercises through :func:`build`).

``SGD`` (momentum, Nesterov) -> ``Adagrad`` -> ``RMSprop`` -> ``Adam`` (AMSGrad) -> ``AdamW``; ``Adafactor``
(factored second moments), ``Lion`` (sign momentum), ``Sophia`` (clipped diagonal Newton). Where torch has the
algorithm the constructor arguments, defaults and numbers are torch's (tests/test_optim.py proves it to 1e-6 in
float64). Every optimizer has ``state_bytes()``: the memory its state holds. Each also has a multi-tensor version
(:mod:`dldna_lite.optim.foreach`, ``build(..., foreach=True)``): the same numbers with one ``torch._foreach_*`` call per
operation for all parameters, which the long comparisons (:mod:`dldna_lite.optim.compare`) use.
"""
import torch

from .adafactor import Adafactor
from .adaptive import Adagrad, Adam, AdamW, RMSprop
from .base import Optimizer
from .foreach import FOREACH, default_foreach
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


def build(name: str, params, lr: float, *, model=None, seed: int = 0, foreach: bool = False, **kwargs) -> Optimizer:
    """The one optimizer factory of the book: ``name`` (one of :data:`NAMES`) on ``params`` at learning rate ``lr``;
    other keyword arguments go to the constructor. ``foreach=True`` builds the multi-tensor version of the class
    (:data:`~dldna_lite.optim.foreach.FOREACH`: same arguments, state and numbers, fewer kernel launches).

    Sophia without an ``estimator`` gets SophiaG's Gauss-Newton-Bartlett estimate when ``model`` is given (seeded by
    ``seed``); with neither it is the caller's job to set ``opt.estimator`` before the first step.
    """
    if name not in NAMES:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(NAMES)}")
    if name == "SGD+momentum":
        name, kwargs = "SGD", {"momentum": 0.9, **kwargs}
    if name == "Sophia" and model is not None and "estimator" not in kwargs:
        kwargs["estimator"] = GaussNewtonBartlett(model, generator=torch.Generator().manual_seed(seed))
    if not isinstance(foreach, bool):
        raise ValueError(f"foreach must be True or False, got {foreach!r}")
    cls = FOREACH[OPTIMIZERS[name]] if foreach else OPTIMIZERS[name]
    return cls(params, lr=lr, **kwargs)


__all__ = ["Optimizer", "OPTIMIZERS", "NAMES", "get", "build", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "Adafactor",
           "Lion", "Sophia", "GaussNewtonBartlett", "hutchinson_diagonal",
           "FOREACH", "default_foreach"]
