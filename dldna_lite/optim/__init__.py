"""Eight optimizers written from their update rules, each a drop-in ``torch.optim.Optimizer``.

``SGD`` (momentum, Nesterov) -> ``Adagrad`` -> ``RMSprop`` -> ``Adam`` (AMSGrad) -> ``AdamW``; ``Adafactor``
(factored second moments), ``Lion`` (sign momentum), ``Sophia`` (clipped diagonal Newton). Where torch has the
algorithm the constructor arguments, defaults and numbers are torch's (tests/test_optim.py proves it to 1e-6 in
float64). Every optimizer has ``state_bytes()``: the memory its state holds.
"""
from .adafactor import Adafactor
from .adaptive import Adagrad, Adam, AdamW, RMSprop
from .base import Optimizer
from .lion import Lion
from .sgd import SGD
from .sophia import GaussNewtonBartlett, Sophia, hutchinson_diagonal

#: name -> class, in the order the chapter derives them.
OPTIMIZERS = {"SGD": SGD, "Adagrad": Adagrad, "RMSprop": RMSprop, "Adam": Adam, "AdamW": AdamW,
              "Adafactor": Adafactor, "Lion": Lion, "Sophia": Sophia}


def get(name: str):
    """The optimizer class called ``name``; ``ValueError`` lists the valid names."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name]


__all__ = ["Optimizer", "OPTIMIZERS", "get", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "Adafactor", "Lion",
           "Sophia", "GaussNewtonBartlett", "hutchinson_diagonal"]
