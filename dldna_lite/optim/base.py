"""What every optimizer of :mod:`dldna_lite.optim` shares: argument checks and the state-memory count (chapter 02's
memory table)."""
from __future__ import annotations

import torch


def check_range(name: str, value: float, low: float = 0.0, high: float | None = None, *, open_high: bool = True,
                allow_inf: bool = False):
    """Raise ``ValueError`` unless ``value`` is a finite number (``+inf`` too with ``allow_inf``) with
    ``low <= value < high`` (or ``<= high`` with ``open_high=False``)."""
    if not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"invalid {name}: {value!r} (expected a number)")
    if value in (float("inf"), float("-inf")) and not (allow_inf and value > 0):
        raise ValueError(f"invalid {name}: {value} (expected a finite number)")
    ok = value >= low and (high is None or (value < high if open_high else value <= high))
    if not ok:
        bound = "" if high is None else (f" and < {high}" if open_high else f" and <= {high}")
        raise ValueError(f"invalid {name}: {value} (expected >= {low}{bound})")


def check_betas(betas, n: int = 2):
    """``betas`` must be a tuple of ``n`` numbers in ``[0, 1)``."""
    if not isinstance(betas, (tuple, list)) or len(betas) != n:
        raise ValueError(f"invalid betas: {betas!r} (expected {n} numbers in [0, 1))")
    for i, beta in enumerate(betas):
        check_range(f"beta parameter at index {i}", beta, 0.0, 1.0)


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
