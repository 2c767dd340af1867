"""What every optimizer of :mod:`dldna_lite.optim` shares: one check of every hyperparameter
(:func:`check_hyperparameters`) and the state-memory count (chapter 02's memory table).

Each hyperparameter has one rule in :data:`RULES`, whatever the optimizer: a real number (a Python ``int`` or
``float`` or a numpy scalar; never a ``bool``, a string or a tensor: ``TypeError``) that is finite and inside its
interval (else ``ValueError``). The intervals are torch's where ``torch.optim`` checks the argument (``lr``,
``weight_decay``, ``lr_decay``, ``initial_accumulator_value``, ``betas``, Adafactor's ``beta2_decay`` and ``d``),
and stricter where torch accepts a value whose update is undefined or meaningless: ``momentum`` and RMSprop's
``alpha`` must be below 1 (torch takes ``momentum=1.5``: the velocity then grows without bound), ``dampening`` in
``[0, 1]`` (torch does not check it, not even for NaN), every ``eps`` above 0 (torch takes 0: ``0 / 0`` where a second
moment is 0). Flags (``maximize``, ``nesterov``, ``amsgrad``, ``centered``) must be ``bool``.
"""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np
import torch


class Interval(NamedTuple):
    """``low <= x < high`` (``low_open``: ``low < x``; ``high_open=False``: ``x <= high``)."""

    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = True

    def __contains__(self, x) -> bool:
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return above and below

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


#: name -> (valid interval, an example value for the message).
RULES = {
    "lr": (Interval(0.0), 1e-3), "weight_decay": (Interval(0.0), 1e-2), "lr_decay": (Interval(0.0), 0.0),
    "initial_accumulator_value": (Interval(0.0), 0.0), "eps": (Interval(0.0, low_open=True), 1e-8),
    "momentum": (Interval(0.0, 1.0), 0.9), "dampening": (Interval(0.0, 1.0, high_open=False), 0.0),
    "alpha": (Interval(0.0, 1.0), 0.99), "beta": (Interval(0.0, 1.0), 0.9),
    "beta2_decay": (Interval(-math.inf, 0.0, low_open=True, high_open=False), -0.8),
    "eps1": (Interval(0.0, low_open=True), None), "eps2": (Interval(0.0, low_open=True), None),
    "d": (Interval(1.0, high_open=False), 1.0), "rho": (Interval(0.0), 0.04),
}
FLAGS = ("maximize", "nesterov", "amsgrad", "centered")


def check_number(name: str, value, interval: Interval, example=None, *, allow_inf: bool = False,
                 fix: str | None = None) -> float:
    """``float(value)``; ``TypeError`` unless it is a real number (numpy scalars too, not a ``bool``),
    ``ValueError`` unless it is finite (``+inf`` too with ``allow_inf``) and in ``interval``. Both messages name
    ``name``, what it must be and the fix: ``fix``, or "pass e.g. name=example"."""
    fix = fix or (f"pass e.g. {name}={example!r}" if example is not None else f"pass a number in {interval}")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"invalid {name}: {value!r} is a {type(value).__name__}, not a real number in {interval} "
                        f"({fix})")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not (allow_inf and value > 0)) or value not in interval:
        what = "a finite number" if not allow_inf else "a number"
        raise ValueError(f"invalid {name}: {value!r} (expected {what} in {interval}; {fix})")
    return value


def check_flag(name: str, value) -> bool:
    """``value`` as a ``bool``; ``TypeError`` for anything else (a number passed one position too far, ...)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"invalid {name}: {value!r} (expected True or False; pass it by keyword, {name}=True)")
    return bool(value)


def check_betas(value, n: int = 2, name: str = "betas") -> tuple[float, ...]:
    """``value`` as a tuple of ``n`` floats, each checked by the rule ``"beta"`` (``[0, 1)``)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != n:
        raise ValueError(f"invalid {name}: {value!r} (expected {n} numbers in [0, 1), e.g. {name}=(0.9, 0.999))")
    interval, _ = RULES["beta"]
    return tuple(check_number(f"{name}[{i}]", b, interval, fix=f"pass e.g. {name}=(0.9, 0.999)")
                 for i, b in enumerate(value))


def check_hyperparameters(**values) -> dict:
    """Every keyword checked by its rule (:data:`RULES`, ``betas``, :data:`FLAGS`, Adafactor's ``eps`` pair);
    returns them converted (``float``, ``bool``, tuples) for the optimizer's ``defaults``."""
    out = {}
    for name, value in values.items():
        if name in FLAGS:
            out[name] = check_flag(name, value)
        elif name == "betas":
            out[name] = check_betas(value)
        elif name == "eps_pair":                     # Adafactor's (eps1 or None, eps2)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
                raise ValueError(f"invalid eps: {value!r} (expected a pair (eps1 or None, eps2), "
                                 "e.g. eps=(None, 1e-3))")
            fix = "pass e.g. eps=(None, 1e-3); None is the dtype's machine epsilon"
            eps1 = None if value[0] is None else check_number("eps[0]", value[0], RULES["eps1"][0], fix=fix)
            out["eps"] = (eps1, check_number("eps[1]", value[1], RULES["eps2"][0], fix=fix))
        else:
            out[name] = check_number(name, value, *RULES[name], allow_inf=name == "d")
    return out


class Optimizer(torch.optim.Optimizer):
    """``torch.optim.Optimizer`` plus :meth:`state_bytes` (memory held in optimizer state)."""

    def state_bytes(self) -> int:
        """Bytes of all tensors held in ``self.state`` (moments, accumulators; not the parameters)."""
        return sum(t.numel() * t.element_size() for s in self.state.values() for t in s.values()
                   if torch.is_tensor(t))

    def params_with_grad(self, group):
        """The parameters of ``group`` that have a gradient, with the gradient (negated when maximizing)."""
        for p in group["params"]:
            if p.grad is not None:
                yield p, (-p.grad if group.get("maximize", False) else p.grad)

    def _closure_loss(self, closure):
        if closure is None:
            return None
        with torch.enable_grad():
            return closure()
